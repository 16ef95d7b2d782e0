//! The operations behind the client subcommands: resolve what goes where
//! (scp rules), run it over one connection, and return a typed report.
//!
//! Target rules, as in scp: a source lands *inside* an existing remote (or
//! local) directory under its own name; otherwise the target names the new
//! file or directory. Several sources need an existing directory. A
//! directory source needs `-r`. `HOST:` alone is the share root; getting it
//! with `-r` copies its contents into the local target.
//!
//! One file per command: `put`, `get`, `ls`, `rm`, and `sync` (planned
//! from both trees, then pushed or pulled). `report` holds what they
//! return, `excludes` the `--exclude` patterns; this file the context every
//! operation runs in, retries, and the helpers they share.

mod excludes;
mod get;
mod ls;
mod parallel;
mod put;
mod report;
mod rm;
mod sync;

pub use excludes::Excludes;
pub use get::get;
pub use ls::ls;
pub use put::put;
pub use report::{FileAction, FileError, TransferReport};
pub use rm::{rm, RemoveReport};
pub use sync::sync;

use crate::client::{Client, ConnectOptions, Credentials, FileOutcome, Observer};
use crate::error::{ErrorKind, Result};
use crate::remote::Remote;
use std::sync::Arc;
use std::time::Duration;

/// How transfers behave (flags shared by put, get and sync).
#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Send deltas for files the receiver already has a version of.
    pub delta: bool,
    /// sync: compare contents by hash instead of size + mtime.
    pub checksum: bool,
    /// sync: remove what the source does not have.
    pub delete: bool,
    /// sync: report what would change, change nothing.
    pub dry_run: bool,
    /// sync: glob patterns to leave alone (a pattern without `/` matches a
    /// name at any depth, one with `/` the path from the top).
    pub excludes: Vec<String>,
    /// Retry a lost connection this many times (resuming each time).
    pub retries: u32,
    /// Record one entry per path in the report (`files`).
    pub verbose: bool,
    /// Files in flight at once, each on its own connection (`--parallel`).
    pub parallel: usize,
    /// Make downloaded files durable (fsync) before reporting success.
    pub fsync: bool,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            delta: true,
            checksum: false,
            delete: false,
            dry_run: false,
            excludes: Vec::new(),
            retries: 0,
            verbose: false,
            parallel: 1,
            fsync: true,
        }
    }
}

/// What every client operation needs.
#[derive(Clone)]
pub struct Context {
    pub connect: ConnectOptions,
    pub creds: Arc<dyn Credentials>,
    pub observer: Arc<dyn Observer>,
    pub transfer: TransferOptions,
}

impl Context {
    /// Connects and logs in, with this context's options and credentials.
    pub async fn connect(&self, remote: &Remote) -> Result<Client> {
        Client::connect(remote, &self.connect, self.creds.clone(), &*self.observer).await
    }

    /// Runs `op` again after a lost connection, up to `--retries` times,
    /// with doubling pauses (1 s … 30 s). Each attempt resumes where the
    /// last one was cut off.
    async fn with_retries<F, Fut>(&self, mut op: F) -> Result<TransferReport>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<TransferReport>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.kind == ErrorKind::Connect && attempt <= self.transfer.retries => {
                    let pause = Duration::from_secs(1u64 << (attempt - 1).min(5))
                        .min(Duration::from_secs(30));
                    self.observer.notice(&format!(
                        "{}; retrying in {}s (retry {attempt} of {})",
                        e.message,
                        pause.as_secs(),
                        self.transfer.retries
                    ));
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Ok(mut r) => {
                    r.attempts = attempt;
                    return Ok(r);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Joins a remote directory path and a name.
fn join_remote(base: &str, name: &str) -> String {
    if name.is_empty() {
        return base.trim_end_matches('/').to_string();
    }
    if base.is_empty() || base.ends_with('/') {
        format!("{base}{name}")
    } else {
        format!("{base}/{name}")
    }
}

fn err_text(o: &FileOutcome) -> String {
    o.result
        .as_ref()
        .err()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}
