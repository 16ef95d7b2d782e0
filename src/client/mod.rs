//! The client side of a connection: dial, TLS with pinning, hello, login,
//! and typed calls. Batches of uploads and downloads are pipelined: one
//! half of the connection streams requests (and file data) while the other
//! half collects replies, so there is no round trip per file or per chunk.
//!
//! - `connect`: options, dialing, pinning, the greeting and the login
//! - `upload`: probing targets and upload batches
//! - `download`: download batches, each file verified before it lands
//! - `chat`: a connection turned into a chat session
//!
//! This file holds the [`Client`] itself, the traits its caller supplies,
//! the one-request calls, and what a batch reports per path.

mod chat;
mod connect;
mod download;
mod upload;

pub use chat::{ChatReader, ChatReply, ChatWriter};
pub use connect::{default_name, ConnectOptions};
pub use download::{GetHow, GetOp};
pub use upload::{plan_blocks, Planned, Probed, PutHow, PutOp};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Entry, Notice, Stats};
use crate::proto::{AdminAction, Counted, FrameReader, FrameWriter, Msg, WireCounters};
use crate::transfer::{SendOptions, SendStats};
use std::sync::Arc;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

type Tls = tokio_rustls::client::TlsStream<Counted<TcpStream>>;

/// Which password the server asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordKind {
    Access,
    Admin,
}

/// Supplies passwords when a server asks for one (flags, environment,
/// stored credentials, a prompt: the caller decides). Returning an error
/// aborts the command with that error.
pub trait Credentials: Send + Sync {
    fn password(&self, kind: PasswordKind, server: &str) -> Result<String>;
}

/// Receives progress and notices; the library itself never prints.
pub trait Observer: Send + Sync {
    fn notice(&self, _msg: &str) {}
    fn batch_start(&self, _files: u64, _bytes: u64) {}
    /// More work joins the batch (a sync finds it as it walks).
    fn batch_grow(&self, _files: u64, _bytes: u64) {}
    fn file_start(&self, _path: &str, _size: u64) {}
    fn bytes(&self, _n: u64) {}
    fn file_done(&self, _path: &str, _ok: bool) {}
    fn batch_done(&self) {}
    /// A warning, chat message or system notice from the server.
    fn server_notice(&self, _n: &Notice) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// What the server said about itself.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub server: String,
    pub auth_required: bool,
    pub admin_enabled: bool,
    pub read_only: bool,
    pub fingerprint: String,
    /// From servers with authorized keys: what they made of our key.
    pub key: Option<crate::proto::KeyStatus>,
}

/// An open, logged-in connection.
pub struct Client {
    /// Proves this side alive while it works; stops with the client.
    _keepalive: Option<crate::link::KeepAlive>,
    r: FrameReader<ReadHalf<Tls>>,
    w: FrameWriter<WriteHalf<Tls>>,
    counters: Arc<WireCounters>,
    pub info: ServerInfo,
    server: String,
    creds: Arc<dyn Credentials>,
    admin: bool,
    next_id: u64,
    send: SendOptions,
    /// Where this connection goes, for the extra connections of
    /// `--parallel`.
    remote: crate::remote::Remote,
    /// Extra connections to the same server (`--parallel`), kept for the
    /// life of this one.
    pub(crate) extra: Vec<Client>,
}

impl Client {
    /// Bytes on the wire, sent and received, of this connection and its
    /// extra ones.
    pub fn wire(&self) -> (u64, u64) {
        self.extra.iter().fold(
            (self.counters.sent(), self.counters.received()),
            |(s, r), c| {
                let (s2, r2) = c.wire();
                (s + s2, r + r2)
            },
        )
    }

    pub fn remote(&self) -> &crate::remote::Remote {
        &self.remote
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    async fn call(&mut self, m: &Msg) -> Result<Msg> {
        self.w.msg(m).await?;
        self.w.flush().await?;
        match self.r.read_msg().await? {
            Msg::Error { kind, message, .. } => Err(reply_error(kind, message)),
            m => Ok(m),
        }
    }

    /// Metadata of a remote path, `None` if it does not exist.
    pub async fn stat(&mut self, path: &str) -> Result<Option<Entry>> {
        match self.call(&Msg::Stat { path: path.into() }).await? {
            Msg::StatReply { entry } => Ok(entry),
            m => Err(Error::protocol(format!("unexpected reply to stat: {m:?}"))),
        }
    }

    /// Entries below a remote directory (or the file itself); with
    /// `hashes`, each file's BLAKE3 too. A listing too big for
    /// [`crate::guard::ListBudget`] is an error.
    pub async fn list(&mut self, path: &str, recursive: bool, hashes: bool) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut budget = crate::guard::ListBudget::default();
        let mut m = self
            .call(&Msg::List {
                path: path.into(),
                recursive,
                hashes,
            })
            .await?;
        loop {
            match m {
                Msg::ListBatch { entries } => {
                    budget.take(&entries)?;
                    out.extend(entries)
                }
                Msg::ListEnd => return Ok(out),
                Msg::Error { kind, message, .. } => return Err(reply_error(kind, message)),
                m => return Err(Error::protocol(format!("unexpected reply to list: {m:?}"))),
            }
            m = self.r.read_msg().await?;
        }
    }

    /// Asks for the direct entries of remote directory `path`, without
    /// waiting: several can be asked back to back (one round trip for all),
    /// and [`Client::dir_answers`] reads the answers. An answer is `None`
    /// when the server's copy has `digest`, else its entries (with
    /// `hashes`, each file's BLAKE3), or the error the server gave for that
    /// directory; each listing is held to its own
    /// [`crate::guard::ListBudget`]. Nothing is flushed; `flush` does.
    pub async fn ask_dir(
        &mut self,
        path: &str,
        digest: Option<String>,
        hashes: bool,
    ) -> Result<()> {
        self.w
            .msg(&Msg::ListDir {
                path: path.to_string(),
                digest,
                hashes,
            })
            .await
    }

    /// Sends what is buffered.
    pub async fn flush(&mut self) -> Result<()> {
        self.w.flush().await
    }

    /// The answers to the last `n` directories asked about with
    /// [`Client::ask_dir`], in order.
    pub async fn dir_answers(&mut self, n: usize) -> Result<Vec<Result<Option<Vec<Entry>>>>> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let mut entries = Vec::new();
            let mut budget = crate::guard::ListBudget::default();
            let one = loop {
                match self.r.read_msg().await? {
                    Msg::DirSame if entries.is_empty() => break Ok(None),
                    Msg::ListBatch { entries: batch } => {
                        budget.take(&batch)?;
                        entries.extend(batch)
                    }
                    Msg::ListEnd => break Ok(Some(std::mem::take(&mut entries))),
                    Msg::Error { kind, message, .. } => break Err(reply_error(kind, message)),
                    m => {
                        return Err(Error::protocol(format!(
                            "unexpected reply to a directory listing: {m:?}"
                        )))
                    }
                }
            };
            out.push(one);
        }
        Ok(out)
    }

    /// Says that the requests that follow belong to a sync.
    pub async fn syncing(&mut self) -> Result<()> {
        self.w.msg(&Msg::Syncing).await
    }

    /// Keeps an idle connection open (the server drops silent clients).
    pub async fn ping(&mut self) -> Result<()> {
        self.w.msg(&Msg::Ping).await?;
        self.w.flush().await
    }

    /// The server's status, totals and client table.
    pub async fn stats(&mut self) -> Result<Stats> {
        match self.call(&Msg::StatsReq).await? {
            Msg::StatsReply { stats } => Ok(*stats),
            m => Err(Error::protocol(format!("unexpected reply to stats: {m:?}"))),
        }
    }

    /// Runs an admin action (logs in as admin first) and returns the reply.
    async fn admin(&mut self, action: AdminAction) -> Result<Msg> {
        self.elevate().await?;
        self.call(&Msg::Admin { action }).await
    }

    /// The client table, as an admin sees it.
    pub async fn admin_clients(&mut self) -> Result<Stats> {
        match self.admin(AdminAction::Clients).await? {
            Msg::StatsReply { stats } => Ok(*stats),
            m => Err(Error::protocol(format!("unexpected reply: {m:?}"))),
        }
    }

    /// Disconnects client `client`, telling it `reason`.
    pub async fn kick(&mut self, client: u64, reason: &str) -> Result<()> {
        match self
            .admin(AdminAction::Kick {
                client,
                reason: reason.into(),
            })
            .await?
        {
            Msg::AdminOk { .. } => Ok(()),
            m => Err(Error::protocol(format!("unexpected reply: {m:?}"))),
        }
    }

    /// Shows a warning on one client (or all, with `None`); returns how
    /// many it reached.
    pub async fn warn(&mut self, client: Option<u64>, text: &str) -> Result<u64> {
        match self
            .admin(AdminAction::Warn {
                client,
                text: text.into(),
            })
            .await?
        {
            Msg::AdminOk { clients } => Ok(clients),
            m => Err(Error::protocol(format!("unexpected reply: {m:?}"))),
        }
    }

    /// Streams the server's event log to `f`, oldest first.
    pub async fn admin_log(
        &mut self,
        since_s: Option<u64>,
        category: Option<String>,
        f: &mut dyn FnMut(serde_json::Value) -> Result<()>,
    ) -> Result<()> {
        let mut m = self.admin(AdminAction::Log { since_s, category }).await?;
        loop {
            match m {
                Msg::LogBatch { records } => {
                    for r in records {
                        f(r)?;
                    }
                }
                Msg::LogEnd => return Ok(()),
                Msg::Error { kind, message, .. } => return Err(reply_error(kind, message)),
                m => return Err(Error::protocol(format!("unexpected reply to log: {m:?}"))),
            }
            m = self.r.read_msg().await?;
        }
    }

    /// Removes a remote file or (with `recursive`) directory; needs admin.
    pub async fn remove(&mut self, path: &str, recursive: bool) -> Result<(u64, u64)> {
        self.elevate().await?;
        match self
            .call(&Msg::Remove {
                id: 0,
                path: path.into(),
                recursive,
            })
            .await?
        {
            Msg::Removed { files, dirs, .. } => Ok((files, dirs)),
            m => Err(Error::protocol(format!(
                "unexpected reply to remove: {m:?}"
            ))),
        }
    }

    fn ids(&mut self, n: usize) -> u64 {
        let first = self.next_id;
        self.next_id += n as u64;
        first
    }

    /// Says goodbye and closes the connection cleanly.
    pub async fn close(mut self) -> Result<()> {
        for c in std::mem::take(&mut self.extra) {
            let _ = Box::pin(c.close()).await;
        }
        self.w.msg(&Msg::Bye).await?;
        self.w.shutdown().await
    }
}

/// What was done to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Copy,
    Resume,
    Delta,
    Mkdir,
    Symlink,
    Delete,
    Meta,
    Skip,
}

/// The fate of one step of a batch.
#[derive(Debug, Clone)]
pub struct FileOutcome {
    pub path: String,
    pub action: Action,
    /// File size (for files).
    pub bytes: u64,
    pub result: Result<()>,
    /// The receiver could not use a delta or resume: send it whole again.
    pub redo: bool,
    /// The sender of a block delta found that data moved: ask again with
    /// an rsync signature (see [`crate::engine::blocks`]).
    pub rolling: bool,
    pub stats: SendStats,
    /// Bytes that were already there from an earlier, cut transfer.
    pub resumed: u64,
    /// Files and directories removed (for `Remove`).
    pub deleted: (u64, u64),
}

impl FileOutcome {
    fn new(path: String, action: Action) -> Self {
        FileOutcome {
            path,
            action,
            bytes: 0,
            result: Ok(()),
            redo: false,
            rolling: false,
            stats: SendStats::default(),
            resumed: 0,
            deleted: (0, 0),
        }
    }

    pub fn is_file(&self) -> bool {
        matches!(self.action, Action::Copy | Action::Resume | Action::Delta)
    }
}

fn reply_error(kind: ErrorKind, message: String) -> Error {
    Error::new(kind, message)
}

/// Runs file work (hashing, signatures) off the async threads, so the
/// other half of a pipelined batch keeps moving meanwhile.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::other(format!("worker failed: {e}")))?
}
