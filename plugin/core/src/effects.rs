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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIgnored {
    pub event_type: String,
    pub reason: String,
}
