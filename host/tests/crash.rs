//! Crash safety: `psa-billing serve` under a stream of signed deliveries is
//! killed with SIGKILL at a random moment, several times, and restarted on
//! the same database; then every event is delivered again until all are
//! acknowledged, as Stripe would. Checked afterwards: every delivery that got
//! a 2xx is in the event log with its effect; no effect exists without its
//! event; no event was applied twice; each tenant's ledger holds each payment
//! once. On SQLite and on PostgreSQL.
//!
//! `PSA_BILLING_CRASH_ROUNDS` (default 3) sets how many kills a run makes.

mod common;

use common::{Server, deliver, deliver_once, get_json, payment, start, wait_healthy};
use psa_billing::Db;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

const EVENTS: usize = 240;
const TENANTS: usize = 4;
const WORKERS: usize = 8;

/// A small deterministic generator; the seed is printed so a failure can be rerun.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn event_id(i: usize) -> String {
    format!("evt_crash_{i:04}")
}

/// Sends the events not yet acknowledged (and some that were, as
/// duplicates) until the server stops answering.
async fn load(server_base: String, acked: Arc<Mutex<BTreeSet<usize>>>, worker: usize) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("{server_base}/webhooks/stripe");
    loop {
        let mut sent_any = false;
        for i in (worker..EVENTS).step_by(WORKERS) {
            let was_acked = acked.lock().unwrap().contains(&i);
            if was_acked && i % 5 != 0 {
                continue;
            }
            sent_any = true;
            match deliver_once(&client, &url, &payment("crash", i, TENANTS)).await {
                Some((status, _)) if (200..300).contains(&status) => {
                    acked.lock().unwrap().insert(i);
                }
                Some((status, answer)) => assert!(status >= 500, "{status}: {answer}"),
                None => return, // killed
            }
        }
        if !sent_any {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn crash_and_recover(url: &str) {
    let rounds: usize = std::env::var("PSA_BILLING_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut rng = Lcg(seed);
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<BTreeSet<usize>>> = Arc::default();

    for round in 0..rounds {
        let server = start(url);
        wait_healthy(&client, &server.base).await;
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| tokio::spawn(load(server.base.clone(), acked.clone(), w)))
            .collect();
        let after = Duration::from_millis(100 + rng.next(500));
        tokio::time::sleep(after).await;
        let before = acked.lock().unwrap().len();
        server.kill();
        for w in workers {
            w.await.unwrap();
        }
        eprintln!("round {round}: killed after {after:?} with {before} events acknowledged");
    }

    // Stripe's retries: everything again until acknowledged.
    let server: Server = start(url);
    wait_healthy(&client, &server.base).await;
    let sends: Vec<_> = (0..EVENTS)
        .map(|i| {
            let url = format!("{}/webhooks/stripe", server.base);
            tokio::spawn(deliver(client.clone(), url, payment("crash", i, TENANTS)))
        })
        .collect();
    for s in sends {
        let answer = s.await.unwrap();
        assert!(answer == "accepted" || answer == "duplicate", "{answer}");
    }

    let db = Db::open(url).await.unwrap();
    // Every acknowledged delivery is in the log, processed.
    let acknowledged: Vec<usize> = acked.lock().unwrap().iter().copied().collect();
    for i in acknowledged.iter() {
        let rec = db.event(&event_id(*i)).await.unwrap();
        let rec =
            rec.unwrap_or_else(|| panic!("{} was acknowledged but is not stored", event_id(*i)));
        assert_eq!(rec.status, "processed", "{}", event_id(*i));
    }
    // One effect per event, each with its event, numbered without gaps.
    let effects = db.effects_after(0, 100_000).await.unwrap();
    let mut per_event: BTreeMap<String, usize> = BTreeMap::new();
    for (n, e) in effects.iter().enumerate() {
        assert_eq!(e.seq, n as i64 + 1, "outbox sequence has a gap");
        *per_event.entry(e.event_id.clone()).or_default() += 1;
        let rec = db.event(&e.event_id).await.unwrap();
        assert!(rec.is_some(), "effect {} without its event", e.seq);
    }
    assert_eq!(per_event.len(), EVENTS);
    assert!(
        per_event.values().all(|n| *n == 1),
        "an event applied twice"
    );
    // Each tenant's ledger holds each payment once.
    for t in 0..TENANTS {
        let b = get_json(
            &client,
            format!("{}/v1/ledger/tenant-{t}/balances", server.base),
        )
        .await;
        let paid: i64 = (0..EVENTS)
            .filter(|i| i % TENANTS == t)
            .map(|i| 1000 + i as i64)
            .sum();
        assert_eq!(
            b["balances"]["usd"]["customer"]["amount"], -paid,
            "tenant-{t}: {b}"
        );
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_and_duplicates_nothing_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("crash.db").display());
    crash_and_recover(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_and_duplicates_nothing_on_postgres() {
    let url = psa_billing::testing::fresh_postgres_url("crash").await;
    crash_and_recover(&url).await;
}
