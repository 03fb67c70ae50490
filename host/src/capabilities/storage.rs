//! The `storage` import: the plugin's key-value state, read through and
//! written to the call's staged state, with key and value limits.
//!
//! Knows nothing about which database is behind it.

use super::CallState;
use crate::bindings::psa::billing::storage;
use crate::storage::{StagedState, StateKey};

/// Largest value the plugin may store under one key.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Longest collection or key name.
const MAX_KEY_BYTES: usize = 512;

fn state_key(collection: String, key: String) -> Result<StateKey, storage::StorageError> {
    if collection.is_empty() || key.is_empty() {
        return Err(storage::StorageError::InvalidKey(
            "collection and key must not be empty".into(),
        ));
    }
    if collection.len() > MAX_KEY_BYTES || key.len() > MAX_KEY_BYTES {
        return Err(storage::StorageError::InvalidKey(format!(
            "collection and key are limited to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok((collection, key))
}

impl CallState {
    fn staged(&mut self) -> Result<&mut StagedState, storage::StorageError> {
        self.staged
            .as_mut()
            .ok_or(storage::StorageError::NotPermitted)
    }
}

impl storage::Host for CallState {
    async fn get(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, storage::StorageError>> {
        let staged = match self.staged() {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let key = match state_key(collection, key) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let started = std::time::Instant::now();
        let read = staged.read(key).await;
        // Waiting on the database is not the plugin's work.
        self.host_ticks += crate::clock::ticks(started.elapsed());
        match read {
            Ok(found) => Ok(Ok(found)),
            Err(e) => Ok(Err(storage::StorageError::Unavailable(format!("{e:#}")))),
        }
    }

    async fn put(
        &mut self,
        collection: String,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), storage::StorageError>> {
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(storage::StorageError::TooLarge(MAX_VALUE_BYTES as u32)));
        }
        Ok(self.stage(collection, key, Some(value)))
    }

    async fn delete(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<(), storage::StorageError>> {
        Ok(self.stage(collection, key, None))
    }
}

impl CallState {
    fn stage(
        &mut self,
        collection: String,
        key: String,
        value: Option<String>,
    ) -> Result<(), storage::StorageError> {
        let key = state_key(collection, key)?;
        self.staged()?.writes.insert(key, value);
        Ok(())
    }
}
