//! The Stripe client: the plugin's typed Stripe operations, carried out
//! by the host with async-stripe. The secret key never enters the guest.
//!
//! Every call: refused with `denied` unless the deployment allows the
//! operation; `Stripe-Account` for connected accounts; the plugin's
//! idempotency key on every write, the same on every attempt, so a retry
//! never charges twice; 429, 5xx, timeouts and network failures retried
//! with exponential back-off up to `max_attempts`; Stripe's error mapped to
//! a typed error (card declined with its decline code, invalid request,
//! authentication, rate limit, unreachable).
//!
//! Requests whose parameters nest (subscription items, Checkout lines,
//! metadata of what a session creates) are built as form bodies for
//! async-stripe's `RequestBuilder` (its serde_qs encoding, as its typed
//! requests use); every answer is read into async-stripe's typed objects.
//! They travel over [`transport`] (reqwest), which keeps an error answer's
//! status, `Stripe-Should-Retry` and `Retry-After`: Stripe's word on
//! retrying wins over the status, and a `Retry-After` is waited out.
//!
//! async-stripe 1.0.0-rc.10 has no v2 API (it puts `v1` before every path),
//! so thin events (`GET /v2/core/events/{id}`) are fetched with reqwest
//! directly, with the same key, base URL, retries and error mapping.
//!
//! Knows nothing about the plugin's instances or the database: the
//! `stripe` capability calls it with WIT types.

use crate::bindings::psa::billing::stripe as wit;
use crate::bindings::psa::billing::types::Money;
use anyhow::{Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

mod billing;
mod connect;
mod convert;
mod errors;
mod lenient;
mod payments;
mod transport;

use crate::backoff::{Backoff, Jitter};
use convert::{Form, check_id, invalid, unreadable};
use errors::{MAX_RETRY_AFTER, classify};

use stripe_client_core::{
    CustomizableStripeRequest, IdempotencyKey, RequestBuilder, RequestStrategy, StripeMethod,
    StripeRequest,
};
use wit::StripeError as WitError;

/// The longest wait between two tries of one call (the back-off doubles
/// from `StripeConfig::backoff` up to it).
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Every operation of the `stripe` interface, by its WIT name, and the
/// host's own `list-balance-transactions` (`reconcile`): what
/// `PSA_BILLING_STRIPE_ALLOW` may list.
pub const OPERATIONS: [&str; 29] = [
    "retrieve-event",
    "retrieve-thin-event",
    "retrieve-payment-intent",
    "retrieve-charge",
    "retrieve-balance-transaction",
    "list-balance-transactions",
    "retrieve-invoice",
    "retrieve-subscription",
    "retrieve-account",
    "create-payment-intent",
    "create-refund",
    "create-transfer",
    "update-subscription-quantity",
    "create-account",
    "create-account-link",
    "create-customer",
    "update-customer",
    "retrieve-customer",
    "retrieve-payment-method",
    "search-customers",
    "attach-payment-method",
    "create-subscription",
    "update-subscription",
    "cancel-subscription",
    "create-checkout-session",
    "create-portal-session",
    "create-invoice",
    "create-invoice-item",
    "advance-invoice",
];

/// How the host talks to Stripe.
#[derive(Clone)]
pub struct StripeConfig {
    /// `sk_live_...` / `sk_test_...` / a restricted `rk_...` key.
    pub secret_key: String,
    /// Where the API is; `None`: `https://api.stripe.com/`.
    pub base_url: Option<String>,
    /// Operations allowed (WIT names); `None`: all of them.
    pub allow: Option<BTreeSet<String>>,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First back-off; doubled after each failed attempt.
    pub backoff: Duration,
    /// Budget of one HTTP attempt.
    pub attempt_timeout: Duration,
    /// Requests sent to Stripe per second at most, by this process (every
    /// attempt counts); `None`: no cap. Stripe's own limits are 100 a
    /// second in live mode and 25 in test mode.
    pub calls_per_second: Option<std::num::NonZeroU32>,
}

impl std::fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeConfig")
            .field("secret_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("allow", &self.allow)
            .finish_non_exhaustive()
    }
}

impl StripeConfig {
    /// A configuration with `secret_key` and the defaults for the rest.
    pub fn new(secret_key: impl Into<String>) -> StripeConfig {
        StripeConfig {
            secret_key: secret_key.into(),
            base_url: None,
            allow: None,
            max_attempts: 4,
            backoff: Duration::from_millis(250),
            attempt_timeout: Duration::from_secs(10),
            calls_per_second: None,
        }
    }

    /// Parses an allow-list: operation names separated by commas.
    pub fn parse_allow(list: &str) -> Result<BTreeSet<String>> {
        let mut allow = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if !OPERATIONS.contains(&name) {
                anyhow::bail!(
                    "unknown Stripe operation {name:?} in the allow-list; known: {}",
                    OPERATIONS.join(", ")
                );
            }
            allow.insert(name.to_string());
        }
        Ok(allow)
    }
}

/// A configured Stripe client, shared by every plugin call.
#[derive(Clone)]
pub struct StripeApi {
    inner: Arc<Inner>,
}

struct Inner {
    transport: transport::Transport,
    /// For the v2 API, which async-stripe does not cover.
    http: reqwest::Client,
    base: String,
    config: StripeConfig,
    /// The cap on requests a second (`StripeConfig::calls_per_second`).
    pace: Option<governor::DefaultDirectRateLimiter>,
}

/// A 2xx answer async-stripe's type could not read, as JSON.
struct Unread {
    why: String,
    raw: serde_json::Value,
}

impl Unread {
    /// The record read leniently from the answer, or the error that says why not.
    fn lenient<W>(
        self,
        operation: &str,
        read: impl FnOnce(&serde_json::Value) -> Option<W>,
    ) -> Result<W, WitError> {
        match read(&self.raw) {
            Some(w) => {
                tracing::warn!(operation, why = %self.why, "read Stripe's answer by the fields psa-billing needs");
                Ok(w)
            }
            None => Err(unreadable(format!(
                "{}; a field psa-billing needs is missing too",
                self.why
            ))),
        }
    }
}

/// How one attempt failed.
enum Attempt {
    /// Worth another try (429, 5xx, network); the error if it was the last.
    Retry(WitError),
    /// Worth another try, not before Stripe's `Retry-After`.
    RetryAfter(WitError, Duration),
    Fail(WitError),
}

impl StripeApi {
    /// A client for `config`; refuses an empty key.
    pub fn new(config: StripeConfig) -> Result<StripeApi> {
        if config.secret_key.trim().is_empty() {
            anyhow::bail!("the Stripe secret key is empty");
        }
        let base = config
            .base_url
            .clone()
            .unwrap_or_else(|| "https://api.stripe.com/".into());
        let base = if base.ends_with('/') {
            base
        } else {
            format!("{base}/")
        };
        let http = reqwest::Client::builder()
            .timeout(config.attempt_timeout)
            .user_agent(concat!("psa-billing/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("configuring the HTTP client for Stripe")?;
        let transport = transport::Transport {
            http: http.clone(),
            base: base.clone(),
            secret_key: config.secret_key.clone(),
        };
        let pace = config
            .calls_per_second
            .map(|n| governor::RateLimiter::direct(governor::Quota::per_second(n)));
        Ok(StripeApi {
            inner: Arc::new(Inner {
                transport,
                http,
                base,
                config,
                pace,
            }),
        })
    }

    fn allowed(&self, operation: &str) -> Result<(), WitError> {
        match &self.inner.config.allow {
            Some(allow) if !allow.contains(operation) => Err(WitError::Denied(format!(
                "this deployment does not allow {operation} (PSA_BILLING_STRIPE_ALLOW)"
            ))),
            _ => Ok(()),
        }
    }

    /// Sends `request()` with retries; a write passes its idempotency key.
    async fn send<T: miniserde::Deserialize>(
        &self,
        operation: &'static str,
        account: Option<&str>,
        idempotency_key: Option<&str>,
        request: impl Fn() -> CustomizableStripeRequest<T>,
    ) -> Result<T, WitError> {
        match self
            .send_or_raw(operation, account, idempotency_key, request)
            .await?
        {
            Ok(t) => Ok(t),
            Err(unread) => Err(unreadable(unread.why)),
        }
    }

    /// [`StripeApi::send`], with a 2xx answer that async-stripe's type
    /// cannot read handed back as JSON (and logged with its text) rather
    /// than as an error: for a write, Stripe has done it.
    async fn send_or_raw<T: miniserde::Deserialize>(
        &self,
        operation: &'static str,
        account: Option<&str>,
        idempotency_key: Option<&str>,
        request: impl Fn() -> CustomizableStripeRequest<T>,
    ) -> Result<Result<T, Unread>, WitError> {
        self.allowed(operation)?;
        let strategy = match idempotency_key {
            Some(key) => RequestStrategy::Idempotent(
                IdempotencyKey::new(key)
                    .map_err(|e| invalid(format!("idempotency key: {e}"), None))?,
            ),
            None => RequestStrategy::Once,
        };
        if let Some(a) = account
            && !a.starts_with("acct_")
        {
            return Err(invalid(
                format!("{a:?} is not a connected account id"),
                None,
            ));
        }
        self.with_retries(operation, || async {
            let mut req = request().request_strategy(strategy.clone());
            if let Some(a) = account {
                req = req.account_id(stripe_shared::AccountId::from(a));
            }
            let capture = transport::Capturing {
                transport: &self.inner.transport,
                body: Default::default(),
            };
            match req.send(&capture).await {
                Ok(t) => Ok(Ok(t)),
                Err(transport::Failure::Unreadable(why)) => {
                    let raw = capture.take().unwrap_or_default();
                    let text = String::from_utf8_lossy(&raw);
                    tracing::error!(
                        operation,
                        %why,
                        answer = %text.chars().take(2048).collect::<String>(),
                        "Stripe's answer does not fit async-stripe's type"
                    );
                    let raw = serde_json::from_slice(&raw).unwrap_or_default();
                    Ok(Err(Unread { why, raw }))
                }
                Err(e) => Err(classify(e)),
            }
        })
        .await
    }

    async fn with_retries<T, F, Fut>(&self, operation: &str, attempt: F) -> Result<T, WitError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Attempt>>,
    {
        let config = &self.inner.config;
        // Each wait drawn from the upper half of a doubling ceiling.
        let backoff = Backoff {
            first: config.backoff,
            max: MAX_BACKOFF,
            jitter: Jitter::UpperHalf,
        };
        let mut tries = 0;
        loop {
            tries += 1;
            if let Some(pace) = &self.inner.pace {
                pace.until_ready().await;
            }
            match attempt().await {
                Ok(t) => return Ok(t),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(e) | Attempt::RetryAfter(e, _))
                    if tries >= config.max_attempts.max(1) =>
                {
                    return Err(e);
                }
                Err(retry) => {
                    // The back-off, or longer where Stripe said how long.
                    let (e, wait) = match retry {
                        Attempt::RetryAfter(e, after) => {
                            (e, backoff.delay(tries - 1).max(after.min(MAX_RETRY_AFTER)))
                        }
                        Attempt::Retry(e) | Attempt::Fail(e) => (e, backoff.delay(tries - 1)),
                    };
                    tracing::warn!(operation, attempt = tries, error = ?e, ?wait, "Stripe call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// A snapshot event as JSON (untyped: the plugin's mapper reads it).
    pub async fn retrieve_event(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<String, WitError> {
        check_id(id, "evt_")?;
        let path = format!("/events/{id}");
        let value: miniserde::json::Value = self
            .send("retrieve-event", account, None, || {
                RequestBuilder::new(StripeMethod::Get, path.clone()).customize()
            })
            .await?;
        Ok(miniserde::json::to_string(&value))
    }

    /// The object at a `/v1/...` path (a thin event's related object) as
    /// JSON, with the event's connected account.
    pub async fn retrieve_related(
        &self,
        url: &str,
        account: Option<&str>,
    ) -> Result<String, WitError> {
        let path = url
            .strip_prefix("/v1/")
            .filter(|p| {
                p.split('/').all(|seg| {
                    !seg.is_empty()
                        && seg
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                }) && !p.contains("..")
            })
            .ok_or_else(|| invalid(format!("{url:?} is not a /v1 object path"), None))?;
        let path = format!("/{path}");
        let value: miniserde::json::Value = self
            .send("retrieve-thin-event", account, None, || {
                RequestBuilder::new(StripeMethod::Get, path.clone()).customize()
            })
            .await?;
        Ok(miniserde::json::to_string(&value))
    }

    /// A v2 event (`GET /v2/core/events/{id}`) as JSON.
    pub async fn retrieve_thin_event(&self, id: &str) -> Result<String, WitError> {
        self.allowed("retrieve-thin-event")?;
        check_id(id, "evt_")?;
        let url = format!("{}v2/core/events/{id}", self.inner.base);
        self.with_retries("retrieve-thin-event", || async {
            let network = |e: reqwest::Error| {
                classify(transport::Failure::Network(e.without_url().to_string()))
            };
            let response = self
                .inner
                .http
                .get(&url)
                .bearer_auth(&self.inner.config.secret_key)
                .header("Stripe-Version", stripe_shared::version::VERSION.as_str())
                .send()
                .await
                .map_err(network)?;
            let status = response.status().as_u16();
            let (should_retry, retry_after) = transport::retry_headers(response.headers());
            let body = response.text().await.map_err(network)?;
            if (200..300).contains(&status) {
                return Ok(body);
            }
            Err(classify(transport::Failure::Status {
                status,
                should_retry,
                retry_after,
                body,
            }))
        })
        .await
    }

    /// Sends a form to `path` with `method` (a write: keyed).
    async fn write<T: miniserde::Deserialize>(
        &self,
        operation: &'static str,
        method: StripeMethod,
        path: String,
        form: Form,
        account: Option<&str>,
        key: &str,
    ) -> Result<T, WitError> {
        self.send(operation, account, Some(key), || {
            let request = RequestBuilder::new(method, path.clone());
            // No parameters: no body at all (an empty form serialises as `=`).
            if form.0.is_empty() {
                request.customize()
            } else {
                request.form(&form).customize()
            }
        })
        .await
    }
}

/// A sentence for a Stripe error.
pub fn describe_stripe(e: &WitError) -> String {
    match e {
        WitError::CardDeclined(d) => format!(
            "card declined ({}{}): {}",
            d.code,
            d.decline_code
                .as_ref()
                .map(|c| format!(", {c}"))
                .unwrap_or_default(),
            d.message
        ),
        WitError::InvalidRequest(r) => match &r.param {
            Some(p) => format!("Stripe refused the request ({p}): {}", r.message),
            None => format!("Stripe refused the request: {}", r.message),
        },
        WitError::Authentication(m) => format!("Stripe refused the secret key: {m}"),
        WitError::RateLimited(m) => format!("Stripe rate limit, retries exhausted: {m}"),
        WitError::Unreachable(m) => format!("Stripe unreachable, retries exhausted: {m}"),
        WitError::Denied(m) => m.clone(),
        WitError::Api(a) => format!("Stripe error (HTTP {}): {}", a.status, a.message),
    }
}
