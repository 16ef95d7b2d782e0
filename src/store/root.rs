//! The served root of a [`super::LocalStore`], and the only way it turns a
//! client's path into a filesystem path. The path's syntax is checked by
//! [`crate::paths`] (relative, no `..`); every resolved path is
//! canonicalised and must stay below the canonical root, so a symlink
//! inside the share that points outside it is refused too (exit 5), and
//! what is opened is checked again on its descriptor.

use crate::error::{Error, Result};
use crate::paths::{components, normalize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
#[cfg(target_os = "linux")]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the share is: a directory, or one file.
#[derive(Debug, Clone)]
pub struct Root {
    /// Canonical directory (for a single-file share: the file's directory).
    dir: PathBuf,
    /// For a single-file share, the file's name.
    file: Option<OsString>,
    /// Directories uploads went to lately (shared by the clones).
    dirs: Arc<Mutex<HashMap<String, KnownDir>>>,
}

/// A directory below the root as last resolved: its canonical path, and
/// which directory that was (device, inode), to tell whether the client's
/// path still leads to the same one.
#[derive(Debug, Clone)]
struct KnownDir {
    canon: PathBuf,
    id: (u64, u64),
}

/// Most directories [`Root::resolve_upload`] remembers; past that it
/// starts over (a sync sends a directory's files together).
const KNOWN_DIRS: usize = 256;

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let canon = std::fs::canonicalize(path).map_err(|e| Error::local_io(path, e))?;
        let md = std::fs::metadata(&canon).map_err(|e| Error::local_io(&canon, e))?;
        if md.is_dir() {
            Ok(Root {
                dir: canon,
                file: None,
                dirs: Arc::default(),
            })
        } else if md.is_file() {
            let file = canon.file_name().map(|n| n.to_os_string());
            let dir = canon.parent().unwrap_or(Path::new("/")).to_path_buf();
            Ok(Root {
                dir,
                file,
                dirs: Arc::default(),
            })
        } else {
            Err(Error::usage(format!(
                "{}: not a directory or regular file",
                path.display()
            )))
        }
    }

    /// The shared path itself.
    pub fn path(&self) -> PathBuf {
        match &self.file {
            Some(f) => self.dir.join(f),
            None => self.dir.clone(),
        }
    }

    pub fn is_file(&self) -> bool {
        self.file.is_some()
    }

    /// For a single-file share, the name it is known by.
    pub fn file_name(&self) -> Option<String> {
        self.file.as_ref().map(|f| f.to_string_lossy().into_owned())
    }

    fn inside(&self, canon: &Path) -> bool {
        match &self.file {
            Some(f) => canon == self.dir.join(f),
            None => canon.starts_with(&self.dir),
        }
    }

    fn escape(rel: &str) -> Error {
        Error::permission(format!(
            "path '{rel}' refused: it leads outside the share root"
        ))
    }

    /// Maps a client path to the lexical path below the root, before any
    /// symlink is resolved. For a single-file share only the root itself
    /// and the file's own name exist.
    fn lexical(&self, rel: &str) -> Result<PathBuf> {
        let comps = components(rel)?;
        match &self.file {
            Some(f) => {
                let name = f.to_string_lossy();
                if comps.is_empty() || comps == [name.as_ref()] {
                    Ok(self.dir.join(f))
                } else {
                    Err(Error::not_found(format!(
                        "'{rel}': no such file on this share"
                    )))
                }
            }
            None => Ok(comps.iter().fold(self.dir.clone(), |p, c| p.join(c))),
        }
    }

    /// An existing path, with symlinks resolved; must stay inside the root.
    pub fn resolve_existing(&self, rel: &str) -> Result<PathBuf> {
        let p = self.lexical(rel)?;
        let canon = std::fs::canonicalize(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                // A dangling link that points outside is still an escape.
                if std::fs::symlink_metadata(&p).is_ok() {
                    Self::escape(rel)
                } else {
                    Error::not_found(format!("'{rel}': no such file or directory"))
                }
            }
            _ => Error::local_io(Path::new(rel), e),
        })?;
        if !self.inside(&canon) {
            return Err(Self::escape(rel));
        }
        Ok(canon)
    }

    /// The existing directory `rel` that new entries go into (canonical,
    /// inside the root), a missing one said as such.
    fn resolve_parent(&self, rel: &str) -> Result<PathBuf> {
        self.resolve_existing(rel).map_err(|e| {
            if e.kind == crate::error::ErrorKind::NotFound {
                no_such_dir(rel)
            } else {
                e
            }
        })
    }

    /// Where a new entry named by `rel` goes: its (existing, canonical)
    /// parent directory joined with its name. An existing symlink at the
    /// target is refused unless it points inside the root.
    pub fn resolve_for_write(&self, rel: &str) -> Result<PathBuf> {
        let lexical = self.lexical(rel)?;
        if self.file.is_some() {
            return Ok(lexical);
        }
        let comps = components(rel)?;
        let Some((name, _)) = comps.split_last() else {
            return Err(Error::permission(
                "the share root itself cannot be replaced",
            ));
        };
        let parent_rel = comps[..comps.len() - 1].join("/");
        let parent = self.resolve_parent(&parent_rel)?;
        if !parent.is_dir() {
            return Err(Error::not_found(format!(
                "'{parent_rel}' is not a directory"
            )));
        }
        let target = parent.join(name);
        if let Ok(md) = std::fs::symlink_metadata(&target) {
            if md.file_type().is_symlink() {
                self.resolve_existing(rel)?;
            }
        }
        Ok(target)
    }

    /// Where an upload of `rel` is written: like
    /// [`Root::resolve_for_write`], and `rel` must not be a directory. The
    /// parent's canonical path is remembered and used again while the
    /// client's path to it still leads to that same directory, which saves
    /// resolving every component of it again for each file of a sync. That
    /// check is not a proof that the directory is still inside the root
    /// (it could have been moved out and reached through a symlink since),
    /// so the caller must [`Root::confirm`] what it opens there, as
    /// `LocalStore::begin` does for every upload.
    pub fn resolve_upload(&self, rel: &str) -> Result<PathBuf> {
        let comps = components(rel)?;
        let target = match (&self.file, comps.split_last()) {
            (None, Some((name, parents))) => {
                let parent_rel = parents.join("/");
                let lexical = parents.iter().fold(self.dir.clone(), |p, c| p.join(c));
                let id = dir_id(&lexical);
                let known = self.known_dirs();
                let hit = known
                    .get(&parent_rel)
                    .filter(|k| Some(k.id) == id)
                    .map(|k| k.canon.clone());
                drop(known);
                match hit {
                    Some(canon) => canon.join(name),
                    None => {
                        let target = self.resolve_for_write(rel)?;
                        let canon = target.parent().unwrap_or(&self.dir).to_path_buf();
                        // Remembered only when nothing moved in between.
                        if let Some(id) = id.filter(|id| dir_id(&canon) == Some(*id)) {
                            let mut known = self.known_dirs();
                            if known.len() >= KNOWN_DIRS {
                                known.clear();
                            }
                            known.insert(parent_rel, KnownDir { canon, id });
                        }
                        target
                    }
                }
            }
            _ => self.resolve_for_write(rel)?,
        };
        let is_dir = match std::fs::symlink_metadata(&target) {
            // An existing symlink there must lead inside too.
            Ok(m) if m.file_type().is_symlink() => self.resolve_existing(rel)?.is_dir(),
            Ok(m) => m.is_dir(),
            Err(_) => false,
        };
        if is_dir {
            return Err(Error::other(format!(
                "'{rel}' is a directory on the server"
            )));
        }
        Ok(target)
    }

    fn known_dirs(&self) -> std::sync::MutexGuard<'_, HashMap<String, KnownDir>> {
        // A panic elsewhere while holding it leaves nothing half-done.
        self.dirs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens an existing entry for reading (see [`Root::confirm`]).
    pub fn open_entry(&self, rel: &str) -> Result<(PathBuf, File)> {
        let p = self.resolve_existing(rel)?;
        let mut how = std::fs::OpenOptions::new();
        how.read(true);
        // Without O_NONBLOCK, opening a FIFO someone left in the share
        // would block until a writer comes, holding the request forever;
        // with it the open returns and the caller's type check refuses it
        // (O_NONBLOCK means nothing to regular files and directories).
        #[cfg(target_os = "linux")]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut how, libc::O_NONBLOCK);
        let f = how
            .open(&p)
            .map_err(|e| Error::local_io(Path::new(rel), e))?;
        self.confirm(&f, rel)?;
        Ok((p, f))
    }

    /// Opens directory `rel` for uploads into it, confirmed inside the
    /// root (see [`Root::confirm`]); its canonical path with it.
    /// Opened as a path only (`O_PATH`): files are made and named in it,
    /// which needs write and search permission on it, not read (a
    /// drop-box directory works too), and nothing but a directory opens.
    #[cfg(target_os = "linux")]
    pub fn open_dir(&self, rel: &str) -> Result<(PathBuf, File)> {
        let p = self.resolve_parent(rel)?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&p)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTDIR) => Error::not_found(format!("'{rel}' is not a directory")),
                Some(libc::ENOENT) => no_such_dir(rel),
                _ => Error::local_io(Path::new(rel), e),
            })?;
        self.confirm(&f, rel)?;
        Ok((p, f))
    }

    /// Checks on an open descriptor that what was opened lies inside the
    /// root. The path checks above happen before the open; someone who can
    /// write inside the share could swap a directory for a symlink in
    /// between, and this catches that race. Linux only (through
    /// `/proc/self/fd`); where that is not available the check is skipped.
    pub fn confirm(&self, f: &File, rel: &str) -> Result<()> {
        match opened_path(f) {
            Some(real) if !self.inside(&real) => Err(Self::escape(rel)),
            _ => Ok(()),
        }
    }

    /// The directory that holds `rel`, opened and confirmed inside the
    /// root, so that what happens to `rel`'s name next happens in that very
    /// directory even if a directory on the way is swapped meanwhile.
    pub fn pin_parent(&self, rel: &str) -> Result<Pinned> {
        let comps = components(rel)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(Error::permission(
                "the share root itself cannot be replaced",
            ));
        };
        let (dir, f) = self.open_entry(&parents.join("/"))?;
        let by_fd = fd_dir(&f).unwrap_or(dir);
        Ok(Pinned {
            path: by_fd.join(name),
            _dir: f,
        })
    }

    /// The relative path to report for a root-relative request.
    pub fn display_rel(&self, rel: &str) -> Result<String> {
        let n = normalize(rel)?;
        match (&self.file, n.is_empty()) {
            (Some(_), true) => Ok(self.file_name().unwrap_or_default()),
            _ => Ok(n),
        }
    }
}

/// A path whose directory is held open (see [`Root::pin_parent`]); valid
/// only while this value lives.
#[derive(Debug)]
pub struct Pinned {
    path: PathBuf,
    _dir: File,
}

impl AsRef<Path> for Pinned {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for Pinned {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

/// The error for a directory `rel` that is not there (or not one).
pub fn no_such_dir(rel: &str) -> Error {
    Error::not_found(format!("'{rel}': no such directory on the server"))
}

/// The directory `p` leads to (following symlinks), if it is one.
fn dir_id(p: &Path) -> Option<(u64, u64)> {
    let md = std::fs::metadata(p).ok()?;
    md.is_dir().then(|| (md.dev(), md.ino()))
}

#[cfg(target_os = "linux")]
fn opened_path(f: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let p = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()?;
    // A file deleted since it was opened reads as "PATH (deleted)".
    Some(
        match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(s) => PathBuf::from(s),
            None => p,
        },
    )
}

#[cfg(not(target_os = "linux"))]
fn opened_path(_: &File) -> Option<PathBuf> {
    None
}

/// A path through which the kernel reaches the open directory `f` itself,
/// whatever its name is now.
#[cfg(target_os = "linux")]
fn fd_dir(f: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let p = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
    p.is_dir().then_some(p)
}

#[cfg(not(target_os = "linux"))]
fn fd_dir(_: &File) -> Option<PathBuf> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn components_refuse_escapes() {
        assert_eq!(components("a//b/./c/").unwrap(), vec!["a", "b", "c"]);
        assert!(components("").unwrap().is_empty());
        assert_eq!(components("../x").unwrap_err().kind, ErrorKind::Permission);
        assert_eq!(
            components("a/../../x").unwrap_err().kind,
            ErrorKind::Permission
        );
        assert_eq!(
            components("/etc/passwd").unwrap_err().kind,
            ErrorKind::Permission
        );
        assert_eq!(components("a\0b").unwrap_err().kind, ErrorKind::Permission);
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        let root_dir = d.path().join("root");
        std::fs::create_dir(&root_dir).unwrap();
        std::fs::write(root_dir.join("f"), b"f").unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root_dir.join("sec")).unwrap();
        std::os::unix::fs::symlink("f", root_dir.join("inlink")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", root_dir.join("dangling")).unwrap();
        let root = Root::open(&root_dir).unwrap();
        assert!(root.resolve_existing("f").is_ok());
        assert!(root.resolve_existing("inlink").is_ok());
        for bad in ["out", "out/secret", "sec", "dangling"] {
            assert_eq!(
                root.resolve_existing(bad).unwrap_err().kind,
                ErrorKind::Permission,
                "{bad}"
            );
        }
        assert_eq!(
            root.resolve_for_write("out/new").unwrap_err().kind,
            ErrorKind::Permission
        );
        assert_eq!(
            root.resolve_for_write("sec").unwrap_err().kind,
            ErrorKind::Permission
        );
        assert_eq!(
            root.resolve_for_write("").unwrap_err().kind,
            ErrorKind::Permission
        );
        assert_eq!(
            root.resolve_for_write("nodir/x").unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert!(root.resolve_for_write("new").is_ok());
    }

    #[test]
    fn single_file_share() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("only.txt"), b"x").unwrap();
        std::fs::write(d.path().join("other"), b"y").unwrap();
        let root = Root::open(&d.path().join("only.txt")).unwrap();
        assert!(root.is_file());
        assert!(root.resolve_existing("").is_ok());
        assert!(root.resolve_existing("only.txt").is_ok());
        assert_eq!(
            root.resolve_existing("other").unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(root.display_rel("").unwrap(), "only.txt");
    }

    /// A remembered upload directory is used again only while the path
    /// still leads to that very directory.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_remembered_upload_directory_is_checked_again() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root_dir = d.path().join("root");
        std::fs::create_dir_all(root_dir.join("sub/dir")).unwrap();
        let root = Root::open(&root_dir).unwrap();
        let canon_root = std::fs::canonicalize(&root_dir).unwrap();
        assert_eq!(
            root.resolve_upload("sub/x").unwrap(),
            canon_root.join("sub/x")
        );
        assert_eq!(root.known_dirs().len(), 1);
        // Served from memory now, and still refuses a directory.
        assert_eq!(
            root.resolve_upload("sub/y").unwrap(),
            canon_root.join("sub/y")
        );
        assert!(root
            .resolve_upload("sub/dir")
            .unwrap_err()
            .message
            .contains("is a directory"));

        // Swapped for a symlink that leads out: refused, as on first use.
        std::fs::rename(root_dir.join("sub"), root_dir.join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.join("sub")).unwrap();
        assert_eq!(
            root.resolve_upload("sub/x").unwrap_err().kind,
            ErrorKind::Permission
        );
        // Replaced by a new directory of the same name: that one is used.
        std::fs::remove_file(root_dir.join("sub")).unwrap();
        std::fs::create_dir(root_dir.join("sub")).unwrap();
        assert_eq!(
            root.resolve_upload("sub/x").unwrap(),
            canon_root.join("sub/x")
        );
        // Gone: the same error as without memory.
        std::fs::remove_dir(root_dir.join("sub")).unwrap();
        assert_eq!(
            root.resolve_upload("sub/x").unwrap_err().kind,
            ErrorKind::NotFound
        );
    }

    /// The remembered directory moved out of the root and reached again
    /// through a symlink looks the same by its identity; what is opened
    /// there is refused by the descriptor check.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_remembered_directory_moved_out_is_refused_on_open() {
        use crate::store::{Begin, Store};
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root_dir = d.path().join("root");
        std::fs::create_dir_all(root_dir.join("sub")).unwrap();
        let store = crate::store::LocalStore::open(&root_dir).unwrap();
        let meta = crate::model::Meta {
            size: 1,
            mtime: 1,
            mtime_ns: 0,
            mode: 0o644,
        };
        let up = store.begin("sub/a", Begin::Fresh(meta)).unwrap().unwrap();
        up.commit(&meta).unwrap();
        std::fs::rename(root_dir.join("sub"), outside.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("sub"), root_dir.join("sub")).unwrap();
        let err = store.begin("sub/b", Begin::Fresh(meta)).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Permission);
        assert!(!outside.path().join("sub/b").exists());
    }

    /// The race the path checks cannot see: a directory swapped for a
    /// symlink after the check. Played here in slow motion.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_swapped_after_the_check_is_caught() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f"), b"secret").unwrap();
        let root_dir = d.path().join("root");
        std::fs::create_dir_all(root_dir.join("sub")).unwrap();
        std::fs::write(root_dir.join("sub/f"), b"inside").unwrap();
        let root = Root::open(&root_dir).unwrap();

        // Reading: checked, then swapped, then opened.
        let checked = root.resolve_existing("sub/f").unwrap();
        std::fs::rename(root_dir.join("sub"), root_dir.join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.join("sub")).unwrap();
        let f = File::open(&checked).unwrap();
        assert_eq!(std::fs::read_to_string(&checked).unwrap(), "secret");
        assert_eq!(
            root.confirm(&f, "sub/f").unwrap_err().kind,
            ErrorKind::Permission
        );
        assert_eq!(
            root.open_entry("sub/f").unwrap_err().kind,
            ErrorKind::Permission
        );
        let fine = File::open(root_dir.join("moved/f")).unwrap();
        root.confirm(&fine, "moved/f").unwrap();

        // Removing: the directory is pinned, then swapped; the removal
        // still happens in the pinned directory, not outside.
        std::fs::remove_file(root_dir.join("sub")).unwrap();
        std::fs::rename(root_dir.join("moved"), root_dir.join("sub")).unwrap();
        let pinned = root.pin_parent("sub/f").unwrap();
        std::fs::rename(root_dir.join("sub"), root_dir.join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root_dir.join("sub")).unwrap();
        std::fs::remove_file(&*pinned).unwrap();
        assert!(
            outside.path().join("f").exists(),
            "removed outside the root"
        );
        assert!(!root_dir.join("moved/f").exists());
        assert_eq!(
            root.pin_parent("sub/f").unwrap_err().kind,
            ErrorKind::Permission
        );
    }
}
