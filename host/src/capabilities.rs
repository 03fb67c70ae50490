//! What the host supplies to the guest: storage, log, clock, and an empty
//! WASI context (the guest's std links against WASI; it is granted nothing).

use crate::db::{Db, StateKey};
use crate::runtime::Limits;
use crate::runtime::bindings::psa::billing::{clock, crypto, log, storage, stripe, types};
use crate::stripe_api::StripeApi;
use std::collections::{BTreeMap, HashMap};
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Largest value the plugin may store under one key.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Longest collection or key name.
const MAX_KEY_BYTES: usize = 512;

/// The state of one plugin call (one `Store`).
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    staged: Option<StagedState>,
    /// Tags log lines with the event being handled.
    log_context: String,
    stripe: StripeAccess,
    /// Wall-clock time spent in host capabilities (database reads, Stripe)
    /// not yet given back to the guest's deadline, in epoch ticks: the
    /// deadline bounds the plugin's own work; the capabilities are bounded
    /// by `capability_timeout` / `operation_timeout`.
    pub(crate) host_ticks: u64,
    /// Stripe calls made by this plugin call (capped: a plugin must not
    /// turn one operation into a flood).
    stripe_calls: u32,
}

/// Stripe calls one plugin call may make.
pub const MAX_STRIPE_CALLS: u32 = 16;

/// Whether a call may use the `stripe` import.
#[derive(Clone, Default)]
pub enum StripeAccess {
    /// No key configured.
    #[default]
    Unconfigured,
    /// Webhook handling and reads: mapping depends on the event alone.
    NotHere,
    Api(StripeApi),
}

impl CallState {
    /// The state of a new store, between calls: no storage, no Stripe.
    pub(crate) fn new(limits: &Limits) -> CallState {
        CallState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(8)
                .tables(16)
                .memories(4)
                .trap_on_grow_failure(true)
                .build(),
            staged: None,
            log_context: String::new(),
            stripe: StripeAccess::NotHere,
            host_ticks: 0,
            stripe_calls: 0,
        }
    }

    /// Sets up the next call: its storage (if any) and Stripe access.
    pub(crate) fn begin(&mut self, staged: Option<StagedState>, stripe: StripeAccess) {
        self.log_context = staged
            .as_ref()
            .map(|s| s.event_id.clone())
            .unwrap_or_default();
        self.staged = staged;
        self.stripe = stripe;
        self.host_ticks = 0;
        self.stripe_calls = 0;
    }

    /// Ends a call: its staged storage, and nothing of it left behind.
    pub(crate) fn finish(&mut self) -> Option<StagedState> {
        self.stripe = StripeAccess::NotHere;
        self.log_context.clear();
        self.staged.take()
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Storage for one event: reads go to the database (their versions are
/// remembered), writes stay here until the host commits them together with
/// the event record and its effects.
pub struct StagedState {
    db: Db,
    event_id: String,
    /// Version each key had when first read (`None`: absent).
    pub(crate) reads: HashMap<StateKey, Option<i64>>,
    /// Staged writes (`None`: delete), in key order for deterministic commits.
    pub(crate) writes: BTreeMap<StateKey, Option<String>>,
}

impl StagedState {
    pub fn new(db: Db, event_id: impl Into<String>) -> StagedState {
        StagedState {
            db,
            event_id: event_id.into(),
            reads: HashMap::new(),
            writes: BTreeMap::new(),
        }
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

impl types::Host for CallState {}

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
        self.host_ticks += crate::runtime::ticks(started.elapsed());
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

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        // The plugin's text may quote what a sender wrote: a line break or a
        // terminal escape must not forge a log line or reach a terminal raw.
        let event = escape_controls(&self.log_context);
        let message = escape_controls(&message);
        let event = event.as_ref();
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", event, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", event, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", event, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", event, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", event, "{message}"),
        }
        Ok(())
    }
}

/// `text` with its control characters (line breaks, NUL, ESC...) written
/// as escapes (`\n`, `\u{1b}`).
pub(crate) fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

impl clock::Host for CallState {
    async fn now(&mut self) -> wasmtime::Result<i64> {
        Ok(crate::db::unix_now())
    }
}

impl crypto::Host for CallState {
    async fn hmac_sha256(&mut self, key: Vec<u8>, message: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        Ok(psa_billing_core::signature::hmac_sha256(&key, &message).to_vec())
    }
}

impl CallState {
    /// Runs one Stripe call, crediting its duration to the guest's deadline.
    async fn stripe_call<T>(
        &mut self,
        call: impl AsyncFnOnce(StripeApi) -> Result<T, stripe::StripeError>,
    ) -> wasmtime::Result<Result<T, stripe::StripeError>> {
        let api = match &self.stripe {
            StripeAccess::Api(api) => api.clone(),
            StripeAccess::Unconfigured => {
                return Ok(Err(stripe::StripeError::Denied(
                    "no Stripe key is configured (STRIPE_SECRET_KEY)".into(),
                )));
            }
            StripeAccess::NotHere => {
                return Ok(Err(stripe::StripeError::Denied(
                    "Stripe is not available while a webhook is handled".into(),
                )));
            }
        };
        if self.stripe_calls >= MAX_STRIPE_CALLS {
            return Ok(Err(stripe::StripeError::Denied(format!(
                "a plugin call may make at most {MAX_STRIPE_CALLS} Stripe calls"
            ))));
        }
        self.stripe_calls += 1;
        let started = std::time::Instant::now();
        let r = call(api).await;
        self.host_ticks += crate::runtime::ticks(started.elapsed());
        Ok(r)
    }
}

impl stripe::Host for CallState {
    async fn retrieve_event(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<String, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_event(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_thin_event(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<String, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_thin_event(&id).await)
            .await
    }

    async fn retrieve_payment_intent(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::PaymentIntent, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_payment_intent(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_charge(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::Charge, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_charge(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_invoice(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::Invoice, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_invoice(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_subscription(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::Subscription, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_subscription(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_account(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<stripe::Account, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_account(&id).await)
            .await
    }

    async fn create_payment_intent(
        &mut self,
        params: stripe::PaymentIntentParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::PaymentIntent, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_payment_intent(params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn create_refund(
        &mut self,
        params: stripe::RefundParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Refund, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_refund(params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn create_transfer(
        &mut self,
        params: stripe::TransferParams,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Transfer, stripe::StripeError>> {
        self.stripe_call(async |s| s.create_transfer(params, &idempotency_key).await)
            .await
    }

    async fn update_subscription_quantity(
        &mut self,
        subscription: String,
        item: String,
        quantity: u64,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Subscription, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.update_subscription_quantity(
                &subscription,
                &item,
                quantity,
                account.as_deref(),
                &idempotency_key,
            )
            .await
        })
        .await
    }

    async fn create_account(
        &mut self,
        params: stripe::AccountParams,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Account, stripe::StripeError>> {
        self.stripe_call(async |s| s.create_account(params, &idempotency_key).await)
            .await
    }

    async fn create_account_link(
        &mut self,
        account: String,
        refresh_url: String,
        return_url: String,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::AccountLink, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_account_link(&account, &refresh_url, &return_url, &idempotency_key)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_in_log_text_are_escaped() {
        assert_eq!(escape_controls("evt_1"), "evt_1");
        assert_eq!(
            escape_controls("evt_1\nlevel=ERROR forged"),
            "evt_1\\nlevel=ERROR forged"
        );
        assert_eq!(escape_controls("a\u{1b}[31mb\u{0}"), "a\\u{1b}[31mb\\u{0}");
        assert_eq!(escape_controls("Zürich 🙂"), "Zürich 🙂");
    }
}
