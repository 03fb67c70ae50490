//! The one back-off policy of the host: how long to wait before the next
//! try of something that failed or lost a race. Commit rounds, the NATS
//! relay, the Stripe client and the retry schedule of failed events each
//! hold a [`Backoff`] with their own numbers.
//!
//! Knows nothing about what is retried or when to give up: the caller
//! counts its tries.

use std::time::Duration;

/// Exponential back-off: `first`, doubling with each try, at most `max`,
/// drawn at random as `jitter` says so that parties that failed together
/// do not come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub first: Duration,
    /// The ceiling no wait goes past.
    pub max: Duration,
    /// How a wait is drawn below its ceiling.
    pub jitter: Jitter,
}

/// How a wait is drawn below its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// The ceiling itself (a schedule people read).
    None,
    /// Uniformly from the ceiling's upper half.
    UpperHalf,
    /// Uniformly from zero up to the ceiling, excluded.
    Full,
}

impl Backoff {
    /// The wait before try `n` after the first (`n` = 0: the first retry).
    pub fn delay(&self, n: u32) -> Duration {
        let ceiling = self.first.saturating_mul(1 << n.min(20)).min(self.max);
        let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        let drawn = match self.jitter {
            Jitter::None => micros,
            Jitter::UpperHalf => fastrand::u64(micros / 2..=micros),
            Jitter::Full if micros == 0 => 0,
            Jitter::Full => fastrand::u64(0..micros),
        };
        let wait = Duration::from_micros(drawn);
        debug_assert!(wait <= self.max, "a wait never passes the cap");
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_ceiling_doubles_up_to_the_max() {
        let b = Backoff {
            first: 500 * MS,
            max: 30_000 * MS,
            jitter: Jitter::None,
        };
        let waits: Vec<u64> = (0..8).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
        assert_eq!(
            b.delay(u32::MAX),
            30_000 * MS,
            "no overflow on a long streak"
        );
    }

    #[test]
    fn jitter_draws_within_its_share_of_the_ceiling() {
        for (jitter, low) in [(Jitter::UpperHalf, 8 * MS), (Jitter::Full, Duration::ZERO)] {
            let b = Backoff {
                first: MS,
                max: 16 * MS,
                jitter,
            };
            let waits: std::collections::BTreeSet<Duration> =
                (0..200).map(|_| b.delay(4)).collect();
            assert!(
                waits.iter().all(|w| *w >= low && *w <= 16 * MS),
                "{jitter:?}"
            );
            assert!(
                waits.len() > 100,
                "{jitter:?}: 200 draws are mostly distinct"
            );
        }
    }
}
