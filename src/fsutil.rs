//! Local filesystem helpers shared by client and server: atomic
//! temp-file-then-rename writes, metadata capture and restore, and a
//! non-following directory walk.

use crate::error::{Error, Result};
use crate::model::{Entry, EntryKind, Meta};
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Permission bits fts carries across: rwx for all, no setuid/setgid/sticky.
pub const MODE_MASK: u32 = 0o777;

/// Writes a file readable only by its owner (keys, known_hosts, secrets).
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = TempFile::create_beside(path).map_err(|e| Error::local_io(path, e))?;
    io::Write::write_all(&mut tmp.file(), data).map_err(|e| Error::local_io(path, e))?;
    tmp.persist(path).map_err(|e| Error::local_io(path, e))
}

/// Creates `dir` and its missing parents, new ones readable by the owner
/// only (for config directories holding secrets).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::local_io(dir, e))
}

/// Random lowercase hex, for temp names.
pub fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("system RNG unavailable");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Is this a name fts itself uses for in-flight files (temp files,
/// resumable parts and their manifests)?
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && (name.ends_with(".fts-tmp")
            || name.ends_with(".fts-part")
            || name.ends_with(".fts-part.json"))
}

/// A fresh hidden name beside `target`: `.NAME.XXXXXXXX.fts-tmp`, kept under
/// NAME_MAX (255) whatever the target's length.
fn temp_name(target: &Path) -> PathBuf {
    hidden_name(target, &random_hex(4))
}

/// `.NAME.TAG.fts-tmp` beside `target`, NAME cut to keep under NAME_MAX.
fn hidden_name(target: &Path, tag: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cut = name.len().min(200);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    target.with_file_name(format!(".{}.{tag}.fts-tmp", &name[..cut]))
}

/// A file being written beside its target. It only ever appears under the
/// target's name through [`TempFile::persist`] (an atomic rename or link);
/// if it is dropped before that, it is removed, so an interrupted transfer
/// never leaves a truncated file under the real name.
///
/// On Linux the file has no name at all while it is written (`O_TMPFILE`
/// in the target's directory), so even a process killed by SIGKILL, which
/// runs no destructor, leaves nothing behind: the kernel frees it. Where
/// the filesystem cannot do that, it is a hidden `.NAME.XXXXXXXX.fts-tmp`.
#[derive(Debug)]
pub struct TempFile {
    /// The named temp file, or for an unnamed one the name it would be
    /// linked under (for messages).
    path: PathBuf,
    file: File,
    unnamed: bool,
    done: bool,
    /// The open directory the file is named in, when it was made there
    /// (`path` then names it only for messages and by its last component).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    dir: Option<std::sync::Arc<File>>,
}

impl TempFile {
    pub fn create_beside(target: &Path) -> io::Result<TempFile> {
        #[cfg(target_os = "linux")]
        if let Some(t) = Self::unnamed(target)? {
            return Ok(t);
        }
        for _ in 0..8 {
            let path = temp_name(target);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file,
                        unnamed: false,
                        done: false,
                        dir: None,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "could not create a temporary file",
        ))
    }

    /// An `O_TMPFILE` file in the target's directory; `None` where the
    /// filesystem (or kernel) has no such thing, or where it could not be
    /// given a name later (no /proc to link it through).
    #[cfg(target_os = "linux")]
    fn unnamed(target: &Path) -> io::Result<Option<TempFile>> {
        if !proc_fd() {
            return Ok(None);
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(dir)
        {
            Ok(file) => Ok(Some(TempFile {
                // Only for messages: the file has no name, so no need of a
                // random one (which costs a getrandom call).
                path: hidden_name(target, "unnamed"),
                file,
                unnamed: true,
                done: false,
                dir: None,
            })),
            // EOPNOTSUPP: the filesystem cannot; EISDIR: the kernel
            // predates O_TMPFILE (it reads the flags as O_DIRECTORY).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// An unnamed file in the open directory `dir`, to be named
    /// `target`'s last component there: what happens to the directory's
    /// path meanwhile does not matter, and no call walks the path again.
    /// `None` where the filesystem has no unnamed files.
    #[cfg(target_os = "linux")]
    pub fn unnamed_in(dir: std::sync::Arc<File>, target: &Path) -> io::Result<Option<TempFile>> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // Linking by descriptor alone needs Linux 6.10 (or a privilege);
        // without /proc there would be no way to name the file at all.
        if !proc_fd() {
            return Ok(None);
        }
        // SAFETY: a valid NUL-terminated string and an open descriptor.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c".".as_ptr(),
                libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(TempFile {
            path: hidden_name(target, "unnamed"),
            // SAFETY: `fd` was just opened and is owned by nothing else.
            file: unsafe { File::from_raw_fd(fd) },
            unnamed: true,
            done: false,
            dir: Some(dir),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Applies `meta` (mode, mtime) and renames onto `target`.
    pub fn commit(self, target: &Path, meta: &Meta) -> io::Result<()> {
        apply_meta_file(&self.file, meta)?;
        self.persist(target)
    }

    /// Renames (or links) onto `target` as is.
    pub fn persist(mut self, target: &Path) -> io::Result<()> {
        if self.unnamed {
            #[cfg(target_os = "linux")]
            self.link_onto(target)?;
        } else {
            replacing(None, target, || std::fs::rename(&self.path, target))?;
        }
        self.done = true;
        Ok(())
    }

    /// Gives the unnamed file the name `target`. A new target is one link,
    /// atomic and with nothing to clean up; an existing one is replaced by
    /// linking a temp name and renaming that over it, so only a kill
    /// between those two calls can leave a temp file behind.
    #[cfg(target_os = "linux")]
    fn link_onto(&mut self, target: &Path) -> io::Result<()> {
        let dir = self.dir.clone();
        let dir = dir.as_deref();
        let fd = &self.file;
        match link_followed(fd, dir, target) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => return other,
        }
        for _ in 0..8 {
            let tmp = temp_name(target);
            match link_followed(fd, dir, &tmp) {
                Ok(()) => {
                    self.path = tmp;
                    return replacing(dir, target, || rename_in(dir, &self.path, target))
                        .inspect_err(|_| {
                            let _ = remove_in(dir, &self.path);
                        });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "could not name a temporary file",
        ))
    }
}

#[cfg(target_os = "linux")]
fn c_path(p: &Path) -> io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// `p` as `*at(2)` calls take it: relative to the open directory `dir`
/// (by its last component), else as is.
#[cfg(target_os = "linux")]
fn at(dir: Option<&File>, p: &Path) -> io::Result<(libc::c_int, std::ffi::CString)> {
    use std::os::fd::AsRawFd;
    match dir {
        Some(d) => {
            let name = p.file_name().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "a path without a name")
            })?;
            Ok((d.as_raw_fd(), c_path(Path::new(name))?))
        }
        None => Ok((libc::AT_FDCWD, c_path(p)?)),
    }
}

/// What is named `name` in the open directory `dir`, not following a
/// symlink: its `S_IFMT` bits (`libc::S_IFDIR`, …), `None` if nothing is.
#[cfg(target_os = "linux")]
pub fn kind_at(dir: &File, name: &str) -> io::Result<Option<libc::mode_t>> {
    use std::os::fd::AsRawFd;
    let c = c_path(Path::new(name))?;
    Ok(lstat_at(dir.as_raw_fd(), &c)?.map(|st| st.st_mode & libc::S_IFMT))
}

/// The directories and symlinks in the open directory `dir` (an `O_PATH`
/// descriptor will do), by name, with the `S_IFMT` bits [`kind_at`] would
/// give, from one listing instead of a lookup per name; `None` when `dir`
/// has more than `max` entries or the filesystem leaves an entry's type
/// out of the listing (ask [`kind_at`] then). Names that are not UTF-8 are
/// left out: no upload target has one.
#[cfg(target_os = "linux")]
pub fn special_names(
    dir: &File,
    max: usize,
) -> io::Result<Option<std::collections::HashMap<String, libc::mode_t>>> {
    use rustix::fs::{FileType, Mode, OFlags};
    let fd = rustix::fs::openat(
        dir,
        c".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // In a case-insensitive directory (`chattr +F`) the kernel matches a
    // name in another case, this map would not: look names up one by one.
    const FS_CASEFOLD_FL: u32 = 0x4000_0000;
    if rustix::fs::ioctl_getflags(&fd).is_ok_and(|f| f.bits() & FS_CASEFOLD_FL != 0) {
        return Ok(None);
    }
    let mut listing = rustix::fs::Dir::new(fd)?;
    let mut out = std::collections::HashMap::new();
    // `.` and `..` are listed too.
    let mut left = max + 2;
    while let Some(e) = listing.read() {
        let e = e?;
        if left == 0 {
            return Ok(None);
        }
        left -= 1;
        let kind = match e.file_type() {
            FileType::Directory => libc::S_IFDIR,
            FileType::Symlink => libc::S_IFLNK,
            FileType::Unknown => return Ok(None),
            _ => continue,
        };
        match std::str::from_utf8(e.file_name().to_bytes()) {
            Ok("." | "..") | Err(_) => {}
            Ok(name) => {
                out.insert(name.to_string(), kind);
            }
        }
    }
    Ok(Some(out))
}

/// `fstatat(2)` of `name` in directory `dfd`, not following a symlink;
/// `None` if nothing is there.
#[cfg(target_os = "linux")]
fn lstat_at(dfd: libc::c_int, name: &std::ffi::CStr) -> io::Result<Option<libc::stat>> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: a valid string and descriptor; `st` is written on success.
    let r = unsafe {
        libc::fstatat(
            dfd,
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::NotFound => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: fstatat succeeded and filled it.
    Ok(Some(unsafe { st.assume_init() }))
}

#[cfg(target_os = "linux")]
fn ok_or_errno(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Is /proc/self/fd there (to name unnamed files and check where open
/// files are)? Asked once: a busy server makes a temp file per small file.
#[cfg(target_os = "linux")]
fn proc_fd() -> bool {
    static PROC_FD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROC_FD.get_or_init(|| Path::new("/proc/self/fd").is_dir())
}

/// Gives the open (unnamed) file `file` the name `to`: `linkat(2)` on the
/// descriptor itself (`AT_EMPTY_PATH`, which Linux 6.10 and later allow
/// to the file's opener), else through its /proc/self/fd magic link.
#[cfg(target_os = "linux")]
fn link_followed(file: &File, dir: Option<&File>, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Cleared at the first refusal (an older kernel, no privilege).
    static BY_FD: AtomicBool = AtomicBool::new(true);
    let (dfd, to) = at(dir, to)?;
    if BY_FD.load(Ordering::Relaxed) {
        // SAFETY: valid NUL-terminated strings and descriptors.
        let r = ok_or_errno(unsafe {
            libc::linkat(
                file.as_raw_fd(),
                c"".as_ptr(),
                dfd,
                to.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        });
        match r.as_ref().map_err(io::Error::raw_os_error) {
            Err(Some(libc::ENOENT | libc::EPERM)) => {}
            _ => return r,
        }
    }
    let from = c_path(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))?;
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    let r = ok_or_errno(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            dfd,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    });
    if r.is_ok() {
        // The kernel refused what /proc allowed: stop asking it.
        BY_FD.store(false, Ordering::Relaxed);
    }
    r
}

#[cfg(target_os = "linux")]
fn rename_in(dir: Option<&File>, from: &Path, to: &Path) -> io::Result<()> {
    let ((dfd, from), (_, to)) = (at(dir, from)?, at(dir, to)?);
    // SAFETY: valid NUL-terminated strings that outlive the call.
    ok_or_errno(unsafe { libc::renameat(dfd, from.as_ptr(), dfd, to.as_ptr()) })
}

#[cfg(target_os = "linux")]
fn remove_in(dir: Option<&File>, p: &Path) -> io::Result<()> {
    let (dfd, p) = at(dir, p)?;
    // SAFETY: a valid NUL-terminated string that outlives the call.
    ok_or_errno(unsafe { libc::unlinkat(dfd, p.as_ptr(), 0) })
}

/// Old versions at least this large are let go by [`release_later`].
#[cfg(target_os = "linux")]
const RELEASE_LATER_MIN: u64 = 1 << 20;

/// Runs `rename`, which replaces `target` (in `dir`, when given). A large
/// file replaced this way has its data freed when its last link goes,
/// inside the rename: 47 ms for 512 MiB on tmpfs, and more on a disk
/// filesystem that frees the blocks. The old version is held open across
/// the rename and closed by [`release_later`], so the caller (the
/// acknowledgement of an upload, the end of a download) does not wait for
/// it.
pub fn replacing<T>(
    dir: Option<&File>,
    target: &Path,
    rename: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let old = hold_large(dir, target);
    let done = rename();
    if let Some(f) = old {
        release_later(f);
    }
    done
}

/// The file at `target` when it is a regular file of at least
/// [`RELEASE_LATER_MIN`] bytes, this is its only link, and it is on a
/// local filesystem ([`frees_in_place`]), opened without reading rights
/// (`O_PATH`) or following a symlink; `None` otherwise. A small target
/// costs one `fstatat`.
#[cfg(target_os = "linux")]
fn hold_large(dir: Option<&File>, target: &Path) -> Option<File> {
    use std::os::fd::FromRawFd;
    let (dfd, name) = at(dir, target).ok()?;
    let st = lstat_at(dfd, &name).ok()??;
    let large = st.st_mode & libc::S_IFMT == libc::S_IFREG
        && st.st_nlink == 1
        && st.st_size as u64 >= RELEASE_LATER_MIN;
    if !large {
        return None;
    }
    // SAFETY: a valid NUL-terminated string that outlives the call.
    let fd = unsafe {
        libc::openat(
            dfd,
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let f = unsafe { File::from_raw_fd(fd) };
    frees_in_place(&f).then_some(f)
}

/// Whether `f` is on a local filesystem where holding a replaced file
/// open only delays freeing it. A network filesystem would instead keep
/// the old file under another name while it is open (NFS renames it to
/// `.nfs…`), which a later removal of its directory trips over.
#[cfg(target_os = "linux")]
fn frees_in_place(f: &File) -> bool {
    use std::os::fd::AsRawFd;
    const LOCAL: [i64; 8] = [
        0x0102_1994, // tmpfs
        0xEF53,      // ext2/3/4
        0x5846_5342, // XFS
        0x9123_683E, // btrfs
        0xF2F5_2010, // F2FS
        0xCA45_1A4E, // bcachefs
        0x2FC1_2FC1, // ZFS
        0x794C_7630, // overlayfs (containers)
    ];
    let mut sf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: an open descriptor; `sf` is written on success.
    if unsafe { libc::fstatfs(f.as_raw_fd(), sf.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded.
    // `f_type`'s width differs between targets.
    #[allow(clippy::unnecessary_cast)]
    let kind = unsafe { sf.assume_init() }.f_type as i64;
    LOCAL.contains(&kind)
}

#[cfg(not(target_os = "linux"))]
fn hold_large(_: Option<&File>, _: &Path) -> Option<File> {
    None
}

/// Closes `f` on a thread of its own (one for the process, started on
/// first use; a few files queue, past that or without the thread the
/// caller closes it).
fn release_later(f: File) {
    static RELEASER: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<File>>> =
        std::sync::OnceLock::new();
    let tx = RELEASER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<File>(16);
        std::thread::Builder::new()
            .name("fts-release".into())
            .spawn(move || rx.into_iter().for_each(drop))
            .ok()
            .map(|_| tx)
    });
    // A full queue (or no thread) hands the file back: it closes here.
    if let Some(tx) = tx {
        let _ = tx.try_send(f);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done && !self.unnamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes what was written at the paths `files` survive a power cut: their
/// data, their inodes and the directory entries that name them. On Linux
/// that includes temporary files not yet renamed onto them (they live
/// beside their targets, on the same filesystem), so callers make the
/// data durable before the renames and the names after. Returns the
/// number of durability passes made.
///
/// On Linux that is one `syncfs(2)` per filesystem the files are on, not
/// one `fsync` per file: on a journalling filesystem every `fsync` waits
/// for a journal commit of its own, so a thousand small files would cost
/// a thousand commits, while one `syncfs` writes them all back (new
/// directories and their entries included) in one. The price is that it
/// also writes back whatever else is dirty on that filesystem. Since
/// Linux 5.8 `syncfs` reports writeback errors, so a failure is not
/// silent. Elsewhere each file and each distinct parent directory is
/// fsynced.
pub fn make_durable(files: &[PathBuf]) -> io::Result<u64> {
    if files.is_empty() {
        return Ok(0);
    }
    let dirs: std::collections::BTreeSet<&Path> = files
        .iter()
        .map(|f| f.parent().unwrap_or(Path::new(".")))
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .collect();
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let mut devices = std::collections::BTreeSet::new();
        for dir in dirs {
            let dev = std::fs::metadata(dir)?.dev();
            if devices.insert(dev) {
                let d = open_on_device(dir, dev)?;
                // SAFETY: `d` is an open descriptor for the whole call.
                if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(devices.len() as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        for f in files {
            File::open(f)?.sync_all()?;
        }
        for dir in dirs {
            File::open(dir)?.sync_all()?;
        }
        Ok(1)
    }
}

/// Something open on filesystem `dev`, for `syncfs`: directory `dir`, or
/// where it cannot be read (a drop-box directory, write and search only)
/// the nearest directory above it on the same filesystem.
#[cfg(target_os = "linux")]
fn open_on_device(dir: &Path, dev: u64) -> io::Result<File> {
    let refused = match File::open(dir) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => e,
        other => return other,
    };
    for up in dir.ancestors().skip(1) {
        if std::fs::metadata(up).is_ok_and(|m| m.dev() == dev) {
            if let Ok(f) = File::open(up) {
                return Ok(f);
            }
        }
    }
    Err(refused)
}

/// Sets permission bits and mtime on an open file.
pub fn apply_meta_file(f: &File, meta: &Meta) -> io::Result<()> {
    f.set_permissions(std::fs::Permissions::from_mode(meta.mode & MODE_MASK))?;
    let t = filetime::FileTime::from_unix_time(meta.mtime, meta.mtime_ns);
    filetime::set_file_handle_times(f, Some(t), Some(t))
}

/// Sets permission bits and mtime on a path (directories).
pub fn apply_meta_path(p: &Path, meta: &Meta) -> io::Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(meta.mode & MODE_MASK))?;
    let t = filetime::FileTime::from_unix_time(meta.mtime, meta.mtime_ns);
    filetime::set_file_times(p, t, t)
}

pub fn meta_of(m: &Metadata) -> Meta {
    Meta {
        size: if m.is_file() { m.len() } else { 0 },
        mtime: m.mtime(),
        mtime_ns: m.mtime_nsec().clamp(0, 999_999_999) as u32,
        mode: m.mode() & MODE_MASK,
    }
}

/// Refuses a symlink target that is absolute or climbs out of the root
/// from the link's directory `parent_rel` (so that mirrored links can never
/// point outside a share, even before path checks would catch them).
///
/// `..` may only come first (`../../x`), never after a name (`a/../x`):
/// counted on the text alone, `a/b/..` stays inside, but when `a/b` is
/// itself a link (to `..`, say) it resolves one level higher than it reads,
/// and a chain of such links leads out. That was the `--safe-links` bypass
/// of rsync (CVE-2024-12088); its fix is the same rule. Names after the
/// leading `..`s only descend, so a target through links that obey this
/// rule stays inside too.
pub fn check_link_target(parent_rel: &str, target: &str) -> Result<()> {
    let bad = || Error::permission(format!("symlink target '{target}' leads outside the root"));
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return Err(bad());
    }
    let mut depth = parent_rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .count();
    let mut descended = false;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." if descended => return Err(bad()),
            ".." => depth = depth.checked_sub(1).ok_or_else(bad)?,
            _ => {
                depth += 1;
                descended = true;
            }
        }
    }
    Ok(())
}

/// Atomically replaces whatever is at `path` (not a directory) with a
/// symlink to `target`.
pub fn replace_with_symlink(path: &Path, target: &str) -> io::Result<()> {
    if std::fs::symlink_metadata(path)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        ));
    }
    let tmp = temp_name(path);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

pub fn entry_of(rel: String, m: &Metadata) -> Entry {
    let meta = meta_of(m);
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    Entry {
        path: rel,
        kind,
        size: meta.size,
        mtime: meta.mtime,
        mtime_ns: meta.mtime_ns,
        mode: meta.mode,
        target: None,
        hash: None,
    }
}

pub fn join_rel(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        return name.to_string();
    }
    // Not `format!`: this runs once per entry of every listing.
    let mut s = String::with_capacity(prefix.len() + 1 + name.len());
    s.push_str(prefix);
    s.push('/');
    s.push_str(name);
    s
}

/// Opens files for reading relative to their directory, which it keeps
/// open while files of the same directory follow one another (as a sync
/// sends them): the kernel looks up one name per file instead of every
/// component of its path (the path walks were ~7 % of the client's time
/// sending small files; the client's CPU fell 2 %).
/// A path resolves as `File::open` resolves it, the directory part as of
/// when that directory was first opened here (a failed open tries the
/// path again; a directory renamed away and replaced by another while its
/// files are being sent is still read from the first one).
#[derive(Default)]
pub struct Opener {
    #[cfg(target_os = "linux")]
    dir: Option<(PathBuf, std::os::fd::OwnedFd)>,
}

impl Opener {
    pub fn open(&mut self, path: &Path) -> io::Result<File> {
        #[cfg(target_os = "linux")]
        if let (Some(parent), Some(name)) = (path.parent(), path.file_name()) {
            use rustix::fs::{Mode, OFlags};
            if self.dir.as_ref().is_none_or(|(d, _)| d != parent) {
                let dir = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
                self.dir = rustix::fs::open(dir, flags, Mode::empty())
                    .ok()
                    .map(|fd| (parent.to_path_buf(), fd));
            }
            if let Some((_, dir)) = &self.dir {
                let flags = OFlags::RDONLY | OFlags::CLOEXEC;
                match rustix::fs::openat(dir, name, flags, Mode::empty()) {
                    Ok(fd) => return Ok(fd.into()),
                    // The directory may have been replaced since it was
                    // opened: the path decides, as `File::open` would.
                    Err(_) => self.dir = None,
                }
            }
        }
        File::open(path)
    }
}

/// Walks `dir` (whose relative name is `rel`) without following symlinks,
/// in name order, calling `f` for every entry below it. Names that are not
/// UTF-8 and fts's own temp files are passed to `skipped` instead.
pub fn walk(
    dir: &Path,
    rel: &str,
    recursive: bool,
    f: &mut dyn FnMut(PathBuf, Entry) -> Result<()>,
    skipped: &mut dyn FnMut(&Path),
) -> Result<()> {
    let mut stack = vec![(dir.to_path_buf(), rel.to_string())];
    while let Some((dir, rel)) = stack.pop() {
        let mut subdirs = Vec::new();
        let mut visit = |name: &str, entry: Option<Entry>| -> Result<()> {
            let path = dir.join(name);
            let Some(mut entry) = entry else {
                return Ok(()); // vanished while listing
            };
            if entry.kind == EntryKind::Symlink {
                entry.target = link_target(&path);
            }
            if recursive && entry.kind == EntryKind::Dir {
                subdirs.push((path.clone(), entry.path.clone()));
            }
            f(path, entry)
        };
        list_sorted(&dir, &rel, &mut visit, skipped).map_err(|e| Error::local_io(&dir, e))??;
        // Reverse so that popping visits subdirectories in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

/// The entries of directory `dir` alone, as [`walk`] gives them but
/// without making a path for each (a sync's directory digest needs none;
/// the server's CPU over a 1,000,000-file re-sync fell 1.84 → 1.66 s).
pub fn list_entries(
    dir: &Path,
    rel: &str,
    each: &mut dyn FnMut(Entry) -> Result<()>,
) -> Result<()> {
    let mut visit = |name: &str, entry: Option<Entry>| match entry {
        Some(mut e) => {
            if e.kind == EntryKind::Symlink {
                e.target = link_target(&dir.join(name));
            }
            each(e)
        }
        None => Ok(()), // vanished while listing
    };
    list_sorted(dir, rel, &mut visit, &mut |_| {}).map_err(|e| Error::local_io(dir, e))?
}

/// Where the symlink at `path` points, if that is UTF-8.
fn link_target(path: &Path) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .and_then(|t| t.into_os_string().into_string().ok())
}

/// Calls `visit` with each UTF-8 name in directory `dir` (relative name
/// `rel`) but fts's temp files, in name order, and its entry (`None` if it
/// vanished meanwhile), without following symlinks; other names go to
/// `skipped`. The outer error is the directory's own, the inner one
/// `visit`'s.
///
/// On Linux the names come from `getdents` into one buffer and each entry
/// from an `fstatat` on the open directory: the kernel looks up one name,
/// not every component of a path, and no name is allocated on its own.
/// Listing was most of an unchanged re-sync's time, on both sides.
#[cfg(target_os = "linux")]
fn list_sorted(
    dir: &Path,
    rel: &str,
    visit: &mut dyn FnMut(&str, Option<Entry>) -> Result<()>,
    skipped: &mut dyn FnMut(&Path),
) -> io::Result<Result<()>> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    use std::os::unix::ffi::OsStrExt;
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut listing = rustix::fs::Dir::new(fd)?;
    // Every name with its NUL, one after the other; (start, length).
    let mut names = Vec::new();
    let mut spans = Vec::new();
    while let Some(e) = listing.read() {
        let e = e?;
        let name = e.file_name().to_bytes_with_nul();
        if name != b".\0" && name != b"..\0" {
            spans.push((names.len(), name.len() - 1));
            names.extend_from_slice(name);
        }
    }
    spans.sort_unstable_by(|a, b| names[a.0..a.0 + a.1].cmp(&names[b.0..b.0 + b.1]));
    let dfd = listing.fd()?;
    for (start, len) in spans {
        let name = std::ffi::OsStr::from_bytes(&names[start..start + len]);
        let c_name = std::ffi::CStr::from_bytes_with_nul(&names[start..=start + len]).ok();
        let stat = |name: &str| {
            // rustix's `stat` is 64-bit on every target (sizes, times).
            let st = rustix::fs::statat(dfd, c_name?, AtFlags::SYMLINK_NOFOLLOW).ok()?;
            Some(entry_of_stat(join_rel(rel, name), &st))
        };
        if let Err(e) = offer(dir, name, stat, visit, skipped) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

#[cfg(not(target_os = "linux"))]
fn list_sorted(
    dir: &Path,
    rel: &str,
    visit: &mut dyn FnMut(&str, Option<Entry>) -> Result<()>,
    skipped: &mut dyn FnMut(&Path),
) -> io::Result<Result<()>> {
    // Each name is fetched once: sorting on `DirEntry::file_name` would
    // allocate it again at every comparison.
    let mut items: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name(), e))
        .collect();
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, it) in items {
        let stat = |name: &str| Some(entry_of(join_rel(rel, name), &it.metadata().ok()?));
        if let Err(e) = offer(dir, &name, stat, visit, skipped) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

/// One name of [`list_sorted`]'s listing of `dir`: a name that is not
/// UTF-8 goes to `skipped`, fts's temp files nowhere, any other to
/// `visit` with the entry `stat` gives for it.
fn offer(
    dir: &Path,
    name: &std::ffi::OsStr,
    stat: impl FnOnce(&str) -> Option<Entry>,
    visit: &mut dyn FnMut(&str, Option<Entry>) -> Result<()>,
    skipped: &mut dyn FnMut(&Path),
) -> Result<()> {
    let Some(name) = name.to_str() else {
        skipped(&dir.join(name));
        return Ok(());
    };
    if is_temp_name(name) {
        return Ok(());
    }
    visit(name, stat(name))
}

/// [`entry_of`] from a `stat` buffer.
#[cfg(target_os = "linux")]
// The field types of `stat` differ between architectures.
#[allow(clippy::unnecessary_cast)]
fn entry_of_stat(rel: String, st: &rustix::fs::Stat) -> Entry {
    let fmt = st.st_mode as u32 & libc::S_IFMT;
    Entry {
        path: rel,
        kind: match fmt {
            libc::S_IFLNK => EntryKind::Symlink,
            libc::S_IFDIR => EntryKind::Dir,
            _ => EntryKind::File,
        },
        size: if fmt == libc::S_IFREG {
            st.st_size as u64
        } else {
            0
        },
        mtime: st.st_mtime as i64,
        mtime_ns: (st.st_mtime_nsec as i64).clamp(0, 999_999_999) as u32,
        mode: st.st_mode as u32 & MODE_MASK,
        target: None,
        hash: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process still has `path`'s old inode open (its fd
    /// link reads "PATH (deleted)").
    #[cfg(target_os = "linux")]
    fn still_open_deleted(path: &Path) -> bool {
        let gone = format!("{} (deleted)", path.display());
        std::fs::read_dir("/proc/self/fd").unwrap().any(|e| {
            std::fs::read_link(e.unwrap().path()).is_ok_and(|l| l.as_os_str() == gone.as_str())
        })
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_a_large_file_with_one_link_is_held_across_its_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![7u8; RELEASE_LATER_MIN as usize]).unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"tiny").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        // Held where the filesystem frees in place (tmpfs, ext4, overlayfs…).
        let local = frees_in_place(&File::open(dir.path()).unwrap());
        assert_eq!(hold_large(None, &big).is_some(), local);
        assert!(hold_large(None, &small).is_none());
        assert!(hold_large(None, &link).is_none(), "followed a symlink");
        assert!(hold_large(None, &dir.path().join("missing")).is_none());
        std::fs::hard_link(&big, dir.path().join("second")).unwrap();
        assert!(hold_large(None, &big).is_none(), "freed by no rename");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_replaced_large_file_is_let_go_after_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data.bin");
        std::fs::write(&target, vec![1u8; 2 << 20]).unwrap();
        let new = dir.path().join("new");
        std::fs::write(&new, b"new version").unwrap();
        replacing(None, &target, || std::fs::rename(&new, &target)).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new version");
        // The old version is closed by the release thread, soon.
        let t = std::time::Instant::now();
        while still_open_deleted(&target) {
            assert!(t.elapsed().as_secs() < 10, "old version never let go");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // A failed rename leaves the target as it was.
        let e = replacing(None, &target, || {
            std::fs::rename(dir.path().join("nope"), &target)
        });
        assert!(e.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"new version");
    }

    #[test]
    fn one_durability_pass_covers_many_files_on_one_filesystem() {
        assert_eq!(make_durable(&[]).unwrap(), 0);
        let d = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..50)
            .map(|i| {
                let p = d.path().join(format!("s{}", i % 5)).join(format!("f{i}"));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, b"x").unwrap();
                p
            })
            .collect();
        assert_eq!(make_durable(&files).unwrap(), 1);
        // Where the directory is gone nothing can be made durable: that
        // is an error, not a silent success.
        let gone = d.path().join("no-such-dir/f");
        assert!(make_durable(&[gone]).is_err());
    }

    #[test]
    fn temp_file_is_removed_unless_persisted() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("t.bin");
        let t = TempFile::create_beside(&target).unwrap();
        let p = t.path().to_path_buf();
        assert!(is_temp_name(p.file_name().unwrap().to_str().unwrap()));
        // Unnamed on Linux: nothing in the directory at all while it lives.
        let names = || std::fs::read_dir(d.path()).unwrap().count();
        assert_eq!(names() == 0, t.unnamed);
        drop(t);
        assert_eq!(names(), 0);

        let t = TempFile::create_beside(&target).unwrap();
        io::Write::write_all(&mut t.file(), b"x").unwrap();
        let meta = Meta {
            size: 1,
            mtime: 1_000_000,
            mtime_ns: 5,
            mode: 0o640,
        };
        t.commit(&target, &meta).unwrap();
        let md = std::fs::metadata(&target).unwrap();
        assert_eq!(md.mtime(), 1_000_000);
        assert_eq!(md.mode() & 0o777, 0o640);
    }

    #[test]
    fn temp_file_replaces_an_existing_target_and_leaves_no_name() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("t.bin");
        for content in [&b"first"[..], b"second, longer"] {
            let t = TempFile::create_beside(&target).unwrap();
            io::Write::write_all(&mut t.file(), content).unwrap();
            t.persist(&target).unwrap();
            assert_eq!(std::fs::read(&target).unwrap(), content);
            let names: Vec<_> = std::fs::read_dir(d.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["t.bin"]);
        }
    }

    #[test]
    fn link_targets_stay_inside() {
        assert!(check_link_target("", "a/b").is_ok());
        assert!(check_link_target("d/e", "../../x").is_ok());
        assert!(check_link_target("d", "../../x").is_err());
        assert!(check_link_target("", "../x").is_err());
        assert!(check_link_target("", "/etc").is_err());
        assert!(check_link_target("a", "b/../../..").is_err());
        // `..` after a name: inside on paper, out through a link (a/b -> ..).
        assert!(check_link_target("", "a/b/..").is_err());
        assert!(check_link_target("d", "../a/../b").is_err());
        assert!(check_link_target("d/e", "../../a/b").is_ok());
        assert!(check_link_target("", "./a/./b").is_ok());
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l");
        std::fs::write(&p, b"file in the way").unwrap();
        replace_with_symlink(&p, "target").unwrap();
        assert_eq!(std::fs::read_link(&p).unwrap(), Path::new("target"));
        std::fs::create_dir(d.path().join("dir")).unwrap();
        assert!(replace_with_symlink(&d.path().join("dir"), "x").is_err());
    }

    #[test]
    fn long_names_get_short_temp_names() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("é".repeat(120));
        let t = TempFile::create_beside(&target).unwrap();
        assert!(t.path().file_name().unwrap().len() <= 255);
    }

    #[test]
    fn the_opener_opens_what_file_open_opens() {
        use std::io::Read;
        let d = tempfile::tempdir().unwrap();
        let p = |s: &str| d.path().join(s);
        std::fs::create_dir_all(p("a")).unwrap();
        std::fs::create_dir_all(p("b")).unwrap();
        std::fs::write(p("a/x"), b"ax").unwrap();
        std::fs::write(p("a/y"), b"ay").unwrap();
        std::fs::write(p("b/x"), b"bx").unwrap();
        std::os::unix::fs::symlink("y", p("a/link")).unwrap();
        let mut o = Opener::default();
        for name in ["a/x", "a/y", "b/x", "a/link", "a/x"] {
            let mut got = String::new();
            o.open(&p(name)).unwrap().read_to_string(&mut got).unwrap();
            assert_eq!(got.as_bytes(), std::fs::read(p(name)).unwrap(), "{name}");
        }
        let missing = o.open(&p("a/missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(o.open(&p("gone/x")).is_err());
        // A directory removed and made again meanwhile: the path decides.
        o.open(&p("a/x")).unwrap();
        std::fs::remove_dir_all(p("a")).unwrap();
        std::fs::create_dir(p("a")).unwrap();
        std::fs::write(p("a/x"), b"new").unwrap();
        let mut got = String::new();
        o.open(&p("a/x")).unwrap().read_to_string(&mut got).unwrap();
        assert_eq!(got, "new");
    }

    #[test]
    fn walk_lists_in_order_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("b/c")).unwrap();
        std::fs::write(d.path().join("a"), b"1").unwrap();
        std::fs::write(d.path().join("b/c/x"), b"22").unwrap();
        std::os::unix::fs::symlink("/", d.path().join("b/l")).unwrap();
        let mut seen = vec![];
        walk(
            d.path(),
            "",
            true,
            &mut |_, e| {
                seen.push((e.path, e.kind));
                Ok(())
            },
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(
            seen,
            vec![
                ("a".into(), EntryKind::File),
                ("b".into(), EntryKind::Dir),
                ("b/c".into(), EntryKind::Dir),
                ("b/l".into(), EntryKind::Symlink),
                ("b/c/x".into(), EntryKind::File),
            ]
        );
    }

    /// Every entry as `entry_of` makes it from `symlink_metadata` (the
    /// fast listing reads the same fields from `fstatat`), with the path
    /// handed over and a symlink's target; names that are not UTF-8 are
    /// skipped and reported, fts's own temp files skipped silently.
    #[test]
    fn walk_gives_what_symlink_metadata_gives() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = |s: &str| d.path().join(s);
        std::fs::create_dir(p("dir")).unwrap();
        std::fs::write(p("file"), b"12345").unwrap();
        std::fs::set_permissions(p("file"), std::fs::Permissions::from_mode(0o640)).unwrap();
        let t = filetime::FileTime::from_unix_time(1_700_000_000, 123_456_789);
        filetime::set_file_times(p("file"), t, t).unwrap();
        std::os::unix::fs::symlink("file", p("link")).unwrap();
        std::fs::write(p(".x.12345678.fts-tmp"), b"temp").unwrap();
        let odd = d.path().join(std::ffi::OsStr::from_bytes(b"odd\xff"));
        std::fs::write(&odd, b"?").unwrap();
        let (mut seen, mut skipped) = (vec![], vec![]);
        walk(
            d.path(),
            "top",
            false,
            &mut |path, e| {
                seen.push((path, e));
                Ok(())
            },
            &mut |path| skipped.push(path.to_path_buf()),
        )
        .unwrap();
        assert_eq!(skipped, vec![odd]);
        let names: Vec<&str> = seen.iter().map(|(_, e)| e.path.as_str()).collect();
        assert_eq!(names, ["top/dir", "top/file", "top/link"]);
        for (path, e) in &seen {
            let md = std::fs::symlink_metadata(path).unwrap();
            let mut want = entry_of(e.path.clone(), &md);
            want.target = (e.kind == EntryKind::Symlink).then(|| "file".to_string());
            assert_eq!(format!("{e:?}"), format!("{want:?}"));
        }
        assert_eq!((seen[1].1.size, seen[1].1.mode), (5, 0o640));
        assert_eq!(
            (seen[1].1.mtime, seen[1].1.mtime_ns),
            (1_700_000_000, 123_456_789)
        );
    }
}
