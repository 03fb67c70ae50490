//! Many deliveries for one tenant at once: each reads and rewrites that
//! tenant's ledger book, so all but one of every group commit lose the race
//! and are handled again. Every one of them must still be accepted on its
//! first delivery (no 5xx, nothing left for Stripe's retries), and the
//! ledger must hold each payment once. On SQLite and on PostgreSQL, as one
//! burst and as a steady stream (where a delivery that lost must not keep
//! losing to the fresh ones arriving behind it).

mod common;

use common::{deliver_once, get_json, payment, start, wait_healthy};
use std::time::Duration;

const DELIVERIES: usize = 64;
/// The steady stream: connections, and payments each sends in turn.
const STREAM_SENDERS: usize = 16;
const STREAM_EACH: usize = 40;

/// `senders` connections each deliver `each` payments for one tenant, one
/// after the other: with one sender per delivery, a single burst.
async fn one_hot_tenant(url: &str, senders: usize, each: usize) {
    let server = start(url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    wait_healthy(&client, &server.base).await;
    let webhook = format!("{}/webhooks/stripe", server.base);
    let sends: Vec<_> = (0..senders)
        .map(|s| {
            let (client, webhook) = (client.clone(), webhook.clone());
            tokio::spawn(async move {
                let mut refused = Vec::new();
                for i in (0..each).map(|k| s * each + k) {
                    match deliver_once(&client, &webhook, &payment("hot", i, 1)).await {
                        Some((200, answer)) if answer == "accepted" => {}
                        other => refused.push((i, other)),
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = Vec::new();
    for send in sends {
        refused.extend(send.await.unwrap());
    }
    assert!(refused.is_empty(), "not accepted at once: {refused:?}");
    let b = get_json(
        &client,
        format!("{}/v1/ledger/tenant-0/balances", server.base),
    )
    .await;
    let paid: i64 = (0..senders * each).map(|i| 1000 + i as i64).sum();
    assert_eq!(b["balances"]["usd"]["customer"]["amount"], -paid, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deliveries_for_one_tenant_are_all_accepted_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    one_hot_tenant(&sqlite(&dir), DELIVERIES, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deliveries_for_one_tenant_are_all_accepted_on_postgres() {
    one_hot_tenant(
        &psa_billing::testing::fresh_postgres_url("hot").await,
        DELIVERIES,
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_steady_stream_for_one_tenant_is_all_accepted_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    one_hot_tenant(&sqlite(&dir), STREAM_SENDERS, STREAM_EACH).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_steady_stream_for_one_tenant_is_all_accepted_on_postgres() {
    let url = psa_billing::testing::fresh_postgres_url("hot_stream").await;
    one_hot_tenant(&url, STREAM_SENDERS, STREAM_EACH).await;
}

/// A SQLite file (synchronous=FULL, the default) in `dir`.
fn sqlite(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("hot.db").display())
}
