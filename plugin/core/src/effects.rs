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
    PaymentCapturable(PaymentUpdate),
    PaymentPartiallyFunded(PaymentUpdate),
    AccountStatusChanged(AccountStatusChanged),
    AccountAuthorized(AccountApplication),
    AccountDeauthorized(AccountApplication),
    DisputeOpened(DisputeUpdate),
    DisputeUpdated(DisputeUpdate),
    DisputeClosed(DisputeUpdate),
    DisputeFundsWithdrawn(DisputeFunds),
    DisputeFundsReinstated(DisputeFunds),
    LicenseCountSet(LicenseCountSet),
    CheckoutCompleted(CheckoutSession),
    CheckoutPaymentFailed(CheckoutSession),
    CheckoutExpired(CheckoutSession),
    RefundUpdated(RefundUpdate),
    RefundFailed(RefundUpdate),
    PayoutChanged(Payout),
    TransferChanged(Transfer),
    FraudWarning(FraudWarning),
    ReviewOpened(Review),
    ReviewClosed(Review),
    CustomerChanged(Customer),
    PaymentMethodChanged(PaymentMethod),
    WalletDepositConfirmed(WalletDeposit),
    EventIgnored(EventIgnored),
}

/// Each variant's name (the same in WIT, in the host's bindings and in
/// serde) and its `kind`: hosts name the effects they receive through it.
pub const KINDS: &[(&str, &str)] = &[
    ("PaymentSucceeded", "payment.succeeded"),
    ("PaymentFailed", "payment.failed"),
    ("PaymentProcessing", "payment.processing"),
    ("PaymentRequiresAction", "payment.requires_action"),
    ("PaymentCanceled", "payment.canceled"),
    ("InvoiceStatusChanged", "invoice.status_changed"),
    ("RefundRecorded", "refund.recorded"),
    ("SubscriptionChanged", "subscription.changed"),
    ("PaymentCapturable", "payment.capturable"),
    ("PaymentPartiallyFunded", "payment.partially_funded"),
    ("AccountStatusChanged", "account.status_changed"),
    ("AccountAuthorized", "account.authorized"),
    ("AccountDeauthorized", "account.deauthorized"),
    ("DisputeOpened", "dispute.opened"),
    ("DisputeUpdated", "dispute.updated"),
    ("DisputeClosed", "dispute.closed"),
    ("DisputeFundsWithdrawn", "dispute.funds_withdrawn"),
    ("DisputeFundsReinstated", "dispute.funds_reinstated"),
    ("LicenseCountSet", "license.count_set"),
    ("CheckoutCompleted", "checkout.completed"),
    ("CheckoutPaymentFailed", "checkout.payment_failed"),
    ("CheckoutExpired", "checkout.expired"),
    ("RefundUpdated", "refund.updated"),
    ("RefundFailed", "refund.failed"),
    ("PayoutChanged", "payout.changed"),
    ("TransferChanged", "transfer.changed"),
    ("FraudWarning", "fraud.warning"),
    ("ReviewOpened", "review.opened"),
    ("ReviewClosed", "review.closed"),
    ("CustomerChanged", "customer.changed"),
    ("PaymentMethodChanged", "payment_method.changed"),
    ("WalletDepositConfirmed", "wallet.deposit_confirmed"),
    ("EventIgnored", "event.ignored"),
];

/// The `kind` of the effect variant named `variant` (e.g. "PaymentSucceeded").
pub fn kind_of_variant(variant: &str) -> Option<&'static str> {
    KINDS.iter().find(|(v, _)| *v == variant).map(|(_, k)| *k)
}

impl Effect {
    /// The effect's `kind` in JSON and in the event catalog.
    pub fn kind(&self) -> &'static str {
        match self {
            Effect::PaymentSucceeded(_) => "payment.succeeded",
            Effect::PaymentFailed(_) => "payment.failed",
            Effect::PaymentProcessing(_) => "payment.processing",
            Effect::PaymentRequiresAction(_) => "payment.requires_action",
            Effect::PaymentCanceled(_) => "payment.canceled",
            Effect::InvoiceStatusChanged(_) => "invoice.status_changed",
            Effect::RefundRecorded(_) => "refund.recorded",
            Effect::SubscriptionChanged(_) => "subscription.changed",
            Effect::PaymentCapturable(_) => "payment.capturable",
            Effect::PaymentPartiallyFunded(_) => "payment.partially_funded",
            Effect::AccountStatusChanged(_) => "account.status_changed",
            Effect::AccountAuthorized(_) => "account.authorized",
            Effect::AccountDeauthorized(_) => "account.deauthorized",
            Effect::DisputeOpened(_) => "dispute.opened",
            Effect::DisputeUpdated(_) => "dispute.updated",
            Effect::DisputeClosed(_) => "dispute.closed",
            Effect::DisputeFundsWithdrawn(_) => "dispute.funds_withdrawn",
            Effect::DisputeFundsReinstated(_) => "dispute.funds_reinstated",
            Effect::LicenseCountSet(_) => "license.count_set",
            Effect::CheckoutCompleted(_) => "checkout.completed",
            Effect::CheckoutPaymentFailed(_) => "checkout.payment_failed",
            Effect::CheckoutExpired(_) => "checkout.expired",
            Effect::RefundUpdated(_) => "refund.updated",
            Effect::RefundFailed(_) => "refund.failed",
            Effect::PayoutChanged(_) => "payout.changed",
            Effect::TransferChanged(_) => "transfer.changed",
            Effect::FraudWarning(_) => "fraud.warning",
            Effect::ReviewOpened(_) => "review.opened",
            Effect::ReviewClosed(_) => "review.closed",
            Effect::CustomerChanged(_) => "customer.changed",
            Effect::PaymentMethodChanged(_) => "payment_method.changed",
            Effect::WalletDepositConfirmed(_) => "wallet.deposit_confirmed",
            Effect::EventIgnored(_) => "event.ignored",
        }
    }
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

/// The connected account connected or disconnected the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountApplication {
    pub account: String,
    /// The platform's application (`ca_...`).
    pub application: Option<String>,
    pub tenant: Option<String>,
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

/// A Checkout Session's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    pub session: String,
    pub mode: String,
    pub status: String,
    /// paid, unpaid (an asynchronous method still settling), no_payment_required.
    pub payment_status: String,
    pub amount_total: Option<Money>,
    pub customer: Option<String>,
    pub payment_intent: Option<String>,
    pub subscription: Option<String>,
    pub invoice: Option<String>,
    pub tenant: Option<String>,
    pub account: Option<String>,
    pub reference: Option<String>,
}

/// A refund object's latest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundUpdate {
    pub refund: String,
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    pub amount: Money,
    pub status: String,
    pub reason: Option<String>,
    pub failure_reason: Option<String>,
    pub tenant: Option<String>,
    pub account: Option<String>,
    pub reference: Option<String>,
}

/// Money leaving a Stripe balance for a bank account or card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub payout: String,
    pub amount: Money,
    pub status: String,
    pub arrival_date: Option<i64>,
    pub destination: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub tenant: Option<String>,
    pub account: Option<String>,
}

/// A transfer from the platform to a connected account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub transfer: String,
    pub amount: Money,
    pub amount_reversed: Money,
    pub reversed: bool,
    pub destination: Option<String>,
    pub transfer_group: Option<String>,
    pub tenant: Option<String>,
    pub reference: Option<String>,
}

/// An early fraud warning from the card networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudWarning {
    pub warning: String,
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    pub fraud_type: String,
    pub actionable: bool,
    pub tenant: Option<String>,
    pub account: Option<String>,
}

/// A Radar review opened or closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub review: String,
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    pub reason: String,
    pub tenant: Option<String>,
    pub account: Option<String>,
}

/// A Stripe customer created, changed or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub customer: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub deleted: bool,
    pub tenant: Option<String>,
    pub account: Option<String>,
}

/// A way to pay attached to, changed on, or detached from a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod {
    pub payment_method: String,
    pub customer: Option<String>,
    pub change: String,
    pub method_type: Option<String>,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub exp_month: Option<i64>,
    pub exp_year: Option<i64>,
    pub tenant: Option<String>,
    pub account: Option<String>,
}

/// Seed 002: a wallet deposit arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletDeposit {
    pub wallet: Option<String>,
    pub payment_intent: String,
    pub amount: Money,
    pub tenant: Option<String>,
    pub reference: Option<String>,
}
