//! The records of the money-moving writes (payment intents, refunds,
//! transfers) read from Stripe's answer as plain JSON, by the fields
//! psa-billing needs alone: used when async-stripe's type cannot read an
//! answer (a field it does not know, an API version ahead of it), because
//! the write has happened at Stripe and must be recorded as done.
//!
//! Knows nothing about sending: `stripe::mod` calls it with the answer.

use crate::bindings::psa::billing::stripe as wit;
use crate::bindings::psa::billing::types::Money;
use serde_json::Value;

fn text(v: &Value, key: &str) -> Option<String> {
    v[key].as_str().map(str::to_string)
}

/// An id field: the id itself, or an expanded object's `id`.
fn id_of(v: &Value, key: &str) -> Option<String> {
    match &v[key] {
        Value::String(id) => Some(id.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn money(v: &Value, amount: &str) -> Option<Money> {
    Some(Money {
        amount: v[amount].as_i64()?,
        currency: text(v, "currency")?,
    })
}

fn metadata(v: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = v["metadata"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    pairs
}

/// A payment intent's id, amount, status and links.
pub(super) fn payment_intent(v: &Value) -> Option<wit::PaymentIntent> {
    Some(wit::PaymentIntent {
        id: text(v, "id")?,
        amount: money(v, "amount")?,
        status: text(v, "status")?,
        application_fee_amount: v["application_fee_amount"].as_i64(),
        transfer_destination: id_of(&v["transfer_data"], "destination"),
        latest_charge: id_of(v, "latest_charge"),
        customer: id_of(v, "customer"),
        client_secret: text(v, "client_secret"),
        metadata: metadata(v),
    })
}

/// A refund's id, amount, status and payment.
pub(super) fn refund(v: &Value) -> Option<wit::Refund> {
    Some(wit::Refund {
        id: text(v, "id")?,
        amount: money(v, "amount")?,
        status: text(v, "status"),
        payment_intent: id_of(v, "payment_intent"),
    })
}

/// A transfer's id, amount, destination and what was reversed.
pub(super) fn transfer(v: &Value) -> Option<wit::Transfer> {
    Some(wit::Transfer {
        id: text(v, "id")?,
        amount: money(v, "amount")?,
        destination: id_of(v, "destination"),
        amount_reversed: v["amount_reversed"].as_i64().unwrap_or(0),
    })
}
