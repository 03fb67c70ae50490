//! The order invariant over every fixture scenario (`tests/fixtures/events`):
//! delivered in any order, with any repeats, a scenario ends in the state
//! that delivery in Stripe's order (by `created`) reaches, the last effect
//! about each object agrees with it, and no object's announced status ever
//! moves backwards.

use psa_billing_core::effects::Effect;
use psa_billing_core::ledger;
use psa_billing_core::mapping::{self, HandleError};
use psa_billing_core::state::MemoryState;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

struct Scenario {
    name: String,
    /// Event bodies that map (malformed ones fail in every order alike).
    events: Vec<Vec<u8>>,
    registry: Vec<(String, String)>,
}

fn scenarios() -> Vec<Scenario> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/events");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load(d)).collect()
}

fn load(dir: &Path) -> Scenario {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut events: Vec<(i64, Vec<u8>)> = files
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .filter(|body| {
            !matches!(
                mapping::handle(body, &mut MemoryState::default()),
                Err(HandleError::Malformed(_) | HandleError::MissingField(_))
            )
        })
        .map(|body| {
            let created = serde_json::from_slice::<Value>(&body).unwrap()["created"]
                .as_i64()
                .unwrap();
            (created, body)
        })
        .collect();
    // Stripe's order: by creation time (the files are in delivery order).
    events.sort_by_key(|(created, _)| *created);
    let registry = std::fs::read_to_string(dir.join("registry.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (a, t) = l.split_once(' ').unwrap();
            (a.to_string(), t.trim().to_string())
        })
        .collect();
    Scenario {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        events: events.into_iter().map(|(_, b)| b).collect(),
        registry,
    }
}

/// Delivers in `order`; a not-ready event is rolled back and retried after
/// the others, as Stripe's retries would.
fn deliver(s: &Scenario, order: &[usize]) -> (MemoryState, Vec<Effect>) {
    let mut state = MemoryState::default();
    for (account, tenant) in &s.registry {
        mapping::register_tenant(&mut state, account, tenant).unwrap();
    }
    let mut emitted = Vec::new();
    let mut queue = order.to_vec();
    for _round in 0..order.len() + 1 {
        let mut retry = Vec::new();
        for &i in &queue {
            let before = state.clone();
            match mapping::handle(&s.events[i], &mut state) {
                Ok(fx) => emitted.extend(fx),
                Err(HandleError::NotReady(_)) => {
                    state = before;
                    retry.push(i);
                }
                Err(e) => panic!("{} event {i}: {e}", s.name),
            }
        }
        queue = retry;
    }
    assert!(queue.is_empty(), "{}: never ready: {queue:?}", s.name);
    (state, emitted)
}

/// What must not depend on delivery order: objects' statuses, refund
/// totals, license counts, payment owners, the registry, and every ledger's
/// balances (not the order its transactions were numbered in).
fn final_state(s: &mut MemoryState) -> Vec<String> {
    let mut out: Vec<String> = s
        .entries
        .iter()
        .filter(|((c, _), _)| {
            ["objects", "refunds", "licenses", "ledger_owners", "tenants"].contains(&c.as_str())
        })
        .map(|((c, k), v)| format!("{c}/{k}={v}"))
        .collect();
    let books: Vec<String> = s
        .entries
        .keys()
        .filter(|(c, _)| c == "ledger_books")
        .map(|(_, k)| k.clone())
        .collect();
    for tenant in books {
        let balances = ledger::book(s, &tenant).unwrap().balances;
        out.push(format!("{tenant}: {balances:?}"));
    }
    out
}

/// The object an effect is about and the status it announces.
fn status(e: &Effect) -> Option<(String, String)> {
    let pair = |id: &str, status: String| Some((id.to_string(), status));
    match e {
        Effect::PaymentSucceeded(p) => pair(&p.payment_intent, "succeeded".into()),
        Effect::PaymentFailed(p) => pair(&p.payment_intent, "failed".into()),
        Effect::PaymentProcessing(u)
        | Effect::PaymentRequiresAction(u)
        | Effect::PaymentCanceled(u)
        | Effect::PaymentCapturable(u)
        | Effect::PaymentPartiallyFunded(u) => pair(&u.payment_intent, e.kind().into()),
        Effect::InvoiceStatusChanged(i) => pair(&i.invoice, i.status.clone()),
        Effect::RefundRecorded(r) => pair(&r.charge, r.total_refunded.amount.to_string()),
        Effect::PaymentSettled(p) => pair(
            &format!("{}/settled", p.payment_intent),
            p.net.amount.to_string(),
        ),
        Effect::ApplicationFeeRefunded(f) => {
            pair(&f.application_fee, f.total_refunded.amount.to_string())
        }
        Effect::AccountRerouted(r) => pair(&r.account, r.tenant.clone()),
        Effect::SubscriptionChanged(c) => pair(&c.subscription, c.status.clone()),
        Effect::LicenseCountSet(l) => {
            pair(&format!("{}/count", l.subscription), l.count.to_string())
        }
        Effect::AccountStatusChanged(a) => pair(
            &a.account,
            format!(
                "{} {} {}",
                a.charges_enabled, a.payouts_enabled, a.details_submitted
            ),
        ),
        Effect::AccountAuthorized(a) | Effect::AccountDeauthorized(a) => {
            pair(&format!("{}/application", a.account), e.kind().into())
        }
        Effect::DisputeOpened(d) | Effect::DisputeUpdated(d) | Effect::DisputeClosed(d) => {
            pair(&d.dispute, d.status.clone())
        }
        Effect::DisputeFundsWithdrawn(_)
        | Effect::DisputeFundsReinstated(_)
        | Effect::WalletDepositConfirmed(_)
        | Effect::EventIgnored(_) => None,
        Effect::CheckoutCompleted(c)
        | Effect::CheckoutPaymentFailed(c)
        | Effect::CheckoutExpired(c) => {
            pair(&c.session, format!("{} {}", e.kind(), c.payment_status))
        }
        Effect::RefundUpdated(r) | Effect::RefundFailed(r) => pair(&r.refund, r.status.clone()),
        Effect::PayoutChanged(p) => pair(&p.payout, p.status.clone()),
        Effect::TransferChanged(t) => pair(&t.transfer, t.amount_reversed.amount.to_string()),
        Effect::FraudWarning(f) => pair(&f.warning, f.actionable.to_string()),
        Effect::ReviewOpened(r) | Effect::ReviewClosed(r) => pair(&r.review, e.kind().into()),
        Effect::CustomerChanged(c) => pair(&c.customer, c.deleted.to_string()),
        Effect::PaymentMethodChanged(p) => pair(&p.payment_method, p.change.clone()),
    }
}

/// Each object's announced statuses, in emission order, repeats collapsed.
fn histories(effects: &[Effect]) -> BTreeMap<String, Vec<String>> {
    let mut h: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, s) in effects.iter().filter_map(status) {
        let list = h.entry(id).or_default();
        if list.last() != Some(&s) {
            list.push(s);
        }
    }
    h
}

fn is_subsequence(part: &[String], whole: &[String]) -> bool {
    let mut rest = whole.iter();
    part.iter().all(|p| rest.any(|w| w == p))
}

fn check(s: &Scenario, keys: &[u64], repeats: &[usize]) -> Result<(), String> {
    let n = s.events.len();
    let in_order: Vec<usize> = (0..n).collect();
    let (mut expected, expected_fx) = deliver(s, &in_order);
    let mut order = in_order.clone();
    order.sort_by_key(|&i| keys[i % keys.len()] ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for (k, r) in repeats.iter().enumerate() {
        order.insert((k * 3) % (order.len() + 1), r % n);
    }
    let (mut got, got_fx) = deliver(s, &order);
    if final_state(&mut got) != final_state(&mut expected) {
        return Err(format!(
            "{}: order {order:?} ends in\n{:#?}\ninstead of\n{:#?}",
            s.name,
            final_state(&mut got),
            final_state(&mut expected)
        ));
    }
    let (want, have) = (histories(&expected_fx), histories(&got_fx));
    for (object, statuses) in &have {
        let reference = &want[object];
        if statuses.last() != reference.last() {
            return Err(format!(
                "{}: order {order:?}: last effect on {object} says {:?}, in order {:?}",
                s.name,
                statuses.last(),
                reference.last()
            ));
        }
        if !is_subsequence(statuses, reference) {
            return Err(format!(
                "{}: order {order:?}: {object} went {statuses:?}, which moves backwards against {reference:?}",
                s.name
            ));
        }
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn every_scenario_in_any_order_with_repeats_ends_in_the_in_order_state(
        keys in proptest::collection::vec(proptest::prelude::any::<u64>(), 16),
        repeats in proptest::collection::vec(0usize..64, 0..5),
    ) {
        for s in scenarios().iter().filter(|s| !s.events.is_empty()) {
            if let Err(e) = check(s, &keys, &repeats) {
                proptest::prop_assert!(false, "{}", e);
            }
        }
    }
}

/// The seeds' scenarios, each with the effect kinds it is about: its
/// events must map, in Stripe's order, to effects of every one of those
/// kinds, and its expected files (`tests/fixtures/expected/<name>`, what
/// the hosts must produce) must hold them too. A scenario left empty, or
/// one whose events stopped producing what it is about, fails here.
#[test]
fn the_corpus_covers_the_seed_scenarios() {
    let scenarios = scenarios();
    let expected_root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/expected");
    for (needed, kinds) in [
        ("invoice-lifecycle", &["invoice.status_changed"][..]),
        (
            "license-seats-change",
            &["subscription.changed", "license.count_set"],
        ),
        (
            "checkout-license-purchase",
            &[
                "checkout.completed",
                "checkout.expired",
                "license.count_set",
            ],
        ),
        (
            "connect-onboarding",
            &["account.status_changed", "account.deauthorized"],
        ),
        (
            "deposit-escrow-payout",
            &[
                "wallet.deposit_confirmed",
                "transfer.changed",
                "payout.changed",
            ],
        ),
        (
            "refund-partial-then-full",
            &["payment.succeeded", "refund.recorded"],
        ),
        (
            "dispute-lost",
            &[
                "dispute.opened",
                "dispute.funds_withdrawn",
                "dispute.closed",
            ],
        ),
        (
            "dispute-won",
            &[
                "dispute.funds_withdrawn",
                "dispute.funds_reinstated",
                "dispute.closed",
            ],
        ),
        (
            "fraud-warning",
            &["fraud.warning", "review.opened", "review.closed"],
        ),
    ] {
        let s = scenarios
            .iter()
            .find(|s| s.name == needed)
            .unwrap_or_else(|| panic!("no {needed} scenario"));
        assert!(!s.events.is_empty(), "{needed}: no event that maps");
        let in_order: Vec<usize> = (0..s.events.len()).collect();
        let (_, emitted) = deliver(s, &in_order);
        let mapped: std::collections::BTreeSet<&str> = emitted.iter().map(Effect::kind).collect();
        let mut files: Vec<PathBuf> = std::fs::read_dir(expected_root.join(needed))
            .unwrap_or_else(|e| panic!("{needed}: no expected effects ({e})"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let expected: std::collections::BTreeSet<String> = files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        let v: Value = serde_json::from_str(l).unwrap();
                        v["effect"]["kind"].as_str().unwrap().to_string()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for kind in kinds {
            assert!(
                mapped.contains(kind),
                "{needed}: its events map to {mapped:?}, without {kind}"
            );
            assert!(
                expected.contains(*kind),
                "{needed}: its expected effects {expected:?} lack {kind}"
            );
        }
    }
}

/// What the money scenarios leave in the ledger, delivered in Stripe's
/// order (the property above makes every other order end the same).
#[test]
fn the_money_scenarios_end_at_what_stripe_moved() {
    const TENANT: &str = "5f0c1a52-0d1e-4c3a-9a57-0c1b6f3a2d11";
    const MARKET: &str = "9b1d3c70-6a2e-4f5b-8c1d-2e3f4a5b6c7d";
    let all = scenarios();
    let balance = |name: &str, tenant: &str, account: &str| {
        let s = all.iter().find(|s| s.name == name).unwrap();
        let (mut state, _) = deliver(s, &(0..s.events.len()).collect::<Vec<_>>());
        let book = ledger::book(&mut state, tenant).unwrap();
        book.balances["usd"].get(account).copied().unwrap_or(0)
    };
    // 30.00 then 20.00 refunded, each posted once: by the charge's total
    // first, then matched to its refund object.
    assert_eq!(balance("refund-matched-late", TENANT, "customer"), -5_000);
    assert_eq!(balance("refund-matched-late", TENANT, "tenant"), 4_750);
    // The application fee went back in full, once.
    assert_eq!(balance("application-fee-refunded", TENANT, "platform"), 0);
    assert_eq!(
        balance("application-fee-refunded", TENANT, "tenant"),
        10_000
    );
    // A failed refund leaves the payment as it was.
    assert_eq!(balance("refund-failed", TENANT, "tenant"), 9_750);
    // The withdrawal's 80.00 came back to the contractor.
    assert_eq!(balance("withdrawal-reversed", MARKET, "contractor"), 8_000);
}
