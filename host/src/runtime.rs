//! The plugin runtime: wasmtime with the component model.
//!
//! The component is compiled once per process and pre-instantiated. An
//! instance of the built-in billing plugin serves up to
//! `Limits::calls_per_instance` calls (100 by default) before it is
//! replaced, and keeps its memory between them; an instance of a custom
//! fee-rules component serves one call unless the deployment opts in to
//! reuse (`Limits::fee_rules_calls_per_instance`), so nothing of one
//! tenant's call reaches another's. Every call has its own capabilities,
//! an epoch deadline and a memory cap; an instance that trapped or overran
//! is never reused. The guest gets a WASI context that
//! grants nothing (no files, environment, sockets or stdio): only the
//! `psa:billing` imports below do anything.

use crate::capabilities::{CallState, StagedState, StripeAccess};
use anyhow::{Context, Result};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime::component::{
    Component, ComponentExportIndex, ComponentNamedList, HasSelf, Instance, InstancePre, Lift,
    Linker, Lower, TypedFunc,
};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "billing-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        // Effects are stored as JSON: derived, so it cannot drift from the WIT.
        additional_derives: [serde::Serialize],
    });
}

pub use bindings::exports::psa::billing::fees::{
    Charged, Discount, EscrowPlan, FeeError, InvoiceLine, InvoiceTotals, Proration, Quote,
    QuoteRequest, RefundSplit, SeatChange, TaxRate, WalletMove,
};
pub use bindings::exports::psa::billing::ledger::{Balance, LedgerError, Leg, Transaction};
pub use bindings::exports::psa::billing::operations::{
    ChargeInvoiceRequest, ChargedInvoice, LicenseCountRequest, OnboardRequest, Onboarded,
    OperationError, PaidWithdrawal, RefundRequest, Refunded, WithdrawRequest, Withdrawal,
};
pub use bindings::exports::psa::billing::webhooks::{
    Delivery, Effect, Envelope, HandleError, Routing, ThinEnvelope, VerifyError,
};
pub use bindings::psa::billing::stripe::{
    Account, AccountLink, PaymentIntent, StripeError, Subscription, SubscriptionItem,
    Transfer as StripeTransfer,
};
pub use bindings::psa::billing::types::{FeeLine, Money, Movement};
use bindings::{BillingPlugin, BillingPluginPre};

/// The world of custom fee-rules components; it shares the billing world's
/// `types` and `log`, so fee lines need no conversion.
mod fee_rules_bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "fee-rules-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "psa:billing/types": super::bindings::psa::billing::types,
            "psa:billing/log": super::bindings::psa::billing::log,
        },
    });
}
use fee_rules_bindings::exports::psa::billing::fee_rules::FeeContext;
use fee_rules_bindings::{FeeRulesPlugin, FeeRulesPluginPre};

/// How a custom fee-rules component's own refusal of a quote begins (as
/// opposed to the billing plugin refusing its breakdown).
pub const CUSTOM_RULES_DECLINED: &str = "custom fee rules refused the quote: ";

/// The default plugin, built from `plugin/component` by the build script.
pub static DEFAULT_PLUGIN: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/psa_billing_plugin.wasm"));

/// Bytes of each memory slot kept mapped between calls (see `Runtime::build`):
/// the guest's stack, data and the heap a call typically uses.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// How often the epoch advances; deadlines are counted in these ticks.
const TICK: Duration = Duration::from_millis(2);

/// `d` in epoch ticks, rounded up.
pub(crate) fn ticks(d: Duration) -> u64 {
    d.as_micros().div_ceil(TICK.as_micros()) as u64
}

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Budget of the plugin's own work in one call (wall clock, epoch-checked).
    /// Time the call spends waiting on host capabilities (the database,
    /// Stripe) is given back, so a slow database does not trap the guest.
    pub call_timeout: Duration,
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Calls alive at once; further calls wait for a slot.
    pub max_instances: u32,
    /// Calls one instance serves before it is replaced by a new one. An
    /// instance keeps its memory between calls (the guest's heap, its
    /// statics): 1 gives every call a fresh instance, so nothing at all
    /// carries over from one call to the next, at about 10 µs a call. An
    /// instance whose call trapped or overran is never reused.
    pub calls_per_instance: u32,
    /// Calls one instance of a custom fee-rules component serves. 1, the
    /// default, gives each call a fresh instance: a third-party component is
    /// called for many tenants, and nothing of one tenant's call (its heap,
    /// its statics) may reach another's. More is an opt-in for a component
    /// the deployment trusts, and saves about 10 µs a quote.
    pub fee_rules_calls_per_instance: u32,
    /// Wall-clock bound of one call that cannot reach Stripe: its own work
    /// plus its database reads.
    pub capability_timeout: Duration,
    /// Wall-clock budget of one operation (charge, refund...), Stripe calls
    /// and their retries included; the plugin's own work is still bounded
    /// by `call_timeout`.
    pub operation_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_millis(50),
            memory_bytes: 64 << 20,
            max_instances: 64,
            calls_per_instance: 100,
            fee_rules_calls_per_instance: 1,
            capability_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(50),
        }
    }
}

/// Why a plugin call did not return a value.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin call exceeded its {0:?} deadline")]
    Timeout(Duration),
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The custom fee-rules component failed (trap, deadline): that quote
    /// fails, nothing else does.
    #[error("custom fee rules component: {0}")]
    FeeRules(Box<CallError>),
}

/// One call of export `$export` of the billing plugin (or of `$pre`'s
/// component) with storage `$staged` and Stripe access `$stripe`: the result
/// and the staged storage back. The arguments are moved into the call's future.
macro_rules! instance_call {
    ($rt:ident, $staged:expr, $stripe:expr, $pre:ident . $export:ident ($($arg:expr),* $(,)?)) => {{
        let rt = $rt.clone();
        $rt.call($rt.inner.$pre(), $staged, $stripe, move |mut s, instance| {
            Box::pin(async move {
                let exports = &rt.inner.$pre().exports;
                let r = exports.$export.call(&mut s, &instance, ($($arg,)*)).await;
                (r, s)
            })
        })
        .await
    }};
}

/// One call to an export of the billing plugin (or of `$pre`'s component)
/// without storage.
macro_rules! plugin_call {
    ($rt:ident, $pre:ident . $export:ident ($($arg:expr),* $(,)?)) => {{
        let (r, _) = instance_call!($rt, None, StripeAccess::NotHere, $pre.$export($($arg),*))?;
        Ok(r)
    }};
    ($rt:ident, $export:ident ($($arg:expr),* $(,)?)) => {
        plugin_call!($rt, billing.$export($($arg),*))
    };
}

/// One call to an export of the billing plugin with storage staged in
/// `$staged`: the result and the staged reads and writes.
macro_rules! storage_call {
    ($rt:ident, $staged:ident, $export:ident ($($arg:expr),* $(,)?)) => {{
        instance_call!($rt, Some($staged), StripeAccess::NotHere, billing.$export($($arg),*))
            .map(|(r, staged)| (r, staged.expect("called with storage")))
    }};
}

/// One operation: storage staged in `$staged` and the Stripe capability.
macro_rules! operation_call {
    ($rt:ident, $staged:ident, $export:ident ($($arg:expr),* $(,)?)) => {{
        let stripe = $rt.inner.stripe.clone();
        instance_call!($rt, Some($staged), stripe, billing.$export($($arg),*))
            .map(|(r, staged)| (r, staged.expect("called with storage")))
    }};
}

/// A function a component exports, found by index when the runtime is
/// built and type-checked once then, on a first instance. Bindgen's
/// `instantiate` looks up and type-checks every export of every interface
/// on every instantiation, which was most of the cost of a call; a call
/// needs one function, and its type cannot change between instances of
/// the same component.
struct Export<P, T> {
    index: ComponentExportIndex,
    _signature: PhantomData<fn(P) -> T>,
}

impl<P, T> Export<P, T>
where
    P: ComponentNamedList + Lower + Send + Sync,
    (T,): ComponentNamedList + Lift + Send + Sync + 'static,
{
    fn find(component: &Component, interface: &str, name: &str) -> Result<Self> {
        let iface = component
            .get_export_index(None, interface)
            .with_context(|| format!("the component does not export `{interface}`"))?;
        let index = component
            .get_export_index(Some(&iface), name)
            .with_context(|| format!("`{interface}` has no function `{name}`"))?;
        Ok(Export {
            index,
            _signature: PhantomData,
        })
    }

    /// The full type check, as bindgen does it.
    fn check(&self, store: &mut Store<CallState>, instance: &Instance) -> Result<()> {
        instance
            .get_typed_func::<P, (T,)>(&mut *store, self.index)
            .map(drop)
            .map_err(anyhow::Error::from)
    }

    async fn call(
        &self,
        store: &mut Store<CallState>,
        instance: &Instance,
        params: P,
    ) -> wasmtime::Result<T> {
        let func = instance
            .get_func(&mut *store, self.index)
            .expect("found when the runtime was built");
        // SAFETY: `check` type-checked this export as `P -> (T,)` on an
        // instance of the same component (every `Linked` is checked before
        // it is used), and a component's types are the same in each instance.
        let typed = unsafe { TypedFunc::<P, (T,)>::new_unchecked(func) };
        let (r,) = typed.call_async(&mut *store, params).await?;
        Ok(r)
    }
}

/// Declares a component's exports: a struct with one [`Export`] a function,
/// and the functions that find them all and type-check them all.
macro_rules! exports {
    ($name:ident { $( $iface:literal { $( $field:ident = $func:literal ( $($p:ty),* ) -> $r:ty; )* } )* }) => {
        struct $name {
            $( $( $field: Export<($($p,)*), $r>, )* )*
        }

        impl $name {
            fn find(component: &Component) -> Result<Self> {
                Ok($name {
                    $( $( $field: Export::find(
                        component,
                        // The WIT package's version (wit/billing.wit).
                        concat!("psa:billing/", $iface, "@0.1.0"),
                        $func,
                    )?, )* )*
                })
            }

            fn check(&self, store: &mut Store<CallState>, instance: &Instance) -> Result<()> {
                $( $( self.$field.check(store, instance).context(concat!("type-checking `", $func, "`"))?; )* )*
                Ok(())
            }
        }
    };
}

exports!(BillingExports {
    "webhooks" {
        verify = "verify"(Delivery) -> Result<Envelope, VerifyError>;
        parse = "parse"(Vec<u8>) -> Result<Envelope, VerifyError>;
        verify_thin = "verify-thin"(Delivery) -> Result<ThinEnvelope, VerifyError>;
        snapshot_from_thin = "snapshot-from-thin"(Vec<u8>, Option<Vec<u8>>) -> Result<Vec<u8>, VerifyError>;
        handle = "handle"(Vec<u8>, Routing) -> Result<Vec<Effect>, HandleError>;
    }
    "tenants" {
        register = "register"(String, String) -> Result<(), String>;
        unregister = "unregister"(String) -> Result<(), String>;
        lookup = "lookup"(String) -> Result<Option<String>, String>;
    }
    "ledger" {
        post = "post"(String, String, String, String, Vec<Movement>) -> Result<Transaction, LedgerError>;
        balances = "balances"(String) -> Result<Vec<Balance>, LedgerError>;
        transactions = "transactions"(String, u64, u32) -> Result<Vec<Transaction>, LedgerError>;
    }
    "operations" {
        charge_invoice = "charge-invoice"(Option<String>, ChargeInvoiceRequest) -> Result<ChargedInvoice, OperationError>;
        refund = "refund"(Option<String>, RefundRequest) -> Result<Refunded, OperationError>;
        withdraw = "withdraw"(Option<String>, WithdrawRequest) -> Result<Withdrawal, OperationError>;
        set_license_count = "set-license-count"(LicenseCountRequest) -> Result<Subscription, OperationError>;
        onboard_tenant = "onboard-tenant"(OnboardRequest) -> Result<Onboarded, OperationError>;
    }
    "fees" {
        compute_quote = "compute-quote"(Option<String>, QuoteRequest) -> Result<Quote, FeeError>;
        check_breakdown = "check-breakdown"(QuoteRequest, Vec<FeeLine>) -> Result<Quote, FeeError>;
        check_rules = "check-rules"(String) -> Result<(), FeeError>;
        plan_escrow = "plan-escrow"(Option<String>, Money) -> Result<EscrowPlan, FeeError>;
        check_wallet_move = "check-wallet-move"(Option<String>, WalletMove, Money, i64) -> Result<(), FeeError>;
        total_invoice = "total-invoice"(Option<String>, String, Vec<InvoiceLine>) -> Result<InvoiceTotals, FeeError>;
        prorate_seats = "prorate-seats"(Option<String>, SeatChange) -> Result<Proration, FeeError>;
        split_refund = "split-refund"(Option<String>, Charged, i64, bool) -> Result<RefundSplit, FeeError>;
        parse_amount = "parse-amount"(String, String) -> Result<Money, FeeError>;
    }
});

exports!(FeeRulesExports {
    "fee-rules" {
        compute_fees = "compute-fees"(FeeContext) -> Result<Vec<FeeLine>, String>;
    }
});

/// A component linked against the host, with its exports found and
/// checked, and its instances waiting for their next call.
struct Linked<E> {
    pre: InstancePre<CallState>,
    exports: E,
    idle: std::sync::Mutex<Vec<Warm>>,
    /// Calls one instance serves before it is dropped (1: never reused).
    calls_per_instance: u32,
}

impl<E> Linked<E> {
    fn new(pre: InstancePre<CallState>, exports: E, calls_per_instance: u32) -> Linked<E> {
        Linked {
            pre,
            exports,
            idle: Default::default(),
            calls_per_instance,
        }
    }

    fn take_idle(&self) -> Option<Warm> {
        self.idle.lock().expect("not poisoned").pop()
    }

    /// Keeps an instance whose call returned for the next one, unless it
    /// has served its share of calls.
    fn put_idle(&self, warm: Warm) {
        if warm.calls < self.calls_per_instance {
            self.idle.lock().expect("not poisoned").push(warm);
        }
    }
}

/// An instance between calls, in its own store.
struct Warm {
    store: Store<CallState>,
    instance: Instance,
    /// Calls it has served.
    calls: u32,
}

#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    billing: Arc<Linked<BillingExports>>,
    /// A custom fee-rules component used for payment quotes in place of the
    /// rules file.
    fee_rules: Option<Arc<Linked<FeeRulesExports>>>,
    limits: Limits,
    /// Shared by every runtime on this engine: the pool has this many slots.
    slots: Arc<Semaphore>,
    stripe: StripeAccess,
}

impl Runtime {
    /// Compiles `wasm` (a component, not a core module) and links it against
    /// the host's capabilities.
    pub fn new(wasm: &[u8], limits: Limits) -> Result<Runtime> {
        Self::with_fee_rules(wasm, None, limits)
    }

    /// Like [`Runtime::new`], with a custom fee-rules component (world
    /// `psa:billing/fee-rules-plugin`) that prices payments in place of the
    /// rules file. It runs under the same limits, and the billing plugin
    /// checks every breakdown it returns.
    pub fn with_fee_rules(
        wasm: &[u8],
        fee_rules: Option<&[u8]>,
        limits: Limits,
    ) -> Result<Runtime> {
        Self::build(wasm, fee_rules, limits, None)
    }

    /// Like [`Runtime::with_fee_rules`], keeping the compiled native code in
    /// `cache` (a directory only the service may write: loading compiled
    /// code trusts it) so that the next start skips compilation.
    pub fn build(
        wasm: &[u8],
        fee_rules: Option<&[u8]>,
        limits: Limits,
        cache: Option<&std::path::Path>,
    ) -> Result<Runtime> {
        // Each component keeps up to `max_instances` instances (busy or
        // idle), and a custom fee-rules component is a second one.
        let instances = limits.max_instances * if fee_rules.is_some() { 2 } else { 1 };
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 4)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .max_memory_size(limits.memory_bytes)
            .table_keep_resident(64 << 10);
        // Resetting a memory slot with madvise made every call fault its
        // pages back in and flush the other core's TLB (about half of a
        // call's cost). With PAGEMAP_SCAN (Linux 6.7+) wasmtime finds the
        // pages a call dirtied and restores just those with memset, so the
        // slot stays resident; without it, keeping memory resident would
        // mean a memset of the whole region on every call.
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        }
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .profiler(profiler())
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        if is_core_module(wasm) {
            anyhow::bail!("the plugin is a core WebAssembly module, not a component");
        }
        let component = compile(&engine, wasm, cache).context("compiling the plugin component")?;
        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        BillingPlugin::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the plugin needs imports the host does not provide")?;
        BillingPluginPre::new(instance_pre.clone())
            .map_err(anyhow::Error::from)
            .context("the component does not implement the psa:billing/billing-plugin world")?;
        let billing = Linked::new(
            instance_pre,
            BillingExports::find(&component)?,
            limits.calls_per_instance,
        );
        let fee_rules = match fee_rules {
            Some(wasm) => Some(load_fee_rules(&engine, wasm, cache, &limits)?),
            None => None,
        };
        spawn_epoch_ticker(&engine);
        check_exports(&engine, &limits, &billing, fee_rules.as_ref())?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                billing: Arc::new(billing),
                fee_rules: fee_rules.map(Arc::new),
                slots: Arc::new(Semaphore::new(limits.max_instances as usize)),
                limits,
                stripe: StripeAccess::Unconfigured,
            }),
        })
    }

    /// The same compiled plugin with a Stripe client for operations (none:
    /// they are `denied`).
    pub fn with_stripe(&self, api: Option<crate::stripe_api::StripeApi>) -> Runtime {
        let i = &self.inner;
        Runtime {
            inner: Arc::new(Inner {
                engine: i.engine.clone(),
                billing: i.billing.clone(),
                fee_rules: i.fee_rules.clone(),
                limits: i.limits.clone(),
                slots: i.slots.clone(),
                stripe: match api {
                    Some(api) => StripeAccess::Api(api),
                    None => StripeAccess::Unconfigured,
                },
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Whether payment quotes come from a custom fee-rules component.
    pub fn has_fee_rules(&self) -> bool {
        self.inner.fee_rules.is_some()
    }

    /// Runs `f` on an instance of `linked`: an idle one, or a new one.
    /// Storage goes in and comes back out, so staged writes can be
    /// committed by the caller. An instance whose call failed in any way
    /// (trap, deadline) is dropped, never reused.
    async fn call<E, R: Send + 'static>(
        &self,
        linked: &Linked<E>,
        staged: Option<StagedState>,
        stripe: StripeAccess,
        f: impl FnOnce(Store<CallState>, Instance) -> CallFuture<R>,
    ) -> Result<(R, Option<StagedState>), CallError> {
        let limits = &self.inner.limits;
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .expect("semaphore never closed");
        let wall = limits.call_timeout
            + if matches!(stripe, StripeAccess::Api(_)) {
                limits.operation_timeout
            } else {
                limits.capability_timeout
            };
        let result = async {
            let Warm {
                mut store,
                instance,
                calls,
            } = match linked.take_idle() {
                Some(warm) => warm,
                None => {
                    let mut store = Store::new(&self.inner.engine, CallState::new(limits));
                    store.limiter(|s| &mut s.limits);
                    store.set_epoch_deadline(ticks(limits.call_timeout) + 1);
                    let instance = linked.pre.instantiate_async(&mut store).await?;
                    Warm {
                        store,
                        instance,
                        calls: 0,
                    }
                }
            };
            store.data_mut().begin(staged, stripe);
            store.set_epoch_deadline(ticks(limits.call_timeout) + 1);
            let mut overrun = Overrun::new(limits.call_timeout);
            store.epoch_deadline_callback(move |mut ctx| {
                // Time spent waiting on the database or Stripe is given back.
                let credit = std::mem::take(&mut ctx.data_mut().host_ticks);
                if credit > 0 {
                    return Ok(UpdateDeadline::Continue(credit));
                }
                match overrun.grace() {
                    Some(ticks) => Ok(UpdateDeadline::Continue(ticks)),
                    None => Err(wasmtime::Trap::Interrupt.into()),
                }
            });
            let (r, mut store) = f(store, instance).await;
            let r = r?;
            let staged = store.data_mut().finish();
            let warm = Warm {
                store,
                instance,
                calls: calls + 1,
            };
            linked.put_idle(warm);
            wasmtime::Result::Ok((r, staged))
        };
        // The epoch traps guest code; the timeout also bounds time spent in
        // host capability futures (a database that does not answer).
        match tokio::time::timeout(wall + TICK * 2, result).await {
            Err(_) => Err(CallError::Timeout(wall)),
            Ok(Err(e)) => Err(classify_trap(e, limits.call_timeout)),
            Ok(Ok(r)) => Ok(r),
        }
    }

    pub async fn verify(
        &self,
        delivery: Delivery,
    ) -> Result<Result<Envelope, VerifyError>, CallError> {
        plugin_call!(self, verify(delivery))
    }

    /// Checks a thin notification's signature and parses it.
    pub async fn verify_thin(
        &self,
        delivery: Delivery,
    ) -> Result<Result<ThinEnvelope, VerifyError>, CallError> {
        plugin_call!(self, verify_thin(delivery))
    }

    /// A snapshot-shaped event from a fetched v2 event and its related object.
    pub async fn snapshot_from_thin(
        &self,
        event: Vec<u8>,
        related: Option<Vec<u8>>,
    ) -> Result<Result<Vec<u8>, VerifyError>, CallError> {
        plugin_call!(self, snapshot_from_thin(event, related))
    }

    /// The Stripe client, when one is configured.
    pub fn stripe_api(&self) -> Option<&crate::stripe_api::StripeApi> {
        match &self.inner.stripe {
            StripeAccess::Api(api) => Some(api),
            _ => None,
        }
    }

    pub async fn parse(&self, body: &[u8]) -> Result<Result<Envelope, VerifyError>, CallError> {
        let body = body.to_vec();
        plugin_call!(self, parse(body))
    }

    /// Handles one event with storage staged in `staged`; returns the
    /// effects and the staged reads and writes.
    pub async fn handle(
        &self,
        body: &[u8],
        routing: &Routing,
        staged: StagedState,
    ) -> Result<(Result<Vec<Effect>, HandleError>, StagedState), CallError> {
        let body = body.to_vec();
        let routing = routing.clone();
        storage_call!(self, staged, handle(body, routing))
    }

    /// Registers a connected account to a tenant (staged; the caller commits).
    pub async fn register_tenant(
        &self,
        staged: StagedState,
        account: String,
        tenant: String,
    ) -> Result<(Result<(), String>, StagedState), CallError> {
        storage_call!(self, staged, register(account, tenant))
    }

    /// Forgets a connected account (staged; the caller commits).
    pub async fn unregister_tenant(
        &self,
        staged: StagedState,
        account: String,
    ) -> Result<(Result<(), String>, StagedState), CallError> {
        storage_call!(self, staged, unregister(account))
    }

    /// The tenant a connected account is registered to (reads only).
    pub async fn lookup_tenant(
        &self,
        staged: StagedState,
        account: String,
    ) -> Result<Result<Option<String>, String>, CallError> {
        let (r, _) = storage_call!(self, staged, lookup(account))?;
        Ok(r)
    }

    /// Posts movements to a tenant's ledger with storage staged in `staged`;
    /// the caller commits the staged writes.
    pub async fn ledger_post(
        &self,
        staged: StagedState,
        id: String,
        tenant: String,
        currency: String,
        description: String,
        movements: Vec<Movement>,
    ) -> Result<(Result<Transaction, LedgerError>, StagedState), CallError> {
        storage_call!(
            self,
            staged,
            post(id, tenant, currency, description, movements)
        )
    }

    /// Charges an invoice (staged; the caller commits).
    pub async fn charge_invoice(
        &self,
        staged: StagedState,
        rules: Option<String>,
        request: ChargeInvoiceRequest,
    ) -> Result<(Result<ChargedInvoice, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, charge_invoice(rules, request))
    }

    /// Refunds a payment (staged; the caller commits).
    pub async fn refund(
        &self,
        staged: StagedState,
        rules: Option<String>,
        request: RefundRequest,
    ) -> Result<(Result<Refunded, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, refund(rules, request))
    }

    /// One step of a withdrawal (staged; the caller commits, and calls
    /// again while it is `reserved`).
    pub async fn withdraw(
        &self,
        staged: StagedState,
        rules: Option<String>,
        request: WithdrawRequest,
    ) -> Result<(Result<Withdrawal, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, withdraw(rules, request))
    }

    /// Sets a subscription's license count.
    pub async fn set_license_count(
        &self,
        staged: StagedState,
        request: LicenseCountRequest,
    ) -> Result<(Result<Subscription, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, set_license_count(request))
    }

    /// Onboards a tenant (staged: its registration; the caller commits).
    pub async fn onboard_tenant(
        &self,
        staged: StagedState,
        request: OnboardRequest,
    ) -> Result<(Result<Onboarded, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, onboard_tenant(request))
    }

    /// A tenant's balances (reads only: `staged` is discarded).
    pub async fn ledger_balances(
        &self,
        staged: StagedState,
        tenant: String,
    ) -> Result<Result<Vec<Balance>, LedgerError>, CallError> {
        let (r, _) = storage_call!(self, staged, balances(tenant))?;
        Ok(r)
    }

    /// A tenant's transactions after `after` (reads only).
    pub async fn ledger_transactions(
        &self,
        staged: StagedState,
        tenant: String,
        after: u64,
        limit: u32,
    ) -> Result<Result<Vec<Transaction>, LedgerError>, CallError> {
        let (r, _) = storage_call!(self, staged, transactions(tenant, after, limit))?;
        Ok(r)
    }

    /// A fee breakdown under `rules` (TOML text; `None`: the defaults), or
    /// from the custom fee-rules component when there is one (the rules file
    /// then does not price payments). A custom breakdown is checked by the
    /// billing plugin before it is returned.
    pub async fn quote(
        &self,
        rules: Option<String>,
        request: QuoteRequest,
    ) -> Result<Result<Quote, FeeError>, CallError> {
        if self.inner.fee_rules.is_some() {
            return self.custom_quote(request).await;
        }
        plugin_call!(self, compute_quote(rules, request))
    }

    async fn custom_quote(
        &self,
        request: QuoteRequest,
    ) -> Result<Result<Quote, FeeError>, CallError> {
        let context = FeeContext {
            amount: request.amount.clone(),
            payment_method: request.payment_method.clone(),
            tenant: request.tenant.clone(),
            international: request.international,
            converted: request.converted,
            monthly_volume: request.monthly_volume,
        };
        let lines = self.custom_fee_lines(context).await;
        let lines = match lines {
            Ok(Ok(lines)) => lines,
            Ok(Err(why)) => {
                return Ok(Err(FeeError::InvalidRules(format!(
                    "{CUSTOM_RULES_DECLINED}{why}"
                ))));
            }
            Err(e) => {
                tracing::warn!(error = %e, "custom fee rules component failed");
                return Err(CallError::FeeRules(Box::new(e)));
            }
        };
        plugin_call!(self, check_breakdown(request, lines))
    }

    async fn custom_fee_lines(
        &self,
        context: FeeContext,
    ) -> Result<Result<Vec<FeeLine>, String>, CallError> {
        plugin_call!(self, fee_rules.compute_fees(context))
    }

    /// Checks a rules file in the plugin (the line and reason on error).
    pub async fn check_rules(&self, rules: String) -> Result<Result<(), FeeError>, CallError> {
        plugin_call!(self, check_rules(rules))
    }

    pub async fn plan_escrow(
        &self,
        rules: Option<String>,
        price: Money,
    ) -> Result<Result<EscrowPlan, FeeError>, CallError> {
        plugin_call!(self, plan_escrow(rules, price))
    }

    pub async fn check_wallet_move(
        &self,
        rules: Option<String>,
        kind: WalletMove,
        amount: Money,
        available: i64,
    ) -> Result<Result<(), FeeError>, CallError> {
        plugin_call!(self, check_wallet_move(rules, kind, amount, available))
    }

    pub async fn total_invoice(
        &self,
        rules: Option<String>,
        currency: String,
        lines: Vec<InvoiceLine>,
    ) -> Result<Result<InvoiceTotals, FeeError>, CallError> {
        plugin_call!(self, total_invoice(rules, currency, lines))
    }

    pub async fn prorate_seats(
        &self,
        rules: Option<String>,
        change: SeatChange,
    ) -> Result<Result<Proration, FeeError>, CallError> {
        plugin_call!(self, prorate_seats(rules, change))
    }

    pub async fn split_refund(
        &self,
        rules: Option<String>,
        original: Charged,
        amount: i64,
        refund_application_fee: bool,
    ) -> Result<Result<RefundSplit, FeeError>, CallError> {
        plugin_call!(
            self,
            split_refund(rules, original, amount, refund_application_fee)
        )
    }

    pub async fn parse_amount(
        &self,
        amount: &str,
        currency: &str,
    ) -> Result<Result<Money, FeeError>, CallError> {
        let (amount, currency) = (amount.to_string(), currency.to_string());
        plugin_call!(self, parse_amount(amount, currency))
    }
}

impl Inner {
    fn billing(&self) -> &Linked<BillingExports> {
        &self.billing
    }

    /// Only called when a fee-rules component is loaded (see `Runtime::quote`).
    fn fee_rules(&self) -> &Linked<FeeRulesExports> {
        self.fee_rules
            .as_ref()
            .expect("a fee rules component is loaded")
    }
}

/// Type-checks every export the host calls, on one instance of each
/// component, before the runtime is used: a component whose functions do
/// not have the WIT's types is refused here, as bindgen would. Instantiation
/// is async, and this may run inside a runtime, so it runs on a thread of
/// its own.
fn check_exports(
    engine: &Engine,
    limits: &Limits,
    billing: &Linked<BillingExports>,
    fee_rules: Option<&Linked<FeeRulesExports>>,
) -> Result<()> {
    async fn instance(
        engine: &Engine,
        limits: &Limits,
        pre: &InstancePre<CallState>,
    ) -> Result<(Store<CallState>, Instance)> {
        let mut store = Store::new(engine, CallState::new(limits));
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(ticks(limits.call_timeout) + 1);
        let instance = pre.instantiate_async(&mut store).await?;
        Ok((store, instance))
    }
    let check = async {
        let (mut store, i) = instance(engine, limits, &billing.pre).await?;
        billing.exports.check(&mut store, &i)?;
        if let Some(rules) = fee_rules {
            let (mut store, i) = instance(engine, limits, &rules.pre).await?;
            rules.exports.check(&mut store, &i)?;
        }
        Ok(())
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .build()?
                .block_on(check)
        })
        .join()
        .expect("the check does not panic")
    })
}

/// A plugin call: it owns its instance and store and hands the store back.
type CallFuture<R> = Pin<Box<dyn Future<Output = (wasmtime::Result<R>, Store<CallState>)> + Send>>;

/// Compiles and links a custom fee-rules component on the plugin's engine.
fn load_fee_rules(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&std::path::Path>,
    limits: &Limits,
) -> Result<Linked<FeeRulesExports>> {
    if is_core_module(wasm) {
        anyhow::bail!("the fee rules are a core WebAssembly module, not a component");
    }
    let component = compile(engine, wasm, cache).context("compiling the fee rules component")?;
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if !exports
        .iter()
        .any(|e| e.starts_with("psa:billing/fee-rules@"))
    {
        anyhow::bail!(
            "the component does not implement the psa:billing/fee-rules-plugin world: \
             it exports [{}], not psa:billing/fee-rules",
            exports.join(", ")
        );
    }
    let mut linker = Linker::<CallState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    FeeRulesPlugin::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s)?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .context("the fee rules component needs imports the host does not provide (it may only import psa:billing/log)")?;
    FeeRulesPluginPre::new(instance_pre.clone())
        .map_err(anyhow::Error::from)
        .context("the component does not implement the psa:billing/fee-rules-plugin world")?;
    Ok(Linked::new(
        instance_pre,
        FeeRulesExports::find(&component)?,
        limits.fee_rules_calls_per_instance,
    ))
}

/// Compiles a component, or loads its native code from `cache` where an
/// earlier start left it. The file name is the SHA-256 of the component's
/// bytes and of this engine's compatibility hash (wasmtime version, target,
/// settings), so a changed component or engine never loads stale code.
fn compile(engine: &Engine, wasm: &[u8], cache: Option<&std::path::Path>) -> Result<Component> {
    use sha2::Digest;
    use std::hash::{Hash, Hasher};
    let Some(dir) = cache else {
        return Component::new(engine, wasm).map_err(anyhow::Error::from);
    };
    struct Sha(sha2::Sha256);
    impl Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // unused: the digest is read directly
        }
    }
    let mut h = Sha(sha2::Sha256::new());
    h.write(wasm);
    engine.precompile_compatibility_hash().hash(&mut h);
    let name: String = h.0.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("{name}.cwasm"));
    // Read into memory rather than mapped: a file replaced while mapped
    // would crash the process (SIGBUS).
    if let Ok(bytes) = std::fs::read(&path) {
        // SAFETY: loading compiled code trusts the file. It is in the
        // operator's cache directory (documented: writable by the service
        // alone), named by the component's hash, and wasmtime checks its
        // header against this engine.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a cached component")
            }
        }
    }
    let component = Component::new(engine, wasm).map_err(anyhow::Error::from)?;
    let write = || -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, component.serialize().map_err(anyhow::Error::from)?)?;
        std::fs::rename(&tmp, &path)?; // atomic: a reader never sees half a file
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"), "could not cache the compiled component");
    }
    Ok(component)
}

fn classify_trap(e: wasmtime::Error, timeout: Duration) -> CallError {
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return CallError::Timeout(timeout);
    }
    CallError::Trap(format!("{e:#}"))
}

/// Whether a call whose budget ran out in wall-clock time really used it.
/// The epoch counts wall time, and a busy machine can keep the guest's
/// thread off the CPU for longer than the whole budget (seen in CI: a
/// one-shot CLI quote among a dozen processes compiling at once). So the
/// first time the budget runs out the call gets a grace of half the budget,
/// and it traps at the end of a grace during which its thread ran on the
/// CPU for at least half of it: a guest that loops is stopped at 1.5× the
/// budget, one that was merely waiting for a CPU goes on. Graces are
/// capped, and the wall-clock timeout of the whole call still applies.
struct Overrun {
    grace: Duration,
    /// The thread and its CPU time when the current grace began.
    grace_began: Option<(std::thread::ThreadId, Duration)>,
    graces: u32,
}

/// Graces one call may get (with the default 50 ms budget: a second).
const MAX_GRACES: u32 = 40;

impl Overrun {
    fn new(budget: Duration) -> Overrun {
        Overrun {
            grace: (budget / 2).max(TICK),
            grace_began: None,
            graces: 0,
        }
    }

    /// Epoch ticks to go on for, or `None` to trap.
    fn grace(&mut self) -> Option<u64> {
        let now = (std::thread::current().id(), thread_cpu_time()?);
        if let Some((thread, cpu)) = self.grace_began {
            // On another thread (the call went through an await), the CPU
            // figure says nothing: count the grace as used.
            if thread != now.0 || now.1.saturating_sub(cpu) >= self.grace / 2 {
                return None;
            }
        }
        if self.graces == MAX_GRACES {
            return None;
        }
        self.graces += 1;
        self.grace_began = Some(now);
        Some(ticks(self.grace))
    }
}

/// CPU time used so far by the calling thread.
#[cfg(unix)]
fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    ok.then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// Without a per-thread CPU clock, the wall-clock budget is final.
#[cfg(not(unix))]
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// A core module starts with version 1 in its header; a component with a
/// different layer number. Checked up front for a clearer error.
fn is_core_module(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [1, 0, 0, 0]
}

/// `PSA_BILLING_PERFMAP=1` has wasmtime write `/tmp/perf-<pid>.map`, so
/// that `perf report` names the plugin's own functions instead of showing
/// bare addresses (profiling a plugin; off otherwise).
fn profiler() -> wasmtime::ProfilingStrategy {
    match std::env::var_os("PSA_BILLING_PERFMAP") {
        Some(v) if v == "1" => wasmtime::ProfilingStrategy::PerfMap,
        _ => wasmtime::ProfilingStrategy::None,
    }
}

/// Advances the engine's epoch every tick while the engine lives.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("psa-billing-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch thread");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread kept off the CPU through a grace (here: asleep) gets
    /// another; one that spins through it is stopped; graces are capped.
    #[test]
    fn an_overrun_traps_only_when_the_guest_thread_used_its_grace() {
        let mut idle = Overrun::new(Duration::from_millis(20));
        assert!(
            idle.grace().is_some(),
            "the first overrun always gets a grace"
        );
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(12));
            assert!(idle.grace().is_some(), "asleep: no CPU used, go on");
        }

        let mut busy = Overrun::new(Duration::from_millis(20));
        assert!(busy.grace().is_some());
        let began = thread_cpu_time().unwrap();
        while thread_cpu_time().unwrap() - began < Duration::from_millis(6) {
            std::hint::spin_loop();
        }
        assert_eq!(busy.grace(), None, "spun for more than half the grace");

        let mut capped = Overrun::new(Duration::from_millis(20));
        for _ in 0..MAX_GRACES {
            assert!(capped.grace().is_some());
        }
        assert_eq!(capped.grace(), None, "no grace beyond the cap");

        let mut moved = Overrun::new(Duration::from_millis(20));
        assert!(moved.grace().is_some());
        let elsewhere = std::thread::scope(|s| s.spawn(|| moved.grace()).join().unwrap());
        assert_eq!(
            elsewhere, None,
            "on another thread the grace counts as used"
        );
    }

    #[tokio::test]
    async fn a_cached_compilation_is_reused_and_gives_the_same_answers() {
        let dir = tempfile::tempdir().unwrap();
        let first =
            Runtime::build(DEFAULT_PLUGIN, None, Limits::default(), Some(dir.path())).unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1, "one compiled file");
        let cached =
            Runtime::build(DEFAULT_PLUGIN, None, Limits::default(), Some(dir.path())).unwrap();
        let a = first.parse_amount("12.34", "usd").await.unwrap().unwrap();
        let b = cached.parse_amount("12.34", "usd").await.unwrap().unwrap();
        assert_eq!((a.amount, b.amount), (1234, 1234));
        // A corrupt cache file is ignored and rewritten, not trusted.
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        std::fs::write(&path, b"not compiled code").unwrap();
        let again =
            Runtime::build(DEFAULT_PLUGIN, None, Limits::default(), Some(dir.path())).unwrap();
        assert_eq!(
            again
                .parse_amount("1", "usd")
                .await
                .unwrap()
                .unwrap()
                .amount,
            100
        );
        assert!(std::fs::metadata(&path).unwrap().len() > 1000);
    }

    #[test]
    fn the_built_plugin_is_a_component() {
        // A component's preamble: magic, version 0x000d, layer 1.
        assert_eq!(&DEFAULT_PLUGIN[..4], b"\0asm");
        assert_eq!(&DEFAULT_PLUGIN[4..8], &[0x0d, 0x00, 0x01, 0x00]);
        assert!(!is_core_module(DEFAULT_PLUGIN));
    }

    /// A $100 card payment, with a platform fee percent or the rules' own.
    fn card_payment(application_fee_percent: Option<&str>) -> QuoteRequest {
        QuoteRequest {
            amount: Money {
                amount: 10_000,
                currency: "usd".into(),
            },
            payment_method: "card".into(),
            tenant: None,
            international: false,
            converted: false,
            application_fee_percent: application_fee_percent.map(str::to_string),
            application_fee_fixed: None,
            monthly_volume: None,
        }
    }

    #[tokio::test]
    async fn quotes_through_the_component_are_repeatable_and_checked() {
        let rt = Runtime::new(DEFAULT_PLUGIN, Limits::default()).unwrap();
        let req = || card_payment(Some("2.5"));
        let a = rt.quote(None, req()).await.unwrap().unwrap();
        let b = rt.quote(None, req()).await.unwrap().unwrap();
        assert_eq!((a.net.amount, b.net.amount), (9_430, 9_430));
        let err = rt.parse_amount("1.001", "usd").await.unwrap().unwrap_err();
        assert!(matches!(err, FeeError::InvalidAmount(_)));
        let err = rt
            .check_rules("[platform]\npercent = 101\n".into())
            .await
            .unwrap();
        assert!(matches!(err, Err(FeeError::InvalidRules(m)) if m.contains("line 2")));
    }

    /// The guest keeps the last rules text it parsed: one instance quoting
    /// with different texts in turn, an invalid one among them, answers as
    /// a fresh instance per call does.
    #[tokio::test]
    async fn a_reused_instance_quotes_with_the_rules_it_was_sent() {
        let reused = Runtime::new(DEFAULT_PLUGIN, Limits::default()).unwrap();
        let fresh = Runtime::new(
            DEFAULT_PLUGIN,
            Limits {
                calls_per_instance: 1,
                ..Limits::default()
            },
        )
        .unwrap();
        let rules = |percent: &str| {
            format!(
                "[platform]\npercent = \"{percent}\"\n[[processor]]\npercent = \"2.9\"\nfixed = 30\n"
            )
        };
        let req = || card_payment(None);
        let texts = [
            Some(rules("2.5")),
            Some(rules("10")),
            Some(rules("2.5")),
            Some("[platform]\npercent = 101\n".to_string()),
            Some(rules("10")),
            None,
            Some(rules("10")),
        ];
        let mut nets = Vec::new();
        for text in texts {
            let got = reused.quote(text.clone(), req()).await.unwrap();
            let want = fresh.quote(text, req()).await.unwrap();
            assert_eq!(format!("{got:?}"), format!("{want:?}"));
            nets.push(got.map(|q| q.net.amount).ok());
        }
        // 10,000 - 320 processor fee - the platform's percent (the default
        // rules' quote, sixth, is only compared with a fresh instance's).
        nets[5] = None;
        assert_eq!(
            nets,
            [
                Some(9_430),
                Some(8_680),
                Some(9_430),
                None,
                Some(8_680),
                None,
                Some(8_680)
            ]
        );
    }
}
