//! Failed credentials per client: after [`FAILURES_PER_MINUTE`] wrong API
//! tokens (a bearer header or a console sign-in) from one address within a
//! minute, that address is refused with 429 until its allowance comes
//! back, whatever it sends, so that guessing the token runs at a few tries
//! a minute instead of thousands a second.
//!
//! Knows nothing about tokens or routes: the router and the console report
//! failures and ask before checking.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong tokens one address may send a minute before it is held off.
pub const FAILURES_PER_MINUTE: u32 = 10;

/// Where requests come from: the listener puts the peer's address in each
/// request's extensions; a router served some other way has none, and is
/// then throttled as one client.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub IpAddr);

/// The failure counts and the addresses held off.
pub struct Throttle {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    held: Mutex<HashMap<IpAddr, Instant>>,
}

impl Default for Throttle {
    fn default() -> Self {
        let per_minute = NonZeroU32::new(FAILURES_PER_MINUTE).expect("not zero");
        Throttle {
            failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl Throttle {
    /// How long `client` is still held off, if it is.
    pub fn held_off(&self, client: IpAddr) -> Option<Duration> {
        let held = self.held.lock().expect("not poisoned");
        let until = *held.get(&client)?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a wrong token from `client`; past the allowance, holds it off
    /// until the allowance comes back.
    pub fn failed(&self, client: IpAddr) {
        if let Err(not_until) = self.failures.check_key(&client) {
            let wait = not_until.wait_time_from(self.failures.clock().now());
            let mut held = self.held.lock().expect("not poisoned");
            let now = Instant::now();
            held.retain(|_, until| *until > now);
            held.insert(client, now + wait);
            drop(held);
            self.failures.retain_recent();
            tracing::warn!(%client, held_off = ?wait, "too many wrong API tokens from one address");
        }
    }
}

/// The client of a request (the unspecified address when unknown).
pub fn client_of(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<Peer>()
        .map(|p| p.0)
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// 429 for a client held off after too many wrong tokens, with the
/// seconds to wait in `Retry-After`.
pub(super) fn too_many_attempts(wait: Duration) -> axum::response::Response {
    use axum::response::IntoResponse;
    let seconds = wait.as_secs().max(1);
    let body = super::bodies::ErrorBody::new(
        "too_many_attempts",
        format!("too many wrong API tokens from this address; try again in {seconds} s"),
    );
    let mut refused = (axum::http::StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    refused.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(seconds),
    );
    refused
}
