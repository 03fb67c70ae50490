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
//!
//! Knows nothing about deliveries, HTTP or SQL: callers hand it staged
//! storage and get back results and what was staged.

use crate::capabilities::{CallState, StripeAccess};
use crate::clock::{TICK, ticks};
use crate::storage::StagedState;
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

pub use crate::bindings::exports::psa::billing::fees::{
    Charged, Discount, EscrowParties, EscrowPlan, FeeError, InvoiceLine, InvoiceTotals, Proration,
    Quote, QuoteRequest, RefundSplit, SeatChange, TaxRate, WalletMove,
};
pub use crate::bindings::exports::psa::billing::ledger::{Balance, LedgerError, Leg, Transaction};
pub use crate::bindings::exports::psa::billing::operations::{
    AccountStatusRequest, ChargeInvoiceRequest, ChargedInvoice, CheckoutRequest, CustomerAction,
    CustomerFields, CustomerRequest, DepositRequest, InvoiceAction, InvoiceAdvance, InvoiceRequest,
    Invoiced, LicenseCountRequest, NewInvoice, NewSubscription, NotOwned, OnboardRequest,
    Onboarded, OperationError, OwnedObject, OwnershipClaim, PaidWithdrawal,
    PaymentMethodAttachment, PlanChange, PortalRequest, Purchase, RefundRequest, Refunded,
    SettleRequest, StripeInvoiceLine, SubscriptionAction, SubscriptionCancel, SubscriptionRequest,
    WalletDeposit, WithdrawRequest, Withdrawal,
};
pub use crate::bindings::exports::psa::billing::webhooks::{
    Delivery, Effect, Envelope, HandleError, Routing, ThinEnvelope, VerifyError,
};
pub use crate::bindings::psa::billing::stripe::{
    Account, AccountLink, ApiFailure as StripeApiFailure, CardDecline, CheckoutSession, Customer,
    InvoiceStep, PaymentIntent, PortalSession, StripeError, Subscription, SubscriptionItem,
    SubscriptionItemParams, Transfer as StripeTransfer,
};
pub use crate::bindings::psa::billing::types::{FeeLine, Money, Movement};
use crate::bindings::{BillingPlugin, BillingPluginPre};

use crate::bindings::fee_rules::exports::psa::billing::fee_rules::FeeContext;
use crate::bindings::fee_rules::{FeeRulesPlugin, FeeRulesPluginPre};

/// How a custom fee-rules component's own refusal of a quote begins (as
/// opposed to the billing plugin refusing its breakdown).
pub const CUSTOM_RULES_DECLINED: &str = "custom fee rules refused the quote: ";

/// The default plugin, built from `plugin/component` by the build script.
pub static DEFAULT_PLUGIN: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/psa_billing_plugin.wasm"));

/// Bytes of each memory slot kept mapped between calls (see `Runtime::build`):
/// the guest's stack, data and the heap a call typically uses.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

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
    /// The call ran past its deadline (the plugin's own work, or the whole call).
    #[error("plugin call exceeded its {0:?} deadline")]
    Timeout(Duration),
    /// The plugin trapped (a panic, out of memory, an invalid operation).
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

mod deadlines;
mod engine;
mod exports;
mod instances;

use deadlines::*;
use engine::*;
use instances::*;

pub use engine::WasmKind;

/// The compiled plugin (and custom fee-rules component, if any) with its
/// instances, limits and Stripe access; cheap to clone.
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
        if WasmKind::of(wasm) == WasmKind::CoreModule {
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
    pub fn with_stripe(&self, api: Option<crate::stripe::StripeApi>) -> Runtime {
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

    /// Whether operations (and settlement jobs) can reach Stripe.
    pub fn has_stripe(&self) -> bool {
        matches!(self.inner.stripe, StripeAccess::Api(_))
    }

    /// The limits every call runs under.
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
                    let mut store =
                        Store::new(&self.inner.engine, CallState::new(limits.memory_bytes));
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

/// A plugin call: it owns its instance and store and hands the store back.
type CallFuture<R> = Pin<Box<dyn Future<Output = (wasmtime::Result<R>, Store<CallState>)> + Send>>;

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
        assert_eq!(WasmKind::of(DEFAULT_PLUGIN), WasmKind::Component);
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
