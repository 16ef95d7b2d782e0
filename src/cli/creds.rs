//! Where the client's passwords come from, in order: `--password-file` /
//! `--admin-password-file`, then `FTS_PASSWORD` / `FTS_ADMIN_PASSWORD`, then
//! the password `fts login` stored for the server, then a prompt, but only
//! when stdin is a terminal. Without one (cron, CI) the command fails with
//! exit 4 and names the variable to set.

use super::Global;
use fts::client::{Credentials, PasswordKind};
use fts::credstore::CredStore;
use fts::{Error, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

pub struct CliCredentials {
    password_file: Option<PathBuf>,
    admin_password_file: Option<PathBuf>,
    /// `None`: never consult stored credentials (`fts login` checks the
    /// password it is given, not the one it would replace). Otherwise the
    /// store, opened on first need so that open servers never cost a
    /// keyring probe; `Some(None)` once it failed to open.
    store: Option<OnceLock<Option<CredStore>>>,
    /// The passwords handed out so far, by kind (access, admin).
    given: Mutex<[Option<String>; 2]>,
}

impl CliCredentials {
    /// Flags, environment, stored credentials, prompt.
    pub fn new(g: &Global) -> Self {
        Self::build(g, true)
    }

    /// Flags, environment, prompt: for `fts login`.
    pub fn without_store(g: &Global) -> Self {
        Self::build(g, false)
    }

    fn build(g: &Global, use_store: bool) -> Self {
        CliCredentials {
            password_file: g.password_file.clone(),
            admin_password_file: g.admin_password_file.clone(),
            store: use_store.then(OnceLock::new),
            given: Mutex::new([None, None]),
        }
    }

    /// The password of `kind` this provider handed to the client, if the
    /// server asked for one.
    pub fn given(&self, kind: PasswordKind) -> Option<String> {
        self.given.lock().unwrap_or_else(|p| p.into_inner())[slot(kind)].clone()
    }

    /// The stored password, if any. A store that cannot be opened or read
    /// (bad FTS_CREDENTIAL_STORE, unreadable file, keyring error) counts as
    /// having none: it must not break commands that have other sources.
    fn stored(&self, kind: PasswordKind, server: &str) -> Option<String> {
        let store = self
            .store
            .as_ref()?
            .get_or_init(|| CredStore::open().ok())
            .as_ref()?;
        store.get(server, kind).ok().flatten()
    }

    fn find(&self, kind: PasswordKind, server: &str) -> Result<String> {
        let (file, var, flag, label, login) = match kind {
            PasswordKind::Access => (
                &self.password_file,
                "FTS_PASSWORD",
                "--password-file",
                "Password",
                "fts login",
            ),
            PasswordKind::Admin => (
                &self.admin_password_file,
                "FTS_ADMIN_PASSWORD",
                "--admin-password-file",
                "Admin password",
                "fts login --admin",
            ),
        };
        if let Some(p) = from_flag_or_env(file.as_ref(), var)? {
            return Ok(p);
        }
        if let Some(p) = self.stored(kind, server) {
            return Ok(p);
        }
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password(format!("{label} for {server}: "))
                .map_err(|e| Error::auth(format!("could not read the password: {e}")));
        }
        let hint = if self.store.is_some() {
            // fts:// because `HOST:PORT` alone would read as HOST:PATH.
            format!(", use {flag} or run `{login} fts://{server}`")
        } else {
            format!(" or use {flag}")
        };
        Err(Error::auth(format!(
            "{server} requires {}: set {var}{hint} (no terminal to prompt on)",
            label.to_lowercase()
        )))
    }
}

fn slot(kind: PasswordKind) -> usize {
    match kind {
        PasswordKind::Access => 0,
        PasswordKind::Admin => 1,
    }
}

/// A password from a file flag or the environment, if either is given.
pub fn from_flag_or_env(file: Option<&PathBuf>, var: &str) -> Result<Option<String>> {
    if let Some(f) = file {
        return fts::auth::read_password_file(f).map(Some);
    }
    Ok(std::env::var(var).ok().filter(|v| !v.is_empty()))
}

impl Credentials for CliCredentials {
    fn password(&self, kind: PasswordKind, server: &str) -> Result<String> {
        let p = self.find(kind, server)?;
        self.given.lock().unwrap_or_else(|p| p.into_inner())[slot(kind)] = Some(p.clone());
        Ok(p)
    }
}
