//! HTTPS on the fts port: connections whose TLS handshake did not choose
//! `fts/1` by ALPN (browsers, curl, Prometheus) are served here with hyper
//! and axum, over the same certificate.
//!
//! What the web side owns: the connection limits and timeouts for HTTP,
//! the access-password gate (HTTP Basic, any user name), same-origin and
//! security headers, the embedded dashboard assets, `/api/stats`,
//! `/metrics`, `/api/history`. Admin sessions live in [`admin`], the live
//! event stream in [`live`], browsing, downloads and uploads in [`files`],
//! the HTML directory index in [`index`]; [`plain`] answers plain `http://`
//! requests before any TLS.
//!
//! Bounds: at most [`MAX_CONNS`] HTTP connections, [`MAX_CONNS_PER_IP`]
//! from one address; request headers within `http_timeout` and 64 KiB;
//! JSON bodies 64 KiB; an upload or download that stalls for the I/O
//! timeout is cut.

mod admin;
pub(crate) mod files;
mod index;
mod live;
pub(super) mod plain;

use super::quota::Quota;
use super::{LogEvent, Shared};
use crate::error::{Error, ErrorKind};
use crate::model::ClientState;
use crate::server::hub::lock;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

pub(super) use admin::Sessions;

/// HTTP connections served at once, and from one address.
pub const MAX_CONNS: usize = 256;
pub const MAX_CONNS_PER_IP: usize = 32;
/// Largest request head (HTTP/1.1 buffer, HTTP/2 header list).
const MAX_HEAD: usize = 64 * 1024;
/// Largest JSON request body.
const MAX_JSON: usize = 64 * 1024;
/// How long a verified access password is remembered (so that a page
/// polling every second does not run argon2 every second).
const BASIC_TTL: Duration = Duration::from_secs(600);

/// The web side's state, one per server.
pub(super) struct WebState {
    conns: Arc<Quota>,
    /// Keyed hashes of access passwords that verified, and when.
    basic_ok: Mutex<HashMap<[u8; 32], Instant>>,
    key: [u8; 32],
    pub(super) sessions: Sessions,
}

impl WebState {
    pub(super) fn new() -> WebState {
        let mut key = [0u8; 32];
        // ring's system RNG; the key only has to be unknown to clients.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key);
        WebState {
            conns: Quota::new(MAX_CONNS, MAX_CONNS_PER_IP, "HTTP connections"),
            basic_ok: Mutex::new(HashMap::new()),
            key,
            sessions: Sessions::default(),
        }
    }

    /// `None` if `password` verified recently; else the key under which
    /// to remember it once it does.
    fn basic_unverified(&self, password: &str) -> Option<[u8; 32]> {
        let k = *blake3::keyed_hash(&self.key, password.as_bytes()).as_bytes();
        let m = lock(&self.basic_ok);
        match m.get(&k) {
            Some(at) if at.elapsed() < BASIC_TTL => None,
            _ => Some(k),
        }
    }

    fn basic_remember(&self, k: [u8; 32]) {
        let mut m = lock(&self.basic_ok);
        m.retain(|_, at| at.elapsed() < BASIC_TTL);
        // Only passwords that verified land here, so this stays tiny; the
        // cap is for a password changed back and forth across restarts.
        if m.len() < 16 {
            m.insert(k, Instant::now());
        }
    }
}

/// What every request on one connection knows.
#[derive(Clone)]
struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
}

/// Serves one TLS connection as HTTP/1.1 or HTTP/2 until it closes or the
/// server stops.
pub(super) async fn serve<S>(
    shared: Arc<Shared>,
    tls: S,
    alpn: Option<Vec<u8>>,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _slot = match shared.web.conns.take(peer.ip()) {
        Ok(s) => s,
        Err(why) => return shared.refused(&peer.to_string(), why),
    };
    let conn = Conn {
        shared: shared.clone(),
        peer,
        stop: stop.clone(),
    };
    let svc = hyper_util::service::TowerToHyperService::new(router(conn));
    let mut b = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    b.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.opts.http_timeout)
        .max_buf_size(MAX_HEAD);
    b.http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(MAX_HEAD as u32)
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    // ALPN already chose the protocol; sniffing is only for clients that
    // offered none.
    b = match alpn.as_deref() {
        Some(b"h2") => b.http2_only(),
        Some(b"http/1.1") => b.http1_only(),
        _ => b,
    };
    let io = hyper_util::rt::TokioIo::new(Deadlines::new(
        tls,
        shared.opts.http_timeout,
        shared.opts.io_timeout,
    ));
    let conn = b.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut stop = stop;
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // A browser closing its connection is normal; a request that timed
    // out or could not be parsed is worth a line (slow-header attacks,
    // oversized heads, garbage).
    if let Err(e) = result {
        let hyper_says = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_timeout() || h.is_parse() || h.is_parse_too_large());
        let mut timed_out = false;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*e);
        while let Some(c) = cause {
            timed_out |= c
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
            cause = c.source();
        }
        let worth = hyper_says || timed_out;
        if worth {
            shared.log(LogEvent::Rejected {
                addr: peer.to_string(),
                reason: format!("HTTP: {e}"),
            });
        }
    }
}

/// Returns once the server is stopping.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn router(conn: Conn) -> Router {
    Router::new()
        .route("/", get(asset))
        .route("/app.js", get(asset))
        .route("/app.css", get(asset))
        .route("/favicon.svg", get(asset))
        .route("/api/stats", get(api_stats))
        .route("/api/history", get(api_history))
        .route("/metrics", get(metrics))
        .route("/api/events", get(live::events))
        .route("/api/ls", get(files::ls))
        .route("/files", get(files::download))
        .route("/files/", get(files::download).put(files::upload))
        .route("/files/{*path}", get(files::download).put(files::upload))
        .route("/api/admin/login", post(admin::login))
        .route("/api/admin/logout", post(admin::logout))
        .route("/api/admin/session", get(admin::session))
        .route("/api/admin/kick", post(admin::kick))
        .route("/api/admin/warn", post(admin::warn))
        .route("/api/admin/chat", post(admin::chat))
        .route_layer(middleware::from_fn(same_origin))
        .route_layer(middleware::from_fn_with_state(
            conn.clone(),
            require_password,
        ))
        .layer(DefaultBodyLimit::max(MAX_JSON))
        .fallback(|| async { problem(StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::map_response(security_headers))
        .with_state(conn)
}

/// A JSON error body: `{"error": "..."}`.
fn problem(code: StatusCode, message: &str) -> Response {
    (code, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The HTTP status for an engine error.
fn error_response(e: &Error) -> Response {
    let code = match e.kind {
        ErrorKind::Usage => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Auth => StatusCode::UNAUTHORIZED,
        ErrorKind::Permission => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    problem(code, &e.message)
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::CACHE_CONTROL, "no-store");
    res
}

/// Refuses state-changing requests that a browser sent on behalf of
/// another site: if a request other than GET/HEAD names an `Origin`, it
/// must be this server. (Tools such as curl send no Origin.)
async fn same_origin(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("https://"));
        if host.is_none() || origin_host != host.as_deref() {
            return problem(StatusCode::FORBIDDEN, "cross-origin request refused");
        }
    }
    next.run(req).await
}

/// Lets a request through only with HTTP Basic credentials holding the
/// access password (when the share has one). A server that admits fts
/// clients by key alone (authorized keys, no access password) keeps its
/// web side closed: browsers have no key, and an open web side would let
/// anyone in that the keys keep out.
async fn require_password(State(c): State<Conn>, req: Request, next: Next) -> Response {
    let Some(secret) = &c.shared.opts.password else {
        if c.shared.opts.authorized_keys.is_some() {
            return problem(
                StatusCode::FORBIDDEN,
                "this server admits only authorized keys (fts clients); its web side needs an \
                 access password (fts serve --password-file)",
            );
        }
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(_, p)| p.to_string()));
    if let Some(password) = given {
        let Some(k) = c.shared.web.basic_unverified(&password) else {
            return next.run(req).await;
        };
        if !c.shared.wait_backoff(c.peer).await {
            return problem(StatusCode::TOO_MANY_REQUESTS, crate::server::THROTTLED);
        }
        let ok = c
            .shared
            .check_password(secret, password, 0, c.peer, false)
            .await;
        c.shared.login_outcome(c.peer.ip(), ok);
        if ok {
            c.shared.web.basic_remember(k);
            return next.run(req).await;
        }
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"fts\", charset=\"UTF-8\"",
        )],
        "this server needs its access password\n",
    )
        .into_response()
}

/// The dashboard's files, built into the binary.
async fn asset(uri: axum::http::Uri) -> Response {
    let (body, kind): (&'static str, &str) = match uri.path() {
        "/" => (
            include_str!("assets/index.html"),
            "text/html; charset=utf-8",
        ),
        "/app.js" => (
            include_str!("assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "/app.css" => (include_str!("assets/app.css"), "text/css; charset=utf-8"),
        "/favicon.svg" => (include_str!("assets/favicon.svg"), "image/svg+xml"),
        _ => return problem(StatusCode::NOT_FOUND, "not found"),
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn api_stats(State(c): State<Conn>) -> Response {
    axum::Json(c.shared.hub.stats()).into_response()
}

async fn api_history(State(c): State<Conn>) -> Response {
    axum::Json(serde_json::json!({
        "every_s": crate::server::hub::HISTORY_EVERY.as_secs(),
        "samples": c.shared.hub.history(),
    }))
    .into_response()
}

async fn metrics(State(c): State<Conn>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        exposition(&c.shared.hub.stats()),
    )
        .into_response()
}

/// The stats as Prometheus text exposition format 0.0.4.
pub fn exposition(s: &crate::model::Stats) -> String {
    let t = &s.totals;
    let transfers = s
        .clients
        .iter()
        .filter(|c| {
            c.file.is_some()
                && matches!(
                    c.state,
                    ClientState::Uploading | ClientState::Downloading | ClientState::Syncing
                )
        })
        .count() as u64;
    let rows: [(&str, &str, &str, u64); 14] = [
        (
            "fts_bytes_sent_total",
            "counter",
            "Payload bytes sent to clients (before compression).",
            t.bytes_sent,
        ),
        (
            "fts_bytes_received_total",
            "counter",
            "Payload bytes received from clients (before compression).",
            t.bytes_received,
        ),
        (
            "fts_files_sent_total",
            "counter",
            "Files sent completely.",
            t.files_sent,
        ),
        (
            "fts_files_received_total",
            "counter",
            "Files received completely.",
            t.files_received,
        ),
        (
            "fts_saved_by_delta_bytes_total",
            "counter",
            "File bytes rebuilt from the receiver's copy instead of sent.",
            t.saved_by_delta_bytes,
        ),
        (
            "fts_saved_by_compression_bytes_total",
            "counter",
            "Bytes zstd kept off the wire.",
            t.saved_by_compression_bytes,
        ),
        (
            "fts_connections_total",
            "counter",
            "fts protocol connections accepted.",
            t.connections,
        ),
        (
            "fts_auth_failures_total",
            "counter",
            "Failed logins (protocol and HTTP).",
            t.auth_failures,
        ),
        (
            "fts_fsync_passes_total",
            "counter",
            "Durability passes made before acknowledging uploads.",
            t.fsync_passes,
        ),
        (
            "fts_files_fsynced_total",
            "counter",
            "Uploaded files made durable before they were acknowledged.",
            t.files_fsynced,
        ),
        (
            "fts_clients_connected",
            "gauge",
            "fts protocol clients connected now.",
            s.server.clients_connected,
        ),
        (
            "fts_clients_max",
            "gauge",
            "Most clients served at once (--max-clients).",
            s.server.max_clients,
        ),
        (
            "fts_transfers_in_progress",
            "gauge",
            "Files being moved right now.",
            transfers,
        ),
        (
            "fts_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            s.server.uptime_s,
        ),
    ];
    // Every sample carries the node, so one Prometheus can scrape all the
    // servers of a shared store.
    let node: String = s
        .server
        .node
        .chars()
        .flat_map(|c| match c {
            '\\' => vec!['\\', '\\'],
            '"' => vec!['\\', '"'],
            '\n' => vec!['\\', 'n'],
            c => vec![c],
        })
        .collect();
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node=\"{node}\"}} {value}\n"
        ));
    }
    out
}

/// Time limits on a connection's I/O that hyper does not set itself:
/// - a write that cannot make progress for `stall` fails, so a browser
///   that stalls a download (or a slow-read attack) does not hold the
///   connection forever;
/// - the first bytes must arrive within `first` (hyper's header timeout
///   starts only once it knows the protocol, and HTTP/2 has none).
///
/// Later reads are not limited here: an idle HTTP/2 connection or an open
/// event stream reads nothing for long stretches, and hyper bounds header
/// reads itself.
struct Deadlines<S> {
    inner: S,
    stall: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    first: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Deadlines<S> {
    fn new(inner: S, first: Duration, stall: Duration) -> Self {
        Deadlines {
            inner,
            stall,
            stalled: None,
            first: Some(Box::pin(tokio::time::sleep(first))),
        }
    }

    /// Turns a `Pending` write into a timeout once it has lasted too long.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.stall;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the peer stopped reading",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() && buf.filled().len() > before {
            self.first = None;
        } else if r.is_pending() {
            if let Some(first) = self.first.as_mut() {
                if first.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request arrived in time",
                    )));
                }
            }
        }
        r
    }
}
impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
