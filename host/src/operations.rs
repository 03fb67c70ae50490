//! Operations the application asks for (charge an invoice, refund, withdraw,
//! set a license count, onboard a tenant): the plugin decides and calls
//! Stripe through the host's capability; the host commits what it staged
//! (operation records, ledger holds, registrations).
//!
//! A commit that loses an optimistic race is redone: the plugin's Stripe
//! writes carry idempotency keys derived from the request id, so the redo
//! gets Stripe's first answer instead of a second charge.

use crate::StagedState;
use crate::db::{CommitOutcome, Db};
use crate::ledger::ApiFailure;
use crate::runtime::{
    CallError, ChargeInvoiceRequest, LicenseCountRequest, OnboardRequest, OperationError,
    RefundRequest, Runtime, StripeError, WithdrawRequest, Withdrawal,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OperationFailure {
    /// The plugin or Stripe refused it.
    #[error("{}", describe(.0))]
    Refused(OperationError),
    #[error(transparent)]
    Host(#[from] ApiFailure),
}

impl From<CallError> for OperationFailure {
    fn from(e: CallError) -> Self {
        OperationFailure::Host(ApiFailure::Plugin(e))
    }
}

/// A short, stable code and a sentence for an operation error.
pub fn describe(e: &OperationError) -> String {
    match e {
        OperationError::Invalid(m) | OperationError::Refused(m) | OperationError::Storage(m) => {
            m.clone()
        }
        OperationError::Fees(f) => crate::quoting::fee_error_text(f.clone()),
        OperationError::Stripe(s) => describe_stripe(s),
    }
}

/// A sentence for a Stripe error.
pub fn describe_stripe(e: &StripeError) -> String {
    match e {
        StripeError::CardDeclined(d) => format!(
            "card declined ({}{}): {}",
            d.code,
            d.decline_code
                .as_ref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default(),
            d.message
        ),
        StripeError::InvalidRequest(r) => match &r.param {
            Some(p) => format!("Stripe refused the request ({p}): {}", r.message),
            None => format!("Stripe refused the request: {}", r.message),
        },
        StripeError::Authentication(m) => format!("Stripe refused the secret key: {m}"),
        StripeError::RateLimited(m) => format!("Stripe rate limit, retries exhausted: {m}"),
        StripeError::Unreachable(m) => format!("Stripe unreachable, retries exhausted: {m}"),
        StripeError::Denied(m) => m.clone(),
        StripeError::Api(a) => format!("Stripe error (HTTP {}): {}", a.status, a.message),
    }
}

/// How often an operation is redone after losing a commit race, and how
/// many steps a withdrawal may take.
const MAX_ROUNDS: usize = 8;

/// Runs `step` and commits what it staged, until it is done. `step`
/// answers `Ok(None)` to be called again after the commit (a withdrawal's
/// hold), `Ok(Some(..))` when done. Staged writes are committed even when
/// the operation failed (a released hold), never half.
async fn run<T, F, Fut>(db: &Db, label: &str, mut step: F) -> Result<T, OperationFailure>
where
    F: FnMut(StagedState) -> Fut,
    Fut: std::future::Future<Output = Step<T>>,
{
    for _ in 0..MAX_ROUNDS {
        let staged = StagedState::new(db.clone(), format!("operation:{label}"));
        let (result, staged) = step(staged).await?;
        let outcome = db
            .commit_state(&staged)
            .await
            .map_err(ApiFailure::Database)?;
        if matches!(outcome, CommitOutcome::Conflict) {
            continue;
        }
        match result {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => continue,
            Err(e) => return Err(OperationFailure::Refused(e)),
        }
    }
    Err(OperationFailure::Host(ApiFailure::Database(
        anyhow::anyhow!(
            "{label}: the state it reads kept changing under concurrent requests; try again"
        ),
    )))
}

/// One round of an operation: its result (`None`: call again) and what it staged.
type Step<T> = Result<(Result<Option<T>, OperationError>, StagedState), CallError>;

fn json<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).expect("WIT records serialize")
}

/// Parses a decimal amount ("120.50") in its currency with the plugin.
async fn amount(
    runtime: &Runtime,
    amount: &str,
    currency: &str,
) -> Result<crate::runtime::Money, OperationFailure> {
    runtime
        .parse_amount(amount, currency)
        .await?
        .map_err(|e| OperationFailure::Refused(OperationError::Fees(e)))
}

/// `POST /v1/operations/charge-invoice`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeInvoiceInput {
    pub request_id: String,
    pub tenant: String,
    pub account: String,
    pub invoice_id: String,
    /// Decimal, in `currency` ("120.50").
    pub amount: String,
    pub currency: String,
    #[serde(default = "card")]
    pub payment_method_type: String,
    pub customer: Option<String>,
    pub payment_method: Option<String>,
    /// A destination charge instead of a direct one.
    #[serde(default)]
    pub destination: bool,
}

fn card() -> String {
    "card".into()
}

pub async fn charge_invoice(
    runtime: &Runtime,
    db: &Db,
    rules: Option<&str>,
    input: ChargeInvoiceInput,
) -> Result<Value, OperationFailure> {
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
    let rules = rules.map(str::to_string);
    let done = run(db, "charge-invoice", |staged| {
        let (rt, rules, request) = (runtime.clone(), rules.clone(), request.clone());
        async move {
            let (r, staged) = rt.charge_invoice(staged, rules, request).await?;
            Ok((r.map(Some), staged))
        }
    })
    .await?;
    Ok(json(&done))
}

/// `POST /v1/operations/refund`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundInput {
    pub request_id: String,
    pub tenant: String,
    pub account: Option<String>,
    pub payment_intent: String,
    /// Decimal in `currency`; none: what is left.
    pub amount: Option<String>,
    pub currency: Option<String>,
    #[serde(default)]
    pub refund_application_fee: bool,
}

pub async fn refund(
    runtime: &Runtime,
    db: &Db,
    rules: Option<&str>,
    input: RefundInput,
) -> Result<Value, OperationFailure> {
    let minor = match (&input.amount, &input.currency) {
        (Some(a), Some(c)) => Some(amount(runtime, a, c).await?.amount),
        (None, _) => None,
        (Some(_), None) => {
            return Err(OperationFailure::Refused(OperationError::Invalid(
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
    let done = run(db, "refund", |staged| {
        let (rt, rules, request) = (runtime.clone(), rules.clone(), request.clone());
        async move {
            let (r, staged) = rt.refund(staged, rules, request).await?;
            Ok((r.map(Some), staged))
        }
    })
    .await?;
    Ok(json(&done))
}

/// `POST /v1/operations/withdraw`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawInput {
    pub request_id: String,
    pub tenant: String,
    pub destination: String,
    pub amount: String,
    pub currency: String,
}

pub async fn withdraw(
    runtime: &Runtime,
    db: &Db,
    rules: Option<&str>,
    input: WithdrawInput,
) -> Result<Value, OperationFailure> {
    let request = WithdrawRequest {
        amount: amount(runtime, &input.amount, &input.currency).await?,
        request_id: input.request_id,
        tenant: input.tenant,
        destination: input.destination,
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

/// `POST /v1/operations/set-license-count`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseCountInput {
    pub request_id: String,
    pub tenant: String,
    pub account: Option<String>,
    pub subscription: String,
    pub count: u64,
}

pub async fn set_license_count(
    runtime: &Runtime,
    db: &Db,
    input: LicenseCountInput,
) -> Result<Value, OperationFailure> {
    let request = LicenseCountRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        subscription: input.subscription,
        count: input.count,
    };
    let done = run(db, "set-license-count", |staged| {
        let (rt, request) = (runtime.clone(), request.clone());
        async move {
            let (r, staged) = rt.set_license_count(staged, request).await?;
            Ok((r.map(Some), staged))
        }
    })
    .await?;
    Ok(json(&done))
}

/// `POST /v1/operations/onboard-tenant`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardInput {
    pub request_id: String,
    pub tenant: String,
    pub country: String,
    pub email: Option<String>,
    pub refresh_url: String,
    pub return_url: String,
}

pub async fn onboard_tenant(
    runtime: &Runtime,
    db: &Db,
    input: OnboardInput,
) -> Result<Value, OperationFailure> {
    let request = OnboardRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        country: input.country,
        email: input.email,
        refresh_url: input.refresh_url,
        return_url: input.return_url,
    };
    let done = run(db, "onboard-tenant", |staged| {
        let (rt, request) = (runtime.clone(), request.clone());
        async move {
            let (r, staged) = rt.onboard_tenant(staged, request).await?;
            Ok((r.map(Some), staged))
        }
    })
    .await?;
    Ok(json(&done))
}
