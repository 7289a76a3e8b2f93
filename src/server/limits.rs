//! What keeps unauthenticated or slow senders from starving the rest:
//! connection caps (in all and per peer address), per-rule hook slots, and
//! per-rule token buckets (DESIGN's `429 rate limit`). The bucket is pure:
//! time is an input.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Hook requests of one rule in progress at once (past the header checks,
/// reading their body or being stored); more get 429.
pub const HOOK_SLOTS_PER_RULE: usize = crate::triggers::DEFAULT_HOOK_IN_FLIGHT;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(burst: f64, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(wait((1.0 - self.tokens) / rate))
        }
    }

    /// Like [`TokenBucket::take`], without taking.
    pub fn check(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), Duration> {
        self.refill(now, rate, burst);
        if self.tokens >= 1.0 {
            Ok(())
        } else {
            Err(wait((1.0 - self.tokens) / rate))
        }
    }
}

/// A wait in seconds; a rate so small that it overflows waits a day.
fn wait(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds)
        .unwrap_or(Duration::MAX)
        .min(Duration::from_secs(86_400))
}

/// The burst a rate allows: one second's worth, at least 10.
pub fn burst_of(rate_per_sec: f64) -> f64 {
    rate_per_sec.max(10.0)
}

/// Per-rule slots and buckets, made on first use (rules come and go with
/// reloads).
#[derive(Default)]
pub struct HookLimits {
    rules: Mutex<HashMap<String, RuleLimits>>,
}

struct RuleLimits {
    slots: Arc<Semaphore>,
    /// The rule's `max_in_flight` the slots were made for (a reload may
    /// change it: then new slots, the old permits run out on their own).
    size: usize,
    bucket: TokenBucket,
}

impl HookLimits {
    fn with<T>(&self, rule: &str, rate: f64, f: impl FnOnce(&mut RuleLimits) -> T) -> T {
        let mut rules = self.rules.lock().expect("not poisoned");
        let entry = rules.entry(rule.to_string()).or_insert_with(|| RuleLimits {
            slots: Arc::new(Semaphore::new(HOOK_SLOTS_PER_RULE)),
            size: HOOK_SLOTS_PER_RULE,
            bucket: TokenBucket::new(burst_of(rate), Instant::now()),
        });
        f(entry)
    }

    /// One of `rule`'s `max_in_flight` slots, if one is free.
    pub fn slot(
        &self,
        rule: &str,
        rate: f64,
        max_in_flight: usize,
    ) -> Option<OwnedSemaphorePermit> {
        self.with(rule, rate, |r| {
            if r.size != max_in_flight {
                r.slots = Arc::new(Semaphore::new(max_in_flight));
                r.size = max_in_flight;
            }
            r.slots.clone().try_acquire_owned().ok()
        })
    }

    /// Whether `rule` could accept a request now (nothing is taken).
    pub fn check_rate(&self, rule: &str, rate: f64, now: Instant) -> Result<(), Duration> {
        self.with(rule, rate, |r| r.bucket.check(now, rate, burst_of(rate)))
    }

    /// Counts an accepted request of `rule`.
    pub fn take_rate(&self, rule: &str, rate: f64, now: Instant) -> Result<(), Duration> {
        self.with(rule, rate, |r| r.bucket.take(now, rate, burst_of(rate)))
    }
}

/// Open connections, in all and per peer address.
pub struct Connections {
    max_total: usize,
    max_per_peer: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One open connection; its count is given back when dropped.
pub struct ConnectionGuard {
    connections: Arc<Connections>,
    peer: IpAddr,
}

impl Connections {
    pub fn new(max_total: usize, max_per_peer: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max_total,
            max_per_peer,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    /// Counts a new connection from `peer`, or `None` when a cap is reached.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<ConnectionGuard> {
        let mut open = self.open.lock().expect("not poisoned");
        let from_peer = open.1.get(&peer).copied().unwrap_or(0);
        if open.0 >= self.max_total || from_peer >= self.max_per_peer {
            return None;
        }
        open.0 += 1;
        open.1.insert(peer, from_peer + 1);
        Some(ConnectionGuard {
            connections: self.clone(),
            peer,
        })
    }

    pub fn open(&self) -> usize {
        self.open.lock().expect("not poisoned").0
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = self.connections.open.lock().expect("not poisoned");
        open.0 -= 1;
        if let Some(n) = open.1.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, t0);
        for _ in 0..10 {
            assert!(b.take(t0, 5.0, 10.0).is_ok());
        }
        let wait = b.take(t0, 5.0, 10.0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-9, "{wait:?}");
        assert!(b.check(t0 + Duration::from_millis(199), 5.0, 10.0).is_err());
        assert!(b.take(t0 + Duration::from_millis(200), 5.0, 10.0).is_ok());
        // Saved up for a long time: still only a burst's worth.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..10 {
            assert!(b.take(later, 5.0, 10.0).is_ok());
        }
        assert!(b.take(later, 5.0, 10.0).is_err());
    }

    #[test]
    fn a_tiny_rate_waits_a_day_not_a_panic() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0.0, t0);
        let wait = b.take(t0, 1e-300, 10.0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(86_400));
    }

    #[test]
    fn connections_are_capped_in_all_and_per_peer() {
        let c = Connections::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = c.admit(a).unwrap();
        let _a2 = c.admit(a).unwrap();
        assert!(c.admit(a).is_none(), "per peer");
        let _b1 = c.admit(b).unwrap();
        assert!(c.admit(b).is_none(), "in all");
        drop(a1);
        let _b2 = c.admit(b).expect("room again");
        assert_eq!(c.open(), 3);
    }

    #[test]
    fn slots_are_per_rule() {
        let l = HookLimits::default();
        let held: Vec<_> = (0..HOOK_SLOTS_PER_RULE)
            .map(|_| l.slot("a", 10.0, HOOK_SLOTS_PER_RULE).unwrap())
            .collect();
        assert!(l.slot("a", 10.0, HOOK_SLOTS_PER_RULE).is_none());
        assert!(
            l.slot("b", 10.0, HOOK_SLOTS_PER_RULE).is_some(),
            "another rule is not starved"
        );
        drop(held);
        assert!(l.slot("a", 10.0, HOOK_SLOTS_PER_RULE).is_some());
    }
}
