//! The host's imports as core traits: `storage` as a `StateStore`.
//!
//! Knows nothing about the exports that use it.

use crate::bindings::psa::billing::storage;
use psa_billing_core::state;

/// The host's storage import as a core `StateStore`.
pub(crate) struct HostState;

impl state::StateStore for HostState {
    fn get(&mut self, collection: &str, key: &str) -> Result<Option<String>, String> {
        storage::get(collection, key).map_err(|e| format!("{e:?}"))
    }
    fn put(&mut self, collection: &str, key: &str, value: &str) -> Result<(), String> {
        storage::put(collection, key, value).map_err(|e| format!("{e:?}"))
    }
    fn delete(&mut self, collection: &str, key: &str) -> Result<(), String> {
        storage::delete(collection, key).map_err(|e| format!("{e:?}"))
    }
}
