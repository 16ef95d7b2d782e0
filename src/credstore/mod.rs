//! Stored client credentials: the access and admin passwords that
//! `fts login` saves per server (`HOST:PORT`) and `fts logout` removes.
//!
//! This module owns where those passwords live and nothing else (the order
//! in which flags, the environment, the store and a prompt are consulted is
//! the CLI's business). There are two backends:
//!
//! - the operating system's store through the `keyring` crate (service
//!   `fts`, user `access@HOST:PORT` / `admin@HOST:PORT`). On Linux that is
//!   the kernel keyring (keyutils): kept in kernel memory, so forgotten at
//!   reboot. The D-Bus Secret Service is deliberately not built in (it
//!   needs libdbus or pulls in zbus, and is absent on headless machines);
//! - a JSON file, `credentials` in the config directory, always written
//!   atomically with mode 0600 (a looser mode left by hand is tightened
//!   again by the next write, without a warning), like `~/.netrc`.
//!
//! `FTS_CREDENTIAL_STORE` picks one: `keyring`, `file` or `auto` (the
//! default). Whether a keyring works cannot be known from the platform
//! alone: on a headless Linux box keyutils may accept a write and then
//! report the entry missing, or refuse it as `NoEntry`. So before the first
//! write `auto` probes with a real set/get/delete of a throw-away entry and
//! uses the file when any step fails, remembering why (for the notice `fts
//! login` prints). Lookups and removals never probe (a probe writes, and
//! every `fts get` would pay for it): in `auto` mode they try the keyring,
//! taking its errors as "nothing there", and then the file. There, each
//! write removes the copy in the other place, so at most one is stored.
//!
//! The file is read, changed and rewritten whole; two `fts login`s racing
//! on one machine can lose one of the two updates (last writer wins).
//!
//! This file holds the choice between the two and the [`CredStore`] that
//! callers use; `system` is the keyring backend, `file` the file backend.

mod file;
mod system;

use self::file::FileStore;
use self::system::{system_entry_factory, system_keyring_name, system_probe_cleanup, KeyringStore};
use crate::client::PasswordKind;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::OnceLock;

/// The keyring service name every fts entry is stored under.
pub const SERVICE: &str = "fts";
/// Selects the backend: `keyring`, `file` or `auto`.
pub const ENV_STORE: &str = "FTS_CREDENTIAL_STORE";
/// The fallback file's name inside the config directory.
pub const FILE_NAME: &str = "credentials";

/// Makes the keyring entry for a keyring user name (`access@HOST:PORT`).
/// Injectable so tests can hand in `keyring::mock` entries.
pub type EntryFactory = Box<dyn Fn(&str) -> keyring::Result<keyring::Entry> + Send + Sync>;

/// Which backend the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// The keyring when a probe shows it works, else the file.
    Auto,
    /// The keyring, or an error when it does not work.
    Keyring,
    /// The file, without touching the keyring.
    File,
}

impl Selection {
    /// Parses a value of `FTS_CREDENTIAL_STORE` (unset or empty is `auto`).
    pub fn parse(value: Option<&str>) -> Result<Selection> {
        match value.unwrap_or("") {
            "" | "auto" => Ok(Selection::Auto),
            "keyring" => Ok(Selection::Keyring),
            "file" => Ok(Selection::File),
            v => Err(Error::usage(format!(
                "{ENV_STORE} must be keyring, file or auto, not '{v}'"
            ))),
        }
    }

    /// The selection made by `FTS_CREDENTIAL_STORE`.
    pub fn from_env() -> Result<Selection> {
        let v = std::env::var(ENV_STORE).ok();
        Selection::parse(v.as_deref())
    }
}

/// Where new passwords are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Keyring,
    File(PathBuf),
}

impl Backend {
    /// `keyring` or `file`, for JSON output.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Keyring => "keyring",
            Backend::File(_) => "file",
        }
    }
}

/// `access` or `admin`.
pub fn kind_label(kind: PasswordKind) -> &'static str {
    match kind {
        PasswordKind::Access => "access",
        PasswordKind::Admin => "admin",
    }
}

const KINDS: [PasswordKind; 2] = [PasswordKind::Access, PasswordKind::Admin];

/// The keyring user name of one password: `access@HOST:PORT`.
fn keyring_user(server: &str, kind: PasswordKind) -> String {
    format!("{}@{server}", kind_label(kind))
}

/// The opened credential store; see the module documentation.
pub struct CredStore {
    selection: Selection,
    /// Never touched when the file is selected.
    keyring: KeyringStore,
    file: FileStore,
    /// Where writes go, decided by the first call that needs it.
    chosen: OnceLock<Result<Chosen>>,
}

#[derive(Debug, Clone)]
struct Chosen {
    backend: Backend,
    /// Why the file is the backend (a failed probe, or the selection).
    file_reason: Option<String>,
}

impl CredStore {
    /// The store chosen by `FTS_CREDENTIAL_STORE`, with the file in the
    /// config directory. Touches neither the keyring nor the file yet.
    pub fn open() -> Result<CredStore> {
        let selection = Selection::from_env()?;
        let file = crate::config::config_dir()?.join(FILE_NAME);
        let mut store = CredStore::open_with(selection, file, system_entry_factory());
        store.keyring.after_failed_probe = system_probe_cleanup;
        Ok(store)
    }

    /// A store with an explicit selection, file path and keyring entry
    /// factory (tests pass `keyring::mock` entries here).
    pub fn open_with(selection: Selection, file: PathBuf, factory: EntryFactory) -> CredStore {
        CredStore {
            selection,
            keyring: KeyringStore::new(factory),
            file: FileStore { path: file },
            chosen: OnceLock::new(),
        }
    }

    /// Where new passwords go. Probes the keyring on first use (unless the
    /// file is selected); fails when the keyring is selected and does not
    /// work.
    pub fn backend(&self) -> Result<&Backend> {
        self.chosen().map(|c| &c.backend)
    }

    fn chosen(&self) -> Result<&Chosen> {
        self.chosen
            .get_or_init(|| self.choose())
            .as_ref()
            .map_err(Clone::clone)
    }

    fn choose(&self) -> Result<Chosen> {
        let file = |reason: String| Chosen {
            backend: Backend::File(self.file.path.clone()),
            file_reason: Some(reason),
        };
        match self.selection {
            Selection::File => return Ok(file(format!("{ENV_STORE}=file"))),
            Selection::Keyring | Selection::Auto => {}
        }
        match self.keyring.probe() {
            Ok(()) => Ok(Chosen {
                backend: Backend::Keyring,
                file_reason: None,
            }),
            Err(why) if self.selection == Selection::Auto => {
                Ok(file(format!("no working system keyring: {why}")))
            }
            Err(why) => Err(Error::other(format!(
                "{ENV_STORE}=keyring, but the system keyring does not work: {why}"
            ))),
        }
    }

    /// Where passwords are kept, as a phrase for people.
    pub fn describe(&self) -> Result<String> {
        Ok(match self.backend()? {
            Backend::Keyring => system_keyring_name().to_string(),
            Backend::File(p) => format!("{} (mode 0600)", p.display()),
        })
    }

    /// For the file backend: one sentence saying why the file is used and
    /// where it is. `None` when the keyring is used.
    pub fn notice(&self) -> Result<Option<String>> {
        let chosen = self.chosen()?;
        Ok(chosen.file_reason.as_ref().map(|reason| {
            format!(
                "{reason}; passwords are stored in {} (mode 0600)",
                self.file.path.display()
            )
        }))
    }

    /// The stored password of `kind` for `server` (`HOST:PORT`), if any.
    pub fn get(&self, server: &str, kind: PasswordKind) -> Result<Option<String>> {
        let user = keyring_user(server, kind);
        match self.selection {
            Selection::File => self.file.get(server, kind),
            Selection::Keyring => self.keyring.get(&user),
            Selection::Auto => match self.keyring.get(&user) {
                Ok(Some(p)) => Ok(Some(p)),
                // A keyring that fails holds nothing usable.
                Ok(None) | Err(_) => self.file.get(server, kind),
            },
        }
    }

    /// Stores (or replaces) the password of `kind` for `server`.
    pub fn set(&self, server: &str, kind: PasswordKind, password: &str) -> Result<()> {
        if password.is_empty() {
            // keyutils cannot hold empty values; keep both backends alike.
            return Err(Error::usage("an empty password cannot be stored"));
        }
        let user = keyring_user(server, kind);
        match self.backend()? {
            Backend::Keyring => {
                self.keyring.set(&user, password)?;
                if self.selection == Selection::Auto {
                    // A copy from an earlier fallback would only go stale.
                    // Failing to drop it must not undo a successful store:
                    // the keyring is read first.
                    let _ = self.file.remove(server, &[kind]);
                }
            }
            Backend::File(_) => {
                self.file.set(server, kind, password)?;
                if self.selection == Selection::Auto {
                    // The keyring is read first, so an old copy there would
                    // shadow this one. A broken keyring holds none.
                    let _ = self.keyring.delete(&user);
                }
            }
        }
        Ok(())
    }

    /// Removes both passwords for `server` from every place this store
    /// reads; returns how many of the two were stored.
    pub fn delete(&self, server: &str) -> Result<usize> {
        let mut removed = [false; 2];
        if self.selection != Selection::File {
            for (i, kind) in KINDS.into_iter().enumerate() {
                match self.keyring.delete(&keyring_user(server, kind)) {
                    Ok(r) => removed[i] = r,
                    // In auto mode a keyring that does not work holds
                    // nothing; one that passes the probe and still fails
                    // here may hold the password, so say so.
                    Err(e)
                        if self.selection == Selection::Keyring
                            || matches!(self.backend(), Ok(Backend::Keyring)) =>
                    {
                        return Err(e)
                    }
                    Err(_) => {}
                }
            }
        }
        if self.selection != Selection::Keyring {
            let in_file = self.file.remove(server, &KINDS)?;
            for (i, kind) in KINDS.into_iter().enumerate() {
                removed[i] |= in_file.contains(&kind);
            }
        }
        Ok(removed.iter().filter(|r| **r).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyring::credential::CredentialApi;
    use keyring::mock::MockCredential;
    use std::os::unix::fs::PermissionsExt;

    const S: &str = "example.org:7387";

    fn mock_entry(user: &str) -> keyring::Result<keyring::Entry> {
        let cred = keyring::mock::default_credential_builder().build(None, SERVICE, user)?;
        Ok(keyring::Entry::new_with_credential(cred))
    }

    fn mock_factory() -> EntryFactory {
        Box::new(mock_entry)
    }

    /// A mock keyring whose every entry fails its next call with `err`.
    fn failing_factory(err: fn() -> keyring::Error) -> EntryFactory {
        Box::new(move |user| {
            let e = mock_entry(user)?;
            let mock: &MockCredential = e.get_credential().downcast_ref().unwrap();
            mock.set_error(err());
            Ok(e)
        })
    }

    /// The headless keyutils pitfall: a write is accepted, and the entry is
    /// then reported missing.
    #[derive(Debug)]
    struct Forgetful;

    impl CredentialApi for Forgetful {
        fn set_secret(&self, _: &[u8]) -> keyring::Result<()> {
            Ok(())
        }
        fn get_secret(&self) -> keyring::Result<Vec<u8>> {
            Err(keyring::Error::NoEntry)
        }
        fn delete_credential(&self) -> keyring::Result<()> {
            Err(keyring::Error::NoEntry)
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    }

    fn file_in(d: &tempfile::TempDir) -> PathBuf {
        d.path().join("cfg").join(FILE_NAME)
    }

    fn mode(p: &std::path::Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn selection_values() {
        assert_eq!(Selection::parse(None).unwrap(), Selection::Auto);
        assert_eq!(Selection::parse(Some("")).unwrap(), Selection::Auto);
        assert_eq!(Selection::parse(Some("auto")).unwrap(), Selection::Auto);
        assert_eq!(
            Selection::parse(Some("keyring")).unwrap(),
            Selection::Keyring
        );
        assert_eq!(Selection::parse(Some("file")).unwrap(), Selection::File);
        let e = Selection::parse(Some("vault")).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Usage);
        assert!(e.message.contains(ENV_STORE), "{}", e.message);
    }

    #[test]
    fn working_keyring_is_used_and_the_file_is_not_written() {
        let d = tempfile::tempdir().unwrap();
        let store = CredStore::open_with(Selection::Auto, file_in(&d), mock_factory());
        assert_eq!(store.get(S, PasswordKind::Access).unwrap(), None);
        assert_eq!(store.backend().unwrap(), &Backend::Keyring);
        assert!(store.notice().unwrap().is_none());
        assert!(
            store.describe().unwrap().contains("keyring")
                || store.describe().unwrap().contains("keychain")
                || store.describe().unwrap().contains("Credential Manager")
        );
        store.set(S, PasswordKind::Access, "acc").unwrap();
        store.set(S, PasswordKind::Admin, "adm").unwrap();
        store.set(S, PasswordKind::Access, "acc2").unwrap();
        assert_eq!(
            store.get(S, PasswordKind::Access).unwrap().as_deref(),
            Some("acc2")
        );
        assert_eq!(
            store.get(S, PasswordKind::Admin).unwrap().as_deref(),
            Some("adm")
        );
        assert_eq!(store.get("other:1", PasswordKind::Access).unwrap(), None);
        assert!(!file_in(&d).exists());
        assert_eq!(store.delete(S).unwrap(), 2);
        assert_eq!(store.get(S, PasswordKind::Access).unwrap(), None);
        assert_eq!(store.get(S, PasswordKind::Admin).unwrap(), None);
        assert_eq!(store.delete(S).unwrap(), 0);
        // The probe entry was not kept.
        let entries = store.keyring.entries.lock().unwrap();
        assert!(entries.keys().all(|k| !k.starts_with("fts-probe-")));
    }

    #[test]
    fn lookups_do_not_probe() {
        let d = tempfile::tempdir().unwrap();
        let store = CredStore::open_with(Selection::Auto, file_in(&d), mock_factory());
        assert_eq!(store.get(S, PasswordKind::Access).unwrap(), None);
        assert_eq!(store.delete(S).unwrap(), 0);
        assert!(store.chosen.get().is_none(), "a lookup wrote a probe entry");
    }

    #[test]
    fn keyring_errors_surface_when_the_keyring_is_selected() {
        let d = tempfile::tempdir().unwrap();
        let store = CredStore::open_with(Selection::Keyring, file_in(&d), mock_factory());
        store.set(S, PasswordKind::Access, "acc").unwrap();
        let entry = store
            .keyring
            .entry(&keyring_user(S, PasswordKind::Access))
            .unwrap();
        let mock: &MockCredential = entry.get_credential().downcast_ref().unwrap();
        mock.set_error(keyring::Error::NoStorageAccess("locked".into()));
        let e = store.get(S, PasswordKind::Access).unwrap_err();
        assert!(e.message.contains("locked"), "{}", e.message);
        // The error is used up; the password is still there.
        assert_eq!(
            store.get(S, PasswordKind::Access).unwrap().as_deref(),
            Some("acc")
        );
        // A working keyring that fails a removal is reported, not hidden.
        mock.set_error(keyring::Error::NoStorageAccess("locked".into()));
        let e = store.delete(S).unwrap_err();
        assert!(e.message.contains("locked"), "{}", e.message);
        assert_eq!(store.delete(S).unwrap(), 1);
    }

    #[test]
    fn broken_keyring_falls_back_to_a_private_file() {
        let d = tempfile::tempdir().unwrap();
        let path = file_in(&d);
        let store = CredStore::open_with(
            Selection::Auto,
            path.clone(),
            failing_factory(|| keyring::Error::NoStorageAccess("no D-Bus".into())),
        );
        assert_eq!(store.backend().unwrap(), &Backend::File(path.clone()));
        let notice = store.notice().unwrap().unwrap();
        assert!(notice.contains("no working system keyring"), "{notice}");
        assert!(notice.contains("no D-Bus"), "{notice}");
        // Which step failed, in words, with the keyring's own text quoted.
        assert!(notice.contains("(the keyring says: "), "{notice}");
        assert!(notice.contains(&path.display().to_string()), "{notice}");
        assert!(store.describe().unwrap().contains("0600"));

        store.set(S, PasswordKind::Access, "acc").unwrap();
        store.set("b:1", PasswordKind::Admin, "adm").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // Every keyring call fails once more here, and is passed over.
        assert_eq!(
            store.get(S, PasswordKind::Access).unwrap().as_deref(),
            Some("acc")
        );
        assert_eq!(store.get(S, PasswordKind::Admin).unwrap(), None);

        // A fresh store (another process) with its own failing keyring
        // sees the same file, and removes from it.
        let again = CredStore::open_with(
            Selection::Auto,
            path.clone(),
            failing_factory(|| keyring::Error::PlatformFailure("gone".into())),
        );
        assert_eq!(
            again.get("b:1", PasswordKind::Admin).unwrap().as_deref(),
            Some("adm")
        );
        assert_eq!(again.delete(S).unwrap(), 1);
        assert_eq!(store.get(S, PasswordKind::Access).unwrap(), None);
        assert!(path.exists());
        assert_eq!(again.delete("b:1").unwrap(), 1);
        assert!(!path.exists(), "an empty credentials file is removed");
        assert_eq!(again.delete("b:1").unwrap(), 0);
    }

    #[test]
    fn a_keyring_that_forgets_writes_is_not_used() {
        let d = tempfile::tempdir().unwrap();
        let factory: EntryFactory =
            Box::new(|_| Ok(keyring::Entry::new_with_credential(Box::new(Forgetful))));
        let store = CredStore::open_with(Selection::Auto, file_in(&d), factory);
        assert_eq!(store.backend().unwrap().name(), "file");
        let notice = store.notice().unwrap().unwrap();
        assert!(notice.contains("could not be read back"), "{notice}");
        store.set(S, PasswordKind::Access, "acc").unwrap();
        assert_eq!(
            store.get(S, PasswordKind::Access).unwrap().as_deref(),
            Some("acc")
        );
    }

    #[test]
    fn a_failed_probe_runs_the_cleanup_hook() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let d = tempfile::tempdir().unwrap();
        let factory: EntryFactory =
            Box::new(|_| Ok(keyring::Entry::new_with_credential(Box::new(Forgetful))));
        let mut store = CredStore::open_with(Selection::Auto, file_in(&d), factory);
        store.keyring.after_failed_probe = |entry| {
            assert!(entry.get_credential().downcast_ref::<Forgetful>().is_some());
            CALLS.fetch_add(1, Ordering::SeqCst);
        };
        store.backend().unwrap();
        store.backend().unwrap();
        assert_eq!(CALLS.load(Ordering::SeqCst), 1, "probed once, cleaned once");
    }

    #[test]
    fn forced_keyring_that_does_not_work_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let store = CredStore::open_with(
            Selection::Keyring,
            file_in(&d),
            failing_factory(|| keyring::Error::PlatformFailure("denied".into())),
        );
        let err = store.set(S, PasswordKind::Access, "x").unwrap_err();
        assert!(err.message.contains(ENV_STORE), "{}", err.message);
        assert!(err.message.contains("denied"), "{}", err.message);
        assert_eq!(store.backend().unwrap_err(), err);
        assert!(store.describe().is_err());
        assert!(!file_in(&d).exists());

        // A working one is used, and the file is not consulted.
        std::fs::create_dir_all(d.path().join("cfg")).unwrap();
        std::fs::write(
            file_in(&d),
            r#"{"version":1,"servers":{"example.org:7387":{"access":"f"}}}"#,
        )
        .unwrap();
        let store = CredStore::open_with(Selection::Keyring, file_in(&d), mock_factory());
        assert_eq!(store.get(S, PasswordKind::Access).unwrap(), None);
        assert_eq!(store.delete(S).unwrap(), 0);
        assert_eq!(store.backend().unwrap(), &Backend::Keyring);
    }

    #[test]
    fn forced_file_never_touches_the_keyring() {
        let d = tempfile::tempdir().unwrap();
        let factory: EntryFactory = Box::new(|_| panic!("the keyring was touched"));
        let store = CredStore::open_with(Selection::File, file_in(&d), factory);
        assert_eq!(store.backend().unwrap(), &Backend::File(file_in(&d)));
        let notice = store.notice().unwrap().unwrap();
        assert!(notice.contains("FTS_CREDENTIAL_STORE=file"), "{notice}");
        store.set(S, PasswordKind::Access, "x").unwrap();
        assert_eq!(
            store.get(S, PasswordKind::Access).unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(store.delete(S).unwrap(), 1);
    }

    #[test]
    fn each_write_drops_the_copy_in_the_other_place() {
        let d = tempfile::tempdir().unwrap();
        let path = file_in(&d);
        // Saved while no keyring worked.
        let file = CredStore::open_with(Selection::File, path.clone(), mock_factory());
        file.set(S, PasswordKind::Access, "old-acc").unwrap();
        file.set(S, PasswordKind::Admin, "old-adm").unwrap();

        let store = CredStore::open_with(Selection::Auto, path.clone(), mock_factory());
        assert_eq!(
            store.get(S, PasswordKind::Access).unwrap().as_deref(),
            Some("old-acc")
        );
        // Storing in the keyring drops the file copy of that password only.
        store.set(S, PasswordKind::Access, "new-acc").unwrap();
        assert_eq!(store.backend().unwrap(), &Backend::Keyring);
        assert_eq!(
            store.get(S, PasswordKind::Access).unwrap().as_deref(),
            Some("new-acc")
        );
        assert_eq!(file.get(S, PasswordKind::Access).unwrap(), None);
        assert_eq!(
            file.get(S, PasswordKind::Admin).unwrap().as_deref(),
            Some("old-adm")
        );
        // Logout clears both places; each password counts once.
        assert_eq!(store.delete(S).unwrap(), 2);
        assert!(!path.exists());
        assert_eq!(store.get(S, PasswordKind::Admin).unwrap(), None);
    }

    #[test]
    fn file_mode_is_tightened_on_write_and_bad_files_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let path = file_in(&d);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, r#"{"version":1,"servers":{"h:1":{"access":"a"}}}"#).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = CredStore::open_with(Selection::File, path.clone(), mock_factory());
        assert_eq!(
            store.get("h:1", PasswordKind::Access).unwrap().as_deref(),
            Some("a")
        );
        store.set("h:1", PasswordKind::Admin, "b").unwrap();
        assert_eq!(mode(&path), 0o600);

        std::fs::write(&path, "not json").unwrap();
        let e = store.get("h:1", PasswordKind::Access).unwrap_err();
        assert!(
            e.message.contains("not a valid credentials file"),
            "{}",
            e.message
        );
        std::fs::write(&path, r#"{"version":2,"servers":{}}"#).unwrap();
        let e = store.get("h:1", PasswordKind::Access).unwrap_err();
        assert!(e.message.contains("version 2"), "{}", e.message);

        let e = store.set("h:1", PasswordKind::Access, "").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Usage);
    }
}
