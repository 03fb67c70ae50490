//! When a failed event is tried again by the host, besides Stripe's own
//! redeliveries.

use crate::backoff::{Backoff, Jitter};

/// How failed events are retried by the host (besides Stripe's own
/// redeliveries): exponential back-off, then the dead-letter list.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before an event is dead-lettered, the first included.
    pub max_attempts: i64,
    /// Delay after the first failure; doubled after each.
    pub base: std::time::Duration,
    /// Longest delay between attempts.
    pub cap: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: std::time::Duration::from_secs(30),
            cap: std::time::Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` failures; `None`: dead-letter it.
    pub fn delay_after(&self, attempts: i64) -> Option<std::time::Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let schedule = Backoff {
            first: self.base,
            max: self.cap,
            jitter: Jitter::None,
        };
        Some(schedule.delay((attempts - 1).clamp(0, 20) as u32))
    }
}
