//! In-call retry policy: short, jittered, exponential; `Retry-After` wins.
//! Pure, so it is tested without sleeping. Waits longer than `max_wait` are
//! not slept through here: the error goes up, and the job layer stores a
//! retry time instead of holding a worker.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total tries, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// The longest single wait done inside a call.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(10),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before try `attempt + 1` (`attempt` counts tries made, from
    /// 1), or `None` to give up. `jitter` is uniform in [0, 1).
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let wait = match retry_after {
            Some(d) => d,
            None => {
                let exp = self
                    .base
                    .saturating_mul(1 << (attempt - 1).min(16))
                    .min(self.cap);
                // "Equal jitter": half fixed, half random, so waits spread
                // out but never collapse to zero.
                exp / 2 + exp.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
            }
        };
        (wait <= self.max_wait).then_some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_stops() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, None, 0.0), Some(Duration::from_millis(250)));
        assert_eq!(p.delay(1, None, 1.0), Some(Duration::from_millis(500)));
        assert_eq!(p.delay(2, None, 0.0), Some(Duration::from_millis(500)));
        assert_eq!(p.delay(3, None, 0.5), Some(Duration::from_millis(1500)));
        assert_eq!(p.delay(4, None, 0.5), None);
    }

    #[test]
    fn capped() {
        let p = RetryPolicy {
            max_attempts: 40,
            ..Default::default()
        };
        assert!(p.delay(30, None, 1.0).unwrap() <= p.cap);
    }

    #[test]
    fn retry_after_wins_unless_too_long() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(1)), 0.9),
            Some(Duration::from_secs(1))
        );
        assert_eq!(p.delay(1, Some(Duration::from_secs(600)), 0.0), None);
    }
}
