//! Shared by the tests that run real `psa-billing serve` processes.
#![allow(dead_code)] // each test binary uses its own part

use serde_json::{Value, json};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "whsec_processes";
pub const TOKEN: &str = "processes-token-0123";

/// A `serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SIGKILL: no shutdown, no flush, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `psa-billing serve` on `database_url` on a free port.
pub fn start(database_url: &str) -> Server {
    start_with(database_url, &[], Stdio::inherit())
}

/// [`start`] with more environment (`RUST_LOG` included) and its log to `stderr`.
pub fn start_with(database_url: &str, env: &[(&str, &str)], stderr: Stdio) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_psa-billing"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PSA_BILLING_DATABASE_URL", database_url)
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .env("PSA_BILLING_API_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never became healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A succeeded payment of `1000 + i` cents for `tenant-{i % tenants}`.
pub fn payment(prefix: &str, i: usize, tenants: usize) -> Vec<u8> {
    // One creation time per test process: a redelivery is byte for byte the
    // event first sent, as Stripe's are (only its signature is new), so the
    // service has no differing duplicate to warn about.
    static CREATED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let now = *CREATED.get_or_init(psa_billing::clock::unix_now);
    json!({
        "id": format!("evt_{prefix}_{i:04}"), "object": "event", "type": "payment_intent.succeeded",
        "created": now, "api_version": "2025-08-27.basil", "livemode": false,
        "data": {"object": {
            "id": format!("pi_{prefix}_{i:04}"), "object": "payment_intent", "status": "succeeded",
            "amount": 1000 + i as i64, "amount_received": 1000 + i as i64, "currency": "usd",
            "application_fee_amount": 100,
            "metadata": {"tenant_id": format!("tenant-{}", i % tenants)}
        }}
    })
    .to_string()
    .into_bytes()
}

/// GETs a `/v1` URL with the token, as JSON.
pub async fn get_json(client: &reqwest::Client, url: String) -> Value {
    let r = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    r.json().await.unwrap()
}

/// One signed delivery; the status and the answer's `status` field, or
/// `None` when the connection failed (the server is down).
pub async fn deliver_once(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    let header = psa_billing_core::signature::sign(body, SECRET, psa_billing::clock::unix_now());
    let r = client
        .post(url)
        .header("Stripe-Signature", header)
        .body(body.to_vec())
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    let answer: Value = r.json().await.unwrap_or(Value::Null);
    Some((
        status,
        answer["status"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Delivers like Stripe: until a 2xx (a 5xx is retried).
pub async fn deliver(client: reqwest::Client, url: String, body: Vec<u8>) -> String {
    for _ in 0..50 {
        match deliver_once(&client, &url, &body).await {
            Some((s, answer)) if (200..300).contains(&s) => return answer,
            Some((s, answer)) => assert!(s >= 500, "{s}: {answer}"),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a delivery never succeeded");
}
