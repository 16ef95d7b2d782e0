//! What the server reports: one [`LogEvent`] per thing that happened,
//! handed to the [`LogSink`] the caller gave (the CLI renders them as text
//! or JSON lines) and, with a state directory, kept in the journal.

use serde::Serialize;
use std::sync::Arc;

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
        /// The authorized keys file, if clients may log in with keys.
        authorized_keys: Option<String>,
    },
    Connect {
        client: u64,
        addr: String,
        /// For a key login the key's name, else what the client calls itself.
        name: String,
        /// For a key login: what the client calls itself.
        #[serde(skip_serializing_if = "Option::is_none")]
        declared_name: Option<String>,
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
    /// A client offered a key to a server with authorized keys.
    KeyAuth {
        client: u64,
        addr: String,
        /// The key's fingerprint.
        key: String,
        /// Its name in the authorized keys file, when it is listed there.
        name: Option<String>,
        ok: bool,
        /// Why it was refused.
        reason: Option<String>,
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
            LogEvent::Auth { .. } | LogEvent::KeyAuth { .. } => "auth",
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

/// An event as logged: with its JSON record (`time`, `category` and the
/// event's fields, on one line), rendered once for the journal and for
/// whoever prints JSON.
#[derive(Debug, Clone)]
pub struct Logged {
    pub event: LogEvent,
    pub record: String,
}

/// Where log events go, in order, in batches of what was queued at once
/// (so a sink can write a batch with one call).
pub type LogSink = Arc<dyn Fn(&[Logged]) + Send + Sync>;
