//! Where fts keeps things: the client's config directory (known_hosts, and
//! the credentials file that [`crate::credstore`] falls back to) and the
//! server's state directory (its certificate). Both come from
//! `directories`, so `HOME=$(mktemp -d)` isolates a test; `FTS_CONFIG_DIR`
//! / `FTS_STATE_DIR` override them.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

fn project() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "fts")
}

/// The client's config directory (e.g. `~/.config/fts`).
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
}
