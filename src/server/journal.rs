//! The server's event log on disk: one JSON object per line in
//! `logs/events.jsonl` under the state directory, each with `time` (RFC
//! 3339), `category` and the event's fields. When the file passes
//! [`Journal::max_bytes`] it is rotated (`events.1.jsonl` … up to
//! [`Journal::keep`] old files). `fts admin log` reads it back through
//! [`Journal::query`], oldest first, without loading it whole.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Event categories, as written in the `category` field.
pub const CATEGORIES: &[&str] = &[
    "server", "connect", "auth", "transfer", "delete", "chat", "admin", "error",
];

pub struct Journal {
    dir: PathBuf,
    file: Mutex<Option<(File, u64)>>,
    pub max_bytes: u64,
    pub keep: usize,
}

impl Journal {
    /// Opens (creating) the log directory `dir`.
    pub fn open(dir: &Path) -> Result<Journal> {
        std::fs::create_dir_all(dir).map_err(|e| Error::local_io(dir, e))?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            file: Mutex::new(None),
            max_bytes: 10 << 20,
            keep: 5,
        })
    }

    fn path(&self, n: usize) -> PathBuf {
        if n == 0 {
            self.dir.join("events.jsonl")
        } else {
            self.dir.join(format!("events.{n}.jsonl"))
        }
    }

    /// Appends one record. Logging never fails the caller: a full disk
    /// loses log lines, not transfers.
    pub fn write(&self, record: &serde_json::Value) {
        self.write_lines(std::iter::once(record.to_string().as_str()))
    }

    /// Appends records already rendered as lines of JSON (without their
    /// newlines), in one write.
    pub fn write_lines<'a>(&self, records: impl Iterator<Item = &'a str>) {
        let mut line = String::new();
        for r in records {
            line.push_str(r);
            line.push('\n');
        }
        if line.is_empty() {
            return;
        }
        let mut g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().is_some_and(|(_, len)| *len >= self.max_bytes) {
            *g = None;
            self.rotate();
        }
        if g.is_none() {
            let p = self.path(0);
            *g = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .ok()
                .map(|f| {
                    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                    (f, len)
                });
        }
        if let Some((f, len)) = g.as_mut() {
            if f.write_all(line.as_bytes()).is_ok() {
                *len += line.len() as u64;
            }
        }
    }

    fn rotate(&self) {
        let _ = std::fs::remove_file(self.path(self.keep));
        for n in (0..self.keep).rev() {
            let _ = std::fs::rename(self.path(n), self.path(n + 1));
        }
    }

    /// Calls `f` with every record at or after `since` (of `category`, if
    /// given), oldest first. Lines that do not parse are skipped.
    pub fn query(
        &self,
        since: Option<SystemTime>,
        category: Option<&str>,
        f: &mut dyn FnMut(serde_json::Value) -> Result<()>,
    ) -> Result<()> {
        // Open every file under the writer lock, so a rotation cannot move
        // them between opens; reading happens after, without the lock.
        let files: Vec<File> = {
            let _g = self.file.lock().unwrap_or_else(|p| p.into_inner());
            (0..=self.keep)
                .rev()
                .filter_map(|n| File::open(self.path(n)).ok())
                .collect()
        };
        for file in files {
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(c) = category {
                    if v.get("category").and_then(|c| c.as_str()) != Some(c) {
                        continue;
                    }
                }
                if let Some(since) = since {
                    let t = v
                        .get("time")
                        .and_then(|t| t.as_str())
                        .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
                    if t.is_none_or(|t| t < since) {
                        continue;
                    }
                }
                f(v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rotates_and_reads_back_in_order() {
        let d = tempfile::tempdir().unwrap();
        let mut j = Journal::open(d.path()).unwrap();
        j.max_bytes = 200;
        j.keep = 2;
        for i in 0..40 {
            let cat = if i % 2 == 0 { "auth" } else { "chat" };
            j.write(&json!({"time": crate::server::hub::now_rfc3339(), "category": cat, "i": i}));
        }
        assert!(d.path().join("events.1.jsonl").exists());
        assert!(!d.path().join("events.3.jsonl").exists());
        let mut seen = Vec::new();
        j.query(None, Some("chat"), &mut |v| {
            seen.push(v["i"].as_u64().unwrap());
            Ok(())
        })
        .unwrap();
        assert!(!seen.is_empty());
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert!(seen.iter().all(|i| i % 2 == 1));
        assert_eq!(*seen.last().unwrap(), 39);
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        let mut n = 0;
        j.query(Some(future), None, &mut |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 0);
    }
}
