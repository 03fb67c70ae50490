//! Redoing work that lost a commit race: every read-handle-commit loop of
//! the host (deliveries, ledger postings, tenant registrations, operations)
//! counts its rounds and waits between them here, so they share one bound
//! and one back-off.
//!
//! The plugin's work runs outside the commit and the commit checks the
//! versions of what it read (optimistic concurrency): a `Conflict` means
//! another writer got there first, and the work is redone on fresh reads.
//! Knows nothing about what is redone or how it is committed.

use std::time::Duration;

/// The rounds of one read-handle-commit loop.
///
/// ```ignore
/// let mut rounds = Rounds::new(8);
/// while rounds.next().await {
///     // handle, commit; `continue` on a conflict, return when done
/// }
/// // every round lost: report it
/// ```
#[derive(Debug)]
pub struct Rounds {
    max: u32,
    started: u32,
}

impl Rounds {
    /// At most `max` rounds (at least one).
    pub fn new(max: u32) -> Rounds {
        assert!(max > 0, "a loop runs at least once");
        Rounds { max, started: 0 }
    }

    /// Rounds started before the current one: in a loop that starts a
    /// round only after losing one, the races lost so far.
    pub fn lost(&self) -> u32 {
        self.started.saturating_sub(1)
    }

    /// Starts the next round, or answers `false` when all were used. From
    /// the third round on it first waits a random time (see [`backoff`]):
    /// the second round runs at once, since the writer it lost to is done.
    pub async fn next(&mut self) -> bool {
        if self.started == self.max {
            return false;
        }
        if self.started > 1 {
            tokio::time::sleep(backoff(self.started)).await;
        }
        self.started += 1;
        true
    }
}

/// A random wait before the round after `lost` lost rounds: up to 1 ms,
/// doubling, at most 32 ms. Writers that collided in one group commit
/// would otherwise all come back into the next one and collide again.
pub fn backoff(lost: u32) -> Duration {
    let ceiling_us = 1000u64 << lost.min(5);
    Duration::from_micros(fastrand::u64(0..ceiling_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loop_gets_exactly_its_rounds() {
        let mut rounds = Rounds::new(3);
        let mut ran = 0;
        while rounds.next().await {
            ran += 1;
        }
        assert_eq!(ran, 3);
        assert!(!rounds.next().await, "no round after the last");
    }

    #[tokio::test]
    async fn each_round_knows_how_many_came_before_it() {
        let mut rounds = Rounds::new(3);
        let mut seen = Vec::new();
        while rounds.next().await {
            seen.push(rounds.lost());
        }
        assert_eq!(seen, [0, 1, 2]);
    }

    #[test]
    fn the_backoff_is_random_and_bounded() {
        for lost in 0..40 {
            let ceiling = Duration::from_micros(1000 << lost.min(5));
            assert!(backoff(lost) < ceiling);
        }
        let waits: std::collections::BTreeSet<_> = (0..64).map(|_| backoff(5)).collect();
        assert!(waits.len() > 32, "64 draws below 32 ms are mostly distinct");
    }
}
