//! Custom fee-rules components: the example volume discount, and a hostile
//! one whose every misbehaviour must fail that quote alone.

use psa_billing::runtime::{CallError, FeeError, Money, QuoteRequest};
use psa_billing::testing::{HOSTILE_FEE_RULES_PATH, VOLUME_DISCOUNT_RULES_PATH};
use psa_billing::{DEFAULT_PLUGIN, Limits, Runtime};
use psa_billing_tests::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn runtime_with(path: &str) -> Runtime {
    let wasm = std::fs::read(path).unwrap();
    let limits = Limits {
        call_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    Runtime::with_fee_rules(DEFAULT_PLUGIN, Some(&wasm), limits).unwrap()
}

fn request(amount: i64, tenant: Option<&str>, monthly_volume: Option<i64>) -> QuoteRequest {
    QuoteRequest {
        amount: Money {
            amount,
            currency: "usd".into(),
        },
        payment_method: "card".into(),
        tenant: tenant.map(str::to_string),
        international: false,
        converted: false,
        application_fee_percent: None,
        application_fee_fixed: None,
        monthly_volume,
    }
}

#[tokio::test]
async fn the_volume_discount_lowers_the_platform_fee_above_the_threshold() {
    let rt = runtime_with(VOLUME_DISCOUNT_RULES_PATH);
    assert!(rt.has_fee_rules());
    let below = rt
        .quote(None, request(10_000, None, Some(500_000)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            below.processor_fee.amount,
            below.application_fee.amount,
            below.net.amount
        ),
        (320, 250, 9_430)
    );
    // $9,950 so far plus this $100 payment crosses $10,000: 1.5%.
    let above = rt
        .quote(None, request(10_000, None, Some(995_000)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            above.processor_fee.amount,
            above.application_fee.amount,
            above.net.amount
        ),
        (320, 150, 9_530)
    );
    assert_eq!(above.lines.len(), 3);
    assert_eq!(above.lines[1].payee, "platform");
    // The rules file is not what prices payments any more.
    let with_file = rt
        .quote(
            Some("[platform]\npercent = \"9\"\n".into()),
            request(10_000, None, None),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(with_file.application_fee.amount, 250);
    // The component's own refusal comes back as a clear rules error.
    let mut eur = request(10_000, None, None);
    eur.amount.currency = "eur".into();
    let err = rt.quote(None, eur).await.unwrap().unwrap_err();
    assert!(
        matches!(&err, FeeError::InvalidRules(m) if m.contains("USD only")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_volume_discount_over_http() {
    let s = TestServer::start(Options {
        runtime: Some(runtime_with(VOLUME_DISCOUNT_RULES_PATH)),
        ..Options::default()
    })
    .await;
    let q = s
        .post_json(
            "/v1/quote",
            &json!({"amount": "100.00", "currency": "usd", "monthly_volume": "9950.00"}),
        )
        .await;
    assert_eq!(q.status, 200, "{:?}", q.body);
    assert_eq!(q.body["application_fee"]["display"], "1.50");
    assert_eq!(q.body["net"]["amount"], 9_530);
}

#[tokio::test]
async fn hostile_fee_rules_fail_that_quote_with_a_clear_error() {
    let rt = runtime_with(HOSTILE_FEE_RULES_PATH);
    for (tenant, says) in [
        ("leak", "add up to"),
        ("negative", "negative"),
        ("currency", "eur"),
        ("missing", "missing"),
        ("error", "no price for this tenant"),
    ] {
        let r = rt.quote(None, request(10_000, Some(tenant), None)).await;
        let err = r.unwrap().unwrap_err();
        assert!(
            matches!(&err, FeeError::InvalidRules(m) if m.contains(says)),
            "{tenant}: {err:?}"
        );
    }
    let started = Instant::now();
    let looped = rt.quote(None, request(10_000, Some("loop"), None)).await;
    assert!(
        matches!(&looped, Err(CallError::FeeRules(inner)) if matches!(**inner, CallError::Timeout(_))),
        "{looped:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let trapped = rt.quote(None, request(10_000, Some("trap"), None)).await;
    assert!(
        matches!(&trapped, Err(CallError::FeeRules(inner)) if matches!(**inner, CallError::Trap(_))),
        "{trapped:?}"
    );
    // A well-behaved answer from the same component still goes through.
    let ok = rt
        .quote(None, request(10_000, Some("fine"), None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ok.processor_fee.amount, ok.net.amount), (300, 9_700));
}

#[tokio::test]
async fn the_server_keeps_serving_after_a_looping_fee_rule() {
    let s = TestServer::start(Options {
        runtime: Some(runtime_with(HOSTILE_FEE_RULES_PATH)),
        ..Options::default()
    })
    .await;
    let looped = s
        .post_json(
            "/v1/quote",
            &json!({"amount": "100.00", "currency": "usd", "tenant": "loop"}),
        )
        .await;
    assert_eq!(looped.status, 500, "{:?}", looped.body);
    assert_eq!(looped.body["error"], "fee_rules_failed");
    assert!(
        looped.body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("custom fee rules") && r.contains("deadline")),
        "{:?}",
        looped.body
    );
    let leak = s
        .post_json(
            "/v1/quote",
            &json!({"amount": "100.00", "currency": "usd", "tenant": "leak"}),
        )
        .await;
    assert_eq!(leak.status, 422, "{:?}", leak.body);
    let ok = s
        .post_json("/v1/quote", &json!({"amount": "100.00", "currency": "usd"}))
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let delivered = s
        .deliver_signed(&event("evt_after_rules", "plan.created", json!({})))
        .await;
    assert_eq!(delivered.status, 200);
}

#[test]
fn a_plugin_in_place_of_fee_rules_is_refused_clearly() {
    let plugin = std::fs::read(psa_billing::testing::HOSTILE_PLUGIN_PATH).unwrap();
    let err = Runtime::with_fee_rules(DEFAULT_PLUGIN, Some(&plugin), Limits::default())
        .err()
        .expect("a billing plugin is not a fee-rules component");
    assert!(format!("{err:#}").contains("fee-rules-plugin"), "{err:#}");
}

/// A hostile component remembers the tenant of the call before (in a
/// static of its instance) and tells it to the next caller. By default each
/// call has a fresh instance: the spy learns nothing. With reuse opted in,
/// it learns the victim's tenant, so the test can fail.
#[tokio::test]
async fn a_fee_rules_component_cannot_see_the_previous_calls_tenant() {
    let wasm = std::fs::read(HOSTILE_FEE_RULES_PATH).unwrap();
    for (reuse, expected) in [(1, "None"), (100, "Some(\"victim-secret\")")] {
        let limits = Limits {
            fee_rules_calls_per_instance: reuse,
            max_instances: 1,
            ..Limits::default()
        };
        let rt = Runtime::with_fee_rules(DEFAULT_PLUGIN, Some(&wasm), limits).unwrap();
        let victim = rt
            .quote(None, request(10_000, Some("victim-secret"), None))
            .await;
        assert!(victim.unwrap().is_ok());
        let spied = rt.quote(None, request(10_000, Some("spy"), None)).await;
        let err = spied.unwrap().unwrap_err();
        assert!(
            matches!(&err, FeeError::InvalidRules(m) if m.ends_with(&format!("the call before was for {expected}"))),
            "reuse {reuse}: {err:?}"
        );
    }
}
