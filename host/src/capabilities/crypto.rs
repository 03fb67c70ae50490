//! The `crypto` import: HMAC-SHA256, for the plugin's signature checks.

use super::CallState;
use crate::bindings::psa::billing::crypto;

impl crypto::Host for CallState {
    async fn hmac_sha256(&mut self, key: Vec<u8>, message: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        Ok(psa_billing_core::signature::hmac_sha256(&key, &message).to_vec())
    }
}
