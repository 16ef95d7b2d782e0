//! fts — secure, scriptable file transfer over TLS.
//!
//! This crate is the engine: everything that does work lives here and
//! returns typed, serialisable results; it never prints. The `fts` binary
//! (`src/main.rs`, `src/cli/`) is a thin front-end that parses flags, calls
//! into this library and renders the results.
//!
//! - [`model`]: the plain data every layer shares (entries, notices, stats)
//! - [`proto`]: messages and bounds; frames and chunks; byte counting
//! - [`link`]: silence timeouts, keepalives, `--bwlimit` pacing
//! - [`tls`]: certificates, TLS configs, fingerprint pinning
//! - [`paths`]: the syntax of remote paths (relative, no `..`)
//! - [`store`]: the share's storage boundary ([`store::Store`]); the local
//!   filesystem store keeps every path inside the served root
//! - [`fsutil`]: atomic writes, metadata, directory walks
//! - [`engine`]: delta, compression, resumable partial files (no network)
//! - [`transfer`]: streaming one file with end-to-end hashing
//! - [`server`]: accept loop and TLS, then rooms: sessions and dispatch,
//!   share requests, admin and chat, events, the hub (live state, totals,
//!   chat routing), the journal (event log on disk), the web side
//! - [`client`]: connecting, typed calls, pipelined upload and download
//!   batches, chat
//! - [`guard`]: the client's checks on what a server says
//! - [`ops`]: the client commands, one file each (put, get, ls, rm, sync
//!   plan/push/pull), and their reports
//! - [`remote`]: `HOST:PATH` / `fts://` parsing
//! - [`auth`]: argon2 secrets and login backoff
//! - [`keys`]: key login: client identities, authorized keys, the
//!   client certificate verifier
//! - [`config`]: config/state directories and known_hosts
//! - [`credstore`]: stored passwords (system keyring or a 0600 file)
//! - [`error`]: typed errors and the exit codes they map to

pub mod auth;
pub mod client;
pub mod config;
pub mod credstore;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod guard;
pub mod keys;
pub mod link;
pub mod model;
pub mod ops;
pub mod paths;
pub mod proto;
pub mod remote;
pub mod server;
pub mod store;
pub mod tls;
pub mod transfer;

pub use error::{Error, ErrorKind, Result};

/// Parsers that are private to the server, re-exported only for the fuzz
/// targets in `fuzz/` (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::server::web::files::{rel_from_uri, want, Want};
    pub use crate::store::FuzzRoot as Root;
}
