//! Disputes: statuses that never reopen, funds that net out in any order.

use super::*;

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
