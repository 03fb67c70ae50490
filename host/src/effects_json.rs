//! The JSON form of effects, as stored in the outbox and served by
//! `GET /v1/effects`: the WIT record's fields in snake_case (serialised by
//! the serde derive on the generated bindings) plus a `kind`, and
//! `unrouted: true` when the effect names no tenant.

use crate::db::NewEffect;
use crate::runtime::Effect;
use serde_json::Value;

/// The effect's `kind`: the catalog's name for it.
pub fn kind(effect: &Effect) -> &'static str {
    match effect {
        Effect::PaymentSucceeded(_) => "payment.succeeded",
        Effect::PaymentFailed(_) => "payment.failed",
        Effect::PaymentProcessing(_) => "payment.processing",
        Effect::PaymentRequiresAction(_) => "payment.requires_action",
        Effect::PaymentCanceled(_) => "payment.canceled",
        Effect::PaymentCapturable(_) => "payment.capturable",
        Effect::PaymentPartiallyFunded(_) => "payment.partially_funded",
        Effect::InvoiceStatusChanged(_) => "invoice.status_changed",
        Effect::RefundRecorded(_) => "refund.recorded",
        Effect::SubscriptionChanged(_) => "subscription.changed",
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

pub fn to_json(effect: &Effect) -> NewEffect {
    let kind = kind(effect);
    // serde writes a variant as `{"VariantName": {fields}}`: keep the fields.
    let fields = match serde_json::to_value(effect) {
        Ok(Value::Object(variant)) => variant.into_iter().next().map(|(_, v)| v),
        _ => None,
    };
    // `kind` first, for people reading the outbox.
    let mut body = serde_json::Map::from_iter([("kind".to_string(), Value::from(kind))]);
    if let Some(Value::Object(fields)) = fields {
        // An effect about someone whose tenant could not be found is kept,
        // marked for the application to route by hand.
        if fields.get("tenant") == Some(&Value::Null) {
            body.insert("unrouted".into(), Value::Bool(true));
        }
        body.extend(fields);
    }
    NewEffect {
        kind: kind.to_string(),
        body: Value::Object(body),
    }
}
