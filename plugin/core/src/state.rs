//! The plugin's view of its persistent state. Inside the component this is
//! the host's `storage` import; in native tests an in-memory map.

use std::collections::BTreeMap;

pub trait StateStore {
    fn get(&mut self, collection: &str, key: &str) -> Result<Option<String>, String>;
    fn put(&mut self, collection: &str, key: &str, value: &str) -> Result<(), String>;
    fn delete(&mut self, collection: &str, key: &str) -> Result<(), String>;
}

/// An in-memory store for tests and tooling.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemoryState {
    pub entries: BTreeMap<(String, String), String>,
}

impl StateStore for MemoryState {
    fn get(&mut self, collection: &str, key: &str) -> Result<Option<String>, String> {
        Ok(self
            .entries
            .get(&(collection.to_string(), key.to_string()))
            .cloned())
    }
    fn put(&mut self, collection: &str, key: &str, value: &str) -> Result<(), String> {
        self.entries
            .insert((collection.to_string(), key.to_string()), value.to_string());
        Ok(())
    }
    fn delete(&mut self, collection: &str, key: &str) -> Result<(), String> {
        self.entries
            .remove(&(collection.to_string(), key.to_string()));
        Ok(())
    }
}
