//! The mapping of events onto effects, one file per family of objects,
//! and here the shared event builders and the envelope's cases (unknown
//! types, missing fields).

use super::*;
use crate::state::MemoryState;
use std::collections::BTreeMap;

mod accounts;
mod billing;
mod delivery_order;
mod disputes;
mod payments;

/// An event body of `kind` about `object`, for the family files' tests.
pub(super) fn event(id: &str, kind: &str, created: i64, object: Value) -> Vec<u8> {
    json!({"id": id, "object": "event", "type": kind, "created": created,
           "data": {"object": object}})
    .to_string()
    .into_bytes()
}

fn pi(status: &str) -> Value {
    json!({"id": "pi_1", "object": "payment_intent", "amount": 10000,
           "amount_received": if status == "succeeded" { 10000 } else { 0 },
           "currency": "usd", "status": status, "customer": "cus_1",
           "application_fee_amount": 250,
           "metadata": {"tenant_id": "t_1", "invoice_id": "inv-42"},
           "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds",
                                  "message": "Your card has insufficient funds."}})
}

fn charge(refunded: i64) -> Value {
    json!({"id": "ch_1", "object": "charge", "amount": 10000, "amount_refunded": refunded,
           "currency": "usd", "payment_intent": "pi_1", "refunded": refunded == 10000,
           "metadata": {}})
}

fn subscription(status: &str, quantity: i64) -> Value {
    json!({"id": "sub_1", "object": "subscription", "status": status, "customer": "cus_1",
           "cancel_at_period_end": false, "metadata": {"tenant_id": "t_1"},
           "items": {"data": [{"id": "si_1", "quantity": quantity, "current_period_end": 2000}]}})
}

fn kinds(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .map(|e| match e {
            Effect::SubscriptionChanged(s) => format!("changed:{}:{}", s.status, s.quantity),
            Effect::LicenseCountSet(l) => format!("count:{}", l.count),
            Effect::EventIgnored(i) => format!("ignored:{}", &i.reason[..5]),
            other => format!("{other:?}"),
        })
        .collect()
}

fn dispute(status: &str) -> Value {
    json!({"id": "dp_1", "object": "dispute", "amount": 10000, "currency": "usd",
           "charge": "ch_1", "payment_intent": "pi_1", "reason": "fraudulent",
           "status": status, "evidence_details": {"due_by": 99}, "metadata": {},
           "balance_transactions": [{"amount": -10000, "fee": 1500}]})
}

fn invoice(status: &str) -> Value {
    json!({"id": "in_1", "object": "invoice", "status": status, "currency": "usd",
           "amount_due": 5000, "amount_paid": if status == "paid" { 5000 } else { 0 },
           "customer": "cus_1", "metadata": {"tenant_id": "t_1"}})
}

#[test]
fn unknown_types_are_ignored_not_errors() {
    let mut s = MemoryState::default();
    let fx = handle(&event("evt_1", "balance.available", 1, json!({})), &mut s).unwrap();
    assert_eq!(fx, vec![ignored("balance.available", "type not used")]);
    assert!(s.entries.is_empty());
}

#[test]
fn missing_fields_are_named() {
    let mut s = MemoryState::default();
    let err = handle(
        &event(
            "evt_1",
            "payment_intent.succeeded",
            1,
            json!({"id": "pi_1"}),
        ),
        &mut s,
    )
    .unwrap_err();
    assert_eq!(err, HandleError::MissingField("data.object.amount".into()));
    let no_object = br#"{"id":"evt_1","type":"invoice.paid","created":1,"data":{}}"#;
    assert_eq!(
        handle(no_object, &mut s).unwrap_err(),
        HandleError::MissingField("data.object".into())
    );
}
