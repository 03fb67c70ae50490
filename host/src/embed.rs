//! The embedding API: everything `psa-billing serve` does, as a value a
//! Rust application builds once and uses from its own code and router.
//! It assembles the parts (database, runtime, Stripe client, pipeline,
//! router); it knows nothing about the command line.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let billing = psa_billing::Billing::builder()
//!     .database("sqlite://billing.db")
//!     .webhook_secrets(["whsec_..."])
//!     .api_token("app-token")
//!     .build()
//!     .await?;
//! let app = axum::Router::new().nest("/billing", billing.router());
//! let mut effects = billing.subscribe(0); // effects after seq 0, as they commit
//! # Ok(()) }
//! ```

use crate::api::ApiFailure;
use crate::api::quotes::{self, QuoteInput};
use crate::http::{self, ServerOptions};
use crate::pipeline::{DeliveryError, Outcome, Pipeline, RetryPolicy};
use crate::relay::NatsRelay;
use crate::runtime::{DEFAULT_PLUGIN, Limits, Runtime};
use crate::storage::{Db, StoredEffect};
use crate::stripe::{StripeApi, StripeConfig};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;

/// What an operation answers: its result as `/v1/operations` returns it.
pub type OperationResult = Result<serde_json::Value, ApiFailure>;

/// Where a component comes from.
pub(crate) enum Source {
    /// The billing plugin built into the binary.
    BuiltIn,
    /// The bytes of a component.
    Bytes(Vec<u8>),
    /// A component file.
    File(PathBuf),
}

impl Source {
    fn load(&self, what: &str) -> Result<std::borrow::Cow<'static, [u8]>> {
        Ok(match self {
            Source::BuiltIn => std::borrow::Cow::Borrowed(DEFAULT_PLUGIN),
            Source::Bytes(b) => std::borrow::Cow::Owned(b.clone()),
            Source::File(p) => std::borrow::Cow::Owned(
                std::fs::read(p).with_context(|| format!("reading {what} {}", p.display()))?,
            ),
        })
    }
}

/// Reads and compiles the billing plugin and the custom fee-rules
/// component, if any: the one place the builder and the CLI's commands load
/// them. An error names the files.
pub(crate) fn load_runtime(
    plugin: &Source,
    fee_rules: Option<&Source>,
    limits: Limits,
    cache: Option<&std::path::Path>,
) -> Result<Runtime> {
    let wasm = plugin.load("plugin")?;
    let rules = fee_rules.map(|s| s.load("fee rules")).transpose()?;
    Runtime::build(&wasm, rules.as_deref(), limits, cache).with_context(|| {
        let files: Vec<String> = [Some(plugin), fee_rules]
            .into_iter()
            .flatten()
            .filter_map(|s| match s {
                Source::File(p) => Some(p.display().to_string()),
                _ => None,
            })
            .collect();
        match (files.is_empty(), plugin) {
            (false, _) => format!("loading {}", files.join(" and ")),
            (true, Source::BuiltIn) => "loading the built-in plugin".to_string(),
            (true, _) => "loading the plugin".to_string(),
        }
    })
}

/// Configures a [`Billing`]; every setting has the default `serve` has.
pub struct BillingBuilder {
    plugin: Source,
    fee_rules: Option<Source>,
    database_url: String,
    offline: bool,
    secrets: Vec<String>,
    tolerance_seconds: u32,
    rules: Option<PathBuf>,
    options: ServerOptions,
    tenant_keys: Vec<String>,
    reference_keys: Vec<String>,
    license_prices: Vec<String>,
    api_version: Option<(String, bool)>,
    livemode: Option<bool>,
    limits: Limits,
    stripe: Option<StripeConfig>,
    thin_secrets: Vec<String>,
    compile_cache: Option<PathBuf>,
    retry_policy: RetryPolicy,
    relay: Option<NatsRelay>,
}

impl BillingBuilder {
    /// The billing plugin component, instead of the built-in one.
    pub fn component_bytes(mut self, wasm: Vec<u8>) -> Self {
        self.plugin = Source::Bytes(wasm);
        self
    }
    /// The billing plugin component from a file.
    pub fn component_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.plugin = Source::File(path.into());
        self
    }
    /// A custom fee-rules component (world `fee-rules-plugin`) from a file.
    pub fn fee_rules_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.fee_rules = Some(Source::File(path.into()));
        self
    }
    /// A custom fee-rules component's bytes.
    pub fn fee_rules_bytes(mut self, wasm: Vec<u8>) -> Self {
        self.fee_rules = Some(Source::Bytes(wasm));
        self
    }
    /// `sqlite://PATH` (default `sqlite://psa-billing.db`) or `postgres://...`.
    pub fn database(mut self, url: impl Into<String>) -> Self {
        self.database_url = url.into();
        self
    }
    /// The endpoint secrets (`whsec_...`); several during a rotation.
    pub fn webhook_secrets<S: Into<String>>(
        mut self,
        secrets: impl IntoIterator<Item = S>,
    ) -> Self {
        self.secrets = secrets.into_iter().map(Into::into).collect();
        self
    }
    /// Accepted signature age, both ways (default 300 s).
    pub fn tolerance_seconds(mut self, seconds: u32) -> Self {
        self.tolerance_seconds = seconds;
        self
    }
    /// A fee rules file (TOML), checked at build time.
    pub fn rules_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.rules = Some(path.into());
        self
    }
    /// Bearer token of the `/v1` routes of [`Billing::router`]; without one they are closed.
    pub fn api_token(mut self, token: impl Into<String>) -> Self {
        self.options.api_token = Some(token.into());
        self
    }
    /// Serve the operator console at `/console` from [`Billing::router`]
    /// (signed in with the API token; closed without one).
    pub fn console(mut self, on: bool) -> Self {
        self.options.console = on;
        self
    }
    /// Effects streams open at once (default 256) and how long each stays
    /// open (default 15 minutes; clients reconnect with `Last-Event-ID`).
    pub fn effects_streams(mut self, max: usize, lifetime: std::time::Duration) -> Self {
        self.options.max_streams = max;
        self.options.stream_lifetime = lifetime;
        self
    }
    /// Largest webhook body accepted (default 1 MiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.options.max_body_bytes = bytes;
        self
    }
    /// Metadata keys naming the tenant, first present wins (default `tenant_id`).
    pub fn tenant_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.tenant_keys = keys.into_iter().map(Into::into).collect();
        self
    }
    /// The prices (`price_...`) whose subscription items are licenses: the
    /// license count adds up those items alone (default: every item).
    pub fn license_prices<S: Into<String>>(mut self, prices: impl IntoIterator<Item = S>) -> Self {
        self.license_prices = prices.into_iter().map(Into::into).collect();
        self
    }
    /// Metadata keys naming the application's record (default `reference`, `invoice_id`).
    pub fn reference_keys<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.reference_keys = keys.into_iter().map(Into::into).collect();
        self
    }
    /// The Stripe API version events should carry; `strict` refuses others.
    pub fn api_version(mut self, version: impl Into<String>, strict: bool) -> Self {
        self.api_version = Some((version.into(), strict));
        self
    }
    /// Takes only live (`Some(true)`) or only test (`Some(false)`) events;
    /// see [`Pipeline::with_livemode`].
    pub fn livemode(mut self, livemode: Option<bool>) -> Self {
        self.livemode = livemode;
        self
    }
    /// Deadline and memory cap of every plugin call.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The Stripe API for operations and thin events (key, base URL,
    /// allow-list, retries); without it they are refused.
    pub fn stripe(mut self, config: StripeConfig) -> Self {
        self.stripe = Some(config);
        self
    }

    /// Secrets of the thin-event destination (`/webhooks/stripe/thin`).
    pub fn thin_webhook_secrets<S: Into<String>>(
        mut self,
        secrets: impl IntoIterator<Item = S>,
    ) -> Self {
        self.thin_secrets = secrets.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps the components' compiled native code in `dir` (a directory
    /// only the service may write: loading compiled code trusts it), so that
    /// the next start skips compilation.
    pub fn compile_cache(mut self, dir: impl Into<PathBuf>) -> Self {
        self.compile_cache = Some(dir.into());
        self
    }

    /// How failed events are tried again by the host (see [`Billing::spawn_retries`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// Publishes every committed effect to NATS JetStream (see
    /// [`crate::relay`]): [`Billing::serve`] runs the relay, an application
    /// serving [`Billing::router`] itself starts it with
    /// [`Billing::spawn_relay`].
    pub fn publish_to_nats(mut self, relay: NatsRelay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// A `Billing` that takes no webhook deliveries, so needs no webhook
    /// secret: for tools and jobs that run the other calls (operations,
    /// quotes, the ledger, the tenant registry, reconciliation, dead-letter
    /// replays), as the command line does. A signed delivery is refused
    /// (no secret verifies it).
    pub fn offline(mut self) -> Self {
        self.offline = true;
        self
    }

    /// Compiles the components, opens (and migrates) the database, checks the rules.
    pub async fn build(self) -> Result<Billing> {
        if let Some(relay) = &self.relay {
            relay.validate()?;
        }
        anyhow::ensure!(
            self.offline || !self.secrets.is_empty(),
            "no webhook secret: call webhook_secrets with the endpoint's whsec_... secret"
        );
        let stripe = self.stripe.map(StripeApi::new).transpose()?;
        let runtime = load_runtime(
            &self.plugin,
            self.fee_rules.as_ref(),
            self.limits,
            self.compile_cache.as_deref(),
        )?
        .with_stripe(stripe);
        let mut options = self.options;
        if let Some(path) = &self.rules {
            options.rules = Some(quotes::load_rules(&runtime, path).await?);
        }
        let db = Db::open(&self.database_url).await?;
        let mut pipeline = Pipeline::new(runtime, db, self.secrets, self.tolerance_seconds)
            .with_routing(self.tenant_keys, self.reference_keys)
            .with_license_prices(self.license_prices)
            .with_thin_secrets(self.thin_secrets)
            .with_livemode(self.livemode)
            .with_retry_policy(self.retry_policy);
        if let Some((version, strict)) = self.api_version {
            pipeline = pipeline.with_api_version(version, strict);
        }
        Ok(Billing {
            pipeline,
            options,
            relay: self.relay,
        })
    }
}

/// psa-billing inside an application: deliveries, quotes, the tenant
/// registry, the effects outbox, and the HTTP routes of `serve`.
#[derive(Clone)]
pub struct Billing {
    pipeline: Pipeline,
    options: ServerOptions,
    relay: Option<NatsRelay>,
}

impl Billing {
    /// A builder with `serve`'s defaults; see [`BillingBuilder`].
    pub fn builder() -> BillingBuilder {
        BillingBuilder {
            plugin: Source::BuiltIn,
            fee_rules: None,
            database_url: "sqlite://psa-billing.db".into(),
            offline: false,
            secrets: Vec::new(),
            tolerance_seconds: psa_billing_core::signature::DEFAULT_TOLERANCE_SECONDS,
            rules: None,
            options: ServerOptions::default(),
            license_prices: Vec::new(),
            tenant_keys: Vec::new(),
            reference_keys: Vec::new(),
            api_version: None,
            livemode: None,
            limits: Limits::default(),
            stripe: None,
            thin_secrets: Vec::new(),
            compile_cache: None,
            retry_policy: RetryPolicy::default(),
            relay: None,
        }
    }

    /// Handles one webhook delivery: the raw body and its `Stripe-Signature`.
    pub async fn handle_delivery(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Outcome, DeliveryError> {
        self.pipeline.receive(body, signature).await
    }

    /// Handles one thin (v2) notification: verified, fetched, mapped.
    pub async fn handle_thin_delivery(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Outcome, DeliveryError> {
        self.pipeline.receive_thin(body, signature).await
    }

    /// Any operation by its name, with the JSON input `POST
    /// /v1/operations/{name}` takes (every name in
    /// [`crate::api::dispatch::NAMES`]: customers, subscriptions,
    /// Checkout and portal sessions, invoices, and the ones above). An
    /// unknown name or an input that does not fit is `ApiFailure::Invalid`.
    pub async fn operation(&self, name: &str, input: serde_json::Value) -> OperationResult {
        let (rt, db) = (self.pipeline.runtime(), self.pipeline.db());
        match crate::api::dispatch::dispatch(rt, db, self.options.rules.as_deref(), name, input)
            .await
        {
            Ok(result) => result,
            Err(crate::api::dispatch::Dispatch::Unknown(why)) => Err(ApiFailure::Invalid(why)),
            Err(crate::api::dispatch::Dispatch::BadInput(why)) => {
                Err(ApiFailure::Invalid(format!("{name}: {why}")))
            }
        }
    }

    /// A fee breakdown, like `POST /v1/quote`.
    pub async fn quote(&self, input: QuoteInput) -> Result<quotes::QuotedFees, ApiFailure> {
        quotes::quote(
            self.pipeline.runtime(),
            self.options.rules.as_deref(),
            input,
        )
        .await
    }

    /// One quote flow (`escrow`, `wallet`, `invoice`, `seats`, `refund`)
    /// on its JSON input, like `POST /v1/quote/{flow}`.
    pub async fn quote_flow(
        &self,
        flow: &str,
        input: serde_json::Value,
    ) -> Result<serde_json::Value, ApiFailure> {
        quotes::flow(
            self.pipeline.runtime(),
            self.options.rules.as_deref(),
            flow,
            input,
        )
        .await
    }

    /// Registers a connected account (`acct_...`) to a tenant.
    pub async fn register_tenant(&self, account: &str, tenant: &str) -> Result<(), ApiFailure> {
        crate::api::tenants::register(self.pipeline.runtime(), self.pipeline.db(), account, tenant)
            .await
    }

    /// A tenant's ledger balances, as `GET /v1/ledger/{tenant}/balances` answers.
    pub async fn balances(&self, tenant: &str) -> Result<crate::api::ledger::Balances, ApiFailure> {
        crate::api::ledger::balances(self.pipeline.runtime(), self.pipeline.db(), tenant).await
    }

    /// Up to `limit` effects with a sequence number above `after`, in order.
    pub async fn effects_after(&self, after: i64, limit: i64) -> Result<Vec<StoredEffect>> {
        self.pipeline.db().effects_after(after, limit).await
    }

    /// Every effect after `after`, as it commits (woken by this process's
    /// commits, and reading the outbox every 2 s for other processes';
    /// sequence numbers are gapless, so none is skipped). It stops when the
    /// receiver is dropped.
    pub fn subscribe(&self, after: i64) -> tokio::sync::mpsc::Receiver<StoredEffect> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let db = self.pipeline.db().clone();
        tokio::spawn(async move {
            let mut cursor = after;
            loop {
                let added = db.effects_added();
                tokio::pin!(added);
                added.as_mut().enable();
                match db.effects_after(cursor, 256).await {
                    Ok(page) if !page.is_empty() => {
                        for effect in page {
                            cursor = effect.seq;
                            if tx.send(effect).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "reading the outbox"),
                }
                tokio::select! {
                    _ = added => {}
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }

    /// The routes of `serve` (webhooks, `/v1/...`, `/healthz`), to mount or nest.
    pub fn router(&self) -> axum::Router {
        http::router(self.pipeline.clone(), self.options.clone())
    }

    /// [`Billing::router`] with the application's own routes served behind
    /// the same API token (see [`http::router_with`]).
    pub fn router_with(&self, extra: axum::Router) -> axum::Router {
        http::router_with(self.pipeline.clone(), self.options.clone(), extra)
    }

    /// Tries failed events again in the background, each when its retry
    /// policy says (Stripe's own redeliveries come besides), and queues and
    /// runs the follow-up jobs (settling succeeded payments, when a Stripe
    /// key is configured), until the handle is aborted. [`Billing::serve`]
    /// runs it; an application that mounts [`Billing::router`] in its own
    /// server starts it itself.
    pub fn spawn_retries(&self) -> tokio::task::JoinHandle<()> {
        let pipeline = self.pipeline.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = pipeline.queue_jobs().await {
                    tracing::warn!(error = %format!("{e:#}"), "queueing follow-up jobs");
                }
                if let Err(e) = pipeline.retry_due().await {
                    tracing::warn!(error = %format!("{e:#}"), "retrying failed events");
                }
            }
        })
    }

    /// Runs the NATS relay configured with
    /// [`BillingBuilder::publish_to_nats`] until the handle is aborted
    /// (`None`: none is configured).
    pub fn spawn_relay(&self) -> Option<tokio::task::JoinHandle<()>> {
        let relay = self.relay.clone()?;
        Some(tokio::spawn(relay.run(self.pipeline.db().clone())))
    }

    /// Serves [`Billing::router`] on `listener` with the HTTP `limits` of
    /// `psa-billing serve` (connections, header and idle timeouts, body
    /// size) and the background retries, until `shutdown` completes; then
    /// lets requests in flight finish and closes the database.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        limits: http::HttpLimits,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        let retries = self.spawn_retries();
        let relay = self.spawn_relay();
        let pipeline = self.pipeline.clone();
        let shutdown = async move {
            shutdown.await;
            // Effects streams end now, so that shutdown does not wait on them.
            pipeline.close_streams();
        };
        let served = http::serve(listener, self.router(), limits, shutdown).await;
        retries.abort();
        if let Some(relay) = relay {
            relay.abort();
        }
        self.pipeline.db().close().await;
        Ok(served?)
    }

    /// The pipeline, for what this API does not cover yet.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}

/// One typed method per operation of the table (`crate::api::table`),
/// each the same path as `POST /v1/operations/{name}`: the tenant boundary,
/// the request id bound, then the operation.
macro_rules! typed_operations {
    ($($method:ident $name:literal in $module:ident: $input:ident => $output:ident,
        $summary:literal, owns $owns:tt;)*) => {
        impl Billing {
            $(
                #[doc = $summary]
                #[doc = ""]
                #[doc = concat!("`POST /v1/operations/", $name, "`.")]
                pub async fn $method(
                    &self,
                    input: crate::api::$module::$input,
                ) -> Result<crate::runtime::$output, ApiFailure> {
                    crate::api::dispatch::call::$method(
                        self.pipeline.runtime(),
                        self.pipeline.db(),
                        self.options.rules.as_deref(),
                        input,
                    )
                    .await
                }
            )*
        }
    };
}

crate::api::table::operations_table!(typed_operations);
