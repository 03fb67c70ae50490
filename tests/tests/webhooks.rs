//! End-to-end: the real server on loopback, the real component, a real
//! SQLite file. Every case checks the HTTP answer and what the database holds.

use psa_billing_tests::*;
use serde_json::json;

async fn counts(s: &TestServer) -> (i64, i64, i64) {
    s.db.counts().await.unwrap()
}

#[tokio::test]
async fn a_valid_delivery_is_stored_with_its_effects() {
    a_valid_delivery_is_stored_with_its_effects_on(Options::default()).await;
}

#[tokio::test]
async fn a_valid_delivery_is_stored_with_its_effects_on_postgres() {
    a_valid_delivery_is_stored_with_its_effects_on(Options {
        postgres: true,
        ..Options::default()
    })
    .await;
}

async fn a_valid_delivery_is_stored_with_its_effects_on(options: Options) {
    let s = TestServer::start(options).await;
    let body = event(
        "evt_ok",
        "payment_intent.succeeded",
        succeeded_payment("pi_ok"),
    );
    let a = s.deliver_signed(&body).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["status"], "accepted");

    let rec = s.db.event("evt_ok").await.unwrap().expect("event logged");
    assert_eq!(rec.status, "processed");
    assert_eq!(rec.event_type, "payment_intent.succeeded");
    assert_eq!(rec.attempts, 1);
    // State: the payment intent's status and ledger owner, and the ledger's book, transaction and id.
    assert_eq!(counts(&s).await, (1, 5, 1));

    let fx = s.get("/v1/effects?after=0", Some(API_TOKEN)).await;
    assert_eq!(fx.status, 200);
    let effect = &fx.body["effects"][0];
    assert_eq!(effect["event_id"], "evt_ok");
    assert_eq!(effect["kind"], "payment.succeeded");
    assert_eq!(
        effect["effect"]["amount"],
        json!({"amount": 10000, "currency": "usd"})
    );
    assert_eq!(effect["effect"]["tenant"], "tenant-1");
    assert_eq!(effect["effect"]["reference"], "INV-1");
    let next = fx.body["next_after"].as_i64().unwrap();
    let after = s
        .get(&format!("/v1/effects?after={next}"), Some(API_TOKEN))
        .await;
    assert_eq!(after.body["effects"], json!([]));
}

#[tokio::test]
async fn a_duplicate_delivery_applies_nothing_twice() {
    let s = TestServer::start(Options::default()).await;
    let body = event(
        "evt_dup",
        "payment_intent.succeeded",
        succeeded_payment("pi_dup"),
    );
    assert_eq!(s.deliver_signed(&body).await.status, 200);
    let again = s.deliver_signed(&body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(counts(&s).await, (1, 5, 1));
    assert_eq!(s.db.event("evt_dup").await.unwrap().unwrap().attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_apply_once() {
    concurrent_duplicates_apply_once_on(Options::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_apply_once_on_postgres() {
    concurrent_duplicates_apply_once_on(Options {
        postgres: true,
        ..Options::default()
    })
    .await;
}

async fn concurrent_duplicates_apply_once_on(options: Options) {
    let s = TestServer::start(options).await;
    let body = event("evt_race", "invoice.paid", {
        let mut inv = stripe_object("invoice");
        inv["status"] = json!("paid");
        inv["amount_paid"] = json!(1000);
        inv
    });
    let header = sign_now(&body, SECRET, 0);
    let answers = futures_join(&s, &body, &header, 8).await;
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    let accepted = answers
        .iter()
        .filter(|a| a.body["status"] == "accepted")
        .count();
    assert_eq!(accepted, 1, "{answers:?}");
    assert_eq!(counts(&s).await, (1, 1, 1));
}

async fn futures_join(s: &TestServer, body: &[u8], header: &str, n: usize) -> Vec<Answer> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url) = (s.client.clone(), s.url("/webhooks/stripe"));
        let (body, header) = (body.to_vec(), header.to_string());
        set.spawn(async move {
            let r = client
                .post(url)
                .header("Stripe-Signature", header)
                .body(body)
                .send()
                .await
                .unwrap();
            answer(r).await
        });
    }
    set.join_all().await
}

/// Asserts a 400 with `code`, and that nothing was stored.
async fn assert_rejected(s: &TestServer, a: &Answer, code: &str) {
    assert_eq!(a.status, 400, "{:?}", a.body);
    assert_eq!(a.body["error"], code, "{:?}", a.body);
    assert!(a.body["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(counts(s).await, (0, 0, 0));
}

#[tokio::test]
async fn bad_signatures_are_refused() {
    let s = TestServer::start(Options::default()).await;
    let body = event(
        "evt_sig",
        "payment_intent.succeeded",
        succeeded_payment("pi_sig"),
    );

    let a = s.deliver(&body, None).await;
    assert_rejected(&s, &a, "missing_signature").await;

    let a = s.deliver(&body, Some("t=123")).await;
    assert_rejected(&s, &a, "malformed_signature_header").await;

    // Signed over other bytes.
    let header = sign_now(&body, SECRET, 0);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let a = s.deliver(&tampered, Some(&header)).await;
    assert_rejected(&s, &a, "bad_signature").await;

    // Signed with a secret the server does not have.
    let a = s
        .deliver(&body, Some(&sign_now(&body, "whsec_other", 0)))
        .await;
    assert_rejected(&s, &a, "bad_signature").await;
}

#[tokio::test]
async fn timestamps_outside_the_tolerance_are_refused_both_ways() {
    let s = TestServer::start(Options::default()).await;
    let body = event(
        "evt_ts",
        "payment_intent.succeeded",
        succeeded_payment("pi_ts"),
    );
    let a = s.deliver(&body, Some(&sign_now(&body, SECRET, -400))).await;
    assert_rejected(&s, &a, "timestamp_too_old").await;
    let a = s.deliver(&body, Some(&sign_now(&body, SECRET, 400))).await;
    assert_rejected(&s, &a, "timestamp_in_future").await;
    // Inside the tolerance on either side is fine.
    let a = s.deliver(&body, Some(&sign_now(&body, SECRET, -250))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}

#[tokio::test]
async fn every_secret_of_a_rotation_is_accepted() {
    let s = TestServer::start(Options {
        secrets: vec!["whsec_old".into(), "whsec_new".into()],
        ..Options::default()
    })
    .await;
    let old = event(
        "evt_rot_old",
        "payment_intent.succeeded",
        succeeded_payment("pi_1"),
    );
    let new = event(
        "evt_rot_new",
        "payment_intent.succeeded",
        succeeded_payment("pi_2"),
    );
    let a = s.deliver(&old, Some(&sign_now(&old, "whsec_old", 0))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = s.deliver(&new, Some(&sign_now(&new, "whsec_new", 0))).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // A header carrying a stale v1 and a good one (Stripe during rotation).
    let both = event(
        "evt_rot_both",
        "payment_intent.succeeded",
        succeeded_payment("pi_3"),
    );
    let good = sign_now(&both, "whsec_new", 0);
    let bad = sign_now(&both, "whsec_gone", 0);
    let header = format!("{},{}", bad, good.split_once(',').unwrap().1);
    assert_eq!(s.deliver(&both, Some(&header)).await.status, 200);
    assert_eq!(counts(&s).await.0, 3);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let s = TestServer::start(Options {
        max_body_bytes: 4096,
        ..Options::default()
    })
    .await;
    let mut pi = succeeded_payment("pi_big");
    pi["description"] = json!("x".repeat(5000));
    let body = event("evt_big", "payment_intent.succeeded", pi);
    let a = s.deliver(&body, Some(&sign_now(&body, SECRET, 0))).await;
    assert_eq!(a.status, 413, "{:?}", a.body);
    assert_eq!(a.body["error"], "body_too_large");
    assert_eq!(counts(&s).await, (0, 0, 0));
}

#[tokio::test]
async fn the_default_limit_is_one_mebibyte() {
    let s = TestServer::start(Options::default()).await;
    let body = vec![b' '; (1 << 20) + 1];
    let a = s.deliver(&body, Some(&sign_now(&body, SECRET, 0))).await;
    assert_eq!(a.status, 413);
}

#[tokio::test]
async fn malformed_events_are_refused_with_a_reason() {
    let s = TestServer::start(Options::default()).await;
    for (body, code) in [
        (&b"{not json"[..], "malformed_payload"),
        (&b"[]"[..], "malformed_payload"),
        (
            &br#"{"type":"invoice.paid","created":1}"#[..],
            "missing_field",
        ),
        (&br#"{"id":"evt_x","created":1}"#[..], "missing_field"),
    ] {
        let a = s.deliver(body, Some(&sign_now(body, SECRET, 0))).await;
        assert_rejected(&s, &a, code).await;
    }
}

#[tokio::test]
async fn an_unused_type_is_recorded_as_ignored() {
    let s = TestServer::start(Options::default()).await;
    let body = event("evt_plan", "plan.created", stripe_object("plan"));
    let a = s.deliver_signed(&body).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["status"], "ignored");
    assert_eq!(
        s.db.event("evt_plan").await.unwrap().unwrap().status,
        "ignored"
    );
    let fx = s.db.effects_after(0, 10).await.unwrap();
    assert_eq!(fx.len(), 1);
    assert_eq!(fx[0].kind, "event.ignored");
    assert_eq!(fx[0].effect["event_type"], "plan.created");
}

#[tokio::test]
async fn an_event_that_cannot_be_processed_is_rejected_dead_lettered_and_rolled_back() {
    let s = TestServer::start(Options::default()).await;
    // invoice.paid without amounts: verified, but the mapping can never
    // apply it. Taken with 2xx so that Stripe stops retrying; dead at once.
    let body = event(
        "evt_fail",
        "invoice.paid",
        json!({"id": "in_x", "object": "invoice"}),
    );
    for attempt in 1..=2 {
        let a = s.deliver_signed(&body).await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        assert_eq!(a.body["status"], "rejected");
        assert!(a.body["reason"].as_str().unwrap().contains("amount_paid"));
        let rec = s.db.event("evt_fail").await.unwrap().unwrap();
        assert_eq!(rec.status, "dead");
        assert_eq!(s.db.dead_letters().await.unwrap().len(), 1);
        assert_eq!(rec.attempts, attempt);
        assert!(rec.last_error.unwrap().contains("amount_paid"));
        // The event is logged; no state and no effect survive.
        assert_eq!(counts(&s).await, (1, 0, 0));
    }
}

#[tokio::test]
async fn the_effects_api_is_closed_without_the_token() {
    let s = TestServer::start(Options::default()).await;
    assert_eq!(s.get("/v1/effects", None).await.status, 401);
    assert_eq!(s.get("/v1/effects", Some("wrong")).await.status, 401);
    assert_eq!(
        s.get("/v1/effects?limit=0", Some(API_TOKEN)).await.status,
        400
    );
    assert_eq!(
        s.get("/v1/effects?after=x", Some(API_TOKEN)).await.status,
        400
    );
    assert_eq!(s.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn metrics_count_deliveries_by_outcome_and_reason() {
    let s = TestServer::start(Options::default()).await;
    let body = event(
        "evt_m1",
        "payment_intent.succeeded",
        succeeded_payment("pi_m1"),
    );
    s.deliver_signed(&body).await;
    s.deliver_signed(&body).await;
    s.deliver(&body, Some(&sign_now(&body, SECRET, -10_000)))
        .await;
    s.deliver(&body, None).await;
    let unused = event("evt_m2", "balance.available", json!({"object": "balance"}));
    s.deliver_signed(&unused).await;
    let failing = event(
        "evt_m3",
        "invoice.paid",
        json!({"id": "in_m", "object": "invoice"}),
    );
    s.deliver_signed(&failing).await;

    let resp = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics")
    );
    let text = resp.text().await.unwrap();
    for line in [
        r#"psa_billing_deliveries_total{outcome="accepted"} 1"#,
        r#"psa_billing_deliveries_total{outcome="duplicate"} 1"#,
        r#"psa_billing_deliveries_total{outcome="ignored"} 1"#,
        r#"psa_billing_deliveries_total{outcome="rejected",reason="unprocessable"} 1"#,
        r#"psa_billing_deliveries_total{outcome="rejected",reason="timestamp_too_old"} 1"#,
        r#"psa_billing_deliveries_total{outcome="rejected",reason="missing_signature"} 1"#,
        "psa_billing_delivery_seconds_count 6",
        "psa_billing_outbox_effects 2",
        // One at a time, a commit each: the accepted event, its duplicate
        // (not looked up first: its commit refuses it) and the ignored event.
        "psa_billing_commit_groups_total 3",
        "psa_billing_committed_deliveries_total 3",
        // One at a time: nothing read changed before its commit.
        "psa_billing_state_conflicts_total 0",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    // One verify per delivery (6: the stale and the unsigned ones are
    // refused by it), one handle per verified delivery (4: the accepted
    // event, its duplicate, the ignored and the rejected one).
    assert!(
        text.contains("psa_billing_plugin_call_seconds_count 10"),
        "{text}"
    );
}
