//! The wire protocol: the messages two peers exchange, and the bounds
//! every peer holds the other to.
//!
//! A frame is `[kind: u8][len: u32 BE][payload]`. Kind 1 is a control
//! message (JSON-encoded [`Msg`], at most [`MAX_CONTROL`] bytes), kind 2 is a
//! raw data chunk (at most [`MAX_DATA`] bytes). Lengths are checked against
//! those bounds before anything is allocated, and every read and write is
//! bounded by a timeout, so a hostile or stalled peer costs at most one
//! buffer and one timeout.
//!
//! File data is pipelined: a sender writes `Put`, the data frames and
//! `PutEnd` back to back without waiting; replies carry the request id.
//!
//! - `frame`: reading and writing frames, and the chunk codec
//! - `counted`: the byte-counting, pacing stream under TLS

mod counted;
mod frame;

pub use counted::{Counted, WireCounters};
pub use frame::{
    frames, Body, Chunk, Decoded, Exclusive, Frame, FrameReader, FrameWriter, NoticeHandler,
};

use crate::error::{Error, ErrorKind};
use crate::model::{Entry, Meta, Notice, PartialInfo, Stats};
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change; checked in `Hello`/`Welcome`.
pub const PROTOCOL_VERSION: u32 = 4;
/// ALPN id of the fts protocol on the shared TLS port.
pub const ALPN_FTS: &[u8] = b"fts/1";
/// Largest control message accepted from a peer.
pub const MAX_CONTROL: usize = 64 * 1024;
/// Largest data frame accepted from a peer: the most a chunk may expand to.
pub const MAX_DATA: usize = crate::engine::compress::MAX_RAW;
/// Size of the data chunks fts itself sends (compressed one by one: 1 MiB
/// chunks compress about as well as one zstd stream).
pub const CHUNK: usize = MAX_DATA;
/// Longest remote path accepted, in bytes (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;

/// Continue an upload after the first `offset` bytes the receiver already
/// holds in its partial file; `prefix_hash` is the sender's BLAKE3 of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    pub offset: u64,
    pub prefix_hash: String,
}

/// A server with authorized keys tells the client what it made of its key
/// (see [`crate::keys`]), and what else it would accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatus {
    /// The fingerprint of the key the client offered, if it offered one.
    pub fingerprint: Option<String>,
    /// The key's name in the authorized keys file: set when the key logged
    /// the client in.
    pub name: Option<String>,
    /// The key stands for the admin password.
    pub admin: bool,
    /// The key may not write.
    pub read_only: bool,
    /// The access password is accepted instead of a key.
    pub password: bool,
    /// The admin password is accepted (besides admin keys).
    pub admin_password: bool,
}

/// Every control message, in both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    // ---- client → server
    Hello {
        version: u32,
        client: String,
        /// Display name (`--name`, default user@hostname).
        #[serde(default)]
        name: Option<String>,
        /// How long this client waits through silence, so the server's
        /// keepalives come often enough.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Keepalive, from either side and between any two frames, once the
    /// session is logged in: proves the sender alive; no reply.
    Ping,
    /// The commands that follow belong to a sync (shown as `syncing`).
    Syncing,
    /// The server's status, totals and client table.
    StatsReq,
    /// An admin action; needs an admin login.
    Admin {
        action: AdminAction,
    },
    /// Enter chat mode: chat messages for this client (for an admin: from
    /// every client) arrive as `Notice`s from now on.
    ChatJoin {
        admin: bool,
    },
    /// A chat message: from a client it goes to the admins (`to` ignored);
    /// from an admin `to` names a client id or name.
    ChatSend {
        id: u64,
        #[serde(default)]
        to: Option<String>,
        text: String,
    },
    Auth {
        password: Option<String>,
        admin_password: Option<String>,
    },
    Stat {
        path: String,
    },
    List {
        path: String,
        recursive: bool,
        /// Include each file's BLAKE3 (expensive: reads every file).
        #[serde(default)]
        hashes: bool,
    },
    /// One directory's direct entries, for a sync: answered by `DirSame`
    /// when `digest` (the client's [`crate::model::DirDigest`] of its own
    /// copy) matches the server's, else like a non-recursive `List`.
    /// Several may be sent back to back; replies come in order.
    ListDir {
        path: String,
        #[serde(default)]
        digest: Option<String>,
        #[serde(default)]
        hashes: bool,
    },
    /// What is at a target path: the entry and a partial file. With
    /// `source` (the version the client would upload), the server also
    /// sends the signature of its file when a delta is the way to go (a
    /// regular, non-empty file and no partial file of that version), so a
    /// delta costs no round trip of its own. The signature is a block
    /// signature ([`crate::engine::blocks`]) unless `rolling` asks for
    /// fast_rsync's, which finds data that moved.
    Probe {
        id: u64,
        path: String,
        #[serde(default)]
        source: Option<Meta>,
        #[serde(default)]
        rolling: bool,
    },
    Symlink {
        id: u64,
        path: String,
        target: String,
    },
    Mkdir {
        id: u64,
        path: String,
    },
    SetMeta {
        id: u64,
        path: String,
        mtime: i64,
        mtime_ns: u32,
        mode: u32,
    },
    /// Followed by chunks producing `meta.size` bytes (less the resumed
    /// prefix), then `PutEnd` or `PutAbort`. With `delta_base`, the chunks
    /// are delta pieces against the receiver's current file, which must
    /// still have that metadata.
    Put {
        id: u64,
        path: String,
        meta: Meta,
        #[serde(default)]
        resume: Option<Resume>,
        #[serde(default)]
        delta_base: Option<Meta>,
    },
    PutEnd {
        id: u64,
        hash: String,
    },
    PutAbort {
        id: u64,
        reason: String,
    },
    /// With `signature`, that many bytes of the client's signature follow
    /// as chunks, and the server may answer with delta pieces. With
    /// `resume`, the server may skip the prefix the client already has, if
    /// its file is still `source`.
    Get {
        id: u64,
        path: String,
        #[serde(default)]
        resume: Option<GetResume>,
        #[serde(default)]
        signature: Option<u64>,
    },
    Remove {
        id: u64,
        path: String,
        recursive: bool,
    },
    Bye,

    // ---- server → client
    Welcome {
        version: u32,
        server: String,
        auth_required: bool,
        admin_enabled: bool,
        read_only: bool,
        /// How long the server waits through silence (see `Hello`).
        #[serde(default)]
        timeout_ms: Option<u64>,
        /// From servers with authorized keys: what they made of the
        /// client's key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<KeyStatus>,
    },
    AuthOk {
        admin: bool,
    },
    StatReply {
        entry: Option<Entry>,
    },
    ListBatch {
        entries: Vec<Entry>,
    },
    ListEnd,
    /// The directory asked about by `ListDir` has the client's digest.
    DirSame,
    /// With `signature`, a `SigReply` (or an `Error`) for the same id
    /// follows.
    ProbeReply {
        id: u64,
        entry: Option<Entry>,
        partial: Option<PartialInfo>,
        #[serde(default)]
        signature: bool,
    },
    /// Followed by `len` bytes of signature as chunks.
    SigReply {
        id: u64,
        base: Meta,
        len: u64,
    },
    /// A `Mkdir`, `SetMeta`, `Symlink` or `Put` with this id succeeded.
    Done {
        id: u64,
    },
    /// The upload with this id could not be used as sent (its delta base
    /// changed, its rebuilt file did not verify, its resume prefix did not
    /// match): send the whole file again. As the answer to a `Get` with a
    /// block signature: data moved, ask again with an rsync signature.
    Redo {
        id: u64,
        reason: String,
    },
    /// Followed by chunks producing `meta.size - offset` bytes (delta
    /// pieces when `delta`), then `FileEnd` (or an `Error` with the same id
    /// if reading fails half-way).
    FileHeader {
        id: u64,
        meta: Meta,
        #[serde(default)]
        offset: u64,
        #[serde(default)]
        delta: bool,
    },
    FileEnd {
        id: u64,
        hash: String,
        #[serde(default)]
        literal: u64,
        #[serde(default)]
        matched: u64,
    },
    Removed {
        id: u64,
        files: u64,
        dirs: u64,
    },
    Error {
        id: Option<u64>,
        kind: ErrorKind,
        message: String,
    },
    StatsReply {
        stats: Box<Stats>,
    },
    /// An admin action was carried out; `clients` is how many it reached.
    AdminOk {
        clients: u64,
    },
    LogBatch {
        records: Vec<serde_json::Value>,
    },
    LogEnd,
    ChatJoined {
        unread: u64,
    },
    /// A chat message was accepted: handed to `live` chat sessions now, or
    /// kept for the recipient (`stored`).
    ChatAck {
        id: u64,
        live: u64,
        stored: bool,
    },

    // ---- server → client, at any moment (between frames)
    /// A warning, chat message or system notice for the person at the client.
    Notice {
        notice: Notice,
    },
    /// The admin disconnected this client; the connection closes next.
    Kicked {
        reason: String,
    },
}

/// What an admin asks the server to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum AdminAction {
    /// The client table (as in stats).
    Clients,
    Kick {
        client: u64,
        reason: String,
    },
    /// Warn one client, or every connected client with `client: None`.
    Warn {
        client: Option<u64>,
        text: String,
    },
    /// Log records newer than `since_s` seconds, of one category.
    Log {
        since_s: Option<u64>,
        category: Option<String>,
    },
}

/// A download resume request: skip `offset` bytes if the server's file is
/// still `source` and its prefix hashes to `prefix_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetResume {
    pub offset: u64,
    pub prefix_hash: String,
    pub source: Meta,
}

impl Msg {
    pub fn error(id: Option<u64>, e: &Error) -> Msg {
        Msg::Error {
            id,
            kind: e.kind,
            message: e.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/control_msg: serde_json's default float parser is not
    /// correctly rounded, so a number relayed in a message (log records
    /// carry arbitrary JSON) could come back a different float. Its
    /// `float_roundtrip` feature parses exactly.
    #[test]
    fn fuzz_regression_floats_survive_a_round_trip() {
        let input =
            br#"{"t":"log_batch","records":[{"a":555555555555555555555555555555555555555550.0}]}"#;
        let m: Msg = serde_json::from_slice(input).unwrap();
        let json = serde_json::to_vec(&m).unwrap();
        let back: Msg = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, m);
        let Msg::LogBatch { records } = &m else {
            panic!("{m:?}");
        };
        assert_eq!(records[0]["a"].as_f64(), Some(5.555_555_555_555_556e41));
    }
}
