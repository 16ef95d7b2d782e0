//! The share as a directory (or one file) of the local filesystem.
//!
//! Every path goes through [`Root`] (canonical, below the root, symlinks
//! that lead out refused) and every opened file is checked again on its
//! descriptor, so a symlink swapped in between check and use is caught.
//! Writes go to an unnamed temporary file, or for big uploads to a
//! resumable `.NAME.fts-part`, renamed over the target only on commit.
//! Uploads are made durable in batches by `fsutil::make_durable`: on
//! Linux one `syncfs` per filesystem covers the temporary files beside
//! their targets before the renames, and the new names after them.

use super::root::{no_such_dir, Root};
use super::{Begin, Content, Probe, Store, Upload};
use crate::engine::hash::WholeHash;
use crate::engine::partial::{self, PartFile};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::model::{Entry, EntryKind, Meta, PartialInfo};
use crate::transfer::Sink;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A share on the local filesystem.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Root,
}

fn io_at(rel: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::local_io(Path::new(rel), e)
}

impl LocalStore {
    /// Shares `path`: a directory, or a single regular file.
    pub fn open(path: &Path) -> Result<LocalStore> {
        Ok(LocalStore {
            root: Root::open(path)?,
        })
    }

    fn open_file(&self, rel: &str) -> Result<(File, Meta)> {
        let (_, f) = self.root.open_entry(rel)?;
        let md = f.metadata().map_err(io_at(rel))?;
        if md.is_dir() {
            return Err(Error::other(format!("'{rel}' is a directory")));
        }
        if !md.is_file() {
            return Err(Error::other(format!("'{rel}' is not a regular file")));
        }
        Ok((f, fsutil::meta_of(&md)))
    }
}

/// Directories one batch of [`LocalStore::begin_many`] holds open at
/// most; files in others take the long way (a batch of files spread one
/// per directory would otherwise double the descriptors a session holds).
#[cfg(target_os = "linux")]
const BATCH_DIRS: usize = 64;

/// A batch with at least this many files in one directory reads which of
/// its names are directories or symlinks in one listing (when the
/// directory has at most [`LISTED_PER_FILE`] entries per such file)
/// instead of looking up each target: on tmpfs a lookup of a missing name
/// builds and frees a dentry, a twentieth of a small upload's cost.
#[cfg(target_os = "linux")]
const LISTED_FROM: usize = 8;
#[cfg(target_os = "linux")]
const LISTED_PER_FILE: usize = 16;

/// One directory of a batch, opened and confirmed inside the root: its
/// path, the open directory, and its directories and symlinks by name
/// when they were listed (see [`LISTED_FROM`]).
#[cfg(target_os = "linux")]
type BatchDir = (PathBuf, Arc<File>, Option<HashMap<String, libc::mode_t>>);

/// The directories of one batch by their client paths (`Err`: why uploads
/// into one fail).
#[cfg(target_os = "linux")]
type BatchDirs = HashMap<String, Result<Arc<BatchDir>>>;
#[cfg(not(target_os = "linux"))]
type BatchDirs = ();

impl LocalStore {
    /// A fresh small upload of `rel` made in its directory as opened for
    /// the batch: the directory is resolved and confirmed inside the root
    /// once per batch, not once per file, and the file is created and
    /// named relative to that open directory. `None`: this one takes the
    /// long way (single-file share, big file, a symlink at the target,
    /// too many directories, no unnamed files).
    #[cfg(target_os = "linux")]
    fn begin_in(
        &self,
        dirs: &mut BatchDirs,
        in_dir: &HashMap<&str, usize>,
        rel: &str,
        (parent, name): (&str, &str),
        meta: &Meta,
    ) -> Result<Option<Box<dyn Upload>>> {
        if self.root.is_file() || meta.size >= partial::RESUME_MIN {
            return Ok(None);
        }
        if !dirs.contains_key(parent) {
            if dirs.len() >= BATCH_DIRS {
                return Ok(None);
            }
            let files = in_dir.get(parent).copied().unwrap_or(0);
            let opened = self.root.open_dir(parent).map(|(p, f)| {
                // A directory this side may write but not read (a drop
                // box) is looked up name by name, as before.
                let listed = (files >= LISTED_FROM)
                    .then(|| fsutil::special_names(&f, files * LISTED_PER_FILE).ok())
                    .flatten()
                    .flatten();
                Arc::new((p, Arc::new(f), listed))
            });
            dirs.insert(parent.to_string(), opened);
        }
        let dir = match &dirs[parent] {
            Ok(d) => d.clone(),
            Err(e) => return Err(e.clone()),
        };
        let (dir_path, dir, listed) = &*dir;
        let kind = match listed {
            Some(names) => names.get(name).copied(),
            None => fsutil::kind_at(dir, name).map_err(io_at(rel))?,
        };
        match kind {
            Some(libc::S_IFDIR) => {
                return Err(Error::other(format!(
                    "'{rel}' is a directory on the server"
                )))
            }
            // Where a symlink leads is checked the long way.
            Some(libc::S_IFLNK) => return Ok(None),
            _ => {}
        }
        let target = dir_path.join(name);
        let Some(t) = fsutil::TempFile::unnamed_in(dir.clone(), &target).map_err(io_at(rel))?
        else {
            return Ok(None);
        };
        Ok(Some(Box::new(LocalUpload {
            sink: Sink::Temp(t),
            target,
            rel: rel.to_string(),
        })))
    }

    #[cfg(not(target_os = "linux"))]
    fn begin_in(
        &self,
        _: &mut BatchDirs,
        _: &HashMap<&str, usize>,
        _: &str,
        _: (&str, &str),
        _: &Meta,
    ) -> Result<Option<Box<dyn Upload>>> {
        Ok(None)
    }
}

/// `rel`'s directory (as a batch keys it) and name; `None` for the root.
fn parent_and_name(rel: &str) -> Result<Option<(String, String)>> {
    let comps = crate::paths::components(rel)?;
    Ok(comps
        .split_last()
        .map(|(name, parents)| (parents.join("/"), name.to_string())))
}

/// A write into a temp or partial file beside its target.
struct LocalUpload {
    sink: Sink,
    target: PathBuf,
    rel: String,
}

impl Upload for LocalUpload {
    fn writer(&self) -> Result<Box<dyn Write + Send>> {
        let f = self.sink.file().try_clone().map_err(io_at(&self.rel))?;
        Ok(Box::new(f))
    }

    fn write_all(&self, data: &[u8]) -> Result<()> {
        // Straight to the descriptor: no duplicate of it for one write.
        let mut f: &File = self.sink.file();
        f.write_all(data).map_err(io_at(&self.rel))
    }

    fn file(&self) -> Result<Option<File>> {
        let f = self.sink.file().try_clone().map_err(io_at(&self.rel))?;
        Ok(Some(f))
    }

    fn commit(self: Box<Self>, meta: &Meta) -> Result<()> {
        // Without syncfs, `make_durable` cannot reach the data of an
        // upload not yet renamed: flush it here, before the rename.
        #[cfg(not(target_os = "linux"))]
        self.sink.file().sync_all().map_err(io_at(&self.rel))?;
        let rel = self.rel.clone();
        self.sink.commit(&self.target, meta).map_err(io_at(&rel))
    }

    fn discard(&mut self) {
        self.sink.discard();
    }
}

impl Store for LocalStore {
    fn location(&self) -> String {
        self.root.path().display().to_string()
    }

    fn is_single_file(&self) -> bool {
        self.root.is_file()
    }

    fn display(&self, rel: &str) -> Result<String> {
        self.root.display_rel(rel)
    }

    fn stat(&self, rel: &str) -> Result<Option<Entry>> {
        let p = match self.root.resolve_existing(rel) {
            Ok(p) => p,
            Err(e) if e.kind == crate::error::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let md = std::fs::metadata(&p).map_err(io_at(rel))?;
        Ok(Some(fsutil::entry_of(self.root.display_rel(rel)?, &md)))
    }

    /// One resolution of `rel`, not the two of a `stat` and a `list`: a
    /// sync asks for each directory of the tree.
    fn list_dir(&self, rel: &str, each: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
        let p = match self.root.resolve_existing(rel) {
            Err(e) if e.kind == crate::error::ErrorKind::NotFound => return Err(no_such_dir(rel)),
            p => p?,
        };
        let md = std::fs::metadata(&p).map_err(io_at(rel))?;
        if !md.is_dir() {
            return Err(no_such_dir(rel));
        }
        fsutil::list_entries(&p, &self.root.display_rel(rel)?, each)
    }

    fn list(
        &self,
        rel: &str,
        recursive: bool,
        hashes: bool,
        each: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<()> {
        let p = self.root.resolve_existing(rel)?;
        let md = std::fs::metadata(&p).map_err(io_at(rel))?;
        let rel_n = self.root.display_rel(rel)?;
        let with_hash = |mut e: Entry, path: &Path| -> Result<Entry> {
            if hashes && e.kind == EntryKind::File {
                e.hash = Some(crate::transfer::hash_file(path)?);
            }
            Ok(e)
        };
        if !md.is_dir() {
            return each(with_hash(fsutil::entry_of(rel_n, &md), &p)?);
        }
        fsutil::walk(
            &p,
            &rel_n,
            recursive,
            &mut |path, e| each(with_hash(e, &path)?),
            &mut |_| {},
        )
    }

    fn open(&self, rel: &str) -> Result<(Box<dyn Content>, Meta)> {
        let (f, meta) = self.open_file(rel)?;
        Ok((Box::new(f), meta))
    }

    fn probe(&self, rel: &str) -> Result<Probe> {
        let target = self.root.resolve_for_write(rel)?;
        let entry = match std::fs::metadata(&target) {
            Ok(md) => Some(fsutil::entry_of(self.root.display_rel(rel)?, &md)),
            Err(_) => None,
        };
        let partial = partial::find(&target).map(|f| PartialInfo {
            len: f.len,
            source: Meta {
                size: f.manifest.size,
                mtime: f.manifest.mtime,
                mtime_ns: f.manifest.mtime_ns,
                mode: 0,
            },
        });
        Ok(Probe { entry, partial })
    }

    fn hash_partial(&self, rel: &str, len: u64) -> Result<(String, WholeHash)> {
        let target = self.root.resolve_for_write(rel)?;
        let mut f = File::open(partial::part_path(&target)).map_err(io_at(rel))?;
        let (hex, h) = partial::hash_prefix(&mut f, len).map_err(io_at(rel))?;
        Ok((hex, h.into()))
    }

    fn begin(&self, rel: &str, how: Begin) -> Result<Option<Box<dyn Upload>>> {
        let target = self.root.resolve_upload(rel)?;
        let sink = match how {
            Begin::Fresh(source) => Sink::fresh(&target, &source).map_err(io_at(rel))?,
            Begin::Temp => {
                Sink::Temp(fsutil::TempFile::create_beside(&target).map_err(io_at(rel))?)
            }
            Begin::Resume { offset, .. } => {
                match PartFile::resume(&target, offset).map_err(io_at(rel))? {
                    Some(p) => Sink::Part(p),
                    None => return Ok(None),
                }
            }
        };
        // Written through this descriptor only: check where it really is.
        self.root.confirm(sink.file(), rel)?;
        Ok(Some(Box::new(LocalUpload {
            sink,
            target,
            rel: rel.to_string(),
        })))
    }

    fn begin_many(&self, files: &[(&str, Meta)]) -> Vec<Result<Box<dyn Upload>>> {
        let mut dirs = BatchDirs::default();
        let at: Vec<_> = files.iter().map(|(rel, _)| parent_and_name(rel)).collect();
        let mut in_dir = HashMap::new();
        for (parent, _) in at.iter().flatten().flatten() {
            *in_dir.entry(parent.as_str()).or_insert(0) += 1;
        }
        files
            .iter()
            .zip(&at)
            .map(|((rel, meta), at)| {
                let fast = match at {
                    Ok(Some((parent, name))) => {
                        self.begin_in(&mut dirs, &in_dir, rel, (parent, name), meta)?
                    }
                    Ok(None) => None,
                    Err(e) => return Err(e.clone()),
                };
                let up = match fast {
                    Some(up) => up,
                    None => self
                        .begin(rel, Begin::Fresh(*meta))?
                        .ok_or_else(|| Error::other(format!("'{rel}' is busy")))?,
                };
                Ok(up)
            })
            .collect()
    }

    fn mkdir(&self, rel: &str) -> Result<()> {
        let target = self.root.resolve_for_write(rel)?;
        match std::fs::create_dir(&target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if self.root.resolve_existing(rel)?.is_dir() {
                    Ok(())
                } else {
                    Err(Error::other(format!(
                        "'{rel}' exists and is not a directory"
                    )))
                }
            }
            Err(e) => Err(Error::local_io(Path::new(rel), e)),
        }
    }

    fn symlink(&self, rel: &str, link_target: &str) -> Result<()> {
        let comps = crate::paths::components(rel)?;
        let parent = comps[..comps.len().saturating_sub(1)].join("/");
        fsutil::check_link_target(&parent, link_target)?;
        let path = self.root.resolve_for_write(rel)?;
        fsutil::replace_with_symlink(&path, link_target).map_err(io_at(rel))
    }

    fn make_durable(&self, rels: &[String]) -> Result<()> {
        // Each directory is resolved once, not once per file in it: a
        // batch is mostly files of a few directories. A plain path (no
        // `.`, `..` or empty component) is split where it is, without
        // parsing it again.
        let mut dirs: std::collections::HashMap<&str, PathBuf> = Default::default();
        let mut paths = Vec::with_capacity(rels.len());
        for rel in rels {
            let plain = !rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..");
            let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let known = dirs.get(parent).filter(|_| plain && !self.root.is_file());
            let path = match known {
                Some(dir) => dir.join(name),
                None => {
                    let path = self.root.resolve_for_write(rel)?;
                    if let (true, Some(dir)) = (plain, path.parent()) {
                        dirs.insert(parent, dir.to_path_buf());
                    }
                    path
                }
            };
            paths.push(path);
        }
        fsutil::make_durable(&paths).map(drop).map_err(|e| {
            Error::local_io(Path::new(&self.location()), e).context("making uploads durable")
        })
    }

    fn set_meta(&self, rel: &str, meta: &Meta) -> Result<()> {
        let p = self.root.resolve_existing(rel)?;
        fsutil::apply_meta_path(&p, meta).map_err(io_at(rel))
    }

    fn remove(&self, rel: &str, recursive: bool) -> Result<(u64, u64)> {
        if self.root.is_file() || crate::paths::normalize(rel)?.is_empty() {
            return Err(Error::permission("the share root itself cannot be removed"));
        }
        // The link itself is removed, never what it points to; the name is
        // looked up in its directory held open, so swapping a directory on
        // the way for a symlink meanwhile cannot redirect the removal.
        let target = self.root.pin_parent(rel)?;
        let md = std::fs::symlink_metadata(&target)
            .map_err(|_| Error::not_found(format!("'{rel}': no such file or directory")))?;
        if !md.is_dir() {
            std::fs::remove_file(&target).map_err(io_at(rel))?;
            partial::remove(target.as_ref());
            return Ok((1, 0));
        }
        if !recursive {
            return Err(Error::usage(format!("'{rel}' is a directory (use -r)")));
        }
        let (mut files, mut dirs, mut odd) = (0u64, 1u64, 0u64);
        fsutil::walk(
            target.as_ref(),
            "",
            true,
            &mut |_, e| {
                match e.kind {
                    EntryKind::Dir => dirs += 1,
                    _ => files += 1,
                }
                Ok(())
            },
            &mut |_| odd += 1,
        )?;
        std::fs::remove_dir_all(&target).map_err(io_at(rel))?;
        Ok((files + odd, dirs))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Names and what each is: "dir", "-> TARGET" or the file's text.
    type Tree = Vec<(String, String)>;

    /// Runs `batches` of 3-byte uploads into `d/` of a fresh share that
    /// holds a directory `sub`, a file `real`, a symlink `link` to it and
    /// a symlink `out` that leads out of the share;
    /// returns each upload's outcome and what `d/` holds after.
    fn run(batches: &[Vec<String>]) -> (Vec<Result<(), String>>, Tree) {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("d");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("real"), b"old").unwrap();
        std::os::unix::fs::symlink("real", d.join("link")).unwrap();
        std::os::unix::fs::symlink("/", d.join("out")).unwrap();
        let store = LocalStore::open(tmp.path()).unwrap();
        let meta = Meta {
            size: 3,
            mtime: 1_700_000_000,
            mtime_ns: 0,
            mode: 0o644,
        };
        let mut outcomes = Vec::new();
        for batch in batches {
            let rels: Vec<String> = batch.iter().map(|n| format!("d/{n}")).collect();
            let files: Vec<(&str, Meta)> = rels.iter().map(|r| (r.as_str(), meta)).collect();
            for up in store.begin_many(&files) {
                outcomes.push(
                    up.and_then(|up| {
                        up.write_all(b"new")?;
                        up.commit(&meta)
                    })
                    .map_err(|e| e.message),
                );
            }
        }
        let mut tree: Tree = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let md = std::fs::symlink_metadata(&p).unwrap();
                let what = if md.is_dir() {
                    "dir".to_string()
                } else if md.is_symlink() {
                    format!("-> {}", std::fs::read_link(&p).unwrap().display())
                } else {
                    String::from_utf8(std::fs::read(&p).unwrap()).unwrap()
                };
                (p.file_name().unwrap().to_str().unwrap().to_string(), what)
            })
            .collect();
        tree.sort();
        (outcomes, tree)
    }

    /// A batch with enough files in one directory learns its directories
    /// and symlinks from one listing; what happens to each target is what
    /// a lookup of each name (files one per batch) does: a directory is an
    /// error, a symlink is checked (and refused when it leads out).
    #[test]
    fn a_listed_directory_treats_each_target_as_a_lookup_would() {
        let mut names: Vec<String> = ["sub", "link", "out"].map(String::from).to_vec();
        names.extend((0..LISTED_FROM).map(|i| format!("new{i}")));
        let listed = run(&[names.clone()]);
        let looked_up = run(&names.iter().map(|n| vec![n.clone()]).collect::<Vec<_>>());
        assert_eq!(listed, looked_up);
        let (outcomes, tree) = listed;
        assert!(outcomes[0].as_ref().unwrap_err().contains("is a directory"));
        assert!(outcomes[1].is_ok(), "{outcomes:?}");
        assert!(outcomes[2]
            .as_ref()
            .unwrap_err()
            .contains("outside the share"));
        assert!(outcomes[3..].iter().all(|o| o.is_ok()), "{outcomes:?}");
        assert!(tree.contains(&("new0".into(), "new".into())), "{tree:?}");
        assert!(tree.contains(&("out".into(), "-> /".into())), "{tree:?}");
    }
}
