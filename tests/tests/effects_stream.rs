//! `GET /v1/effects/stream`: effects pushed as Server-Sent Events to a real
//! HTTP client reading while deliveries arrive, a reconnect with
//! `Last-Event-ID` that misses nothing and repeats nothing, and the end of
//! the stream when the service closes.

use psa_billing_tests::{API_TOKEN, Options, TestServer, event, succeeded_payment};
use serde_json::Value;
use std::time::Duration;

/// One Server-Sent Event: its id, its event name and its data as JSON.
struct Sse {
    id: i64,
    kind: String,
    data: Value,
}

/// Reads a stream's frames; keep-alive comments are skipped.
struct Reader {
    response: reqwest::Response,
    buffer: String,
}

impl Reader {
    async fn open(server: &TestServer, query: &str, last_id: Option<&str>) -> Reader {
        let mut req = server
            .client
            .get(server.url(&format!("/v1/effects/stream{query}")))
            .bearer_auth(API_TOKEN);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Reader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, None, None);
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                match (id, kind, data) {
                    (Some(id), Some(kind), Some(data)) => return Some(Sse { id, kind, data }),
                    _ => continue, // a keep-alive comment
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap();
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }
}

async fn pay(server: &TestServer, n: usize) {
    let body = event(
        &format!("evt_stream_{n}"),
        "payment_intent.succeeded",
        succeeded_payment(&format!("pi_stream_{n}")),
    );
    let a = server.deliver_signed(&body).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn effects_stream_as_they_commit_and_resume_from_the_last_event_id() {
    let server = TestServer::start(Options::default()).await;
    // Without the token: refused like the rest of /v1.
    let r = server
        .client
        .get(server.url("/v1/effects/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let mut stream = Reader::open(&server, "", None).await;
    pay(&server, 1).await;
    let first = stream.next().await.unwrap();
    assert_eq!((first.id, first.kind.as_str()), (1, "payment.succeeded"));
    assert_eq!(first.data["seq"], 1);
    assert_eq!(first.data["effect"]["payment_intent"], "pi_stream_1");
    // Deliveries arriving while the client reads.
    let delivered = async {
        pay(&server, 2).await;
        pay(&server, 3).await;
    };
    let (_, got) = tokio::join!(delivered, async {
        let a = stream.next().await.unwrap();
        let b = stream.next().await.unwrap();
        (a, b)
    });
    assert_eq!((got.0.id, got.1.id), (2, 3));
    assert_eq!(got.1.data["effect"]["payment_intent"], "pi_stream_3");
    drop(stream);

    // Two commit while the client is away; it comes back with its last id.
    pay(&server, 4).await;
    pay(&server, 5).await;
    let mut again = Reader::open(&server, "?after=0", Some("3")).await;
    let mut ids = vec![];
    for _ in 0..2 {
        ids.push(again.next().await.unwrap().id);
    }
    pay(&server, 6).await;
    ids.push(again.next().await.unwrap().id);
    assert_eq!(
        ids,
        [4, 5, 6],
        "nothing skipped, nothing twice; Last-Event-ID wins over after"
    );

    let mut from_query = Reader::open(&server, "?after=5", None).await;
    let next = from_query.next().await.unwrap();
    assert_eq!(next.id, 6);
    assert_eq!(next.data["effect"]["payment_intent"], "pi_stream_6");

    let bad = server
        .client
        .get(server.url("/v1/effects/stream"))
        .bearer_auth(API_TOKEN)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Shutdown begins: open streams end cleanly instead of holding it up.
    server.pipeline.close_streams();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        assert!(again.next().await.is_none());
        assert!(from_query.next().await.is_none());
    })
    .await;
    assert!(ended.is_ok(), "the streams ended when the service closed");
}

#[tokio::test]
async fn streams_are_capped_and_end_at_their_lifetime() {
    let server = TestServer::start(Options {
        max_streams: 2,
        stream_lifetime: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let body = event(
        "evt_cap_1",
        "payment_intent.succeeded",
        succeeded_payment("pi_cap_1"),
    );
    assert_eq!(server.deliver_signed(&body).await.status, 200);
    let mut first = Reader::open(&server, "", None).await;
    let mut second = Reader::open(&server, "", None).await;
    // A third is refused while two are open, with a time to come back.
    let third = server
        .client
        .get(server.url("/v1/effects/stream"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "5");
    let refused: Value = third.json().await.unwrap();
    assert_eq!(refused["error"], "too_many_streams");
    // Both streams deliver, then end at their lifetime.
    for reader in [&mut first, &mut second] {
        assert_eq!(reader.next().await.unwrap().id, 1);
        let ended = tokio::time::timeout(Duration::from_secs(5), reader.next())
            .await
            .expect("the stream ends at its lifetime");
        assert!(ended.is_none());
    }
    // Their slots are free again: a reconnect resumes after the last id.
    let mut again = Reader::open(&server, "", Some("1")).await;
    let body = event(
        "evt_cap_2",
        "payment_intent.succeeded",
        succeeded_payment("pi_cap_2"),
    );
    assert_eq!(server.deliver_signed(&body).await.status, 200);
    assert_eq!(again.next().await.unwrap().id, 2);
}
