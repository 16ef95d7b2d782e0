//! The plain data that more than one layer shares: what is in the share
//! ([`Entry`], [`Meta`], [`PartialInfo`]), what people send each other
//! ([`Notice`] and the rules for its text), and the server's picture of
//! itself ([`Stats`]).
//!
//! The wire format carries these types, the server fills them in and the
//! client hands them to its callers; keeping them here lets each of those
//! depend on this module instead of on one another. Nothing here does I/O.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

// ---- the share

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One file, directory or symlink below the share root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the share root, `/`-separated; `""` is the root itself.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    pub mtime_ns: u32,
    /// Permission bits (`mode & 0o777`).
    pub mode: u32,
    /// For a symlink: where it points (as stored in the link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// BLAKE3 of a file's contents, when asked for (`--checksum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Entry {
    pub fn meta(&self) -> Meta {
        Meta {
            size: self.size,
            mtime: self.mtime,
            mtime_ns: self.mtime_ns,
            mode: self.mode,
        }
    }
}

/// File metadata carried with a file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub mode: u32,
}

/// A partial file the receiver holds for a target, and the source version
/// it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialInfo {
    pub len: u64,
    pub source: Meta,
}

// ---- messages between people

/// Longest chat or warning text accepted, in bytes (before escaping).
pub const MAX_MESSAGE: usize = 2000;
/// Longest client display name kept, in characters.
pub const MAX_NAME: usize = 64;

/// Who a notice is about: chat, an admin's warning, or the server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Chat,
    Warning,
    System,
}

/// A message for a person: a chat line, a warning or a system notice.
/// The JSON form is what `fts chat --json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// RFC 3339, UTC.
    pub time: String,
    pub from: String,
    pub to: String,
    pub kind: NoticeKind,
    pub text: String,
    /// The sending client's id, when a client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_id: Option<u64>,
}

/// Makes text safe to show on a terminal: control characters (escape
/// sequences, carriage returns, C1 codes) and bidi overrides are shown as
/// visible escapes instead of being acted on, and the result is cut to
/// `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, ch) in text.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        match ch {
            '\t' => out.push(' '),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            '\u{7f}' => out.push_str("^?"),
            c if c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Checks and cleans a chat or warning text.
pub fn clean_message(text: &str) -> Result<String> {
    if text.len() > MAX_MESSAGE {
        return Err(Error::usage(format!(
            "message too long: {} bytes (at most {MAX_MESSAGE})",
            text.len()
        )));
    }
    let t = printable(text.trim_end_matches(['\n', '\r']), MAX_MESSAGE);
    if t.trim().is_empty() {
        return Err(Error::usage("empty message"));
    }
    Ok(t)
}

// ---- the server's picture of itself

/// What a client is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientState {
    Idle,
    Uploading,
    Downloading,
    Syncing,
    Chatting,
}

/// The `stats --json` document: what the server says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub server: ServerStatus,
    pub totals: Totals,
    pub clients: Vec<ClientRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub version: String,
    pub uptime_s: u64,
    /// RFC 3339, UTC.
    pub started: String,
    pub root: String,
    pub clients_connected: u64,
    pub max_clients: u64,
    pub read_only: bool,
}

/// Lifetime counters. Bytes are payload before compression: file data, or
/// for a delta transfer its instructions and literal data; what delta and
/// compression kept off the wire is counted separately.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Totals {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub files_sent: u64,
    pub files_received: u64,
    pub saved_by_delta_bytes: u64,
    pub saved_by_compression_bytes: u64,
    pub connections: u64,
    pub auth_failures: u64,
    /// Durability passes (one per batch of uploads made to survive a power
    /// cut before they were acknowledged).
    pub fsync_passes: u64,
    /// Uploaded files those passes covered.
    pub files_fsynced: u64,
}

/// One row of the client table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRow {
    pub id: u64,
    pub addr: String,
    pub name: String,
    pub connected_s: u64,
    pub state: ClientState,
    /// The file being moved, if any.
    pub file: Option<String>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// File bytes per second over the last seconds.
    pub rate_bps: u64,
    pub admin: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_terminal_controls() {
        assert_eq!(printable("a\x1b[2Jb", 100), "a^[[2Jb");
        assert_eq!(printable("x\ry\u{7f}", 100), "x^My^?");
        assert_eq!(printable("\u{9b}31m", 100), "\\u{9b}31m");
        assert_eq!(printable("abc\u{202e}", 100), "abc\\u{202e}");
        assert_eq!(printable("abcdef", 3), "abc…");
    }

    #[test]
    fn messages_are_bounded() {
        assert!(clean_message(&"x".repeat(MAX_MESSAGE)).is_ok());
        assert!(clean_message(&"x".repeat(MAX_MESSAGE + 1)).is_err());
        assert!(clean_message("  \n").is_err());
    }
}
