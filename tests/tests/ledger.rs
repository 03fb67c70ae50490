//! The ledger over HTTP: payments learnt from webhooks, escrow stages posted
//! by the application, balances that always sum to zero, bad postings that
//! change nothing, and a plugin that fails while posting.

use psa_billing::{Limits, Runtime};
use psa_billing_tests::*;
use serde_json::{Value, json};
use std::time::Duration;

fn amount(balances: &Value, currency: &str, account: &str) -> i64 {
    balances["balances"][currency][account]["amount"]
        .as_i64()
        .unwrap_or_else(|| panic!("no {account} balance in {balances}"))
}

fn sum(balances: &Value, currency: &str) -> i64 {
    balances["balances"][currency]
        .as_object()
        .unwrap()
        .values()
        .map(|b| b["amount"].as_i64().unwrap())
        .sum()
}

/// Stripe's sample charge for a $100 payment with `refunded` cents refunded
/// and no tenant metadata of its own.
fn refunded_charge(payment_intent: &str, refunded: i64) -> Value {
    let mut charge = stripe_object("charge");
    charge["id"] = json!(format!("ch_{payment_intent}"));
    charge["amount"] = json!(10000);
    charge["amount_refunded"] = json!(refunded);
    charge["currency"] = json!("usd");
    charge["payment_intent"] = json!(payment_intent);
    charge["metadata"] = json!({});
    charge
}

#[tokio::test]
async fn a_payment_and_its_refund_reach_the_tenants_ledger_once() {
    let s = TestServer::start(Options::default()).await;
    let body = event(
        "evt_pay_1",
        "payment_intent.succeeded",
        succeeded_payment("pi_l1"),
    );
    assert_eq!(s.deliver_signed(&body).await.status, 200);
    // The same delivery again, and the same payment under another event id.
    assert_eq!(s.deliver_signed(&body).await.status, 200);
    let resent = event(
        "evt_pay_2",
        "payment_intent.succeeded",
        succeeded_payment("pi_l1"),
    );
    assert_eq!(s.deliver_signed(&resent).await.status, 200);

    let b = s.get("/v1/ledger/tenant-1/balances", Some(API_TOKEN)).await;
    assert_eq!(b.status, 200, "{:?}", b.body);
    assert_eq!(amount(&b.body, "usd", "customer"), -10_000);
    assert_eq!(amount(&b.body, "usd", "tenant"), 9_750);
    assert_eq!(amount(&b.body, "usd", "platform"), 250);
    assert_eq!(sum(&b.body, "usd"), 0);
    let t = s
        .get("/v1/ledger/tenant-1/transactions", Some(API_TOKEN))
        .await;
    let txs = t.body["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 1, "{:?}", t.body);
    assert_eq!(txs[0]["id"], "pi_l1:payment");
    assert_eq!(txs[0]["legs"].as_array().unwrap().len(), 4);
    // A partial refund on the payment's charge (no tenant metadata on it).
    let refund = event(
        "evt_refund_1",
        "charge.refunded",
        refunded_charge("pi_l1", 4000),
    );
    assert_eq!(s.deliver_signed(&refund).await.status, 200);
    let b = s.get("/v1/ledger/tenant-1/balances", Some(API_TOKEN)).await;
    assert_eq!(amount(&b.body, "usd", "customer"), -6_000);
    assert_eq!(amount(&b.body, "usd", "tenant"), 5_750);
    assert_eq!(sum(&b.body, "usd"), 0);
    // Another tenant's ledger is untouched.
    let other = s.get("/v1/ledger/tenant-2/balances", Some(API_TOKEN)).await;
    assert_eq!(other.body["balances"], json!({}));
}

#[tokio::test]
async fn escrow_stages_posted_from_the_plan_balance() {
    // Seed 002: 5% platform fee held on top, 20% service fee at completion.
    let s = TestServer::start(Options {
        rules: Some("[escrow]\nplatform_percent = \"5\"\nservice_percent = \"20\"\n".into()),
        ..Options::default()
    })
    .await;
    let plan = s
        .post_json(
            "/v1/quote/escrow",
            &json!({"amount": "100.00", "currency": "usd"}),
        )
        .await;
    assert_eq!(plan.status, 200, "{:?}", plan.body);
    for stage in ["on_hold", "on_accept", "on_complete"] {
        let movements: Vec<Value> = plan.body[stage]
            .as_array()
            .unwrap_or_else(|| panic!("no {stage} in {:?}", plan.body))
            .iter()
            .map(|m| {
                json!({"from": m["from"], "to": m["to"], "label": m["label"],
                       "amount": m["amount"]["display"]})
            })
            .collect();
        let posting = json!({"id": format!("offer-1:{stage}"), "currency": "usd",
                             "description": stage, "movements": movements});
        let a = s
            .post_json("/v1/ledger/shop-9/transactions", &posting)
            .await;
        assert_eq!(a.status, 200, "{stage}: {:?}", a.body);
        // Posting the same id again is harmless.
        let again = s
            .post_json("/v1/ledger/shop-9/transactions", &posting)
            .await;
        assert_eq!(again.body["seq"], a.body["seq"]);
    }
    let b = s.get("/v1/ledger/shop-9/balances", Some(API_TOKEN)).await;
    assert_eq!(amount(&b.body, "usd", "customer"), -10_500);
    assert_eq!(amount(&b.body, "usd", "escrow"), 0);
    assert_eq!(amount(&b.body, "usd", "platform"), 2_500);
    assert_eq!(amount(&b.body, "usd", "contractor"), 8_000);
    assert_eq!(sum(&b.body, "usd"), 0);
}

/// Seed 002 between parties: the plan pays from the customer's wallet and
/// to the contractor's own account, so its stages post as they are.
#[tokio::test]
async fn an_escrow_plan_between_parties_moves_wallet_to_contractor() {
    let s = TestServer::start(Options {
        rules: Some("[escrow]\nplatform_percent = \"5\"\nservice_percent = \"20\"\n".into()),
        ..Options::default()
    })
    .await;
    let bad = s
        .post_json(
            "/v1/quote/escrow",
            &json!({"amount": "100.00", "currency": "usd", "wallet": "w/1"}),
        )
        .await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    let plan = s
        .post_json(
            "/v1/quote/escrow",
            &json!({"amount": "100.00", "currency": "usd", "wallet": "w-1", "contractor": "c-9"}),
        )
        .await;
    assert_eq!(plan.status, 200, "{:?}", plan.body);
    assert_eq!(plan.body["on_hold"][0]["from"], "wallet:w-1");
    assert_eq!(plan.body["on_cancel"][0]["to"], "wallet:w-1");
    assert_eq!(plan.body["on_complete"][1]["to"], "contractor:c-9");
    // The deposit (as the application books one paid outside Stripe), then
    // the stages as planned.
    let deposit = json!({"id": "dep-1:deposit", "currency": "usd", "movements": [
        {"from": "customer", "to": "wallet:w-1", "amount": "105.00"}]});
    let a = s
        .post_json("/v1/ledger/shop-9/transactions", &deposit)
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    for stage in ["on_hold", "on_accept", "on_complete"] {
        let movements: Vec<Value> = plan.body[stage]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| json!({"from": m["from"], "to": m["to"], "amount": m["amount"]["display"]}))
            .collect();
        let posting = json!({"id": format!("offer-2:{stage}"), "currency": "usd",
                             "movements": movements});
        let a = s
            .post_json("/v1/ledger/shop-9/transactions", &posting)
            .await;
        assert_eq!(a.status, 200, "{stage}: {:?}", a.body);
    }
    let b = s.get("/v1/ledger/shop-9/balances", Some(API_TOKEN)).await;
    assert_eq!(amount(&b.body, "usd", "customer"), -10_500, "paid once");
    assert_eq!(amount(&b.body, "usd", "wallet:w-1"), 0);
    assert_eq!(amount(&b.body, "usd", "escrow"), 0);
    assert_eq!(amount(&b.body, "usd", "platform"), 2_500);
    assert_eq!(amount(&b.body, "usd", "contractor:c-9"), 8_000);
    assert_eq!(sum(&b.body, "usd"), 0);
}

#[tokio::test]
async fn bad_postings_are_refused_and_change_nothing() {
    let s = TestServer::start(Options::default()).await;
    let (_, state_before, _) = s.db.counts().await.unwrap();
    let mv = |from: &str, to: &str, amount: &str| json!({"from": from, "to": to, "amount": amount});
    for (posting, status, says) in [
        (
            json!({"id": "a", "currency": "usd", "movements": [mv("customer", "bank", "1.00")]}),
            422,
            "unknown account",
        ),
        (
            json!({"id": "a", "currency": "usd", "movements": [mv("customer", "tenant", "-1.00")]}),
            422,
            "negative",
        ),
        (
            json!({"id": "a", "currency": "usd", "movements": [mv("customer", "tenant", "1.001")]}),
            422,
            "decimal",
        ),
        (
            json!({"id": "a", "currency": "usd", "movements": []}),
            422,
            "moves some money",
        ),
        (
            json!({"id": "a", "currency": "zzz", "movements": [mv("customer", "tenant", "1")]}),
            422,
            "unknown currency",
        ),
        (json!({"id": "a", "currency": "usd"}), 422, "movements"),
        // The service's own ids and accounts: a hand posting under them
        // would make the real one a no-op, or move money no balance holds.
        (
            json!({"id": "pi_x:payment", "currency": "usd", "movements": [mv("customer", "tenant", "1.00")]}),
            422,
            "reserved",
        ),
        (
            json!({"id": "withdraw:b-w-2:hold", "currency": "usd", "movements": [mv("contractor", "withdrawing", "5000.00")]}),
            422,
            "reserved",
        ),
        (
            json!({"id": "refund:re_1", "currency": "usd", "movements": [mv("tenant", "customer", "1.00")]}),
            422,
            "reserved",
        ),
        (
            json!({"id": "hand-1", "currency": "usd", "movements": [mv("processor", "tenant", "1.00")]}),
            422,
            "processor",
        ),
        (
            json!({"id": "hand-2", "currency": "usd", "movements": [mv("tenant", "paid_out", "1.00")]}),
            422,
            "paid_out",
        ),
    ] {
        let a = s.post_json("/v1/ledger/t/transactions", &posting).await;
        assert_eq!(a.status, status, "{posting}: {:?}", a.body);
        let reason = a.body["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(says), "{posting}: {reason}");
    }
    let platform = s
        .post_json(
            "/v1/ledger/_platform/transactions",
            &json!({"id": "hand-3", "currency": "usd", "movements": [mv("customer", "tenant", "1.00")]}),
        )
        .await;
    assert_eq!(platform.status, 422, "{:?}", platform.body);
    assert_eq!(s.db.counts().await.unwrap().1, state_before);
    // The ledger API is behind the token like the rest of /v1.
    assert_eq!(s.get("/v1/ledger/t/balances", None).await.status, 401);
    assert_eq!(
        s.get("/v1/ledger/t/transactions?limit=0", Some(API_TOKEN))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn a_plugin_that_traps_while_posting_commits_nothing() {
    let wasm = std::fs::read(psa_billing::testing::HOSTILE_PLUGIN_PATH).unwrap();
    let limits = Limits {
        call_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let rt = Runtime::new(&wasm, limits).unwrap();
    let s = TestServer::start(Options {
        runtime: Some(rt.clone()),
        ..Options::default()
    })
    .await;
    let (_, state_before, _) = s.db.counts().await.unwrap();
    // The hostile plugin's parse-amount refuses everything, so post through
    // the library with amounts already in minor units.
    let staged = psa_billing::StagedState::new(s.db.clone(), "ledger:t");
    let r = rt
        .ledger_post(
            staged,
            "x".into(),
            "t".into(),
            "usd".into(),
            String::new(),
            vec![],
        )
        .await;
    assert!(
        matches!(r, Err(psa_billing::runtime::CallError::Trap(_))),
        "{:?}",
        r.map(|(r, _)| r)
    );
    assert_eq!(s.db.counts().await.unwrap().1, state_before);
    let looped = s.get("/v1/ledger/t/balances", Some(API_TOKEN)).await;
    assert_eq!(looped.status, 500, "{:?}", looped.body);
    assert!(looped.body["reason"].as_str().unwrap().contains("deadline"));
    let ok = s.get("/v1/ledger/t/transactions", Some(API_TOKEN)).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
}

#[tokio::test]
async fn a_refund_before_its_payment_fails_until_the_payment_arrives() {
    let s = TestServer::start(Options::default()).await;
    let refund = event(
        "evt_refund_early",
        "charge.refunded",
        refunded_charge("pi_early", 10000),
    );
    let first = s.deliver_signed(&refund).await;
    assert_eq!(first.status, 500, "{:?}", first.body);
    assert!(
        first.body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("pi_early") && r.contains("not seen yet")),
        "{:?}",
        first.body
    );
    let rec = s.db.event("evt_refund_early").await.unwrap().unwrap();
    assert_eq!(rec.status, "failed");
    // The payment arrives; Stripe's retry of the refund then applies.
    let pay = event(
        "evt_pay_early",
        "payment_intent.succeeded",
        succeeded_payment("pi_early"),
    );
    assert_eq!(s.deliver_signed(&pay).await.status, 200);
    let retried = s.deliver_signed(&refund).await;
    assert_eq!(retried.status, 200, "{:?}", retried.body);
    let b = s.get("/v1/ledger/tenant-1/balances", Some(API_TOKEN)).await;
    assert_eq!(amount(&b.body, "usd", "customer"), 0);
    assert_eq!(amount(&b.body, "usd", "tenant"), -250);
    assert_eq!(
        s.db.event("evt_refund_early")
            .await
            .unwrap()
            .unwrap()
            .attempts,
        2
    );
}
