//! Typed errors shared by the engine and the CLI. Every error carries an
//! [`ErrorKind`], and every kind maps to exactly one process exit code
//! (see the table in README.md), so scripts can tell failures apart.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;

/// What went wrong, coarse enough to be stable across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Other,
    Usage,
    NotFound,
    Auth,
    Permission,
    Connect,
    Tls,
    Integrity,
    Partial,
    /// The server's admin disconnected this client (`fts admin kick`).
    Kicked,
    /// Ctrl-C (SIGINT) stopped the command.
    Interrupted,
    /// Whoever read our output went away (`fts admin log | head -1`): a
    /// quiet success, as for other Unix tools.
    OutputClosed,
}

impl ErrorKind {
    /// The process exit code for this kind (the table in README.md, "Exit
    /// codes").
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Other => 1,
            ErrorKind::Usage => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Auth => 4,
            ErrorKind::Permission => 5,
            ErrorKind::Connect => 6,
            ErrorKind::Tls => 7,
            ErrorKind::Integrity => 8,
            ErrorKind::Partial => 9,
            ErrorKind::Kicked => 10,
            ErrorKind::Interrupted => 130,
            ErrorKind::OutputClosed => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Other => "other",
            ErrorKind::Usage => "usage",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Auth => "auth",
            ErrorKind::Permission => "permission",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Partial => "partial",
            ErrorKind::Kicked => "kicked",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::OutputClosed => "output_closed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a kind (for the exit code) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn other(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, m)
    }
    pub fn usage(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, m)
    }
    pub fn auth(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, m)
    }
    pub fn permission(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permission, m)
    }
    pub fn connect(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Connect, m)
    }
    pub fn tls(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Tls, m)
    }
    pub fn integrity(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Integrity, m)
    }
    pub fn kicked(reason: &str) -> Self {
        Self::new(
            ErrorKind::Kicked,
            format!("disconnected by the server's admin: {reason}"),
        )
    }
    /// A failed write of the command's output to stdout.
    pub fn stdout(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Self::new(ErrorKind::OutputClosed, "stdout was closed");
        }
        Self::other(format!("writing to stdout: {e}"))
    }
    pub fn protocol(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, format!("protocol error: {}", m.into()))
    }

    /// A local filesystem error, with the path it concerns.
    pub fn local_io(path: &std::path::Path, e: io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                ErrorKind::Permission
            }
            _ => ErrorKind::Other,
        };
        Error::new(kind, format!("{}: {}", path.display(), e))
    }

    /// Prefix the message with context, keeping the kind.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Network-side I/O errors: a dropped or stalled connection is "connection
/// lost" (exit 6); a TLS failure surfaces as exit 7.
impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        use io::ErrorKind as K;
        if let Some(inner) = e.get_ref() {
            if inner.downcast_ref::<rustls::Error>().is_some() {
                return Error::tls(format!("TLS error: {inner}"));
            }
        }
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => ErrorKind::Permission,
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::TimedOut
            | K::AddrNotAvailable
            | K::HostUnreachable
            | K::NetworkUnreachable => ErrorKind::Connect,
            _ => ErrorKind::Other,
        };
        let msg = match e.kind() {
            K::UnexpectedEof => "connection closed by peer".to_string(),
            _ if kind == ErrorKind::Connect => format!("connection lost: {e}"),
            _ => e.to_string(),
        };
        Error::new(kind, msg)
    }
}

impl From<tokio::time::error::Elapsed> for Error {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        Error::connect("timed out waiting for the peer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_match_design_table() {
        let table = [
            (ErrorKind::Other, 1),
            (ErrorKind::Usage, 2),
            (ErrorKind::NotFound, 3),
            (ErrorKind::Auth, 4),
            (ErrorKind::Permission, 5),
            (ErrorKind::Connect, 6),
            (ErrorKind::Tls, 7),
            (ErrorKind::Integrity, 8),
            (ErrorKind::Partial, 9),
            (ErrorKind::Kicked, 10),
            (ErrorKind::Interrupted, 130),
            (ErrorKind::OutputClosed, 0),
        ];
        for (k, c) in table {
            assert_eq!(k.exit_code(), c, "{k}");
        }
    }

    #[test]
    fn network_io_errors_are_connection_errors() {
        let e: Error = io::Error::from(io::ErrorKind::UnexpectedEof).into();
        assert_eq!(e.kind, ErrorKind::Connect);
        let e: Error = io::Error::from(io::ErrorKind::ConnectionReset).into();
        assert_eq!(e.kind, ErrorKind::Connect);
    }
}
