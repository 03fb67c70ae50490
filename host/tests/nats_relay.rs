//! `serve --publish`: every committed effect reaches NATS JetStream once
//! (after JetStream's de-duplication by `Nats-Msg-Id`), in outbox order,
//! through a NATS restart, a `serve` restart, and, with two processes on
//! one PostgreSQL database, the death of the process that relays.
//!
//! Each test runs a NATS server of its own (Debian's `nats-server`, with
//! JetStream, on a free port and a temporary store), so that it can be
//! stopped and started without touching the machine's.

mod common;

use common::{Server, deliver, free_port, start_with, wait_healthy};
use psa_billing::testing::fresh_postgres_url;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "psa-test.effects";
const STREAM: &str = "PSA_TEST_EFFECTS";

/// A NATS server with JetStream on `port`, keeping its store in `dir`.
struct Nats {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    fn start() -> Nats {
        let mut nats = Nats {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        nats.restart();
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port and store) and waits until it listens.
    fn restart(&mut self) {
        let binary = ["nats-server", "/usr/sbin/nats-server"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .expect("nats-server is installed (Debian's nats-server package)");
        let child = Command::new(binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `serve` on `database_url` relaying to `nats`, its log in `log`.
fn serve(database_url: &str, nats: &Nats, log: &std::path::Path) -> Server {
    let url = nats.url();
    start_with(
        database_url,
        &[
            ("PSA_BILLING_PUBLISH", url.as_str()),
            ("PSA_BILLING_SUBJECT_PREFIX", PREFIX),
            ("RUST_LOG", "warn,psa_billing::relay=info"),
        ],
        std::fs::File::create(log).unwrap().into(),
    )
}

/// Waits until the stream holds `n` messages, then reads them all: each
/// one's subject, `Nats-Msg-Id` and body.
async fn stream_messages(nats: &Nats, n: u64) -> Vec<(String, String, Value)> {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut stream = loop {
        if let Ok(stream) = js.get_stream(STREAM).await {
            break stream;
        }
        assert!(Instant::now() < deadline, "the relay never made its stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    loop {
        let held = stream.info().await.unwrap().state.messages;
        assert!(held <= n, "the stream holds {held} messages, more than {n}");
        if held == n {
            break;
        }
        assert!(Instant::now() < deadline, "the stream holds {held} of {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    for seq in 1..=n {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        out.push((
            m.subject.to_string(),
            id,
            serde_json::from_slice(&m.payload).unwrap(),
        ));
    }
    out
}

/// The messages are the outbox's effects 1..=n, once each, in order.
fn assert_outbox_order(messages: &[(String, String, Value)]) {
    for (i, (subject, id, body)) in messages.iter().enumerate() {
        let seq = i as i64 + 1;
        assert_eq!(id, &seq.to_string(), "message {seq}'s Nats-Msg-Id");
        assert_eq!(body["seq"], seq, "message {seq}'s body: {body}");
        assert_eq!(
            subject,
            &format!("{PREFIX}.{}", body["kind"].as_str().unwrap())
        );
        assert_eq!(body["effect"]["kind"], body["kind"]);
    }
}

async fn deliver_payments(server: &Server, prefix: &str, range: std::ops::Range<usize>) {
    let client = reqwest::Client::new();
    let url = format!("{}/webhooks/stripe", server.base);
    for i in range {
        let answer = deliver(client.clone(), url.clone(), common::payment(prefix, i, 3)).await;
        assert_eq!(answer, "accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_effect_reaches_jetstream_once_through_nats_and_serve_restarts() {
    let mut nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("relay.db").display());
    let log = dir.path().join("serve.log");
    let server = serve(&db, &nats, &log);
    let client = reqwest::Client::new();
    wait_healthy(&client, &server.base).await;

    deliver_payments(&server, "nats", 0..10).await;
    let messages = stream_messages(&nats, 10).await;
    assert_outbox_order(&messages);
    assert_eq!(messages[0].0, format!("{PREFIX}.payment.succeeded"));
    assert_eq!(messages[0].2["effect"]["tenant"], "tenant-0");

    // NATS goes away: deliveries are still taken (the outbox keeps them).
    nats.stop();
    deliver_payments(&server, "nats", 10..20).await;
    nats.restart();
    deliver_payments(&server, "nats", 20..25).await;
    assert_outbox_order(&stream_messages(&nats, 25).await);

    // serve killed and started again on the same database: the cursor
    // carries on, nothing is published twice into the stream.
    server.kill();
    let server = serve(&db, &nats, &log);
    wait_healthy(&client, &server.base).await;
    deliver_payments(&server, "nats", 25..30).await;
    assert_outbox_order(&stream_messages(&nats, 30).await);
}

/// How many times `log` says its process took the relay.
fn took_relay(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("this process relays the outbox")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_processes_on_postgres_one_relays_and_the_other_takes_over() {
    let nats = Nats::start();
    let url = fresh_postgres_url("nats_relay").await;
    let dir = tempfile::tempdir().unwrap();
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    let (a, b) = (serve(&url, &nats, &logs[0]), serve(&url, &nats, &logs[1]));
    let client = reqwest::Client::new();
    wait_healthy(&client, &a.base).await;
    wait_healthy(&client, &b.base).await;

    // Deliveries to both; one process relays them all.
    deliver_payments(&a, "two", 0..6).await;
    deliver_payments(&b, "two", 6..12).await;
    assert_outbox_order(&stream_messages(&nats, 12).await);
    let relaying: Vec<usize> = logs.iter().map(|l| took_relay(l)).collect();
    assert_eq!(
        relaying.iter().sum::<usize>(),
        1,
        "exactly one process relays: {relaying:?}"
    );

    // The relaying process dies; the other takes over where it stopped.
    let (survivor, survivor_log) = if relaying[0] == 1 {
        a.kill();
        (b, &logs[1])
    } else {
        b.kill();
        (a, &logs[0])
    };
    deliver_payments(&survivor, "two", 12..20).await;
    assert_outbox_order(&stream_messages(&nats, 20).await);
    assert_eq!(took_relay(survivor_log), 1, "the survivor took the relay");
}
