//! Many deliveries for one tenant at once: each reads and rewrites that
//! tenant's ledger book, so all but one of every group commit lose the race
//! and are handled again. Every one of them must still be accepted on its
//! first delivery (no 5xx, nothing left for Stripe's retries), and the
//! ledger must hold each payment once. On SQLite and on PostgreSQL.

mod common;

use common::{deliver_once, get_json, payment, start, wait_healthy};
use std::time::Duration;

const DELIVERIES: usize = 64;

async fn one_hot_tenant(url: &str) {
    let server = start(url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    wait_healthy(&client, &server.base).await;
    let webhook = format!("{}/webhooks/stripe", server.base);
    let sends: Vec<_> = (0..DELIVERIES)
        .map(|i| {
            let (client, webhook) = (client.clone(), webhook.clone());
            tokio::spawn(
                async move { deliver_once(&client, &webhook, &payment("hot", i, 1)).await },
            )
        })
        .collect();
    let mut refused = Vec::new();
    for (i, send) in sends.into_iter().enumerate() {
        match send.await.unwrap() {
            Some((200, answer)) if answer == "accepted" => {}
            other => refused.push((i, other)),
        }
    }
    assert!(refused.is_empty(), "not accepted at once: {refused:?}");
    let b = get_json(
        &client,
        format!("{}/v1/ledger/tenant-0/balances", server.base),
    )
    .await;
    let paid: i64 = (0..DELIVERIES).map(|i| 1000 + i as i64).sum();
    assert_eq!(b["balances"]["usd"]["customer"]["amount"], -paid, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deliveries_for_one_tenant_are_all_accepted_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    one_hot_tenant(&format!("sqlite://{}", dir.path().join("hot.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_deliveries_for_one_tenant_are_all_accepted_on_postgres() {
    one_hot_tenant(&psa_billing::testing::fresh_postgres_url("hot").await).await;
}
