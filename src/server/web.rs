//! HTTPS on the fts port: connections whose TLS handshake did not choose
//! `fts/1` by ALPN (browsers, curl, Prometheus) are served here with hyper,
//! over the same certificate. So far: `GET /api/stats` (the `fts stats
//! --json` document) and `GET /metrics` (Prometheus text format). When the
//! share has an access password, both want HTTP Basic authentication with
//! it (any user name), checked like a protocol login: argon2, per-address
//! backoff, failures counted and logged.

use super::{LogEvent, Shared};
use crate::hub::ClientState;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Longest a browser may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request on one connection knows.
#[derive(Clone)]
struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
}

/// Serves one TLS connection as HTTP/1.1 or HTTP/2 until it closes.
pub(super) async fn serve<S>(shared: Arc<Shared>, tls: S, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = Conn {
        shared: shared.clone(),
        peer,
    };
    let app = Router::new()
        .route("/api/stats", get(api_stats))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(
            conn.clone(),
            require_password,
        ))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(conn);
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let mut b = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    b.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let io = hyper_util::rt::TokioIo::new(tls);
    if let Err(e) = b.serve_connection(io, svc).await {
        shared.log(LogEvent::Rejected {
            addr: peer.to_string(),
            reason: format!("HTTP: {e}"),
        });
    }
}

/// Lets a request through only with HTTP Basic credentials holding the
/// access password (when the share has one).
async fn require_password(State(c): State<Conn>, req: Request, next: Next) -> Response {
    let Some(secret) = &c.shared.opts.password else {
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
        c.shared.wait_backoff(c.peer.ip()).await;
        let ok = c
            .shared
            .check_password(secret, password, 0, c.peer, false)
            .await;
        c.shared.login_outcome(c.peer.ip(), ok);
        if ok {
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

async fn api_stats(State(c): State<Conn>) -> Response {
    axum::Json(c.shared.hub.stats()).into_response()
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
pub fn exposition(s: &crate::hub::Stats) -> String {
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
    let rows: [(&str, &str, &str, u64); 12] = [
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
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    out
}
