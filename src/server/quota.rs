//! Counted slots per client address, with a total cap and a per-address
//! cap, so one address cannot take everything: used for TLS handshakes in
//! progress and for HTTP connections. Also the rate limit on logging
//! refusals, so a flood of refused connections cannot flood the log.

use crate::server::hub::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) struct Quota {
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
    total: usize,
    per_ip: usize,
    what: &'static str,
}

/// A held slot, given back on drop.
pub(crate) struct Held {
    quota: Arc<Quota>,
    ip: IpAddr,
}

impl Quota {
    /// `what` names the slots in refusals ("HTTP connections").
    pub(crate) fn new(total: usize, per_ip: usize, what: &'static str) -> Arc<Quota> {
        Arc::new(Quota {
            held: Mutex::new((0, HashMap::new())),
            total,
            per_ip,
            what,
        })
    }

    /// Takes a slot for `ip`, or says why not.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Held, String> {
        let mut g = lock(&self.held);
        let (sum, map) = &mut *g;
        if *sum >= self.total {
            return Err(format!("too many {}", self.what));
        }
        let n = map.entry(ip).or_default();
        if *n >= self.per_ip {
            return Err(format!("too many {} from this address", self.what));
        }
        *n += 1;
        *sum += 1;
        Ok(Held {
            quota: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        lock(&self.held).0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut g = lock(&self.quota.held);
        let (sum, map) = &mut *g;
        *sum -= 1;
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Lets through the first refusal and then at most one a second, with the
/// number held back since.
#[derive(Default)]
pub(crate) struct Throttle {
    state: Mutex<Option<(Instant, u64)>>,
}

impl Throttle {
    /// `Some(n)`: log now, mentioning `n` refusals not logged before it.
    pub(crate) fn pass(&self) -> Option<u64> {
        let mut g = lock(&self.state);
        match &mut *g {
            Some((at, quiet)) if at.elapsed() < Duration::from_secs(1) => {
                *quiet += 1;
                None
            }
            s => {
                let quiet = s.map_or(0, |(_, q)| q);
                *s = Some((Instant::now(), 0));
                Some(quiet)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total() {
        let q = Quota::new(3, 2, "things");
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = q.take(a).unwrap();
        let _a2 = q.take(a).unwrap();
        assert_eq!(
            q.take(a).err().unwrap(),
            "too many things from this address"
        );
        let _b1 = q.take(b).unwrap();
        assert_eq!(q.take(b).err().unwrap(), "too many things");
        drop(a1);
        assert_eq!(q.held(), 2);
        let _b2 = q.take(b).unwrap();
    }

    #[test]
    fn throttle_counts_what_it_held_back() {
        let t = Throttle::default();
        assert_eq!(t.pass(), Some(0));
        assert_eq!(t.pass(), None);
        assert_eq!(t.pass(), None);
        *lock(&t.state) = Some((Instant::now() - Duration::from_secs(2), 2));
        assert_eq!(t.pass(), Some(2));
    }
}
