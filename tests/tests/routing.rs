//! Routing events to the application's tenants over HTTP: the registry of
//! connected accounts, metadata key aliases, unrouted effects, and the
//! Stripe API version check.

use psa_billing_tests::*;
use serde_json::{Value, json};

fn connect_event(id: &str, account: &str, object: Value) -> Vec<u8> {
    let mut e: Value =
        serde_json::from_slice(&event(id, "payment_intent.succeeded", object)).unwrap();
    e["account"] = json!(account);
    e.to_string().into_bytes()
}

fn untagged_payment(id: &str) -> Value {
    let mut pi = succeeded_payment(id);
    pi["metadata"] = json!({"orgId": "org-9"});
    pi
}

#[tokio::test]
async fn the_registry_routes_connect_events_and_is_managed_over_http() {
    let s = TestServer::start(Options::default()).await;
    let put = s
        .put_json("/v1/tenants/acct_1Routing", &json!({"tenant": "tenant-r"}))
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let got = s.get("/v1/tenants/acct_1Routing", Some(API_TOKEN)).await;
    assert_eq!(got.body["tenant"], "tenant-r");
    assert_eq!(
        s.get("/v1/tenants", Some(API_TOKEN)).await.body["tenants"],
        json!([{"account": "acct_1Routing", "tenant": "tenant-r"}])
    );

    let a = s
        .deliver_signed(&connect_event(
            "evt_r1",
            "acct_1Routing",
            untagged_payment("pi_r1"),
        ))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let fx = s.effects().await;
    assert_eq!(fx[0]["effect"]["tenant"], "tenant-r");
    assert!(fx[0]["effect"].get("unrouted").is_none());
    // The payment reached the registered tenant's ledger.
    let book = s.get("/v1/ledger/tenant-r/balances", Some(API_TOKEN)).await;
    assert_eq!(book.body["balances"]["usd"]["tenant"]["amount"], 9750);

    // Unregistered: the next event of the account has no tenant.
    assert_eq!(s.delete("/v1/tenants/acct_1Routing").await.status, 200);
    assert_eq!(
        s.get("/v1/tenants/acct_1Routing", Some(API_TOKEN))
            .await
            .status,
        404
    );
    s.deliver_signed(&connect_event(
        "evt_r2",
        "acct_1Routing",
        untagged_payment("pi_r2"),
    ))
    .await;
    let fx = s.effects().await;
    assert_eq!(fx[1]["effect"]["tenant"], Value::Null);
    assert_eq!(fx[1]["effect"]["unrouted"], true);

    // Bad registrations are refused and change nothing.
    let bad = s
        .put_json("/v1/tenants/cus_123", &json!({"tenant": "t"}))
        .await;
    assert_eq!(
        (bad.status, bad.body["error"].as_str()),
        (422, Some("invalid_tenant"))
    );
    let bad = s
        .put_json("/v1/tenants/acct_1Routing", &json!({"tenant": ""}))
        .await;
    assert_eq!(bad.status, 422);
    let bad = s
        .put_json("/v1/tenants/acct_1Routing", &json!({"owner": "t"}))
        .await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    assert_eq!(
        s.get("/v1/tenants", Some(API_TOKEN)).await.body["tenants"],
        json!([])
    );
    // Closed without the token.
    assert_eq!(s.get("/v1/tenants", None).await.status, 401);
}

#[tokio::test]
async fn an_unroutable_event_is_kept_and_marked_and_aliases_route_it() {
    let s = TestServer::start(Options::default()).await;
    let a = s
        .deliver_signed(&event(
            "evt_u1",
            "payment_intent.succeeded",
            untagged_payment("pi_u1"),
        ))
        .await;
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (200, Some("accepted"))
    );
    let fx = s.effects().await;
    assert_eq!(fx[0]["kind"], "payment.succeeded");
    assert_eq!(fx[0]["effect"]["unrouted"], true);

    let aliased = TestServer::start(Options {
        tenant_keys: vec!["tenant_id".into(), "orgId".into()],
        ..Options::default()
    })
    .await;
    aliased
        .deliver_signed(&event(
            "evt_u1",
            "payment_intent.succeeded",
            untagged_payment("pi_u1"),
        ))
        .await;
    let fx = aliased.effects().await;
    assert_eq!(fx[0]["effect"]["tenant"], "org-9");
    assert!(fx[0]["effect"].get("unrouted").is_none());
}

#[tokio::test]
async fn an_api_version_mismatch_warns_or_in_strict_mode_waits_for_a_fix() {
    let body = event(
        "evt_v1",
        "payment_intent.succeeded",
        succeeded_payment("pi_v1"),
    );
    // The fixtures carry 2025-08-27.basil.
    let lenient = TestServer::start(Options {
        api_version: Some(("2024-06-20".into(), false)),
        ..Options::default()
    })
    .await;
    assert_eq!(lenient.deliver_signed(&body).await.status, 200);

    let strict = TestServer::start(Options {
        api_version: Some(("2024-06-20".into(), true)),
        ..Options::default()
    })
    .await;
    let a = strict.deliver_signed(&body).await;
    assert_eq!(a.status, 500, "{:?}", a.body);
    assert!(
        a.body["reason"]
            .as_str()
            .unwrap()
            .contains("2025-08-27.basil"),
        "{:?}",
        a.body
    );
    // Kept for Stripe's retry (and `replay`): the event and its body are recorded, nothing applied.
    let rec = strict.db.event("evt_v1").await.unwrap().unwrap();
    assert_eq!(rec.status, "failed");
    assert!(rec.last_error.unwrap().contains("strict"));
    assert_eq!(strict.db.counts().await.unwrap(), (1, 0, 0));

    let matching = TestServer::start(Options {
        api_version: Some(("2025-08-27.basil".into(), true)),
        ..Options::default()
    })
    .await;
    assert_eq!(matching.deliver_signed(&body).await.status, 200);
}

/// A payment on an account the application had not registered yet is kept
/// under the account's id; registering the account moves it to the
/// tenant's ledger with new postings, and the account's own ledger ends at
/// zero with its history intact.
#[tokio::test]
async fn registering_late_moves_the_ledger_kept_under_the_account() {
    let s = TestServer::start(Options::default()).await;
    let a = s
        .deliver_signed(&connect_event(
            "evt_late1",
            "acct_1Late",
            untagged_payment("pi_late1"),
        ))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let usd = |b: Value| {
        b["balances"]["usd"]["tenant"]["amount"]
            .as_i64()
            .unwrap_or(0)
    };
    let ledger = |tenant: &str| format!("/v1/ledger/{tenant}/balances");
    assert_eq!(
        usd(s.get(&ledger("acct_1Late"), Some(API_TOKEN)).await.body),
        9_750
    );

    let put = s
        .put_json("/v1/tenants/acct_1Late", &json!({"tenant": "tenant-late"}))
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(
        usd(s.get(&ledger("tenant-late"), Some(API_TOKEN)).await.body),
        9_750
    );
    assert_eq!(
        usd(s.get(&ledger("acct_1Late"), Some(API_TOKEN)).await.body),
        0
    );
    let txs = s
        .get("/v1/ledger/acct_1Late/transactions", Some(API_TOKEN))
        .await;
    let ids: Vec<&str> = txs.body["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["pi_late1:payment", "pi_late1:payment:rerouted"]);
    // The application learns what moved from the outbox.
    let rerouted = |effects: Vec<Value>| -> Vec<Value> {
        effects
            .into_iter()
            .filter(|e| e["kind"] == "account.rerouted")
            .collect()
    };
    let moved = rerouted(s.effects().await);
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        moved[0]["effect"],
        json!({"kind": "account.rerouted", "account": "acct_1Late", "tenant": "tenant-late",
               "transactions": ["pi_late1:payment"]})
    );
    // Registering again moves nothing more, and says nothing.
    let put = s
        .put_json("/v1/tenants/acct_1Late", &json!({"tenant": "tenant-late"}))
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(
        usd(s.get(&ledger("tenant-late"), Some(API_TOKEN)).await.body),
        9_750
    );
    assert_eq!(rerouted(s.effects().await).len(), 1);
}
