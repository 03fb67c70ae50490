//! The plugin's exports as typed methods of [`Runtime`]: webhook
//! verification and handling, the tenant registry, the ledger, operations
//! and quotes. Each is one call through `Runtime::call`.
//!
//! Knows nothing about instances or deadlines (`instances`, `deadlines`).

use super::*;

impl Runtime {
    /// Checks a delivery's signature and parses its envelope (`webhooks.verify`).
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
    pub fn stripe_api(&self) -> Option<&crate::stripe::StripeApi> {
        match &self.inner.stripe {
            StripeAccess::Api(api) => Some(api),
            _ => None,
        }
    }

    /// Parses an envelope without a signature check (replays of stored events).
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

    /// Registers a connected account to a tenant (staged; the caller
    /// commits); the effects of what it re-routed.
    pub async fn register_tenant(
        &self,
        staged: StagedState,
        account: String,
        tenant: String,
    ) -> Result<(Result<Vec<Effect>, String>, StagedState), CallError> {
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

    /// Registers where a tenant's contractor is paid (staged; the caller commits).
    pub async fn register_contractor(
        &self,
        staged: StagedState,
        tenant: String,
        contractor: String,
        account: String,
    ) -> Result<(Result<(), String>, StagedState), CallError> {
        storage_call!(
            self,
            staged,
            register_contractor(tenant, contractor, account)
        )
    }

    /// The account a tenant's contractor is paid to (reads only).
    pub async fn contractor_account(
        &self,
        staged: StagedState,
        tenant: String,
        contractor: String,
    ) -> Result<Result<Option<String>, String>, CallError> {
        let (r, _) = storage_call!(self, staged, contractor_account(tenant, contractor))?;
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

    /// Charges an invoice at the price of `fees`, a quote for it (staged;
    /// the caller commits).
    pub async fn charge_invoice(
        &self,
        staged: StagedState,
        request: ChargeInvoiceRequest,
        fees: Quote,
    ) -> Result<(Result<ChargedInvoice, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, charge_invoice(request, fees))
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

    /// A wallet deposit's payment intent (staged; the caller commits).
    pub async fn deposit(
        &self,
        staged: StagedState,
        rules: Option<String>,
        request: DepositRequest,
    ) -> Result<(Result<PaymentIntent, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, deposit(rules, request))
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

    /// Proves that a request's account and the objects it names are its
    /// tenant's (reads only; `not-owned` names the first that is not).
    pub async fn prove_owned(
        &self,
        staged: StagedState,
        claim: OwnershipClaim,
    ) -> Result<(Result<(), OperationError>, StagedState), CallError> {
        operation_call!(self, staged, prove_owned(claim))
    }

    /// Sets a subscription's license count.
    pub async fn set_license_count(
        &self,
        staged: StagedState,
        request: LicenseCountRequest,
    ) -> Result<(Result<Subscription, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, set_license_count(request))
    }

    /// Settles a succeeded payment: reads its balance transaction through
    /// Stripe and posts Stripe's fee (staged; the caller commits with the
    /// returned `payment.settled` effect).
    pub async fn settle_payment(
        &self,
        staged: StagedState,
        request: SettleRequest,
    ) -> Result<(Result<Vec<Effect>, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, settle_payment(request))
    }

    /// A tenant's Connect account as Stripe has it (reads only).
    pub async fn account_status(
        &self,
        staged: StagedState,
        request: AccountStatusRequest,
    ) -> Result<(Result<Account, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, account_status(request))
    }

    /// A tenant's customer: upsert, find, attach a payment method (staged:
    /// its record; the caller commits).
    pub async fn manage_customer(
        &self,
        staged: StagedState,
        request: CustomerRequest,
    ) -> Result<(Result<Customer, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, manage_customer(request))
    }

    /// A subscription: create, change plan, cancel, resume.
    pub async fn manage_subscription(
        &self,
        staged: StagedState,
        request: SubscriptionRequest,
    ) -> Result<(Result<Subscription, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, manage_subscription(request))
    }

    /// A Checkout Session: a license purchase or a wallet deposit.
    pub async fn create_checkout(
        &self,
        staged: StagedState,
        rules: Option<String>,
        request: CheckoutRequest,
    ) -> Result<(Result<CheckoutSession, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, create_checkout(rules, request))
    }

    /// A billing portal session.
    pub async fn create_portal(
        &self,
        staged: StagedState,
        request: PortalRequest,
    ) -> Result<(Result<PortalSession, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, create_portal(request))
    }

    /// One step of an invoice request (`None`: commit and call again).
    pub async fn manage_invoice(
        &self,
        staged: StagedState,
        rules: Option<String>,
        request: InvoiceRequest,
    ) -> Result<(Result<Option<Invoiced>, OperationError>, StagedState), CallError> {
        operation_call!(self, staged, manage_invoice(rules, request))
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

    /// Plans an escrow's stages between `parties` (`fees.plan-escrow`).
    pub async fn plan_escrow(
        &self,
        rules: Option<String>,
        price: Money,
        parties: EscrowParties,
    ) -> Result<Result<EscrowPlan, FeeError>, CallError> {
        plugin_call!(self, plan_escrow(rules, price, parties))
    }

    /// Checks a wallet movement against its limits (`fees.check-wallet-move`).
    pub async fn check_wallet_move(
        &self,
        rules: Option<String>,
        kind: WalletMove,
        amount: Money,
        available: i64,
    ) -> Result<Result<(), FeeError>, CallError> {
        plugin_call!(self, check_wallet_move(rules, kind, amount, available))
    }

    /// An invoice's totals: lines, discounts, taxes (`fees.total-invoice`).
    pub async fn total_invoice(
        &self,
        rules: Option<String>,
        currency: String,
        lines: Vec<InvoiceLine>,
    ) -> Result<Result<InvoiceTotals, FeeError>, CallError> {
        plugin_call!(self, total_invoice(rules, currency, lines))
    }

    /// The proration of a seat change (`fees.prorate-seats`).
    pub async fn prorate_seats(
        &self,
        rules: Option<String>,
        change: SeatChange,
    ) -> Result<Result<Proration, FeeError>, CallError> {
        plugin_call!(self, prorate_seats(rules, change))
    }

    /// A refund's split between tenant and platform (`fees.split-refund`).
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

    /// A decimal amount in minor units of its currency (`fees.parse-amount`).
    pub async fn parse_amount(
        &self,
        amount: &str,
        currency: &str,
    ) -> Result<Result<Money, FeeError>, CallError> {
        let (amount, currency) = (amount.to_string(), currency.to_string());
        plugin_call!(self, parse_amount(amount, currency))
    }
}
