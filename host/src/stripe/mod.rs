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

mod lenient;
mod transport;
use stripe_client_core::{
    CustomizableStripeRequest, IdempotencyKey, RequestBuilder, RequestStrategy, StripeMethod,
    StripeRequest,
};
use wit::StripeError as WitError;

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
        let mut backoff = config.backoff;
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
                            (e, jittered(backoff).max(after.min(MAX_RETRY_AFTER)))
                        }
                        Attempt::Retry(e) | Attempt::Fail(e) => (e, jittered(backoff)),
                    };
                    tracing::warn!(operation, attempt = tries, error = ?e, ?wait, "Stripe call failed; retrying");
                    tokio::time::sleep(wait).await;
                    backoff = backoff.saturating_mul(2);
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

    /// `GET /v1/payment_intents/{id}`.
    pub async fn retrieve_payment_intent(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::PaymentIntent, WitError> {
        check_id(id, "pi_")?;
        let req = stripe_core::payment_intent::RetrievePaymentIntent::new(id);
        let pi = self
            .send("retrieve-payment-intent", account, None, || req.customize())
            .await?;
        Ok(payment_intent(pi))
    }

    /// `GET /v1/charges/{id}`.
    pub async fn retrieve_charge(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::Charge, WitError> {
        check_id(id, "ch_")?;
        let req = stripe_core::charge::RetrieveCharge::new(id);
        let c = self
            .send("retrieve-charge", account, None, || req.customize())
            .await?;
        Ok(wit::Charge {
            id: c.id.to_string(),
            amount: money(c.amount, &c.currency),
            amount_refunded: c.amount_refunded,
            status: c.status.as_str().to_string(),
            payment_intent: c.payment_intent.map(|p| p.id().to_string()),
            application_fee_amount: c.application_fee_amount,
            balance_transaction: c.balance_transaction.map(|b| b.id().to_string()),
        })
    }

    /// `GET /v1/balance_transactions/{id}`.
    pub async fn retrieve_balance_transaction(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::BalanceTransaction, WitError> {
        check_id(id, "txn_")?;
        let req = stripe_core::balance_transaction::RetrieveBalanceTransaction::new(id);
        let t = self
            .send("retrieve-balance-transaction", account, None, || {
                req.customize()
            })
            .await?;
        Ok(balance_transaction(t))
    }

    /// Every balance transaction created in [`from`, `to`) (Unix seconds) on
    /// `account`'s balance (the platform's when `None`), with its source
    /// expanded (`expand[]=data.source`), as Stripe's JSON. Pages through
    /// the list, 100 at a time, by `starting_after` while `has_more`.
    pub async fn list_balance_transactions(
        &self,
        account: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<serde_json::Value>, WitError> {
        #[derive(serde::Serialize)]
        struct Created {
            gte: i64,
            lt: i64,
        }
        #[derive(serde::Serialize)]
        struct Page<'a> {
            limit: u32,
            created: Created,
            expand: [&'a str; 1],
            #[serde(skip_serializing_if = "Option::is_none")]
            starting_after: Option<&'a str>,
        }
        /// More than this many in one period is refused rather than held
        /// in memory: reconcile a shorter period.
        const MAX_ROWS: usize = 500_000;
        let broken = |m: String| {
            WitError::Api(wit::ApiFailure {
                status: 200,
                message: format!("the balance transaction list: {m}"),
            })
        };
        let mut all: Vec<serde_json::Value> = Vec::new();
        loop {
            let last = all
                .last()
                .and_then(|t| t["id"].as_str())
                .map(str::to_string);
            let page = Page {
                limit: 100,
                created: Created { gte: from, lt: to },
                expand: ["data.source"],
                starting_after: last.as_deref(),
            };
            let body: miniserde::json::Value = self
                .send("list-balance-transactions", account, None, || {
                    RequestBuilder::new(StripeMethod::Get, "/balance_transactions")
                        .query(&page)
                        .customize()
                })
                .await?;
            let mut body = untyped(&body)?;
            let has_more = body["has_more"].as_bool().unwrap_or(false);
            let serde_json::Value::Array(data) = body["data"].take() else {
                return Err(broken("no data array".into()));
            };
            let empty = data.is_empty();
            all.extend(data);
            if all.len() > MAX_ROWS {
                return Err(broken(format!("more than {MAX_ROWS} rows in the period")));
            }
            if !has_more || empty {
                return Ok(all);
            }
        }
    }

    /// `GET /v1/invoices/{id}`.
    pub async fn retrieve_invoice(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::Invoice, WitError> {
        check_id(id, "in_")?;
        let req = stripe_billing::invoice::RetrieveInvoice::new(id);
        let i = self
            .send("retrieve-invoice", account, None, || req.customize())
            .await?;
        Ok(invoice(i))
    }

    /// `GET /v1/subscriptions/{id}`.
    pub async fn retrieve_subscription(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::Subscription, WitError> {
        check_id(id, "sub_")?;
        let req = stripe_billing::subscription::RetrieveSubscription::new(id);
        let s = self
            .send("retrieve-subscription", account, None, || req.customize())
            .await?;
        Ok(subscription(s))
    }

    /// `GET /v1/accounts/{id}`.
    pub async fn retrieve_account(&self, id: &str) -> Result<wit::Account, WitError> {
        check_id(id, "acct_")?;
        let req = stripe_connect::account::RetrieveAccount::new(id);
        let a = self
            .send("retrieve-account", None, None, || req.customize())
            .await?;
        Ok(account(a))
    }

    /// `POST /v1/payment_intents`, confirmed at once.
    pub async fn create_payment_intent(
        &self,
        p: wit::PaymentIntentParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::PaymentIntent, WitError> {
        let currency = currency(&p.amount.currency)?;
        let mut req =
            stripe_core::payment_intent::CreatePaymentIntent::new(p.amount.amount, currency)
                .metadata(metadata(p.metadata));
        if let Some(c) = p.customer {
            req = req.customer(c);
        }
        if let Some(pm) = p.payment_method {
            req = req.payment_method(pm);
        }
        if p.confirm {
            req = req.confirm(true).off_session(
                stripe_core::payment_intent::CreatePaymentIntentOffSession::Bool(true),
            );
        }
        if let Some(d) = p.description {
            req = req.description(d);
        }
        if let Some(fee) = p.application_fee_amount {
            req = req.application_fee_amount(fee);
        }
        if let Some(dest) = p.transfer_destination {
            req = req.transfer_data(
                stripe_core::payment_intent::CreatePaymentIntentTransferData::new(dest),
            );
        }
        match self
            .send_or_raw("create-payment-intent", account, Some(key), || {
                req.customize()
            })
            .await?
        {
            Ok(pi) => Ok(payment_intent(pi)),
            Err(unread) => unread.lenient("create-payment-intent", lenient::payment_intent),
        }
    }

    /// `POST /v1/refunds`.
    pub async fn create_refund(
        &self,
        p: wit::RefundParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Refund, WitError> {
        let mut req = stripe_core::refund::CreateRefund::new()
            .payment_intent(p.payment_intent)
            .metadata(metadata(p.metadata));
        if let Some(a) = p.amount {
            req = req.amount(a);
        }
        if p.refund_application_fee {
            req = req.refund_application_fee(true);
        }
        if p.reverse_transfer {
            req = req.reverse_transfer(true);
        }
        match self
            .send_or_raw("create-refund", account, Some(key), || req.customize())
            .await?
        {
            Ok(r) => Ok(wit::Refund {
                id: r.id.to_string(),
                amount: money(r.amount, &r.currency),
                status: r.status,
                payment_intent: r.payment_intent.map(|p| p.id().to_string()),
            }),
            Err(unread) => unread.lenient("create-refund", lenient::refund),
        }
    }

    /// `POST /v1/transfers` to a connected account.
    pub async fn create_transfer(
        &self,
        p: wit::TransferParams,
        key: &str,
    ) -> Result<wit::Transfer, WitError> {
        let mut req = stripe_connect::transfer::CreateTransfer::new(
            currency(&p.amount.currency)?,
            p.destination,
        )
        .amount(p.amount.amount)
        .metadata(metadata(p.metadata));
        if let Some(g) = p.transfer_group {
            req = req.transfer_group(g);
        }
        match self
            .send_or_raw("create-transfer", None, Some(key), || req.customize())
            .await?
        {
            Ok(t) => Ok(wit::Transfer {
                id: t.id.to_string(),
                amount: money(t.amount, &t.currency),
                destination: t.destination.map(|d| d.id().to_string()),
                amount_reversed: t.amount_reversed,
            }),
            Err(unread) => unread.lenient("create-transfer", lenient::transfer),
        }
    }

    /// Sets the quantity of one subscription item.
    pub async fn update_subscription_quantity(
        &self,
        id: &str,
        item: &str,
        quantity: u64,
        proration: Option<&str>,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Subscription, WitError> {
        use stripe_billing::subscription::UpdateSubscriptionProrationBehavior as Proration;
        check_id(id, "sub_")?;
        let mut line = stripe_billing::subscription::UpdateSubscriptionItems::new();
        line.id = Some(item.to_string());
        line.quantity = Some(quantity);
        let mut req = stripe_billing::subscription::UpdateSubscription::new(id).items(vec![line]);
        if let Some(p) = proration {
            let p: Proration = p.parse().expect("infallible");
            if let Proration::Unknown(p) = p {
                return Err(invalid(
                    format!("unknown proration behavior {p:?}"),
                    Some("proration_behavior".into()),
                ));
            }
            req = req.proration_behavior(p);
        }
        let s = self
            .send("update-subscription-quantity", account, Some(key), || {
                req.customize()
            })
            .await?;
        Ok(subscription(s))
    }

    /// `POST /v1/accounts`: an Express account.
    pub async fn create_account(
        &self,
        p: wit::AccountParams,
        key: &str,
    ) -> Result<wit::Account, WitError> {
        let mut req = stripe_connect::account::CreateAccount::new()
            .type_(stripe_connect::account::CreateAccountType::Express)
            .country(p.country)
            .metadata(metadata(p.metadata));
        if let Some(e) = p.email {
            req = req.email(e);
        }
        let a = self
            .send("create-account", None, Some(key), || req.customize())
            .await?;
        Ok(account(a))
    }

    /// `POST /v1/account_links`: an onboarding link.
    pub async fn create_account_link(
        &self,
        account: &str,
        refresh_url: &str,
        return_url: &str,
        key: &str,
    ) -> Result<wit::AccountLink, WitError> {
        check_id(account, "acct_")?;
        let req = stripe_connect::account_link::CreateAccountLink::new(
            account,
            stripe_connect::account_link::CreateAccountLinkType::AccountOnboarding,
        )
        .refresh_url(refresh_url)
        .return_url(return_url);
        let l = self
            .send("create-account-link", None, Some(key), || req.customize())
            .await?;
        Ok(wit::AccountLink {
            url: l.url,
            expires_at: l.expires_at,
        })
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

    /// `POST /v1/customers`.
    pub async fn create_customer(
        &self,
        p: wit::CustomerParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Customer, WitError> {
        let form = customer_form(p);
        let c = self
            .write(
                "create-customer",
                StripeMethod::Post,
                "/customers".into(),
                form,
                account,
                key,
            )
            .await?;
        Ok(customer(c))
    }

    /// `POST /v1/customers/{id}`.
    pub async fn update_customer(
        &self,
        id: &str,
        p: wit::CustomerParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Customer, WitError> {
        check_id(id, "cus_")?;
        let form = customer_form(p);
        let path = format!("/customers/{id}");
        let c = self
            .write(
                "update-customer",
                StripeMethod::Post,
                path,
                form,
                account,
                key,
            )
            .await?;
        Ok(customer(c))
    }

    /// `GET /v1/customers/{id}`.
    pub async fn retrieve_customer(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::Customer, WitError> {
        check_id(id, "cus_")?;
        let path = format!("/customers/{id}");
        // Read untyped first: Stripe answers a deleted customer with
        // `{"id", "object", "deleted": true}`, which is not a customer.
        let v: miniserde::json::Value = self
            .send("retrieve-customer", account, None, || {
                RequestBuilder::new(StripeMethod::Get, path.clone()).customize()
            })
            .await?;
        let text = miniserde::json::to_string(&v);
        if untyped(&v)?["deleted"] == serde_json::Value::Bool(true) {
            return Err(invalid(
                format!("No such customer: '{id}' (deleted at Stripe)"),
                Some("id".into()),
            ));
        }
        let c: stripe_shared::Customer = miniserde::json::from_str(&text).map_err(unreadable)?;
        Ok(customer(c))
    }

    /// `GET /v1/payment_methods/{id}`: its id and the customer it is
    /// attached to (read untyped: the tenant boundary needs nothing else,
    /// and a method type async-stripe does not know must not fail it).
    pub async fn retrieve_payment_method(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::PaymentMethod, WitError> {
        check_id(id, "pm_")?;
        let path = format!("/payment_methods/{id}");
        let v: miniserde::json::Value = self
            .send("retrieve-payment-method", account, None, || {
                RequestBuilder::new(StripeMethod::Get, path.clone()).customize()
            })
            .await?;
        let v = untyped(&v)?;
        let customer = match &v["customer"] {
            serde_json::Value::String(c) => Some(c.clone()),
            serde_json::Value::Object(c) => {
                c.get("id").and_then(|i| i.as_str()).map(str::to_string)
            }
            _ => None,
        };
        match v["id"].as_str() {
            Some(id) => Ok(wit::PaymentMethod {
                id: id.to_string(),
                customer,
            }),
            None => Err(unreadable("a payment method without an id")),
        }
    }

    /// `GET /v1/customers/search`: customers whose metadata has each pair.
    pub async fn search_customers(
        &self,
        metadata: Vec<(String, String)>,
        account: Option<&str>,
    ) -> Result<Vec<wit::Customer>, WitError> {
        let mut clauses = Vec::with_capacity(metadata.len());
        for (k, v) in &metadata {
            // Stripe's query language quotes with ' and escapes a quote
            // inside with a backslash; a backslash itself has no escape.
            let plain_key = !k.is_empty() && !k.contains(['\'', '"', '\\']);
            if !plain_key || v.contains('\\') {
                return Err(invalid(
                    format!("metadata {k:?}: {v:?} cannot be searched for"),
                    Some("query".into()),
                ));
            }
            let v = v.replace('\'', "\\'");
            clauses.push(format!("metadata['{k}']:'{v}'"));
        }
        if clauses.is_empty() {
            return Err(invalid(
                "a search needs a clause".into(),
                Some("query".into()),
            ));
        }
        let query = Form::default()
            .set("query", clauses.join(" AND "))
            .set("limit", 10);
        let found: stripe_types::SearchList<stripe_shared::Customer> = self
            .send("search-customers", account, None, || {
                RequestBuilder::new(StripeMethod::Get, "/customers/search")
                    .query(&query)
                    .customize()
            })
            .await?;
        Ok(found.data.into_iter().map(customer).collect())
    }

    /// `POST /v1/payment_methods/{id}/attach`.
    pub async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
        account: Option<&str>,
        key: &str,
    ) -> Result<(), WitError> {
        check_id(payment_method, "pm_")?;
        check_id(customer, "cus_")?;
        let path = format!("/payment_methods/{payment_method}/attach");
        let form = Form::default().set("customer", customer);
        let _: stripe_shared::PaymentMethod = self
            .write(
                "attach-payment-method",
                StripeMethod::Post,
                path,
                form,
                account,
                key,
            )
            .await?;
        Ok(())
    }

    /// `POST /v1/subscriptions`.
    pub async fn create_subscription(
        &self,
        p: wit::SubscriptionParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Subscription, WitError> {
        check_id(&p.customer, "cus_")?;
        let items: Vec<serde_json::Value> = p
            .items
            .iter()
            .map(|i| serde_json::json!({ "price": i.price, "quantity": i.quantity }))
            .collect();
        let form = Form::default()
            .set("customer", p.customer)
            .set("items", items)
            .opt("trial_period_days", p.trial_period_days)
            .opt("default_payment_method", p.default_payment_method)
            .map("metadata", p.metadata);
        let s = self
            .write(
                "create-subscription",
                StripeMethod::Post,
                "/subscriptions".into(),
                form,
                account,
                key,
            )
            .await?;
        Ok(subscription(s))
    }

    /// `POST /v1/subscriptions/{id}`.
    pub async fn update_subscription(
        &self,
        id: &str,
        u: wit::SubscriptionUpdate,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Subscription, WitError> {
        check_id(id, "sub_")?;
        let items: Vec<serde_json::Value> = u
            .items
            .iter()
            .map(|i| {
                let mut item = serde_json::json!({ "id": i.id });
                if let Some(p) = &i.price {
                    item["price"] = p.as_str().into();
                }
                if let Some(q) = i.quantity {
                    item["quantity"] = q.into();
                }
                item
            })
            .collect();
        let mut form = Form::default()
            .opt("proration_behavior", u.proration_behavior)
            .opt("cancel_at_period_end", u.cancel_at_period_end)
            .map("metadata", u.metadata);
        if !items.is_empty() {
            form = form.set("items", items);
        }
        let path = format!("/subscriptions/{id}");
        let s = self
            .write(
                "update-subscription",
                StripeMethod::Post,
                path,
                form,
                account,
                key,
            )
            .await?;
        Ok(subscription(s))
    }

    /// `DELETE /v1/subscriptions/{id}`: cancelled now.
    pub async fn cancel_subscription(
        &self,
        id: &str,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Subscription, WitError> {
        check_id(id, "sub_")?;
        let path = format!("/subscriptions/{id}");
        let s = self
            .write(
                "cancel-subscription",
                StripeMethod::Delete,
                path,
                Form::default(),
                account,
                key,
            )
            .await?;
        Ok(subscription(s))
    }

    /// `POST /v1/checkout/sessions`.
    pub async fn create_checkout_session(
        &self,
        p: wit::CheckoutParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::CheckoutSession, WitError> {
        let mut lines = Vec::with_capacity(p.lines.len());
        for l in &p.lines {
            let line = match (&l.price, &l.amount) {
                (Some(price), None) => {
                    serde_json::json!({ "price": price, "quantity": l.quantity })
                }
                (None, Some(amount)) => serde_json::json!({
                    "price_data": {
                        "currency": currency(&amount.currency)?.to_string(),
                        "unit_amount": amount.amount,
                        "product_data": { "name": l.name.clone().unwrap_or_default() },
                    },
                    "quantity": l.quantity,
                }),
                _ => {
                    return Err(invalid(
                        "a Checkout line has a price or an amount".into(),
                        Some("line_items".into()),
                    ));
                }
            };
            lines.push(line);
        }
        let created = match p.mode.as_str() {
            "payment" => "payment_intent_data",
            "subscription" => "subscription_data",
            other => {
                return Err(invalid(
                    format!("unknown Checkout mode {other:?}"),
                    Some("mode".into()),
                ));
            }
        };
        let created_metadata: serde_json::Map<_, _> = p
            .created_metadata
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        let mut form = Form::default()
            .set("mode", p.mode)
            .set("line_items", lines)
            .set("success_url", p.success_url)
            .set("cancel_url", p.cancel_url)
            .opt("customer", p.customer)
            .opt("client_reference_id", p.client_reference_id)
            .map("metadata", p.metadata);
        if !created_metadata.is_empty() {
            form = form.set(created, serde_json::json!({ "metadata": created_metadata }));
        }
        let c: stripe_shared::CheckoutSession = self
            .write(
                "create-checkout-session",
                StripeMethod::Post,
                "/checkout/sessions".into(),
                form,
                account,
                key,
            )
            .await?;
        Ok(wit::CheckoutSession {
            id: c.id.to_string(),
            mode: c.mode.as_str().to_string(),
            status: c.status.map(|s| s.as_str().to_string()),
            url: c.url,
            customer: c.customer.map(|c| c.id().to_string()),
            expires_at: c.expires_at,
            metadata: sorted(c.metadata.unwrap_or_default()),
        })
    }

    /// `POST /v1/billing_portal/sessions`.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::PortalSession, WitError> {
        check_id(customer, "cus_")?;
        let form = Form::default()
            .set("customer", customer)
            .set("return_url", return_url);
        // Read untyped: async-stripe types the session only with the portal
        // configuration's types, which psa-billing does not otherwise need.
        let v: miniserde::json::Value = self
            .write(
                "create-portal-session",
                StripeMethod::Post,
                "/billing_portal/sessions".into(),
                form,
                account,
                key,
            )
            .await?;
        let v = untyped(&v)?;
        let text = |k: &str| v[k].as_str().map(str::to_string);
        match (text("id"), text("url"), text("customer")) {
            (Some(id), Some(url), Some(customer)) => Ok(wit::PortalSession {
                id,
                url,
                customer,
                return_url: text("return_url"),
            }),
            _ => Err(unreadable(
                "a billing portal session without id, url or customer",
            )),
        }
    }

    /// `POST /v1/invoices`: a draft, leaving the customer's pending items out.
    pub async fn create_invoice(
        &self,
        p: wit::InvoiceParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Invoice, WitError> {
        check_id(&p.customer, "cus_")?;
        let form = Form::default()
            .set("customer", p.customer)
            .set("currency", currency(&p.currency)?.to_string())
            .set("collection_method", p.collection_method)
            .opt("days_until_due", p.days_until_due)
            .opt("description", p.description)
            .set("auto_advance", false)
            .set("pending_invoice_items_behavior", "exclude")
            .opt("application_fee_amount", p.application_fee_amount)
            .map("metadata", p.metadata);
        let i = self
            .write(
                "create-invoice",
                StripeMethod::Post,
                "/invoices".into(),
                form,
                account,
                key,
            )
            .await?;
        Ok(invoice(i))
    }

    /// `POST /v1/invoiceitems` on a draft invoice.
    pub async fn create_invoice_item(
        &self,
        p: wit::InvoiceItemParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<String, WitError> {
        check_id(&p.customer, "cus_")?;
        check_id(&p.invoice, "in_")?;
        for t in &p.tax_rates {
            check_id(t, "txr_")?;
        }
        let mut form = Form::default()
            .set("customer", p.customer)
            .set("invoice", p.invoice)
            .set("amount", p.amount.amount)
            .set("currency", currency(&p.amount.currency)?.to_string())
            .set("description", p.description);
        if !p.tax_rates.is_empty() {
            form = form.set("tax_rates", p.tax_rates);
        }
        let item: miniserde::json::Value = self
            .write(
                "create-invoice-item",
                StripeMethod::Post,
                "/invoiceitems".into(),
                form,
                account,
                key,
            )
            .await?;
        untyped(&item)?["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| unreadable("an invoice item without an id"))
    }

    /// `POST /v1/invoices/{id}/{finalize|send|void|mark_uncollectible}`.
    pub async fn advance_invoice(
        &self,
        id: &str,
        step: wit::InvoiceStep,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Invoice, WitError> {
        check_id(id, "in_")?;
        let verb = match step {
            wit::InvoiceStep::Finalize => "finalize",
            wit::InvoiceStep::Send => "send",
            wit::InvoiceStep::Void => "void",
            wit::InvoiceStep::MarkUncollectible => "mark_uncollectible",
        };
        let mut form = Form::default();
        if let wit::InvoiceStep::Finalize = step {
            // Finalized on request, not advanced by Stripe's automation.
            form = form.set("auto_advance", false);
        }
        let path = format!("/invoices/{id}/{verb}");
        let i = self
            .write(
                "advance-invoice",
                StripeMethod::Post,
                path,
                form,
                account,
                key,
            )
            .await?;
        Ok(invoice(i))
    }
}

fn customer_form(p: wit::CustomerParams) -> Form {
    let mut form = Form::default()
        .opt("email", p.email)
        .opt("name", p.name)
        .map("metadata", p.metadata);
    if let Some(pm) = p.default_payment_method {
        form = form.set(
            "invoice_settings",
            serde_json::json!({ "default_payment_method": pm }),
        );
    }
    form
}

/// A 2xx answer of Stripe's that is not what was asked for.
fn unreadable(why: impl std::fmt::Display) -> WitError {
    WitError::Api(wit::ApiFailure {
        status: 200,
        message: format!("Stripe's answer could not be read: {why}"),
    })
}

/// An answer read without async-stripe's types, as serde_json's value.
fn untyped(v: &miniserde::json::Value) -> Result<serde_json::Value, WitError> {
    serde_json::from_str(&miniserde::json::to_string(v)).map_err(unreadable)
}

fn invalid(message: String, param: Option<String>) -> WitError {
    WitError::InvalidRequest(wit::InvalidRequest { message, param })
}

/// Ids go into URL paths: only Stripe's id alphabet is let through.
fn check_id(id: &str, prefix: &str) -> Result<(), WitError> {
    let ok = id.starts_with(prefix)
        && id.len() <= 255
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("{id:?} is not a {prefix}... id"),
            Some("id".into()),
        ))
    }
}

fn currency(code: &str) -> Result<stripe_types::Currency, WitError> {
    let c: stripe_types::Currency = code.to_ascii_lowercase().parse().expect("infallible");
    if let stripe_types::Currency::Unknown(_) = c {
        return Err(invalid(
            format!("unknown currency {code:?}"),
            Some("currency".into()),
        ));
    }
    Ok(c)
}

fn balance_transaction(t: stripe_shared::BalanceTransaction) -> wit::BalanceTransaction {
    wit::BalanceTransaction {
        id: t.id.to_string(),
        amount: money(t.amount, &t.currency),
        fee: t.fee,
        net: t.net,
        fee_details: t
            .fee_details
            .into_iter()
            .map(|f| wit::FeeDetail {
                kind: f.type_,
                amount: f.amount,
            })
            .collect(),
        available_on: t.available_on,
        created: t.created,
        kind: t.type_.as_str().to_string(),
        source: t.source.map(|s| s.id().to_string()),
        status: t.status,
    }
}

fn money(amount: i64, currency: &stripe_types::Currency) -> Money {
    Money {
        amount,
        currency: currency.to_string(),
    }
}

fn metadata(pairs: Vec<(String, String)>) -> HashMap<String, String> {
    pairs.into_iter().collect()
}

fn sorted(m: HashMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}

fn payment_intent(pi: stripe_shared::PaymentIntent) -> wit::PaymentIntent {
    wit::PaymentIntent {
        id: pi.id.to_string(),
        amount: money(pi.amount, &pi.currency),
        status: pi.status.as_str().to_string(),
        application_fee_amount: pi.application_fee_amount,
        transfer_destination: pi.transfer_data.map(|t| t.destination.id().to_string()),
        latest_charge: pi.latest_charge.map(|c| c.id().to_string()),
        customer: pi.customer.map(|c| c.id().to_string()),
        client_secret: pi.client_secret,
        metadata: sorted(pi.metadata),
    }
}

fn subscription(s: stripe_shared::Subscription) -> wit::Subscription {
    let items = &s.items.data;
    wit::Subscription {
        id: s.id.to_string(),
        status: s.status.as_str().to_string(),
        customer: s.customer.id().to_string(),
        metadata: sorted(s.metadata),
        cancel_at_period_end: s.cancel_at_period_end,
        current_period_start: items.iter().map(|i| i.current_period_start).min(),
        current_period_end: items.iter().map(|i| i.current_period_end).max(),
        trial_end: s.trial_end,
        canceled_at: s.canceled_at,
        items: s
            .items
            .data
            .into_iter()
            .map(|i| wit::SubscriptionItem {
                id: i.id.to_string(),
                price: i.price.id.to_string(),
                quantity: i.quantity,
            })
            .collect(),
    }
}

fn invoice(i: stripe_shared::Invoice) -> wit::Invoice {
    wit::Invoice {
        id: i.id.map(|i| i.to_string()).unwrap_or_default(),
        status: i.status.map(|s| s.as_str().to_string()),
        amount_due: money(i.amount_due, &i.currency),
        amount_paid: i.amount_paid,
        amount_remaining: i.amount_remaining,
        customer: i.customer.map(|c| c.id().to_string()),
        subtotal: i.subtotal,
        tax: i.total_taxes.iter().flatten().map(|t| t.amount).sum(),
        total: i.total,
        collection_method: i.collection_method.as_str().to_string(),
        number: i.number,
        hosted_invoice_url: i.hosted_invoice_url,
        invoice_pdf: i.invoice_pdf,
        metadata: sorted(i.metadata.unwrap_or_default()),
    }
}

fn customer(c: stripe_shared::Customer) -> wit::Customer {
    wit::Customer {
        id: c.id.to_string(),
        email: c.email,
        name: c.name,
        default_payment_method: c
            .invoice_settings
            .and_then(|s| s.default_payment_method)
            .map(|p| p.id().to_string()),
        metadata: sorted(c.metadata.unwrap_or_default()),
    }
}

/// A form body of the fields given (none is left out, never sent empty).
#[derive(Default, serde::Serialize)]
#[serde(transparent)]
struct Form(serde_json::Map<String, serde_json::Value>);

impl Form {
    fn set(mut self, key: &str, value: impl Into<serde_json::Value>) -> Form {
        self.0.insert(key.to_string(), value.into());
        self
    }

    fn opt(self, key: &str, value: Option<impl Into<serde_json::Value>>) -> Form {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    /// `key[k]=v` for each pair; nothing when there are none.
    fn map(self, key: &str, pairs: Vec<(String, String)>) -> Form {
        if pairs.is_empty() {
            return self;
        }
        let m: serde_json::Map<_, _> = pairs.into_iter().map(|(k, v)| (k, v.into())).collect();
        self.set(key, m)
    }
}

fn account(a: stripe_shared::Account) -> wit::Account {
    wit::Account {
        id: a.id.to_string(),
        charges_enabled: a.charges_enabled.unwrap_or(false),
        payouts_enabled: a.payouts_enabled.unwrap_or(false),
        details_submitted: a.details_submitted.unwrap_or(false),
        country: a.country,
        email: a.email,
        requirements_due: a
            .requirements
            .as_ref()
            .and_then(|r| r.currently_due.clone())
            .unwrap_or_default(),
        disabled_reason: a
            .requirements
            .and_then(|r| r.disabled_reason)
            .map(|d| d.as_str().to_string()),
    }
}

/// The longest `Retry-After` waited out; beyond it, the back-off.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Sorts a failed attempt into retry (with Stripe's wait, if it gave one)
/// or typed error.
fn classify(f: transport::Failure) -> Attempt {
    match f {
        transport::Failure::Status {
            status,
            should_retry,
            retry_after,
            body,
        } => {
            let stripes = serde_json::from_str::<serde_json::Value>(&body)
                .is_ok_and(|v| v["error"].is_object());
            let guess = if stripes {
                stripe_error_body(status, &body)
            } else if status == 429 || status >= 500 {
                // Not Stripe's answer (a proxy's or gateway's page): retried
                // like any 5xx, its status kept.
                Attempt::Retry(WitError::Unreachable(format!(
                    "HTTP {status} with an answer that is not Stripe's (a proxy or gateway in between?)"
                )))
            } else {
                Attempt::Fail(WitError::Api(wit::ApiFailure {
                    status,
                    message: format!("HTTP {status} with an answer that is not Stripe's"),
                }))
            };
            match (should_retry_says(should_retry, guess), retry_after) {
                (Attempt::Retry(e), Some(after)) => Attempt::RetryAfter(e, after),
                // Stripe said the same request will not succeed: a failure
                // of Stripe's (502), not "unavailable, try again" (503).
                (Attempt::Fail(WitError::Unreachable(m) | WitError::RateLimited(m)), _) => {
                    Attempt::Fail(WitError::Api(wit::ApiFailure {
                        status,
                        message: format!("{m} (Stripe-Should-Retry: false)"),
                    }))
                }
                (decided, _) => decided,
            }
        }
        transport::Failure::Network(m) => Attempt::Retry(WitError::Unreachable(m)),
        transport::Failure::Unreadable(m) => Attempt::Fail(unreadable(m)),
    }
}

/// Stripe's own word on retrying, where its answer carries one
/// (`Stripe-Should-Retry`), over the status-based guess.
fn should_retry_says(header: Option<bool>, guess: Attempt) -> Attempt {
    match (header, guess) {
        (Some(false), Attempt::Retry(e)) => Attempt::Fail(e),
        (Some(true), Attempt::Fail(e @ (WitError::Api(_) | WitError::Unreachable(_)))) => {
            Attempt::Retry(e)
        }
        (_, guess) => guess,
    }
}

/// A wait of between half of `backoff` and all of it, at random: clients
/// that failed together do not all come back at the same instant.
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + Duration::from_micros(fastrand::u64(0..=half.as_micros() as u64))
}

/// Stripe's error body (`{"error": {...}}`, v1 and v2 alike) mapped by its
/// status and type.
fn stripe_error_body(status: u16, body: &str) -> Attempt {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let e = &v["error"];
    let s = |k: &str| e[k].as_str().map(str::to_string);
    api_error(
        status,
        &s("type").unwrap_or_default(),
        s("code"),
        s("decline_code"),
        s("message").unwrap_or_else(|| format!("HTTP {status}")),
        s("param"),
    )
}

fn api_error(
    status: u16,
    kind: &str,
    code: Option<String>,
    decline_code: Option<String>,
    message: String,
    param: Option<String>,
) -> Attempt {
    match status {
        429 => Attempt::Retry(WitError::RateLimited(message)),
        500.. => Attempt::Retry(WitError::Unreachable(format!("HTTP {status}: {message}"))),
        401 | 403 => Attempt::Fail(WitError::Authentication(message)),
        _ if kind == "card_error" => Attempt::Fail(WitError::CardDeclined(wit::CardDecline {
            code: code.unwrap_or_else(|| "card_declined".into()),
            decline_code,
            message,
        })),
        400 | 404 => Attempt::Fail(invalid(message, param)),
        _ => Attempt::Fail(WitError::Api(wit::ApiFailure {
            status,
            message: format!("{kind}: {message}"),
        })),
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
