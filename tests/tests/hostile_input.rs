//! What a hostile or unlucky sender can do with valid credentials or a
//! valid signature, and what it must not: reach another tenant's records,
//! turn a payment into a dead letter, forge log lines, rewrite the audit
//! record, wrap a cursor, reuse a posting id for other money. Each test is
//! the regression test of a finding of the security review.

use psa_billing_tests::*;
use serde_json::{Value, json};

fn payment_for(tenant: &str, id: &str) -> Value {
    let mut pi = succeeded_payment(id);
    pi["metadata"]["tenant_id"] = json!(tenant);
    pi
}

/// `tenant` as a path segment.
fn segment(tenant: &str) -> String {
    form_urlencoded::byte_serialize(tenant.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn posting(id: &str, amount: &str) -> Value {
    json!({"id": id, "currency": "usd", "description": "escrow hold",
           "movements": [{"from": "customer", "to": "escrow", "amount": amount}]})
}

async fn balances(s: &TestServer, tenant: &str) -> Value {
    let a = s
        .get(
            &format!("/v1/ledger/{}/balances", segment(tenant)),
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["balances"].clone()
}

#[tokio::test]
async fn a_tenant_and_a_posting_id_containing_a_slash_cannot_reach_another_tenants_posting() {
    let s = TestServer::start(Options::default()).await;
    let victim = s
        .post_json(
            "/v1/ledger/co%2Fvictim/transactions",
            &posting("inv1", "10.00"),
        )
        .await;
    assert_eq!(victim.status, 200, "{}", victim.body);
    assert_eq!(victim.body["tenant"], "co/victim");
    let attacker = s
        .post_json(
            "/v1/ledger/co/transactions",
            &posting("victim/inv1", "99.00"),
        )
        .await;
    assert_eq!(attacker.status, 200, "{}", attacker.body);
    assert_eq!(
        attacker.body["tenant"], "co",
        "answered with another tenant's posting"
    );
    assert_eq!(attacker.body["id"], "victim/inv1");
    assert_eq!(attacker.body["seq"], 1);
    assert_eq!(balances(&s, "co").await["usd"]["escrow"]["amount"], 9_900);
    assert_eq!(
        balances(&s, "co/victim").await["usd"]["escrow"]["amount"],
        1_000
    );
    // And the other way round: the victim's first posting is still its own.
    let again = s
        .post_json(
            "/v1/ledger/co%2Fvictim/transactions",
            &posting("inv1", "10.00"),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["seq"], victim.body["seq"]);
}

#[tokio::test]
async fn every_tenant_stripe_metadata_can_hold_is_recorded() {
    let s = TestServer::start(Options::default()).await;
    // Stripe takes metadata values of up to 500 characters.
    let tenants = [
        "t".repeat(500),
        "é".repeat(500),
        "/".repeat(250) + &"%".repeat(250),
        "🙂".repeat(500),
    ];
    for (i, tenant) in tenants.iter().enumerate() {
        let body = event(
            &format!("evt_long_tenant_{i}"),
            "payment_intent.succeeded",
            payment_for(tenant, &format!("pi_long_tenant_{i}")),
        );
        let a = s.deliver_signed(&body).await;
        assert_eq!(a.status, 200, "tenant {i}: {}", a.body);
        assert_eq!(a.body["status"], "accepted");
        let b = balances(&s, tenant).await;
        assert_eq!(b["usd"]["customer"]["amount"], -10_000, "tenant {i}: {b}");
    }
}

#[tokio::test]
async fn the_api_refuses_what_it_cannot_store_with_a_422_naming_the_limit() {
    let s = TestServer::start(Options::default()).await;
    let long_name = "n".repeat(10_000);
    let a = s
        .put_json("/v1/tenants/acct_1Long", &json!({ "tenant": long_name }))
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(
        a.body["reason"].as_str().unwrap().contains("500"),
        "{}",
        a.body
    );
    // Nothing was registered.
    assert_eq!(
        s.get("/v1/tenants/acct_1Long", Some(API_TOKEN))
            .await
            .status,
        404
    );

    let long_account = format!("acct_{}", "a".repeat(10_000));
    let a = s
        .put_json(
            &format!("/v1/tenants/{long_account}"),
            &json!({ "tenant": "t" }),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = s
        .get(&format!("/v1/tenants/{long_account}"), Some(API_TOKEN))
        .await;
    assert_eq!(a.status, 422, "{}", a.body);

    let a = s
        .post_json(
            "/v1/ledger/t/transactions",
            &posting(&"i".repeat(600), "1.00"),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(
        a.body["reason"].as_str().unwrap().contains("255"),
        "{}",
        a.body
    );
    let mut big = posting("big-description", "1.00");
    big["description"] = json!("d".repeat(300_000));
    let a = s.post_json("/v1/ledger/t/transactions", &big).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(
        a.body["reason"].as_str().unwrap().contains("1000"),
        "{}",
        a.body
    );
    let a = s
        .post_json(
            &format!("/v1/ledger/{}/transactions", "t".repeat(600)),
            &posting("x", "1.00"),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
}

#[tokio::test]
async fn a_failed_event_redelivered_with_another_body_keeps_the_body_it_was_processed_with() {
    let s = TestServer::start(Options::default()).await;
    let mut broken = succeeded_payment("pi_audit");
    broken.as_object_mut().unwrap().remove("currency");
    let first = event("evt_audit", "payment_intent.succeeded", broken);
    let a = s.deliver_signed(&first).await;
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (200, Some("rejected")),
        "{}",
        a.body
    );
    let second = event(
        "evt_audit",
        "payment_intent.succeeded",
        succeeded_payment("pi_audit"),
    );
    let a = s.deliver_signed(&second).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "accepted");
    let stored = s.db.event_payload("evt_audit").await.unwrap().unwrap();
    assert_eq!(stored, second, "the audit record is the processed body");
}

#[tokio::test]
async fn a_duplicate_with_another_body_is_counted() {
    let s = TestServer::start(Options::default()).await;
    let body = event(
        "evt_dup_body",
        "payment_intent.succeeded",
        succeeded_payment("pi_dup_body"),
    );
    assert_eq!(s.deliver_signed(&body).await.status, 200);
    // The same body again: a plain duplicate, not counted.
    let a = s.deliver_signed(&body).await;
    assert_eq!(a.body["status"], "duplicate");
    let mut other = succeeded_payment("pi_dup_body");
    other["amount_received"] = json!(1);
    let other = event("evt_dup_body", "payment_intent.succeeded", other);
    let a = s.deliver_signed(&other).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "duplicate");
    let metrics = s
        .client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("psa_billing_duplicate_body_mismatches_total 1\n"),
        "{metrics}"
    );
    // The processed body stands.
    assert_eq!(
        s.db.event_payload("evt_dup_body").await.unwrap().unwrap(),
        body
    );
}

#[tokio::test]
async fn cursors_at_the_end_of_the_range_read_nothing() {
    let s = TestServer::start(Options::default()).await;
    for i in 0..3 {
        let a = s
            .post_json(
                "/v1/ledger/t/transactions",
                &posting(&format!("p{i}"), "1.00"),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let a = s
        .get(
            "/v1/ledger/t/transactions?after=18446744073709551615",
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["transactions"],
        json!([]),
        "the cursor wrapped around"
    );
    let a = s
        .get(
            "/v1/ledger/t/transactions?after=18446744073709551616",
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let a = s
        .get("/v1/effects?after=9223372036854775807", Some(API_TOKEN))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["effects"], json!([]));
    let a = s
        .get("/v1/effects?after=18446744073709551615", Some(API_TOKEN))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
}

#[tokio::test]
async fn a_posting_id_reused_for_other_money_is_a_conflict() {
    let s = TestServer::start(Options::default()).await;
    let first = s
        .post_json("/v1/ledger/t/transactions", &posting("hold-1", "10.00"))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let same = s
        .post_json("/v1/ledger/t/transactions", &posting("hold-1", "10.00"))
        .await;
    assert_eq!(same.status, 200, "{}", same.body);
    assert_eq!(same.body["seq"], first.body["seq"]);
    let other = s
        .post_json("/v1/ledger/t/transactions", &posting("hold-1", "12.00"))
        .await;
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(other.body["error"], "conflict");
    assert!(
        other.body["reason"].as_str().unwrap().contains("hold-1"),
        "{}",
        other.body
    );
    assert_eq!(balances(&s, "t").await["usd"]["escrow"]["amount"], 1_000);
}

#[tokio::test]
async fn event_ids_that_could_forge_log_lines_or_bloat_storage_are_refused() {
    let s = TestServer::start(Options::default()).await;
    for id in [
        "evt_1\nlevel=ERROR forged",
        "evt_\u{1b}[31mred",
        "evt_nul\u{0}",
    ] {
        let body = event(
            id,
            "payment_intent.succeeded",
            succeeded_payment("pi_forge"),
        );
        let a = s.deliver_signed(&body).await;
        assert_eq!(a.status, 400, "{id:?}: {}", a.body);
        assert_eq!(a.body["error"], "malformed_payload");
        assert!(
            a.body["reason"]
                .as_str()
                .unwrap()
                .contains("control character")
        );
    }
    let huge = "e".repeat(600_000);
    let a = s
        .deliver_signed(&event(
            &huge,
            "payment_intent.succeeded",
            succeeded_payment("pi_huge"),
        ))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body["reason"].as_str().unwrap().contains("255 bytes"),
        "{}",
        a.body
    );
    assert_eq!(
        s.db.event_payload(&huge).await.unwrap(),
        None,
        "nothing stored"
    );
    let long_type = "t".repeat(300);
    let a = s
        .deliver_signed(&event(
            "evt_long_type",
            &long_type,
            json!({"id": "x", "object": "x"}),
        ))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
}

#[tokio::test]
async fn a_webhook_currency_in_capitals_joins_the_same_balance() {
    let s = TestServer::start(Options::default()).await;
    let mut upper = payment_for("t-cur", "pi_upper");
    upper["currency"] = json!("USD");
    let a = s
        .deliver_signed(&event("evt_upper", "payment_intent.succeeded", upper))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let lower = payment_for("t-cur", "pi_lower");
    let a = s
        .deliver_signed(&event("evt_lower", "payment_intent.succeeded", lower))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let b = balances(&s, "t-cur").await;
    assert_eq!(
        b.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["usd"],
        "{b}"
    );
    assert_eq!(b["usd"]["customer"]["amount"], -20_000);
}

#[tokio::test]
async fn an_endpoint_for_test_mode_refuses_live_events_and_keeps_nothing() {
    let s = TestServer::start(Options {
        livemode: Some(false),
        ..Default::default()
    })
    .await;
    let mut live: Value = serde_json::from_slice(&event(
        "evt_live",
        "payment_intent.succeeded",
        succeeded_payment("pi_live"),
    ))
    .unwrap();
    live["livemode"] = json!(true);
    let body = live.to_string().into_bytes();
    let a = s.deliver_signed(&body).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"], "livemode_mismatch");
    assert_eq!(s.db.event_payload("evt_live").await.unwrap(), None);
    let test = event(
        "evt_test",
        "payment_intent.succeeded",
        succeeded_payment("pi_test"),
    );
    assert_eq!(s.deliver_signed(&test).await.status, 200);
}

#[tokio::test]
async fn an_event_whose_amounts_cannot_be_posted_says_so_in_one_sentence() {
    let s = TestServer::start(Options::default()).await;
    let mut pi = payment_for("t-big", "pi_big");
    pi["amount"] = json!(i64::MAX - 10);
    pi["amount_received"] = json!(i64::MAX - 10);
    let a = s
        .deliver_signed(&event("evt_big", "payment_intent.succeeded", pi))
        .await;
    // Taken (a 5xx would have Stripe retry it for days), dead-lettered at once.
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "rejected");
    assert_eq!(
        a.body["reason"],
        "malformed event: its amounts cannot be posted to the ledger \
         (invalid ledger transaction: amounts overflow)"
    );
    let rec = s.db.event("evt_big").await.unwrap().unwrap();
    assert_eq!(rec.status, "dead");
}

#[tokio::test]
async fn a_v1_route_added_without_any_auth_code_is_closed_without_the_token() {
    use axum::routing::get;
    let extra =
        axum::Router::new().route("/v1/new-report", get(|| async { "every tenant's secrets" }));
    let s = TestServer::start(Options {
        extra_routes: Some(extra),
        ..Default::default()
    })
    .await;
    let refused = s.get("/v1/new-report", None).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.body["error"], "unauthorized");
    let wrong = s.get("/v1/new-report", Some("not-the-token")).await;
    assert_eq!(wrong.status, 401);
    let allowed = s.get("/v1/new-report", Some(API_TOKEN)).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.body, "every tenant's secrets");
    // psa-billing's own routes pass the same layer, before their input is read.
    for (path, body) in [
        ("/v1/quote", "not json"),
        ("/v1/ledger/t/transactions", "{}"),
    ] {
        let a = s.client.post(s.url(path)).body(body).send().await.unwrap();
        assert_eq!(a.status(), 401, "{path}");
    }
    assert_eq!(s.get("/v1/effects?after=x", None).await.status, 401);
    assert_eq!(
        s.get("/healthz", None).await.status,
        200,
        "/healthz stays open"
    );
}

#[tokio::test]
async fn a_tenant_the_api_could_not_read_is_refused_on_webhooks_too() {
    let s = TestServer::start(Options::default()).await;
    for (i, tenant) in ["a\nb".to_string(), "t".repeat(501), "   ".to_string()]
        .into_iter()
        .enumerate()
    {
        let pi = payment_for(&tenant, &format!("pi_badtenant{i}"));
        let a = s
            .deliver_signed(&event(
                &format!("evt_badtenant{i}"),
                "payment_intent.succeeded",
                pi,
            ))
            .await;
        assert_eq!(
            (a.status, a.body["status"].as_str()),
            (200, Some("rejected")),
            "{}",
            a.body
        );
        assert!(
            a.body["reason"].as_str().unwrap().contains("tenant"),
            "{}",
            a.body
        );
    }
    assert!(s.effects().await.is_empty(), "no ledger, no effect");
}
