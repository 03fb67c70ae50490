//! The HTTP listener of `serve`, with the limits axum's `serve` does not
//! expose: open connections, header size and count, time to send the
//! headers, time to answer a request, idle connections; and a graceful
//! shutdown that stops accepting, lets in-flight requests finish (within a
//! grace period), then returns.
//!
//! Every connection is watched from the moment it is accepted, not from its
//! first byte: hyper's header timeout starts only once HTTP/1 bytes arrive,
//! and hyper-util's protocol sniff (HTTP/1 or HTTP/2) reads without one, so
//! a socket that never speaks, or an HTTP/2 preface followed by silence,
//! would otherwise hold a slot for ever. Here a connection that has had no
//! complete request header within `header_timeout` of being accepted is
//! closed, one with nothing in flight for `idle_timeout` is closed, and when
//! every slot is taken a new connection sheds the connection that has been
//! idle longest, so a flood of silent sockets cannot lock out a delivery.
//!
//! Request bodies are paced: a body must arrive within `body_timeout`, and
//! at `min_body_rate` on average once `body_grace` has passed, or the
//! request fails (its handler sees a body error, so nothing is done) and
//! the connection closes. When every slot is taken and none is idle, the
//! connection that has been sending a body longest is dropped instead, so
//! clients that trickle bodies cannot hold the slots until the request
//! timeout either.
//!
//! It knows nothing of the routes it serves: `app` is any axum router.

use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulConnection;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// Limits of the HTTP layer (the body limit is per route, in `server.rs`).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections open at once. When all are taken, a new connection
    /// closes the one idle longest; with none idle it waits in the backlog.
    pub max_connections: usize,
    /// Bytes of the request line and headers (hyper's read buffer; at least
    /// 8 KiB); on HTTP/2, the header list size.
    pub max_header_bytes: usize,
    /// Header lines in one request.
    pub max_headers: usize,
    /// Time from accepting a connection to its first complete request
    /// header (the protocol sniff included), and on HTTP/1 the time to send
    /// each later request's headers (slow-loris).
    pub header_timeout: Duration,
    /// Time a connection that has been answered may stay open with nothing
    /// in flight (HTTP/2 above all: HTTP/1 keep-alive connections waiting
    /// for their next request are also held to `header_timeout`).
    pub idle_timeout: Duration,
    /// Time to answer one request; beyond it the answer is 408 and the
    /// work is dropped (a delivery or operation dropped mid-way commits
    /// nothing, or everything: both are safe to retry).
    pub request_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Time to receive a whole request body, from its headers.
    pub body_timeout: Duration,
    /// Bytes a second a body must average once `body_grace` has passed.
    pub min_body_rate: u64,
    /// Time a body may take before `min_body_rate` applies.
    pub body_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            body_timeout: Duration::from_secs(10),
            min_body_rate: 1024,
            body_grace: Duration::from_secs(5),
        }
    }
}

/// HTTP/2 keep-alive: a PING after this much silence, and the connection is
/// closed if its answer takes longer than [`H2_PING_TIMEOUT`].
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may have open at once.
const H2_MAX_STREAMS: u32 = 128;
/// How long a connection asked to close gracefully (idle, or shed) may take
/// before it is dropped, as long as it still has nothing in flight.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A connection or a body this young is never shed: it may be a client
/// sending its request this instant.
const YOUNG: Duration = Duration::from_millis(200);

/// How often a connection waiting for a slot makes room again.
const SHED_AGAIN: Duration = Duration::from_millis(20);

/// A body still arriving after this long is a slow one: its connection is
/// dropped before an idle one is asked to close.
const SLOW_BODY: Duration = Duration::from_secs(1);

/// Makes room for a new connection: the connection sending a body longest,
/// if that body is slow, is dropped; else the connection idle longest (not
/// yet asked) is asked to close; else the one sending a body longest is
/// dropped. With none of them, the new one waits for a request to finish.
fn shed(open: &Connections) {
    let now = Instant::now();
    // The body arriving longest, and for how long (one look at the table).
    let oldest_body = open
        .slowest_body()
        .map(|(since, c)| (now.saturating_duration_since(since), c));
    // Never a connection (or a body) younger than YOUNG: that may be a
    // client sending its request this instant.
    let victim = match oldest_body {
        Some((age, victim)) if age >= SLOW_BODY => Some((victim, true)),
        // One that never completed a request has nothing to finish: dropped
        // at once, not given a grace to trickle more header bytes in.
        oldest_body => match open.idle_longest(now) {
            Some(victim) => {
                let fresh = victim.requests_seen() == 0;
                Some((victim, fresh))
            }
            None => oldest_body
                .filter(|(age, _)| *age >= YOUNG)
                .map(|(_, victim)| (victim, true)),
        },
    };
    let Some((victim, drop_now)) = victim else {
        return;
    };
    if drop_now {
        tracing::debug!(
            connection = victim.id,
            "connection limit reached: dropping a connection slow to send its request"
        );
        victim.drop_now.store(true, Ordering::Release);
    } else {
        tracing::debug!(
            connection = victim.id,
            "connection limit reached: closing the connection idle longest"
        );
        victim.asked.store(true, Ordering::Release);
    }
    victim.close.notify_one();
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = app.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let open = Arc::new(Connections::default());
    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    'accept: loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Every slot is taken: make room, and again while waiting
                // (a connection asked to close may yet start a request).
                loop {
                    shed(&open);
                    tokio::select! {
                        _ = &mut shutdown => break 'accept,
                        p = slots.clone().acquire_owned() => break p.expect("never closed"),
                        _ = tokio::time::sleep(SHED_AGAIN) => {}
                    }
                }
            }
        };
        next_id += 1;
        let conn_state = Arc::new(Connection::new(next_id));
        open.insert(conn_state.clone());
        let service = tracked(
            app.clone(),
            conn_state.clone(),
            Pacing::of(&limits),
            super::throttle::Peer(peer.ip()),
        );
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(watch(
            conn,
            conn_state,
            open.clone(),
            permit,
            limits.clone(),
            stop_seen.clone(),
        ));
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection gives its slot back when it has closed.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => tracing::info!("in-flight requests finished"),
        _ = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "shutdown grace period over; closing open connections")
        }
    }
    Ok(())
}

/// The router as a hyper service that counts `conn`'s requests in flight:
/// one from the moment its headers are read until its answer's body has
/// been sent (or dropped).
fn tracked(
    app: Router,
    conn: Arc<Connection>,
    pacing: Pacing,
    peer: super::throttle::Peer,
) -> impl hyper::service::Service<
    axum::http::Request<Incoming>,
    Response = axum::http::Response<Body>,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::http::Response<Body>, std::convert::Infallible>>
             + Send
             + 'static,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |mut req: axum::http::Request<Incoming>| {
        req.extensions_mut().insert(peer);
        let busy = conn.begin();
        let app = app.clone();
        let body = Paced::start(conn.clone(), pacing);
        async move {
            let response = app
                .oneshot(req.map(|inner| Body::new(body.wrap(inner))))
                .await?;
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _still_sending = &busy;
                    frame
                }))
            }))
        }
    })
}

/// Closes `conn` when it outstays its limits, is shed or the server stops,
/// then frees its slot.
async fn watch<C>(
    conn: C,
    state: Arc<Connection>,
    open: Arc<Connections>,
    permit: OwnedSemaphorePermit,
    limits: HttpLimits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(conn);
    // Shutdown: finish what is in flight, however long the server waits.
    let mut stopping = false;
    // Set once the connection was asked to close: from then on it is dropped
    // at this instant unless a request is in flight.
    let mut closing: Option<Instant> = None;
    loop {
        let wake = match closing {
            Some(at) => at,
            None => state.idle_deadline(&limits),
        };
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                if closing.is_none() {
                    conn.as_mut().graceful_shutdown();
                }
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            _ = state.close.notified(), if closing.is_none() || state.drop_now.load(Ordering::Acquire) => {
                if state.drop_now.load(Ordering::Acquire) {
                    break;
                }
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now() + CLOSE_GRACE);
            }
            _ = tokio::time::sleep_until(wake) => match closing {
                Some(_) if state.in_flight() == 0 => break,
                Some(_) => closing = Some(Instant::now() + CLOSE_GRACE),
                None if state.idle_deadline(&limits) <= Instant::now() => {
                    tracing::debug!(connection = state.id, first_request = state.requests_seen() > 0, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + CLOSE_GRACE);
                }
                None => {}
            },
        }
    }
    open.remove(state.id);
    drop(permit);
}

/// What the listener knows of one open connection.
struct Connection {
    id: u64,
    /// When it was accepted.
    opened: Instant,
    /// Requests whose answer is not yet sent.
    in_flight: AtomicUsize,
    /// Requests whose headers were read.
    requests: AtomicU64,
    /// Milliseconds after `opened` when it last had nothing in flight.
    idle_since_ms: AtomicU64,
    /// Wakes the connection's watcher to close it.
    close: Notify,
    /// Set with `close`: drop the connection at once, request and all.
    drop_now: AtomicBool,
    /// Asked to close to make room (not to be chosen again).
    asked: AtomicBool,
    /// Milliseconds after `opened` when the body being received began
    /// (`u64::MAX`: none is).
    body_since_ms: AtomicU64,
}

/// Decrements a connection's in-flight count when dropped.
struct Busy(Arc<Connection>);

impl Drop for Busy {
    fn drop(&mut self) {
        let c = &self.0;
        let now = c.opened.elapsed().as_millis() as u64;
        c.idle_since_ms.store(now, Ordering::Relaxed);
        let before = c.in_flight.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(before > 0, "a request ended that never began");
    }
}

impl Connection {
    fn new(id: u64) -> Connection {
        Connection {
            id,
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
            close: Notify::new(),
            drop_now: AtomicBool::new(false),
            asked: AtomicBool::new(false),
            body_since_ms: AtomicU64::new(NO_BODY),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    fn requests_seen(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// When the body it is receiving began, if it is receiving one.
    fn body_since(&self) -> Option<Instant> {
        match self.body_since_ms.load(Ordering::Acquire) {
            NO_BODY => None,
            ms => Some(self.opened + Duration::from_millis(ms)),
        }
    }

    fn body_began(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.body_since_ms
            .store(now.min(NO_BODY - 1), Ordering::Release);
    }

    fn body_ended(&self) {
        self.body_since_ms.store(NO_BODY, Ordering::Release);
    }

    /// When it has been idle since.
    fn idle_since(&self) -> Instant {
        self.opened + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed))
    }

    /// When the connection is due to close if nothing happens: its first
    /// request's header deadline, or its idle deadline. While a request is
    /// in flight, a time to look again.
    fn idle_deadline(&self, limits: &HttpLimits) -> Instant {
        if self.in_flight() > 0 {
            return Instant::now() + limits.idle_timeout.min(limits.header_timeout);
        }
        if self.requests_seen() == 0 {
            self.opened + limits.header_timeout
        } else {
            self.idle_since() + limits.idle_timeout
        }
    }
}

/// The open connections, by the order they were accepted.
#[derive(Default)]
struct Connections(Mutex<BTreeMap<u64, Arc<Connection>>>);

impl Connections {
    fn insert(&self, c: Arc<Connection>) {
        self.0.lock().expect("not poisoned").insert(c.id, c);
    }

    fn remove(&self, id: u64) {
        self.0.lock().expect("not poisoned").remove(&id);
    }

    /// The connection that has been receiving a request body the longest,
    /// and since when.
    fn slowest_body(&self) -> Option<(Instant, Arc<Connection>)> {
        let open = self.0.lock().expect("not poisoned");
        open.values()
            .filter(|c| !c.drop_now.load(Ordering::Acquire))
            .filter_map(|c| c.body_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since)
            .map(|(since, c)| (since, c.clone()))
    }

    /// The connection with nothing in flight for the longest time.
    /// (A connection that has sent no request yet counts once it is
    /// [`YOUNG`] no more.)
    fn idle_longest(&self, now: Instant) -> Option<Arc<Connection>> {
        let open = self.0.lock().expect("not poisoned");
        open.values()
            .filter(|c| c.in_flight() == 0 && !c.asked.load(Ordering::Acquire))
            .filter(|c| c.requests_seen() > 0 || now.saturating_duration_since(c.opened) >= YOUNG)
            .min_by_key(|c| c.idle_since())
            .cloned()
    }
}

/// `body_since_ms` of a connection receiving no body.
const NO_BODY: u64 = u64::MAX;

/// The pace a request body must keep (from [`HttpLimits`]).
#[derive(Debug, Clone, Copy)]
struct Pacing {
    timeout: Duration,
    min_rate: u64,
    grace: Duration,
}

impl Pacing {
    fn of(limits: &HttpLimits) -> Pacing {
        Pacing {
            timeout: limits.body_timeout,
            min_rate: limits.min_body_rate,
            grace: limits.body_grace,
        }
    }
}

/// A request body held to its [`Pacing`]: too slow, it ends with an error
/// (the handler never sees a whole body, so it does nothing) and the
/// connection is dropped. While it is incomplete, its connection counts as
/// sending a body, for shedding.
struct Paced {
    inner: Option<Incoming>,
    conn: Arc<Connection>,
    pacing: Pacing,
    began: Instant,
    received: u64,
    check: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Paced {
    fn start(conn: Arc<Connection>, pacing: Pacing) -> PacedStart {
        PacedStart { conn, pacing }
    }
}

/// A [`Paced`] body not yet given its request's body.
struct PacedStart {
    conn: Arc<Connection>,
    pacing: Pacing,
}

impl PacedStart {
    fn wrap(self, inner: Incoming) -> Paced {
        let done = inner.is_end_stream();
        if !done {
            self.conn.body_began();
        }
        let began = Instant::now();
        Paced {
            inner: (!done).then_some(inner),
            conn: self.conn,
            pacing: self.pacing,
            began,
            received: 0,
            check: Box::pin(tokio::time::sleep_until(
                began + self.pacing.grace.min(self.pacing.timeout),
            )),
        }
    }
}

impl Paced {
    /// Whether the body is behind its pace at `now`.
    fn too_slow(&self, now: Instant) -> Option<String> {
        let elapsed = now.saturating_duration_since(self.began);
        if elapsed >= self.pacing.timeout {
            return Some(format!(
                "the request body was not received within {:?}",
                self.pacing.timeout
            ));
        }
        let owed = (self.pacing.min_rate as u128 * elapsed.as_millis() / 1000) as u64;
        (elapsed >= self.pacing.grace && self.received < owed).then(|| {
            format!(
                "the request body arrived at under {} bytes a second",
                self.pacing.min_rate
            )
        })
    }

    fn finish(&mut self) {
        if self.inner.take().is_some() {
            self.conn.body_ended();
        }
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for Paced {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match std::pin::Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                // Look again at the pace each time the check comes due.
                while this.check.as_mut().poll(cx).is_ready() {
                    let now = Instant::now();
                    if let Some(why) = this.too_slow(now) {
                        this.conn.drop_now.store(true, Ordering::Release);
                        this.conn.close.notify_one();
                        this.finish();
                        return Poll::Ready(Some(Err(why.into())));
                    }
                    let next =
                        (now + Duration::from_millis(500)).min(this.began + this.pacing.timeout);
                    this.check
                        .as_mut()
                        .reset(next.max(now + Duration::from_millis(1)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| hyper::body::SizeHint::with_exact(0), |i| i.size_hint())
    }
}
