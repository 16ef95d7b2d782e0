//! The thread that writes the server's log: every [`LogEvent`] goes, in
//! the order it was reported, to the journal and to the caller's
//! [`LogSink`] (the CLI's stdout or stderr). Rendering and writing a line
//! per small file cost a session a tenth of its time on the thread it
//! serves from; on this thread they overlap with the transfer instead,
//! and what is queued at once is written at once (one write to the
//! journal and one to the sink per batch, not per event). The queue is
//! bounded: a log that cannot keep up (a stdout nobody reads) slows the
//! server down rather than filling memory.

use super::events::{LogEvent, LogSink, Logged};
use super::journal::Journal;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::SystemTime;

/// Events waiting for the thread at most.
const QUEUE: usize = 4096;
/// Events written at once at most.
const BATCH: usize = 512;

enum Item {
    /// With the time it was reported.
    Event(LogEvent, SystemTime),
    /// Answered once everything before it is written.
    Flush(mpsc::Sender<()>),
}

pub(super) struct Logger {
    tx: SyncSender<Item>,
}

impl Logger {
    /// Starts the thread; it ends when the logger is dropped, after
    /// writing what was queued.
    pub(super) fn start(journal: Option<Arc<Journal>>, sink: LogSink) -> std::io::Result<Logger> {
        let (tx, rx) = mpsc::sync_channel::<Item>(QUEUE);
        std::thread::Builder::new()
            .name("fts-log".into())
            .spawn(move || {
                let mut batch: Vec<Logged> = Vec::new();
                let mut waiting = Vec::new();
                while let Ok(first) = rx.recv() {
                    // Take what is queued behind it too, then write it all
                    // at once (a bounded batch).
                    let mut next = Some(first);
                    while let Some(item) = next.take() {
                        match item {
                            Item::Event(event, at) => {
                                let record = record(&event, at);
                                batch.push(Logged { event, record });
                            }
                            Item::Flush(done) => waiting.push(done),
                        }
                        if batch.len() >= BATCH {
                            write_out(journal.as_deref(), &sink, &mut batch);
                        }
                        next = rx.try_recv().ok();
                    }
                    write_out(journal.as_deref(), &sink, &mut batch);
                    for done in waiting.drain(..) {
                        let _ = done.send(());
                    }
                }
            })?;
        Ok(Logger { tx })
    }

    pub(super) fn log(&self, e: LogEvent) {
        // Only fails once the thread is gone (it never ends first).
        let _ = self.tx.send(Item::Event(e, SystemTime::now()));
    }

    /// Waits until every event reported before is written (blocking).
    pub(super) fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.tx.send(Item::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

/// Writes `batch` to the journal and the sink, and empties it.
fn write_out(journal: Option<&Journal>, sink: &LogSink, batch: &mut Vec<Logged>) {
    if batch.is_empty() {
        return;
    }
    if let Some(j) = journal {
        j.write_lines(batch.iter().map(|l| l.record.as_str()));
    }
    // A sink that panics loses its lines, not the log: the thread goes on.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| sink(batch)));
    batch.clear();
}

/// The event as the journal keeps it and `serve --json` prints it: one
/// JSON object with `time`, `category` and the event's fields (no event
/// has a field of either name). Written straight out, not through a
/// `serde_json::Value`: that map cost a small-file upload about a
/// microsecond and a half.
fn record(e: &LogEvent, at: SystemTime) -> String {
    use std::fmt::Write;
    let fields = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    let mut rec = String::with_capacity(fields.len() + 64);
    let _ = write!(
        rec,
        "{{\"time\":\"{}\",\"category\":\"{}\"",
        humantime::format_rfc3339_seconds(at),
        e.category()
    );
    match fields.strip_prefix('{') {
        Some("}") | None => rec.push('}'),
        Some(rest) => {
            rec.push(',');
            rec.push_str(rest);
        }
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Events reach the sink and the journal in the order they were
    /// reported, more of them than the queue holds; a flush returns only
    /// once all of them are written.
    #[test]
    fn events_keep_their_order_and_a_flush_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::open(dir.path()).unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let sink: LogSink = Arc::new(move |batch: &[Logged]| {
            for l in batch {
                if let LogEvent::Error { client, .. } = l.event {
                    s.lock().unwrap().push(client);
                }
            }
        });
        let logger = Logger::start(Some(journal.clone()), sink).unwrap();
        let n = QUEUE as u64 * 2 + 7;
        for client in 0..n {
            logger.log(LogEvent::Error {
                client,
                message: "x".into(),
            });
        }
        logger.flush();
        assert_eq!(*seen.lock().unwrap(), (0..n).collect::<Vec<_>>());
        let mut in_journal = Vec::new();
        journal
            .query(None, None, &mut |v| {
                in_journal.push(v["client"].as_u64().unwrap());
                Ok(())
            })
            .unwrap();
        assert_eq!(in_journal, (0..n).collect::<Vec<_>>());
    }

    /// A record is one JSON object: the event's own fields (strings
    /// escaped) with its time and category, for a unit event too.
    #[test]
    fn a_record_is_the_event_with_time_and_category() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let up = LogEvent::Upload {
            client: 3,
            path: "dir/\"quoted\"\n".into(),
            bytes: 100,
        };
        let v: serde_json::Value = serde_json::from_str(&record(&up, at)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2027-01-15T08:00:00Z",
                "category": up.category(),
                "event": "upload",
                "client": 3,
                "path": "dir/\"quoted\"\n",
                "bytes": 100,
            })
        );
        let v: serde_json::Value = serde_json::from_str(&record(&LogEvent::Stopped, at)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": "2027-01-15T08:00:00Z", "category": "server", "event": "stopped"})
        );
    }
}
