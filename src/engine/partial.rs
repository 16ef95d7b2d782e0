//! Resumable partial files. A transfer writes into `.NAME.fts-part` beside
//! its target, with a manifest `.NAME.fts-part.json` naming the source
//! version (size, mtime) it belongs to. Only a complete, hash-verified file
//! is renamed onto the target, so a partial never shadows or replaces the
//! real file. A later transfer of the same source version continues after
//! the part's verified prefix (both sides hash it; see `transfer`).
//!
//! A part whose transfer failed its integrity check, or whose source
//! changed, is deleted; one that was merely cut off (connection lost,
//! process killed, server stopped) is kept. Parts older than
//! [`STALE_AFTER`] are deleted when next looked at.

use crate::model::Meta;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Smaller files are written to plain temp files: re-sending them costs
/// less than keeping a manifest for each.
pub const RESUME_MIN: u64 = 1 << 20;

/// Age after which an abandoned partial file is removed.
pub const STALE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Which source version a partial file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    /// When the part was started (Unix seconds).
    pub created: u64,
}

impl Manifest {
    pub fn for_source(meta: &Meta) -> Manifest {
        Manifest {
            size: meta.size,
            mtime: meta.mtime,
            mtime_ns: meta.mtime_ns,
            created: now_secs(),
        }
    }

    pub fn matches(&self, meta: &Meta) -> bool {
        self.size == meta.size && self.mtime == meta.mtime && self.mtime_ns == meta.mtime_ns
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A partial file found beside a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub len: u64,
    pub manifest: Manifest,
}

fn hidden(target: &Path, suffix: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Keep the hidden name under NAME_MAX; a hash keeps long names apart.
    let short = if name.len() > 180 {
        let mut cut = 150;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        format!(
            "{}~{}",
            &name[..cut],
            &blake3::hash(name.as_bytes()).to_hex()[..16]
        )
    } else {
        name
    };
    target.with_file_name(format!(".{short}{suffix}"))
}

pub fn part_path(target: &Path) -> PathBuf {
    hidden(target, ".fts-part")
}

pub fn manifest_path(target: &Path) -> PathBuf {
    hidden(target, ".fts-part.json")
}

/// Deletes the partial file of `target`, if any.
pub fn remove(target: &Path) {
    let _ = std::fs::remove_file(part_path(target));
    let _ = std::fs::remove_file(manifest_path(target));
}

/// The partial file of `target`, if there is a usable one. Stale or
/// inconsistent leftovers are deleted on the way.
pub fn find(target: &Path) -> Option<Found> {
    let part = part_path(target);
    let Ok(md) = std::fs::symlink_metadata(&part) else {
        // A manifest without its part is debris of a commit killed between
        // its rename and its cleanup.
        if !active().contains(&part) {
            let _ = std::fs::remove_file(manifest_path(target));
        }
        return None;
    };
    let manifest: Option<Manifest> = std::fs::read(manifest_path(target))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match manifest {
        Some(m)
            if md.is_file()
                && now_secs().saturating_sub(m.created) < STALE_AFTER.as_secs()
                && md.len() <= m.size =>
        {
            Some(Found {
                len: md.len(),
                manifest: m,
            })
        }
        _ => {
            if !active().contains(&part) {
                remove(target);
            }
            None
        }
    }
}

/// BLAKE3 of the first `len` bytes of a file, and the hasher state after
/// them (to go on hashing the rest).
pub fn hash_prefix(
    file: &mut (impl Read + Seek),
    len: u64,
) -> io::Result<(String, blake3::Hasher)> {
    file.seek(SeekFrom::Start(0))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shorter than its prefix",
            ));
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok((h.clone().finalize().to_hex().to_string(), h))
}

/// Part files being written by this process: a second writer for the same
/// target gets no part file (it falls back to a plain temp file).
static ACTIVE: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(Default::default);

fn active() -> std::sync::MutexGuard<'static, HashSet<PathBuf>> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn claim(p: &Path) -> bool {
    active().insert(p.to_path_buf())
}

fn release(p: &Path) {
    active().remove(p);
}

/// A partial file open for writing. Dropped without [`PartFile::commit`],
/// it stays on disk for a later resume unless [`PartFile::discard`] was
/// called.
#[derive(Debug)]
pub struct PartFile {
    target: PathBuf,
    path: PathBuf,
    file: File,
    keep: bool,
    done: bool,
}

impl PartFile {
    /// Starts a new part (replacing an old one) for the given source version.
    /// `Ok(None)` when another transfer in this process is writing it.
    pub fn create(target: &Path, source: &Meta) -> io::Result<Option<PartFile>> {
        Self::claimed(target, |path| {
            remove(target);
            let m = Manifest::for_source(source);
            let json = serde_json::to_vec(&m).map_err(io::Error::other)?;
            std::fs::write(manifest_path(target), json)?;
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
        })
    }

    /// Reopens an existing part to append after its first `offset` bytes.
    pub fn resume(target: &Path, offset: u64) -> io::Result<Option<PartFile>> {
        Self::claimed(target, |path| {
            let mut file = OpenOptions::new().read(true).write(true).open(path)?;
            file.set_len(offset)?;
            file.seek(SeekFrom::End(0))?;
            Ok(file)
        })
    }

    /// Claims the part of `target` for this process and opens it with `open`.
    fn claimed(
        target: &Path,
        open: impl FnOnce(&Path) -> io::Result<File>,
    ) -> io::Result<Option<PartFile>> {
        let path = part_path(target);
        if !claim(&path) {
            return Ok(None);
        }
        match open(&path) {
            Ok(file) => Ok(Some(PartFile {
                target: target.to_path_buf(),
                path,
                file,
                keep: true,
                done: false,
            })),
            Err(e) => {
                release(&path);
                Err(e)
            }
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// The data is wrong or unwanted: delete the part when dropped.
    pub fn discard(&mut self) {
        self.keep = false;
    }

    /// Applies `meta` and renames the complete file onto its target.
    pub fn commit(mut self, meta: &Meta) -> io::Result<()> {
        crate::fsutil::apply_meta_file(&self.file, meta)?;
        crate::fsutil::replacing(None, &self.target, || {
            std::fs::rename(&self.path, &self.target)
        })?;
        self.done = true;
        let _ = std::fs::remove_file(manifest_path(&self.target));
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if !self.done && !self.keep {
            remove(&self.target);
        }
        release(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn meta(size: u64) -> Meta {
        Meta {
            size,
            mtime: 1_000,
            mtime_ns: 7,
            mode: 0o644,
        }
    }

    #[test]
    fn part_survives_a_cut_and_resumes() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("file.bin");
        let mut p = PartFile::create(&target, &meta(10)).unwrap().unwrap();
        assert!(
            PartFile::create(&target, &meta(10)).unwrap().is_none(),
            "second writer"
        );
        p.file.write_all(b"hello").unwrap();
        drop(p); // cut off
        assert!(!target.exists());
        let found = find(&target).unwrap();
        assert_eq!(found.len, 5);
        assert!(found.manifest.matches(&meta(10)));
        assert!(!found.manifest.matches(&meta(11)));
        let mut f = File::open(part_path(&target)).unwrap();
        let (hex, _) = hash_prefix(&mut f, 5).unwrap();
        assert_eq!(hex, blake3::hash(b"hello").to_hex().to_string());
        let mut p = PartFile::resume(&target, 3).unwrap().unwrap();
        p.file.write_all(b"p! world").unwrap();
        p.commit(&meta(11)).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"help! world");
        assert!(find(&target).is_none());
        assert!(!manifest_path(&target).exists());
    }

    #[test]
    fn discarded_and_stale_parts_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("x");
        let mut p = PartFile::create(&target, &meta(3)).unwrap().unwrap();
        p.discard();
        drop(p);
        assert!(!part_path(&target).exists() && !manifest_path(&target).exists());

        drop(PartFile::create(&target, &meta(3)).unwrap().unwrap());
        let mut m: Manifest =
            serde_json::from_slice(&std::fs::read(manifest_path(&target)).unwrap()).unwrap();
        m.created -= STALE_AFTER.as_secs() + 1;
        std::fs::write(manifest_path(&target), serde_json::to_vec(&m).unwrap()).unwrap();
        assert!(find(&target).is_none());
        assert!(!part_path(&target).exists());

        // A part without a manifest is junk.
        std::fs::write(part_path(&target), b"zz").unwrap();
        assert!(find(&target).is_none());
        assert!(!part_path(&target).exists());
    }

    #[test]
    fn long_names_get_bounded_hidden_names() {
        let long = "n".repeat(250);
        let p = manifest_path(Path::new(&long));
        assert!(p.file_name().unwrap().len() < 255);
        assert_ne!(
            part_path(Path::new(&format!("{long}a"))),
            part_path(Path::new(&format!("{long}b")))
        );
    }
}
