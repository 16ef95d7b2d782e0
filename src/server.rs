//! The server: the accept loop, TLS and the choice between the fts
//! protocol and the web side on the one port. It never prints; it reports
//! what happens as [`LogEvent`]s to a sink the caller provides.
//!
//! The rooms, each in `src/server/`:
//! - `events`: [`LogEvent`], what the server reports;
//! - `session`: one fts connection — handshake, login, the dispatch of
//!   requests;
//! - `share`: the requests on the share (list, probe, put, get, remove…),
//!   all through the [`crate::store::Store`];
//! - `admin`: admin actions, chat and the log export;
//! - `hub` (live client table, totals, chat), `journal` (the event log)
//!   and `logger` (the thread that writes the log);
//! - `web`: the HTTPS dashboard, browser downloads and uploads, metrics;
//! - `quota`: per-address caps.
//!
//! Shutdown: when the `shutdown` future completes, the listener closes,
//! idle sessions end at once and busy ones get `shutdown_grace` to finish
//! the request in hand; after that they are aborted, which drops their
//! temp files (see [`crate::fsutil::TempFile`]), so no partial file is
//! ever left under a real name.

mod acks;
mod admin;
mod events;
pub mod hub;
pub mod journal;
mod logger;
mod quota;
mod session;
mod share;
#[cfg(test)]
mod tests;
pub(crate) mod web;

pub use events::{LogEvent, LogSink, Logged};
pub(crate) use share::listing;

use crate::auth::{Backoff, Secret, Verifier};
use crate::error::{Error, Result};
use crate::keys::{AuthorizedKeys, KeyVerifier};
use crate::proto::ALPN_FTS;
use crate::server::hub::Hub;
use crate::server::journal::Journal;
use crate::server::logger::Logger;
use crate::store::Store;
use crate::tls::Identity;
use crate::transfer::SendOptions;
use quota::{Held, Quota, Throttle};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How a server is run.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// What is shared; every file operation goes through it.
    pub store: Arc<dyn Store>,
    /// This server's name in stats and `/metrics` (the `node` label), so
    /// the nodes of one shared store can be told apart.
    pub node: String,
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
    /// Make every upload durable (data and directory entry) before it is
    /// acknowledged; `false` (`--no-fsync`) leaves it to the kernel.
    pub fsync: bool,
    /// `--authorized-keys`: clients may log in with a key listed there, and
    /// every fts client must log in (with a key, or the access password
    /// when there is one). The web side keeps passwords.
    pub authorized_keys: Option<Arc<AuthorizedKeys>>,
}

impl ServerOptions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        ServerOptions {
            store,
            node: crate::config::hostname(),
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
            fsync: true,
            authorized_keys: None,
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

struct Shared {
    opts: ServerOptions,
    /// For fts clients: asks for a client key when there are authorized keys.
    tls_fts: Arc<rustls::ServerConfig>,
    /// For browsers and HTTP tools: never asks for a client certificate
    /// (a browser would pop up a certificate picker).
    tls_web: Arc<rustls::ServerConfig>,
    slots: Arc<Semaphore>,
    backoff: Backoff,
    verifier: Verifier,
    logger: Logger,
    journal: Option<Arc<Journal>>,
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
    fn new(opts: ServerOptions, identity: &Identity, log: LogSink) -> Result<Arc<Shared>> {
        // One port: fts clients ask for fts/1, browsers and HTTP tools for
        // h2 or http/1.1 (or nothing) and get the web side.
        let alpn: &[&[u8]] = &[ALPN_FTS, b"h2", b"http/1.1"];
        let tls_web = crate::tls::server_config(identity, alpn, None)?;
        let tls_fts = match opts.authorized_keys {
            Some(_) => crate::tls::server_config(identity, alpn, Some(Arc::new(KeyVerifier)))?,
            None => tls_web.clone(),
        };
        let journal = match &opts.state_dir {
            Some(d) => Some(Arc::new(Journal::open(&d.join("logs"))?)),
            None => None,
        };
        let hub = Arc::new(Hub::new(
            opts.store.location(),
            opts.node.clone(),
            opts.max_clients as u64,
            opts.read_only,
            opts.state_dir.clone(),
        ));
        Ok(Arc::new(Shared {
            slots: Arc::new(Semaphore::new(opts.max_clients)),
            opts,
            tls_fts,
            tls_web,
            backoff: Backoff::default(),
            verifier: Verifier::default(),
            logger: Logger::start(journal.clone(), log)?,
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
        }))
    }

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
        self.logger.log(e)
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
    let addr = listener.local_addr()?;
    let shared = Shared::new(opts, identity, log)?;
    let ticker = tokio::spawn(shared.hub.clone().tick());
    let opts = &shared.opts;
    let listening = LogEvent::Listening {
        addr: addr.to_string(),
        fingerprint: identity.fingerprint(),
        root: opts.store.location(),
        read_only: opts.read_only,
        max_clients: opts.max_clients,
        password_required: opts.password.is_some(),
        admin_enabled: opts.admin_password.is_some(),
        authorized_keys: opts
            .authorized_keys
            .as_ref()
            .map(|k| k.path().display().to_string()),
    };
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
    shared.logger.flush();
    Ok(())
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
    let deadline = tokio::time::Instant::now() + shared.opts.handshake_timeout;
    // A plain http:// request gets a plain answer (see web::plain); TLS,
    // an early close or an error go on to the handshake, which says what
    // is wrong with them as before.
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Err(_) => {
            shared.refused(&addr, "TLS handshake timed out".into());
            return;
        }
        Ok(Ok(1..)) if web::plain::looks_like_http(first[0]) => {
            let what = web::plain::answer(tcp, deadline).await;
            shared.refused(&addr, what);
            return;
        }
        Ok(_) => {}
    }
    let handshake = async {
        // The config depends on what the client asks for: only fts
        // clients are asked for a key.
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let fts = start
            .client_hello()
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ALPN_FTS));
        let cfg = if fts {
            &shared.tls_fts
        } else {
            &shared.tls_web
        };
        start.into_stream(cfg.clone()).await
    };
    let tls = match tokio::time::timeout_at(deadline, handshake).await {
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
    // Verified in the handshake (signed by its own key, which signed the
    // handshake); whether it is authorized is the session's question.
    let key = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::keys::key_fingerprint(c).ok());
    session::serve(shared, tls, peer, key, stop).await;
}
