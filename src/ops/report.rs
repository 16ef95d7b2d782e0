//! What the transfer commands return: the report `--json` prints, and
//! the per-path errors and actions in it. The report also decides the exit
//! status of a run that partly failed.

use crate::client::{Action, Client, FileOutcome};
use crate::error::{Error, ErrorKind, Result};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// One file that failed.
#[derive(Debug, Clone, Serialize)]
pub struct FileError {
    pub path: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl FileError {
    pub(super) fn new(path: impl Into<String>, e: Error) -> Self {
        FileError {
            path: path.into(),
            kind: e.kind,
            message: e.message,
        }
    }
}

/// One path's action, listed with `-v`.
#[derive(Debug, Clone, Serialize)]
pub struct FileAction {
    pub path: String,
    pub action: Action,
    pub bytes: u64,
    pub literal_bytes: u64,
    pub matched_bytes: u64,
}

/// The result of `put`, `get` and `sync`, as printed by `--json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransferReport {
    pub files_total: u64,
    pub files_transferred: u64,
    /// Unchanged files left alone (sync's quick check or --checksum).
    pub files_skipped: u64,
    pub files_deleted: u64,
    pub bytes_total: u64,
    /// Size of the files transferred.
    pub bytes_transferred: u64,
    pub wire_bytes_sent: u64,
    pub wire_bytes_received: u64,
    /// File bytes sent as data.
    pub literal_bytes: u64,
    /// File bytes the receiver already had (saved by delta).
    pub matched_bytes: u64,
    /// File bytes not sent again because a cut transfer was resumed.
    pub resumed_bytes: u64,
    /// Bytes zstd kept off the wire.
    pub saved_by_compression_bytes: u64,
    /// Files sent whole again after their delta or resume did not verify.
    pub files_redone: u64,
    /// Downloaded files made durable (fsynced) before the report.
    pub files_fsynced: u64,
    /// Durability passes that took (one per filesystem written to).
    pub fsync_passes: u64,
    pub elapsed_s: f64,
    pub dry_run: bool,
    /// Connection attempts (more than 1 after --retries kicked in).
    pub attempts: u32,
    pub errors: Vec<FileError>,
    /// Per-path actions (only with -v).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileAction>,
}

impl TransferReport {
    /// `Ok` when everything went through; otherwise the error that decides
    /// the exit code: the failure's own kind when nothing was transferred
    /// (and all failures agree), else "partial" (exit 9).
    pub fn status(&self) -> Result<()> {
        let Some(first) = self.errors.first() else {
            return Ok(());
        };
        let same_kind = self.errors.iter().all(|e| e.kind == first.kind);
        if self.files_transferred == 0 && same_kind {
            return Err(Error::new(first.kind, first.message.clone()));
        }
        // Errors may be directories and links as well as files.
        let n = self.errors.len();
        Err(Error::new(
            ErrorKind::Partial,
            format!(
                "{n} {} failed; {} of {} files were transferred",
                if n == 1 { "path" } else { "paths" },
                self.files_transferred,
                self.files_total
            ),
        ))
    }

    pub(super) fn absorb(&mut self, outcomes: Vec<FileOutcome>, verbose: bool) {
        for o in outcomes {
            self.saved_by_compression_bytes += o.stats.compressed_saved;
            if verbose && o.action != Action::Meta {
                self.files.push(FileAction {
                    path: o.path.clone(),
                    action: o.action,
                    bytes: o.bytes,
                    literal_bytes: o.stats.literal,
                    matched_bytes: o.stats.matched,
                });
            }
            match o.result {
                Ok(()) if o.is_file() => {
                    self.files_transferred += 1;
                    self.bytes_transferred += o.bytes;
                    self.literal_bytes += o.stats.literal;
                    self.matched_bytes += o.stats.matched;
                    self.resumed_bytes += o.resumed;
                }
                Ok(()) if o.action == Action::Delete => self.files_deleted += o.deleted.0,
                Ok(()) => {}
                Err(e) => self.errors.push(FileError::new(o.path, e)),
            }
        }
    }

    /// Adds what another connection of the same run did (`--parallel`);
    /// wire bytes and time are the run's, set by `finish`.
    pub(super) fn merge(&mut self, o: TransferReport) {
        self.files_total += o.files_total;
        self.files_transferred += o.files_transferred;
        self.files_skipped += o.files_skipped;
        self.files_deleted += o.files_deleted;
        self.bytes_total += o.bytes_total;
        self.bytes_transferred += o.bytes_transferred;
        self.literal_bytes += o.literal_bytes;
        self.matched_bytes += o.matched_bytes;
        self.resumed_bytes += o.resumed_bytes;
        self.saved_by_compression_bytes += o.saved_by_compression_bytes;
        self.files_redone += o.files_redone;
        self.errors.extend(o.errors);
        self.files.extend(o.files);
    }

    /// Makes paths relative to the top of a sync (`prefix`), dropping the
    /// entry for the top itself.
    pub(super) fn relativize(&mut self, prefix: &str) {
        if prefix.is_empty() {
            return;
        }
        let strip = |p: &mut String| {
            if let Some(r) = p.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) {
                *p = r.to_string();
            } else if p == prefix {
                p.clear();
            }
        };
        self.files.iter_mut().for_each(|f| strip(&mut f.path));
        self.files.retain(|f| !f.path.is_empty());
        self.errors.iter_mut().for_each(|e| strip(&mut e.path));
    }

    pub(super) fn note(&mut self, verbose: bool, path: &str, action: Action) {
        if verbose {
            self.files.push(FileAction {
                path: path.to_string(),
                action,
                bytes: 0,
                literal_bytes: 0,
                matched_bytes: 0,
            });
        }
    }

    /// Share of the transferred bytes that delta transfer did not send.
    pub fn delta_saved_percent(&self) -> f64 {
        let moved = self.literal_bytes + self.matched_bytes;
        if moved == 0 {
            0.0
        } else {
            100.0 * self.matched_bytes as f64 / moved as f64
        }
    }

    pub(super) fn finish(&mut self, client: Option<&Client>, start: Instant) {
        if let Some(c) = client {
            let (s, r) = c.wire();
            self.wire_bytes_sent = s;
            self.wire_bytes_received = r;
        }
        self.elapsed_s = (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    }
}

/// A source file left out because its name is not UTF-8: an error of the
/// run (exit 9), not a silent skip.
pub(super) fn not_utf8(p: &Path) -> FileError {
    FileError::new(
        p.to_string_lossy(),
        Error::other("file name is not UTF-8 (fts transfers UTF-8 names only); not sent"),
    )
}
