//! The event catalog: every Stripe event type the plugin knows, what it maps
//! to and why. It is also the dispatch table of [`super::handle_with`], so the
//! documentation generated from it (`docs/events.md`) cannot drift from the
//! code. A type that is not here is recorded as `event.ignored`.

use super::{
    MapFn, account_application, account_updated, customers, dispute_funds, dispute_update,
    invoice_status, money_out, payment_failed, payment_succeeded, payment_update, refunds, risk,
    subscription_changed,
};
use crate::effects::Effect;

/// Why a type is in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Mapped onto typed effects.
    Mapped,
    /// Recorded as `event.ignored`, on purpose; the notes say why.
    ByDesign,
    /// A type Stripe no longer sends; accepted and mapped if it arrives.
    Legacy,
}

/// One event type the plugin knows.
pub struct Entry {
    /// Stripe's event type, e.g. `charge.refunded`.
    pub event_type: &'static str,
    /// Why it is in the catalog.
    pub class: Class,
    /// The kinds it may emit; any mapped event may also be `event.ignored`
    /// when it is stale.
    pub effects: &'static [&'static str],
    /// Fields read, rules applied, or the reason for no effect.
    pub notes: &'static str,
    pub(super) map: Option<MapFn>,
}

const fn mapped(
    event_type: &'static str,
    effects: &'static [&'static str],
    notes: &'static str,
    map: MapFn,
) -> Entry {
    Entry {
        event_type,
        class: Class::Mapped,
        effects,
        notes,
        map: Some(map),
    }
}

const fn by_design(event_type: &'static str, notes: &'static str) -> Entry {
    Entry {
        event_type,
        class: Class::ByDesign,
        effects: &["event.ignored"],
        notes,
        map: None,
    }
}

const fn legacy(
    event_type: &'static str,
    effects: &'static [&'static str],
    notes: &'static str,
    map: MapFn,
) -> Entry {
    Entry {
        event_type,
        class: Class::Legacy,
        effects,
        notes,
        map: Some(map),
    }
}

const PAYMENT_SUCCEEDED: &[&str] = &["payment.succeeded", "wallet.deposit_confirmed"];
const INVOICE: &[&str] = &["invoice.status_changed"];
const SUBSCRIPTION: &[&str] = &["subscription.changed", "license.count_set"];
const CUSTOMER: &[&str] = &["customer.changed"];
const PAYMENT_METHOD: &[&str] = &["payment_method.changed"];
const PAYOUT: &[&str] = &["payout.changed"];
const TRANSFER: &[&str] = &["transfer.changed"];
const REFUND: &[&str] = &["refund.updated", "refund.failed"];

const SUB_NOTES: &str = "status, the license items' summed quantity, the plan's price, current period start and end (per item since API 2025-03-31), trial_end, cancel_at_period_end, the subscription's metadata (a contract id links without another Stripe call). Applied in event-time order; canceled is final. license.count_set follows when the quantity differs from the count last announced (seed 004: count = quantity).";
const INVOICE_NOTES: &str = "The invoice's own status, amount_paid, amount_due, hosted_invoice_url, invoice_pdf; tenant from its or its subscription's metadata. Never leaves paid or void.";
const CHARGE_NOTES: &str = "payment_intent.* reports the same change of the same payment; mapping both would announce each payment twice.";
const PM_NOTES: &str = "type, card brand, last4, expiry, customer. Applied in event-time order; detached is final (Stripe does not reuse a detached method).";
const LEGACY_SOURCE: &str =
    "Replaced by payment_method.* (and customer.source.* for sources). Mapped like them.";
const PAYOUT_NOTES: &str = "amount, status, arrival_date, destination, failure code and message; the connected account's tenant. pending < in_transit < paid < failed/canceled (a paid payout can still fail). Ledger: tenant → paid_out when first seen, back when failed or canceled.";
const TRANSFER_NOTES: &str = "amount, amount_reversed (cumulative, only grows), destination account, transfer_group, metadata reference. Seed 002's withdrawals: the reversal of a withdrawal's transfer (metadata.psa_billing_request) posts its growth paid_out → contractor to the tenant's ledger.";
const SCHEDULE_NOTES: &str = "A schedule acts through its subscription: each phase change arrives as customer.subscription.*, which is mapped.";
const PERSON_NOTES: &str = "What a person's details mean for the account (requirements due, charges and payouts enabled) arrives in account.updated, which is mapped.";
const EXTERNAL_ACCOUNT_NOTES: &str =
    "Where payouts go; each payout's destination and outcome arrive in payout.*, which is mapped.";

/// Every type the plugin knows, grouped by object.
pub const CATALOG: &[Entry] = &[
    // Payment intents.
    mapped(
        "payment_intent.succeeded",
        PAYMENT_SUCCEEDED,
        "amount_received (else amount), application_fee_amount, customer, metadata tenant and reference. Posts customer → tenant and the application fee tenant → platform to the tenant's ledger, once per payment intent. metadata.type = deposit (seed 002) is the customer's money, not revenue: it posts customer → wallet:<metadata.walletId, else the customer> instead, and also emits wallet.deposit_confirmed.",
        payment_succeeded,
    ),
    mapped(
        "payment_intent.payment_failed",
        &["payment.failed"],
        "last_payment_error code, decline_code and message. Never undoes a success.",
        payment_failed,
    ),
    mapped(
        "payment_intent.processing",
        &["payment.processing"],
        "Money is on its way (bank debits).",
        |c, s| payment_update(c, s, "processing"),
    ),
    mapped(
        "payment_intent.requires_action",
        &["payment.requires_action"],
        "The customer must authenticate (seed 001 emails them).",
        |c, s| payment_update(c, s, "requires_action"),
    ),
    mapped(
        "payment_intent.canceled",
        &["payment.canceled"],
        "cancellation_reason. Final.",
        |c, s| payment_update(c, s, "canceled"),
    ),
    mapped(
        "payment_intent.amount_capturable_updated",
        &["payment.capturable"],
        "Authorized, waiting for capture (manual capture).",
        |c, s| payment_update(c, s, "requires_capture"),
    ),
    mapped(
        "payment_intent.partially_funded",
        &["payment.partially_funded"],
        "A bank transfer paid part of the amount.",
        |c, s| payment_update(c, s, "partially_funded"),
    ),
    by_design(
        "payment_intent.created",
        "nothing has happened to the money yet; the application created the intent and knows it.",
    ),
    // Charges.
    mapped(
        "charge.refunded",
        &["refund.recorded"],
        "amount_refunded is cumulative: the refund reported is its growth since the largest total applied, so partial refunds accumulate and repeats apply nothing. Refunds listed on the charge (older API versions) are posted per refund; the rest of the total is posted tenant → customer as unmatched until its refund objects arrive. Not ready until the payment is seen, unless the charge names its tenant.",
        refunds::refund_recorded,
    ),
    by_design("charge.succeeded", CHARGE_NOTES),
    by_design("charge.failed", CHARGE_NOTES),
    by_design("charge.captured", CHARGE_NOTES),
    by_design("charge.pending", CHARGE_NOTES),
    by_design(
        "charge.updated",
        "only descriptive fields (description, metadata, receipt) change on an existing charge.",
    ),
    mapped(
        "charge.refund.updated",
        REFUND,
        "Same as refund.updated.",
        refunds::refund_changed,
    ),
    // Refunds.
    mapped(
        "refund.created",
        REFUND,
        "amount, status, reason, failure_reason. pending < succeeded < failed/canceled. Posts the refund tenant → customer once per refund id (refund:<id>); a failed or canceled refund also posts its return customer → tenant (refund:<id>:failed), as Stripe's refund_failure balance transaction does.",
        refunds::refund_changed,
    ),
    mapped(
        "refund.updated",
        REFUND,
        "As refund.created.",
        refunds::refund_changed,
    ),
    mapped(
        "refund.failed",
        REFUND,
        "The refund did not reach the customer (failure_reason): its posting is returned customer → tenant. Final.",
        refunds::refund_changed,
    ),
    // Application fees.
    mapped(
        "application_fee.refunded",
        &["application_fee.refunded"],
        "amount_refunded is cumulative: its growth since the largest total applied is posted platform → tenant, to the ledger of the tenant the fee's account is registered to. Sent for refunds with refund_application_fee and for the platform's own fee refunds.",
        refunds::application_fee_refunded,
    ),
    by_design(
        "application_fee.created",
        "the fee is posted with its payment (payment_intent.succeeded's application_fee_amount).",
    ),
    by_design(
        "application_fee.refund.updated",
        "only a fee refund's metadata changes; the money is in application_fee.refunded.",
    ),
    // Disputes.
    mapped(
        "charge.dispute.created",
        &["dispute.opened"],
        "amount, reason, status, evidence_details.due_by. needs_response < under_review < won/lost: a dispute never reopens.",
        |c, s| dispute_update(c, s, Effect::DisputeOpened),
    ),
    mapped(
        "charge.dispute.updated",
        &["dispute.updated"],
        "As charge.dispute.created.",
        |c, s| dispute_update(c, s, Effect::DisputeUpdated),
    ),
    mapped(
        "charge.dispute.closed",
        &["dispute.closed"],
        "status won or lost: the outcome.",
        |c, s| dispute_update(c, s, Effect::DisputeClosed),
    ),
    mapped(
        "charge.dispute.funds_withdrawn",
        &["dispute.funds_withdrawn"],
        "Posts tenant → customer and Stripe's dispute fee (from balance_transactions) tenant → processor, once per dispute.",
        |c, s| dispute_funds(c, s, true),
    ),
    mapped(
        "charge.dispute.funds_reinstated",
        &["dispute.funds_reinstated"],
        "Posts the funds back, once per dispute: withdrawn then reinstated nets out in any order.",
        |c, s| dispute_funds(c, s, false),
    ),
    // Fraud.
    mapped(
        "radar.early_fraud_warning.created",
        &["fraud.warning"],
        "fraud_type, actionable (refunding can still avoid a dispute), charge and payment intent; tenant from the payment.",
        risk::fraud_warning,
    ),
    mapped(
        "radar.early_fraud_warning.updated",
        &["fraud.warning"],
        "As created; actionable turns false once a refund or dispute settles it.",
        risk::fraud_warning,
    ),
    mapped(
        "review.opened",
        &["review.opened"],
        "reason (rule or manual), charge and payment intent.",
        |c, s| risk::review(c, s, true),
    ),
    mapped(
        "review.closed",
        &["review.closed"],
        "reason: approved, refunded, refunded_as_fraud, disputed or redacted. A closed review stays closed.",
        |c, s| risk::review(c, s, false),
    ),
    // Checkout.
    mapped(
        "checkout.session.completed",
        &["checkout.completed"],
        "mode, payment_status (unpaid while an asynchronous method settles), amount_total, customer, payment intent, subscription, invoice, client_reference_id or metadata reference.",
        |c, s| customers::checkout(c, s, None, Effect::CheckoutCompleted),
    ),
    mapped(
        "checkout.session.async_payment_succeeded",
        &["checkout.completed"],
        "payment_status paid. Final.",
        |c, s| customers::checkout(c, s, None, Effect::CheckoutCompleted),
    ),
    mapped(
        "checkout.session.async_payment_failed",
        &["checkout.payment_failed"],
        "The asynchronous payment of a completed session failed. Final.",
        |c, s| customers::checkout(c, s, Some("payment_failed"), Effect::CheckoutPaymentFailed),
    ),
    mapped(
        "checkout.session.expired",
        &["checkout.expired"],
        "Never paid. Final.",
        |c, s| customers::checkout(c, s, Some("expired"), Effect::CheckoutExpired),
    ),
    // Invoices.
    mapped("invoice.created", INVOICE, INVOICE_NOTES, |c, s| {
        invoice_status(c, s, None)
    }),
    mapped("invoice.updated", INVOICE, INVOICE_NOTES, |c, s| {
        invoice_status(c, s, None)
    }),
    mapped("invoice.finalized", INVOICE, INVOICE_NOTES, |c, s| {
        invoice_status(c, s, None)
    }),
    mapped("invoice.payment_failed", INVOICE, INVOICE_NOTES, |c, s| {
        invoice_status(c, s, None)
    }),
    mapped(
        "invoice.payment_action_required",
        INVOICE,
        INVOICE_NOTES,
        |c, s| invoice_status(c, s, None),
    ),
    mapped(
        "invoice.paid",
        INVOICE,
        "status paid, whatever the object says. Final.",
        |c, s| invoice_status(c, s, Some("paid")),
    ),
    mapped(
        "invoice.payment_succeeded",
        INVOICE,
        "As invoice.paid.",
        |c, s| invoice_status(c, s, Some("paid")),
    ),
    mapped("invoice.voided", INVOICE, "status void. Final.", |c, s| {
        invoice_status(c, s, Some("void"))
    }),
    mapped(
        "invoice.marked_uncollectible",
        INVOICE,
        "status uncollectible; it can still be paid or voided.",
        |c, s| invoice_status(c, s, Some("uncollectible")),
    ),
    by_design(
        "invoice.upcoming",
        "a preview, not an invoice (it has no id): invoice.created follows when Stripe drafts the real one, and Stripe's own reminder emails cover the notice.",
    ),
    // Subscriptions and licenses.
    mapped(
        "customer.subscription.created",
        SUBSCRIPTION,
        SUB_NOTES,
        subscription_changed,
    ),
    mapped(
        "customer.subscription.updated",
        SUBSCRIPTION,
        SUB_NOTES,
        subscription_changed,
    ),
    mapped(
        "customer.subscription.deleted",
        SUBSCRIPTION,
        SUB_NOTES,
        subscription_changed,
    ),
    mapped(
        "customer.subscription.trial_will_end",
        SUBSCRIPTION,
        "Three days before a trial ends: the subscription as it stands.",
        subscription_changed,
    ),
    mapped(
        "customer.subscription.paused",
        SUBSCRIPTION,
        "status paused.",
        subscription_changed,
    ),
    mapped(
        "customer.subscription.resumed",
        SUBSCRIPTION,
        "status active again.",
        subscription_changed,
    ),
    by_design("subscription_schedule.created", SCHEDULE_NOTES),
    by_design("subscription_schedule.updated", SCHEDULE_NOTES),
    by_design("subscription_schedule.canceled", SCHEDULE_NOTES),
    by_design("subscription_schedule.completed", SCHEDULE_NOTES),
    by_design("subscription_schedule.released", SCHEDULE_NOTES),
    by_design("subscription_schedule.expiring", SCHEDULE_NOTES),
    // Customers and their ways to pay.
    mapped(
        "customer.created",
        CUSTOMER,
        "email, name; applied in event-time order; deleted is final.",
        customers::customer,
    ),
    mapped(
        "customer.updated",
        CUSTOMER,
        "As customer.created.",
        customers::customer,
    ),
    mapped(
        "customer.deleted",
        CUSTOMER,
        "deleted: true. Final.",
        customers::customer,
    ),
    mapped(
        "payment_method.attached",
        PAYMENT_METHOD,
        PM_NOTES,
        |c, s| customers::payment_method(c, s, "attached"),
    ),
    mapped(
        "payment_method.detached",
        PAYMENT_METHOD,
        PM_NOTES,
        |c, s| customers::payment_method(c, s, "detached"),
    ),
    mapped(
        "payment_method.updated",
        PAYMENT_METHOD,
        PM_NOTES,
        |c, s| customers::payment_method(c, s, "updated"),
    ),
    mapped(
        "payment_method.automatically_updated",
        PAYMENT_METHOD,
        "The card network sent new details (expiry, number). As payment_method.attached.",
        |c, s| customers::payment_method(c, s, "automatically_updated"),
    ),
    mapped(
        "customer.source.created",
        PAYMENT_METHOD,
        "A legacy source (card_, ba_, src_) attached to a customer. As payment_method.*.",
        |c, s| customers::payment_method(c, s, "attached"),
    ),
    mapped(
        "customer.source.updated",
        PAYMENT_METHOD,
        "As customer.source.created.",
        |c, s| customers::payment_method(c, s, "updated"),
    ),
    mapped(
        "customer.source.deleted",
        PAYMENT_METHOD,
        "change detached. Final.",
        |c, s| customers::payment_method(c, s, "detached"),
    ),
    mapped(
        "customer.source.expiring",
        PAYMENT_METHOD,
        "change expiring: the card expires at the end of the month.",
        |c, s| customers::payment_method(c, s, "expiring"),
    ),
    legacy(
        "customer.card.created",
        PAYMENT_METHOD,
        LEGACY_SOURCE,
        |c, s| customers::payment_method(c, s, "attached"),
    ),
    legacy(
        "customer.card.updated",
        PAYMENT_METHOD,
        LEGACY_SOURCE,
        |c, s| customers::payment_method(c, s, "updated"),
    ),
    legacy(
        "customer.card.deleted",
        PAYMENT_METHOD,
        LEGACY_SOURCE,
        |c, s| customers::payment_method(c, s, "detached"),
    ),
    legacy(
        "customer.bank_account.created",
        PAYMENT_METHOD,
        LEGACY_SOURCE,
        |c, s| customers::payment_method(c, s, "attached"),
    ),
    legacy(
        "customer.bank_account.updated",
        PAYMENT_METHOD,
        LEGACY_SOURCE,
        |c, s| customers::payment_method(c, s, "updated"),
    ),
    legacy(
        "customer.bank_account.deleted",
        PAYMENT_METHOD,
        LEGACY_SOURCE,
        |c, s| customers::payment_method(c, s, "detached"),
    ),
    legacy(
        "payment_method.card_automatically_updated",
        PAYMENT_METHOD,
        "Replaced by payment_method.automatically_updated. Mapped like it.",
        |c, s| customers::payment_method(c, s, "automatically_updated"),
    ),
    // Connect accounts.
    mapped(
        "account.updated",
        &["account.status_changed"],
        "charges_enabled, payouts_enabled, details_submitted, requirements.currently_due and disabled_reason (seed 000's onboarding). Applied in event-time order.",
        account_updated,
    ),
    mapped(
        "account.application.authorized",
        &["account.authorized"],
        "The account connected the platform (the application id). The later of authorized and deauthorized stands.",
        |c, s| account_application(c, s, true),
    ),
    mapped(
        "account.application.deauthorized",
        &["account.deauthorized"],
        "The account disconnected the platform: stop charging on its behalf.",
        |c, s| account_application(c, s, false),
    ),
    by_design(
        "capability.updated",
        "a capability's status decides charges_enabled and payouts_enabled, which arrive in account.updated, which is mapped.",
    ),
    by_design("person.created", PERSON_NOTES),
    by_design("person.updated", PERSON_NOTES),
    by_design("person.deleted", PERSON_NOTES),
    by_design("account.external_account.created", EXTERNAL_ACCOUNT_NOTES),
    by_design("account.external_account.updated", EXTERNAL_ACCOUNT_NOTES),
    by_design("account.external_account.deleted", EXTERNAL_ACCOUNT_NOTES),
    // Money leaving: payouts and transfers.
    mapped("payout.created", PAYOUT, PAYOUT_NOTES, money_out::payout),
    mapped("payout.updated", PAYOUT, PAYOUT_NOTES, money_out::payout),
    mapped("payout.paid", PAYOUT, PAYOUT_NOTES, money_out::payout),
    mapped("payout.failed", PAYOUT, PAYOUT_NOTES, money_out::payout),
    mapped("payout.canceled", PAYOUT, PAYOUT_NOTES, money_out::payout),
    mapped(
        "payout.reconciliation_completed",
        PAYOUT,
        PAYOUT_NOTES,
        money_out::payout,
    ),
    mapped(
        "transfer.created",
        TRANSFER,
        TRANSFER_NOTES,
        money_out::transfer,
    ),
    mapped(
        "transfer.updated",
        TRANSFER,
        TRANSFER_NOTES,
        money_out::transfer,
    ),
    mapped(
        "transfer.reversed",
        TRANSFER,
        TRANSFER_NOTES,
        money_out::transfer,
    ),
    legacy(
        "transfer.paid",
        TRANSFER,
        "Replaced by payout.paid on the connected account: a transfer lands in its Stripe balance at once; money reaching a bank is a payout.",
        money_out::transfer,
    ),
    legacy(
        "transfer.canceled",
        TRANSFER,
        "Replaced by transfer.reversed (and payout.canceled for money on its way to a bank).",
        money_out::transfer,
    ),
];

/// The catalog entry of an event type.
pub fn entry(event_type: &str) -> Option<&'static Entry> {
    CATALOG.iter().find(|e| e.event_type == event_type)
}

/// The catalog as Markdown, for `docs/events.md`. `others` is how many more
/// types Stripe sends (its full list) that are recorded as `event.ignored`.
pub fn catalog_markdown(others: usize) -> String {
    let count = |class| CATALOG.iter().filter(|e| e.class == class).count();
    let mut md = String::from(
        "# Stripe event catalog\n\n\
         Generated from `plugin/core/src/mapping/catalog.rs` (the plugin's dispatch \
         table) by `cargo test -p psa-billing-core --test catalog`, which fails when \
         this file differs; `BLESS=1` rewrites it.\n\n\
         Routing: an effect's `tenant` is the tenant registered for the event's \
         connected account (`psa-billing tenants register acct_... TENANT`, \
         `PUT /v1/tenants/{account}`), else the first metadata key of the \
         configured tenant keys (default `tenant_id`; `--tenant-key tenant_id,orgId` \
         sets a list with an alias). Objects about a payment (refunds, disputes, fraud warnings, \
         reviews) fall back to the tenant their payment was posted under. An \
         effect that should name a tenant and cannot is stored with \
         `\"unrouted\": true`, never dropped. `reference` comes from the configured \
         reference keys (default `reference`, `invoice_id`).\n\n",
    );
    md.push_str(&format!(
        "{} types mapped, {} recorded without effect by design, {} legacy types \
         accepted; the {others} other types of Stripe's list are recorded as \
         `event.ignored` (\"type not used\"), never an error.\n\n",
        count(Class::Mapped),
        count(Class::ByDesign),
        count(Class::Legacy),
    ));
    md.push_str(
        "Every mapped event may also yield `event.ignored` with a `stale: ...` reason \
         when it would move its object backwards (see ARCHITECTURE.md, invariants).\n\n\
         | event type | effects | class | notes |\n|---|---|---|---|\n",
    );
    for e in CATALOG {
        let class = match e.class {
            Class::Mapped => "mapped",
            Class::ByDesign => "no effect, by design",
            Class::Legacy => "legacy",
        };
        let effects: Vec<String> = e.effects.iter().map(|k| format!("`{k}`")).collect();
        md.push_str(&format!(
            "| `{}` | {} | {class} | {} |\n",
            e.event_type,
            effects.join(", "),
            e.notes.replace('|', "\\|")
        ));
    }
    md
}
