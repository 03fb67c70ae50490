//! The plugin's instances: exports found by index and type-checked once,
//! linked components with their idle instances between calls, and the
//! loading of a custom fee-rules component.
//!
//! Knows nothing about what the exports mean: `exports` gives them types
//! the rest of the host calls.

use super::*;

/// A function a component exports, found by index when the runtime is
/// built and type-checked once then, on a first instance. Bindgen's
/// `instantiate` looks up and type-checks every export of every interface
/// on every instantiation, which was most of the cost of a call; a call
/// needs one function, and its type cannot change between instances of
/// the same component.
pub(super) struct Export<P, T> {
    pub(super) index: ComponentExportIndex,
    _signature: PhantomData<fn(P) -> T>,
}

impl<P, T> Export<P, T>
where
    P: ComponentNamedList + Lower + Send + Sync,
    (T,): ComponentNamedList + Lift + Send + Sync + 'static,
{
    pub(super) fn find(component: &Component, interface: &str, name: &str) -> Result<Self> {
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
    pub(super) fn check(&self, store: &mut Store<CallState>, instance: &Instance) -> Result<()> {
        instance
            .get_typed_func::<P, (T,)>(&mut *store, self.index)
            .map(drop)
            .map_err(anyhow::Error::from)
    }

    pub(super) async fn call(
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
        pub(super) struct $name {
            $( $( pub(super) $field: Export<($($p,)*), $r>, )* )*
        }

        impl $name {
            pub(super) fn find(component: &Component) -> Result<Self> {
                Ok($name {
                    $( $( $field: Export::find(
                        component,
                        // The WIT package's version (wit/package.wit).
                        concat!("psa:billing/", $iface, "@0.1.0"),
                        $func,
                    )?, )* )*
                })
            }

            pub(super) fn check(&self, store: &mut Store<CallState>, instance: &Instance) -> Result<()> {
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
        register = "register"(String, String) -> Result<Vec<Effect>, String>;
        unregister = "unregister"(String) -> Result<(), String>;
        lookup = "lookup"(String) -> Result<Option<String>, String>;
        register_contractor = "register-contractor"(String, String, String) -> Result<(), String>;
        contractor_account = "contractor-account"(String, String) -> Result<Option<String>, String>;
    }
    "ledger" {
        post = "post"(String, String, String, String, Vec<Movement>) -> Result<Transaction, LedgerError>;
        balances = "balances"(String) -> Result<Vec<Balance>, LedgerError>;
        transactions = "transactions"(String, u64, u32) -> Result<Vec<Transaction>, LedgerError>;
    }
    "operations" {
        prove_owned = "prove-owned"(OwnershipClaim) -> Result<(), OperationError>;
        charge_invoice = "charge-invoice"(ChargeInvoiceRequest, Quote) -> Result<ChargedInvoice, OperationError>;
        refund = "refund"(Option<String>, RefundRequest) -> Result<Refunded, OperationError>;
        deposit = "deposit"(Option<String>, DepositRequest) -> Result<PaymentIntent, OperationError>;
        withdraw = "withdraw"(Option<String>, WithdrawRequest) -> Result<Withdrawal, OperationError>;
        set_license_count = "set-license-count"(LicenseCountRequest) -> Result<Subscription, OperationError>;
        settle_payment = "settle-payment"(SettleRequest) -> Result<Vec<Effect>, OperationError>;
        onboard_tenant = "onboard-tenant"(OnboardRequest) -> Result<Onboarded, OperationError>;
        account_status = "account-status"(AccountStatusRequest) -> Result<Account, OperationError>;
        manage_customer = "manage-customer"(CustomerRequest) -> Result<Customer, OperationError>;
        manage_subscription = "manage-subscription"(SubscriptionRequest) -> Result<Subscription, OperationError>;
        create_checkout = "create-checkout"(Option<String>, CheckoutRequest) -> Result<CheckoutSession, OperationError>;
        create_portal = "create-portal"(PortalRequest) -> Result<PortalSession, OperationError>;
        manage_invoice = "manage-invoice"(Option<String>, InvoiceRequest) -> Result<Option<Invoiced>, OperationError>;
    }
    "fees" {
        compute_quote = "compute-quote"(Option<String>, QuoteRequest) -> Result<Quote, FeeError>;
        check_breakdown = "check-breakdown"(QuoteRequest, Vec<FeeLine>) -> Result<Quote, FeeError>;
        check_rules = "check-rules"(String) -> Result<(), FeeError>;
        plan_escrow = "plan-escrow"(Option<String>, Money, EscrowParties) -> Result<EscrowPlan, FeeError>;
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
pub(super) struct Linked<E> {
    pub(super) pre: InstancePre<CallState>,
    pub(super) exports: E,
    pub(super) idle: std::sync::Mutex<Vec<Warm>>,
    /// Calls one instance serves before it is dropped (1: never reused).
    pub(super) calls_per_instance: u32,
}

impl<E> Linked<E> {
    pub(super) fn new(
        pre: InstancePre<CallState>,
        exports: E,
        calls_per_instance: u32,
    ) -> Linked<E> {
        Linked {
            pre,
            exports,
            idle: Default::default(),
            calls_per_instance,
        }
    }

    pub(super) fn take_idle(&self) -> Option<Warm> {
        self.idle.lock().expect("not poisoned").pop()
    }

    /// Keeps an instance whose call returned for the next one, unless it
    /// has served its share of calls.
    pub(super) fn put_idle(&self, warm: Warm) {
        if warm.calls < self.calls_per_instance {
            self.idle.lock().expect("not poisoned").push(warm);
        }
    }
}

/// An instance between calls, in its own store.
pub(super) struct Warm {
    pub(super) store: Store<CallState>,
    pub(super) instance: Instance,
    /// Calls it has served.
    pub(super) calls: u32,
}

/// Type-checks every export the host calls, on one instance of each
/// component, before the runtime is used: a component whose functions do
/// not have the WIT's types is refused here, as bindgen would. Instantiation
/// is async, and this may run inside a runtime, so it runs on a thread of
/// its own.
pub(super) fn check_exports(
    engine: &Engine,
    limits: &Limits,
    billing: &Linked<BillingExports>,
    fee_rules: Option<&Linked<FeeRulesExports>>,
) -> Result<()> {
    pub(super) async fn instance(
        engine: &Engine,
        limits: &Limits,
        pre: &InstancePre<CallState>,
    ) -> Result<(Store<CallState>, Instance)> {
        let mut store = Store::new(engine, CallState::new(limits.memory_bytes));
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

/// Compiles and links a custom fee-rules component on the plugin's engine.
pub(super) fn load_fee_rules(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&std::path::Path>,
    limits: &Limits,
) -> Result<Linked<FeeRulesExports>> {
    if WasmKind::of(wasm) == WasmKind::CoreModule {
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
