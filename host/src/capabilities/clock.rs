//! The `clock` import: wall-clock seconds.

use super::CallState;
use crate::bindings::psa::billing::clock;

impl clock::Host for CallState {
    async fn now(&mut self) -> wasmtime::Result<i64> {
        Ok(crate::clock::unix_now())
    }
}
