//! Two `psa-billing serve` processes on one PostgreSQL database, the same
//! deliveries sent to both at once, each several times: every event applied
//! exactly once, every effect in the outbox once, and a reader following the
//! outbox while it grows sees every sequence number, none skipped.

use psa_billing::testing::fresh_postgres_url;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_two_processes";
const TOKEN: &str = "two-processes-token";
const EVENTS: usize = 48;
const TENANTS: usize = 6;

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(database_url: &str) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_psa-billing"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PSA_BILLING_DATABASE_URL", database_url)
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("PSA_BILLING_API_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

async fn wait_healthy(client: &reqwest::Client, s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{}/healthz", s.base)).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{} never became healthy", s.base);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn payment(i: usize) -> Vec<u8> {
    let now = psa_billing::db::unix_now();
    json!({
        "id": format!("evt_two_{i:03}"), "object": "event", "type": "payment_intent.succeeded",
        "created": now, "api_version": "2025-08-27.basil", "livemode": false,
        "data": {"object": {
            "id": format!("pi_two_{i:03}"), "object": "payment_intent", "status": "succeeded",
            "amount": 1000 + i as i64, "amount_received": 1000 + i as i64, "currency": "usd",
            "application_fee_amount": 100,
            "metadata": {"tenant_id": format!("tenant-{}", i % TENANTS)}
        }}
    })
    .to_string()
    .into_bytes()
}

/// GETs a `/v1` URL with the token, as JSON.
async fn get_json(client: &reqwest::Client, url: String) -> Value {
    let r = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    r.json().await.unwrap()
}

/// Delivers like Stripe: until a 2xx (a 5xx is retried).
async fn deliver(client: reqwest::Client, url: String, body: Vec<u8>) -> String {
    for _ in 0..50 {
        let header = psa_billing_core::signature::sign(&body, SECRET, psa_billing::db::unix_now());
        let r = client
            .post(&url)
            .header("Stripe-Signature", header)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let answer: Value = r.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return answer["status"].as_str().unwrap_or_default().to_string();
        }
        assert!(status.is_server_error(), "{status}: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a delivery never succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_serve_processes_on_one_postgres_apply_each_event_once() {
    let url = fresh_postgres_url("two_processes").await;
    // Migrations race too: both processes start at once.
    let (a, b) = (start(&url), start(&url));
    let client = reqwest::Client::new();
    wait_healthy(&client, &a).await;
    wait_healthy(&client, &b).await;

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
