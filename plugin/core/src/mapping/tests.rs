//! The mapping of events onto effects, event by event.

use super::*;
use crate::state::MemoryState;
use std::collections::BTreeMap;

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

#[test]
fn a_payment_is_posted_to_the_tenants_ledger_once() {
    let mut s = MemoryState::default();
    let body = event("evt_1", "payment_intent.succeeded", 10, pi("succeeded"));
    handle(&body, &mut s).unwrap();
    // A second event about the same payment intent (Stripe resends under
    // a new id, for example) must not post it again.
    let again = event("evt_2", "payment_intent.succeeded", 11, pi("succeeded"));
    handle(&again, &mut s).unwrap();
    let book = ledger::book(&mut s, "t_1").unwrap();
    let usd = &book.balances["usd"];
    assert_eq!(usd["customer"], -10_000);
    assert_eq!(usd["tenant"], 9_750);
    assert_eq!(usd["platform"], 250);
    assert_eq!(ledger::transactions(&mut s, "t_1", 0, 10).unwrap().len(), 1);
}

#[test]
fn a_payment_contradicting_what_its_id_already_holds_is_refused_loudly() {
    let mut s = MemoryState::default();
    // Something else already posted under the payment's own id.
    let earlier = ledger::Posting {
        id: "pi_1:payment".into(),
        tenant: "t_1".into(),
        currency: "usd".into(),
        description: "hand-made".into(),
        at: 1,
        source: None,
        transfers: vec![ledger::Transfer::new("customer", "tenant", 100)],
    };
    ledger::post(&mut s, earlier).unwrap();
    let body = event("evt_1", "payment_intent.succeeded", 10, pi("succeeded"));
    match handle(&body, &mut s) {
        Err(HandleError::Malformed(why)) => assert!(why.contains("contradicts"), "{why}"),
        other => panic!("a silent success: {other:?}"),
    }
}

fn charge(refunded: i64) -> Value {
    json!({"id": "ch_1", "object": "charge", "amount": 10000, "amount_refunded": refunded,
           "currency": "usd", "payment_intent": "pi_1", "refunded": refunded == 10000,
           "metadata": {}})
}

#[test]
fn refunds_accumulate_in_any_order_and_reach_the_payments_ledger() {
    let mut s = MemoryState::default();
    handle(
        &event("evt_p", "payment_intent.succeeded", 10, pi("succeeded")),
        &mut s,
    )
    .unwrap();
    let partial = event("evt_r1", "charge.refunded", 20, charge(3_000));
    let full = event("evt_r2", "charge.refunded", 30, charge(10_000));
    let fx = handle(&partial, &mut s).unwrap();
    match &fx[0] {
        Effect::RefundRecorded(r) => {
            assert_eq!(
                (r.amount.amount, r.total_refunded.amount, r.full),
                (3_000, 3_000, false)
            );
        }
        other => panic!("{other:?}"),
    }
    let fx = handle(&full, &mut s).unwrap();
    assert!(matches!(&fx[0], Effect::RefundRecorded(r) if r.amount.amount == 7_000 && r.full));
    // The partial one again, late: stale, nothing posted twice.
    let fx = handle(&partial, &mut s).unwrap();
    assert!(matches!(&fx[0], Effect::EventIgnored(i) if i.reason.starts_with("stale")));
    // The charge has no tenant metadata: the refund follows the payment's ledger.
    let usd = &ledger::book(&mut s, "t_1").unwrap().balances["usd"];
    assert_eq!(usd["customer"], 0);
    assert_eq!(usd["tenant"], -250);
    assert_eq!(usd["platform"], 250);

    // Delivered the other way round, the full refund alone accounts for everything.
    let mut s2 = MemoryState::default();
    handle(
        &event("evt_p", "payment_intent.succeeded", 10, pi("succeeded")),
        &mut s2,
    )
    .unwrap();
    handle(&full, &mut s2).unwrap();
    let fx = handle(&partial, &mut s2).unwrap();
    assert!(matches!(&fx[0], Effect::EventIgnored(_)));
    assert_eq!(
        ledger::book(&mut s2, "t_1").unwrap().balances,
        ledger::book(&mut s, "t_1").unwrap().balances
    );
    let over = event("evt_r3", "charge.refunded", 40, charge(10_001));
    assert!(matches!(
        handle(&over, &mut s2),
        Err(HandleError::MissingField(_))
    ));
}

#[test]
fn payment_intent_lifecycle_never_moves_backwards() {
    let mut s = MemoryState::default();
    let kinds = |fx: Vec<Effect>| match &fx[0] {
        Effect::PaymentRequiresAction(_) => "requires_action",
        Effect::PaymentProcessing(_) => "processing",
        Effect::PaymentSucceeded(_) => "succeeded",
        Effect::PaymentCanceled(_) => "canceled",
        Effect::EventIgnored(i) if i.reason.starts_with("stale") => "stale",
        other => panic!("{other:?}"),
    };
    let mut step = |id: &str, kind: &str, created: i64, status: &str| {
        kinds(handle(&event(id, kind, created, pi(status)), &mut s).unwrap())
    };
    assert_eq!(
        step(
            "e1",
            "payment_intent.requires_action",
            10,
            "requires_action"
        ),
        "requires_action"
    );
    assert_eq!(
        step("e2", "payment_intent.processing", 20, "processing"),
        "processing"
    );
    assert_eq!(
        step("e3", "payment_intent.succeeded", 30, "succeeded"),
        "succeeded"
    );
    // Late arrivals of earlier states are stale; a cancel after success too.
    assert_eq!(
        step("e4", "payment_intent.processing", 20, "processing"),
        "stale"
    );
    assert_eq!(
        step(
            "e5",
            "payment_intent.requires_action",
            10,
            "requires_action"
        ),
        "stale"
    );
    assert_eq!(
        step("e6", "payment_intent.canceled", 40, "canceled"),
        "stale"
    );
    let mut fresh = MemoryState::default();
    let mut canceled = pi("canceled");
    canceled["cancellation_reason"] = json!("abandoned");
    let fx = handle(
        &event("c1", "payment_intent.canceled", 5, canceled),
        &mut fresh,
    )
    .unwrap();
    assert!(matches!(&fx[0], Effect::PaymentCanceled(u)
        if u.cancellation_reason.as_deref() == Some("abandoned") && u.tenant.as_deref() == Some("t_1")));
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

/// Seed 004: a license price and an add-on on one subscription. With
/// the license price configured only its items are seats; without, every
/// item counts (as before).
#[test]
fn the_license_count_adds_up_the_license_price_alone() {
    let mut sub = subscription("active", 0);
    sub["items"]["data"] = json!([
        {"id": "si_1", "quantity": 12, "price": {"id": "price_pro", "object": "price"}},
        {"id": "si_2", "quantity": 3, "price": "price_addon"},
    ]);
    let e = event("e1", "customer.subscription.updated", 10, sub);
    let licensed = Routing {
        license_prices: vec!["price_pro".into()],
        ..Routing::default()
    };
    let mut s = MemoryState::default();
    assert_eq!(
        kinds(&handle_with(&e, &licensed, &mut s).unwrap()),
        ["changed:active:12", "count:12"]
    );
    let mut s = MemoryState::default();
    assert_eq!(
        kinds(&handle(&e, &mut s).unwrap()),
        ["changed:active:15", "count:15"]
    );
}

#[test]
fn subscriptions_apply_in_event_order_and_set_the_license_count() {
    let mut s = MemoryState::default();
    let created = event(
        "e1",
        "customer.subscription.created",
        10,
        subscription("active", 5),
    );
    let more = event(
        "e2",
        "customer.subscription.updated",
        20,
        subscription("active", 8),
    );
    let past_due = event(
        "e3",
        "customer.subscription.updated",
        30,
        subscription("past_due", 8),
    );
    let deleted = event(
        "e4",
        "customer.subscription.deleted",
        40,
        subscription("canceled", 8),
    );
    // .updated before .created: the late .created does not undo it.
    assert_eq!(
        kinds(&handle(&more, &mut s).unwrap()),
        ["changed:active:8", "count:8"]
    );
    assert_eq!(kinds(&handle(&created, &mut s).unwrap()), ["ignored:stale"]);
    // Same quantity: the status changes, the count is not announced again.
    assert_eq!(
        kinds(&handle(&past_due, &mut s).unwrap()),
        ["changed:past_due:8"]
    );
    assert_eq!(
        kinds(&handle(&deleted, &mut s).unwrap()),
        ["changed:canceled:8"]
    );
    let revived = event(
        "e5",
        "customer.subscription.updated",
        50,
        subscription("active", 9),
    );
    assert_eq!(kinds(&handle(&revived, &mut s).unwrap()), ["ignored:stale"]);
    let no_items = json!({"id": "sub_2", "status": "active"});
    let bad = event("e6", "customer.subscription.updated", 60, no_items);
    assert!(
        matches!(handle(&bad, &mut s), Err(HandleError::MissingField(f)) if f.contains("items"))
    );
}

fn dispute(status: &str) -> Value {
    json!({"id": "dp_1", "object": "dispute", "amount": 10000, "currency": "usd",
           "charge": "ch_1", "payment_intent": "pi_1", "reason": "fraudulent",
           "status": status, "evidence_details": {"due_by": 99}, "metadata": {},
           "balance_transactions": [{"amount": -10000, "fee": 1500}]})
}

#[test]
fn disputes_never_reopen_and_their_funds_net_out_in_any_order() {
    let mut s = MemoryState::default();
    handle(
        &event("evt_p", "payment_intent.succeeded", 10, pi("succeeded")),
        &mut s,
    )
    .unwrap();
    let opened = event(
        "d1",
        "charge.dispute.created",
        20,
        dispute("needs_response"),
    );
    let withdrawn = event(
        "d2",
        "charge.dispute.funds_withdrawn",
        21,
        dispute("needs_response"),
    );
    let closed = event("d3", "charge.dispute.closed", 40, dispute("won"));
    let mut won = dispute("won");
    won["balance_transactions"] = json!([{"amount": 10000, "fee": 0}]);
    let reinstated = event("d4", "charge.dispute.funds_reinstated", 41, won);
    // Closed first, then the opening arrives late.
    assert!(
        matches!(&handle(&closed, &mut s).unwrap()[0], Effect::DisputeClosed(d) if d.status == "won" && d.tenant.as_deref() == Some("t_1"))
    );
    assert!(matches!(
        &handle(&opened, &mut s).unwrap()[0],
        Effect::EventIgnored(_)
    ));
    // Reinstated before withdrawn: both apply once and net out.
    assert!(
        matches!(&handle(&reinstated, &mut s).unwrap()[0], Effect::DisputeFundsReinstated(f) if f.fee.is_none())
    );
    assert!(
        matches!(&handle(&withdrawn, &mut s).unwrap()[0], Effect::DisputeFundsWithdrawn(f) if f.fee.as_ref().map(|f| f.amount) == Some(1500))
    );
    assert!(
        matches!(&handle(&withdrawn, &mut s).unwrap()[0], Effect::EventIgnored(i) if i.reason.starts_with("stale"))
    );
    let usd = &ledger::book(&mut s, "t_1").unwrap().balances["usd"];
    // The payment (customer −100, tenant +97.50, platform +2.50) stands;
    // the dispute cost the tenant only Stripe's $15 fee.
    assert_eq!(usd["customer"], -10_000);
    assert_eq!(usd["tenant"], 9_750 - 1_500);
    assert_eq!(usd["processor"], 1_500);
    assert_eq!(usd.values().sum::<i64>(), 0);
}

fn invoice(status: &str) -> Value {
    json!({"id": "in_1", "object": "invoice", "status": status, "currency": "usd",
           "amount_due": 5000, "amount_paid": if status == "paid" { 5000 } else { 0 },
           "customer": "cus_1", "metadata": {"tenant_id": "t_1"}})
}

#[test]
fn an_invoice_never_leaves_paid_or_void() {
    let mut s = MemoryState::default();
    let status_of = |fx: Vec<Effect>| match &fx[0] {
        Effect::InvoiceStatusChanged(i) => i.status.clone(),
        Effect::EventIgnored(i) => i.reason[..5].to_string(),
        other => panic!("{other:?}"),
    };
    let mut step = |kind: &str, created: i64, status: &str| {
        status_of(handle(&event("e", kind, created, invoice(status)), &mut s).unwrap())
    };
    assert_eq!(step("invoice.created", 10, "draft"), "draft");
    assert_eq!(step("invoice.finalized", 20, "open"), "open");
    assert_eq!(step("invoice.payment_failed", 30, "open"), "open");
    assert_eq!(step("invoice.payment_succeeded", 40, "paid"), "paid");
    assert_eq!(step("invoice.paid", 40, "paid"), "paid");
    // Late or contradicting: finalized after paid, voided after paid.
    assert_eq!(step("invoice.finalized", 20, "open"), "stale");
    assert_eq!(step("invoice.voided", 50, "void"), "stale");
    assert_eq!(
        step("invoice.marked_uncollectible", 50, "uncollectible"),
        "stale"
    );
    let mut other = MemoryState::default();
    let fx = handle(
        &event("v", "invoice.voided", 5, invoice("void")),
        &mut other,
    )
    .unwrap();
    assert_eq!(status_of(fx), "void");
}

#[test]
fn account_onboarding_applies_in_event_order() {
    let mut s = MemoryState::default();
    let account = |charges: bool| {
        json!({"id": "acct_1", "object": "account", "charges_enabled": charges,
               "payouts_enabled": charges, "details_submitted": true,
               "requirements": {"currently_due": if charges { json!([]) } else { json!(["external_account"]) },
                                "disabled_reason": if charges { Value::Null } else { json!("requirements.past_due") }},
               "metadata": {"tenant_id": "t_1"}})
    };
    let enabled = event("a2", "account.updated", 20, account(true));
    let pending = event("a1", "account.updated", 10, account(false));
    let fx = handle(&enabled, &mut s).unwrap();
    assert!(matches!(&fx[0], Effect::AccountStatusChanged(a)
        if a.charges_enabled && a.requirements_due.is_empty() && a.tenant.as_deref() == Some("t_1")));
    // The older "still pending" state arrives late: stale.
    assert!(matches!(
        &handle(&pending, &mut s).unwrap()[0],
        Effect::EventIgnored(_)
    ));
    let mut fresh = MemoryState::default();
    let fx = handle(&pending, &mut fresh).unwrap();
    assert!(matches!(&fx[0], Effect::AccountStatusChanged(a)
        if a.requirements_due == ["external_account"] && a.disabled_reason.is_some()));
    let mut deauth = json!({"id": "evt_d", "object": "event", "type": "account.application.deauthorized",
                            "created": 30, "account": "acct_1",
                            "data": {"object": {"id": "ca_1", "object": "application", "name": "PSA"}}});
    let fx = handle(deauth.to_string().as_bytes(), &mut s).unwrap();
    assert!(
        matches!(&fx[0], Effect::AccountDeauthorized(d) if d.account == "acct_1" && d.application.as_deref() == Some("ca_1"))
    );
    deauth.as_object_mut().unwrap().remove("account");
    assert!(matches!(
        handle(deauth.to_string().as_bytes(), &mut s),
        Err(HandleError::MissingField(_))
    ));
}

#[test]
fn payment_intent_succeeded() {
    let mut s = MemoryState::default();
    let fx = handle(
        &event("evt_1", "payment_intent.succeeded", 10, pi("succeeded")),
        &mut s,
    )
    .unwrap();
    assert_eq!(
        fx,
        vec![Effect::PaymentSucceeded(PaymentSucceeded {
            payment_intent: "pi_1".into(),
            amount: Money::new(10000, "usd"),
            tenant: Some("t_1".into()),
            account: None,
            customer: Some("cus_1".into()),
            reference: Some("inv-42".into()),
            application_fee: Some(Money::new(250, "usd")),
        })]
    );
}

#[test]
fn a_late_failure_does_not_undo_a_success() {
    let mut s = MemoryState::default();
    handle(
        &event("evt_2", "payment_intent.succeeded", 20, pi("succeeded")),
        &mut s,
    )
    .unwrap();
    let fx = handle(
        &event(
            "evt_1",
            "payment_intent.payment_failed",
            10,
            pi("requires_payment_method"),
        ),
        &mut s,
    )
    .unwrap();
    assert!(
        matches!(&fx[..], [Effect::EventIgnored(e)] if e.reason.starts_with("stale")),
        "{fx:?}"
    );
}

#[test]
fn payment_failed_carries_the_decline() {
    let mut s = MemoryState::default();
    let fx = handle(
        &event(
            "evt_1",
            "payment_intent.payment_failed",
            10,
            pi("requires_payment_method"),
        ),
        &mut s,
    )
    .unwrap();
    let Effect::PaymentFailed(f) = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(f.decline_code.as_deref(), Some("insufficient_funds"));
    assert_eq!(f.code.as_deref(), Some("card_declined"));
}

#[test]
fn invoice_paid_reads_either_api_shape() {
    let mut s = MemoryState::default();
    let inv = json!({"id": "in_1", "object": "invoice", "status": "paid", "currency": "eur",
        "amount_paid": 5000, "amount_due": 5000, "customer": {"id": "cus_9"},
        "parent": {"subscription_details": {"subscription": "sub_1",
                   "metadata": {"tenant_id": "t_7"}}},
        "hosted_invoice_url": "https://invoice.example/i", "invoice_pdf": null});
    let fx = handle(&event("evt_1", "invoice.paid", 1, inv), &mut s).unwrap();
    let Effect::InvoiceStatusChanged(i) = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(i.subscription.as_deref(), Some("sub_1"));
    assert_eq!(i.tenant.as_deref(), Some("t_7"));
    assert_eq!(i.customer.as_deref(), Some("cus_9"));
    assert_eq!(i.amount_paid, Money::new(5000, "eur"));
    assert_eq!(i.invoice_pdf, None);
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

#[test]
fn tenants_come_from_the_registry_then_the_configured_metadata_keys() {
    let mut s = MemoryState::default();
    let mut object = pi("succeeded");
    object["metadata"] = json!({"orgId": "org-7", "reservationId": "res-9"});
    let body = |id: &str| {
        let mut e: Value =
            serde_json::from_slice(&event(id, "payment_intent.succeeded", 1, object.clone()))
                .unwrap();
        e["account"] = json!("acct_1");
        e.to_string().into_bytes()
    };
    let tenant_of = |fx: &[Effect]| match &fx[0] {
        Effect::PaymentSucceeded(p) => (p.tenant.clone(), p.reference.clone()),
        other => panic!("{other:?}"),
    };
    // Default keys: neither orgId nor reservationId is known.
    let fx = handle(&body("e1"), &mut s).unwrap();
    assert_eq!(tenant_of(&fx), (None, None));
    let aliases = Routing::or_defaults(
        vec!["tenant_id".into(), "orgId".into()],
        vec!["reservationId".into()],
    );
    let fx = handle_with(&body("e2"), &aliases, &mut MemoryState::default()).unwrap();
    assert_eq!(tenant_of(&fx), (Some("org-7".into()), Some("res-9".into())));
    // A registered account wins over metadata.
    let mut registered = MemoryState::default();
    register_tenant(&mut registered, "acct_1", "t_registered").unwrap();
    let fx = handle_with(&body("e3"), &aliases, &mut registered).unwrap();
    assert_eq!(tenant_of(&fx).0.as_deref(), Some("t_registered"));
    assert!(register_tenant(&mut registered, "cus_1", "t").is_err());
    assert!(register_tenant(&mut registered, "acct_1", " ").is_err());
}

#[test]
fn a_payout_reported_paid_can_still_fail_but_never_goes_back() {
    let mut s = MemoryState::default();
    let payout = |status: &str| {
        json!({"id": "po_1", "object": "payout", "amount": 500, "currency": "jpy",
               "status": status, "destination": "ba_1"})
    };
    let mut step = |id: &str, created: i64, status: &str| match &handle(
        &event(id, "payout.updated", created, payout(status)),
        &mut s,
    )
    .unwrap()[0]
    {
        Effect::PayoutChanged(p) => p.status.clone(),
        Effect::EventIgnored(i) => i.reason.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(step("a", 30, "paid"), "paid");
    assert_eq!(
        step("b", 10, "pending"),
        "stale: payout po_1 is already paid"
    );
    assert_eq!(step("c", 40, "failed"), "failed");
    assert_eq!(
        step("d", 50, "paid"),
        "stale: payout po_1 is already failed"
    );
}

#[test]
fn a_deposit_also_confirms_the_wallet() {
    let mut s = MemoryState::default();
    let mut object = pi("succeeded");
    object["metadata"] = json!({"tenant_id": "t_1", "walletId": "w_1", "type": "deposit"});
    let fx = handle(&event("e", "payment_intent.succeeded", 1, object), &mut s).unwrap();
    assert!(
        matches!(&fx[..], [Effect::PaymentSucceeded(_), Effect::WalletDepositConfirmed(w)]
        if w.wallet.as_deref() == Some("w_1") && w.amount.amount == 10_000)
    );
}

const LIFECYCLE: usize = 17;

/// Everything the events of one tenant's payment, refunds, dispute,
/// subscription and invoice do, in the order Stripe created them.
fn lifecycle() -> Vec<Vec<u8>> {
    let mut charge_meta = charge(3_000);
    charge_meta["metadata"] = json!({});
    let mut lost = dispute("lost");
    lost["balance_transactions"] = json!([{"amount": -10000, "fee": 1500}]);
    vec![
        event(
            "p1",
            "payment_intent.requires_action",
            10,
            pi("requires_action"),
        ),
        event("p2", "payment_intent.processing", 20, pi("processing")),
        event("p3", "payment_intent.succeeded", 30, pi("succeeded")),
        event("r1", "charge.refunded", 40, charge_meta),
        event("r2", "charge.refunded", 50, charge(6_000)),
        event(
            "d1",
            "charge.dispute.created",
            60,
            dispute("needs_response"),
        ),
        event(
            "d2",
            "charge.dispute.funds_withdrawn",
            61,
            dispute("needs_response"),
        ),
        event("d3", "charge.dispute.updated", 70, dispute("under_review")),
        event("d4", "charge.dispute.closed", 80, lost),
        event(
            "s1",
            "customer.subscription.created",
            10,
            subscription("active", 5),
        ),
        event(
            "s2",
            "customer.subscription.updated",
            20,
            subscription("active", 8),
        ),
        event(
            "s3",
            "customer.subscription.updated",
            30,
            subscription("past_due", 8),
        ),
        // Seats reduced and the account back in good standing.
        event(
            "s4",
            "customer.subscription.updated",
            40,
            subscription("active", 6),
        ),
        event("i1", "invoice.created", 10, invoice("draft")),
        event("i2", "invoice.finalized", 20, invoice("open")),
        event("i3", "invoice.payment_failed", 30, invoice("open")),
        event("i4", "invoice.paid", 40, invoice("paid")),
    ]
}

/// Delivers in `order`; a `NotReady` event is rolled back and retried
/// after the others, as Stripe's retries would. Returns the state and
/// the effects in the order they were emitted.
fn deliver(events: &[Vec<u8>], order: &[usize]) -> (MemoryState, Vec<Effect>) {
    let mut s = MemoryState::default();
    let mut emitted = Vec::new();
    let mut queue: Vec<usize> = order.to_vec();
    for _round in 0..4 {
        let mut retry = Vec::new();
        for &i in &queue {
            let before = s.clone();
            match handle(&events[i], &mut s) {
                Ok(fx) => emitted.extend(fx),
                Err(HandleError::NotReady(_)) => {
                    s = before;
                    retry.push(i);
                }
                Err(e) => panic!("event {i}: {e}"),
            }
        }
        queue = retry;
    }
    assert!(queue.is_empty(), "events never became ready: {queue:?}");
    (s, emitted)
}

/// The state that must not depend on delivery order: objects' statuses,
/// refund totals, license counts, payment owners and ledger balances
/// (not the order in which ledger transactions were numbered).
fn final_state(s: &mut MemoryState) -> Vec<String> {
    let mut out: Vec<String> = s
        .entries
        .iter()
        .filter(|((c, _), _)| {
            ["objects", "refunds", "licenses", "ledger_owners"].contains(&c.as_str())
        })
        .map(|((c, k), v)| format!("{c}/{k}={v}"))
        .collect();
    out.push(format!("{:?}", ledger::book(s, "t_1").unwrap().balances));
    out
}

/// The status each object's last effect announced.
fn last_statuses(effects: &[Effect]) -> BTreeMap<String, String> {
    let mut last = BTreeMap::new();
    for e in effects {
        let (id, status) = match e {
            Effect::PaymentRequiresAction(u) => (&u.payment_intent, "requires_action".to_string()),
            Effect::PaymentProcessing(u) => (&u.payment_intent, "processing".to_string()),
            Effect::PaymentSucceeded(p) => (&p.payment_intent, "succeeded".to_string()),
            Effect::DisputeOpened(d) | Effect::DisputeUpdated(d) | Effect::DisputeClosed(d) => {
                (&d.dispute, d.status.clone())
            }
            Effect::SubscriptionChanged(c) => (&c.subscription, c.status.clone()),
            Effect::LicenseCountSet(l) => (&l.subscription, format!("count {}", l.count)),
            Effect::InvoiceStatusChanged(i) => (&i.invoice, i.status.clone()),
            _ => continue,
        };
        let key = match e {
            Effect::LicenseCountSet(_) => format!("{id}/count"),
            _ => id.clone(),
        };
        last.insert(key, status);
    }
    last
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    #[test]
    fn any_order_with_repeats_ends_in_the_in_order_state(
        order in proptest::strategy::Strategy::prop_shuffle(proptest::strategy::Just((0..LIFECYCLE).collect::<Vec<usize>>())),
        repeats in proptest::collection::vec(0usize..LIFECYCLE, 0..5),
    ) {
        let events = lifecycle();
        let in_order: Vec<usize> = (0..events.len()).collect();
        let (mut expected, expected_fx) = deliver(&events, &in_order);
        let mut shuffled = order.clone();
        for (n, r) in repeats.iter().enumerate() {
            shuffled.insert((n * 5) % (shuffled.len() + 1), *r);
        }
        let (mut got, got_fx) = deliver(&events, &shuffled);
        proptest::prop_assert_eq!(final_state(&mut got), final_state(&mut expected));
        proptest::prop_assert_eq!(last_statuses(&got_fx), last_statuses(&expected_fx));
    }
}

#[test]
fn the_in_order_lifecycle_ends_where_stripe_would() {
    let (mut s, fx) = deliver(&lifecycle(), &(0..LIFECYCLE).collect::<Vec<_>>());
    let last = last_statuses(&fx);
    assert_eq!(last["pi_1"], "succeeded");
    assert_eq!(last["dp_1"], "lost");
    assert_eq!(last["sub_1"], "active");
    assert_eq!(last["sub_1/count"], "count 6");
    assert_eq!(last["in_1"], "paid");
    let usd = &ledger::book(&mut s, "t_1").unwrap().balances["usd"];
    // Paid 100.00 (fee 2.50), refunded 60.00, then the dispute lost took
    // 100.00 more plus Stripe's 15.00 fee.
    assert_eq!(usd["customer"], -10_000 + 6_000 + 10_000);
    assert_eq!(usd["platform"], 250);
    assert_eq!(usd["processor"], 1_500);
    assert_eq!(usd["tenant"], 9_750 - 6_000 - 10_000 - 1_500);
    assert_eq!(usd.values().sum::<i64>(), 0);
}

/// A payment that arrived before its account was registered is posted
/// under the account's id; registering moves it, with new postings
/// only, and its later refund follows the tenant.
#[test]
fn registering_an_account_moves_what_was_posted_under_its_id() {
    let mut s = MemoryState::default();
    let mut body: Value = serde_json::from_slice(&event(
        "evt_1",
        "payment_intent.succeeded",
        10,
        pi("succeeded"),
    ))
    .unwrap();
    body["account"] = json!("acct_1Late");
    body["data"]["object"]["metadata"] = json!({});
    handle(body.to_string().as_bytes(), &mut s).unwrap();
    let before = ledger::book(&mut s, "acct_1Late").unwrap().balances;
    assert_eq!(before["usd"]["tenant"], 9_750);

    register_tenant(&mut s, "acct_1Late", "t_late").unwrap();
    assert_eq!(
        reroute(&mut s, "acct_1Late", "t_late").unwrap(),
        ["pi_1:payment"]
    );
    assert!(
        reroute(&mut s, "acct_1Late", "t_late").unwrap().is_empty(),
        "once"
    );
    assert_eq!(ledger::book(&mut s, "t_late").unwrap().balances, before);
    let left = &ledger::book(&mut s, "acct_1Late").unwrap().balances["usd"];
    assert!(left.values().all(|b| *b == 0), "{left:?}");
    let moved = ledger::transaction_by_id(&mut s, "t_late", "pi_1:payment")
        .unwrap()
        .unwrap();
    assert_eq!(moved.source.as_deref(), Some("pi_1"));
    // The history under the account's id is still there, given back.
    assert_eq!(
        ledger::transactions(&mut s, "acct_1Late", 0, 10)
            .unwrap()
            .len(),
        2
    );

    let refund = json!({"id": "re_1", "object": "refund", "amount": 1000, "currency": "usd",
        "charge": "ch_1", "payment_intent": "pi_1", "status": "succeeded", "metadata": {}});
    let mut body: Value =
        serde_json::from_slice(&event("evt_2", "refund.created", 20, refund)).unwrap();
    body["account"] = json!("acct_1Late");
    handle(body.to_string().as_bytes(), &mut s).unwrap();
    assert_eq!(
        ledger::book(&mut s, "t_late").unwrap().balances["usd"]["tenant"],
        8_750
    );
}
