//! Effects: the typed results of handling one event. They mirror the
//! `effect` variant of the WIT `webhooks` interface one to one.

use crate::money::Money;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    PaymentSucceeded(PaymentSucceeded),
    PaymentFailed(PaymentFailed),
    InvoiceStatusChanged(InvoiceStatusChanged),
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIgnored {
    pub event_type: String,
    pub reason: String,
}
