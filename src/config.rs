//! Where fts keeps things: the client's config directory (known_hosts, and
//! the credentials file that [`crate::credstore`] falls back to) and the
//! server's state directory (its certificate). Both come from
//! `directories`, so `HOME=$(mktemp -d)` isolates a test; `FTS_CONFIG_DIR`
//! / `FTS_STATE_DIR` override them. One server at a time owns a state
//! directory: [`StateLock`].

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

fn project() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "fts")
}

/// The client's config directory (e.g. `~/.config/fts`).
/// This machine's host name (the kernel's, else `$HOSTNAME`, else
/// "localhost").
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

pub fn config_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("FTS_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    project()
        .map(|p| p.config_dir().to_path_buf())
        .ok_or_else(|| Error::other("cannot determine a config directory (is HOME set?)"))
}

/// The server's state directory (e.g. `~/.local/state/fts`).
pub fn state_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("FTS_STATE_DIR") {
        return Ok(PathBuf::from(d));
    }
    let p = project()
        .ok_or_else(|| Error::other("cannot determine a state directory (is HOME set?)"))?;
    Ok(p.state_dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| p.data_local_dir().to_path_buf()))
}

/// The lock that makes one running server the owner of a state directory
/// (its totals, event log and certificate): `STATE/lock`, held with
/// `flock(LOCK_EX)` for as long as this value lives and holding the
/// owner's PID for the error message of the next one. The kernel drops
/// the lock when the process dies, however it dies, so a killed server
/// leaves nothing that blocks the next start (the stale PID in the file
/// is simply overwritten).
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock of `dir` (created if missing), or fails at once
    /// (exit 1) naming the PID of the server that holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(dir).map_err(|e| Error::local_io(dir, e))?;
        let path = dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::local_io(&path, e))?;
        match try_lock(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                let who = if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                    format!("another fts serve (PID {pid})")
                } else {
                    "another fts serve".to_string()
                };
                return Err(Error::other(format!(
                    "{who} is already using the state directory {}; stop it, or give this \
                     server a directory of its own with --state-dir (or FTS_STATE_DIR)",
                    dir.display()
                )));
            }
            Err(e) => return Err(Error::local_io(&path, e)),
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(|e| Error::local_io(&path, e))?;
        Ok(StateLock { _file: file })
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: true when taken, false when another open
/// file description holds it.
#[cfg(target_os = "linux")]
fn try_lock(f: &std::fs::File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor this File owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// Elsewhere (libc is a dependency on Linux only) the state directory is
/// not locked.
#[cfg(not(target_os = "linux"))]
fn try_lock(_: &std::fs::File) -> std::io::Result<bool> {
    Ok(true)
}

/// The known-hosts file: one `HOST:PORT SHA256:…` per line, like OpenSSH.
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    pub fn open_default() -> Result<KnownHosts> {
        Ok(KnownHosts {
            path: config_dir()?.join("known_hosts"),
        })
    }

    pub fn at(path: PathBuf) -> KnownHosts {
        KnownHosts { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint recorded for `host_port`, if any.
    pub fn get(&self, host_port: &str) -> Result<Option<String>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::local_io(&self.path, e)),
        };
        Ok(text.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(host_port)).then(|| it.next().map(str::to_string))?
        }))
    }

    /// Records (or replaces) the fingerprint for `host_port`.
    pub fn set(&self, host_port: &str, fp: &str) -> Result<()> {
        let old = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut out: String = old
            .lines()
            .filter(|l| l.split_whitespace().next() != Some(host_port))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push_str(&format!("{host_port} {fp}\n"));
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::local_io(dir, e))?;
        }
        crate::fsutil::write_private(&self.path, out.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let kh = KnownHosts::at(d.path().join("sub/known_hosts"));
        assert_eq!(kh.get("h:1").unwrap(), None);
        kh.set("h:1", "SHA256:a").unwrap();
        kh.set("h:2", "SHA256:b").unwrap();
        kh.set("h:1", "SHA256:c").unwrap();
        assert_eq!(kh.get("h:1").unwrap().as_deref(), Some("SHA256:c"));
        assert_eq!(kh.get("h:2").unwrap().as_deref(), Some("SHA256:b"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn state_lock_is_exclusive_and_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("state");
        let held = StateLock::acquire(&dir).unwrap();
        let pid = std::fs::read_to_string(dir.join("lock")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        let e = StateLock::acquire(&dir).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Other);
        assert!(
            e.message.contains(&format!("PID {}", std::process::id())),
            "{e}"
        );
        drop(held);
        StateLock::acquire(&dir).unwrap();
    }
}
