//! The storage boundary of the share: everything the server (fts protocol
//! and web alike) does to what it serves goes through [`Store`].
//!
//! A store takes the client's relative, `/`-separated paths as they come
//! (already syntax-checked by [`crate::paths`]) and is responsible for
//! keeping every one of them inside the share: [`LocalStore`] resolves them
//! below a canonical root directory and re-checks open descriptors (see
//! `store/root.rs`); another store keeps its own namespace. Writes are never
//! visible half-done: [`Store::begin`] hands out an [`Upload`] that only
//! replaces the target when committed, and a dropped or discarded upload
//! leaves the old version in place (a resumable one keeps its partial data
//! for the next attempt). A commit is visible at once; it is durable (it
//! survives a power cut) once [`Store::make_durable`] has covered it, which
//! the server does, batched, before acknowledging an upload.
//!
//! What is policy stays with the caller: read-only shares, admin rights,
//! logging and statistics live in the server; content checks (hashes,
//! delta validation) in `transfer` and the engine.

mod local;
#[cfg(test)]
pub(crate) mod memory;
mod root;
mod s3;

pub use local::LocalStore;
use root::no_such_dir;
/// The local store's path resolution, for the fuzz targets only.
#[doc(hidden)]
pub use root::Root as FuzzRoot;
pub use s3::S3Store;

use crate::engine::hash::WholeHash;
use crate::engine::io::{ReadAt, Source};
use crate::error::Result;
use crate::model::{Entry, EntryKind, Meta, PartialInfo};
use std::io::{self, Write};

/// Readable content of a stored file: streamed (with seeks) for sending,
/// random access as the base of a delta.
pub trait Content: Source + ReadAt {}
impl<T: Source + ReadAt> Content for T {}

impl Source for Box<dyn Content> {
    fn version(&self) -> Option<(i64, i64, u64)> {
        (**self).version()
    }
}

impl ReadAt for Box<dyn Content> {
    fn size(&self) -> io::Result<u64> {
        (**self).size()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        (**self).read_exact_at(buf, offset)
    }
    fn file(&self) -> Option<&std::fs::File> {
        (**self).file()
    }
}

/// How a write begins.
#[derive(Debug, Clone, Copy)]
pub enum Begin {
    /// A whole new version of `source`: big ones are kept resumable, so a
    /// cut transfer can continue later.
    Fresh(Meta),
    /// Continue the partial data of an earlier attempt after its first
    /// `offset` bytes, which belong to version `source` of the file (a
    /// store whose partial data another writer may have replaced since it
    /// was checked refuses a mismatch).
    Resume { offset: u64, source: Meta },
    /// A plain temporary file that is never resumed (a rebuild from a
    /// delta, a browser upload).
    Temp,
}

/// A write in progress; the target changes only at [`Upload::commit`].
pub trait Upload: Send + Sync {
    /// Where the bytes go, positioned after any resumed prefix.
    fn writer(&self) -> Result<Box<dyn Write + Send>>;
    /// Writes all of `data` where [`Upload::writer`] writes (a whole small
    /// file at once).
    fn write_all(&self, data: &[u8]) -> Result<()> {
        self.writer()?
            .write_all(data)
            .map_err(|e| crate::error::Error::other(format!("write error: {e}")))
    }
    /// The local file [`Upload::writer`] writes, when there is one (sharing
    /// its position), so unchanged ranges of a delta's base can be copied
    /// by the kernel; `None` for stores that are not local files.
    fn file(&self) -> Result<Option<std::fs::File>> {
        Ok(None)
    }
    /// Replaces the target with what was written, with `meta`'s mode and
    /// times. The new version is visible at once but need not survive a
    /// power cut until [`Store::make_durable`] has covered it.
    fn commit(self: Box<Self>, meta: &Meta) -> Result<()>;
    /// What was written is wrong: do not keep it, not even for a resume.
    fn discard(&mut self);
}

/// What is at an upload target.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub entry: Option<Entry>,
    pub partial: Option<PartialInfo>,
}

/// The share's storage.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Where the share is, for people (a directory's path).
    fn location(&self) -> String;

    /// True when the share is one file rather than a directory.
    fn is_single_file(&self) -> bool;

    /// The path to report for `rel` (canonical; for a single-file share,
    /// the file's name for the root).
    fn display(&self, rel: &str) -> Result<String>;

    /// The entry at `rel`, `None` if there is none.
    fn stat(&self, rel: &str) -> Result<Option<Entry>>;

    /// The entries below directory `rel` (or `rel` itself when it is a
    /// file), handed to `each` one at a time; with `hashes`, files carry
    /// their BLAKE3.
    fn list(
        &self,
        rel: &str,
        recursive: bool,
        hashes: bool,
        each: &mut dyn FnMut(Entry) -> Result<()>,
    ) -> Result<()>;

    /// The direct entries of directory `rel`, handed to `each` one at a
    /// time; an error of kind not-found when `rel` is not a directory.
    fn list_dir(&self, rel: &str, each: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
        self.require_dir(rel)?;
        self.list(rel, false, false, each)
    }

    /// Ok when `rel` is a directory; the error of [`Store::list_dir`]
    /// otherwise.
    fn require_dir(&self, rel: &str) -> Result<()> {
        match self.stat(rel)? {
            Some(e) if e.kind == EntryKind::Dir => Ok(()),
            _ => Err(no_such_dir(rel)),
        }
    }

    /// Opens the regular file at `rel` for reading.
    fn open(&self, rel: &str) -> Result<(Box<dyn Content>, Meta)>;

    /// What is at `rel` as an upload target: the entry, and partial data
    /// left by a cut upload.
    fn probe(&self, rel: &str) -> Result<Probe>;

    /// BLAKE3 of the first `len` bytes of `rel`'s partial data, and the
    /// hash state after them.
    fn hash_partial(&self, rel: &str, len: u64) -> Result<(String, WholeHash)>;

    /// Starts writing `rel`. `None` for a resume whose partial data another
    /// transfer is writing.
    fn begin(&self, rel: &str, how: Begin) -> Result<Option<Box<dyn Upload>>>;

    /// Starts fresh uploads of whole small files of one batch, like
    /// [`Store::begin`] with [`Begin::Fresh`] for each; a store may share
    /// work between files of one directory (the local store resolves and
    /// checks each directory once).
    fn begin_many(&self, files: &[(&str, Meta)]) -> Vec<Result<Box<dyn Upload>>> {
        files
            .iter()
            .map(|(rel, meta)| {
                self.begin(rel, Begin::Fresh(*meta))?
                    .ok_or_else(|| crate::error::Error::other(format!("'{rel}' is busy")))
            })
            .collect()
    }

    /// Creates directory `rel`; an existing directory is fine.
    fn mkdir(&self, rel: &str) -> Result<()>;

    /// Makes `rel` a symlink to `target` (checked to stay inside the share),
    /// replacing what was there.
    fn symlink(&self, rel: &str, target: &str) -> Result<()>;

    /// Makes what was written at `rels` so far durable: it survives a
    /// power cut once this returns. That is the data of uploads to them
    /// not yet committed, and committed files with their names. The
    /// server calls it for a batch of verified uploads before committing
    /// them (so a name never shows data the disk lacks) and again after,
    /// before it acknowledges any of them; a store should make one batch
    /// cheaper than one call per file (the local store makes one `syncfs`
    /// per filesystem; an object store whose writes are durable when they
    /// complete has nothing to do).
    fn make_durable(&self, rels: &[String]) -> Result<()>;

    /// How many uploads of one batch the server may commit at once (on
    /// threads of its own). A local rename is quick: one after another.
    /// A store where each commit waits on the network says more.
    fn commit_parallelism(&self) -> usize {
        1
    }

    /// Sets mode and times of an existing entry.
    fn set_meta(&self, rel: &str, meta: &Meta) -> Result<()>;

    /// Removes `rel` (a directory only with `recursive`); counts of files
    /// and directories removed. The share root cannot be removed.
    fn remove(&self, rel: &str, recursive: bool) -> Result<(u64, u64)>;
}
