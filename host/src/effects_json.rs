//! The JSON form of effects, as stored in the outbox and served by
//! `GET /v1/effects`: the WIT record's fields in snake_case plus a `kind`.

use crate::db::NewEffect;
use crate::runtime::{DisputeFunds, DisputeUpdate, Effect, Money, PaymentUpdate};
use serde_json::{Value, json};

fn money(m: &Money) -> Value {
    json!({ "amount": m.amount, "currency": m.currency })
}

fn update(u: &PaymentUpdate) -> Value {
    json!({
        "payment_intent": u.payment_intent,
        "amount": money(&u.amount),
        "tenant": u.tenant,
        "account": u.account,
        "reference": u.reference,
        "cancellation_reason": u.cancellation_reason,
    })
}

fn dispute(d: &DisputeUpdate) -> Value {
    json!({
        "dispute": d.dispute,
        "charge": d.charge,
        "payment_intent": d.payment_intent,
        "amount": money(&d.amount),
        "reason": d.reason,
        "status": d.status,
        "evidence_due_by": d.evidence_due_by,
        "tenant": d.tenant,
        "account": d.account,
    })
}

fn funds(f: &DisputeFunds) -> Value {
    json!({
        "dispute": f.dispute,
        "charge": f.charge,
        "amount": money(&f.amount),
        "fee": f.fee.as_ref().map(money),
        "tenant": f.tenant,
        "account": f.account,
    })
}

pub fn to_json(effect: &Effect) -> NewEffect {
    let (kind, body) = match effect {
        Effect::PaymentSucceeded(p) => (
            "payment.succeeded",
            json!({
                "payment_intent": p.payment_intent,
                "amount": money(&p.amount),
                "tenant": p.tenant,
                "account": p.account,
                "customer": p.customer,
                "reference": p.reference,
                "application_fee": p.application_fee.as_ref().map(money),
            }),
        ),
        Effect::PaymentFailed(p) => (
            "payment.failed",
            json!({
                "payment_intent": p.payment_intent,
                "amount": money(&p.amount),
                "tenant": p.tenant,
                "account": p.account,
                "reference": p.reference,
                "code": p.code,
                "decline_code": p.decline_code,
                "message": p.message,
            }),
        ),
        Effect::PaymentProcessing(u) => ("payment.processing", update(u)),
        Effect::PaymentRequiresAction(u) => ("payment.requires_action", update(u)),
        Effect::PaymentCanceled(u) => ("payment.canceled", update(u)),
        Effect::InvoiceStatusChanged(i) => (
            "invoice.status_changed",
            json!({
                "invoice": i.invoice,
                "status": i.status,
                "amount_paid": money(&i.amount_paid),
                "amount_due": money(&i.amount_due),
                "tenant": i.tenant,
                "account": i.account,
                "customer": i.customer,
                "subscription": i.subscription,
                "hosted_invoice_url": i.hosted_invoice_url,
                "invoice_pdf": i.invoice_pdf,
            }),
        ),
        Effect::RefundRecorded(r) => (
            "refund.recorded",
            json!({
                "charge": r.charge,
                "payment_intent": r.payment_intent,
                "amount": money(&r.amount),
                "total_refunded": money(&r.total_refunded),
                "full": r.full,
                "tenant": r.tenant,
                "account": r.account,
                "reference": r.reference,
            }),
        ),
        Effect::SubscriptionChanged(c) => (
            "subscription.changed",
            json!({
                "subscription": c.subscription,
                "status": c.status,
                "quantity": c.quantity,
                "current_period_end": c.current_period_end,
                "cancel_at_period_end": c.cancel_at_period_end,
                "tenant": c.tenant,
                "account": c.account,
                "customer": c.customer,
            }),
        ),
        Effect::AccountStatusChanged(a) => (
            "account.status_changed",
            json!({
                "account": a.account,
                "charges_enabled": a.charges_enabled,
                "payouts_enabled": a.payouts_enabled,
                "details_submitted": a.details_submitted,
                "requirements_due": a.requirements_due,
                "disabled_reason": a.disabled_reason,
                "tenant": a.tenant,
            }),
        ),
        Effect::AccountDeauthorized(a) => (
            "account.deauthorized",
            json!({ "account": a.account, "application": a.application }),
        ),
        Effect::DisputeOpened(d) => ("dispute.opened", dispute(d)),
        Effect::DisputeUpdated(d) => ("dispute.updated", dispute(d)),
        Effect::DisputeClosed(d) => ("dispute.closed", dispute(d)),
        Effect::DisputeFundsWithdrawn(f) => ("dispute.funds_withdrawn", funds(f)),
        Effect::DisputeFundsReinstated(f) => ("dispute.funds_reinstated", funds(f)),
        Effect::LicenseCountSet(l) => (
            "license.count_set",
            json!({ "subscription": l.subscription, "tenant": l.tenant, "count": l.count }),
        ),
        Effect::EventIgnored(i) => (
            "event.ignored",
            json!({ "event_type": i.event_type, "reason": i.reason }),
        ),
    };
    // `kind` first, for people reading the outbox.
    let mut with_kind = serde_json::Map::from_iter([("kind".to_string(), Value::from(kind))]);
    if let Value::Object(fields) = body {
        with_kind.extend(fields);
    }
    let body = Value::Object(with_kind);
    NewEffect {
        kind: kind.to_string(),
        body,
    }
}
