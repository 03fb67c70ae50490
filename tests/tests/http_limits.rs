//! The HTTP layer's limits: header size and count, slow headers, open
//! connections, request time, and a graceful shutdown that finishes what is
//! in flight. Raw TCP where a client library would hide the behaviour.

use axum::Router;
use axum::routing::get;
use psa_billing::http_server::{HttpLimits, serve};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn app() -> Router {
    Router::new().route("/ok", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "slow"
        }),
    )
}

async fn start(
    limits: HttpLimits,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, app(), limits, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, task)
}

/// Sends raw bytes and reads the answer's status line (None: closed without one).
async fn raw(addr: SocketAddr, request: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer or a close within 5 s")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines()
        .next()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
}

fn limits() -> HttpLimits {
    HttpLimits {
        max_connections: 4,
        max_header_bytes: 8192,
        max_headers: 16,
        header_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn oversized_or_too_many_headers_are_refused() {
    let (addr, _stop, _task) = start(limits()).await;
    let ok = raw(addr, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(ok.as_deref(), Some("HTTP/1.1 200 OK"));
    let big = format!(
        "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = raw(addr, big.as_bytes()).await;
    assert_eq!(
        answer.as_deref(),
        Some("HTTP/1.1 431 Request Header Fields Too Large")
    );
    let many: String = (0..40).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw(
        addr,
        format!("GET /ok HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(
        answer.as_deref(),
        Some("HTTP/1.1 431 Request Header Fields Too Large")
    );
    // Still serving.
    assert_eq!(
        raw(addr, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .as_deref(),
        Some("HTTP/1.1 200 OK")
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    let (addr, _stop, _task) = start(limits()).await;
    let started = Instant::now();
    let answer = raw(addr, b"GET /ok HTTP/1.1\r\nHost: x\r\n").await;
    assert!(
        answer.as_deref().is_none_or(|l| l.contains("408")),
        "{answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_slow_request_is_answered_408() {
    let (addr, _stop, _task) = start(limits()).await;
    let answer = raw(addr, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 408 Request Timeout"));
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    // Idle keep-alive connections are closed after the header timeout: keep them longer here.
    let (addr, _stop, _task) = start(HttpLimits {
        header_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    // Four idle keep-alive connections hold every slot.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0; 256];
        let _ = s.read(&mut buf).await.unwrap();
        idle.push(s);
    }
    let fifth = tokio::spawn(raw(
        addr,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!fifth.is_finished(), "answered beyond the connection limit");
    drop(idle.pop());
    let answer = tokio::time::timeout(Duration::from_secs(5), fifth)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let (addr, stop, task) = start(HttpLimits {
        request_timeout: Duration::from_secs(5),
        ..limits()
    })
    .await;
    let in_flight = tokio::spawn(raw(
        addr,
        b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.as_deref(),
        Some("HTTP/1.1 200 OK"),
        "the in-flight request finished"
    );
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}
