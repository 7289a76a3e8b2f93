//! Time as an input. The daemon reads the wall clock only through a
//! [`Clock`]: the system one in production, a [`Clock::manual`] one in
//! tests, which moves only when the test says so. Timers that must follow
//! the wall clock (a schedule's next fire, a job's `run_after`) sleep
//! through [`Clock::sleep_until`], so a test advances time instead of
//! sleeping through it.
//!
//! Monotonic durations (how long a request took, a settle window) are not
//! wall-clock time and use `tokio::time::Instant`, which paused tokio time
//! controls.
//!
//! Guarded by `tests/it/architecture.rs` (the wall-clock rule).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// A wall clock, cheap to clone.
#[derive(Clone)]
pub struct Clock(Arc<Source>);

enum Source {
    System,
    Manual {
        ms: AtomicI64,
        moved: tokio::sync::watch::Sender<i64>,
    },
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Source::System => f.write_str("Clock::system"),
            Source::Manual { ms, .. } => write!(f, "Clock::manual({})", ms.load(Ordering::SeqCst)),
        }
    }
}

/// A wall clock longer sleeps are cut into, so a clock step (NTP, a
/// suspended machine) cannot make one long sleep miss its time.
const WALL_STEP: Duration = Duration::from_secs(30);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(Source::System))
    }

    /// A clock standing at `start_ms` (Unix milliseconds) until moved.
    pub fn manual(start_ms: i64) -> Clock {
        Clock(Arc::new(Source::Manual {
            ms: AtomicI64::new(start_ms),
            moved: tokio::sync::watch::channel(start_ms).0,
        }))
    }

    /// Unix time in milliseconds.
    pub fn now_ms(&self) -> i64 {
        match &*self.0 {
            Source::System => system_ms(),
            Source::Manual { ms, .. } => ms.load(Ordering::SeqCst),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        from_ms(self.now_ms())
    }

    pub fn now_system_time(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + Duration::from_millis(self.now_ms().max(0) as u64)
    }

    /// Moves a manual clock forward; sleepers whose time came wake up.
    ///
    /// # Panics
    /// On the system clock: only tests move time.
    pub fn advance(&self, by: Duration) {
        self.set_ms(self.now_ms() + by.as_millis() as i64);
    }

    /// Sets a manual clock (see [`Clock::advance`]).
    pub fn set_ms(&self, to: i64) {
        match &*self.0 {
            Source::System => panic!("the system clock cannot be moved"),
            Source::Manual { ms, moved } => {
                ms.store(to, Ordering::SeqCst);
                moved.send_replace(to);
            }
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(&*self.0, Source::Manual { .. })
    }

    /// Returns once the clock reads `at_ms` or later.
    pub async fn sleep_until(&self, at_ms: i64) {
        match &*self.0 {
            Source::System => loop {
                let left = at_ms - system_ms();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(left as u64).min(WALL_STEP)).await;
            },
            Source::Manual { moved, .. } => {
                let mut rx = moved.subscribe();
                let _ = rx.wait_for(|now| *now >= at_ms).await;
            }
        }
    }

    pub async fn sleep(&self, d: Duration) {
        self.sleep_until(self.now_ms() + d.as_millis() as i64).await
    }
}

fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds as a time (the epoch for one out of range).
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// RFC 3339 in UTC with milliseconds (`2026-11-28T04:33:30.123Z`): event
/// timestamps and `now` in templates.
pub fn rfc3339_ms(ms: i64) -> String {
    from_ms(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 in UTC to the second: fire times, CLI tables.
pub fn rfc3339_secs(ms: i64) -> String {
    from_ms(ms).to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_moved_past_their_time() {
        let clock = Clock::manual(1_000);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(5_000).await }
        });
        clock.advance(Duration::from_secs(1));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke at 2 s for a 5 s deadline");
        clock.advance(Duration::from_secs(3));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke")
            .unwrap();
        assert_eq!(clock.now_ms(), 5_000);
    }

    #[test]
    fn formats() {
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(rfc3339_secs(1_500), "1970-01-01T00:00:01Z");
    }
}
