//! Operations the application asks for (charge an invoice, refund, withdraw,
//! set a license count, onboard a tenant; customers, subscriptions,
//! sessions and invoices in [`super::billing`]): the plugin decides and
//! calls Stripe through the host's capability; the host commits what it
//! staged (operation records, ledger holds, registrations). [`dispatch`]
//! runs one by its name, for HTTP and the embedding API alike.
//!
//! A commit that loses an optimistic race is redone: the plugin's Stripe
//! writes carry idempotency keys derived from the request id, so the redo
//! gets Stripe's first answer instead of a second charge.

use crate::api::{ApiFailure, commit};
use crate::pipeline::Rounds;
use crate::runtime::{
    AccountStatusRequest, CallError, ChargeInvoiceRequest, DepositRequest, LicenseCountRequest,
    OnboardRequest, OperationError, OwnedObject, OwnershipClaim, QuoteRequest, RefundRequest,
    Runtime, WithdrawRequest, Withdrawal,
};
use crate::storage::Db;
use crate::storage::{StagedState, StateKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// How often an operation is redone after losing a commit race, and how
/// many steps a withdrawal may take.
const MAX_ROUNDS: u32 = 8;

/// Runs `step` and commits what it staged, until it is done. `step`
/// answers `Ok(None)` to be called again after the commit (a withdrawal's
/// hold), `Ok(Some(..))` when done. Staged writes are committed even when
/// the operation failed (a released hold), never half.
pub(super) async fn run<T, F, Fut>(db: &Db, label: &str, mut step: F) -> Result<T, ApiFailure>
where
    F: FnMut(StagedState) -> Fut,
    Fut: std::future::Future<Output = Step<T>>,
{
    let mut rounds = Rounds::new(MAX_ROUNDS);
    while rounds.next().await {
        let staged = StagedState::new(db.clone(), format!("operation:{label}"));
        let (result, staged) = step(staged).await?;
        if !commit(db, &staged).await? {
            continue;
        }
        match result {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => continue,
            Err(e) => return Err(ApiFailure::Refused(e)),
        }
    }
    Err(ApiFailure::Database(anyhow::anyhow!(
        "{label}: the state it reads kept changing under concurrent requests; try again"
    )))
}

/// Runs a one-step operation (`call` on a fresh stage, redone after a
/// lost commit race) and answers its result as JSON.
pub(super) async fn once<T, F, Fut>(db: &Db, label: &str, call: F) -> Result<Value, ApiFailure>
where
    T: Serialize,
    F: Fn(StagedState) -> Fut,
    Fut: std::future::Future<Output = Result<(Result<T, OperationError>, StagedState), CallError>>,
{
    let done = run(db, label, |staged| {
        let round = call(staged);
        async move {
            let (r, staged) = round.await?;
            Ok((r.map(Some), staged))
        }
    })
    .await?;
    Ok(json(&done))
}

/// One round of an operation: its result (`None`: call again) and what it staged.
pub(super) type Step<T> = Result<(Result<Option<T>, OperationError>, StagedState), CallError>;

pub(super) use super::answer_json as json;

/// Parses a decimal amount ("120.50") in its currency with the plugin.
pub(super) async fn amount(
    runtime: &Runtime,
    amount: &str,
    currency: &str,
) -> Result<crate::runtime::Money, ApiFailure> {
    runtime
        .parse_amount(amount, currency)
        .await?
        .map_err(|e| ApiFailure::Refused(OperationError::Fees(e)))
}

/// `POST /v1/operations/charge-invoice`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeInvoiceInput {
    /// Names the request: a repeat with the same id returns the recorded result and never reaches Stripe twice.
    pub request_id: String,
    /// The tenant (the application's own id for its customer organisation).
    pub tenant: String,
    /// The tenant's connected account (`acct_...`); none: a platform-only
    /// charge (no application fee).
    #[serde(default)]
    pub account: Option<String>,
    /// The application's invoice id, kept in the payment's metadata.
    pub invoice_id: String,
    /// Decimal, in `currency` ("120.50").
    pub amount: String,
    /// ISO currency code.
    pub currency: String,
    /// The payment method type, for the fee schedule (default `card`).
    #[serde(default = "card")]
    pub payment_method_type: String,
    /// The Stripe customer charged (`cus_...`).
    pub customer: Option<String>,
    /// The payment method charged (`pm_...`).
    pub payment_method: Option<String>,
    /// A destination charge instead of a direct one.
    #[serde(default)]
    pub destination: bool,
    /// The tenant's volume so far this month, decimal in `currency`, for fee
    /// rules that price by volume (as in `POST /v1/quote`).
    pub monthly_volume: Option<String>,
}

fn card() -> String {
    "card".into()
}

/// Charges an invoice at its quote: the application fee sent to Stripe is
/// the one `quote` gives for the same amount, tenant and payment method.
pub async fn charge_invoice(
    runtime: &Runtime,
    db: &Db,
    rules: Option<&str>,
    input: ChargeInvoiceInput,
) -> Result<Value, ApiFailure> {
    let monthly_volume = match &input.monthly_volume {
        Some(v) => Some(amount(runtime, v, &input.currency).await?.amount),
        None => None,
    };
    let request = ChargeInvoiceRequest {
        amount: amount(runtime, &input.amount, &input.currency).await?,
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        invoice_id: input.invoice_id,
        payment_method_type: input.payment_method_type,
        customer: input.customer,
        payment_method: input.payment_method,
        destination: input.destination,
    };
    // Priced once, the way `quote` prices (the custom fee-rules component
    // when one is loaded, else the rules file), before anything is staged:
    // the application fee sent to Stripe is the quote's.
    let fees = runtime
        .quote(
            rules.map(str::to_string),
            QuoteRequest {
                amount: request.amount.clone(),
                payment_method: request.payment_method_type.clone(),
                tenant: Some(request.tenant.clone()),
                international: false,
                converted: false,
                application_fee_percent: None,
                application_fee_fixed: None,
                monthly_volume,
            },
        )
        .await?
        .map_err(|e| ApiFailure::Refused(OperationError::Fees(e)))?;
    once(db, "charge-invoice", |staged| {
        runtime.charge_invoice(staged, request.clone(), fees.clone())
    })
    .await
}

/// `POST /v1/operations/refund`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundInput {
    /// Names the request: a repeat with the same id returns the recorded result and never reaches Stripe twice.
    pub request_id: String,
    /// The tenant (the application's own id for its customer organisation).
    pub tenant: String,
    /// The connected account of a direct charge.
    pub account: Option<String>,
    /// The payment refunded (`pi_...`).
    pub payment_intent: String,
    /// Decimal in `currency`; none: what is left.
    pub amount: Option<String>,
    /// ISO currency code of `amount` (default: the payment's).
    pub currency: Option<String>,
    /// Whether the application fee is refunded in proportion.
    #[serde(default)]
    pub refund_application_fee: bool,
}

/// Refunds a payment, partly or fully.
pub async fn refund(
    runtime: &Runtime,
    db: &Db,
    rules: Option<&str>,
    input: RefundInput,
) -> Result<Value, ApiFailure> {
    let minor = match (&input.amount, &input.currency) {
        (Some(a), Some(c)) => Some(amount(runtime, a, c).await?.amount),
        (None, _) => None,
        (Some(_), None) => {
            return Err(ApiFailure::Refused(OperationError::Invalid(
                "an amount needs its currency".into(),
            )));
        }
    };
    let request = RefundRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        payment_intent: input.payment_intent,
        amount: minor,
        refund_application_fee: input.refund_application_fee,
    };
    let rules = rules.map(str::to_string);
    once(db, "refund", |staged| {
        runtime.refund(staged, rules.clone(), request.clone())
    })
    .await
}

/// `POST /v1/operations/withdraw`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawInput {
    /// Names the request: a repeat with the same id returns the recorded result and never reaches Stripe twice.
    pub request_id: String,
    /// The tenant (the application's own id for its customer organisation).
    pub tenant: String,
    /// The contractor's connected account paid (`acct_...`).
    pub destination: String,
    /// The contractor (its ledger account `contractor:<id>`); it must have
    /// `destination` registered. None: the tenant's one `contractor` account.
    #[serde(default)]
    pub contractor: Option<String>,
    /// Decimal, in `currency`.
    pub amount: String,
    /// ISO currency code.
    pub currency: String,
}

/// Pays out a tenant's contractor balance: hold, transfer, settle or release.
pub async fn withdraw(
    runtime: &Runtime,
    db: &Db,
    rules: Option<&str>,
    input: WithdrawInput,
) -> Result<Value, ApiFailure> {
    let request = WithdrawRequest {
        amount: amount(runtime, &input.amount, &input.currency).await?,
        request_id: input.request_id,
        tenant: input.tenant,
        destination: input.destination,
        contractor: input.contractor,
    };
    let rules = rules.map(str::to_string);
    // Hold (committed), then transfer and settle.
    let paid = run(db, "withdraw", |staged| {
        let (rt, rules, request) = (runtime.clone(), rules.clone(), request.clone());
        async move {
            let (r, staged) = rt.withdraw(staged, rules, request).await?;
            let r = r.map(|w| match w {
                Withdrawal::Reserved => None,
                Withdrawal::Paid(p) => Some(p),
            });
            Ok((r, staged))
        }
    })
    .await?;
    Ok(json(&paid))
}

/// `POST /v1/operations/deposit`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositInput {
    /// Names the request: a repeat with the same id returns the recorded result and never reaches Stripe twice.
    pub request_id: String,
    /// The tenant (the marketplace) whose ledger keeps the wallet.
    pub tenant: String,
    /// The wallet credited (`wallet:<id>` in the ledger).
    pub wallet: String,
    /// Decimal, in `currency`.
    pub amount: String,
    /// ISO currency code.
    pub currency: String,
    /// Stripe customer paying (`cus_...`).
    pub customer: Option<String>,
    /// A saved payment method: the intent is confirmed at once.
    pub payment_method: Option<String>,
}

/// A wallet deposit: the rules' deposit limits, then a payment intent on
/// the platform whose success credits the wallet.
pub async fn deposit(
    runtime: &Runtime,
    db: &Db,
    rules: Option<&str>,
    input: DepositInput,
) -> Result<Value, ApiFailure> {
    let request = DepositRequest {
        amount: amount(runtime, &input.amount, &input.currency).await?,
        request_id: input.request_id,
        tenant: input.tenant,
        wallet: input.wallet,
        customer: input.customer,
        payment_method: input.payment_method,
    };
    let rules = rules.map(str::to_string);
    once(db, "deposit", |staged| {
        runtime.deposit(staged, rules.clone(), request.clone())
    })
    .await
}

/// `POST /v1/operations/set-license-count`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenseCountInput {
    /// Names the request: a repeat with the same id returns the recorded result and never reaches Stripe twice.
    pub request_id: String,
    /// The tenant (the application's own id for its customer organisation).
    pub tenant: String,
    /// The connected account the subscription lives on, if not the platform.
    pub account: Option<String>,
    /// The subscription (`sub_...`).
    pub subscription: String,
    /// The license price (`price_...`): its item alone is set. None: the
    /// subscription must have exactly one item.
    #[serde(default)]
    pub price: Option<String>,
    /// The license count to set.
    pub count: u64,
    /// create_prorations, always_invoice or none (Stripe's default when absent).
    #[serde(default)]
    pub proration_behavior: Option<String>,
}

/// Sets a subscription's license count (its item's quantity).
pub async fn set_license_count(
    runtime: &Runtime,
    db: &Db,
    input: LicenseCountInput,
) -> Result<Value, ApiFailure> {
    let request = LicenseCountRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        subscription: input.subscription,
        price: input.price,
        count: input.count,
        proration_behavior: input.proration_behavior,
    };
    once(db, "set-license-count", |staged| {
        runtime.set_license_count(staged, request.clone())
    })
    .await
}

/// `POST /v1/operations/onboard-tenant`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardInput {
    /// Names the request: a repeat with the same id returns the recorded result and never reaches Stripe twice.
    pub request_id: String,
    /// The tenant (the application's own id for its customer organisation).
    pub tenant: String,
    /// The account's country (ISO 3166-1 alpha-2).
    pub country: String,
    /// The account holder's email, if known.
    pub email: Option<String>,
    /// Where Stripe sends the user when the link expired.
    pub refresh_url: String,
    /// Where Stripe sends the user when onboarding is done.
    pub return_url: String,
}

/// `POST /v1/operations/account-status`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountStatusInput {
    /// The tenant.
    pub tenant: String,
    /// The account; none: the one `onboard-tenant` made for the tenant.
    #[serde(default)]
    pub account: Option<String>,
}

/// A tenant's Connect account as Stripe has it now (enabled, requirements due).
pub async fn account_status(
    runtime: &Runtime,
    db: &Db,
    input: AccountStatusInput,
) -> Result<Value, ApiFailure> {
    let request = AccountStatusRequest {
        tenant: input.tenant,
        account: input.account,
    };
    once(db, "account-status", |staged| {
        runtime.account_status(staged, request.clone())
    })
    .await
}

/// Creates and registers a tenant's connected account; returns the onboarding link.
pub async fn onboard_tenant(
    runtime: &Runtime,
    db: &Db,
    input: OnboardInput,
) -> Result<Value, ApiFailure> {
    let request = OnboardRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        country: input.country,
        email: input.email,
        refresh_url: input.refresh_url,
        return_url: input.return_url,
    };
    once(db, "onboard-tenant", |staged| {
        runtime.onboard_tenant(staged, request.clone())
    })
    .await
}

/// What an input field of an operation names, for the tenant boundary:
/// each is proven the request's tenant's (by the plugin's `prove-owned`)
/// before the operation runs, so before anything is written to Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    /// A connected account (`acct_...`): registered to the tenant. The
    /// other objects of the request are read on it.
    Account,
    /// A payment intent: the owner recorded for its payment, else its metadata.
    PaymentIntent,
    /// A customer: its recorded owner, else its metadata.
    Customer,
    /// A customer to take on: no other tenant's.
    AdoptedCustomer,
    /// A saved payment method: attached to a customer the tenant owns.
    PaymentMethod,
    /// A payment method to attach: attached to no customer, or to the tenant's.
    AttachablePaymentMethod,
    /// A subscription: its recorded owner, else its metadata.
    Subscription,
    /// An invoice: its recorded owner, else its metadata.
    Invoice,
    /// A contractor: registered for the tenant with a payout account.
    Contractor,
    /// A payout destination: the tenant's account or one of its contractors'.
    Payee,
}

/// One operation: its name and the top-level fields of its input that name
/// objects it acts on. Fields that name nothing outside the tenant (a
/// wallet, an external id: both are kept per tenant) are not listed.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// The name in `POST /v1/operations/{name}`.
    pub name: &'static str,
    /// The fields naming objects that must be the tenant's, and what they name.
    pub owns: &'static [(&'static str, Owned)],
}

const fn op(name: &'static str, owns: &'static [(&'static str, Owned)]) -> Operation {
    Operation { name, owns }
}

use Owned as O;
const ACCOUNT: (&str, Owned) = ("account", O::Account);
const CUSTOMER: (&str, Owned) = ("customer", O::Customer);
const SUBSCRIPTION: (&str, Owned) = ("subscription", O::Subscription);
const INVOICE: (&str, Owned) = ("invoice", O::Invoice);

/// Every operation [`dispatch`] runs, with what it acts on.
pub const OPERATIONS: [Operation; 21] = [
    op(
        "charge-invoice",
        &[ACCOUNT, CUSTOMER, ("payment_method", O::PaymentMethod)],
    ),
    op("refund", &[ACCOUNT, ("payment_intent", O::PaymentIntent)]),
    op("deposit", &[CUSTOMER, ("payment_method", O::PaymentMethod)]),
    op(
        "withdraw",
        &[("contractor", O::Contractor), ("destination", O::Payee)],
    ),
    op("set-license-count", &[ACCOUNT, SUBSCRIPTION]),
    op("onboard-tenant", &[]),
    op("account-status", &[ACCOUNT]),
    op("upsert-customer", &[ACCOUNT, ("adopt", O::AdoptedCustomer)]),
    op("find-customer", &[ACCOUNT]),
    op(
        "attach-payment-method",
        &[ACCOUNT, ("payment_method", O::AttachablePaymentMethod)],
    ),
    op(
        "create-subscription",
        &[
            ACCOUNT,
            CUSTOMER,
            ("default_payment_method", O::PaymentMethod),
        ],
    ),
    op("change-subscription-plan", &[ACCOUNT, SUBSCRIPTION]),
    op("cancel-subscription", &[ACCOUNT, SUBSCRIPTION]),
    op("resume-subscription", &[ACCOUNT, SUBSCRIPTION]),
    op("create-checkout-session", &[ACCOUNT, CUSTOMER]),
    op("create-portal-session", &[ACCOUNT, CUSTOMER]),
    op("create-invoice", &[ACCOUNT, CUSTOMER]),
    op("finalize-invoice", &[ACCOUNT, INVOICE]),
    op("send-invoice", &[ACCOUNT, INVOICE]),
    op("void-invoice", &[ACCOUNT, INVOICE]),
    op("mark-invoice-uncollectible", &[ACCOUNT, INVOICE]),
];

/// Every operation's name, in [`OPERATIONS`]' order.
pub const NAMES: [&str; OPERATIONS.len()] = {
    let mut names = [""; OPERATIONS.len()];
    let mut i = 0;
    while i < OPERATIONS.len() {
        names[i] = OPERATIONS[i].name;
        i += 1;
    }
    names
};

/// The tenant boundary: the claim `input` makes for `operation` (its
/// tenant, its account, the objects its declared fields name), proven by
/// the plugin. Runs before the operation, so a refusal (`not-owned`)
/// happens before anything is written to Stripe.
async fn prove(
    runtime: &Runtime,
    db: &Db,
    operation: &Operation,
    input: &Value,
) -> Result<(), ApiFailure> {
    let text = |field: &str| input.get(field).and_then(Value::as_str).map(str::to_string);
    let Some(tenant) = text("tenant") else {
        // Every operation's input has a required tenant: serde refused it already.
        return Err(ApiFailure::Invalid("an operation needs its tenant".into()));
    };
    let mut account = None;
    let mut objects = Vec::new();
    for (field, kind) in operation.owns {
        let Some(id) = text(field) else { continue };
        objects.push(match kind {
            Owned::Account => {
                account = Some(id);
                continue;
            }
            Owned::PaymentIntent => OwnedObject::PaymentIntent(id),
            Owned::Customer => OwnedObject::Customer(id),
            Owned::AdoptedCustomer => OwnedObject::AdoptedCustomer(id),
            Owned::PaymentMethod => OwnedObject::PaymentMethod(id),
            Owned::AttachablePaymentMethod => OwnedObject::AttachablePaymentMethod(id),
            Owned::Subscription => OwnedObject::Subscription(id),
            Owned::Invoice => OwnedObject::Invoice(id),
            Owned::Contractor => OwnedObject::Contractor(id),
            Owned::Payee => OwnedObject::Payee(id),
        });
    }
    let claim = OwnershipClaim {
        tenant,
        account,
        objects,
    };
    if claim.account.is_none() && claim.objects.is_empty() {
        return Ok(());
    }
    // Reads only: what the call staged is dropped.
    let staged = StagedState::new(db.clone(), format!("operation:{}:prove", operation.name));
    let (proven, _) = runtime.prove_owned(staged, claim).await?;
    proven.map_err(ApiFailure::Refused)
}

/// Each write request's input, by operation, tenant and request id.
const REQUEST_INPUTS: &str = "request_inputs";

/// Binds a request id to its input: the first input given with
/// `(operation, tenant, request_id)` that got past validation is kept, and
/// a later one that differs is refused (409 `conflict`, naming the fields
/// that differ) instead of silently answering the first request's result,
/// or, for a withdrawal retried after a failure, paying whoever the retry
/// names. An absent field and `null` are the same. Reads (no
/// `request_id`) bind nothing. Answers the key to bind once the operation
/// has run, when none is bound yet.
async fn check_binding(
    db: &Db,
    operation: &Operation,
    input: &Value,
) -> Result<Option<StateKey>, ApiFailure> {
    let text = |field: &str| input.get(field).and_then(Value::as_str);
    let (Some(tenant), Some(request_id)) = (text("tenant"), text("request_id")) else {
        return Ok(None);
    };
    let key = (
        REQUEST_INPUTS.to_string(),
        psa_billing_core::state::key(&[operation.name, tenant, request_id]),
    );
    let Some((first, _version)) = db.read_state(&key).await.map_err(ApiFailure::Database)? else {
        return Ok(Some(key));
    };
    let first: Value = serde_json::from_str(&first)
        .map_err(|e| ApiFailure::Database(anyhow::anyhow!("a recorded request input: {e}")))?;
    let differ = differing_fields(&first, input);
    if differ.is_empty() {
        return Ok(None);
    }
    Err(ApiFailure::Conflict(format!(
        "request_id {request_id:?} of {} was first used with other values of: {}; \
         a new request needs a new request_id",
        operation.name,
        differ.join(", ")
    )))
}

/// Binds `key` to `input` after the operation ran, unless it was refused
/// as malformed or not the tenant's (nothing was done: the id stays free
/// for the corrected request). A concurrent first binding wins.
async fn bind(
    db: &Db,
    key: StateKey,
    input: &Value,
    result: &Result<Value, ApiFailure>,
) -> Result<(), ApiFailure> {
    let malformed = matches!(
        result,
        Err(ApiFailure::Invalid(_)
            | ApiFailure::Refused(
                OperationError::Invalid(_) | OperationError::Fees(_) | OperationError::NotOwned(_)
            ))
    );
    if malformed {
        return Ok(());
    }
    let mut staged = StagedState::new(db.clone(), "operation:bind".to_string());
    if staged
        .read(key.clone())
        .await
        .map_err(ApiFailure::Database)?
        .is_none()
    {
        staged.write(key, Some(input.to_string()));
        commit(db, &staged).await?;
    }
    Ok(())
}

/// The top-level fields whose values differ (absent and `null` alike).
fn differing_fields(first: &Value, now: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        first.as_object().unwrap_or(&empty),
        now.as_object().unwrap_or(&empty),
    );
    let mut fields: Vec<&String> = a.keys().chain(b.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| a.get(*f).unwrap_or(&Value::Null) != b.get(*f).unwrap_or(&Value::Null))
        .cloned()
        .collect()
}

/// Why [`dispatch`] ran nothing.
#[derive(Debug)]
pub enum Dispatch {
    /// No operation has that name.
    Unknown(String),
    /// The input does not fit the operation (serde's reason).
    BadInput(String),
}

/// Runs the operation `name` on its JSON input: `Ok(..)` is the
/// operation's own result.
pub async fn dispatch(
    runtime: &Runtime,
    db: &Db,
    rules: Option<&str>,
    name: &str,
    input: Value,
) -> Result<Result<Value, ApiFailure>, Dispatch> {
    use super::billing as b;
    use crate::runtime::InvoiceStep;
    // `$op(runtime, db, [arg,] input)` with the input parsed as its type.
    let Some(operation) = OPERATIONS.iter().find(|o| o.name == name) else {
        return Err(Dispatch::Unknown(format!(
            "no operation {name:?}; there are {}",
            NAMES.join(", ")
        )));
    };
    // The input parsed as its type (a bad input is refused first), then
    // the tenant boundary, then the request id bound to its input, then
    // the operation.
    macro_rules! run_op {
        ($op:path $(, $arg:expr)?) => {
            match serde_json::from_value(input.clone()) {
                Ok(i) => Ok(match prove(runtime, db, operation, &input).await {
                    Ok(()) => match check_binding(db, operation, &input).await {
                        Ok(unbound) => {
                            let result = $op(runtime, db, $($arg,)? i).await;
                            match unbound {
                                Some(key) => bind(db, key, &input, &result).await.and(result),
                                None => result,
                            }
                        }
                        Err(refused) => Err(refused),
                    },
                    Err(refused) => Err(refused),
                }),
                Err(e) => Err(Dispatch::BadInput(e.to_string())),
            }
        };
    }
    match name {
        "charge-invoice" => run_op!(charge_invoice, rules),
        "refund" => run_op!(refund, rules),
        "deposit" => run_op!(deposit, rules),
        "withdraw" => run_op!(withdraw, rules),
        "set-license-count" => run_op!(set_license_count),
        "onboard-tenant" => run_op!(onboard_tenant),
        "account-status" => run_op!(account_status),
        "upsert-customer" => run_op!(b::upsert_customer),
        "find-customer" => run_op!(b::find_customer),
        "attach-payment-method" => run_op!(b::attach_payment_method),
        "create-subscription" => run_op!(b::create_subscription),
        "change-subscription-plan" => run_op!(b::change_subscription_plan),
        "cancel-subscription" => run_op!(b::cancel_subscription),
        "resume-subscription" => run_op!(b::resume_subscription),
        "create-checkout-session" => run_op!(b::create_checkout_session, rules),
        "create-portal-session" => run_op!(b::create_portal_session),
        "create-invoice" => run_op!(b::create_invoice, rules),
        "finalize-invoice" => run_op!(b::advance_invoice, InvoiceStep::Finalize),
        "send-invoice" => run_op!(b::advance_invoice, InvoiceStep::Send),
        "void-invoice" => run_op!(b::advance_invoice, InvoiceStep::Void),
        "mark-invoice-uncollectible" => {
            run_op!(b::advance_invoice, InvoiceStep::MarkUncollectible)
        }
        _ => unreachable!("{name} is listed in OPERATIONS but not dispatched"),
    }
}
