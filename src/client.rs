//! The client side of a connection: dial, TLS with pinning, hello, login,
//! and typed calls. Batches of uploads and downloads are pipelined: one
//! half of the connection streams requests (and file data) while the other
//! half collects replies, so there is no round trip per file or per chunk.

use crate::engine::{delta, partial};
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil::TempFile;
use crate::model::{Entry, Meta, Notice, PartialInfo, Stats};
use crate::proto::{
    AdminAction, Counted, Frame, FrameReader, FrameWriter, GetResume, Msg, NoticeHandler, Resume,
    WireCounters, ALPN_FTS, PROTOCOL_VERSION,
};
use crate::remote::Remote;
use crate::tls::PinPolicy;
use crate::transfer::{self, Dest, Received, SendError, SendOptions, SendStats, Sink};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

type Tls = tokio_rustls::client::TlsStream<Counted<TcpStream>>;

/// How to reach and trust a server.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `--fingerprint`: the only certificate to accept.
    pub fingerprint: Option<String>,
    /// Where pins are kept (default: `known_hosts` in the config dir).
    pub known_hosts: Option<PathBuf>,
    /// Longest wait for connecting and for any single read or write.
    pub timeout: Duration,
    /// Software name and version sent to the server.
    pub client_name: String,
    /// Display name shown in the server's client table (`--name`).
    pub name: String,
    /// Where warnings, chat messages and system notices from the server go
    /// when they arrive; without one they are dropped.
    pub notices: Option<NoticeHandler>,
    /// How uploads are sent (compression).
    pub send: SendOptions,
    /// `--bwlimit`: bytes per second in each direction on the socket.
    pub bwlimit: Option<u64>,
}

/// `user@hostname`, the default display name.
pub fn default_name() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "user".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            fingerprint: None,
            known_hosts: None,
            timeout: Duration::from_secs(30),
            client_name: format!("fts {}", env!("CARGO_PKG_VERSION")),
            name: default_name(),
            notices: None,
            bwlimit: None,
            send: SendOptions {
                compress: Some(crate::engine::compress::DEFAULT_LEVEL),
            },
        }
    }
}

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
}

impl Client {
    /// Connects, verifies the server's identity, and logs in when the
    /// server wants a password.
    pub async fn connect(
        remote: &Remote,
        opts: &ConnectOptions,
        creds: Arc<dyn Credentials>,
        obs: &dyn Observer,
    ) -> Result<Client> {
        let server = remote.host_port();
        let known_hosts = crate::config::KnownHosts::at(match &opts.known_hosts {
            Some(p) => p.clone(),
            None => crate::config::config_dir()?.join("known_hosts"),
        });
        let explicit = opts
            .fingerprint
            .as_deref()
            .map(crate::tls::normalize_fingerprint)
            .transpose()?;
        let known = if explicit.is_some() {
            None
        } else {
            known_hosts.get(&server)?
        };
        let policy = PinPolicy {
            explicit: explicit.clone(),
            known: known.clone(),
        };
        let (cfg, observed) = crate::tls::client_config(policy, ALPN_FTS)?;
        let tcp = tokio::time::timeout(
            opts.timeout,
            TcpStream::connect((remote.host.as_str(), remote.port)),
        )
        .await
        .map_err(|_| Error::connect(format!("could not connect to {server}: timed out")))?
        .map_err(|e| Error::connect(format!("could not connect to {server}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let counters = Arc::new(WireCounters::default());
        let tcp = Counted::new(tcp, counters.clone()).with_limit(opts.bwlimit);
        let connector = tokio_rustls::TlsConnector::from(cfg);
        let name = crate::tls::server_name(&remote.host)?;
        let handshake = tokio::time::timeout(opts.timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::connect(format!("{server}: TLS handshake timed out")))?;
        let seen = observed.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let tls = match handshake {
            Ok(t) => t,
            Err(e) => {
                if let Some((expected, got)) = seen.mismatch {
                    let source = if explicit.is_some() {
                        "--fingerprint".to_string()
                    } else {
                        known_hosts.path().display().to_string()
                    };
                    return Err(Error::tls(format!(
                        "SERVER IDENTITY MISMATCH for {server}\n  \
                         expected ({source}): {expected}\n  \
                         presented by server: {got}\n\
                         Someone may be intercepting the connection, or the server's certificate was replaced.\n\
                         Nothing was transferred. If you trust the new certificate, remove the line for {server} \
                         from {} or pass --fingerprint {got}.",
                        known_hosts.path().display()
                    )));
                }
                return Err(match e.kind() {
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::Other => {
                        Error::tls(format!("{server}: TLS handshake failed: {e}"))
                    }
                    _ => Error::connect(format!(
                        "{server}: connection failed during TLS handshake: {e}"
                    )),
                });
            }
        };
        let fingerprint = seen.fingerprint.clone().unwrap_or_default();
        if explicit.is_none() && known.is_none() && !seen.ca_valid {
            known_hosts.set(&server, &fingerprint)?;
            obs.notice(&format!(
                "recorded the fingerprint of {server} ({fingerprint}) in {}",
                known_hosts.path().display()
            ));
        }
        let (rh, wh) = tokio::io::split(tls);
        let (mut r, mut w) = crate::proto::frames(rh, wh, opts.timeout);
        if let Some(h) = &opts.notices {
            r.on_notice(h.clone());
        }
        r.accept_pings();
        w.msg(&Msg::Hello {
            version: PROTOCOL_VERSION,
            client: opts.client_name.clone(),
            name: Some(opts.name.clone()),
            timeout_ms: Some(opts.timeout.as_millis() as u64),
        })
        .await?;
        w.flush().await?;
        let (info, server_timeout) = match r.read_msg().await? {
            Msg::Welcome {
                version,
                server: sname,
                auth_required,
                admin_enabled,
                read_only,
                timeout_ms,
            } => {
                if version != PROTOCOL_VERSION {
                    return Err(Error::other(format!(
                        "{server} speaks protocol version {version}, this client {PROTOCOL_VERSION}"
                    )));
                }
                let info = ServerInfo {
                    server: sname,
                    auth_required,
                    admin_enabled,
                    read_only,
                    fingerprint,
                };
                (info, timeout_ms.map(Duration::from_millis))
            }
            Msg::Error { kind, message, .. } => return Err(reply_error(kind, message)),
            m => return Err(Error::protocol(format!("unexpected greeting {m:?}"))),
        };
        let mut c = Client {
            _keepalive: None,
            r,
            w,
            counters,
            info,
            server,
            creds,
            admin: false,
            next_id: 1,
            send: opts.send,
        };
        if c.info.auth_required {
            let pw = c.creds.password(PasswordKind::Access, &c.server)?;
            c.login(Some(pw), None).await?;
        }
        // Only once logged in: the server takes pings from then on.
        let every = crate::link::keepalive_interval(opts.timeout, server_timeout);
        c._keepalive = Some(c.w.keepalive(every));
        Ok(c)
    }

    async fn login(&mut self, password: Option<String>, admin: Option<String>) -> Result<()> {
        self.w
            .msg(&Msg::Auth {
                password,
                admin_password: admin,
            })
            .await?;
        self.w.flush().await?;
        match self.r.read_msg().await? {
            Msg::AuthOk { admin } => {
                self.admin = admin;
                Ok(())
            }
            Msg::Error { kind, message, .. } => {
                Err(reply_error(kind, format!("{}: {message}", self.server)))
            }
            m => Err(Error::protocol(format!("unexpected reply to login: {m:?}"))),
        }
    }

    /// Logs in as admin (asks the credentials provider for the admin password).
    pub async fn elevate(&mut self) -> Result<()> {
        if self.admin {
            return Ok(());
        }
        if !self.info.admin_enabled {
            return Err(Error::permission(format!(
                "{}: admin actions are disabled on this server (it was started without --admin-password-file)",
                self.server
            )));
        }
        let pw = self.creds.password(PasswordKind::Admin, &self.server)?;
        self.login(None, Some(pw)).await
    }

    pub fn wire(&self) -> (u64, u64) {
        (self.counters.sent(), self.counters.received())
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

    /// Sends one chat message (as admin when logged in as admin, then `to`
    /// is needed). Returns (live sessions reached, kept for later).
    pub async fn chat_send(&mut self, to: Option<&str>, text: &str) -> Result<(u64, bool)> {
        let id = self.ids(1);
        match self
            .call(&Msg::ChatSend {
                id,
                to: to.map(str::to_string),
                text: text.into(),
            })
            .await?
        {
            Msg::ChatAck { live, stored, .. } => Ok((live, stored)),
            m => Err(Error::protocol(format!("unexpected reply to chat: {m:?}"))),
        }
    }

    /// Enters chat mode (as admin with `admin`, logging in first): messages
    /// for this client now arrive as notices, starting with the unread
    /// ones. Returns the connection split for reading and writing at once.
    pub async fn into_chat(mut self, admin: bool) -> Result<(ChatWriter, ChatReader, u64)> {
        if admin {
            self.elevate().await?;
        }
        let unread = match self.call(&Msg::ChatJoin { admin }).await? {
            Msg::ChatJoined { unread } => unread,
            m => return Err(Error::protocol(format!("unexpected reply: {m:?}"))),
        };
        // Chat waits on people: only writes (and pings) are timed.
        self.r.set_timeout(Duration::from_secs(100 * 365 * 86400));
        Ok((
            ChatWriter {
                _keepalive: self._keepalive.take(),
                w: self.w,
                next_id: self.next_id,
            },
            ChatReader { r: self.r },
            unread,
        ))
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
}

/// The sending half of a chat connection.
pub struct ChatWriter {
    _keepalive: Option<crate::link::KeepAlive>,
    w: FrameWriter<WriteHalf<Tls>>,
    next_id: u64,
}

impl ChatWriter {
    /// Sends a message; its acknowledgement arrives on the [`ChatReader`]
    /// with the returned id.
    pub async fn send(&mut self, to: Option<&str>, text: &str) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        self.w
            .msg(&Msg::ChatSend {
                id,
                to: to.map(str::to_string),
                text: text.into(),
            })
            .await?;
        self.w.flush().await?;
        Ok(id)
    }

    pub async fn ping(&mut self) -> Result<()> {
        self.w.msg(&Msg::Ping).await?;
        self.w.flush().await
    }

    pub async fn close(mut self) -> Result<()> {
        self.w.msg(&Msg::Bye).await?;
        self.w.shutdown().await
    }
}

/// What comes back on a chat connection besides notices.
#[derive(Debug)]
pub enum ChatReply {
    /// Message `id` went to `live` sessions, or was kept (`stored`).
    Sent { id: u64, live: u64, stored: bool },
    /// Message `id` was refused.
    Refused { id: Option<u64>, error: Error },
}

/// The receiving half of a chat connection; notices go to the handler
/// given in [`ConnectOptions::notices`].
pub struct ChatReader {
    r: FrameReader<ReadHalf<Tls>>,
}

impl ChatReader {
    /// The next reply; `None` when the server closed the connection.
    pub async fn next(&mut self) -> Result<Option<ChatReply>> {
        let Some(frame) = self.r.read_opt().await? else {
            return Ok(None);
        };
        match frame {
            Frame::Control(Msg::ChatAck { id, live, stored }) => {
                Ok(Some(ChatReply::Sent { id, live, stored }))
            }
            Frame::Control(Msg::Error { id, kind, message }) => Ok(Some(ChatReply::Refused {
                id,
                error: reply_error(kind, message),
            })),
            other => Err(Error::protocol(format!("unexpected in chat: {other:?}"))),
        }
    }
}

/// How one file is uploaded.
#[derive(Debug, Clone)]
pub enum PutHow {
    Full,
    /// The server holds the first `offset` bytes in a partial file.
    Resume {
        offset: u64,
    },
    /// The server's copy (`base`) has this signature.
    Delta {
        base: Meta,
        signature: Vec<u8>,
    },
}

/// One step of an upload batch.
#[derive(Debug, Clone)]
pub enum PutOp {
    Mkdir {
        remote: String,
    },
    File {
        local: PathBuf,
        remote: String,
        how: PutHow,
    },
    Symlink {
        remote: String,
        target: String,
    },
    Remove {
        remote: String,
        recursive: bool,
    },
    DirMeta {
        remote: String,
        meta: Meta,
    },
}

/// How one file of a download batch is fetched.
#[derive(Debug, Clone)]
pub enum GetHow {
    Full,
    /// Continue the local partial file if it belongs to `source`.
    Resume {
        source: Meta,
    },
    /// Send a signature of the local copy and take a delta.
    Delta,
}

/// One file of a download batch.
#[derive(Debug, Clone)]
pub struct GetOp {
    pub remote: String,
    pub local: PathBuf,
    pub how: GetHow,
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
            stats: SendStats::default(),
            resumed: 0,
            deleted: (0, 0),
        }
    }

    pub fn is_file(&self) -> bool {
        matches!(self.action, Action::Copy | Action::Resume | Action::Delta)
    }
}

/// A request the writer has sent, waiting for its reply, or (no `id`) a
/// local failure that never reached the wire.
struct Pending {
    id: Option<u64>,
    outcome: FileOutcome,
}

fn reply_error(kind: ErrorKind, message: String) -> Error {
    Error::new(kind, message)
}

/// What the server has at an upload target.
#[derive(Debug, Clone)]
pub struct Probed {
    pub entry: Option<Entry>,
    pub partial: Option<PartialInfo>,
    /// The base version and its signature, when the server sent one.
    pub signature: Option<(Meta, Vec<u8>)>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::other(format!("worker failed: {e}")))?
}

impl Client {
    fn ids(&mut self, n: usize) -> u64 {
        let first = self.next_id;
        self.next_id += n as u64;
        first
    }

    /// Sends one request per item (ids in order) while reading the replies
    /// in the same order: `request` builds a request, `reply` turns the
    /// matching answer into a value (or hands back a message that is not
    /// an answer to this request). An error reply for an item is that
    /// item's `Err`.
    async fn pipelined<I, T>(
        &mut self,
        items: &[I],
        what: &str,
        request: impl Fn(u64, &I) -> Msg,
        mut reply: impl AsyncFnMut(
            &mut FrameReader<ReadHalf<Tls>>,
            u64,
            Msg,
        ) -> Result<std::result::Result<T, Msg>>,
    ) -> Result<Vec<Result<T>>> {
        let first = self.ids(items.len());
        let (w, r) = (&mut self.w, &mut self.r);
        let writer = async move {
            for (i, item) in items.iter().enumerate() {
                w.msg(&request(first + i as u64, item)).await?;
            }
            w.flush().await
        };
        let reader = async move {
            let mut out = Vec::with_capacity(items.len());
            for i in 0..items.len() {
                let id = first + i as u64;
                let m = r.read_msg().await?;
                if let Msg::Error {
                    id: Some(rid),
                    kind,
                    message,
                } = &m
                {
                    if *rid == id {
                        out.push(Err(reply_error(*kind, message.clone())));
                        continue;
                    }
                }
                match reply(r, id, m).await? {
                    Ok(v) => out.push(Ok(v)),
                    Err(m) => {
                        return Err(Error::protocol(format!(
                            "unexpected reply to {what}: {m:?}"
                        )))
                    }
                }
            }
            Ok(out)
        };
        Ok(tokio::try_join!(writer, reader)?.1)
    }

    /// What the server has at each target (pipelined). A target given with
    /// the version we would upload also brings the server's signature when
    /// the server sees a delta is the way to go.
    pub async fn probe(
        &mut self,
        targets: &[(String, Option<Meta>)],
    ) -> Result<Vec<Result<Probed>>> {
        self.pipelined(
            targets,
            "probe",
            |id, (path, source)| Msg::Probe {
                id,
                path: path.clone(),
                source: *source,
            },
            async |r, id, m| {
                let Msg::ProbeReply {
                    id: rid,
                    entry,
                    partial,
                    signature,
                } = m
                else {
                    return Ok(Err(m));
                };
                if rid != id {
                    return Ok(Err(Msg::ProbeReply {
                        id: rid,
                        entry,
                        partial,
                        signature,
                    }));
                }
                let signature = if signature {
                    // A signature the server could not make just means no delta.
                    match r.read_msg().await? {
                        Msg::SigReply { id: rid, base, len } if rid == id => {
                            Some((base, r.read_blob(len, delta::MAX_SIGNATURE).await?))
                        }
                        Msg::Error { id: Some(rid), .. } if rid == id => None,
                        m => return Ok(Err(m)),
                    }
                } else {
                    None
                };
                Ok(Ok(Probed {
                    entry,
                    partial,
                    signature,
                }))
            },
        )
        .await
    }

    /// Runs an upload batch, pipelined. Returns one outcome per op; only a
    /// connection failure is `Err`.
    pub async fn put_batch(
        &mut self,
        ops: Vec<PutOp>,
        obs: &dyn Observer,
    ) -> Result<Vec<FileOutcome>> {
        let first_id = self.ids(ops.len());
        let send = self.send;
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let w = &mut self.w;
        let r = &mut self.r;
        let writer = async move {
            for (i, op) in ops.into_iter().enumerate() {
                let id = first_id + i as u64;
                let pend = |action, path: &str| Pending {
                    id: Some(id),
                    outcome: FileOutcome::new(path.to_string(), action),
                };
                let (action, path, msg) = match op {
                    PutOp::Mkdir { remote } => (
                        Action::Mkdir,
                        remote.clone(),
                        Msg::Mkdir { id, path: remote },
                    ),
                    PutOp::Symlink { remote, target } => (
                        Action::Symlink,
                        remote.clone(),
                        Msg::Symlink {
                            id,
                            path: remote,
                            target,
                        },
                    ),
                    PutOp::Remove { remote, recursive } => (
                        Action::Delete,
                        remote.clone(),
                        Msg::Remove {
                            id,
                            path: remote,
                            recursive,
                        },
                    ),
                    PutOp::DirMeta { remote, meta } => (
                        Action::Meta,
                        remote.clone(),
                        Msg::SetMeta {
                            id,
                            path: remote,
                            mtime: meta.mtime,
                            mtime_ns: meta.mtime_ns,
                            mode: meta.mode,
                        },
                    ),
                    PutOp::File { local, remote, how } => {
                        let p = put_one(w, id, local, remote, how, send, obs).await?;
                        let _ = tx.send(p);
                        continue;
                    }
                };
                let _ = tx.send(pend(action, &path));
                w.msg(&msg).await?;
            }
            drop(tx);
            w.flush().await?;
            Ok::<(), Error>(())
        };
        let reader = async move {
            let mut out = Vec::new();
            while let Some(Pending { id, mut outcome }) = next_pending(&mut rx, r).await? {
                let Some(id) = id else {
                    obs.file_done(&outcome.path, false);
                    out.push(outcome);
                    continue;
                };
                match r.read_msg().await? {
                    Msg::Done { id: rid } if rid == id => {}
                    Msg::Removed {
                        id: rid,
                        files,
                        dirs,
                    } if rid == id => outcome.deleted = (files, dirs),
                    Msg::Redo { id: rid, reason } if rid == id => {
                        outcome.redo = true;
                        outcome.result = Err(Error::other(reason));
                    }
                    Msg::Error {
                        id: Some(rid),
                        kind,
                        message,
                    } if rid == id => {
                        if outcome.result.is_ok() {
                            outcome.result = Err(reply_error(kind, message));
                        }
                    }
                    Msg::Error {
                        id: None,
                        kind,
                        message,
                    } => return Err(reply_error(kind, message)),
                    m => return Err(Error::protocol(format!("unexpected reply {m:?}"))),
                }
                if outcome.is_file() {
                    obs.file_done(&outcome.path, outcome.result.is_ok());
                }
                out.push(outcome);
            }
            Ok::<_, Error>(out)
        };
        let res = tokio::try_join!(writer, reader);
        obs.batch_done();
        Ok(res?.1)
    }

    /// Runs a download batch, pipelined: requests (with signatures and
    /// resume offsets) go out while files stream back. Each file lands in a
    /// partial or temp file beside its target and is renamed only after its
    /// hash checks out.
    pub async fn get_batch(
        &mut self,
        ops: Vec<GetOp>,
        obs: &dyn Observer,
    ) -> Result<Vec<FileOutcome>> {
        let first_id = self.ids(ops.len());
        // Per request: its id, the op, a resumed prefix, and whether a
        // signature went with it (only then may the reply be a delta).
        type Sent = (u64, GetOp, Option<(u64, blake3::Hasher)>, bool);
        let (tx, mut rx) = mpsc::unbounded_channel::<Sent>();
        let w = &mut self.w;
        let r = &mut self.r;
        let writer = async move {
            for (i, op) in ops.into_iter().enumerate() {
                let id = first_id + i as u64;
                let mut resume = None;
                let mut signature = None;
                match &op.how {
                    GetHow::Full => {}
                    GetHow::Resume { source } => {
                        let (local, source) = (op.local.clone(), *source);
                        resume = blocking(move || {
                            let Some(found) = partial::find(&local)
                                .filter(|f| f.manifest.matches(&source) && f.len > 0)
                            else {
                                return Ok(None);
                            };
                            let mut f = File::open(partial::part_path(&local))
                                .map_err(|e| Error::local_io(&local, e))?;
                            let (hex, h) = partial::hash_prefix(&mut f, found.len)
                                .map_err(|e| Error::local_io(&local, e))?;
                            Ok(Some((found.len, hex, h, source)))
                        })
                        .await
                        .unwrap_or(None);
                    }
                    GetHow::Delta => {
                        let local = op.local.clone();
                        signature = blocking(move || {
                            let mut f =
                                File::open(&local).map_err(|e| Error::local_io(&local, e))?;
                            let len = f.metadata().map_err(|e| Error::local_io(&local, e))?.len();
                            delta::signature(&mut f, len)
                        })
                        .await
                        .ok();
                    }
                }
                let prefix = resume.as_ref().map(|(off, _, h, _)| (*off, h.clone()));
                w.msg(&Msg::Get {
                    id,
                    path: op.remote.clone(),
                    resume: resume.map(|(offset, prefix_hash, _, source)| GetResume {
                        offset,
                        prefix_hash,
                        source,
                    }),
                    signature: signature.as_ref().map(|s| s.len() as u64),
                })
                .await?;
                if let Some(s) = &signature {
                    w.blob(s).await?;
                }
                let _ = tx.send((id, op, prefix, signature.is_some()));
            }
            drop(tx);
            w.flush().await?;
            Ok::<(), Error>(())
        };
        let reader = async move {
            let mut out = Vec::new();
            while let Some((id, op, prefix, signed)) = rx.recv().await {
                let o = receive_one(r, id, &op, prefix, signed, obs).await?;
                obs.file_done(&op.remote, o.result.is_ok());
                out.push(o);
            }
            Ok::<_, Error>(out)
        };
        let res = tokio::try_join!(writer, reader);
        obs.batch_done();
        Ok(res?.1)
    }

    /// Says goodbye and closes the connection cleanly.
    pub async fn close(mut self) -> Result<()> {
        self.w.msg(&Msg::Bye).await?;
        self.w.shutdown().await
    }
}

/// The next upload whose reply is due. While the writer is still busy
/// with a big file, keeps reading the connection, so a warning or a kick
/// from the server shows at once instead of after the file.
async fn next_pending<R: tokio::io::AsyncRead + Unpin>(
    rx: &mut mpsc::UnboundedReceiver<Pending>,
    r: &mut FrameReader<R>,
) -> Result<Option<Pending>> {
    tokio::select! {
        biased;
        p = rx.recv() => Ok(p),
        // Reads are cancel-safe: a frame half-read here is finished by the
        // next read. Notices are handled inside; anything else before its
        // request was sent is out of step.
        f = r.read_opt() => match f? {
            None => Err(Error::connect("connection closed by the server")),
            Some(Frame::Control(Msg::Error { id: None, kind, message })) => {
                Err(reply_error(kind, message))
            }
            Some(f) => Err(Error::protocol(format!("reply before its request: {f:?}"))),
        },
    }
}

/// Sends one file of an upload batch (the reply comes later).
async fn put_one<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut FrameWriter<W>,
    id: u64,
    local: PathBuf,
    remote: String,
    how: PutHow,
    send: SendOptions,
    obs: &dyn Observer,
) -> Result<Pending> {
    let mut outcome = FileOutcome::new(remote.clone(), Action::Copy);
    let opened = File::open(&local)
        .and_then(|f| f.metadata().map(|m| (f, m)))
        .map_err(|e| Error::local_io(&local, e));
    let (file, md) = match opened {
        Ok(x) => x,
        Err(e) => {
            // Nothing sent: the reader records it without a reply.
            outcome.result = Err(e);
            return Ok(Pending { id: None, outcome });
        }
    };
    let meta = crate::fsutil::meta_of(&md);
    outcome.bytes = meta.size;
    // Work out how to send: a resume needs our hash of the prefix, a delta
    // a signature that survives validation; otherwise the whole file.
    let mut plan: (
        Option<Resume>,
        Option<(Meta, fast_rsync::Signature)>,
        blake3::Hasher,
    ) = (None, None, blake3::Hasher::new());
    match how {
        PutHow::Resume { offset } if offset > 0 && offset <= meta.size => {
            let mut f2 = file.try_clone().map_err(|e| Error::local_io(&local, e))?;
            let l2 = local.clone();
            if let Ok((hex, h)) = blocking(move || {
                partial::hash_prefix(&mut f2, offset).map_err(|e| Error::local_io(&l2, e))
            })
            .await
            {
                plan = (
                    Some(Resume {
                        offset,
                        prefix_hash: hex,
                    }),
                    None,
                    h,
                );
                outcome.action = Action::Resume;
                outcome.resumed = offset;
            }
        }
        PutHow::Delta { base, signature } => {
            if let Ok(sig) = delta::parse_signature(signature) {
                plan.1 = Some((base, sig));
                outcome.action = Action::Delta;
            }
        }
        _ => {}
    }
    let (resume, delta_plan, prefix) = plan;
    let offset = resume.as_ref().map_or(0, |r| r.offset);
    w.msg(&Msg::Put {
        id,
        path: remote.clone(),
        meta,
        resume,
        delta_base: delta_plan.as_ref().map(|(b, _)| *b),
    })
    .await?;
    obs.file_start(&remote, meta.size);
    if offset > 0 {
        obs.bytes(offset);
    }
    let sent = match delta_plan {
        Some((_, sig)) => {
            transfer::send_delta(w, file, meta.size, sig, send, &|c| obs.bytes(c.out_len)).await
        }
        None => {
            transfer::send_file(w, file, offset, meta.size, prefix, send, &|c| {
                obs.bytes(c.out_len)
            })
            .await
        }
    };
    match sent {
        Ok((hash, stats)) => {
            outcome.stats = stats;
            w.msg(&Msg::PutEnd { id, hash }).await?;
        }
        Err(SendError::Local(e)) => {
            let e = e.context(local.display());
            outcome.result = Err(e.clone());
            w.msg(&Msg::PutAbort {
                id,
                reason: e.message,
            })
            .await?;
        }
        Err(SendError::Net(e)) => return Err(e),
    }
    Ok(Pending {
        id: Some(id),
        outcome,
    })
}

/// Receives the reply to one `Get` (`signed`: a signature went with it).
/// Outer error: the connection failed, or the server broke the protocol.
async fn receive_one<R: tokio::io::AsyncRead + Unpin>(
    r: &mut FrameReader<R>,
    id: u64,
    op: &GetOp,
    prefix: Option<(u64, blake3::Hasher)>,
    signed: bool,
    obs: &dyn Observer,
) -> Result<FileOutcome> {
    let mut o = FileOutcome::new(op.remote.clone(), Action::Copy);
    let (meta, offset, is_delta) = match r.read_msg().await? {
        Msg::FileHeader {
            id: rid,
            meta,
            offset,
            delta,
        } if rid == id => (meta, offset, delta),
        Msg::Error {
            id: Some(rid),
            kind,
            message,
        } if rid == id => {
            o.result = Err(reply_error(kind, message));
            return Ok(o);
        }
        m => return Err(Error::protocol(format!("unexpected reply {m:?}"))),
    };
    // A delta applies to the local file: only to one whose signature we
    // sent, not to whatever the server picks (a symlink's target, say).
    if is_delta && !signed {
        return Err(Error::protocol(format!(
            "server sent a delta for {:?}, but no signature was sent",
            op.remote
        )));
    }
    if !is_delta && offset > meta.size {
        return Err(Error::protocol(format!(
            "server resumed {:?} at {offset}, past its end ({})",
            op.remote, meta.size
        )));
    }
    o.bytes = meta.size;
    obs.file_start(&op.remote, meta.size);
    let local = &op.local;
    let io = |e: std::io::Error| Error::local_io(local, e);
    // Where the bytes go depends on what the server chose to send.
    let prepared: Result<(Sink, Dest)> = (|| {
        if is_delta {
            o.action = Action::Delta;
            let tmp = TempFile::create_beside(local).map_err(io)?;
            let mut dest = Dest::new(tmp.file().try_clone().map_err(io)?);
            dest.base = Some(File::open(local).map_err(io)?);
            return Ok((Sink::Temp(tmp), dest));
        }
        if offset > 0 {
            let (have, hasher) = prefix
                .clone()
                .ok_or_else(|| Error::protocol("resume offset without a request"))?;
            if have != offset {
                return Err(Error::protocol("server resumed at another offset"));
            }
            let part = partial::PartFile::resume(local, offset)
                .map_err(io)?
                .ok_or_else(|| {
                    Error::other(format!("{}: partial file is busy", local.display()))
                })?;
            let mut dest = Dest::new(part.file().try_clone().map_err(io)?);
            dest.hasher = hasher;
            o.action = Action::Resume;
            o.resumed = offset;
            obs.bytes(offset);
            return Ok((Sink::Part(part), dest));
        }
        let sink = Sink::fresh(local, &meta).map_err(io)?;
        let dest = sink.dest().map_err(io)?;
        Ok((sink, dest))
    })();
    let (mut sink, dest) = match prepared {
        Ok((s, d)) => (Some(s), Some(d)),
        Err(e) => {
            o.result = Err(e);
            (None, None)
        }
    };
    let expect = if is_delta {
        meta.size
    } else {
        meta.size - offset
    };
    // A cut connection keeps a partial file for the next attempt; bytes
    // from a server that broke the protocol are not worth resuming.
    let broken = |e: Error, sink: &mut Option<Sink>| {
        if e.kind != ErrorKind::Other {
            return e;
        }
        if let Some(s) = sink.as_mut() {
            s.discard();
        }
        e.context(&op.remote)
    };
    let mut saved = 0;
    let received = transfer::receive(r, dest, expect, &|c| obs.bytes(c.out_len), &mut saved)
        .await
        .map_err(|e| broken(e, &mut sink))?;
    o.stats.compressed_saved = saved;
    let hash = match received {
        Received::Complete(h) => h,
        Received::Interrupted(Msg::Error { kind, message, .. }) => {
            o.result = Err(reply_error(kind, message));
            return Ok(o);
        }
        Received::Interrupted(m) => {
            let e = match m {
                Msg::FileEnd { .. } => Error::protocol(format!(
                    "the file ended before the {expect} bytes announced"
                )),
                m => Error::protocol(format!("unexpected {m:?}")),
            };
            return Err(broken(e, &mut sink));
        }
    };
    let end = r.read_msg().await.map_err(|e| broken(e, &mut sink))?;
    let (sent_hash, literal, matched) = match end {
        Msg::FileEnd {
            id: rid,
            hash,
            literal,
            matched,
        } if rid == id => (hash, literal, matched),
        Msg::Error {
            id: Some(rid),
            kind,
            message,
        } if rid == id => {
            o.result = Err(reply_error(kind, message));
            return Ok(o);
        }
        m => {
            let e = Error::protocol(format!("unexpected reply {m:?}"));
            return Err(broken(e, &mut sink));
        }
    };
    o.stats.literal = literal;
    o.stats.matched = matched;
    let Some(mut sink) = sink.take() else {
        return Ok(o);
    };
    o.result = match hash {
        Err(e) => {
            sink.discard();
            Err(e.context(local.display()))
        }
        Ok(h) if h != sent_hash => {
            sink.discard();
            if is_delta {
                o.redo = true;
                Err(Error::other(
                    "the file rebuilt from the delta did not verify",
                ))
            } else {
                Err(Error::integrity(format!(
                    "{}: integrity check failed (BLAKE3 mismatch); the local file was left untouched",
                    local.display()
                )))
            }
        }
        Ok(_) => sink.commit(local, &meta).map_err(io),
    };
    Ok(o)
}
