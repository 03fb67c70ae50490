//! Two `psa-billing serve` processes on one PostgreSQL database, the same
//! deliveries sent to both at once, each several times: every event applied
//! exactly once, every effect in the outbox once, and a reader following the
//! outbox while it grows sees every sequence number, none skipped.

mod common;

use common::{deliver, get_json, start, wait_healthy};
use psa_billing::testing::fresh_postgres_url;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const EVENTS: usize = 48;
const TENANTS: usize = 6;

fn payment(i: usize) -> Vec<u8> {
    common::payment("two", i, TENANTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_serve_processes_on_one_postgres_apply_each_event_once() {
    let url = fresh_postgres_url("two_processes").await;
    // Migrations race too: both processes start at once.
    let (a, b) = (start(&url), start(&url));
    let client = reqwest::Client::new();
    wait_healthy(&client, &a.base).await;
    wait_healthy(&client, &b.base).await;

    // A reader following the outbox on process A while the load runs.
    let reader = {
        let (client, base) = (client.clone(), a.base.clone());
        tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut after = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            while seen.len() < EVENTS && Instant::now() < deadline {
                let page: Value =
                    get_json(&client, format!("{base}/v1/effects?after={after}&limit=7")).await;
                for e in page["effects"].as_array().unwrap() {
                    seen.push(e["seq"].as_i64().unwrap());
                }
                after = page["next_after"].as_i64().unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };

    // Every event twice to each process, all at once.
    let mut sends = Vec::new();
    for i in 0..EVENTS {
        for server in [&a, &b, &a, &b] {
            let url = format!("{}/webhooks/stripe", server.base);
            sends.push(tokio::spawn(deliver(client.clone(), url, payment(i))));
        }
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for s in sends {
        *outcomes.entry(s.await.unwrap()).or_default() += 1;
    }
    assert_eq!(outcomes.get("accepted"), Some(&EVENTS), "{outcomes:?}");
    assert_eq!(
        outcomes.get("duplicate"),
        Some(&(3 * EVENTS)),
        "{outcomes:?}"
    );

    // The reader saw every number once, in order, none skipped.
    let seen = reader.await.unwrap();
    assert_eq!(seen, (1..=EVENTS as i64).collect::<Vec<_>>());

    // Process B serves the same outbox: one effect per event.
    let all: Value = get_json(&client, format!("{}/v1/effects?after=0&limit=1000", b.base)).await;
    let mut events: Vec<String> = all["effects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect();
    events.sort();
    events.dedup();
    assert_eq!(events.len(), EVENTS);

    // Each tenant's ledger holds its payments once.
    for t in 0..TENANTS {
        let balances: Value =
            get_json(&client, format!("{}/v1/ledger/tenant-{t}/balances", a.base)).await;
        let paid: i64 = (0..EVENTS)
            .filter(|i| i % TENANTS == t)
            .map(|i| 1000 + i as i64)
            .sum();
        let count = (0..EVENTS).filter(|i| i % TENANTS == t).count() as i64;
        let usd = &balances["balances"]["usd"];
        assert_eq!(usd["customer"]["amount"], -paid, "tenant-{t}: {balances}");
        assert_eq!(
            usd["platform"]["amount"],
            100 * count,
            "tenant-{t}: {balances}"
        );
    }
}
