//! The served root and the only way the server turns a client's path into a
//! filesystem path. A remote path is relative, `/`-separated and UTF-8;
//! absolute paths and `..` are refused outright, and every resolved path is
//! canonicalised and must stay below the canonical root, so a symlink
//! inside the share that points outside it is refused too (exit 5).

use crate::error::{Error, Result};
use crate::proto::MAX_PATH;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What the share is: a directory, or one file.
#[derive(Debug, Clone)]
pub struct Root {
    /// Canonical directory (for a single-file share: the file's directory).
    dir: PathBuf,
    /// For a single-file share, the file's name.
    file: Option<OsString>,
}

/// Checks a client path and splits it into components. `""`, `"."` and
/// `"/"`-free forms all mean the root.
pub fn components(rel: &str) -> Result<Vec<&str>> {
    if rel.len() > MAX_PATH {
        return Err(Error::usage("path too long"));
    }
    if rel.contains('\0') {
        return Err(Error::permission("path contains a NUL byte"));
    }
    if rel.starts_with('/') {
        return Err(Error::permission(format!(
            "absolute path '{rel}' refused: remote paths are relative to the share root"
        )));
    }
    let mut out = Vec::new();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Error::permission(format!(
                    "path '{rel}' refused: '..' may not leave the share root"
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The canonical form of a valid remote path (`a/b`, `""` for the root).
pub fn normalize(rel: &str) -> Result<String> {
    Ok(components(rel)?.join("/"))
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

    /// The relative path to report for a root-relative request.
    pub fn display_rel(&self, rel: &str) -> Result<String> {
        let n = normalize(rel)?;
        match (&self.file, n.is_empty()) {
            (Some(_), true) => Ok(self.file_name().unwrap_or_default()),
            _ => Ok(n),
        }
    }
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
}
