//! One tenant's whole lifecycle delivered in order: where it ends, and the
//! state that must not depend on the order of delivery.

use super::*;

/// How many events `lifecycle` delivers.
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
