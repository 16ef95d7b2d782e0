//! `fts logout`: forget the passwords `fts login` stored for a server.

use super::{output::Output, Global};
use clap::Args;
use fts::credstore::CredStore;
use fts::Result;
use serde::Serialize;

/// Remove a server's stored passwords (access and admin).
///
/// Removes them from the system keyring and from the credentials file.
/// Needs no connection. Succeeds when nothing was stored too. With --json:
/// {server, removed} (how many of the two passwords were stored).
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The server: HOST: or fts://HOST[:PORT] (a path is ignored).
    pub remote: String,
}

#[derive(Serialize)]
struct LogoutReport<'a> {
    server: &'a str,
    removed: usize,
}

pub async fn run(_g: &Global, out: &Output, a: LogoutArgs) -> Result<()> {
    let remote = fts::remote::parse_remote(&a.remote)?;
    let server = remote.host_port();
    let removed = CredStore::open()?.delete(&server)?;
    if out.json {
        out.json(&LogoutReport {
            server: &server,
            removed,
        });
    } else if removed == 0 {
        out.line(&format!("nothing stored for {server}"));
    } else {
        let what = if removed == 1 {
            "password"
        } else {
            "passwords"
        };
        out.line(&format!("removed {removed} stored {what} for {server}"));
    }
    Ok(())
}
