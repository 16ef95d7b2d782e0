//! The file backend: `credentials` in the config directory, a versioned
//! JSON document read and rewritten whole, always with mode 0600.

use crate::client::PasswordKind;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

const FILE_VERSION: u32 = 1;

/// The file's contents: `{"version":1,"servers":{"HOST:PORT":{"access":…,"admin":…}}}`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct FileData {
    version: u32,
    servers: BTreeMap<String, ServerPasswords>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ServerPasswords {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin: Option<String>,
}

impl ServerPasswords {
    fn slot(&mut self, kind: PasswordKind) -> &mut Option<String> {
        match kind {
            PasswordKind::Access => &mut self.access,
            PasswordKind::Admin => &mut self.admin,
        }
    }
}

/// The file backend.
pub(super) struct FileStore {
    pub(super) path: PathBuf,
}

impl FileStore {
    fn load(&self) -> Result<FileData> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(FileData {
                    version: FILE_VERSION,
                    ..FileData::default()
                })
            }
            Err(e) => return Err(Error::local_io(&self.path, e)),
        };
        let data: FileData = serde_json::from_str(&text).map_err(|e| {
            Error::other(format!(
                "{}: not a valid credentials file ({e}); remove it and log in again",
                self.path.display()
            ))
        })?;
        if data.version != FILE_VERSION {
            return Err(Error::other(format!(
                "{}: credentials file version {} is not supported (this fts reads version {FILE_VERSION})",
                self.path.display(),
                data.version
            )));
        }
        Ok(data)
    }

    /// Writes atomically with mode 0600; an empty store removes the file.
    fn save(&self, data: &FileData) -> Result<()> {
        if data.servers.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::local_io(&self.path, e))
                }
                _ => Ok(()),
            };
        }
        if let Some(dir) = self.path.parent() {
            crate::fsutil::create_private_dir(dir)?;
        }
        let mut json = serde_json::to_vec_pretty(data)
            .map_err(|e| Error::other(format!("cannot encode credentials: {e}")))?;
        json.push(b'\n');
        crate::fsutil::write_private(&self.path, &json)
    }

    pub(super) fn get(&self, server: &str, kind: PasswordKind) -> Result<Option<String>> {
        let mut data = self.load()?;
        Ok(data
            .servers
            .get_mut(server)
            .and_then(|s| s.slot(kind).take()))
    }

    pub(super) fn set(&self, server: &str, kind: PasswordKind, password: &str) -> Result<()> {
        let mut data = self.load()?;
        *data
            .servers
            .entry(server.to_string())
            .or_default()
            .slot(kind) = Some(password.to_string());
        self.save(&data)
    }

    /// Removes `kinds` for `server`; returns the kinds that were there.
    /// Does not create or rewrite the file when nothing changes.
    pub(super) fn remove(&self, server: &str, kinds: &[PasswordKind]) -> Result<Vec<PasswordKind>> {
        if !self.path.exists() {
            return Ok(Vec::new());
        }
        let mut data = self.load()?;
        let Some(entry) = data.servers.get_mut(server) else {
            return Ok(Vec::new());
        };
        let removed: Vec<PasswordKind> = kinds
            .iter()
            .copied()
            .filter(|k| entry.slot(*k).take().is_some())
            .collect();
        if removed.is_empty() {
            return Ok(removed);
        }
        if entry.access.is_none() && entry.admin.is_none() {
            data.servers.remove(server);
        }
        self.save(&data)?;
        Ok(removed)
    }
}
