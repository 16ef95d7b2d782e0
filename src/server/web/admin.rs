//! Admin sessions in the browser: logging in with the admin password gives
//! a session cookie (HttpOnly, Secure, SameSite=Strict) and a CSRF token
//! the page keeps in memory; every admin action needs both, so another
//! site can neither read the token nor make the browser act. Kick, warn
//! and chat go through the same hub calls as `fts admin` and `fts chat
//! --admin`, and are logged the same way.

use super::{error_response, lock, problem, Conn};
use crate::server::hub::Live;
use crate::server::LogEvent;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

const COOKIE: &str = "fts_admin";
/// A session ends after this long without use, or this long after login.
const IDLE: Duration = Duration::from_secs(30 * 60);
const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 32;
/// The header that carries the CSRF token.
const CSRF_HEADER: &str = "x-csrf-token";

/// One logged-in browser.
pub(crate) struct AdminSession {
    pub csrf: String,
    /// Who the session's chat messages come from (flood control, id).
    pub live: Arc<Live>,
    created: Instant,
    seen: Instant,
}

/// The live admin sessions, keyed by a hash of their cookie (so the map
/// holds nothing a memory dump could replay).
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<[u8; 32], AdminSession>>);

impl Sessions {
    fn key(token: &str) -> [u8; 32] {
        *blake3::hash(token.as_bytes()).as_bytes()
    }

    fn insert(&self, token: &str, s: AdminSession) {
        let mut m = lock(&self.0);
        m.retain(|_, s| s.seen.elapsed() < IDLE && s.created.elapsed() < MAX_AGE);
        if m.len() >= MAX_SESSIONS {
            if let Some(k) = m.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k) {
                m.remove(&k);
            }
        }
        m.insert(Self::key(token), s);
    }

    /// The session the request's cookie names, if it is still valid:
    /// (CSRF token, chat identity).
    pub(crate) fn find(&self, headers: &HeaderMap) -> Option<(String, Arc<Live>)> {
        let token = cookie(headers, COOKIE)?;
        let mut m = lock(&self.0);
        let k = Self::key(&token);
        let s = m.get_mut(&k)?;
        if s.seen.elapsed() >= IDLE || s.created.elapsed() >= MAX_AGE {
            m.remove(&k);
            return None;
        }
        s.seen = Instant::now();
        Some((s.csrf.clone(), s.live.clone()))
    }

    fn remove(&self, headers: &HeaderMap) {
        if let Some(token) = cookie(headers, COOKIE) {
            lock(&self.0).remove(&Self::key(&token));
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

#[derive(Deserialize)]
pub(super) struct Login {
    password: String,
}

pub(super) async fn login(State(c): State<Conn>, Json(l): Json<Login>) -> Response {
    let Some(secret) = &c.shared.opts.admin_password else {
        return error_response(&c.shared.admin_needed("logging in as admin"));
    };
    let id = c.shared.next_id();
    if !c.shared.wait_backoff(c.peer).await {
        return problem(StatusCode::TOO_MANY_REQUESTS, crate::server::THROTTLED);
    }
    let ok = c
        .shared
        .check_password(secret, l.password, id, c.peer, true)
        .await;
    c.shared.login_outcome(c.peer.ip(), ok);
    if !ok {
        return problem(StatusCode::UNAUTHORIZED, "wrong admin password");
    }
    let token = crate::fsutil::random_hex(32);
    let csrf = crate::fsutil::random_hex(32);
    let now = Instant::now();
    c.shared.web.sessions.insert(
        &token,
        AdminSession {
            csrf: csrf.clone(),
            live: c.shared.hub.detached(id, "web"),
            created: now,
            seen: now,
        },
    );
    let set = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        MAX_AGE.as_secs()
    );
    (
        [(header::SET_COOKIE, set)],
        Json(serde_json::json!({ "csrf": csrf })),
    )
        .into_response()
}

/// Whether the browser is logged in as admin (and its CSRF token, which
/// the page lost on reload): `{"admin": true, "csrf"}` or `{"admin":
/// false, "admin_enabled"}`.
pub(super) async fn session(State(c): State<Conn>, headers: HeaderMap) -> Response {
    let body = match c.shared.web.sessions.find(&headers) {
        Some((csrf, _)) => serde_json::json!({ "admin": true, "csrf": csrf }),
        None => serde_json::json!({
            "admin": false,
            "admin_enabled": c.shared.opts.admin_password.is_some(),
        }),
    };
    Json(body).into_response()
}

/// Why an admin request was refused.
pub(super) enum Refused {
    NoSession,
    BadCsrf,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::NoSession => problem(StatusCode::UNAUTHORIZED, "log in as admin first"),
            Refused::BadCsrf => problem(StatusCode::FORBIDDEN, "bad or missing CSRF token"),
        }
    }
}

/// The admin session behind a state-changing request: the cookie must
/// name a live session and the CSRF header must carry its token.
fn authorize(
    c: &Conn,
    headers: &HeaderMap,
    action: &str,
    target: Option<u64>,
) -> Result<Arc<Live>, Refused> {
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let why = match c.shared.web.sessions.find(headers) {
        Some((csrf, live)) if bool::from(csrf.as_bytes().ct_eq(given.as_bytes())) => {
            return Ok(live)
        }
        Some(_) => Refused::BadCsrf,
        None => Refused::NoSession,
    };
    c.shared.log(LogEvent::Admin {
        client: 0,
        action: action.into(),
        target,
        ok: false,
        detail: format!(
            "refused (web, {}): {}",
            c.peer,
            match why {
                Refused::BadCsrf => "bad CSRF token",
                Refused::NoSession => "not logged in as admin",
            }
        ),
    });
    Err(why)
}

pub(super) async fn logout(State(c): State<Conn>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&c, &headers, "logout", None) {
        return r.into_response();
    }
    c.shared.web.sessions.remove(&headers);
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0");
    ([(header::SET_COOKIE, clear)], Json(serde_json::json!({}))).into_response()
}

#[derive(Deserialize)]
pub(super) struct Kick {
    id: u64,
    #[serde(default)]
    reason: String,
}

pub(super) async fn kick(
    State(c): State<Conn>,
    headers: HeaderMap,
    Json(k): Json<Kick>,
) -> Response {
    let live = match authorize(&c, &headers, "kick", Some(k.id)) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    answer(c.shared.kick(live.id, k.id, &k.reason, Some("web")))
}

#[derive(Deserialize)]
pub(super) struct Warn {
    /// A client id; none warns every client.
    id: Option<u64>,
    text: String,
}

pub(super) async fn warn(
    State(c): State<Conn>,
    headers: HeaderMap,
    Json(w): Json<Warn>,
) -> Response {
    let live = match authorize(&c, &headers, "warn", w.id) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    answer(
        c.shared
            .warn(live.id, w.id, &w.text, "admin (web)", Some("web")),
    )
}

/// `{"clients": n}`, or the error.
fn answer(r: crate::error::Result<u64>) -> Response {
    match r {
        Ok(n) => Json(serde_json::json!({ "clients": n })).into_response(),
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct Say {
    /// A client id or name.
    to: String,
    text: String,
}

pub(super) async fn chat(
    State(c): State<Conn>,
    headers: HeaderMap,
    Json(s): Json<Say>,
) -> Response {
    let live = match authorize(&c, &headers, "chat", None) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    match c.shared.hub.chat(&live, true, Some(&s.to), &s.text) {
        Ok((note, delivered, stored)) => {
            c.shared.log(LogEvent::Chat {
                client: live.id,
                from: note.from.clone(),
                to: note.to.clone(),
                text: note.text.clone(),
                live: delivered,
                stored,
            });
            Json(serde_json::json!({ "notice": note, "live": delivered, "stored": stored }))
                .into_response()
        }
        Err(e) => error_response(&e),
    }
}
