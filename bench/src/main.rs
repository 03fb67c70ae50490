//! Load bench: starts the real webhook server (same router as `serve`) on a
//! loopback port over a temporary SQLite file, sends `--events` distinct
//! signed `payment_intent.succeeded` deliveries at `--concurrency`, and prints
//! events per second and latency percentiles. Run it in release:
//!
//!   cargo run --release -p psa-billing-bench -- --events 5000 --concurrency 16

use anyhow::{Result, ensure};
use clap::Parser;
use psa_billing::server::{self, ServerOptions};
use psa_billing::{DEFAULT_PLUGIN, Db, Limits, Pipeline, Runtime};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Deliveries to send.
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Deliveries in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

const SECRET: &str = "whsec_bench";

fn body(i: usize) -> Vec<u8> {
    json!({
        "id": format!("evt_bench_{i}"), "object": "event", "type": "payment_intent.succeeded",
        "created": 1_763_800_000 + i as i64, "livemode": false, "api_version": "2025-08-27.basil",
        "data": {"object": {
            "id": format!("pi_bench_{i}"), "object": "payment_intent", "amount": 10000,
            "amount_received": 10000, "currency": "usd", "status": "succeeded",
            "customer": "cus_bench", "application_fee_amount": 250,
            "metadata": {"tenant_id": format!("tenant-{}", i % 50), "invoice_id": format!("INV-{i}")}
        }}
    })
    .to_string()
    .into_bytes()
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let db = Db::open(&format!(
        "sqlite://{}",
        dir.path().join("bench.db").display()
    ))
    .await?;
    let runtime = Runtime::new(DEFAULT_PLUGIN, Limits::default())?;
    let pipeline = Pipeline::new(runtime, db.clone(), vec![SECRET.into()], 300);
    let app = server::router(pipeline, ServerOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks/stripe", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Sign everything up front so that the client's work is not measured.
    let now = psa_billing::db::unix_now();
    let requests: Arc<Vec<(Vec<u8>, String)>> = Arc::new(
        (0..args.events)
            .map(|i| {
                let b = body(i);
                let sig = psa_billing_core::signature::sign(&b, SECRET, now);
                (b, sig)
            })
            .collect(),
    );
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency {
        let (client, url, next, requests) =
            (client.clone(), url.clone(), next.clone(), requests.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((b, sig)) = requests.get(i) else {
                    break;
                };
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("Stripe-Signature", sig)
                    .body(b.clone())
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 200, "status {}", r.status());
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for r in workers.join_all().await {
        latencies.extend(r?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    let (events, _, effects) = db.counts().await?;
    ensure!(events as usize == args.events && effects as usize == args.events);
    println!(
        "{} events, concurrency {}: {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} cores)",
        args.events,
        args.concurrency,
        args.events as f64 / elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    Ok(())
}
