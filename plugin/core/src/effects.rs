//! Effects: the typed results of handling one event. They mirror the
//! `effect` variant of the WIT `webhooks` interface one to one.

use crate::money::Money;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    PaymentSucceeded(PaymentSucceeded),
    PaymentFailed(PaymentFailed),
    PaymentProcessing(PaymentUpdate),
    PaymentRequiresAction(PaymentUpdate),
    PaymentCanceled(PaymentUpdate),
    InvoiceStatusChanged(InvoiceStatusChanged),
    RefundRecorded(RefundRecorded),
    SubscriptionChanged(SubscriptionChanged),
    AccountStatusChanged(AccountStatusChanged),
    AccountDeauthorized(AccountDeauthorized),
    DisputeOpened(DisputeUpdate),
    DisputeUpdated(DisputeUpdate),
    DisputeClosed(DisputeUpdate),
    DisputeFundsWithdrawn(DisputeFunds),
    DisputeFundsReinstated(DisputeFunds),
    LicenseCountSet(LicenseCountSet),
    EventIgnored(EventIgnored),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSucceeded {
    pub payment_intent: String,
    pub amount: Money,
    pub tenant: Option<String>,
    pub account: Option<String>,
    pub customer: Option<String>,
    pub reference: Option<String>,
    pub application_fee: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFailed {
    pub payment_intent: String,
    pub amount: Money,
    pub tenant: Option<String>,
    pub account: Option<String>,
    pub reference: Option<String>,
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
}

/// A payment intent that moved to processing, requires_action or canceled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentUpdate {
    pub payment_intent: String,
    pub amount: Money,
    pub tenant: Option<String>,
    pub account: Option<String>,
    pub reference: Option<String>,
    /// Stripe's `cancellation_reason` for a canceled payment.
    pub cancellation_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceStatusChanged {
    pub invoice: String,
    pub status: String,
    pub amount_paid: Money,
    pub amount_due: Money,
    pub tenant: Option<String>,
    pub account: Option<String>,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
}

/// Money returned on a charge since the last refund the plugin applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecorded {
    pub charge: String,
    pub payment_intent: Option<String>,
    /// Refunded by this event (the growth of the charge's total).
    pub amount: Money,
    /// Refunded on the charge so far, this event included.
    pub total_refunded: Money,
    /// The whole charge is refunded.
    pub full: bool,
    pub tenant: Option<String>,
    pub account: Option<String>,
    pub reference: Option<String>,
}

/// A subscription created, updated or deleted (its latest state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionChanged {
    pub subscription: String,
    /// Stripe's status: trialing, active, past_due, canceled, unpaid, paused...
    pub status: String,
    /// Sum of the items' quantities.
    pub quantity: i64,
    /// Unix seconds; per item since API 2025-03-31, top-level before.
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub tenant: Option<String>,
    pub account: Option<String>,
    pub customer: Option<String>,
}

/// A connected account's ability to take charges and receive payouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatusChanged {
    pub account: String,
    pub charges_enabled: bool,
    pub payouts_enabled: bool,
    pub details_submitted: bool,
    /// `requirements.currently_due`: what the tenant still has to provide.
    pub requirements_due: Vec<String>,
    pub disabled_reason: Option<String>,
    pub tenant: Option<String>,
}

/// The connected account disconnected the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDeauthorized {
    pub account: String,
    /// The platform's application (`ca_...`).
    pub application: Option<String>,
}

/// A dispute's latest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeUpdate {
    pub dispute: String,
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    pub amount: Money,
    /// Stripe's reason: fraudulent, product_not_received, general...
    pub reason: String,
    /// needs_response, under_review, won, lost, warning_* ...
    pub status: String,
    /// Unix seconds by which evidence must be submitted.
    pub evidence_due_by: Option<i64>,
    pub tenant: Option<String>,
    pub account: Option<String>,
}

/// Disputed funds taken from, or given back to, the balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeFunds {
    pub dispute: String,
    pub charge: Option<String>,
    pub amount: Money,
    /// Stripe's dispute fee, when its balance transaction says so.
    pub fee: Option<Money>,
    pub tenant: Option<String>,
    pub account: Option<String>,
}

/// Seed 004: the tenant's license count is the subscription's quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseCountSet {
    pub subscription: String,
    pub tenant: Option<String>,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIgnored {
    pub event_type: String,
    pub reason: String,
}
