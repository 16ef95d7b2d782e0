//! The keyring backend: the operating system's store through the
//! `keyring` crate, the probe that tells whether it really keeps what it is
//! given, and the clean-up after a probe that failed.

use super::{EntryFactory, SERVICE};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The operating system's store, as people know it.
pub(super) fn system_keyring_name() -> &'static str {
    if cfg!(target_os = "linux") {
        "the Linux kernel keyring (kept in memory: forgotten at reboot)"
    } else if cfg!(target_os = "macos") {
        "the macOS keychain"
    } else if cfg!(windows) {
        "the Windows Credential Manager"
    } else {
        "the system keyring"
    }
}

/// Entries in the real OS store. On platforms without a native store the
/// `keyring` crate silently falls back to its in-memory mock, which would
/// pass the probe and then forget everything at exit, so those platforms
/// get no keyring at all.
pub(super) fn system_entry_factory() -> EntryFactory {
    if cfg!(any(target_os = "linux", target_os = "macos", windows)) {
        Box::new(|user| keyring::Entry::new(SERVICE, user))
    } else {
        Box::new(|_| {
            Err(keyring::Error::NoStorageAccess(
                "no system keyring support on this platform".into(),
            ))
        })
    }
}

/// A failed probe can leave its key behind where keyring-rs cannot delete
/// it. Seen on headless Linux (a process without a session keyring, as
/// under cron, CI or a container): keyring-rs adds the key to the user
/// session keyring, then asking for the persistent keyring gives the
/// process a new session keyring of its own, so the key is no longer
/// "possessed" and every search for it (which reading and deleting start
/// with) is denied; keyring-rs reports `NoEntry`. The keyring the key went
/// into still lets its owner unlink keys, and an unlinked key is collected
/// by the kernel. Without this every login on such a machine would leak one
/// key into the user's small key quota (200 keys by default).
#[cfg(target_os = "linux")]
pub(super) fn system_probe_cleanup(entry: &keyring::Entry) {
    use keyring::keyutils::KeyutilsCredential;
    let Some(cred) = entry.get_credential().downcast_ref::<KeyutilsCredential>() else {
        return;
    };
    for ring in std::iter::once(cred.session).chain(cred.persistent) {
        let Ok(links) = ring.get_links(4096) else {
            continue;
        };
        for key in links.iter().filter_map(|n| n.as_key()) {
            if key
                .metadata()
                .is_ok_and(|m| m.get_description() == cred.description)
            {
                let _ = ring.unlink_key(key);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn system_probe_cleanup(_entry: &keyring::Entry) {}

fn keyring_error(e: keyring::Error) -> Error {
    Error::other(format!("system keyring: {e}"))
}

/// The keyring backend. Entries are made once per user name and reused:
/// the mock store keeps a secret only inside its `Entry`, and reuse costs
/// nothing with the real stores.
pub(super) struct KeyringStore {
    factory: EntryFactory,
    pub(super) entries: Mutex<HashMap<String, Arc<keyring::Entry>>>,
    /// Removes what a failed probe (given its entry) may have left in the
    /// real store; a no-op for injected factories.
    pub(super) after_failed_probe: fn(&keyring::Entry),
}

impl KeyringStore {
    pub(super) fn new(factory: EntryFactory) -> KeyringStore {
        KeyringStore {
            factory,
            entries: Mutex::new(HashMap::new()),
            after_failed_probe: |_| {},
        }
    }

    pub(super) fn entry(&self, user: &str) -> keyring::Result<Arc<keyring::Entry>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get(user) {
            return Ok(e.clone());
        }
        let e = Arc::new((self.factory)(user)?);
        entries.insert(user.to_string(), e.clone());
        Ok(e)
    }

    /// Writes, reads back and deletes a throw-away entry; the error says
    /// which step failed.
    pub(super) fn probe(&self) -> std::result::Result<(), String> {
        let user = format!("fts-probe-{}", crate::fsutil::random_hex(8));
        let secret = crate::fsutil::random_hex(16);
        let entry = self
            .entry(&user)
            .map_err(|e| format!("it cannot open an entry (the keyring says: {e})"))?;
        let result = (|| {
            entry.set_password(&secret).map_err(|e| {
                format!("it refused to store a test secret (the keyring says: {e})")
            })?;
            match entry.get_password() {
                Ok(p) if p == secret => {}
                Ok(_) => return Err("a test secret read back different".to_string()),
                Err(e) => {
                    return Err(format!(
                        "a test secret could not be read back (the keyring says: {e})"
                    ))
                }
            }
            entry
                .delete_credential()
                .map_err(|e| format!("a test secret could not be deleted (the keyring says: {e})"))
        })();
        if result.is_err() {
            // Best effort: do not leave the probe entry behind.
            let _ = entry.delete_credential();
            (self.after_failed_probe)(&entry);
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&user);
        result
    }

    pub(super) fn get(&self, user: &str) -> Result<Option<String>> {
        match self.entry(user).and_then(|e| e.get_password()) {
            Ok(p) => Ok(Some(p)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_error(e)),
        }
    }

    pub(super) fn set(&self, user: &str, password: &str) -> Result<()> {
        self.entry(user)
            .and_then(|e| e.set_password(password))
            .map_err(keyring_error)
    }

    /// Whether there was an entry to delete.
    pub(super) fn delete(&self, user: &str) -> Result<bool> {
        match self.entry(user).and_then(|e| e.delete_credential()) {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(keyring_error(e)),
        }
    }
}
