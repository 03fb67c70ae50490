//! Redoing work that lost a commit race: [`until_committed`] is the one
//! read-handle-commit loop of the host (deliveries, jobs, ledger postings,
//! tenant registrations, operations), with one bound ([`MAX_ROUNDS`]) and
//! one back-off between rounds ([`Rounds`]).
//!
//! The plugin's work runs outside the commit and the commit checks the
//! versions of what it read (optimistic concurrency): a `Conflict` means
//! another writer got there first, and the work is redone on fresh reads.
//! Knows nothing about what a round does: the caller's closure handles,
//! this module commits and counts.

use super::{CommitOutcome, Db, EventMeta, NewEffect, StagedState};
use crate::backoff::{Backoff, Jitter};
use std::time::Duration;

/// The most rounds any loop gets: a round that lost this many commit races
/// in a row reports the contention instead of trying on.
pub const MAX_ROUNDS: u32 = 16;

/// How a round's work is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// State only: an application call (no event row, no effects).
    State,
    /// With the loop's event row, under this status, and the round's effects.
    Row(&'static str),
}

/// What one round did: what it staged, how it commits, and what comes next.
pub struct Round<T> {
    /// The state the round read and wrote.
    pub staged: StagedState,
    /// How it commits.
    pub write: Write,
    /// The effects committed with the row (empty with [`Write::State`]).
    pub effects: Vec<NewEffect>,
    /// Done with a value, or another round after this one commits.
    pub then: Then<T>,
}

impl<T> Round<T> {
    /// A round of state only that is done with `value`.
    pub fn state(staged: StagedState, value: T) -> Round<T> {
        Round {
            staged,
            write: Write::State,
            effects: Vec::new(),
            then: Then::Done(value),
        }
    }

    /// A round done with `value` that commits with the loop's event row,
    /// under `status`, and `effects`.
    pub fn row(
        staged: StagedState,
        status: &'static str,
        effects: Vec<NewEffect>,
        value: T,
    ) -> Round<T> {
        Round {
            staged,
            write: Write::Row(status),
            effects,
            then: Then::Done(value),
        }
    }
}

/// What follows a round's commit.
#[derive(Debug)]
pub enum Then<T> {
    /// The work is done: this is its answer.
    Done(T),
    /// Commit, then run another round (a withdrawal's hold, then its transfer).
    Again,
}

/// One round's start: fresh state to stage on, and the state of the round
/// that lost the race just before it, if any.
pub struct Attempt {
    /// Nothing read yet; tagged with the loop's label and the races lost.
    pub staged: StagedState,
    /// The previous round's state when it lost a commit race.
    pub lost_to: Option<StagedState>,
}

/// How a loop ended.
#[derive(Debug)]
pub enum Settled<T> {
    /// The last round committed and answered this (with the effects it committed).
    Done(T, Vec<NewEffect>),
    /// The event row was committed before (a redelivery): nothing written.
    Duplicate,
    /// Every round lost a commit race.
    Exhausted,
    /// The database failed.
    Failed(anyhow::Error),
}

/// Runs `round` on fresh state and commits what it staged, until a round
/// commits and is done, at most [`MAX_ROUNDS`] times. `row` is the event
/// row committed by rounds that write [`Write::Row`] (a delivery, a job, a
/// registration); `label` tags the staged state. An `Err` from a round
/// ends the loop with nothing of that round committed.
pub async fn until_committed<T, E, Fut>(
    db: &Db,
    label: &str,
    row: Option<(&EventMeta, &[u8])>,
    mut round: impl FnMut(Attempt) -> Fut,
) -> Result<Settled<T>, E>
where
    Fut: Future<Output = Result<Round<T>, E>>,
{
    let mut rounds = Rounds::new(MAX_ROUNDS);
    let mut lost_to = None;
    while rounds.next().await {
        let staged = StagedState::new(db.clone(), label).after_lost(rounds.lost());
        let done = round(Attempt {
            staged,
            lost_to: lost_to.take(),
        })
        .await?;
        let outcome = match (done.write, row) {
            (Write::State, _) => {
                debug_assert!(done.effects.is_empty(), "effects commit with a row");
                db.commit_state(&done.staged).await
            }
            (Write::Row(status), Some((event, payload))) => {
                db.commit(event, payload, &done.staged, &done.effects, status)
                    .await
            }
            (Write::Row(_), None) => {
                panic!("{label}: a round wrote a row in a loop that has none")
            }
        };
        match outcome {
            Ok(CommitOutcome::Committed) => match done.then {
                Then::Done(value) => return Ok(Settled::Done(value, done.effects)),
                Then::Again => continue,
            },
            Ok(CommitOutcome::Duplicate) => return Ok(Settled::Duplicate),
            Ok(CommitOutcome::Conflict) => lost_to = Some(done.staged),
            Err(e) => return Ok(Settled::Failed(e)),
        }
    }
    Ok(Settled::Exhausted)
}

/// The rounds of one read-handle-commit loop: how many have started, and
/// the wait before each from the third on. [`until_committed`] runs one.
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
    /// the third round on it first waits a random time ([`ROUND_BACKOFF`]):
    /// the second round runs at once, since the writer it lost to is done.
    pub async fn next(&mut self) -> bool {
        if self.started == self.max {
            return false;
        }
        if self.started > 1 {
            tokio::time::sleep(ROUND_BACKOFF.delay(self.started)).await;
        }
        self.started += 1;
        true
    }
}

/// The wait before a round after lost ones: up to 1 ms, doubling, at most
/// 32 ms, drawn at random below that. Writers that collided in one group
/// commit would otherwise all come back into the next one and collide again.
const ROUND_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(1),
    max: Duration::from_millis(32),
    jitter: Jitter::Full,
};

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
}
