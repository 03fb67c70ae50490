//! Effects: the typed results of handling one event. They mirror the
//! `effect` variant of the WIT `webhooks` interface one to one.

use crate::money::Money;

/// A typed domain result of one event. The host stores each in its outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The payment went through: money received.
    PaymentSucceeded(PaymentSucceeded),
    /// An attempt failed (declined card...); the customer may retry.
    PaymentFailed(PaymentFailed),
    /// Money is on its way (e.g. a bank debit); not yet succeeded.
    PaymentProcessing(PaymentUpdate),
    /// The customer must act (3-D Secure); seed 001 emails them.
    PaymentRequiresAction(PaymentUpdate),
    /// Canceled for good: no money moves.
    PaymentCanceled(PaymentUpdate),
    /// An invoice moved to a new status.
    InvoiceStatusChanged(InvoiceStatusChanged),
    /// Money went back to the customer (`charge.refunded`).
    RefundRecorded(RefundRecorded),
    /// A subscription's latest state.
    SubscriptionChanged(SubscriptionChanged),
    /// Authorized but not captured yet: capture or cancel it.
    PaymentCapturable(PaymentUpdate),
    /// A bank transfer paid part of the amount.
    PaymentPartiallyFunded(PaymentUpdate),
    /// A connected account's abilities changed (onboarding).
    AccountStatusChanged(AccountStatusChanged),
    /// A connected account connected the platform.
    AccountAuthorized(AccountApplication),
    /// A connected account disconnected the platform: stop acting for it.
    AccountDeauthorized(AccountApplication),
    /// A customer disputed a payment.
    DisputeOpened(DisputeUpdate),
    /// A dispute's status or evidence deadline changed.
    DisputeUpdated(DisputeUpdate),
    /// A dispute ended: status won or lost.
    DisputeClosed(DisputeUpdate),
    /// The disputed amount (and fee) left the balance.
    DisputeFundsWithdrawn(DisputeFunds),
    /// The disputed amount came back.
    DisputeFundsReinstated(DisputeFunds),
    /// The tenant's license count changed (seed 004).
    LicenseCountSet(LicenseCountSet),
    /// A Checkout Session completed (check `payment-status`).
    CheckoutCompleted(CheckoutSession),
    /// An asynchronous payment of a completed session failed.
    CheckoutPaymentFailed(CheckoutSession),
    /// A Checkout Session expired unpaid.
    CheckoutExpired(CheckoutSession),
    /// A refund was created or changed status.
    RefundUpdated(RefundUpdate),
    /// The refund did not reach the customer; the money is back on the balance.
    RefundFailed(RefundUpdate),
    /// A payout's status changed.
    PayoutChanged(Payout),
    /// A transfer was created, changed or (partly) reversed.
    TransferChanged(Transfer),
    /// The card networks warn of fraud: consider refunding.
    FraudWarning(FraudWarning),
    /// Radar held a payment for review.
    ReviewOpened(Review),
    /// A review ended (approved, refunded...).
    ReviewClosed(Review),
    /// A customer was created, changed or deleted.
    CustomerChanged(Customer),
    /// A way to pay was attached, changed or detached.
    PaymentMethodChanged(PaymentMethod),
    /// A wallet deposit arrived (seed 002).
    WalletDepositConfirmed(WalletDeposit),
    /// The platform gave part of an application fee back to the tenant.
    ApplicationFeeRefunded(ApplicationFeeRefund),
    /// Stripe's fee on a payment is known and posted (a settlement job).
    PaymentSettled(PaymentSettled),
    /// An account was registered to a tenant after some of its events:
    /// their ledger postings moved to the tenant (registration).
    AccountRerouted(AccountRerouted),
    /// Recorded with no effect; `reason` says why.
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
    ("ApplicationFeeRefunded", "application_fee.refunded"),
    ("PaymentSettled", "payment.settled"),
    ("AccountRerouted", "account.rerouted"),
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
            Effect::ApplicationFeeRefunded(_) => "application_fee.refunded",
            Effect::PaymentSettled(_) => "payment.settled",
            Effect::AccountRerouted(_) => "account.rerouted",
            Effect::EventIgnored(_) => "event.ignored",
        }
    }
}

/// A payment intent that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSucceeded {
    /// The payment intent (`pi_...`).
    pub payment_intent: String,
    /// The amount, in minor units.
    pub amount: Money,
    /// Tenant from `metadata.tenant_id`, when present.
    pub tenant: Option<String>,
    /// Connected account the payment belongs to, for Connect events.
    pub account: Option<String>,
    /// The Stripe customer (`cus_...`), when known.
    pub customer: Option<String>,
    /// The application's own reference from `metadata.reference` / `metadata.invoice_id`.
    pub reference: Option<String>,
    /// Connect application fee collected, when Stripe reports it.
    pub application_fee: Option<Money>,
}

/// A payment attempt that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFailed {
    /// The payment intent (`pi_...`).
    pub payment_intent: String,
    /// The amount, in minor units.
    pub amount: Money,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
    /// The application's own record, from the configured metadata keys.
    pub reference: Option<String>,
    /// Stripe's error code, e.g. "card_declined".
    pub code: Option<String>,
    /// Stripe's decline code, e.g. "insufficient_funds".
    pub decline_code: Option<String>,
    /// Stripe's human message.
    pub message: Option<String>,
}

/// A payment intent that moved to processing, requires_action or canceled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentUpdate {
    /// The payment intent (`pi_...`).
    pub payment_intent: String,
    /// The amount, in minor units.
    pub amount: Money,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
    /// The application's own record, from the configured metadata keys.
    pub reference: Option<String>,
    /// Stripe's `cancellation_reason` for a canceled payment.
    pub cancellation_reason: Option<String>,
}

/// An invoice moved to a new status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceStatusChanged {
    /// The invoice (`in_...`).
    pub invoice: String,
    /// Stripe invoice status: draft, open, paid, uncollectible, void.
    pub status: String,
    /// Paid so far on the invoice.
    pub amount_paid: Money,
    /// Still owed on the invoice.
    pub amount_due: Money,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
    /// The Stripe customer (`cus_...`), when known.
    pub customer: Option<String>,
    /// The subscription (`sub_...`), when known.
    pub subscription: Option<String>,
    /// Stripe's hosted page where the customer can pay it.
    pub hosted_invoice_url: Option<String>,
    /// The invoice as a PDF.
    pub invoice_pdf: Option<String>,
}

/// Money returned on a charge since the last refund the plugin applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecorded {
    /// The charge (`ch_...`).
    pub charge: String,
    /// The payment intent (`pi_...`) it belongs to, when known.
    pub payment_intent: Option<String>,
    /// Refunded by this event (the growth of the charge's total).
    pub amount: Money,
    /// Refunded on the charge so far, this event included.
    pub total_refunded: Money,
    /// The whole charge is refunded.
    pub full: bool,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
    /// The application's own record, from the configured metadata keys.
    pub reference: Option<String>,
}

/// A subscription created, updated or deleted (its latest state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionChanged {
    /// The subscription (`sub_...`).
    pub subscription: String,
    /// Stripe's status: trialing, active, past_due, canceled, unpaid, paused...
    pub status: String,
    /// Sum of the license items' quantities (every item's when no license
    /// price is configured).
    pub quantity: i64,
    /// The plan: the first license item's price (`price_...`), else the
    /// first item's.
    pub price: Option<String>,
    /// Unix seconds; per item since API 2025-03-31, top-level before.
    pub current_period_start: Option<i64>,
    /// Unix seconds; per item since API 2025-03-31, top-level before.
    pub current_period_end: Option<i64>,
    /// Unix seconds at which the trial ends, if there is one.
    pub trial_end: Option<i64>,
    /// The subscription's metadata (the application's contract id...),
    /// sorted by key.
    pub metadata: Vec<(String, String)>,
    /// The subscription ends when the current period does.
    pub cancel_at_period_end: bool,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
    /// The Stripe customer (`cus_...`), when known.
    pub customer: Option<String>,
}

/// A connected account's ability to take charges and receive payouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatusChanged {
    /// The connected account (`acct_...`).
    pub account: String,
    /// The account can take charges.
    pub charges_enabled: bool,
    /// The account can receive payouts.
    pub payouts_enabled: bool,
    /// The tenant finished onboarding's forms.
    pub details_submitted: bool,
    /// `requirements.currently_due`: what the tenant still has to provide.
    pub requirements_due: Vec<String>,
    /// Why Stripe disabled the account, if it did.
    pub disabled_reason: Option<String>,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
}

/// The connected account connected or disconnected the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountApplication {
    /// The connected account (`acct_...`).
    pub account: String,
    /// The platform's application (`ca_...`).
    pub application: Option<String>,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
}

/// A dispute's latest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeUpdate {
    /// The dispute (`dp_...` or `du_...`).
    pub dispute: String,
    /// The charge (`ch_...`), when known.
    pub charge: Option<String>,
    /// The payment intent (`pi_...`) it belongs to, when known.
    pub payment_intent: Option<String>,
    /// The amount, in minor units.
    pub amount: Money,
    /// Stripe's reason: fraudulent, product_not_received, general...
    pub reason: String,
    /// needs_response, under_review, won, lost, warning_* ...
    pub status: String,
    /// Unix seconds by which evidence must be submitted.
    pub evidence_due_by: Option<i64>,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
}

/// Disputed funds taken from, or given back to, the balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeFunds {
    /// The dispute (`dp_...` or `du_...`).
    pub dispute: String,
    /// The charge (`ch_...`), when known.
    pub charge: Option<String>,
    /// The amount, in minor units.
    pub amount: Money,
    /// Stripe's dispute fee, when its balance transaction says so.
    pub fee: Option<Money>,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
}

/// Seed 004: the tenant's license count is the subscription's quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseCountSet {
    /// The subscription (`sub_...`).
    pub subscription: String,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The license count: the subscription's quantity.
    pub count: i64,
}

/// An event recorded without any effect on billing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventIgnored {
    /// Stripe's event type, e.g. `invoice.paid`.
    pub event_type: String,
    /// Why: "type not used", or "stale: ..." for an out-of-order event.
    pub reason: String,
}

/// A Checkout Session's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    /// The Checkout Session (`cs_...`).
    pub session: String,
    /// payment, subscription or setup.
    pub mode: String,
    /// open, complete or expired.
    pub status: String,
    /// paid, unpaid (an asynchronous method still settling), no_payment_required.
    pub payment_status: String,
    /// The session's total, when it has one.
    pub amount_total: Option<Money>,
    /// The Stripe customer (`cus_...`), when known.
    pub customer: Option<String>,
    /// The payment intent (`pi_...`) it belongs to, when known.
    pub payment_intent: Option<String>,
    /// The subscription (`sub_...`), when known.
    pub subscription: Option<String>,
    /// The invoice (`in_...`), when known.
    pub invoice: Option<String>,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
    /// The application's own record, from the configured metadata keys.
    pub reference: Option<String>,
}

/// A refund object's latest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundUpdate {
    /// The refund (`re_...`).
    pub refund: String,
    /// The charge (`ch_...`), when known.
    pub charge: Option<String>,
    /// The payment intent (`pi_...`) it belongs to, when known.
    pub payment_intent: Option<String>,
    /// The amount, in minor units.
    pub amount: Money,
    /// pending, requires_action, succeeded, failed or canceled.
    pub status: String,
    /// duplicate, fraudulent, requested_by_customer...
    pub reason: Option<String>,
    /// Why a refund failed (e.g. expired_or_canceled_card).
    pub failure_reason: Option<String>,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
    /// The application's own record, from the configured metadata keys.
    pub reference: Option<String>,
}

/// Money leaving a Stripe balance for a bank account or card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    /// The payout (`po_...`).
    pub payout: String,
    /// The amount, in minor units.
    pub amount: Money,
    /// pending, in_transit, paid, failed or canceled.
    pub status: String,
    /// Unix seconds at which the money is expected in the bank.
    pub arrival_date: Option<i64>,
    /// The bank account or card (`ba_...`, `card_...`).
    pub destination: Option<String>,
    /// Stripe's failure code for a failed payout.
    pub failure_code: Option<String>,
    /// Stripe's explanation of the failure.
    pub failure_message: Option<String>,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
}

/// A transfer from the platform to a connected account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The transfer (`tr_...`).
    pub transfer: String,
    /// The amount.
    pub amount: Money,
    /// Reversed so far, minor units.
    pub amount_reversed: Money,
    /// The whole transfer is reversed.
    pub reversed: bool,
    /// The connected account receiving it.
    pub destination: Option<String>,
    /// Stripe's transfer group (an order or offer id).
    pub transfer_group: Option<String>,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The application's own record, from the configured metadata keys.
    pub reference: Option<String>,
}

/// An early fraud warning from the card networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FraudWarning {
    /// The early fraud warning (`issfr_...`).
    pub warning: String,
    /// The charge (`ch_...`), when known.
    pub charge: Option<String>,
    /// The payment intent (`pi_...`) it belongs to, when known.
    pub payment_intent: Option<String>,
    /// card_never_received, fraudulent_card_application, made_with_stolen_card...
    pub fraud_type: String,
    /// Whether refunding can still avoid a dispute.
    pub actionable: bool,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
}

/// A Radar review opened or closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// The Radar review (`prv_...`).
    pub review: String,
    /// The charge (`ch_...`), when known.
    pub charge: Option<String>,
    /// The payment intent (`pi_...`) it belongs to, when known.
    pub payment_intent: Option<String>,
    /// Opened: rule or manual. Closed: approved, refunded, refunded_as_fraud, disputed, redacted.
    pub reason: String,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
}

/// A Stripe customer created, changed or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// The Stripe customer (`cus_...`).
    pub customer: String,
    /// The customer's email.
    pub email: Option<String>,
    /// The customer's name.
    pub name: Option<String>,
    /// The customer was deleted.
    pub deleted: bool,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
}

/// A way to pay attached to, changed on, or detached from a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod {
    /// `pm_...`, or a legacy source (`card_...`, `ba_...`, `src_...`).
    pub payment_method: String,
    /// The Stripe customer (`cus_...`), when known.
    pub customer: Option<String>,
    /// attached, detached, updated or automatically_updated (the card
    /// network sent new details).
    pub change: String,
    /// card, us_bank_account, sepa_debit...
    pub method_type: Option<String>,
    /// Card brand (visa...) or bank name.
    pub brand: Option<String>,
    /// Last four digits.
    pub last4: Option<String>,
    /// Card expiry month.
    pub exp_month: Option<i64>,
    /// Card expiry year.
    pub exp_year: Option<i64>,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The connected account (`acct_...`) of a Connect event.
    pub account: Option<String>,
}

/// Seed 002: a wallet deposit arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletDeposit {
    /// The application's wallet (`metadata.walletId` or `wallet_id`).
    pub wallet: Option<String>,
    /// The payment intent (`pi_...`).
    pub payment_intent: String,
    /// The amount, in minor units.
    pub amount: Money,
    /// The application's tenant (registry, metadata, or the payment's); none: unrouted.
    pub tenant: Option<String>,
    /// The application's own record, from the configured metadata keys.
    pub reference: Option<String>,
}

/// Part of a Connect application fee given back to the connected account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationFeeRefund {
    /// The application fee (`fee_...`).
    pub application_fee: String,
    /// The charge the fee was taken on (`ch_...`).
    pub charge: Option<String>,
    /// Given back by this event (the growth of the fee's refunded total).
    pub amount: Money,
    /// Given back on the fee so far, this event included.
    pub total_refunded: Money,
    /// The tenant the fee's connected account is registered to.
    pub tenant: Option<String>,
    /// The connected account that paid the fee (`acct_...`).
    pub account: Option<String>,
}

/// What registering an account moved: the ledger transactions its events
/// had posted under the account's own id, now in the tenant's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRerouted {
    /// The connected account registered (`acct_...`).
    pub account: String,
    /// The tenant it was registered to.
    pub tenant: String,
    /// The ledger transactions moved, by id.
    pub transactions: Vec<String>,
}

/// What Stripe took from a succeeded payment and when the rest is
/// available, from the charge's balance transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSettled {
    /// The payment intent (`pi_...`).
    pub payment_intent: String,
    /// The charge (`ch_...`).
    pub charge: String,
    /// The balance transaction (`txn_...`).
    pub balance_transaction: String,
    /// What the balance received before fees, in the balance's currency.
    pub gross: Money,
    /// Stripe's own fees (application fee excluded), posted payer → processor.
    pub processor_fee: Money,
    /// What the balance keeps: gross − every fee (Stripe's net).
    pub net: Money,
    /// Unix seconds at which the net can be paid out.
    pub available_on: i64,
    /// Who bears the processor fee in the ledger: "tenant" or "platform".
    pub paid_by: String,
    /// The payment's tenant, as its payment was posted.
    pub tenant: Option<String>,
    /// The connected account of a direct charge.
    pub account: Option<String>,
}
