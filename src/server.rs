//! The server: accept loop, TLS, per-connection sessions, authentication,
//! and the request handlers that touch the share. It never prints; it
//! reports what happens as [`LogEvent`]s to a sink the caller provides.
//!
//! Shutdown: when the `shutdown` future completes, the listener closes,
//! idle sessions end at once and busy ones get `shutdown_grace` to finish
//! the request in hand; after that they are aborted, which drops their
//! temp files (see [`crate::fsutil::TempFile`]), so no partial file is
//! ever left under a real name.

mod quota;
pub(crate) mod web;

use crate::auth::{Backoff, Secret, Verifier};
use crate::engine::delta;
use crate::engine::partial;
use crate::error::{Error, ErrorKind, Result};
use crate::hub::{Hub, Inbox, Live};
use crate::journal::Journal;
use crate::model::{ClientState, Entry, EntryKind, Meta, Notice, NoticeKind};
use crate::proto::{
    AdminAction, Frame, FrameReader, FrameWriter, GetResume, Msg, Resume, ALPN_FTS,
    PROTOCOL_VERSION,
};
use crate::store::{Begin, Store, Upload};
use crate::tls::Identity;
use crate::transfer::{self, Dest, Received, SendError, SendOptions};
use quota::{Held, Quota, Throttle};
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How a server is run.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// What is shared; every file operation goes through it.
    pub store: Arc<dyn Store>,
    pub read_only: bool,
    pub max_clients: usize,
    pub password: Option<Secret>,
    pub admin_password: Option<Secret>,
    /// Longest wait for any single read or write from a client.
    pub io_timeout: Duration,
    /// Longest time a new connection may take to finish TLS and say hello.
    pub handshake_timeout: Duration,
    /// Longest a browser may take to send a request's headers (and longest
    /// an idle keep-alive HTTP/1.1 connection stays open).
    pub http_timeout: Duration,
    /// How long in-flight requests may run on after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// How downloads are sent (compression).
    pub send: SendOptions,
    /// Where lifetime totals (`totals.json`) and the event log (`logs/`)
    /// are kept; `None` keeps neither.
    pub state_dir: Option<PathBuf>,
}

impl ServerOptions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ServerOptions {
            store,
            read_only: false,
            max_clients: 64,
            password: None,
            admin_password: None,
            io_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            http_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            send: SendOptions {
                compress: Some(crate::engine::compress::DEFAULT_LEVEL),
            },
            state_dir: None,
        }
    }
}

/// Everything the server reports; rendered by the CLI as text or JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LogEvent {
    Listening {
        addr: String,
        fingerprint: String,
        root: String,
        read_only: bool,
        max_clients: usize,
        password_required: bool,
        admin_enabled: bool,
    },
    Connect {
        client: u64,
        addr: String,
        name: String,
    },
    Disconnect {
        client: u64,
        addr: String,
        error: Option<String>,
    },
    Rejected {
        addr: String,
        reason: String,
    },
    Auth {
        client: u64,
        addr: String,
        admin: bool,
        ok: bool,
    },
    Upload {
        client: u64,
        path: String,
        bytes: u64,
    },
    Download {
        client: u64,
        path: String,
        bytes: u64,
    },
    Delete {
        client: u64,
        path: String,
        files: u64,
        dirs: u64,
    },
    /// A chat message (its text is logged: chat is not a secret channel).
    Chat {
        client: u64,
        from: String,
        to: String,
        text: String,
        live: u64,
        stored: bool,
    },
    /// An admin action, or an attempt at one without the rights.
    Admin {
        client: u64,
        action: String,
        target: Option<u64>,
        ok: bool,
        detail: String,
    },
    /// A download over HTTPS ended (`complete` false: cut short).
    WebDownload {
        addr: String,
        path: String,
        bytes: u64,
        complete: bool,
    },
    /// An upload over HTTPS was stored.
    WebUpload {
        addr: String,
        path: String,
        bytes: u64,
    },
    /// A request that failed on the server's side.
    Error {
        client: u64,
        message: String,
    },
    Shutdown {
        sessions: usize,
    },
    Stopped,
}

impl LogEvent {
    /// The category under which the event is logged and exported.
    pub fn category(&self) -> &'static str {
        match self {
            LogEvent::Listening { .. } | LogEvent::Shutdown { .. } | LogEvent::Stopped => "server",
            LogEvent::Connect { .. } | LogEvent::Disconnect { .. } => "connect",
            LogEvent::Rejected { .. } | LogEvent::Error { .. } => "error",
            LogEvent::Auth { .. } => "auth",
            LogEvent::Upload { .. }
            | LogEvent::Download { .. }
            | LogEvent::WebDownload { .. }
            | LogEvent::WebUpload { .. } => "transfer",
            LogEvent::Delete { .. } => "delete",
            LogEvent::Chat { .. } => "chat",
            LogEvent::Admin { .. } => "admin",
        }
    }
}

/// TLS handshakes in progress at once, and from one address. A handshake
/// takes milliseconds; these only fill up under a flood of connections
/// that never finish theirs, and then one address cannot take them all.
/// The per-address cap sits above what busy legitimate use reaches: in the
/// soak, 200 clients on one address starting connections while two cores
/// are saturated had more than 128 handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 1024;
pub const MAX_HANDSHAKES_PER_IP: usize = 256;
/// Sessions from one address that said hello but have not logged in yet.
pub const MAX_LOGGING_IN_PER_IP: usize = 16;

/// Where log events go.
pub type LogSink = Arc<dyn Fn(LogEvent) + Send + Sync>;

struct Shared {
    opts: ServerOptions,
    acceptor: tokio_rustls::TlsAcceptor,
    slots: Arc<Semaphore>,
    backoff: Backoff,
    verifier: Verifier,
    log: LogSink,
    journal: Option<Journal>,
    hub: Arc<Hub>,
    next_id: AtomicU64,
    web: Arc<web::WebState>,
    /// TLS handshakes in progress: capped so that connections that never
    /// finish theirs cannot pile up (each is cut after the handshake timeout).
    handshakes: Arc<Quota>,
    /// Sessions that have not logged in yet (only with an access password).
    logging_in: Arc<Quota>,
    /// Refusals of whole connections are logged at most once a second.
    refusals: Throttle,
}

impl Shared {
    /// Why a non-admin cannot do `what`.
    fn admin_needed(&self, what: &str) -> Error {
        match self.opts.admin_password {
            None => Error::permission(
                "admin actions are disabled on this server (it was started without --admin-password-file)",
            ),
            Some(_) => Error::auth(format!("{what} needs the admin password")),
        }
    }

    /// Logs a connection refused for `why`, throttled.
    fn refused(&self, addr: &str, why: String) {
        if let Some(quiet) = self.refusals.pass() {
            let reason = match quiet {
                0 => why,
                n => format!("{why} ({n} more refused since the last such entry)"),
            };
            self.log(LogEvent::Rejected {
                addr: addr.into(),
                reason,
            });
        }
    }

    /// A fresh id for a connection or web session.
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn log(&self, e: LogEvent) {
        if let Some(j) = &self.journal {
            if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&e) {
                let mut rec = serde_json::Map::new();
                rec.insert("time".into(), crate::hub::now_rfc3339().into());
                rec.insert("category".into(), e.category().into());
                rec.extend(fields);
                j.write(&serde_json::Value::Object(rec));
            }
        }
        (self.log)(e)
    }

    /// Waits out the login backoff for `ip` before a password is checked.
    /// False (logged) when the address already has so many attempts queued
    /// that this one is refused without a check.
    async fn wait_backoff(&self, peer: SocketAddr) -> bool {
        match self.backoff.reserve(peer.ip()) {
            Some(delay) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                true
            }
            None => {
                self.log(LogEvent::Rejected {
                    addr: peer.to_string(),
                    reason: THROTTLED.into(),
                });
                false
            }
        }
    }

    /// One password check (argon2, bounded concurrency), logged as an
    /// auth event of `client` (0 for HTTP).
    async fn check_password(
        &self,
        secret: &Secret,
        given: String,
        client: u64,
        peer: SocketAddr,
        admin: bool,
    ) -> bool {
        let ok = self.verifier.verify(secret, given).await;
        self.log(LogEvent::Auth {
            client,
            addr: peer.to_string(),
            admin,
            ok,
        });
        ok
    }

    /// How a login attempt from `ip` ended, for the backoff and the totals.
    fn login_outcome(&self, ip: std::net::IpAddr, ok: bool) {
        if ok {
            self.backoff.success(ip);
        } else {
            self.backoff.failure(ip);
            self.hub.auth_failed();
        }
    }
}

/// Serves `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    opts: ServerOptions,
    identity: &Identity,
    log: LogSink,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    // One port: fts clients ask for fts/1, browsers and HTTP tools for
    // h2 or http/1.1 (or nothing) and get the web side.
    let tls = crate::tls::server_config(identity, &[ALPN_FTS, b"h2", b"http/1.1"])?;
    let addr = listener.local_addr()?;
    let journal = match &opts.state_dir {
        Some(d) => Some(Journal::open(&d.join("logs"))?),
        None => None,
    };
    let hub = Arc::new(Hub::new(
        opts.store.location(),
        opts.max_clients as u64,
        opts.read_only,
        opts.state_dir.clone(),
    ));
    let ticker = tokio::spawn(hub.clone().tick());
    let listening = LogEvent::Listening {
        addr: addr.to_string(),
        fingerprint: identity.fingerprint(),
        root: opts.store.location(),
        read_only: opts.read_only,
        max_clients: opts.max_clients,
        password_required: opts.password.is_some(),
        admin_enabled: opts.admin_password.is_some(),
    };
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(opts.max_clients)),
        opts,
        acceptor: tokio_rustls::TlsAcceptor::from(tls),
        backoff: Backoff::default(),
        verifier: Verifier::default(),
        log,
        journal,
        hub,
        next_id: AtomicU64::new(1),
        web: Arc::new(web::WebState::new()),
        handshakes: Quota::new(
            MAX_HANDSHAKES,
            MAX_HANDSHAKES_PER_IP,
            "TLS handshakes in progress",
        ),
        logging_in: Quota::new(
            usize::MAX,
            MAX_LOGGING_IN_PER_IP,
            "sessions waiting to log in",
        ),
        refusals: Throttle::default(),
    });
    shared.log(listening);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            acc = listener.accept() => match acc {
                Ok((tcp, peer)) => {
                    let pending = match shared.handshakes.take(peer.ip()) {
                        Ok(p) => p,
                        Err(why) => {
                            // Closed at once: the kernel answers with a FIN.
                            drop(tcp);
                            shared.refused(&peer.to_string(), why);
                            continue;
                        }
                    };
                    let s = shared.clone();
                    let stop = stop_rx.clone();
                    sessions.spawn(async move { connection(s, tcp, peer, stop, pending).await });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    shared.refused("-", format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    shared.log(LogEvent::Shutdown {
        sessions: sessions.len(),
    });
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(shared.opts.shutdown_grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
    ticker.abort();
    shared.hub.save();
    shared.log(LogEvent::Stopped);
    Ok(())
}

/// What `ls` shows for `rel`: the entry itself for a file, else the
/// directory's entries (the whole tree when `recursive`), with content
/// hashes when `hashes`. Blocking.
/// Every entry `store` lists at `rel`, collected.
pub(crate) fn listing(
    store: &dyn Store,
    rel: &str,
    recursive: bool,
    hashes: bool,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    store.list(rel, recursive, hashes, &mut |e| {
        out.push(e);
        Ok(())
    })?;
    Ok(out)
}

/// Why a login is refused unchecked (see [`Backoff::reserve`]).
pub(crate) const THROTTLED: &str = "too many failed logins from this address: try again later";

async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
    pending: Held,
) {
    let _ = tcp.set_nodelay(true);
    let addr = peer.to_string();
    let tls = match tokio::time::timeout(shared.opts.handshake_timeout, shared.acceptor.accept(tcp))
        .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            shared.refused(&addr, format!("TLS handshake failed: {e}"));
            return;
        }
        Err(_) => {
            shared.refused(&addr, "TLS handshake timed out".into());
            return;
        }
    };
    drop(pending);
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if alpn.as_deref() != Some(ALPN_FTS) {
        web::serve(shared, tls, alpn, peer, stop).await;
        return;
    }
    let (rh, wh) = tokio::io::split(tls);
    let (mut r, mut w) = crate::proto::frames(rh, wh, shared.opts.io_timeout);
    r.set_timeout(shared.opts.handshake_timeout);
    let Ok(_permit) = shared.slots.clone().try_acquire_owned() else {
        let e = Error::connect(format!(
            "server full: it already serves its maximum of {} clients, try again later",
            shared.opts.max_clients
        ));
        let _ = w.msg(&Msg::error(None, &e)).await;
        let _ = w.shutdown().await;
        shared.refused(&addr, "server full".into());
        return;
    };
    // Sessions that have yet to log in may wait for a person typing at a
    // prompt, so they get the full I/O timeout; one address may hold only
    // a few of them, so idling at the login cannot take every slot.
    let login_slot = match shared.opts.password {
        Some(_) => match shared.logging_in.take(peer.ip()) {
            Ok(h) => Some(h),
            Err(why) => {
                let e = Error::connect(format!("{why}, try again later"));
                let _ = w.msg(&Msg::error(None, &e)).await;
                let _ = w.shutdown().await;
                shared.refused(&addr, why);
                return;
            }
        },
        None => None,
    };
    let id = shared.next_id();
    let (name, client_timeout) = match hello(&shared, &mut r, &mut w).await {
        Ok(n) => n,
        Err(e) => {
            shared.log(LogEvent::Rejected {
                addr,
                reason: e.message,
            });
            return;
        }
    };
    let (live, inbox) = shared.hub.register(id, addr.clone(), &name);
    shared.log(LogEvent::Connect {
        client: id,
        addr: addr.clone(),
        name: live.name(),
    });
    // Notices (warnings, chat) go out between whatever frames the session
    // is writing, so they arrive even in the middle of a transfer.
    let Inbox {
        notices: mut notice_rx,
        kick: mut kick_rx,
    } = inbox;
    // The client's timer runs while this side only reads (a long upload)
    // or works (hashing, listing, committing): keep proving we are here.
    let _keepalive = w.keepalive(crate::link::keepalive_interval(
        shared.opts.io_timeout,
        client_timeout,
    ));
    let mut pusher_w = w.handle();
    let pusher = tokio::spawn(async move {
        while let Some(notice) = notice_rx.recv().await {
            if pusher_w.msg(&Msg::Notice { notice }).await.is_err()
                || pusher_w.flush().await.is_err()
            {
                break;
            }
        }
    });
    let mut s = Session {
        shared: shared.clone(),
        id,
        peer,
        live: live.clone(),
        authed: shared.opts.password.is_none(),
        admin: false,
        login_slot,
    };
    let kick_w = w.handle();
    let kicked = async {
        let reason = loop {
            if let Some(r) = kick_rx.borrow_and_update().clone() {
                break r;
            }
            if kick_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        // Take the writer between two frames before dropping the request in
        // hand, so the client reads a whole `Kicked` message.
        (reason, kick_w.exclusive().await)
    };
    let res = tokio::select! {
        res = s.run(&mut r, &mut w, stop) => {
            if res.is_ok() {
                let _ = w.shutdown().await;
            }
            res
        }
        (reason, mut ex) = kicked => {
            let _ = ex.msg(&Msg::Kicked { reason: reason.clone() }).await;
            let _ = ex.flush().await;
            // Keep reading (and dropping) what the client still sends for a
            // moment, so it reads the reason instead of a connection reset.
            r.drain(Duration::from_secs(2)).await;
            let _ = ex.shutdown().await;
            Err(Error::kicked(&reason))
        }
    };
    pusher.abort();
    shared.hub.unregister(id);
    shared.log(LogEvent::Disconnect {
        client: id,
        addr,
        error: res.err().map(|e| e.message),
    });
}

/// The version handshake; returns the client's display name and how long
/// it waits through silence.
async fn hello<R, W>(
    shared: &Shared,
    r: &mut Reader<R>,
    w: &mut Writer<W>,
) -> Result<(String, Option<Duration>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let hello = match r.read_msg().await? {
        Msg::Hello {
            version,
            client,
            name,
            timeout_ms,
        } if version == PROTOCOL_VERSION => (
            name.unwrap_or(client),
            timeout_ms.map(Duration::from_millis),
        ),
        Msg::Hello { version, .. } => {
            let e = Error::other(format!(
                "unsupported protocol version {version} (this server speaks {PROTOCOL_VERSION})"
            ));
            w.msg(&Msg::error(None, &e)).await?;
            w.flush().await?;
            return Err(e);
        }
        _ => return Err(Error::protocol("expected hello")),
    };
    r.set_timeout(shared.opts.io_timeout);
    w.msg(&Msg::Welcome {
        version: PROTOCOL_VERSION,
        server: format!("fts {}", env!("CARGO_PKG_VERSION")),
        auth_required: shared.opts.password.is_some(),
        admin_enabled: shared.opts.admin_password.is_some(),
        read_only: shared.opts.read_only,
        timeout_ms: Some(shared.opts.io_timeout.as_millis() as u64),
    })
    .await?;
    w.flush().await?;
    Ok(hello)
}

struct Session {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    live: Arc<Live>,
    authed: bool,
    admin: bool,
    /// Held until the session has logged in.
    login_slot: Option<Held>,
}

type Reader<R> = FrameReader<R>;
type Writer<W> = FrameWriter<W>;

impl Session {
    fn opts(&self) -> &ServerOptions {
        &self.shared.opts
    }

    fn log(&self, e: LogEvent) {
        self.shared.log(e)
    }

    fn hub(&self) -> &Hub {
        &self.shared.hub
    }

    async fn run<R, W>(
        &mut self,
        r: &mut Reader<R>,
        w: &mut Writer<W>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.authed {
            self.announce_unread(false);
            r.accept_pings();
        }
        loop {
            let frame = tokio::select! {
                f = r.read_opt() => f?,
                _ = stop.changed() => return Ok(()),
            };
            let msg = match frame {
                None => return Ok(()),
                Some(Frame::Chunk(_)) => return Err(Error::protocol("unexpected data frame")),
                Some(Frame::Control(m)) => m,
            };
            match msg {
                Msg::Bye => return Ok(()),
                Msg::Auth {
                    password,
                    admin_password,
                } => {
                    // Only idling at the login counts against the address;
                    // a login in the queue for its password check does not.
                    self.login_slot = None;
                    self.auth(w, password, admin_password).await?;
                    if self.authed {
                        r.accept_pings();
                    }
                    if !self.authed {
                        match self.shared.logging_in.take(self.peer.ip()) {
                            Ok(h) => self.login_slot = Some(h),
                            Err(why) => return Err(Error::auth(why)),
                        }
                    }
                }
                _ if !self.authed => {
                    let e = Error::auth("authentication required");
                    w.msg(&Msg::error(None, &e)).await?;
                    w.flush().await?;
                    return Err(e);
                }
                Msg::Ping => {}
                Msg::Syncing => self.live.set_syncing(),
                Msg::StatsReq => {
                    w.msg(&Msg::StatsReply {
                        stats: Box::new(self.hub().stats()),
                    })
                    .await?
                }
                Msg::Admin { action } => self.admin_action(w, action).await?,
                Msg::ChatJoin { admin } => self.chat_join(w, admin).await?,
                Msg::ChatSend { id, to, text } => {
                    let reply = match self
                        .hub()
                        .chat(&self.live, self.admin, to.as_deref(), &text)
                    {
                        Ok((n, live, stored)) => {
                            self.log(LogEvent::Chat {
                                client: self.id,
                                from: n.from,
                                to: n.to,
                                text: n.text,
                                live,
                                stored,
                            });
                            Msg::ChatAck { id, live, stored }
                        }
                        Err(e) => Msg::error(Some(id), &e),
                    };
                    w.msg(&reply).await?;
                }
                Msg::Stat { path } => {
                    let reply = match self.store().stat(&path) {
                        Ok(entry) => Msg::StatReply { entry },
                        Err(e) => Msg::error(None, &e),
                    };
                    w.msg(&reply).await?;
                }
                Msg::List {
                    path,
                    recursive,
                    hashes,
                } => self.list(w, &path, recursive, hashes).await?,
                Msg::Probe { id, path, source } => self.probe(w, id, &path, source).await?,
                Msg::Mkdir { id, path } => {
                    let reply = match self.mkdir(&path) {
                        Ok(()) => Msg::Done { id },
                        Err(e) => Msg::error(Some(id), &e),
                    };
                    w.msg(&reply).await?;
                }
                Msg::Symlink { id, path, target } => {
                    let reply = match self.symlink(&path, &target) {
                        Ok(()) => Msg::Done { id },
                        Err(e) => Msg::error(Some(id), &e),
                    };
                    w.msg(&reply).await?;
                }
                Msg::SetMeta {
                    id,
                    path,
                    mtime,
                    mtime_ns,
                    mode,
                } => {
                    let meta = Meta {
                        size: 0,
                        mtime,
                        mtime_ns,
                        mode,
                    };
                    let reply = match self.set_meta(&path, &meta) {
                        Ok(()) => Msg::Done { id },
                        Err(e) => Msg::error(Some(id), &e),
                    };
                    w.msg(&reply).await?;
                }
                Msg::Put {
                    id,
                    path,
                    meta,
                    resume,
                    delta_base,
                } => {
                    let reply = self.put(r, id, &path, &meta, resume, delta_base).await?;
                    if let Msg::Error { message, .. } = &reply {
                        self.log(LogEvent::Error {
                            client: self.id,
                            message: message.clone(),
                        });
                    }
                    w.msg(&reply).await?;
                }
                Msg::Get {
                    id,
                    path,
                    resume,
                    signature,
                } => self.get(r, w, id, &path, resume, signature).await?,
                Msg::Remove {
                    id,
                    path,
                    recursive,
                } => {
                    let reply = match self.remove(&path, recursive) {
                        Ok((files, dirs)) => Msg::Removed { id, files, dirs },
                        Err(e) => Msg::error(Some(id), &e),
                    };
                    w.msg(&reply).await?;
                }
                other => {
                    return Err(Error::protocol(format!(
                        "unexpected message from client: {}",
                        msg_name(&other)
                    )))
                }
            }
            w.flush().await?;
        }
    }

    async fn auth<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Writer<W>,
        password: Option<String>,
        admin_password: Option<String>,
    ) -> Result<()> {
        let (authed_before, admin_before) = (self.authed, self.admin);
        let ip = self.peer.ip();
        let shared = self.shared.clone();
        let mut failure: Option<Error> = None;
        let throttled = (password.is_some() || admin_password.is_some())
            && !shared.wait_backoff(self.peer).await;
        if throttled {
            failure = Some(Error::auth(THROTTLED));
        } else if let (Some(secret), false) = (&shared.opts.password, self.authed) {
            match password {
                Some(p) => {
                    self.authed = shared
                        .check_password(secret, p, self.id, self.peer, false)
                        .await;
                    if !self.authed {
                        failure = Some(Error::auth("wrong password"));
                    }
                }
                None => {
                    failure = Some(Error::auth("this server requires a password"));
                    self.log(LogEvent::Auth {
                        client: self.id,
                        addr: self.peer.to_string(),
                        admin: false,
                        ok: false,
                    });
                }
            }
        }
        if let (None, Some(p)) = (&failure, admin_password) {
            match &shared.opts.admin_password {
                None => failure = Some(self.admin_needed("admin login")),
                Some(secret) => {
                    self.admin = shared
                        .check_password(secret, p, self.id, self.peer, true)
                        .await;
                    if !self.admin {
                        failure = Some(Error::auth("wrong admin password"));
                    }
                }
            }
        }
        let was_authed = self.authed && !authed_before;
        match failure {
            Some(e) => {
                if e.kind == ErrorKind::Auth && !throttled {
                    shared.login_outcome(ip, false);
                }
                w.msg(&Msg::error(None, &e)).await?;
            }
            None => {
                shared.login_outcome(ip, true);
                w.msg(&Msg::AuthOk { admin: self.admin }).await?;
                if self.admin {
                    self.live.set_admin();
                }
                if was_authed {
                    self.announce_unread(false);
                }
                if self.admin && !admin_before {
                    self.announce_unread(true);
                }
            }
        }
        Ok(())
    }

    /// Tells the person at the client about chat messages waiting for them.
    fn announce_unread(&self, admin: bool) {
        let (n, whose) = if admin {
            (self.hub().unread_admin(), "from clients for the admins")
        } else {
            (
                self.hub().unread(&self.live.name()),
                "from the server's admins",
            )
        };
        if n == 0 {
            return;
        }
        let cmd = if admin {
            "fts chat --admin"
        } else {
            "fts chat"
        };
        let _ = self.live_notice(
            NoticeKind::System,
            format!(
                "{n} unread message{} {whose}: read {} with `{cmd}`",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" }
            ),
        );
    }

    fn live_notice(&self, kind: NoticeKind, text: String) -> bool {
        self.hub().notify(
            &self.live,
            Notice {
                time: crate::hub::now_rfc3339(),
                from: "server".into(),
                to: self.live.name(),
                kind,
                text,
                from_id: None,
            },
        )
    }

    /// Enters chat mode. Waiting messages are written before the reply,
    /// so the client has shown them by the time it knows it is in.
    async fn chat_join<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Writer<W>,
        admin: bool,
    ) -> Result<()> {
        if admin && !self.admin {
            let e = self.admin_needed("chatting as admin");
            return w.msg(&Msg::error(None, &e)).await;
        }
        let waiting = self.hub().join_chat(&self.live, admin);
        let unread = waiting.len() as u64;
        for notice in waiting {
            w.msg(&Msg::Notice { notice }).await?;
        }
        w.msg(&Msg::ChatJoined { unread }).await
    }

    fn admin_needed(&self, what: &str) -> Error {
        self.shared.admin_needed(what)
    }

    async fn admin_action<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut Writer<W>,
        action: AdminAction,
    ) -> Result<()> {
        let (name, target) = match &action {
            AdminAction::Clients => ("clients", None),
            AdminAction::Kick { client, .. } => ("kick", Some(*client)),
            AdminAction::Warn { client, .. } => ("warn", *client),
            AdminAction::Log { .. } => ("log", None),
        };
        if !self.admin {
            let e = self.admin_needed(&format!("admin {name}"));
            self.log(LogEvent::Admin {
                client: self.id,
                action: name.into(),
                target,
                ok: false,
                detail: "refused: not logged in as admin".into(),
            });
            return w.msg(&Msg::error(None, &e)).await;
        }
        let me = format!("admin ({})", self.live.name());
        let result: Result<(Msg, String)> = match action {
            AdminAction::Clients => Ok((
                Msg::StatsReply {
                    stats: Box::new(self.hub().stats()),
                },
                String::new(),
            )),
            AdminAction::Kick { client, reason } => {
                let reason = if reason.trim().is_empty() {
                    "no reason given".to_string()
                } else {
                    reason
                };
                self.hub()
                    .kick(client, &reason)
                    .map(|()| (Msg::AdminOk { clients: 1 }, reason))
            }
            AdminAction::Warn { client, text } => self
                .hub()
                .warn(client, &text, &me)
                .map(|n| (Msg::AdminOk { clients: n }, text)),
            AdminAction::Log { since_s, category } => {
                return self.export_log(w, since_s, category).await;
            }
        };
        match result {
            Ok((reply, detail)) => {
                if name != "clients" {
                    self.log(LogEvent::Admin {
                        client: self.id,
                        action: name.into(),
                        target,
                        ok: true,
                        detail: crate::model::printable(&detail, 200),
                    });
                }
                w.msg(&reply).await
            }
            Err(e) => w.msg(&Msg::error(None, &e)).await,
        }
    }

    /// Streams the event log, oldest first, in batches.
    async fn export_log<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        since_s: Option<u64>,
        category: Option<String>,
    ) -> Result<()> {
        if let Some(c) = &category {
            if !crate::journal::CATEGORIES.contains(&c.as_str()) {
                let e = Error::usage(format!(
                    "unknown log category '{c}' (one of: {})",
                    crate::journal::CATEGORIES.join(", ")
                ));
                return w.msg(&Msg::error(None, &e)).await;
            }
        }
        self.log(LogEvent::Admin {
            client: self.id,
            action: "log".into(),
            target: None,
            ok: true,
            detail: format!(
                "export{}{}",
                category
                    .as_ref()
                    .map(|c| format!(" category={c}"))
                    .unwrap_or_default(),
                since_s.map(|s| format!(" since={s}s")).unwrap_or_default()
            ),
        });
        if self.shared.journal.is_none() {
            return w.msg(&Msg::LogEnd).await;
        }
        let shared = self.shared.clone();
        let since = since_s.map(|s| std::time::SystemTime::now() - Duration::from_secs(s));
        // Read on a blocking thread; batches come back through a small
        // channel, so a long log never sits in memory whole.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<serde_json::Value>>(2);
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            let Some(j) = &shared.journal else {
                return Ok(());
            };
            let mut batch = Vec::new();
            let mut bytes = 0;
            j.query(since, category.as_deref(), &mut |v| {
                bytes += v.to_string().len() + 8;
                batch.push(v);
                if bytes > 24 * 1024 {
                    bytes = 0;
                    tx.blocking_send(std::mem::take(&mut batch))
                        .map_err(|_| Error::other("log export cancelled"))?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            Ok(())
        });
        while let Some(records) = rx.recv().await {
            w.msg(&Msg::LogBatch { records }).await?;
        }
        match reader.await {
            Ok(Ok(())) => w.msg(&Msg::LogEnd).await,
            Ok(Err(e)) => w.msg(&Msg::error(None, &e)).await,
            Err(e) => w.msg(&Msg::error(None, &Error::other(e.to_string()))).await,
        }
    }

    fn store(&self) -> &dyn Store {
        &*self.opts().store
    }

    fn writable(&self) -> Result<()> {
        if self.opts().read_only {
            return Err(Error::permission("this share is read-only"));
        }
        Ok(())
    }

    async fn list<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        rel: &str,
        recursive: bool,
        hashes: bool,
    ) -> Result<()> {
        let store = self.opts().store.clone();
        let rel_s = rel.to_string();
        // Walking (and hashing) a big tree is blocking work.
        let listing =
            tokio::task::spawn_blocking(move || listing(&*store, &rel_s, recursive, hashes))
                .await
                .map_err(|e| Error::other(format!("listing failed: {e}")))?;
        let entries = match listing {
            Ok(v) => v,
            Err(e) => return w.msg(&Msg::error(None, &e)).await,
        };
        // Batches stay well under MAX_CONTROL: paths are at most MAX_PATH.
        let mut batch = Vec::new();
        let mut bytes = 0;
        for e in entries {
            bytes += e.path.len() + e.target.as_ref().map_or(0, |t| t.len()) + 200;
            batch.push(e);
            if bytes > 24 * 1024 {
                w.msg(&Msg::ListBatch {
                    entries: std::mem::take(&mut batch),
                })
                .await?;
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            w.msg(&Msg::ListBatch { entries: batch }).await?;
        }
        w.msg(&Msg::ListEnd).await
    }

    /// What is at an upload target: the file, and a resumable partial file.
    /// Answers a probe; with the client's `source` version, also sends the
    /// signature of our file when the client will want to send a delta.
    async fn probe<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        id: u64,
        rel: &str,
        source: Option<Meta>,
    ) -> Result<()> {
        let reply = self.probe_reply(id, rel, source).await;
        let sign = matches!(
            reply,
            Msg::ProbeReply {
                signature: true,
                ..
            }
        );
        w.msg(&reply).await?;
        if sign {
            self.signature(w, id, rel).await?;
        }
        Ok(())
    }

    async fn probe_reply(&self, id: u64, rel: &str, source: Option<Meta>) -> Msg {
        let store = self.opts().store.clone();
        let rel = rel.to_string();
        let writable = self.writable().is_ok();
        let res = tokio::task::spawn_blocking(move || store.probe(&rel)).await;
        let probe = match res {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Msg::error(Some(id), &e),
            Err(e) => return Msg::error(Some(id), &Error::other(e.to_string())),
        };
        // Same rule as the client's: a partial file of this version means a
        // resume; otherwise an existing file means a delta.
        let resumable = |src: &Meta| {
            probe.partial.as_ref().is_some_and(|p| {
                p.len > 0
                    && (p.source.size, p.source.mtime, p.source.mtime_ns)
                        == (src.size, src.mtime, src.mtime_ns)
            })
        };
        let signature = source.is_some_and(|src| {
            writable
                && src.size > 0
                && !resumable(&src)
                && probe
                    .entry
                    .as_ref()
                    .is_some_and(|e| e.kind == EntryKind::File && e.size > 0)
        });
        Msg::ProbeReply {
            id,
            entry: probe.entry,
            partial: probe.partial,
            signature,
        }
    }

    /// Sends the signature of a file (`SigReply` and the blob, or an
    /// error for `id`) so the client can upload a delta.
    async fn signature<W: AsyncWrite + Unpin>(
        &self,
        w: &mut Writer<W>,
        id: u64,
        rel: &str,
    ) -> Result<()> {
        let opened = self.writable().and_then(|()| self.store().open(rel));
        let sig = match opened {
            Ok((mut f, meta)) => tokio::task::spawn_blocking(move || {
                delta::signature(&mut f, meta.size).map(|s| (s, meta))
            })
            .await
            .map_err(|e| Error::other(e.to_string()))
            .and_then(|r| r),
            Err(e) => Err(e),
        };
        match sig {
            Ok((bytes, base)) => {
                w.msg(&Msg::SigReply {
                    id,
                    base,
                    len: bytes.len() as u64,
                })
                .await?;
                w.blob(&bytes).await
            }
            Err(e) => w.msg(&Msg::error(Some(id), &e)).await,
        }
    }

    fn mkdir(&self, rel: &str) -> Result<()> {
        self.writable()?;
        self.store().mkdir(rel)
    }

    fn symlink(&self, rel: &str, link_target: &str) -> Result<()> {
        self.writable()?;
        self.store().symlink(rel, link_target)
    }

    fn set_meta(&self, rel: &str, meta: &Meta) -> Result<()> {
        self.writable()?;
        self.store().set_meta(rel, meta)
    }

    /// Prepares where an upload goes. `Err(Ok(reason))` asks the client to
    /// send the whole file again; `Err(Err(e))` fails this file.
    async fn prepare_put(
        &self,
        rel: &str,
        meta: &Meta,
        resume: Option<Resume>,
        delta_base: Option<Meta>,
    ) -> Result<(Box<dyn Upload>, Dest, u64), Result<String, Error>> {
        self.writable().map_err(Err)?;
        let store = self.store();
        let begun = |how| -> Result<Box<dyn Upload>, Result<String, Error>> {
            store
                .begin(rel, how)
                .map_err(Err)?
                .ok_or_else(|| Ok("the partial file is busy".to_string()))
        };
        let dest = |up: &dyn Upload| up.writer().map(Dest::new).map_err(Err);
        if let Some(base_meta) = delta_base {
            let (base, now) = store.open(rel).map_err(Err)?;
            if (now.size, now.mtime, now.mtime_ns)
                != (base_meta.size, base_meta.mtime, base_meta.mtime_ns)
            {
                return Err(Ok(
                    "the server's copy changed since its signature was taken".into(),
                ));
            }
            let up = begun(Begin::Temp)?;
            let d = dest(&*up)?.with_base(base);
            return Ok((up, d, meta.size));
        }
        let Some(res) = resume else {
            let up = begun(Begin::Fresh(*meta))?;
            let d = dest(&*up)?;
            return Ok((up, d, meta.size));
        };
        let found = store.probe(rel).map_err(Err)?.partial;
        let usable = found.is_some_and(|p| {
            (p.source.size, p.source.mtime, p.source.mtime_ns)
                == (meta.size, meta.mtime, meta.mtime_ns)
                && p.len >= res.offset
                && res.offset <= meta.size
        });
        if !usable {
            return Err(Ok("no matching partial file to resume".into()));
        }
        let (store2, rel2, offset) = (self.opts().store.clone(), rel.to_string(), res.offset);
        let prefix = tokio::task::spawn_blocking(move || store2.hash_partial(&rel2, offset))
            .await
            .map_err(|e| Err(Error::other(e.to_string())))?
            .map_err(Err)?;
        if prefix.0 != res.prefix_hash {
            return Err(Ok(
                "the partial file's prefix does not match the source".into()
            ));
        }
        // A session cut off by a stalled link holds its part until its own
        // read times out, within the I/O timeout: a client that retries at
        // once waits for it instead of sending it all again.
        let deadline = Instant::now() + self.opts().io_timeout + Duration::from_secs(1);
        loop {
            if let Some(up) = store.begin(rel, Begin::Resume { offset }).map_err(Err)? {
                let mut d = dest(&*up)?;
                d.hasher = prefix.1;
                return Ok((up, d, meta.size - offset));
            }
            if Instant::now() >= deadline {
                return Err(Ok("the partial file is busy".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Receives one uploaded file and says how it went.
    async fn put<R: AsyncRead + Unpin>(
        &self,
        r: &mut Reader<R>,
        id: u64,
        rel: &str,
        meta: &Meta,
        resume: Option<Resume>,
        delta_base: Option<Meta>,
    ) -> Result<Msg> {
        let offset = resume.as_ref().map_or(0, |r| r.offset);
        let is_delta = delta_base.is_some();
        let prepared = self.prepare_put(rel, meta, resume, delta_base).await;
        // On failure the chunks still arrive: read them to keep the stream in step.
        let (mut prepared, dest, expect) = match prepared {
            Ok((up, d, e)) => (Ok(up), Some(d), e),
            Err(x) => {
                let expect = if is_delta {
                    meta.size
                } else {
                    meta.size.saturating_sub(offset)
                };
                (Err(x), None, expect)
            }
        };
        let shown = self
            .store()
            .display(rel)
            .unwrap_or_else(|_| rel.to_string());
        self.live.begin(
            ClientState::Uploading,
            &shown,
            meta.size,
            if is_delta { 0 } else { offset },
        );
        let meter = self.hub().meter(&self.live, false);
        let mut saved = 0;
        let received = transfer::receive(r, dest, expect, &|c| meter.chunk(c), &mut saved).await;
        self.live.end();
        let received = received?;
        let computed = match received {
            Received::Interrupted(Msg::PutAbort { id: aid, reason }) if aid == id => {
                if let Ok(up) = &mut prepared {
                    up.discard();
                }
                return Ok(match prepared {
                    Err(Err(e)) => Msg::error(Some(id), &e),
                    _ => Msg::error(
                        Some(id),
                        &Error::other(format!("upload aborted by the client: {reason}")),
                    ),
                });
            }
            Received::Interrupted(m) => {
                return Err(Error::protocol(format!(
                    "expected file data, got {}",
                    msg_name(&m)
                )))
            }
            Received::Complete(h) => h,
        };
        let sent_hash = match r.read_msg().await? {
            Msg::PutEnd { id: eid, hash } if eid == id => hash,
            Msg::PutAbort { id: aid, reason } if aid == id => {
                if let Ok(up) = &mut prepared {
                    up.discard();
                }
                return Ok(Msg::error(
                    Some(id),
                    &Error::other(format!("upload aborted by the client: {reason}")),
                ));
            }
            m => {
                return Err(Error::protocol(format!(
                    "expected end of file, got {}",
                    msg_name(&m)
                )))
            }
        };
        let mut up = match prepared {
            Ok(p) => p,
            Err(Ok(reason)) => return Ok(Msg::Redo { id, reason }),
            Err(Err(e)) => return Ok(Msg::error(Some(id), &e)),
        };
        let got_hash = match computed {
            Ok(h) => h,
            Err(e) => {
                up.discard();
                return Ok(Msg::error(Some(id), &e.context(format!("'{rel}'"))));
            }
        };
        if got_hash != sent_hash {
            up.discard();
            if is_delta {
                return Ok(Msg::Redo {
                    id,
                    reason: "the file rebuilt from the delta did not verify".into(),
                });
            }
            return Ok(Msg::error(
                Some(id),
                &Error::integrity(format!(
                    "'{rel}': integrity check failed (BLAKE3 of received data does not match the sender's); the old file is untouched"
                )),
            ));
        }
        if let Err(e) = up.commit(meta) {
            return Ok(Msg::error(Some(id), &e));
        }
        self.hub().file_done(false);
        self.log(LogEvent::Upload {
            client: self.id,
            path: shown,
            bytes: meta.size,
        });
        Ok(Msg::Done { id })
    }

    async fn get<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &self,
        r: &mut Reader<R>,
        w: &mut Writer<W>,
        id: u64,
        rel: &str,
        resume: Option<GetResume>,
        signature: Option<u64>,
    ) -> Result<()> {
        // The client's signature comes first, whatever happens next.
        let sig = match signature {
            Some(len) => Some(r.read_blob(len, delta::MAX_SIGNATURE).await?),
            None => None,
        };
        let (mut file, meta) = match self.store().open(rel) {
            Ok(x) => x,
            Err(e) => return w.msg(&Msg::error(Some(id), &e)).await,
        };
        let sig = match sig.map(delta::parse_signature).transpose() {
            Ok(s) => s,
            Err(e) => return w.msg(&Msg::error(Some(id), &e)).await,
        };
        // Resume only from a prefix of this very version of the file.
        let mut start = (0, blake3::Hasher::new());
        if let Some(res) = resume {
            let same = (res.source.size, res.source.mtime, res.source.mtime_ns)
                == (meta.size, meta.mtime, meta.mtime_ns);
            if same && res.offset <= meta.size {
                let off = res.offset;
                let (f, prefix) = tokio::task::spawn_blocking(move || {
                    let prefix = partial::hash_prefix(&mut file, off);
                    (file, prefix)
                })
                .await
                .map_err(|e| Error::other(e.to_string()))?;
                file = f;
                if let Ok((hex, hasher)) = prefix {
                    if hex == res.prefix_hash {
                        start = (off, hasher);
                    }
                }
            }
        }
        let delta = start.0 == 0 && sig.is_some();
        w.msg(&Msg::FileHeader {
            id,
            meta,
            offset: start.0,
            delta,
        })
        .await?;
        let opts = self.opts().send;
        let shown = self
            .store()
            .display(rel)
            .unwrap_or_else(|_| rel.to_string());
        self.live.begin(
            ClientState::Downloading,
            &shown,
            meta.size,
            if delta { 0 } else { start.0 },
        );
        let meter = self.hub().meter(&self.live, true);
        let progress = |c: &crate::proto::Chunk| meter.chunk(c);
        let sent = match sig {
            Some(sig) if delta => {
                transfer::send_delta(w, file, meta.size, sig, opts, &progress).await
            }
            _ => transfer::send_file(w, file, start.0, meta.size, start.1, opts, &progress).await,
        };
        self.live.end();
        match sent {
            Ok((hash, st)) => {
                w.msg(&Msg::FileEnd {
                    id,
                    hash,
                    literal: st.literal,
                    matched: st.matched,
                })
                .await?;
                self.hub().file_done(true);
                self.log(LogEvent::Download {
                    client: self.id,
                    path: shown,
                    bytes: meta.size,
                });
                Ok(())
            }
            Err(SendError::Local(e)) => {
                let e = e.context(format!("'{rel}'"));
                self.log(LogEvent::Error {
                    client: self.id,
                    message: e.message.clone(),
                });
                w.msg(&Msg::error(Some(id), &e)).await
            }
            Err(SendError::Net(e)) => Err(e),
        }
    }

    fn remove(&self, rel: &str, recursive: bool) -> Result<(u64, u64)> {
        self.writable()?;
        if !self.admin {
            return Err(self.admin_needed("removing files"));
        }
        let (files, dirs) = self.store().remove(rel, recursive)?;
        self.log(LogEvent::Delete {
            client: self.id,
            path: rel.into(),
            files,
            dirs,
        });
        Ok((files, dirs))
    }
}

fn msg_name(m: &Msg) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.get("t").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
