//! What the engine reads from and writes to, so that it works the same on
//! a local file, a file of the served share, or any other store's object.
//!
//! [`Source`] is content read front to back (with seeks, for resumed
//! offsets and HTTP ranges) that can tell whether it changed while it was
//! read; [`ReadAt`] is random access to an old copy that delta pieces copy
//! from. `std::fs::File` is both.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::MetadataExt;

/// Content to send: read from the start or from a seek offset.
pub trait Source: Read + Seek + Send + 'static {
    /// A token that differs once the content has changed (for a file:
    /// size and mtime); compared before and after sending, so a file
    /// rewritten while it is read is never sent as a mix.
    fn version(&self) -> Option<(i64, i64, u64)>;
}

impl Source for File {
    fn version(&self) -> Option<(i64, i64, u64)> {
        self.metadata()
            .ok()
            .map(|m| (m.mtime(), m.mtime_nsec(), m.len()))
    }
}

/// Random access to an old copy (the base of a delta).
pub trait ReadAt: Send + 'static {
    fn size(&self) -> io::Result<u64>;
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

/// Reads until `buf` is full or the content ends; how much was read.
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Bytes in memory are content too (tests, small generated files).
impl Source for io::Cursor<Vec<u8>> {
    fn version(&self) -> Option<(i64, i64, u64)> {
        Some((0, 0, self.get_ref().len() as u64))
    }
}
