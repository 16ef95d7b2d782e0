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

/// Failed logins per address; each failure doubles the delay before the
/// next answer to that address (capped), forgotten after 15 quiet minutes.
#[derive(Default)]
pub struct Backoff {
    map: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Backoff {
    /// How long to wait before answering a login from `ip`.
    pub fn delay(&self, ip: IpAddr) -> Duration {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&ip) {
            Some((n, at)) if at.elapsed() < BACKOFF_FORGET && *n > 0 => {
                let d = BACKOFF_BASE.saturating_mul(1u32 << (*n - 1).min(10));
                d.min(BACKOFF_MAX)
            }
            _ => Duration::ZERO,
        }
    }

    pub fn failure(&self, ip: IpAddr) -> u32 {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= BACKOFF_MAX_ENTRIES {
            map.retain(|_, (_, at)| at.elapsed() < BACKOFF_FORGET);
            if map.len() >= BACKOFF_MAX_ENTRIES {
                // Still full of fresh entries: drop the oldest to stay bounded.
                if let Some(oldest) = map.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let e = map.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= BACKOFF_FORGET {
            e.0 = 0;
        }
        e.0 = e.0.saturating_add(1);
        e.1 = Instant::now();
        e.0
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
    fn backoff_grows_and_resets() {
        let b = Backoff::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(b.delay(ip), Duration::ZERO);
        b.failure(ip);
        assert_eq!(b.delay(ip), BACKOFF_BASE);
        b.failure(ip);
        assert_eq!(b.delay(ip), BACKOFF_BASE * 2);
        for _ in 0..20 {
            b.failure(ip);
        }
        assert_eq!(b.delay(ip), BACKOFF_MAX);
        b.success(ip);
        assert_eq!(b.delay(ip), Duration::ZERO);
    }
}
