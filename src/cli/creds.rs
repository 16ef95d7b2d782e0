//! Where the client's passwords come from, in order: `--password-file` /
//! `--admin-password-file`, then `FTS_PASSWORD` / `FTS_ADMIN_PASSWORD`, then
//! a prompt, but only when stdin is a terminal. Without one (cron, CI) the
//! command fails with exit 4 and names the variable to set.

use super::Global;
use fts::client::{Credentials, PasswordKind};
use fts::{Error, Result};
use std::io::IsTerminal;
use std::path::PathBuf;

pub struct CliCredentials {
    password_file: Option<PathBuf>,
    admin_password_file: Option<PathBuf>,
}

impl CliCredentials {
    pub fn new(g: &Global) -> Self {
        CliCredentials {
            password_file: g.password_file.clone(),
            admin_password_file: g.admin_password_file.clone(),
        }
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
        let (file, var, flag, label) = match kind {
            PasswordKind::Access => (
                &self.password_file,
                "FTS_PASSWORD",
                "--password-file",
                "Password",
            ),
            PasswordKind::Admin => (
                &self.admin_password_file,
                "FTS_ADMIN_PASSWORD",
                "--admin-password-file",
                "Admin password",
            ),
        };
        if let Some(p) = from_flag_or_env(file.as_ref(), var)? {
            return Ok(p);
        }
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password(format!("{label} for {server}: "))
                .map_err(|e| Error::auth(format!("could not read the password: {e}")));
        }
        Err(Error::auth(format!(
            "{server} requires {}: set {var} or use {flag} (no terminal to prompt on)",
            label.to_lowercase()
        )))
    }
}
