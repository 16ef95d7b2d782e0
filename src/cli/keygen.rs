//! `fts keygen`: the client's key, for logging in without a password.

use super::{output::Output, Global};
use clap::Args;
use fts::keys::ClientIdentity;
use fts::{Error, ErrorKind, Result};
use serde::Serialize;
use std::path::PathBuf;

/// Create your client key, or show its fingerprint.
///
/// Makes an Ed25519 key and a self-signed certificate for it in one file,
/// readable by you alone (identity.pem in the config directory, or the
/// file --identity / FTS_IDENTITY name), unless it exists already; then
/// prints its fingerprint (SHA256:…, of the public key). A server started
/// with `--authorized-keys FILE` lets this key in when FILE has the line
/// `SHA256:… NAME [admin] [read-only]`; every fts command offers the key
/// to servers that ask for one. A key is never replaced: to make a new
/// one, move the old file away first. With --json: {fingerprint, path,
/// created}.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Only show the fingerprint of the existing key (exit 3 without one).
    #[arg(long)]
    pub show: bool,
}

#[derive(Serialize)]
struct KeygenReport<'a> {
    fingerprint: &'a str,
    path: &'a std::path::Path,
    created: bool,
}

pub async fn run(g: &Global, out: &Output, a: KeygenArgs) -> Result<()> {
    let path = identity_path(g)?;
    let exists = path.symlink_metadata().is_ok();
    let (id, created) = match (exists, a.show) {
        (true, _) => (ClientIdentity::load(&path)?, false),
        (false, true) => {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no key at {}: run `fts keygen` to make one", path.display()),
            ))
        }
        (false, false) => (ClientIdentity::create(&path)?, true),
    };
    if out.json {
        out.json(&KeygenReport {
            fingerprint: &id.fingerprint,
            path: &id.path,
            created,
        });
        return Ok(());
    }
    if created && !out.quiet {
        eprintln!(
            "fts: created a new key in {}\n\
             fts: to log in with it, the server's authorized keys file needs the line\n\
             fts:   {} NAME",
            id.path.display(),
            id.fingerprint
        );
    }
    out.line(&id.fingerprint);
    Ok(())
}

/// The identity file: `--identity`, else `FTS_IDENTITY`, else the default
/// in the config directory; and whether it was named explicitly.
pub fn identity_path(g: &Global) -> Result<PathBuf> {
    Ok(match named_identity(g) {
        Some(p) => p,
        None => fts::keys::default_identity_path()?,
    })
}

fn named_identity(g: &Global) -> Option<PathBuf> {
    g.identity.clone().or_else(|| {
        std::env::var_os("FTS_IDENTITY")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// The key the client offers: a named identity must exist; the default
/// one is offered when there is one. A damaged one is an error either way
/// (never a silent fall back to passwords).
pub fn client_identity(g: &Global) -> Result<Option<ClientIdentity>> {
    if let Some(p) = named_identity(g) {
        return ClientIdentity::load(&p).map(Some);
    }
    let p = fts::keys::default_identity_path()?;
    match p.symlink_metadata() {
        Ok(_) => ClientIdentity::load(&p).map(Some),
        Err(_) => Ok(None),
    }
}
