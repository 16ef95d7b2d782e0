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
    /// The local file behind it, if it is one: ranges of it can then be
    /// copied by the kernel (`copy_file_range`, a reflink where the
    /// filesystem shares blocks) instead of through a buffer.
    fn file(&self) -> Option<&File> {
        None
    }
}

impl ReadAt for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn file(&self) -> Option<&File> {
        Some(self)
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

/// Has the kernel copy up to `n` bytes at `offset` of `from` to the current
/// position of `to` (which it advances), without passing them through user
/// space; on filesystems that share blocks (btrfs, XFS) that is a reflink.
/// Returns how many bytes it copied: fewer than `n` when `from` ends early
/// or an error came after some progress (the caller copies the rest). An
/// error before any progress is returned; [`copy_refused`] tells whether it
/// only means "not here" (another filesystem, no support).
pub fn copy_range(from: &File, mut offset: u64, to: &File, n: u64) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut done = 0u64;
        while done < n {
            let want = (n - done).min(1 << 30) as usize;
            let mut off = offset as libc::loff_t;
            // SAFETY: both descriptors are open for the call's duration and
            // `off` outlives it; a null output offset means "the file's own".
            let r = unsafe {
                libc::copy_file_range(
                    from.as_raw_fd(),
                    &mut off,
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    want,
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            if r == 0 {
                break;
            }
            done += r as u64;
            offset += r as u64;
        }
        Ok(done)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (from, offset, to, n);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// True when a [`copy_range`] error means the kernel will not copy between
/// these two files (different filesystems, no support), so a plain copy
/// through a buffer is the way, not a failure.
pub fn copy_refused(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::Unsupported {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        matches!(
            e.raw_os_error(),
            Some(
                libc::EXDEV
                    | libc::EOPNOTSUPP
                    | libc::ENOSYS
                    | libc::EINVAL
                    | libc::EBADF
                    | libc::EPERM
            )
        )
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// True when `f` was opened for reading and writing, as the output of
/// [`copy_range`] must be for what the kernel wrote to be read back.
pub fn read_write(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && flags & libc::O_ACCMODE == libc::O_RDWR
}
