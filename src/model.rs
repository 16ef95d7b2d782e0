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

/// A digest of one directory's direct entries, as a sync compares them:
/// a file by size and mtime (the quick check), a directory by mode and
/// mtime, a symlink by its target. Two sides whose digests agree have
/// nothing to do in that directory, so a sync of an unchanged directory
/// costs one digest on the wire instead of its listing. Entries must be
/// added in name order (the order every store lists a directory in).
pub struct DirDigest {
    hasher: blake3::Hasher,
    /// What is added, gathered before it goes to `hasher`: a few large
    /// updates hash on all SIMD lanes, where six small ones per entry cost
    /// more than the listing's own `stat` calls. The digest is the same.
    pending: Vec<u8>,
}

impl Default for DirDigest {
    fn default() -> Self {
        DirDigest {
            hasher: blake3::Hasher::new_derive_key("fts 2026 directory digest v1"),
            pending: Vec::new(),
        }
    }
}

impl DirDigest {
    /// Bytes gathered before they are hashed.
    const GATHER: usize = 16 << 10;

    pub fn add(&mut self, e: &Entry) {
        let name = e.path.rsplit('/').next().unwrap_or("");
        let b = &mut self.pending;
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        match e.kind {
            EntryKind::File => {
                b.push(b'f');
                b.extend_from_slice(&e.size.to_le_bytes());
                b.extend_from_slice(&e.mtime.to_le_bytes());
                b.extend_from_slice(&e.mtime_ns.to_le_bytes());
            }
            EntryKind::Dir => {
                b.push(b'd');
                b.extend_from_slice(&e.mode.to_le_bytes());
                b.extend_from_slice(&e.mtime.to_le_bytes());
                b.extend_from_slice(&e.mtime_ns.to_le_bytes());
            }
            EntryKind::Symlink => {
                let t = e.target.as_deref().unwrap_or("");
                b.push(b'l');
                b.extend_from_slice(&(t.len() as u64).to_le_bytes());
                b.extend_from_slice(t.as_bytes());
            }
        }
        if b.len() >= Self::GATHER {
            self.hasher.update(b);
            b.clear();
        }
    }

    /// The digest, as hex.
    pub fn finish(&self) -> String {
        let mut h = self.hasher.clone();
        h.update(&self.pending);
        h.finalize().to_hex()[..32].to_string()
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
    /// The server's node name (`fts serve --node`, default the host name).
    #[serde(default)]
    pub node: String,
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
    /// The fingerprint of the key the client logged in with; `name` is then
    /// the key's name in the server's authorized keys file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What a key client calls itself (`--name`), shown beside the key's
    /// name, never instead of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_name: Option<String>,
}

#[cfg(test)]
mod tests {
    #[test]
    fn directory_digests_see_what_a_sync_compares_and_nothing_else() {
        let e = |path: &str, kind, size, mtime, mode, target: Option<&str>| Entry {
            path: path.into(),
            kind,
            size,
            mtime,
            mtime_ns: 7,
            mode,
            target: target.map(str::to_string),
            hash: None,
        };
        let digest = |v: &[Entry]| {
            let mut d = DirDigest::default();
            v.iter().for_each(|x| d.add(x));
            d.finish()
        };
        let base = vec![
            e("top/a", EntryKind::File, 3, 10, 0o644, None),
            e("top/d", EntryKind::Dir, 0, 11, 0o755, None),
            e("top/l", EntryKind::Symlink, 1, 12, 0o777, Some("a")),
        ];
        // Where the directory sits does not matter, nor a file's mode or
        // a link's times: a sync does not compare them.
        let mut same = base.clone();
        same.iter_mut()
            .for_each(|x| x.path = x.path.replace("top/", "elsewhere/deep/"));
        same[0].mode = 0o600;
        same[2].mtime = 99;
        assert_eq!(digest(&base), digest(&same));
        let changed: Vec<fn(&mut Vec<Entry>)> = vec![
            |v| v[0].size = 4,
            |v| v[0].mtime_ns = 8,
            |v| v[1].mode = 0o700,
            |v| v[1].mtime = 1,
            |v| v[2].target = Some("b".into()),
            |v| v[0].kind = EntryKind::Dir,
            |v| v[0].path = "top/b".into(),
            |v| {
                v.pop();
            },
        ];
        for (i, change) in changed.iter().enumerate() {
            let mut v = base.clone();
            change(&mut v);
            assert_ne!(digest(&base), digest(&v), "change {i}");
        }
    }

    /// Client and server of different versions compare digests: the bytes
    /// hashed may not change, however they are gathered. Several thousand
    /// entries cross the gathering threshold more than once.
    #[test]
    fn the_digest_of_a_listing_is_pinned() {
        let mut d = DirDigest::default();
        for i in 0..5000u32 {
            let kind = [EntryKind::File, EntryKind::Dir, EntryKind::Symlink][i as usize % 3];
            d.add(&Entry {
                path: format!("top/name{i:05}"),
                kind,
                size: u64::from(i) * 7,
                mtime: 1_700_000_000 + i64::from(i),
                mtime_ns: i * 13,
                mode: 0o644 + i % 8,
                target: (kind == EntryKind::Symlink).then(|| format!("t{i}")),
                hash: None,
            });
        }
        assert_eq!(d.finish(), "b8063ab64a7d3bf67155698c44737ff2");
    }

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
