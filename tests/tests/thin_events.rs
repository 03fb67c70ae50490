//! Thin (API v2) event notifications: verified with their own secret,
//! fetched from a FAKE Stripe on 127.0.0.1 through the host's client,
//! mapped like snapshot events, de-duplicated by event id.

use psa_billing::stripe::StripeConfig;
use psa_billing_tests::fake_stripe::{FAKE_KEY, FakeStripe, Fault};
use psa_billing_tests::{Options, SECRET, THIN_SECRET, TestServer, event, sign_now, stripe_object};
use serde_json::{Value, json};
use std::time::Duration;

const THIN: &str = "/webhooks/stripe/thin";

async fn setup() -> (FakeStripe, TestServer) {
    let fake = FakeStripe::start().await;
    let mut c = StripeConfig::new(FAKE_KEY);
    c.base_url = Some(fake.url());
    c.backoff = Duration::from_millis(5);
    let server = TestServer::start(Options {
        stripe: Some(c),
        ..Options::default()
    })
    .await;
    (fake, server)
}

fn notification(id: &str, kind: &str, related: Option<&str>) -> Value {
    json!({
        "id": id, "object": "v2.core.event", "type": kind,
        "created": "2026-11-23T10:15:00.000Z", "livemode": false, "context": "acct_1Thin",
        "related_object": related.map(|pi| json!({
            "id": pi, "type": "payment_intent", "url": format!("/v1/payment_intents/{pi}"),
        })),
    })
}

/// Stripe's sample payment intent, succeeded, for tenant t-thin.
fn payment(fake: &FakeStripe) -> String {
    let mut pi = stripe_object("payment_intent");
    pi["status"] = json!("succeeded");
    pi["amount_received"] = pi["amount"].clone();
    pi["metadata"] = json!({"tenant_id": "t-thin"});
    let id = pi["id"].as_str().unwrap().to_string();
    fake.insert(Some("acct_1Thin"), pi);
    id
}

async fn deliver_thin(server: &TestServer, body: &Value) -> psa_billing_tests::Answer {
    let raw = body.to_string().into_bytes();
    server
        .deliver_to(THIN, &raw, Some(&sign_now(&raw, THIN_SECRET, 0)))
        .await
}

#[tokio::test]
async fn a_thin_notification_is_fetched_mapped_and_deduplicated() {
    let (fake, server) = setup().await;
    let pi = payment(&fake);
    let note = notification("evt_thin_1", "v1.payment_intent.succeeded", Some(&pi));
    fake.insert(None, note.clone());
    let a = deliver_thin(&server, &note).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "accepted");

    let fetched = fake.requests_to("GET", "/v2/core/events/evt_thin_1");
    assert_eq!(fetched.len(), 1);
    let related = fake.requests_to("GET", &format!("/v1/payment_intents/{pi}"));
    assert_eq!(related.len(), 1);
    assert_eq!(
        related[0].account.as_deref(),
        Some("acct_1Thin"),
        "fetched on the event's account"
    );

    let effects = server.effects().await;
    let paid: Vec<&Value> = effects
        .iter()
        .filter(|e| e["kind"] == "payment.succeeded")
        .collect();
    assert_eq!(paid.len(), 1, "{effects:?}");
    assert_eq!(paid[0]["event_id"], "evt_thin_1");
    assert_eq!(paid[0]["effect"]["tenant"], "t-thin");

    let again = deliver_thin(&server, &note).await;
    assert_eq!(again.body["status"], "duplicate", "{}", again.body);
    assert_eq!(fake.requests().len(), 2, "a duplicate is not fetched again");
}

#[tokio::test]
async fn each_endpoint_refuses_the_other_kind_of_event() {
    let (_fake, server) = setup().await;
    let snapshot = event(
        "evt_snap",
        "payment_intent.succeeded",
        stripe_object("payment_intent"),
    );
    let a = server
        .deliver_to(THIN, &snapshot, Some(&sign_now(&snapshot, THIN_SECRET, 0)))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body["reason"]
            .as_str()
            .unwrap()
            .contains("/webhooks/stripe"),
        "{}",
        a.body
    );

    let thin = notification("evt_thin_2", "v1.payment_intent.succeeded", Some("pi_1"))
        .to_string()
        .into_bytes();
    let a = server
        .deliver(&thin, Some(&sign_now(&thin, SECRET, 0)))
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body["reason"]
            .as_str()
            .unwrap()
            .contains("/webhooks/stripe/thin"),
        "{}",
        a.body
    );

    // The snapshot endpoint's secret does not open the thin one.
    let a = server
        .deliver_to(THIN, &thin, Some(&sign_now(&thin, SECRET, 0)))
        .await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (400, Some("bad_signature")),
        "{}",
        a.body
    );
    let a = server
        .deliver_to(THIN, &thin, Some(&sign_now(&thin, THIN_SECRET, -3600)))
        .await;
    assert_eq!(a.body["error"], "timestamp_too_old", "{}", a.body);
}

#[tokio::test]
async fn stripe_failures_answer_5xx_so_stripe_redelivers() {
    let (fake, server) = setup().await;
    let pi = payment(&fake);
    let note = notification("evt_thin_3", "v1.payment_intent.succeeded", Some(&pi));
    fake.insert(None, note.clone());
    fake.fail_next(std::iter::repeat_n(Fault::Status(500), 4));
    let a = deliver_thin(&server, &note).await;
    assert_eq!(a.status, 500, "{}", a.body);
    assert!(
        a.body["reason"]
            .as_str()
            .unwrap()
            .contains("fetching the event"),
        "{}",
        a.body
    );
    assert!(server.effects().await.is_empty());

    let a = deliver_thin(&server, &note).await;
    assert_eq!(a.body["status"], "accepted", "{}", a.body);

    // An event Stripe does not know: refused by Stripe, kept for redelivery.
    let unknown = notification("evt_thin_404", "v1.payment_intent.succeeded", Some(&pi));
    let a = deliver_thin(&server, &unknown).await;
    assert_eq!(a.status, 500, "{}", a.body);
}

#[tokio::test]
async fn a_v2_type_without_a_v1_object_is_recorded_as_ignored() {
    let (fake, server) = setup().await;
    let mut note = notification("evt_thin_4", "v2.core.account.updated", None);
    note["related_object"] =
        json!({"id": "acct_1", "type": "v2.core.account", "url": "/v2/core/accounts/acct_1"});
    fake.insert(None, note.clone());
    let a = deliver_thin(&server, &note).await;
    assert_eq!(a.body["status"], "ignored", "{}", a.body);
    assert_eq!(fake.requests().len(), 1, "only the event is fetched");
}
