//! The embedding API as an application uses it: build, mount the router,
//! deliver, subscribe to effects, quote, register tenants.

use psa_billing::api::quotes::QuoteInput;
use psa_billing::{Billing, Outcome};
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "whsec_embed";

fn payment(id: &str, metadata: Value) -> Vec<u8> {
    json!({"id": format!("evt_{id}"), "object": "event", "type": "payment_intent.succeeded",
           "created": psa_billing::clock::unix_now(), "account": "acct_1Embed",
           "data": {"object": {"id": format!("pi_{id}"), "object": "payment_intent",
               "amount": 5000, "amount_received": 5000, "currency": "usd",
               "application_fee_amount": 125, "metadata": metadata}}})
    .to_string()
    .into_bytes()
}

fn sign(body: &[u8]) -> String {
    psa_billing_core::signature::sign(body, SECRET, psa_billing::clock::unix_now())
}

#[tokio::test]
async fn an_application_builds_mounts_delivers_and_subscribes() {
    let dir = tempfile::tempdir().unwrap();
    let billing = Billing::builder()
        .database(format!("sqlite://{}", dir.path().join("b.db").display()))
        .webhook_secrets([SECRET])
        .api_token("tok")
        .tenant_keys(["tenant_id", "orgId"])
        .reference_keys(["invoice_id"])
        .build()
        .await
        .unwrap();
    let mut effects = billing.subscribe(0);

    // Directly, from the application's own route.
    billing
        .register_tenant("acct_1Embed", "org-registered")
        .await
        .unwrap();
    let body = payment("e1", json!({"invoice_id": "INV-7"}));
    let out = billing
        .handle_delivery(&body, Some(&sign(&body)))
        .await
        .unwrap();
    assert!(
        matches!(out, Outcome::Accepted { ref effects, .. } if effects.len() == 1),
        "{out:?}"
    );
    let first = tokio::time::timeout(Duration::from_secs(5), effects.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.seq, first.kind.as_str()), (1, "payment.succeeded"));
    assert_eq!(first.effect["tenant"], "org-registered");
    assert_eq!(first.effect["reference"], "INV-7");
    let book = billing.balances("org-registered").await.unwrap();
    assert_eq!(book.balances["usd"]["platform"].amount, 125);

    // Through the mounted router, nested under the application's prefix.
    let app = axum::Router::new().nest("/billing", billing.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let body = payment("e2", json!({"orgId": "org-9"}));
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/billing/webhooks/stripe"))
        .header("Stripe-Signature", sign(&body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let second = tokio::time::timeout(Duration::from_secs(5), effects.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.seq, 2);
    // The registry wins over metadata for a registered account.
    assert_eq!(second.effect["tenant"], "org-registered");
    assert_eq!(billing.effects_after(0, 10).await.unwrap().len(), 2);

    // Quotes with the builder's rules (the defaults here).
    let mut input = QuoteInput::new("100.00", "usd");
    input.application_fee_percent = Some("2.5".into());
    let q = billing.quote(input).await.unwrap();
    assert_eq!(q.application_fee.amount, 250);
}

#[tokio::test]
async fn a_bad_configuration_fails_at_build_with_the_reason() {
    let no_secret = Billing::builder().database("sqlite::memory:").build().await;
    assert!(
        no_secret
            .err()
            .unwrap()
            .to_string()
            .contains("webhook secret")
    );
    let missing = Billing::builder()
        .database("sqlite::memory:")
        .webhook_secrets([SECRET])
        .fee_rules_file("/nonexistent/rules.wasm")
        .build()
        .await;
    assert!(format!("{:#}", missing.err().unwrap()).contains("/nonexistent/rules.wasm"));
    let not_a_component = Billing::builder()
        .database("sqlite::memory:")
        .webhook_secrets([SECRET])
        .component_bytes(b"\0asm\x01\0\0\0".to_vec())
        .build()
        .await;
    assert!(format!("{:#}", not_a_component.err().unwrap()).contains("core WebAssembly module"));
    let bad_rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad_rules.path(), "[platform]\npercent = \"lots\"\n").unwrap();
    let rules = Billing::builder()
        .database("sqlite::memory:")
        .webhook_secrets([SECRET])
        .rules_file(bad_rules.path())
        .build()
        .await;
    assert!(rules.is_err());
}

/// `Billing::serve` is what `psa-billing serve` runs: the router behind the
/// listener's limits, with the background retries, until shutdown.
#[tokio::test]
async fn an_application_serves_with_the_limits_of_serve() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let billing = Billing::builder()
        .database(format!("sqlite://{}", dir.path().join("s.db").display()))
        .webhook_secrets([SECRET])
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = psa_billing::http::HttpLimits {
        header_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(billing.serve(listener, limits, async {
        let _ = stopped.await;
    }));

    // A socket that never sends its headers is closed after the header timeout.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed within the header timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // A signed delivery is served.
    let body = payment("s1", json!({"tenant_id": "org-s"}));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         stripe-signature: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        sign(&body),
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
}
