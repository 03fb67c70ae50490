//! The HTTP layer's limits: header size and count, slow headers, open
//! connections, request time, and a graceful shutdown that finishes what is
//! in flight. Raw TCP where a client library would hide the behaviour.

use axum::Router;
use axum::routing::get;
use psa_billing::http::{HttpLimits, serve};
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
        idle_timeout: Duration::from_millis(600),
        request_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_secs(5),
        ..HttpLimits::default()
    }
}

/// Reads until the server closes the connection; the bytes read, or None
/// when it is still open after `within`.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(all),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// The HTTP/2 client preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// An HTTP/2 HEADERS frame on stream 1, ending the stream: `GET /` over
/// http (HPACK static-table entries 2, 4 and 6).
const H2_GET: &[u8] = b"\x00\x00\x03\x01\x05\x00\x00\x00\x01\x82\x84\x86";

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
async fn connections_beyond_the_limit_wait_while_every_slot_is_busy() {
    let (addr, _stop, _task) = start(HttpLimits {
        request_timeout: Duration::from_secs(5),
        ..limits()
    })
    .await;
    // Four requests in flight hold every slot: none of them is idle.
    let busy: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(raw(
                addr,
                b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let fifth = raw(
        addr,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(fifth.as_deref(), Some("HTTP/1.1 200 OK"));
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "answered beyond the connection limit while every slot was busy"
    );
    for b in busy {
        assert_eq!(
            b.await.unwrap().as_deref(),
            Some("HTTP/1.1 200 OK"),
            "no busy connection was shed"
        );
    }
}

#[tokio::test]
async fn the_connection_idle_longest_makes_room_when_every_slot_is_taken() {
    let (addr, _stop, _task) = start(HttpLimits {
        header_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    // Four answered keep-alive connections, idle, hold every slot.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0; 256];
        let _ = s.read(&mut buf).await.unwrap();
        idle.push(s);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fifth = raw(
        addr,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(fifth.as_deref(), Some("HTTP/1.1 200 OK"));
    // The oldest was closed for it; the others are still open.
    assert!(
        read_until_closed(&mut idle[0], Duration::from_secs(3))
            .await
            .is_some(),
        "the connection idle longest was closed"
    );
    for s in &mut idle[1..] {
        assert!(
            read_until_closed(s, Duration::from_millis(100))
                .await
                .is_none()
        );
    }
}

#[tokio::test]
async fn a_connection_that_never_speaks_is_closed_after_the_header_timeout() {
    let (addr, _stop, _task) = start(limits()).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let read = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert_eq!(read.as_deref(), Some(&[][..]), "closed without a word");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed before the header timeout: {waited:?}"
    );
}

#[tokio::test]
async fn an_http2_preface_followed_by_silence_is_closed_after_the_header_timeout() {
    let (addr, _stop, _task) = start(limits()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    // The server's SETTINGS, then a close.
    let read = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(
        read.is_some(),
        "an HTTP/2 connection without a request stayed open"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let (addr, _stop, _task) = start(limits()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(H2_PREFACE).await.unwrap();
    s.write_all(H2_GET).await.unwrap();
    let started = Instant::now();
    let read = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("an idle HTTP/2 connection stayed open");
    // A HEADERS frame (type 1) on stream 1 answered the request, and a
    // GOAWAY frame (type 7) said goodbye.
    let frames = h2_frame_types(&read);
    assert!(frames.contains(&(1, 1)), "{frames:?}");
    assert!(frames.iter().any(|&(t, _)| t == 7), "{frames:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed before the idle timeout"
    );
}

/// (type, stream) of each HTTP/2 frame the server sent.
fn h2_frame_types(mut bytes: &[u8]) -> Vec<(u8, u32)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        let stream = u32::from_be_bytes([bytes[5] & 0x7f, bytes[6], bytes[7], bytes[8]]);
        frames.push((bytes[3], stream));
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    frames
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

#[tokio::test]
async fn silent_sockets_beyond_the_cap_do_not_lock_out_a_signed_delivery() {
    use psa_billing_tests::{Options, TestServer, event, succeeded_payment};
    let header_timeout = Duration::from_secs(2);
    let s = TestServer::start(Options {
        http: HttpLimits {
            max_connections: 32,
            header_timeout,
            ..HttpLimits::default()
        },
        ..Default::default()
    })
    .await;
    // Three times the cap of sockets that never send a byte.
    let mut silent = Vec::new();
    for _ in 0..96 {
        silent.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let started = Instant::now();
    let body = event(
        "evt_idle_flood",
        "payment_intent.succeeded",
        succeeded_payment("pi_idle_flood"),
    );
    let answer = tokio::time::timeout(
        header_timeout + Duration::from_secs(3),
        s.deliver_signed(&body),
    )
    .await
    .expect("a signed delivery got through within the header timeout and a margin");
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "accepted");
    let waited = started.elapsed();
    assert!(
        waited < header_timeout + Duration::from_secs(3),
        "{waited:?}"
    );
    // The silent ones are closed (shed, or at their header deadline), not kept.
    for sock in &mut silent[..8] {
        assert!(
            read_until_closed(sock, header_timeout + Duration::from_secs(2))
                .await
                .is_some()
        );
    }
}

/// A webhook POST that promises a large body and sends one byte.
async fn slow_body(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\n\
          Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{",
    )
    .await
    .unwrap();
    s
}

#[tokio::test]
async fn slow_bodies_beyond_the_cap_do_not_lock_out_a_signed_delivery() {
    use psa_billing_tests::{Options, TestServer, event, succeeded_payment};
    let s = TestServer::start(Options {
        http: HttpLimits {
            max_connections: 32,
            // Far beyond the test: only shedding can make room.
            body_timeout: Duration::from_secs(60),
            body_grace: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        },
        ..Default::default()
    })
    .await;
    // Hundreds of requests whose bodies never finish, every slot taken
    // by a request in flight (none is idle).
    let mut slow = Vec::new();
    for _ in 0..300 {
        slow.push(tokio::spawn(slow_body(s.addr)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let body = event(
        "evt_slow_flood",
        "payment_intent.succeeded",
        succeeded_payment("pi_slow_flood"),
    );
    let answer = tokio::time::timeout(Duration::from_secs(5), s.deliver_signed(&body))
        .await
        .expect("a signed delivery got through within 5 s");
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "accepted");
    eprintln!(
        "accepted after {:?} behind 300 slow bodies",
        started.elapsed()
    );
    for t in slow {
        t.abort();
    }
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_is_cut_off() {
    use psa_billing_tests::{Options, TestServer};
    let s = TestServer::start(Options {
        http: HttpLimits {
            body_grace: Duration::from_millis(500),
            min_body_rate: 1024,
            body_timeout: Duration::from_secs(30),
            ..HttpLimits::default()
        },
        ..Default::default()
    })
    .await;
    let mut sock = slow_body(s.addr).await;
    let started = Instant::now();
    // One byte a while: far below 1 KiB/s.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if sock.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), trickle).await;
    let closed = read_until_closed(&mut sock, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "the connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "closed soon after the grace: {:?}",
        started.elapsed()
    );
    // Nothing was stored: the event never reached the pipeline.
    assert!(s.effects().await.is_empty());
}

#[tokio::test]
async fn a_body_not_received_within_the_body_timeout_is_cut_off() {
    use psa_billing_tests::{Options, TestServer};
    let s = TestServer::start(Options {
        http: HttpLimits {
            body_timeout: Duration::from_secs(1),
            min_body_rate: 0,
            ..HttpLimits::default()
        },
        ..Default::default()
    })
    .await;
    let mut sock = slow_body(s.addr).await;
    let closed = read_until_closed(&mut sock, Duration::from_secs(4)).await;
    assert!(
        closed.is_some(),
        "closed at the body timeout, not the request timeout"
    );
}

#[tokio::test]
async fn partial_headers_beyond_the_cap_do_not_delay_a_signed_delivery() {
    use psa_billing_tests::{Options, TestServer, event, succeeded_payment};
    let s = TestServer::start(Options {
        http: HttpLimits {
            max_connections: 32,
            // Far beyond the test: only shedding can make room.
            header_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        },
        ..Default::default()
    })
    .await;
    // Hundreds of connections that never finish their headers.
    let mut trickling = Vec::new();
    for _ in 0..300 {
        let mut sock = TcpStream::connect(s.addr).await.unwrap();
        sock.write_all(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        trickling.push(sock);
    }
    let started = Instant::now();
    let body = event(
        "evt_partial_flood",
        "payment_intent.succeeded",
        succeeded_payment("pi_partial_flood"),
    );
    let answer = tokio::time::timeout(Duration::from_secs(5), s.deliver_signed(&body))
        .await
        .expect("a signed delivery got through within 5 s");
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    eprintln!(
        "accepted after {:?} behind 300 partial headers",
        started.elapsed()
    );
}
