//! The pure part of a group commit: which of the waiting deliveries commit,
//! which are duplicates and which lost a race, decided from the ids and key
//! versions read at the start, exactly as if each had committed alone.
//!
//! Knows nothing about SQL or threads: both committers (the sqlx task and
//! the SQLite commit thread) call [`decide`] with what they read.

use super::{CommitOutcome, EventMeta, NewEffect, StagedState, StateKey};
use std::sync::atomic::AtomicU64;

/// Group commits written and the deliveries they carried.
#[derive(Default)]
pub(crate) struct GroupStats {
    pub(crate) groups: AtomicU64,
    pub(crate) deliveries: AtomicU64,
}

/// Most deliveries one group commit takes.
pub(crate) const MAX_GROUP: usize = 64;

/// One delivery waiting for the group commit, with its own copy of what it
/// writes (the caller may stop waiting; the commit goes ahead).
pub(crate) struct Pending {
    pub(crate) event: EventMeta,
    pub(crate) payload: Vec<u8>,
    pub(crate) status: String,
    pub(crate) reads: Vec<(StateKey, Option<i64>)>,
    pub(crate) writes: Vec<(StateKey, Option<String>)>,
    /// Kind and JSON body of each effect.
    pub(crate) effects: Vec<(String, String)>,
    /// Commit races it lost before: the group decides the most-beaten first.
    pub(crate) lost: u32,
}

/// Where the committer answers one delivery (an error as text: it may be
/// the whole group's).
pub(crate) type Reply = tokio::sync::oneshot::Sender<std::result::Result<CommitOutcome, String>>;

impl Pending {
    pub(crate) fn new(
        event: &EventMeta,
        payload: &[u8],
        staged: &StagedState,
        effects: &[NewEffect],
        status: &str,
    ) -> Pending {
        Pending {
            event: event.clone(),
            payload: payload.to_vec(),
            status: status.to_string(),
            reads: staged.reads.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            writes: staged
                .writes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            effects: effects
                .iter()
                .map(|e| (e.kind.clone(), e.body.to_string()))
                .collect(),
            lost: staged.lost,
        }
    }
}

/// A state key's version as the group goes (`None`: absent).
pub(crate) type Version = Option<i64>;

/// The group's distinct event ids.
pub(crate) fn group_ids<'a>(group: &[&'a Pending]) -> Vec<&'a str> {
    group
        .iter()
        .map(|p| p.event.id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Every key the group reads or writes, once.
pub(crate) fn group_keys<'a>(group: &[&'a Pending]) -> Vec<&'a StateKey> {
    group
        .iter()
        .flat_map(|p| {
            p.reads
                .iter()
                .map(|(k, _)| k)
                .chain(p.writes.iter().map(|(k, _)| k))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The effects of the committed deliveries, in order, with their event ids.
pub(crate) fn group_effects<'a>(committed: &[&'a Pending]) -> Vec<(&'a str, &'a (String, String))> {
    committed
        .iter()
        .flat_map(|p| p.effects.iter().map(|e| (p.event.id.as_str(), e)))
        .collect()
}

/// What a group commit writes, decided before anything is.
pub(crate) struct Decided<'a> {
    pub(crate) outcomes: Vec<std::result::Result<CommitOutcome, String>>,
    pub(crate) committed: Vec<&'a Pending>,
    /// Final (key, value, version) of every key written and kept.
    pub(crate) upserts: Vec<(&'a StateKey, &'a String, i64)>,
    pub(crate) deletes: Vec<&'a StateKey>,
}

/// Each delivery of `group` in turn, as the statements of one alone would
/// decide, given the events already `claimed` (processed or ignored) and
/// the current `versions` of every key the group touches. Redone work goes
/// first, the one that lost most races before the others (then in arrival
/// order): two deliveries of one group that contend for a key cannot both
/// commit, and without this a redo kept losing to the first attempts that
/// arrived with it (the tail at 64 connections). Each answer stays in its
/// delivery's place; the committed ones are listed in the order decided,
/// which is the order their effects take in the outbox.
pub(crate) fn decide<'a>(
    group: &[&'a Pending],
    mut claimed: std::collections::HashSet<String>,
    mut versions: std::collections::HashMap<StateKey, Version>,
) -> Decided<'a> {
    let mut outcomes = vec![None; group.len()];
    let mut committed: Vec<&Pending> = Vec::new();
    let mut order: Vec<usize> = (0..group.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(group[i].lost));
    // Every written key's final value and version (`None`: deleted).
    let mut finals: std::collections::BTreeMap<&StateKey, Option<(&String, i64)>> =
        Default::default();
    for i in order {
        let p = group[i];
        let outcome = if claimed.contains(&p.event.id) {
            CommitOutcome::Duplicate
        } else if p.reads.iter().any(|(k, v)| versions[k] != *v) {
            CommitOutcome::Conflict
        } else {
            claimed.insert(p.event.id.clone());
            for (key, value) in &p.writes {
                let written = value
                    .as_ref()
                    .map(|v| (v, versions[key].map_or(1, |n| n + 1)));
                versions.insert(key.clone(), written.map(|(_, n)| n));
                finals.insert(key, written);
            }
            committed.push(p);
            CommitOutcome::Committed
        };
        debug_assert!(outcomes[i].is_none(), "a delivery is decided once");
        outcomes[i] = Some(Ok(outcome));
    }
    // Each delivery of the group gets exactly one answer, in its place.
    let outcomes: Vec<_> = outcomes
        .into_iter()
        .map(|o| o.expect("every delivery of the group is decided"))
        .collect();
    debug_assert!(committed.len() <= group.len());
    Decided {
        outcomes,
        committed,
        upserts: finals
            .iter()
            .filter_map(|(k, w)| w.map(|(v, n)| (*k, v, n)))
            .collect(),
        deletes: finals
            .iter()
            .filter_map(|(k, w)| w.is_none().then_some(*k))
            .collect(),
    }
}

/// A payment's delivery with `reads`, writing nothing, one effect.
#[cfg(test)]
pub(crate) fn pending(id: &str, reads: Vec<(StateKey, Version)>, lost: u32) -> Pending {
    Pending {
        event: EventMeta {
            id: id.into(),
            event_type: "payment_intent.succeeded".into(),
            account: None,
            created: 1,
            livemode: false,
        },
        payload: b"{}".to_vec(),
        status: "processed".into(),
        reads,
        writes: vec![],
        effects: vec![("payment.succeeded".into(), "{}".into())],
        lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery that read `key` at `version` and writes it.
    fn rewriting(id: &str, key: &StateKey, version: Version, lost: u32) -> Pending {
        let mut p = pending(id, vec![(key.clone(), version)], lost);
        p.writes = vec![(key.clone(), Some(id.into()))];
        p
    }

    #[test]
    fn a_redo_beats_the_first_attempts_of_its_group_and_answers_stay_in_place() {
        let book: StateKey = ("ledger_books".into(), "t1".into());
        let first = rewriting("evt_first", &book, Some(3), 0);
        let redo = rewriting("evt_redo", &book, Some(3), 2);
        let other = rewriting("evt_other", &("ledger_books".into(), "t2".into()), None, 0);
        let group = [&first, &redo, &other];
        let versions = [(book.clone(), Some(3)), (other.reads[0].0.clone(), None)];
        let decided = decide(&group, Default::default(), versions.into_iter().collect());
        assert_eq!(
            decided.outcomes,
            vec![
                Ok(CommitOutcome::Conflict),
                Ok(CommitOutcome::Committed),
                Ok(CommitOutcome::Committed)
            ]
        );
        let order: Vec<&str> = decided
            .committed
            .iter()
            .map(|p| p.event.id.as_str())
            .collect();
        assert_eq!(order, ["evt_redo", "evt_other"]);
        // The book holds the redo's write, one version on.
        assert!(
            decided
                .upserts
                .contains(&(&book, &"evt_redo".to_string(), 4))
        );
    }

    #[test]
    fn without_redos_the_group_is_decided_in_arrival_order() {
        let book: StateKey = ("ledger_books".into(), "t1".into());
        let a = rewriting("evt_a", &book, Some(1), 0);
        let b = rewriting("evt_b", &book, Some(1), 0);
        let decided = decide(
            &[&a, &b],
            Default::default(),
            [(book, Some(1))].into_iter().collect(),
        );
        assert_eq!(
            decided.outcomes,
            vec![Ok(CommitOutcome::Committed), Ok(CommitOutcome::Conflict)]
        );
    }
}
