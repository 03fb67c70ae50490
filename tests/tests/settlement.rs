//! Settlement jobs, end to end: a payment's webhook over HTTP, the job the
//! host queues from the outbox, run through the plugin against the FAKE
//! Stripe (`fake_stripe`), which answers with the charge's balance
//! transaction. The ledger then holds Stripe's fee as Stripe recorded it.

use psa_billing::stripe::StripeConfig;
use psa_billing_tests::fake_stripe::{AVAILABLE_ON, FAKE_KEY, FakeStripe, Fault};
use psa_billing_tests::{Options, TestServer, stripe_object};
use serde_json::{Value, json};
use std::time::Duration;

fn config(fake: &FakeStripe) -> StripeConfig {
    let mut c = StripeConfig::new(FAKE_KEY);
    c.base_url = Some(fake.url());
    c.backoff = Duration::from_millis(5);
    // Two attempts per call: the two 500s below fail one run of the job.
    c.max_attempts = 2;
    c
}

async fn server(fake: Option<&FakeStripe>) -> TestServer {
    on(fake, false).await
}

async fn on(fake: Option<&FakeStripe>, postgres: bool) -> TestServer {
    TestServer::start(Options {
        stripe: fake.map(config),
        postgres,
        ..Options::default()
    })
    .await
}

/// Seed 000's payment: $100.00 by card on the tenant's connected account
/// (a direct charge) with a 2.5 % application fee.
fn payment_succeeded(event: &str, pi: &str, account: Option<&str>, tenant: &str) -> Vec<u8> {
    let mut object = stripe_object("payment_intent");
    object["id"] = json!(pi);
    object["amount"] = json!(10_000);
    object["amount_received"] = json!(10_000);
    object["currency"] = json!("usd");
    object["status"] = json!("succeeded");
    object["application_fee_amount"] = json!(250);
    object["metadata"] = json!({"tenant_id": tenant});
    json!({"id": event, "object": "event", "type": "payment_intent.succeeded",
           "created": 1_763_800_000, "account": account, "livemode": false,
           "api_version": "2025-08-27.basil", "data": {"object": object}})
    .to_string()
    .into_bytes()
}

async fn balances(server: &TestServer, tenant: &str) -> Value {
    let a = server
        .get(
            &format!("/v1/ledger/{tenant}/balances"),
            Some(psa_billing_tests::API_TOKEN),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["balances"]["usd"].clone()
}

fn amount(balances: &Value, account: &str) -> i64 {
    balances[account]["amount"].as_i64().unwrap_or(0)
}

#[tokio::test]
async fn seed_000_through_a_webhook_and_its_settlement_leaves_the_tenant_at_94_30() {
    seed_000_settles(false).await;
}

#[tokio::test]
async fn seed_000_settles_on_postgresql_too() {
    seed_000_settles(true).await;
}

async fn seed_000_settles(postgres: bool) {
    let fake = FakeStripe::start().await;
    let server = on(Some(&fake), postgres).await;
    let (charge, txn) =
        fake.succeeded_payment(Some("acct_000"), "pi_000", 10_000, "usd", Some(250), None);
    let a = server
        .deliver_signed(&payment_succeeded(
            "evt_000",
            "pi_000",
            Some("acct_000"),
            "t_000",
        ))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Before the job: the gross less the application fee, no processor fee.
    assert_eq!(amount(&balances(&server, "t_000").await, "tenant"), 9_750);

    assert_eq!(server.pipeline.queue_jobs().await.unwrap(), 1);
    assert_eq!(
        server.pipeline.queue_jobs().await.unwrap(),
        0,
        "queued once"
    );
    assert_eq!(server.pipeline.retry_due().await.unwrap(), 1);
    let b = balances(&server, "t_000").await;
    assert_eq!(amount(&b, "tenant"), 9_430, "{b}");
    assert_eq!(amount(&b, "processor"), 320, "{b}");
    assert_eq!(amount(&b, "platform"), 250, "{b}");

    // Stripe was read on the connected account, where a direct charge lives.
    for path in [
        "/v1/payment_intents/pi_000".to_string(),
        format!("/v1/charges/{charge}"),
        format!("/v1/balance_transactions/{txn}"),
    ] {
        let sent = fake.requests_to("GET", &path);
        assert_eq!(sent.len(), 1, "{path}");
        assert_eq!(sent[0].account.as_deref(), Some("acct_000"), "{path}");
    }
    let settled: Vec<Value> = server
        .effects()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "payment.settled")
        .collect();
    assert_eq!(settled.len(), 1, "{settled:?}");
    let s = &settled[0]["effect"];
    assert_eq!(s["processor_fee"]["amount"], 320);
    assert_eq!(s["net"]["amount"], 9_430, "Stripe's net: after both fees");
    assert_eq!(s["balance_transaction"], txn);
    assert_eq!(s["available_on"], AVAILABLE_ON);
    assert_eq!(s["paid_by"], "tenant");
    assert_eq!(s["tenant"], "t_000");

    // Nothing is due any more, and the job shows in the metrics.
    assert_eq!(server.pipeline.retry_due().await.unwrap(), 0);
    let metrics = server.get("/metrics", None).await;
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        text.contains(r#"psa_billing_jobs_total{kind="settle_payment",outcome="done"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_destination_charges_fee_is_the_platforms_and_read_on_the_platform() {
    let fake = FakeStripe::start().await;
    fake.set_card_fee(250, 25);
    let server = server(Some(&fake)).await;
    let (_, txn) =
        fake.succeeded_payment(None, "pi_dest", 10_000, "usd", Some(250), Some("acct_d"));
    let a = server
        .deliver_signed(&payment_succeeded("evt_dest", "pi_dest", None, "t_d"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    server.pipeline.queue_jobs().await.unwrap();
    server.pipeline.retry_due().await.unwrap();
    let b = balances(&server, "t_d").await;
    assert_eq!(
        amount(&b, "processor"),
        275,
        "the fee the test set: 2.5 % + 25¢"
    );
    assert_eq!(amount(&b, "platform"), 250 - 275, "{b}");
    assert_eq!(amount(&b, "tenant"), 9_750, "{b}");
    let sent = fake.requests_to("GET", &format!("/v1/balance_transactions/{txn}"));
    assert_eq!(sent[0].account, None);
}

#[tokio::test]
async fn a_failing_settlement_is_retried_and_a_missing_payment_is_dead_lettered() {
    let fake = FakeStripe::start().await;
    let server = server(Some(&fake)).await;
    // Stripe unreachable: the job stays queued for a later attempt.
    fake.succeeded_payment(Some("acct_1"), "pi_later", 10_000, "usd", Some(250), None);
    server
        .deliver_signed(&payment_succeeded(
            "evt_l",
            "pi_later",
            Some("acct_1"),
            "t_1",
        ))
        .await;
    server.pipeline.queue_jobs().await.unwrap();
    fake.fail_next([Fault::Status(500), Fault::Status(500)]);
    server.pipeline.retry_due().await.unwrap();
    let id = psa_billing::pipeline::settle_job_id("pi_later");
    assert_eq!(
        server.db.event_status(&id).await.unwrap().as_deref(),
        Some("failed")
    );
    assert_eq!(amount(&balances(&server, "t_1").await, "processor"), 0);

    // A payment Stripe does not know: no attempt can succeed.
    server
        .deliver_signed(&payment_succeeded(
            "evt_m",
            "pi_missing",
            Some("acct_1"),
            "t_1",
        ))
        .await;
    server.pipeline.queue_jobs().await.unwrap();
    server.pipeline.retry_due().await.unwrap();
    let dead = psa_billing::pipeline::settle_job_id("pi_missing");
    assert_eq!(
        server.db.event_status(&dead).await.unwrap().as_deref(),
        Some("dead")
    );
}

#[tokio::test]
async fn without_a_stripe_key_no_job_is_queued() {
    let server = server(None).await;
    server
        .deliver_signed(&payment_succeeded("evt_n", "pi_n", Some("acct_n"), "t_n"))
        .await;
    assert_eq!(server.pipeline.queue_jobs().await.unwrap(), 0);
    assert_eq!(amount(&balances(&server, "t_n").await, "tenant"), 9_750);
}
