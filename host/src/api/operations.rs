//! Operations the application asks for (charge an invoice, refund, withdraw,
//! set a license count, onboard a tenant; customers, subscriptions,
//! sessions and invoices in [`super::billing`]): the plugin decides and
//! calls Stripe through the host's capability; the host commits what it
//! staged (operation records, ledger holds, registrations).
//! [`super::dispatch`] runs one by its name, after the tenant boundary.

use super::{ApiFailure, amount, once, run};
use crate::runtime::{
    Account, AccountStatusRequest, ChargeInvoiceRequest, ChargedInvoice, DepositRequest,
    LicenseCountRequest, OnboardRequest, Onboarded, OperationError, PaidWithdrawal, PaymentIntent,
    QuoteRequest, RefundRequest, Refunded, Runtime, Subscription, WithdrawRequest, Withdrawal,
};
use crate::storage::Db;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
) -> Result<ChargedInvoice, ApiFailure> {
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
) -> Result<Refunded, ApiFailure> {
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
) -> Result<PaidWithdrawal, ApiFailure> {
    let request = WithdrawRequest {
        amount: amount(runtime, &input.amount, &input.currency).await?,
        request_id: input.request_id,
        tenant: input.tenant,
        destination: input.destination,
        contractor: input.contractor,
    };
    let rules = rules.map(str::to_string);
    // Hold (committed), then transfer and settle.
    run(db, "withdraw", |staged| {
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
    .await
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
) -> Result<PaymentIntent, ApiFailure> {
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
    _rules: Option<&str>,
    input: LicenseCountInput,
) -> Result<Subscription, ApiFailure> {
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
    _rules: Option<&str>,
    input: AccountStatusInput,
) -> Result<Account, ApiFailure> {
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
    _rules: Option<&str>,
    input: OnboardInput,
) -> Result<Onboarded, ApiFailure> {
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
