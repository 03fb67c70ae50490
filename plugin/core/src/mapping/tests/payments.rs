//! Payments, refunds, deposits and payouts: what each posts to the ledger,
//! and statuses that never move backwards.

use super::*;

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
