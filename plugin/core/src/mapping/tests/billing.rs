//! Subscriptions and invoices: license counts and statuses in event order.

use super::*;

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
