//! Rendering: human text or JSON on stdout, errors and notices on stderr,
//! progress bars (indicatif) on stderr only when it is a terminal.

use super::Global;
use fts::client::Observer;
use fts::model::{printable, Notice, NoticeKind, Stats, MAX_MESSAGE, MAX_NAME};
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

/// One line for a notice from the server, safe for a terminal.
pub fn notice_line(n: &Notice) -> String {
    let text = printable(&n.text, MAX_MESSAGE);
    let from = printable(&n.from, MAX_NAME * 2);
    match n.kind {
        NoticeKind::Warning => format!("WARNING from {from}: {text}"),
        NoticeKind::System => text,
        NoticeKind::Chat => format!("message from {from}: {text}"),
    }
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
        if e.kind == fts::ErrorKind::OutputClosed {
            return code;
        }
        if self.json {
            let v = serde_json::json!({"error": {"kind": e.kind, "message": e.message, "exit_code": code}});
            eprintln!("{v}");
        } else {
            eprintln!("fts: error: {}", e.message);
        }
        code
    }

    pub fn observer(&self) -> Arc<dyn Observer> {
        Arc::new(Bars::new(self.progress, self.quiet, self.json))
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
                    eprintln!("fts: {}", failure_line(e));
                }
            }
            // When nothing moved and everything failed (a local error, a
            // missing source), the error says it all: no summary first.
            let all_failed = r.files_transferred == 0
                && !r.errors.is_empty()
                && r.errors.len() as u64 >= r.files_total;
            if all_failed && !r.dry_run && r.files_deleted == 0 {
                return;
            }
            if let Some(files) = (!r.files.is_empty()).then_some(&r.files) {
                for f in files {
                    let what = serde_json::to_value(f.action).ok();
                    let what = what.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
                    self.line(&format!("{what:>7} {}", f.path));
                }
            }
            let rate = run_rate(r);
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
                "{}{} of {} {}{extra}, {} in {:.2}s ({}/s)",
                if r.dry_run { "dry run: " } else { "" },
                r.files_transferred,
                count(r.files_total, "file"),
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
    json: bool,
    mp: MultiProgress,
    total: Mutex<Option<ProgressBar>>,
    file: Mutex<Option<ProgressBar>>,
    /// Files a growing batch (a sync's) has found so far.
    found: std::sync::atomic::AtomicU64,
}

impl Bars {
    fn new(enabled: bool, quiet: bool, json: bool) -> Self {
        let mp = MultiProgress::with_draw_target(if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Bars {
            enabled,
            quiet,
            json,
            mp,
            total: Mutex::new(None),
            file: Mutex::new(None),
            found: Default::default(),
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

    /// Warnings always show (even with -q): the admin wants them seen.
    fn server_notice(&self, n: &Notice) {
        if self.quiet && n.kind != NoticeKind::Warning {
            return;
        }
        if self.json {
            eprintln!("{}", serde_json::json!({ "notice": n }));
        } else {
            self.mp.suspend(|| eprintln!("fts: {}", notice_line(n)));
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

    fn batch_grow(&self, files: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let found = self.found.fetch_add(files, Relaxed) + files;
        if !self.enabled {
            return;
        }
        let mut total = self.total.lock().unwrap_or_else(|p| p.into_inner());
        let pb =
            total.get_or_insert_with(|| self.mp.add(ProgressBar::new(0).with_style(Self::style())));
        pb.inc_length(bytes);
        pb.set_message(format!("total ({found} files so far)"));
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

fn ago(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

/// The client table (shared by `stats` and `admin clients`).
pub fn clients_text(s: &Stats) -> String {
    if s.clients.is_empty() {
        return "no clients connected\n".into();
    }
    let mut out = format!(
        "{:>5}  {:<22} {:<22} {:<11} {:>9}  {:<28} {:>11}  {:>8}\n",
        "ID", "NAME", "ADDRESS", "STATE", "CONNECTED", "FILE", "PROGRESS", "RATE"
    );
    for c in &s.clients {
        let progress = if c.file.is_some() && c.bytes_total > 0 {
            format!(
                "{:>3}% {}",
                (100 * c.bytes_done / c.bytes_total).min(100),
                HumanBytes(c.bytes_total)
            )
        } else {
            String::new()
        };
        let state = serde_json::to_value(c.state).ok();
        let state = state.as_ref().and_then(|v| v.as_str()).unwrap_or("?");
        out.push_str(&format!(
            "{:>5}  {:<22} {:<22} {:<11} {:>9}  {:<28} {:>11}  {:>8}\n",
            c.id,
            printable(&c.name, 22),
            c.addr,
            format!("{state}{}", if c.admin { "*" } else { "" }),
            ago(c.connected_s),
            printable(c.file.as_deref().unwrap_or(""), 28),
            progress,
            if c.rate_bps > 0 {
                format!("{}/s", HumanBytes(c.rate_bps))
            } else {
                String::new()
            },
        ));
    }
    // Names of key logins come from the server's authorized keys file; what
    // such a client calls itself is only a claim, shown apart.
    let keyed: Vec<_> = s.clients.iter().filter(|c| c.key.is_some()).collect();
    if !keyed.is_empty() {
        out.push_str("logged in with a key (NAME from the server's authorized keys):\n");
        for c in keyed {
            out.push_str(&format!(
                "{:>5}  {} {} calls itself \"{}\"\n",
                c.id,
                printable(&c.name, 64),
                c.key.as_deref().unwrap_or(""),
                printable(c.declared_name.as_deref().unwrap_or(""), 64),
            ));
        }
    }
    out
}

/// `stats` for people.
pub fn stats_text(s: &Stats, with_clients: bool) -> String {
    let v = &s.server;
    let t = &s.totals;
    let mut out = format!(
        "fts {} serving {} ({}), up {}, {} of {} clients connected\n\
         sent {} in {}, received {} in {}\n\
         saved {} by delta, {} by compression; {} connections, {} failed logins\n",
        v.version,
        v.root,
        if v.read_only {
            "read-only"
        } else {
            "read-write"
        },
        ago(v.uptime_s),
        v.clients_connected,
        v.max_clients,
        HumanBytes(t.bytes_sent),
        count(t.files_sent, "file"),
        HumanBytes(t.bytes_received),
        count(t.files_received, "file"),
        HumanBytes(t.saved_by_delta_bytes),
        HumanBytes(t.saved_by_compression_bytes),
        t.connections,
        t.auth_failures,
    );
    if with_clients {
        out.push('\n');
        out.push_str(&clients_text(s));
    }
    out
}

/// Bytes per second this run moved: a resumed prefix was not sent again,
/// so it does not count.
fn run_rate(r: &TransferReport) -> f64 {
    if r.elapsed_s > 0.0 {
        r.bytes_transferred.saturating_sub(r.resumed_bytes) as f64 / r.elapsed_s
    } else {
        0.0
    }
}

/// `1 file`, `2 files`, `1 directory`, `0 directories`.
pub fn count(n: u64, what: &str) -> String {
    match (n, what.strip_suffix('y')) {
        (1, _) => format!("{n} {what}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {what}s"),
    }
}

/// One failed path for people: its message, prefixed with the path only
/// when the message does not name it already.
pub fn failure_line(e: &fts::ops::FileError) -> String {
    if e.message.contains(&e.path) {
        e.message.clone()
    } else {
        format!("{}: {}", e.path, e.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_leaves_out_resumed_bytes() {
        let r = TransferReport {
            bytes_transferred: 300,
            resumed_bytes: 200,
            elapsed_s: 2.0,
            ..Default::default()
        };
        assert_eq!(run_rate(&r), 50.0);
    }

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(2, "file"), "2 files");
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(1, "directory"), "1 directory");
        assert_eq!(count(3, "directory"), "3 directories");
    }
}
