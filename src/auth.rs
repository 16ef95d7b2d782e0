//! Passwords on the server side: argon2id hashes in memory (the plain
//! password is dropped right after hashing), verification off the async
//! threads with bounded concurrency (argon2 needs ~19 MiB per run), and a
//! per-address backoff that slows down guessing.

use crate::error::{Error, Result};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A password kept only as an argon2 PHC string.
#[derive(Clone)]
pub struct Secret {
    phc: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(argon2)")
    }
}

impl Secret {
    /// Hashes a plain password; a value that already is an argon2 PHC string
    /// (`$argon2id$…`) is taken as the hash itself.
    pub fn new(password: &str) -> Result<Secret> {
        if password.starts_with("$argon2") {
            PasswordHash::new(password)
                .map_err(|e| Error::usage(format!("invalid argon2 hash: {e}")))?;
            return Ok(Secret {
                phc: password.to_string(),
            });
        }
        if password.is_empty() {
            return Err(Error::usage("empty password"));
        }
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| Error::other(format!("argon2: {e}")))?
            .to_string();
        Ok(Secret { phc })
    }

    /// Reads a password file (first line, trailing newline stripped).
    pub fn from_file(path: &Path) -> Result<Secret> {
        let text = read_password_file(path)?;
        Secret::new(&text)
    }

    /// Constant-time check (argon2's verifier compares in constant time).
    pub fn verify(&self, candidate: &str) -> bool {
        match PasswordHash::new(&self.phc) {
            Ok(h) => Argon2::default()
                .verify_password(candidate.as_bytes(), &h)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// The first line of a password file, without its line ending.
pub fn read_password_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::local_io(path, e))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Error::usage(format!(
            "{}: password file is empty",
            path.display()
        )));
    }
    Ok(line)
}

/// Verifies passwords without starving the runtime or the memory budget.
#[derive(Clone)]
pub struct Verifier {
    permits: Arc<Semaphore>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            permits: Arc::new(Semaphore::new(2)),
        }
    }
}

impl Verifier {
    pub async fn verify(&self, secret: &Secret, candidate: String) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let secret = secret.clone();
        tokio::task::spawn_blocking(move || secret.verify(&candidate))
            .await
            .unwrap_or(false)
    }
}

const BACKOFF_BASE: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
const BACKOFF_FORGET: Duration = Duration::from_secs(15 * 60);
const BACKOFF_MAX_ENTRIES: usize = 4096;
/// Attempts from one address queue behind each other; one that would have
/// to wait longer than this is refused without a password check.
const BACKOFF_QUEUE: Duration = Duration::from_secs(30);

struct Failures {
    count: u32,
    last: Instant,
    /// When the next attempt from this address may be answered; attempts
    /// made in parallel each move it on, so they are answered one by one.
    next: Instant,
}

/// Failed logins per address; each failure doubles the delay before the
/// next answer to that address (capped), forgotten after 15 quiet minutes.
#[derive(Default)]
pub struct Backoff {
    map: Mutex<HashMap<IpAddr, Failures>>,
}

impl Backoff {
    fn step(count: u32) -> Duration {
        BACKOFF_BASE
            .saturating_mul(1u32 << count.saturating_sub(1).min(10))
            .min(BACKOFF_MAX)
    }

    /// How long a login from `ip` waits before its password is checked, or
    /// `None` when the address has queued so many attempts that this one
    /// is refused unchecked. Without recent failures: no wait, no state.
    pub fn reserve(&self, ip: IpAddr) -> Option<Duration> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match map.get_mut(&ip) {
            Some(f) if f.last.elapsed() < BACKOFF_FORGET && f.count > 0 => {
                let at = f.next.max(now) + Self::step(f.count);
                let wait = at - now;
                if wait > BACKOFF_QUEUE {
                    return None;
                }
                f.next = at;
                Some(wait)
            }
            _ => Some(Duration::ZERO),
        }
    }

    pub fn failure(&self, ip: IpAddr) -> u32 {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= BACKOFF_MAX_ENTRIES {
            map.retain(|_, f| f.last.elapsed() < BACKOFF_FORGET);
            if map.len() >= BACKOFF_MAX_ENTRIES {
                // Still full of fresh entries: drop the oldest to stay bounded.
                if let Some(oldest) = map.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let now = Instant::now();
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
            next: now,
        });
        if f.last.elapsed() >= BACKOFF_FORGET {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        f.count
    }

    pub fn success(&self, ip: IpAddr) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let s = Secret::new("hunter2").unwrap();
        assert!(s.verify("hunter2"));
        assert!(!s.verify("hunter3"));
        assert!(!s.verify(""));
        let again = Secret::new(&s.phc).unwrap();
        assert!(again.verify("hunter2"));
        assert!(Secret::new("").is_err());
    }

    #[test]
    fn backoff_grows_queues_and_resets() {
        let b = Backoff::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let near = |d: Option<Duration>, want: Duration| {
            let d = d.expect("refused");
            assert!(
                d <= want && want - d < Duration::from_millis(50),
                "{d:?} vs {want:?}"
            );
        };
        assert_eq!(b.reserve(ip), Some(Duration::ZERO));
        assert_eq!(b.reserve(ip), Some(Duration::ZERO), "no failure, no queue");
        b.failure(ip);
        near(b.reserve(ip), BACKOFF_BASE);
        // A second attempt in parallel waits behind the first.
        near(b.reserve(ip), BACKOFF_BASE * 2);
        b.failure(ip);
        for _ in 0..20 {
            b.failure(ip);
        }
        // Capped steps of 8 s queue up until the 30 s queue is full.
        let granted = (0..10).filter_map(|_| b.reserve(ip)).count();
        assert!((2..=4).contains(&granted), "{granted}");
        assert_eq!(b.reserve(ip), None);
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(b.reserve(other), Some(Duration::ZERO));
        b.success(ip);
        assert_eq!(b.reserve(ip), Some(Duration::ZERO));
    }
}
