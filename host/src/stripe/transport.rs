//! The HTTP transport under async-stripe's typed requests: one attempt per
//! call, over reqwest, with the headers Stripe expects (key, version,
//! `Stripe-Account`, `Idempotency-Key`, a form body). On an answer that is
//! not 2xx it keeps what async-stripe's own client does not hand on: the
//! status, `Stripe-Should-Retry`, `Retry-After` and the body, so that the
//! retry loop can honour Stripe's word and a gateway's page keeps its status.
//!
//! Knows nothing about retries or WIT types: `stripe::mod` decides.

use bytes::Bytes;
use std::time::Duration;
use stripe_client_core::{CustomizedStripeRequest, StripeClient, StripeClientErr, StripeMethod};

/// One attempt's transport, shared by every call.
#[derive(Clone)]
pub(super) struct Transport {
    pub(super) http: reqwest::Client,
    /// `https://api.stripe.com/` or a test's fake, ending in `/`.
    pub(super) base: String,
    pub(super) secret_key: String,
}

/// How an attempt failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// An answer that is not 2xx.
    Status {
        status: u16,
        /// `Stripe-Should-Retry`, when Stripe said.
        should_retry: Option<bool>,
        /// `Retry-After` in seconds, when given.
        retry_after: Option<Duration>,
        body: String,
    },
    /// No answer: connection, TLS, timeout.
    Network(String),
    /// A 2xx answer that is not the object asked for.
    Unreadable(String),
}

impl StripeClientErr for Failure {
    fn deserialize_err(msg: impl std::fmt::Display) -> Self {
        Failure::Unreadable(msg.to_string())
    }
}

/// The headers of an error answer that say whether and when to retry.
pub(super) fn retry_headers(
    headers: &reqwest::header::HeaderMap,
) -> (Option<bool>, Option<Duration>) {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let should_retry = text("stripe-should-retry").and_then(|v| v.parse().ok());
    let retry_after = text("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    (should_retry, retry_after)
}

impl StripeClient for Transport {
    type Err = Failure;

    async fn execute(&self, req: CustomizedStripeRequest) -> Result<Bytes, Failure> {
        let (req, config) = req.into_pieces();
        let mut url = format!("{}v1{}", self.base, req.path);
        if let Some(query) = &req.query {
            url.push('?');
            url.push_str(query);
        }
        let method = match req.method {
            StripeMethod::Get => reqwest::Method::GET,
            StripeMethod::Post => reqwest::Method::POST,
            StripeMethod::Delete => reqwest::Method::DELETE,
        };
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(&self.secret_key)
            .header("Stripe-Version", stripe_client_core::VERSION.as_str());
        if let Some(account) = &config.account_id {
            request = request.header("Stripe-Account", account.as_str());
        }
        if let Some(key) = config.request_strategy.as_ref().and_then(|s| s.get_key()) {
            request = request.header("Idempotency-Key", key.as_str());
        }
        if let Some(body) = req.body {
            request = request
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body);
        }
        if let Some(timeout) = config.timeout {
            request = request.timeout(timeout);
        }
        let network = |e: reqwest::Error| Failure::Network(e.without_url().to_string());
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        let (should_retry, retry_after) = retry_headers(response.headers());
        let body = response.bytes().await.map_err(network)?;
        if status.is_success() {
            return Ok(body);
        }
        Err(Failure::Status {
            status: status.as_u16(),
            should_retry,
            retry_after,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// [`Transport`] for one call, keeping the last 2xx body it received: when
/// async-stripe's type cannot read an answer, the caller still has what
/// Stripe said (an operation that happened at Stripe must not be reported
/// as failed for a field psa-billing does not need).
pub(super) struct Capturing<'a> {
    pub(super) transport: &'a Transport,
    pub(super) body: std::sync::Mutex<Option<Bytes>>,
}

impl Capturing<'_> {
    /// The last 2xx body, taken.
    pub(super) fn take(&self) -> Option<Bytes> {
        self.body.lock().expect("not poisoned").take()
    }
}

impl StripeClient for Capturing<'_> {
    type Err = Failure;

    async fn execute(&self, req: CustomizedStripeRequest) -> Result<Bytes, Failure> {
        let body = self.transport.execute(req).await?;
        *self.body.lock().expect("not poisoned") = Some(body.clone());
        Ok(body)
    }
}
