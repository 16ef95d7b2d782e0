//! `fts login`: check a server's passwords by logging in, then store them
//! (see `fts::credstore`) so later commands need neither a flag, the
//! environment nor a prompt.

use super::{context, creds::CliCredentials, output::Output, Global};
use clap::Args;
use fts::client::{Client, PasswordKind};
use fts::credstore::{kind_label, Backend, CredStore};
use fts::Result;
use serde::Serialize;
use std::sync::Arc;

/// Store a server's password so later commands do not ask for it.
///
/// Logs in with the access password (from --password-file, FTS_PASSWORD or
/// a prompt on a terminal; never from what is already stored), and with
/// --admin also as admin (--admin-password-file, FTS_ADMIN_PASSWORD or a
/// prompt). Only passwords the server accepted are stored, replacing any
/// stored before; a refused one fails with exit 4 and stores nothing.
///
/// Passwords go to the system keyring (on Linux the kernel keyring, which
/// forgets them at reboot), or, where no keyring works, to the file
/// `credentials` in the config directory with mode 0600.
/// FTS_CREDENTIAL_STORE=keyring|file|auto chooses (default auto). Stored
/// passwords are used after --password-file / FTS_PASSWORD and before a
/// prompt. With --json: {server, stored, backend, path}.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The server: HOST: or fts://HOST[:PORT] (a path is ignored).
    pub remote: String,
    /// Also check and store the admin password.
    #[arg(long)]
    pub admin: bool,
}

#[derive(Serialize)]
struct LoginReport<'a> {
    server: &'a str,
    stored: Vec<&'static str>,
    backend: &'static str,
    /// The credentials file when that is the backend.
    path: Option<String>,
}

pub async fn run(g: &Global, out: &Output, a: LoginArgs) -> Result<()> {
    let remote = fts::remote::parse_remote(&a.remote)?;
    let server = remote.host_port();
    // Before any prompt: a store that cannot work should fail first.
    let store = CredStore::open()?;
    let backend = store.backend()?.clone();
    let ctx = context(g, out, None)?;
    let creds = Arc::new(CliCredentials::without_store(g));
    let mut client = Client::connect(&remote, &ctx.connect, creds.clone(), &*ctx.observer).await?;
    if a.admin {
        client.elevate().await?;
    }
    // The passwords are checked; a failed goodbye changes nothing.
    let _ = client.close().await;

    let mut stored = Vec::new();
    for kind in [PasswordKind::Access, PasswordKind::Admin] {
        if let Some(p) = creds.given(kind) {
            store.set(&server, kind, &p)?;
            stored.push(kind_label(kind));
        }
    }
    if !stored.is_empty() {
        if let Some(n) = store.notice()? {
            ctx.observer.notice(&n);
        }
    }
    if out.json {
        out.json(&LoginReport {
            server: &server,
            stored,
            backend: backend.name(),
            path: match &backend {
                Backend::File(p) => Some(p.display().to_string()),
                Backend::Keyring => None,
            },
        });
    } else if stored.is_empty() {
        out.line(&format!("{server} asks for no password; nothing stored"));
    } else {
        let what = if stored.len() == 2 {
            "access and admin passwords".to_string()
        } else {
            format!("{} password", stored[0])
        };
        out.line(&format!(
            "stored the {what} for {server} in {}",
            store.describe()?
        ));
    }
    Ok(())
}
