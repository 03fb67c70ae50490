//! `POST /v1/quote` through the real server and component.

use psa_billing_tests::*;
use serde_json::json;

const RULES: &str = "[platform]\npercent = \"2.5\"\n[tenants.vip.platform]\npercent = \"1\"\n";

async fn server() -> TestServer {
    TestServer::start(Options {
        rules: Some(RULES.into()),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn quotes_follow_the_server_rules() {
    let s = server().await;
    let a = s
        .post_json("/v1/quote", &json!({"amount": "100.00", "currency": "usd"}))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["processor_fee"]["amount"], 320);
    assert_eq!(a.body["application_fee"]["amount"], 250);
    assert_eq!(a.body["net"]["display"], "94.30");
    let vip = s
        .post_json(
            "/v1/quote",
            &json!({"amount": "100.00", "currency": "usd", "tenant": "vip"}),
        )
        .await;
    assert_eq!(vip.body["application_fee"]["amount"], 100);
}

#[tokio::test]
async fn bad_quotes_get_422_or_400_with_a_reason() {
    let s = server().await;
    for (body, status) in [
        (json!({"amount": "1.001", "currency": "usd"}), 422),
        (json!({"amount": "100", "currency": "eur"}), 422),
        (
            json!({"amount": "100", "currency": "usd", "application_fee_percent": "101"}),
            422,
        ),
        (json!({"amount": 100, "currency": "usd"}), 422),
        (json!({"currency": "usd"}), 422),
        (
            json!({"amount": "1", "currency": "usd", "surprise": true}),
            422,
        ),
    ] {
        let a = s.post_json("/v1/quote", &body).await;
        assert_eq!(a.status, status, "{body}: {:?}", a.body);
        assert!(
            a.body["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{:?}",
            a.body
        );
    }
    let raw = s
        .client
        .post(s.url("/v1/quote"))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let no_token = s
        .client
        .post(s.url("/v1/quote"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 401);
}

#[tokio::test]
async fn flows_over_http() {
    let s = TestServer::start(Options {
        rules: Some("[escrow]\nplatform_percent = 5\nservice_percent = 20\n".into()),
        ..Options::default()
    })
    .await;
    let e = s
        .post_json(
            "/v1/quote/escrow",
            &json!({"amount": "100.00", "currency": "usd"}),
        )
        .await;
    assert_eq!(e.status, 200, "{:?}", e.body);
    assert_eq!(e.body["hold"]["amount"], 10_500);
    let r = s
        .post_json(
            "/v1/quote/refund",
            &json!({"currency": "usd", "gross": "100.00", "refunded": "90.00", "amount": "20.00"}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.body["reason"].as_str().unwrap().contains("exceeds"),
        "{:?}",
        r.body
    );
    let unknown = s.post_json("/v1/quote/teleport", &json!({})).await;
    assert_eq!(unknown.status, 422);
    assert!(unknown.body["reason"].as_str().unwrap().contains("escrow"));
}
