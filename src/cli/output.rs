//! Rendering: human text or JSON on stdout, errors and notices on stderr,
//! progress bars (indicatif) on stderr only when it is a terminal.

use super::Global;
use fts::client::Observer;
use fts::ops::TransferReport;
use fts::Error;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub struct Output {
    pub json: bool,
    pub quiet: bool,
    progress: bool,
}

impl Output {
    pub fn new(g: &Global) -> Self {
        Output {
            json: g.json,
            quiet: g.quiet,
            progress: !g.no_progress && !g.quiet && !g.json && std::io::stderr().is_terminal(),
        }
    }

    /// The one JSON document of a command.
    pub fn json<T: Serialize>(&self, v: &T) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, v);
        let _ = writeln!(out);
        let _ = out.flush();
    }

    /// A line of human output on stdout (suppressed by --quiet).
    pub fn line(&self, s: &str) {
        if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{s}");
        }
    }

    /// Reports an error and returns its exit code.
    pub fn error(&self, e: &Error) -> i32 {
        let code = e.kind.exit_code();
        if self.json {
            let v = serde_json::json!({"error": {"kind": e.kind, "message": e.message, "exit_code": code}});
            eprintln!("{v}");
        } else {
            eprintln!("fts: error: {}", e.message);
        }
        code
    }

    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(Bars::new(self.progress, self.quiet))
    }

    /// Renders a transfer result: JSON, or an rsync-like summary line, plus
    /// one stderr line per failed file.
    pub fn transfer(&self, r: &TransferReport) {
        if self.json {
            self.json(r);
        } else {
            // A lone failure is reported once, as the command's error.
            if r.errors.len() > 1 || r.files_transferred > 0 {
                for e in &r.errors {
                    eprintln!("fts: {}: {}", e.path, e.message);
                }
            }
            if let Some(files) = (!r.files.is_empty()).then_some(&r.files) {
                for f in files {
                    let what = serde_json::to_value(f.action).ok();
                    let what = what.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
                    self.line(&format!("{what:>7} {}", f.path));
                }
            }
            let rate = if r.elapsed_s > 0.0 {
                r.bytes_transferred as f64 / r.elapsed_s
            } else {
                0.0
            };
            let mut extra = Vec::new();
            if r.files_skipped > 0 {
                extra.push(format!("{} unchanged", r.files_skipped));
            }
            if r.files_deleted > 0 {
                extra.push(format!("{} deleted", r.files_deleted));
            }
            if r.resumed_bytes > 0 {
                extra.push(format!("resumed after {}", HumanBytes(r.resumed_bytes)));
            }
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!(" ({})", extra.join(", "))
            };
            self.line(&format!(
                "{}{} of {} files {}{extra}, {} in {:.2}s ({}/s)",
                if r.dry_run { "dry run: " } else { "" },
                r.files_transferred,
                r.files_total,
                if r.dry_run {
                    "would be transferred"
                } else {
                    "transferred"
                },
                HumanBytes(r.bytes_transferred),
                r.elapsed_s,
                HumanBytes(rate as u64),
            ));
            let moved = r.literal_bytes + r.matched_bytes;
            let compressed = if moved > 0 {
                100.0 * r.saved_by_compression_bytes as f64 / moved as f64
            } else {
                0.0
            };
            self.line(&format!(
                "sent {}, received {}; saved {:.1}% by delta, {:.1}% by compression",
                HumanBytes(r.wire_bytes_sent),
                HumanBytes(r.wire_bytes_received),
                r.delta_saved_percent(),
                compressed,
            ));
        }
    }
}

/// RFC 3339 (UTC, seconds) for a Unix time.
pub fn rfc3339(secs: i64) -> String {
    let t = if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Progress bars: a total bar for batches of several files plus one bar for
/// the file in flight. Hidden when stderr is not a terminal.
struct Bars {
    enabled: bool,
    quiet: bool,
    mp: MultiProgress,
    total: Mutex<Option<ProgressBar>>,
    file: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new(enabled: bool, quiet: bool) -> Self {
        let mp = MultiProgress::with_draw_target(if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Bars {
            enabled,
            quiet,
            mp,
            total: Mutex::new(None),
            file: Mutex::new(None),
        }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{msg:30!} {bar:30} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
    }
}

impl Observer for Bars {
    fn notice(&self, msg: &str) {
        if !self.quiet {
            self.mp.suspend(|| eprintln!("fts: {msg}"));
        }
    }

    fn batch_start(&self, files: u64, bytes: u64) {
        if self.enabled && files > 1 {
            let pb = self
                .mp
                .add(ProgressBar::new(bytes).with_style(Self::style()));
            pb.set_message(format!("total ({files} files)"));
            *self.total.lock().unwrap_or_else(|p| p.into_inner()) = Some(pb);
        }
    }

    fn file_start(&self, path: &str, size: u64) {
        if !self.enabled {
            return;
        }
        let pb = self
            .mp
            .add(ProgressBar::new(size).with_style(Self::style()));
        pb.set_message(path.to_string());
        if let Some(old) = self
            .file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(pb)
        {
            old.finish_and_clear();
        }
    }

    fn bytes(&self, n: u64) {
        if !self.enabled {
            return;
        }
        if let Some(pb) = &*self.file.lock().unwrap_or_else(|p| p.into_inner()) {
            pb.inc(n);
        }
        if let Some(pb) = &*self.total.lock().unwrap_or_else(|p| p.into_inner()) {
            pb.inc(n);
        }
    }

    fn file_done(&self, _path: &str, _ok: bool) {}

    fn batch_done(&self) {
        for m in [&self.file, &self.total] {
            if let Some(pb) = m.lock().unwrap_or_else(|p| p.into_inner()).take() {
                pb.finish_and_clear();
            }
        }
    }
}
