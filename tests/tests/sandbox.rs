//! A plugin that traps, loops, exhausts memory, floods its output or tries to escape fails that
//! one call cleanly: the delivery is rolled back and answered 5xx, and the
//! server goes on serving.

use psa_billing::{Limits, Runtime};
use psa_billing_tests::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn hostile_runtime() -> Runtime {
    let wasm = std::fs::read(psa_billing::testing::HOSTILE_PLUGIN_PATH).unwrap();
    Runtime::new(
        &wasm,
        Limits {
            call_timeout: Duration::from_millis(100),
            memory_bytes: 16 << 20,
            ..Limits::default()
        },
    )
    .unwrap()
}

async fn hostile_server() -> TestServer {
    TestServer::start(Options {
        runtime: Some(hostile_runtime()),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn each_misbehaviour_fails_one_delivery_and_the_next_succeeds() {
    let s = hostile_server().await;
    for (i, kind) in [
        "test.trap",
        "test.loop",
        "test.oom",
        "test.recurse",
        "test.huge",
        "test.wide",
    ]
    .into_iter()
    .enumerate()
    {
        let body = event(&format!("evt_bad_{i}"), kind, json!({}));
        let (_, state_before, effects_before) = s.db.counts().await.unwrap();
        let started = Instant::now();
        let a = s.deliver_signed(&body).await;
        assert_eq!(a.status, 500, "{kind}: {:?}", a.body);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{kind} was not stopped"
        );
        let rec = s.db.event(&format!("evt_bad_{i}")).await.unwrap().unwrap();
        assert_eq!(rec.status, "failed", "{kind}");
        let reason = rec.last_error.unwrap();
        if kind == "test.loop" {
            assert!(reason.contains("deadline"), "{reason}");
        } else if kind == "test.huge" || kind == "test.wide" {
            assert!(reason.contains("at most"), "{kind}: {reason}");
        } else {
            assert!(reason.contains("trap"), "{kind}: {reason}");
        }
        // The write staged before misbehaving was rolled back.
        let (_, state, effects) = s.db.counts().await.unwrap();
        assert_eq!((state, effects), (state_before, effects_before), "{kind}");

        // The server keeps serving.
        let ok = event(&format!("evt_ok_{i}"), "plan.created", json!({}));
        assert_eq!(s.deliver_signed(&ok).await.status, 200, "after {kind}");
    }
}

#[tokio::test]
async fn the_guest_sees_no_environment_files_or_network() {
    // SAFETY: set before the runtime exists; the guest must not see it anyway.
    unsafe { std::env::set_var("PSA_BILLING_SECRET_CANARY", "leak") };
    let s = hostile_server().await;
    let a = s
        .deliver_signed(&event("evt_escape", "test.escape", json!({})))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let fx = s.db.effects_after(0, 10).await.unwrap();
    assert_eq!(
        fx[0].effect["reason"],
        "env=0 file=false dir=false net=false"
    );
}

#[tokio::test]
async fn a_core_module_is_refused_with_a_clear_error() {
    let core_module = b"\0asm\x01\0\0\0";
    let err = Runtime::new(core_module, Limits::default()).err().unwrap();
    assert!(
        format!("{err:#}").contains("core WebAssembly module"),
        "{err:#}"
    );
    let err = Runtime::new(b"not wasm", Limits::default()).err().unwrap();
    assert!(format!("{err:#}").contains("compiling"), "{err:#}");
}

#[tokio::test]
async fn a_plugin_that_loops_or_traps_in_fee_math_fails_that_quote_only() {
    let s = hostile_server().await;
    // compute-quote loops forever, plan-escrow traps, total-invoice eats memory.
    let q = s
        .post_json("/v1/quote", &json!({"amount": "1.00", "currency": "usd"}))
        .await;
    // parse-amount answers first in the hostile plugin: a clear 422, not a hang.
    assert_eq!(q.status, 422, "{:?}", q.body);
    let rt = hostile_runtime();
    let started = Instant::now();
    let looped = rt
        .quote(
            None,
            psa_billing::runtime::QuoteRequest {
                amount: psa_billing::runtime::Money {
                    amount: 100,
                    currency: "usd".into(),
                },
                payment_method: "card".into(),
                tenant: None,
                international: false,
                converted: false,
                application_fee_percent: None,
                application_fee_fixed: None,
                monthly_volume: None,
            },
        )
        .await;
    assert!(
        matches!(looped, Err(psa_billing::runtime::CallError::Timeout(_))),
        "{looped:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let trapped = rt
        .plan_escrow(
            None,
            psa_billing::runtime::Money {
                amount: 100,
                currency: "usd".into(),
            },
            psa_billing::runtime::EscrowParties {
                wallet: None,
                contractor: None,
            },
        )
        .await;
    assert!(
        matches!(trapped, Err(psa_billing::runtime::CallError::Trap(_))),
        "{trapped:?}"
    );
    let oom = rt.total_invoice(None, "usd".into(), vec![]).await;
    assert!(
        matches!(oom, Err(psa_billing::runtime::CallError::Trap(_))),
        "{oom:?}"
    );
    // The same runtime keeps serving.
    let ok = s
        .deliver_signed(&event("evt_after", "plan.created", json!({})))
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn a_registry_call_that_loops_or_traps_fails_alone_and_stores_nothing() {
    let s = hostile_server().await;
    // The hostile plugin loops in `register` and traps in `lookup`.
    let put = s
        .put_json("/v1/tenants/acct_1Hostile", &json!({"tenant": "t"}))
        .await;
    assert_eq!(put.status, 500, "{:?}", put.body);
    assert_eq!(put.body["error"], "plugin_failed");
    assert!(
        put.body["reason"].as_str().unwrap().contains("deadline"),
        "{:?}",
        put.body
    );
    let get = s.get("/v1/tenants/acct_1Hostile", Some(API_TOKEN)).await;
    assert_eq!(get.status, 500, "{:?}", get.body);
    assert_eq!(s.db.counts().await.unwrap(), (0, 0, 0));
    // The server goes on answering.
    assert_eq!(s.get("/v1/tenants", Some(API_TOKEN)).await.status, 200);
    assert_eq!(s.get("/healthz", None).await.status, 200);
}

/// What an instance keeps between calls is its own memory, for at most
/// `calls_per_instance` calls; a trap ends it; with 1, every call starts
/// from nothing. The hostile plugin's `test.count` counts its calls in a
/// static, which shows which instance served a call.
#[tokio::test]
async fn an_instance_serves_a_bounded_number_of_calls_and_none_after_a_trap() {
    use psa_billing::runtime::{Effect, Routing};
    let wasm = std::fs::read(psa_billing::testing::HOSTILE_PLUGIN_PATH).unwrap();
    let db = psa_billing::Db::open("sqlite::memory:").await.unwrap();
    let routing = Routing {
        tenant_keys: vec![],
        reference_keys: vec![],
        license_prices: vec![],
    };
    let runtime = |calls_per_instance| {
        Runtime::new(
            &wasm,
            Limits {
                calls_per_instance,
                ..Limits::default()
            },
        )
        .unwrap()
    };
    let count = |rt: Runtime, kind: &'static str| {
        let (db, routing) = (db.clone(), routing.clone());
        async move {
            let staged = psa_billing::StagedState::new(db, "evt_count");
            let (r, _) = rt
                .handle(&event("evt_count", kind, json!({})), &routing, staged)
                .await
                .map_err(|e| e.to_string())?;
            match r.map_err(|e| format!("{e:?}"))?.as_slice() {
                [Effect::EventIgnored(e)] => Ok::<_, String>(e.reason.clone()),
                other => panic!("{other:?}"),
            }
        }
    };
    // Calls one after another reuse one instance, three calls each.
    let rt = runtime(3);
    let mut seen = vec![];
    for _ in 0..7 {
        seen.push(count(rt.clone(), "test.count").await.unwrap());
    }
    assert_eq!(
        seen,
        [
            "calls=1", "calls=2", "calls=3", "calls=1", "calls=2", "calls=3", "calls=1"
        ]
    );
    // A trap ends the instance it happened in: the next call gets a new one.
    assert_eq!(count(rt.clone(), "test.count").await.unwrap(), "calls=2");
    let trapped = count(rt.clone(), "test.trap").await.unwrap_err();
    assert!(trapped.contains("trap"), "{trapped}");
    assert_eq!(count(rt.clone(), "test.count").await.unwrap(), "calls=1");
    // One call per instance: nothing carries over.
    let fresh = runtime(1);
    for _ in 0..3 {
        assert_eq!(count(fresh.clone(), "test.count").await.unwrap(), "calls=1");
    }
}
