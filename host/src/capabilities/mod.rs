//! What the host supplies to the guest, one file per WIT import
//! (`storage`, `stripe`, `log`, `clock`, `crypto`), and an empty WASI
//! context (the guest's std links against WASI; it is granted nothing).
//! This file holds the state of one call that they share.
//!
//! Knows nothing about how calls are scheduled, timed or instantiated (the
//! runtime), nor about HTTP or the delivery flow.

use crate::bindings::psa::billing::types;
use crate::storage::StagedState;
use crate::stripe::StripeApi;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
    pub(crate) fn new(memory_bytes: usize) -> CallState {
        CallState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
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

impl types::Host for CallState {}

mod clock;
mod crypto;
mod log;
mod storage;
mod stripe;

pub(crate) use log::escape_controls;
