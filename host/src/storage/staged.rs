//! The staged state of one plugin call: reads go to the database and
//! remember the version they saw; writes wait here until the commit, which
//! checks those versions.
//!
//! Knows nothing about WIT or the plugin: the `storage` capability wraps it.

use super::{Db, StateKey};
use std::collections::{BTreeMap, HashMap};

/// Storage for one event: reads go to the database (their versions are
/// remembered), writes stay here until the host commits them together with
/// the event record and its effects.
pub struct StagedState {
    db: Db,
    pub(crate) event_id: String,
    /// Version each key had when first read (`None`: absent).
    pub(crate) reads: HashMap<StateKey, Option<i64>>,
    /// Staged writes (`None`: delete), in key order for deterministic commits.
    pub(crate) writes: BTreeMap<StateKey, Option<String>>,
    /// Commit races this work already lost (see [`StagedState::after_lost`]).
    pub(crate) lost: u32,
}

impl StagedState {
    /// Nothing read or written yet; `event_id` tags the call's log lines.
    pub fn new(db: Db, event_id: impl Into<String>) -> StagedState {
        StagedState {
            db,
            event_id: event_id.into(),
            reads: HashMap::new(),
            writes: BTreeMap::new(),
            lost: 0,
        }
    }

    /// Marks this as the redo of work that lost `lost` commit races: a
    /// group commit decides such work before first attempts, so that a
    /// delivery contending for a hot key is not beaten again by newcomers.
    pub fn after_lost(mut self, lost: u32) -> StagedState {
        self.lost = lost;
        self
    }
}

impl StagedState {
    /// Reads a key as this transaction sees it: its own write, else the
    /// database (whose version the commit will check).
    pub async fn read(&mut self, key: StateKey) -> anyhow::Result<Option<String>> {
        if let Some(w) = self.writes.get(&key) {
            return Ok(w.clone());
        }
        let found = self.db.read_state(&key).await?;
        let version = found.as_ref().map(|(_, v)| *v);
        self.reads.entry(key).or_insert(version);
        Ok(found.map(|(value, _)| value))
    }

    /// Stages a write (`None`: delete) for the commit.
    pub fn write(&mut self, key: StateKey, value: Option<String>) {
        self.writes.insert(key, value);
    }
}
