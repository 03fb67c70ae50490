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
/// the current `versions` of every key the group touches.
pub(crate) fn decide<'a>(
    group: &[&'a Pending],
    mut claimed: std::collections::HashSet<String>,
    mut versions: std::collections::HashMap<StateKey, Version>,
) -> Decided<'a> {
    let mut outcomes = Vec::with_capacity(group.len());
    let mut committed: Vec<&Pending> = Vec::new();
    // Every written key's final value and version (`None`: deleted).
    let mut finals: std::collections::BTreeMap<&StateKey, Option<(&String, i64)>> =
        Default::default();
    for p in group {
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
        outcomes.push(Ok(outcome));
    }
    // Each delivery of the group gets exactly one answer, in its place.
    debug_assert_eq!(outcomes.len(), group.len());
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
