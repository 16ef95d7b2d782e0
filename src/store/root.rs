//! The served root of a [`super::LocalStore`], and the only way it turns a
//! client's path into a filesystem path. The path's syntax is checked by
//! [`crate::paths`] (relative, no `..`); every resolved path is
//! canonicalised and must stay below the canonical root, so a symlink
//! inside the share that points outside it is refused too (exit 5), and
//! what is opened is checked again on its descriptor.

use crate::error::{Error, Result};
use crate::paths::{components, normalize};
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

/// What the share is: a directory, or one file.
#[derive(Debug, Clone)]
pub struct Root {
    /// Canonical directory (for a single-file share: the file's directory).
    dir: PathBuf,
    /// For a single-file share, the file's name.
    file: Option<OsString>,
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let canon = std::fs::canonicalize(path).map_err(|e| Error::local_io(path, e))?;
        let md = std::fs::metadata(&canon).map_err(|e| Error::local_io(&canon, e))?;
        if md.is_dir() {
            Ok(Root {
                dir: canon,
                file: None,
            })
        } else if md.is_file() {
            let file = canon.file_name().map(|n| n.to_os_string());
            let dir = canon.parent().unwrap_or(Path::new("/")).to_path_buf();
            Ok(Root { dir, file })
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
        let parent = self.resolve_existing(&parent_rel).map_err(|e| {
            if e.kind == crate::error::ErrorKind::NotFound {
                Error::not_found(format!("'{parent_rel}': no such directory on the server"))
            } else {
                e
            }
        })?;
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
