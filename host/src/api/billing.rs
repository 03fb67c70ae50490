//! The Stripe billing objects of a tenant's customers, as the application
//! asks for them: customers (upsert, find, attach a payment method),
//! subscriptions (create, change plan, cancel, resume), Checkout and
//! billing portal sessions, and invoices (create from lines, finalize,
//! send, void, mark uncollectible). Each input maps onto one plugin
//! export; the plugin decides and calls Stripe, and what it staged is
//! committed by [`super::run`].
//!
//! Knows nothing about HTTP: the router and the embedding API call
//! [`super::dispatch::dispatch`].

use super::ApiFailure;
use super::quotes::{LineInput, invoice_lines};
use super::{amount, once, run};
use crate::runtime::{
    CheckoutRequest, CheckoutSession, Customer, CustomerAction, CustomerFields, CustomerRequest,
    InvoiceAction, InvoiceAdvance, InvoiceRequest, InvoiceStep, Invoiced, Money, NewInvoice,
    NewSubscription, OperationError, PaymentMethodAttachment, PlanChange, PortalRequest,
    PortalSession, Purchase, QuoteRequest, Runtime, StripeInvoiceLine, Subscription,
    SubscriptionAction, SubscriptionCancel, SubscriptionItemParams, SubscriptionRequest,
    WalletDeposit,
};
use crate::storage::{Db, StagedState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The request id a lookup runs under (it writes nothing at Stripe).
const LOOKUP: &str = "lookup";

fn pairs(m: BTreeMap<String, String>) -> Vec<(String, String)> {
    m.into_iter().collect()
}

/// Runs one customer request and commits its record.
async fn customer(rt: &Runtime, db: &Db, request: CustomerRequest) -> Result<Customer, ApiFailure> {
    once(db, "customer", |staged| {
        rt.manage_customer(staged, request.clone())
    })
    .await
}

/// `POST /v1/operations/upsert-customer`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertCustomerInput {
    /// Names the request (Stripe idempotency).
    pub request_id: String,
    /// The tenant whose customer it is.
    pub tenant: String,
    /// The connected account it lives on; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The application's id for the customer (contact or company id).
    pub external_id: String,
    /// The customer's email.
    #[serde(default)]
    pub email: Option<String>,
    /// The customer's name.
    #[serde(default)]
    pub name: Option<String>,
    /// More metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// An existing customer (`cus_...`) to take on for this external id.
    #[serde(default)]
    pub adopt: Option<String>,
}

/// Creates the tenant's customer for an external id, or updates it.
pub async fn upsert_customer(
    rt: &Runtime,
    db: &Db,
    _rules: Option<&str>,
    input: UpsertCustomerInput,
) -> Result<Customer, ApiFailure> {
    let request = CustomerRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        external_id: input.external_id,
        action: CustomerAction::Upsert(CustomerFields {
            email: input.email,
            name: input.name,
            metadata: pairs(input.metadata),
            adopt: input.adopt,
        }),
    };
    customer(rt, db, request).await
}

/// `POST /v1/operations/find-customer`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindCustomerInput {
    /// The tenant.
    pub tenant: String,
    /// The connected account; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The application's id for the customer.
    pub external_id: String,
}

/// The tenant's customer for an external id (409 `refused` when none).
pub async fn find_customer(
    rt: &Runtime,
    db: &Db,
    _rules: Option<&str>,
    input: FindCustomerInput,
) -> Result<Customer, ApiFailure> {
    let request = CustomerRequest {
        request_id: LOOKUP.into(),
        tenant: input.tenant,
        account: input.account,
        external_id: input.external_id,
        action: CustomerAction::Find,
    };
    customer(rt, db, request).await
}

/// `POST /v1/operations/attach-payment-method`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachPaymentMethodInput {
    /// Names the request (Stripe idempotency).
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The connected account; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The application's id for the customer.
    pub external_id: String,
    /// The payment method (`pm_...`).
    pub payment_method: String,
    /// Make it the default for invoices and subscriptions.
    #[serde(default)]
    pub default: bool,
}

/// Attaches a payment method to the tenant's customer.
pub async fn attach_payment_method(
    rt: &Runtime,
    db: &Db,
    _rules: Option<&str>,
    input: AttachPaymentMethodInput,
) -> Result<Customer, ApiFailure> {
    let request = CustomerRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        external_id: input.external_id,
        action: CustomerAction::AttachPaymentMethod(PaymentMethodAttachment {
            payment_method: input.payment_method,
            make_default: input.default,
        }),
    };
    customer(rt, db, request).await
}

/// A price and how many units of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// The price (`price_...`).
    pub price: String,
    /// Units (default 1).
    #[serde(default = "one")]
    pub quantity: u64,
}

fn one() -> u64 {
    1
}

fn items(list: Vec<ItemInput>) -> Vec<SubscriptionItemParams> {
    list.into_iter()
        .map(|i| SubscriptionItemParams {
            price: i.price,
            quantity: i.quantity,
        })
        .collect()
}

async fn subscription(
    rt: &Runtime,
    db: &Db,
    request: SubscriptionRequest,
) -> Result<Subscription, ApiFailure> {
    once(db, "subscription", |staged| {
        rt.manage_subscription(staged, request.clone())
    })
    .await
}

/// `POST /v1/operations/create-subscription`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionInput {
    /// Names the request: a repeat returns the subscription it created.
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The connected account; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The customer (`cus_...`), one of the tenant's.
    pub customer: String,
    /// The license price and any add-ons.
    pub items: Vec<ItemInput>,
    /// Days of free trial.
    #[serde(default)]
    pub trial_period_days: Option<u32>,
    /// The payment method charged instead of the customer's default.
    #[serde(default)]
    pub default_payment_method: Option<String>,
    /// More metadata (the application's contract id...).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Creates a subscription for one of the tenant's customers.
pub async fn create_subscription(
    rt: &Runtime,
    db: &Db,
    _rules: Option<&str>,
    input: CreateSubscriptionInput,
) -> Result<Subscription, ApiFailure> {
    let request = SubscriptionRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        action: SubscriptionAction::Create(NewSubscription {
            customer: input.customer,
            items: items(input.items),
            trial_period_days: input.trial_period_days,
            default_payment_method: input.default_payment_method,
            metadata: pairs(input.metadata),
        }),
    };
    subscription(rt, db, request).await
}

/// `POST /v1/operations/change-subscription-plan`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePlanInput {
    /// Names the request (Stripe idempotency).
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The connected account; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The subscription (`sub_...`), one of the tenant's.
    pub subscription: String,
    /// The price whose item moves; none: the subscription's one item.
    #[serde(default)]
    pub from_price: Option<String>,
    /// The new price.
    pub to_price: String,
    /// A new quantity for the item.
    #[serde(default)]
    pub quantity: Option<u64>,
    /// create_prorations, always_invoice or none.
    #[serde(default)]
    pub proration_behavior: Option<String>,
}

/// Moves a subscription's item to another price.
pub async fn change_subscription_plan(
    rt: &Runtime,
    db: &Db,
    _rules: Option<&str>,
    input: ChangePlanInput,
) -> Result<Subscription, ApiFailure> {
    let request = SubscriptionRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        action: SubscriptionAction::ChangePlan(PlanChange {
            subscription: input.subscription,
            from_price: input.from_price,
            to_price: input.to_price,
            quantity: input.quantity,
            proration_behavior: input.proration_behavior,
        }),
    };
    subscription(rt, db, request).await
}

/// `POST /v1/operations/cancel-subscription` and `resume-subscription`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelSubscriptionInput {
    /// Names the request (Stripe idempotency).
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The connected account; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The subscription (`sub_...`), one of the tenant's.
    pub subscription: String,
    /// At the end of the current period, not now (cancel only).
    #[serde(default)]
    pub at_period_end: bool,
}

/// Cancels a subscription now or at the end of its period.
pub async fn cancel_subscription(
    rt: &Runtime,
    db: &Db,
    _rules: Option<&str>,
    input: CancelSubscriptionInput,
) -> Result<Subscription, ApiFailure> {
    let request = SubscriptionRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        action: SubscriptionAction::Cancel(SubscriptionCancel {
            subscription: input.subscription,
            at_period_end: input.at_period_end,
        }),
    };
    subscription(rt, db, request).await
}

/// Undoes a cancellation at period end.
pub async fn resume_subscription(
    rt: &Runtime,
    db: &Db,
    _rules: Option<&str>,
    input: CancelSubscriptionInput,
) -> Result<Subscription, ApiFailure> {
    if input.at_period_end {
        return Err(ApiFailure::Invalid(
            "at_period_end is for cancel-subscription".into(),
        ));
    }
    let request = SubscriptionRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        action: SubscriptionAction::Resume(input.subscription),
    };
    subscription(rt, db, request).await
}

/// A wallet deposit bought through Checkout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositPurchase {
    /// The wallet credited.
    pub wallet: String,
    /// Decimal, in `currency`.
    pub amount: String,
    /// ISO currency code.
    pub currency: String,
}

/// `POST /v1/operations/create-checkout-session`: `items` (a license
/// purchase) or `deposit` (a wallet deposit), not both.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutInput {
    /// Names the request (Stripe idempotency, 24 hours).
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The connected account; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The customer (`cus_...`), one of the tenant's, if known.
    #[serde(default)]
    pub customer: Option<String>,
    /// Where Stripe sends the customer after paying.
    pub success_url: String,
    /// Where Stripe sends the customer who goes back.
    pub cancel_url: String,
    /// The application's reference for the purchase.
    #[serde(default)]
    pub client_reference_id: Option<String>,
    /// A license purchase: prices and quantities.
    #[serde(default)]
    pub items: Option<Vec<ItemInput>>,
    /// A wallet deposit.
    #[serde(default)]
    pub deposit: Option<DepositPurchase>,
}

/// Creates a Checkout Session.
pub async fn create_checkout_session(
    rt: &Runtime,
    db: &Db,
    rules: Option<&str>,
    input: CheckoutInput,
) -> Result<CheckoutSession, ApiFailure> {
    let purchase = match (input.items, input.deposit) {
        (Some(list), None) => Purchase::Subscription(items(list)),
        (None, Some(d)) => Purchase::Deposit(WalletDeposit {
            amount: amount(rt, &d.amount, &d.currency).await?,
            wallet: d.wallet,
        }),
        _ => {
            return Err(ApiFailure::Refused(OperationError::Invalid(
                "give `items` (a license purchase) or `deposit` (a wallet deposit)".into(),
            )));
        }
    };
    let request = CheckoutRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        customer: input.customer,
        success_url: input.success_url,
        cancel_url: input.cancel_url,
        client_reference_id: input.client_reference_id,
        purchase,
    };
    let rules = rules.map(str::to_string);
    once(db, "checkout", |staged| {
        rt.create_checkout(staged, rules.clone(), request.clone())
    })
    .await
}

/// `POST /v1/operations/create-portal-session`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalInput {
    /// Names the request (Stripe idempotency).
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The connected account; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The customer (`cus_...`), one of the tenant's.
    pub customer: String,
    /// Where the portal sends the customer back.
    pub return_url: String,
}

/// Creates a billing portal session.
pub async fn create_portal_session(
    rt: &Runtime,
    db: &Db,
    _rules: Option<&str>,
    input: PortalInput,
) -> Result<PortalSession, ApiFailure> {
    let request = PortalRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        customer: input.customer,
        return_url: input.return_url,
    };
    once(db, "portal", |staged| {
        rt.create_portal(staged, request.clone())
    })
    .await
}

async fn invoice(
    rt: &Runtime,
    db: &Db,
    rules: Option<&str>,
    request: InvoiceRequest,
) -> Result<Invoiced, ApiFailure> {
    let rules = rules.map(str::to_string);
    run(db, "invoice", |staged: StagedState| {
        let (rt, rules, request) = (rt.clone(), rules.clone(), request.clone());
        async move { rt.manage_invoice(staged, rules, request).await }
    })
    .await
}

/// `POST /v1/operations/create-invoice`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvoiceInput {
    /// Names the request: a repeat carries on or returns the invoice made.
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The connected account; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The customer (`cus_...`), one of the tenant's.
    pub customer: String,
    /// The application's invoice id (metadata `invoice_id`).
    pub invoice_id: String,
    /// ISO currency code.
    pub currency: String,
    /// The lines, as `POST /v1/quote/invoice` takes them; each tax names
    /// its Stripe tax rate (`stripe_id`).
    pub lines: Vec<LineInput>,
    /// send_invoice (default) or charge_automatically.
    #[serde(default = "send_invoice_method")]
    pub collection_method: String,
    /// Days to pay, for send_invoice (default 30).
    #[serde(default)]
    pub days_until_due: Option<u32>,
    /// Finalize once the lines are in (numbered, hosted page and PDF).
    #[serde(default)]
    pub finalize: bool,
    /// The payment method type the fee rules price an invoice on `account`
    /// with (default `card`).
    #[serde(default = "card")]
    pub payment_method_type: String,
}

fn card() -> String {
    "card".into()
}

fn send_invoice_method() -> String {
    "send_invoice".into()
}

/// Creates a Stripe invoice from lines totalled as `quote invoice` totals them.
pub async fn create_invoice(
    rt: &Runtime,
    db: &Db,
    rules: Option<&str>,
    input: CreateInvoiceInput,
) -> Result<Invoiced, ApiFailure> {
    let days_until_due = match (input.collection_method.as_str(), input.days_until_due) {
        ("send_invoice", None) => Some(30),
        (_, days) => days,
    };
    let lines: Vec<StripeInvoiceLine> = invoice_lines(rt, &input.currency, input.lines)
        .await?
        .into_iter()
        .map(|(line, tax_rate_ids)| StripeInvoiceLine { line, tax_rate_ids })
        .collect();
    // On a connected account the platform's fee is the one `quote` gives
    // for the invoice's total, as `charge-invoice` charges it.
    let application_fee_amount = match &input.account {
        None => None,
        Some(_) => {
            let plain = lines.iter().map(|l| l.line.clone()).collect();
            let totals = rt
                .total_invoice(rules.map(str::to_string), input.currency.clone(), plain)
                .await?
                .map_err(|e| ApiFailure::Refused(OperationError::Fees(e)))?;
            let quote = rt
                .quote(
                    rules.map(str::to_string),
                    QuoteRequest {
                        amount: Money {
                            amount: totals.total,
                            currency: totals.currency,
                        },
                        payment_method: input.payment_method_type.clone(),
                        tenant: Some(input.tenant.clone()),
                        international: false,
                        converted: false,
                        application_fee_percent: None,
                        application_fee_fixed: None,
                        monthly_volume: None,
                    },
                )
                .await?
                .map_err(|e| ApiFailure::Refused(OperationError::Fees(e)))?;
            Some(quote.application_fee.amount)
        }
    };
    let request = InvoiceRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        action: InvoiceAction::Create(NewInvoice {
            customer: input.customer,
            invoice_id: input.invoice_id,
            currency: input.currency.to_ascii_lowercase(),
            lines,
            collection_method: input.collection_method,
            days_until_due,
            finalize: input.finalize,
            application_fee_amount,
        }),
    };
    invoice(rt, db, rules, request).await
}

/// `POST /v1/operations/{finalize|send|void|mark-uncollectible}-invoice`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceStepInput {
    /// Names the request (Stripe idempotency).
    pub request_id: String,
    /// The tenant.
    pub tenant: String,
    /// The connected account; none: the platform.
    #[serde(default)]
    pub account: Option<String>,
    /// The invoice (`in_...`), one of the tenant's.
    pub invoice: String,
}

/// Finalizes, sends, voids or marks uncollectible one of the tenant's invoices.
async fn advance_invoice(
    rt: &Runtime,
    db: &Db,
    step: InvoiceStep,
    input: InvoiceStepInput,
) -> Result<Invoiced, ApiFailure> {
    let request = InvoiceRequest {
        request_id: input.request_id,
        tenant: input.tenant,
        account: input.account,
        action: InvoiceAction::Advance(InvoiceAdvance {
            invoice: input.invoice,
            step,
        }),
    };
    invoice(rt, db, None, request).await
}

/// One operation per invoice step, each `advance_invoice` with its step.
macro_rules! invoice_steps {
    ($($(#[$doc:meta])* $name:ident => $step:ident;)*) => {
        $($(#[$doc])*
        pub async fn $name(
            rt: &Runtime,
            db: &Db,
            _rules: Option<&str>,
            input: InvoiceStepInput,
        ) -> Result<Invoiced, ApiFailure> {
            advance_invoice(rt, db, InvoiceStep::$step, input).await
        })*
    };
}

invoice_steps! {
    /// Finalizes a draft invoice (numbered, with its hosted page and PDF).
    finalize_invoice => Finalize;
    /// Emails an open invoice to the customer.
    send_invoice => Send;
    /// Voids an open invoice.
    void_invoice => Void;
    /// Marks an open invoice uncollectible.
    mark_invoice_uncollectible => MarkUncollectible;
    /// Collects an open invoice now, off-session, with the invoice's or the
    /// customer's default payment method (a paid one is returned as it is).
    pay_invoice => Pay;
}
