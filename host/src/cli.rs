//! The `psa-billing` command line.

use crate::db::Db;
use crate::db::RetryPolicy;
use crate::pipeline::{DeliveryError, Outcome, Pipeline, describe_rejection, rejection_code};
use crate::quoting::{self, QuoteInput};
use crate::runtime::{Limits, Runtime};
use crate::server::{self, ServerOptions};
use crate::stripe_api::{StripeApi, StripeConfig};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "psa-billing",
    version,
    about = "Stripe billing for PSA and marketplace applications: a sandboxed WebAssembly billing plugin and its host."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Stripe webhook endpoint and the effects API.
    Serve(ServeArgs),
    /// Print the fee breakdown of a payment as JSON.
    Quote(QuoteArgs),
    /// Run unsigned fixture events through the real component against a
    /// fresh temporary store and print the effects as JSON lines.
    Replay(ReplayArgs),
    /// Print a valid Stripe-Signature header for the event on standard input.
    Sign(SignArgs),
    /// Read or post a tenant's double-entry ledger.
    Ledger(LedgerArgs),
    /// Register which tenant each connected account (acct_...) belongs to;
    /// Connect events are routed by it.
    Tenants(TenantsArgs),
    /// Check a component: its world, imports, size, and its answers to a
    /// fixed set of quotes. Exits 1 when it cannot be used.
    CheckPlugin {
        /// The component file (.wasm).
        file: PathBuf,
        /// Run the sample quotes as this tenant (for rules priced per tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write the built-in billing plugin component to a file (for other
    /// hosts, e.g. Node.js through jco).
    Component {
        /// Where to write it.
        out: PathBuf,
    },
}

#[derive(Args)]
struct TenantsArgs {
    #[command(subcommand)]
    action: TenantsAction,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum TenantsAction {
    /// Register (or move) a connected account to a tenant.
    Register { account: String, tenant: String },
    /// Forget a connected account.
    Unregister { account: String },
    /// Print the tenant of a connected account.
    Lookup { account: String },
    /// Print every registered account and its tenant.
    List,
}

/// How events find the application's tenant and records, and which Stripe
/// API version they should carry.
#[derive(Args)]
struct RoutingArgs {
    /// Metadata keys naming the tenant, first present wins (default tenant_id).
    #[arg(
        long = "tenant-key",
        env = "PSA_BILLING_TENANT_KEYS",
        value_delimiter = ','
    )]
    tenant_keys: Vec<String>,
    /// Metadata keys naming the application's record (default reference, invoice_id).
    #[arg(
        long = "reference-key",
        env = "PSA_BILLING_REFERENCE_KEYS",
        value_delimiter = ','
    )]
    reference_keys: Vec<String>,
    /// The Stripe API version of the webhook endpoint; a mismatch is logged.
    #[arg(long, env = "PSA_BILLING_STRIPE_API_VERSION")]
    api_version: Option<String>,
    /// Refuse (500, recorded as failed, retried by Stripe) events of another API version.
    #[arg(long, env = "PSA_BILLING_STRICT_API_VERSION", requires = "api_version")]
    strict_api_version: bool,
    /// Take only `live` or only `test` mode events (others: 400, not kept);
    /// `any` takes both.
    #[arg(long, env = "PSA_BILLING_LIVEMODE", value_enum, default_value_t = Mode::Any)]
    livemode: Mode,
}

/// Which mode's events a deployment takes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Mode {
    Live,
    Test,
    Any,
}

impl RoutingArgs {
    fn apply(&self, pipeline: Pipeline) -> Pipeline {
        let livemode = match self.livemode {
            Mode::Live => Some(true),
            Mode::Test => Some(false),
            Mode::Any => None,
        };
        let pipeline = pipeline
            .with_routing(self.tenant_keys.clone(), self.reference_keys.clone())
            .with_livemode(livemode);
        match &self.api_version {
            Some(v) => pipeline.with_api_version(v.clone(), self.strict_api_version),
            None => pipeline,
        }
    }
}

#[derive(Args)]
struct LedgerArgs {
    #[command(subcommand)]
    action: LedgerAction,
    #[command(flatten)]
    store: StoreArgs,
}

/// Where a command that reads or writes the plugin's state finds it.
#[derive(Args)]
struct StoreArgs {
    /// Database URL.
    #[arg(
        long,
        global = true,
        env = "PSA_BILLING_DATABASE_URL",
        default_value = "sqlite://psa-billing.db"
    )]
    database_url: String,
    #[command(flatten)]
    plugin: PluginArgs,
}

impl StoreArgs {
    async fn open(&self) -> Result<(Runtime, Db)> {
        Ok((self.plugin.runtime()?, Db::open(&self.database_url).await?))
    }
}

#[derive(Subcommand)]
enum LedgerAction {
    /// Print the tenant's balances per currency and account.
    Balances {
        /// Tenant (metadata.tenant_id), connected account, or _platform.
        tenant: String,
    },
    /// Print the tenant's transactions, oldest first.
    Transactions {
        tenant: String,
        /// Only those after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Post a transaction. Input: {"id": "offer-7:hold", "currency": "usd", "movements": [{"from": "customer", "to": "escrow", "amount": "105.00"}]}
    Post {
        tenant: String,
        /// JSON input file, or - for standard input.
        input: PathBuf,
    },
}

#[derive(Args)]
struct PluginArgs {
    /// The plugin component to load instead of the built-in one.
    #[arg(long, env = "PSA_BILLING_PLUGIN")]
    plugin: Option<PathBuf>,
    /// Budget of the plugin's own work in one call, in milliseconds (time
    /// spent waiting on the database or Stripe is not counted).
    #[arg(long, env = "PSA_BILLING_CALL_TIMEOUT_MS", default_value_t = 50)]
    call_timeout_ms: u64,
    /// Memory one plugin instance may use, in MiB.
    #[arg(long, env = "PSA_BILLING_MEMORY_MIB", default_value_t = 64)]
    memory_mib: usize,
    /// Calls one plugin instance serves before a new one replaces it; 1
    /// gives every call a fresh instance (nothing carries over between
    /// calls, at about 10 µs more a call).
    #[arg(long, env = "PSA_BILLING_CALLS_PER_INSTANCE", default_value_t = Limits::default().calls_per_instance,
          value_parser = clap::value_parser!(u32).range(1..))]
    calls_per_instance: u32,
    /// Calls one instance of the custom fee-rules component serves; 1 (the
    /// default) gives every call a fresh instance, so nothing of one
    /// tenant's call reaches another's. Raise it only for a component you trust.
    #[arg(long, env = "PSA_BILLING_FEE_RULES_CALLS_PER_INSTANCE", default_value_t = Limits::default().fee_rules_calls_per_instance,
          value_parser = clap::value_parser!(u32).range(1..))]
    fee_rules_calls_per_instance: u32,
    /// A custom fee-rules component (world psa:billing/fee-rules-plugin)
    /// that prices payments in place of the rules file.
    #[arg(long, env = "PSA_BILLING_FEE_RULES")]
    fee_rules: Option<PathBuf>,
    /// Keep compiled components in this directory (writable by the service
    /// alone: compiled code is trusted) so the next start skips compiling.
    #[arg(long, env = "PSA_BILLING_COMPONENT_CACHE")]
    component_cache: Option<PathBuf>,
}

impl PluginArgs {
    fn runtime(&self) -> Result<Runtime> {
        let limits = Limits {
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            memory_bytes: self.memory_mib << 20,
            calls_per_instance: self.calls_per_instance,
            fee_rules_calls_per_instance: self.fee_rules_calls_per_instance,
            ..Limits::default()
        };
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
        };
        let plugin = match &self.plugin {
            Some(path) => std::borrow::Cow::Owned(read(path, "plugin")?),
            None => std::borrow::Cow::Borrowed(crate::DEFAULT_PLUGIN),
        };
        let fee_rules = match &self.fee_rules {
            Some(path) => Some(read(path, "fee rules")?),
            None => None,
        };
        let what = [&self.plugin, &self.fee_rules]
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" and ");
        Runtime::build(
            &plugin,
            fee_rules.as_deref(),
            limits,
            self.component_cache.as_deref(),
        )
        .with_context(|| {
            if what.is_empty() {
                "loading the built-in plugin".to_string()
            } else {
                format!("loading {what}")
            }
        })
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PSA_BILLING_LISTEN", default_value = "127.0.0.1:8787")]
    listen: String,
    /// Database URL.
    #[arg(
        long,
        env = "PSA_BILLING_DATABASE_URL",
        default_value = "sqlite://psa-billing.db"
    )]
    database_url: String,
    /// Webhook endpoint secrets (whsec_...), comma-separated during rotation.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Attempts at a failed event (Stripe's redeliveries and the host's own
    /// retries together) before it goes to the dead-letter list.
    #[arg(long, env = "PSA_BILLING_MAX_ATTEMPTS", default_value_t = 8)]
    max_attempts: i64,
    /// First delay of the host's retries, in seconds; doubled each time, at most an hour.
    #[arg(long, env = "PSA_BILLING_RETRY_BASE_SECONDS", default_value_t = 30)]
    retry_base_seconds: u64,
    /// Secrets of the thin-event destination (/webhooks/stripe/thin).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET_THIN", hide_env_values = true)]
    thin_webhook_secret: Option<String>,
    /// Accepted distance between a signature's timestamp and now, both ways.
    #[arg(long, env = "PSA_BILLING_TOLERANCE_SECONDS", default_value_t = psa_billing_core::signature::DEFAULT_TOLERANCE_SECONDS)]
    tolerance_seconds: u32,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, env = "PSA_BILLING_MAX_BODY_BYTES", default_value_t = server::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Bearer token for the /v1 API; without it /v1 is closed.
    #[arg(long, env = "PSA_BILLING_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Fee rules file (TOML) for /v1/quote; checked at start.
    #[arg(long, env = "PSA_BILLING_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    routing: RoutingArgs,
    #[command(flatten)]
    plugin: PluginArgs,
    #[command(flatten)]
    stripe: StripeArgs,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Args)]
struct HttpArgs {
    /// Connections open at once; when all are taken, a new one closes the
    /// connection idle longest, or waits in the listen backlog if none is idle.
    #[arg(long, env = "PSA_BILLING_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Bytes of a request's line and headers (at least 8192).
    #[arg(long, env = "PSA_BILLING_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// Seconds to answer one request; then 408.
    #[arg(
        long,
        env = "PSA_BILLING_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 60
    )]
    request_timeout_seconds: u64,
    /// Seconds from a connection's opening to its first complete request
    /// header, and to send each later request's headers; then it is closed.
    #[arg(
        long,
        env = "PSA_BILLING_HEADER_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    header_timeout_seconds: u64,
    /// Seconds an answered connection may stay open with nothing in flight.
    #[arg(
        long,
        env = "PSA_BILLING_IDLE_TIMEOUT_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    idle_timeout_seconds: u64,
}

impl HttpArgs {
    fn limits(&self) -> crate::http_server::HttpLimits {
        crate::http_server::HttpLimits {
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            header_timeout: Duration::from_secs(self.header_timeout_seconds),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            ..Default::default()
        }
    }
}

#[derive(Args)]
struct StripeArgs {
    /// Stripe secret key for operations and thin events; it stays in the
    /// host. Without it every Stripe call is refused (`denied`).
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    stripe_secret_key: Option<String>,
    /// Stripe API base URL (a local fake in tests).
    #[arg(long, env = "PSA_BILLING_STRIPE_URL")]
    stripe_url: Option<String>,
    /// Stripe operations this deployment allows, comma-separated WIT names
    /// (create-refund,retrieve-charge...); default: all.
    #[arg(long, env = "PSA_BILLING_STRIPE_ALLOW")]
    stripe_allow: Option<String>,
}

impl StripeArgs {
    fn api(&self) -> Result<Option<StripeApi>> {
        let Some(key) = self.stripe_secret_key.as_deref().filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        let mut config = StripeConfig::new(key);
        config.base_url = self.stripe_url.clone();
        if let Some(list) = &self.stripe_allow {
            config.allow = Some(StripeConfig::parse_allow(list)?);
        }
        StripeApi::new(config).map(Some)
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct QuoteArgs {
    /// A flow other than a single payment, with its input as JSON.
    #[command(subcommand)]
    flow: Option<Flow>,
    /// Amount in major units, e.g. 100.00 (USD) or 10000 (JPY).
    #[arg(long, allow_hyphen_values = true, required = true)]
    amount: Option<String>,
    /// Currency code, e.g. usd.
    #[arg(long, default_value = "usd")]
    currency: String,
    /// Stripe payment method type.
    #[arg(long, default_value = "card")]
    payment_method: String,
    /// Tenant whose overrides in the rules apply.
    #[arg(long)]
    tenant: Option<String>,
    /// The card is from another country than the account.
    #[arg(long)]
    international: bool,
    /// The charge is converted to another currency.
    #[arg(long)]
    converted: bool,
    /// Platform (application) fee percent, e.g. 2.5 (overrides the rules).
    #[arg(long)]
    application_fee_percent: Option<String>,
    /// Platform fee fixed part in major units, e.g. 0.50 (overrides the rules).
    #[arg(long)]
    application_fee_fixed: Option<String>,
    /// The tenant's volume so far this month in major units (for custom fee rules).
    #[arg(long)]
    monthly_volume: Option<String>,
    /// Fee rules file (TOML); see examples/rules/default.toml.
    #[arg(long, env = "PSA_BILLING_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

#[derive(Subcommand)]
enum Flow {
    /// Marketplace escrow plan for an offer (seed 002). Input: {"amount": "100.00", "currency": "usd"}
    Escrow(FlowArgs),
    /// Check a deposit or withdrawal against the limits. Input: {"kind": "withdrawal", "amount": "80.00", "currency": "usd", "available": "95.00"}
    Wallet(FlowArgs),
    /// Invoice totals (seed 001). Input: {"currency": "usd", "lines": [{"quantity": 3, "unit_amount": "19.99", "discount": {"percent": "10"}, "tax_rates": [{"percent": "8.25"}]}]}
    Invoice(FlowArgs),
    /// Seat change proration (seed 004). Input: {"unit_amount": "50.00", "currency": "usd", "old_quantity": 10, "new_quantity": 12, "period_start": 0, "period_end": 2592000, "change_at": 864000}
    Seats(FlowArgs),
    /// Refund split. Input: {"currency": "usd", "gross": "100.00", "application_fee": "2.50", "amount": "30.00", "refund_application_fee": true}
    Refund(FlowArgs),
}

#[derive(Args)]
struct FlowArgs {
    /// JSON input file, or - for standard input.
    input: PathBuf,
    /// Fee rules file (TOML); see examples/rules/default.toml.
    #[arg(long, env = "PSA_BILLING_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

#[derive(Args)]
struct ReplayArgs {
    /// Event files, or directories whose *.json files form one scenario (run
    /// in name order against one store). Each argument gets a fresh store.
    #[arg(required_unless_present = "dead_letters")]
    paths: Vec<PathBuf>,
    /// Reprocess the dead-letter list of the database instead (after fixing
    /// what made them fail); exit 1 if any fails again.
    #[arg(long, conflicts_with_all = ["paths", "expect"])]
    dead_letters: bool,
    /// The database, for --dead-letters.
    #[arg(
        long,
        env = "PSA_BILLING_DATABASE_URL",
        default_value = "sqlite://psa-billing.db"
    )]
    database_url: String,
    /// Compare with expected output in DIR (DIR/<scenario>/<event>.jsonl, or
    /// DIR/<event>.jsonl for a single file); exit 1 on any difference.
    #[arg(long, value_name = "DIR")]
    expect: Option<PathBuf>,
    /// Write the expected files instead of comparing (review them before committing).
    #[arg(long, requires = "expect")]
    bless: bool,
    #[command(flatten)]
    routing: RoutingArgs,
    #[command(flatten)]
    plugin: PluginArgs,
}

#[derive(Args)]
struct SignArgs {
    /// The endpoint secret (whsec_...).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// Unix timestamp to sign at; now by default.
    #[arg(long)]
    timestamp: Option<i64>,
}

/// Entry point of the binary.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    // A fixture replay prints every outcome, failures included (a corpus
    // has events that must fail), as JSON lines: its log says only what
    // went wrong with the replay itself unless RUST_LOG asks for more.
    let default_level = match &cli.command {
        Command::Replay(r) if !r.dead_letters => "error",
        _ => "info",
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in a log file
        // or a journal (and not paid for on every line there).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // One JSON object per line (with the delivery span's fields) for log
    // pipelines; the default is text for people.
    if std::env::var("PSA_BILLING_LOG_FORMAT").as_deref() == Ok("json") {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Command::Serve(a) => serve(a).await,
            Command::Quote(a) => quote(a).await,
            Command::Replay(a) => replay(a).await,
            Command::Sign(a) => sign(a),
            Command::Ledger(a) => ledger(a).await,
            Command::Tenants(a) => tenants(a).await,
            Command::CheckPlugin { file, tenant } => check_plugin(&file, tenant.as_deref()).await,
            Command::Component { out } => {
                std::fs::write(&out, crate::DEFAULT_PLUGIN)
                    .with_context(|| format!("writing {}", out.display()))?;
                eprintln!(
                    "wrote {} ({} bytes)",
                    out.display(),
                    crate::DEFAULT_PLUGIN.len()
                );
                Ok(())
            }
        }
    })
}

/// Splits a comma-separated secret list; refuses an empty one.
pub fn parse_secrets(raw: Option<&str>) -> Result<Vec<String>> {
    let secrets: Vec<String> = raw
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if secrets.is_empty() {
        bail!(
            "no webhook secret: set STRIPE_WEBHOOK_SECRET (or --webhook-secret) to the endpoint's whsec_... secret; \
             several may be given, comma-separated, during a rotation"
        );
    }
    Ok(secrets)
}

async fn serve(a: ServeArgs) -> Result<()> {
    let secrets = parse_secrets(a.webhook_secret.as_deref())?;
    let runtime = a.plugin.runtime()?.with_stripe(a.stripe.api()?);
    let rules = load_rules(&runtime, &a.rules).await?;
    let db = Db::open(&a.database_url).await?;
    let thin_secrets = match a.thin_webhook_secret.as_deref() {
        Some(s) if !s.is_empty() => parse_secrets(Some(s))?,
        _ => vec![],
    };
    let pipeline = a
        .routing
        .apply(Pipeline::new(
            runtime,
            db.clone(),
            secrets,
            a.tolerance_seconds,
        ))
        .with_thin_secrets(thin_secrets)
        .with_retry_policy(RetryPolicy {
            max_attempts: a.max_attempts.max(1),
            base: Duration::from_secs(a.retry_base_seconds),
            ..RetryPolicy::default()
        });
    let retrier = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = pipeline.retry_due().await {
                    tracing::warn!(error = %format!("{e:#}"), "retrying failed events");
                }
            }
        })
    };
    let app = server::router(
        pipeline,
        ServerOptions {
            max_body_bytes: a.max_body_bytes,
            api_token: a.api_token.filter(|t| !t.is_empty()),
            rules,
        },
    );
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    tracing::info!(addr = %listener.local_addr()?, database = %a.database_url, "psa-billing serving");
    crate::http_server::serve(listener, app, a.http.limits(), shutdown_signal()).await?;
    retrier.abort();
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn load_rules(runtime: &Runtime, path: &Option<PathBuf>) -> Result<Option<String>> {
    match path {
        Some(p) => Ok(Some(quoting::load_rules(runtime, p).await?)),
        None => Ok(None),
    }
}

async fn quote(a: QuoteArgs) -> Result<()> {
    if let Some(flow) = a.flow {
        return quote_flow(flow).await;
    }
    let runtime = a.plugin.runtime()?;
    let rules = load_rules(&runtime, &a.rules).await?;
    let input = QuoteInput {
        amount: a.amount.expect("clap requires --amount without a flow"),
        currency: a.currency,
        payment_method: a.payment_method,
        tenant: a.tenant,
        international: a.international,
        converted: a.converted,
        application_fee_percent: a.application_fee_percent,
        application_fee_fixed: a.application_fee_fixed,
        monthly_volume: a.monthly_volume,
    };
    let out = quoting::quote(&runtime, rules.as_deref(), input).await?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn quote_flow(flow: Flow) -> Result<()> {
    let (name, args) = match flow {
        Flow::Escrow(a) => ("escrow", a),
        Flow::Wallet(a) => ("wallet", a),
        Flow::Invoice(a) => ("invoice", a),
        Flow::Seats(a) => ("seats", a),
        Flow::Refund(a) => ("refund", a),
    };
    let text = read_input(&args.input)?;
    let input: Value = serde_json::from_str(&text).context("the input is not JSON")?;
    let runtime = args.plugin.runtime()?;
    let rules = load_rules(&runtime, &args.rules).await?;
    let out = quoting::flow(&runtime, rules.as_deref(), name, input).await?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn ledger(a: LedgerArgs) -> Result<()> {
    let (runtime, db) = a.store.open().await?;
    let out = match a.action {
        LedgerAction::Balances { tenant } => crate::ledger::balances(&runtime, &db, &tenant).await,
        LedgerAction::Transactions {
            tenant,
            after,
            limit,
        } => crate::ledger::transactions(&runtime, &db, &tenant, after, limit).await,
        LedgerAction::Post { tenant, input } => {
            let input: crate::ledger::PostInput =
                serde_json::from_str(&read_input(&input)?).context("the posting is not valid")?;
            crate::ledger::post(&runtime, &db, &tenant, input).await
        }
    };
    db.close().await;
    println!("{}", serde_json::to_string_pretty(&out?)?);
    Ok(())
}

async fn tenants(a: TenantsArgs) -> Result<()> {
    use crate::tenants;
    let (runtime, db) = a.store.open().await?;
    let out = match a.action {
        TenantsAction::Register { account, tenant } => {
            tenants::register(&runtime, &db, &account, &tenant)
                .await
                .map(|()| json!({ "account": account, "tenant": tenant }))
        }
        TenantsAction::Unregister { account } => tenants::unregister(&runtime, &db, &account)
            .await
            .map(|()| json!({ "account": account, "tenant": null })),
        TenantsAction::Lookup { account } => tenants::lookup(&runtime, &db, &account)
            .await
            .map(|tenant| json!({ "account": account, "tenant": tenant })),
        TenantsAction::List => tenants::list(&db).await.map(|list| {
            let list: Vec<Value> = list
                .into_iter()
                .map(|(account, tenant)| json!({ "account": account, "tenant": tenant }))
                .collect();
            json!({ "tenants": list })
        }),
    };
    db.close().await;
    println!("{}", serde_json::to_string_pretty(&out?)?);
    Ok(())
}

async fn check_plugin(file: &Path, tenant: Option<&str>) -> Result<()> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let report = crate::inspect::check(&wasm, tenant).await;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(e) = report["error"].as_str() {
        bail!("{}: {e}", file.display());
    }
    if report["violations"].as_u64().unwrap_or(0) > 0 {
        bail!(
            "{}: {} of the sample quotes broke the rules or failed (see above)",
            file.display(),
            report["violations"]
        );
    }
    Ok(())
}

/// Reads a file, or standard input for `-`.
fn read_input(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// One replay scenario: its name and its event files in order.
fn scenario_files(path: &Path) -> Result<(Option<String>, Vec<PathBuf>)> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        Ok((name, files))
    } else {
        Ok((None, vec![path.to_path_buf()]))
    }
}

/// The JSON lines that one event produces in a replay.
pub async fn replay_event(pipeline: &Pipeline, body: &[u8]) -> Vec<Value> {
    match pipeline.receive_unsigned(body).await {
        Ok(Outcome::Accepted {
            event_id, effects, ..
        }) => effects
            .into_iter()
            .map(|e| json!({ "event_id": event_id, "effect": e.body }))
            .collect(),
        Ok(Outcome::Duplicate { event_id }) => {
            vec![json!({ "event_id": event_id, "duplicate": true })]
        }
        Err(DeliveryError::Rejected(e)) => {
            vec![json!({ "rejected": rejection_code(&e), "reason": describe_rejection(&e) })]
        }
        Err(DeliveryError::Refused {
            event_id,
            code,
            reason,
        }) => {
            vec![json!({ "event_id": event_id, "rejected": code, "reason": reason })]
        }
        Err(DeliveryError::Failed { event_id, reason }) => {
            vec![json!({ "event_id": event_id, "failed": reason })]
        }
    }
}

async fn replay(a: ReplayArgs) -> Result<()> {
    let runtime = a.plugin.runtime()?;
    if a.dead_letters {
        let db = Db::open(&a.database_url).await?;
        let pipeline = a
            .routing
            .apply(Pipeline::new(runtime, db.clone(), Vec::new(), 0));
        let outcomes = pipeline.replay_dead_letters().await?;
        let mut failed = 0;
        for (id, outcome) in &outcomes {
            let line = match outcome {
                Ok(Outcome::Accepted { effects, .. }) => {
                    json!({ "event_id": id, "status": "processed", "effects": effects.len() })
                }
                Ok(Outcome::Duplicate { .. }) => json!({ "event_id": id, "status": "duplicate" }),
                Err(e) => {
                    failed += 1;
                    json!({ "event_id": id, "status": "failed", "reason": e.to_string() })
                }
            };
            println!("{line}");
        }
        db.close().await;
        eprintln!(
            "{} dead letters replayed, {failed} failed again",
            outcomes.len()
        );
        if failed > 0 {
            std::process::exit(1);
        }
        return Ok(());
    }
    let mut differences = 0;
    let (mut events, mut differing) = (0usize, Vec::new());
    for path in &a.paths {
        let (scenario, files) = scenario_files(path)?;
        let differences_before = differences;
        let db = Db::open("sqlite::memory:").await?;
        register_scenario_tenants(&runtime, &db, path).await?;
        let pipeline = a
            .routing
            .apply(Pipeline::new(runtime.clone(), db, Vec::new(), 0));
        for file in files {
            events += 1;
            let body =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let lines: Vec<String> = replay_event(&pipeline, &body)
                .await
                .iter()
                .map(Value::to_string)
                .collect();
            let actual = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
            print!("{actual}");
            let Some(dir) = &a.expect else { continue };
            let mut expected_path = dir.clone();
            if let Some(s) = &scenario {
                expected_path.push(s);
            }
            expected_path.push(file.file_stem().unwrap_or_default());
            expected_path.set_extension("jsonl");
            if a.bless {
                if let Some(parent) = expected_path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&expected_path, &actual)?;
                continue;
            }
            let expected = std::fs::read_to_string(&expected_path)
                .with_context(|| format!("reading expected output {}", expected_path.display()))?;
            if normalise(&expected) != normalise(&actual) {
                differences += 1;
                eprintln!(
                    "DIFFERENCE for {} (expected {}):\n--- expected\n{expected}+++ actual\n{actual}",
                    file.display(),
                    expected_path.display()
                );
            }
        }
        if differences > differences_before {
            differing.push(
                scenario
                    .clone()
                    .unwrap_or_else(|| path.display().to_string()),
            );
        }
    }
    let scenarios = a.paths.len();
    let replayed = format!(
        "{scenarios} scenario{}, {events} event{}",
        plural(scenarios),
        plural(events)
    );
    match &a.expect {
        None => eprintln!("{replayed} replayed"),
        Some(dir) if a.bless => {
            eprintln!("{replayed}: expected effects written to {}", dir.display())
        }
        Some(_) if differences == 0 => eprintln!("{replayed}: all match"),
        Some(_) => {
            eprintln!(
                "{replayed}: {differences} event{} in {} scenario{} differ: {}",
                plural(differences),
                differing.len(),
                plural(differing.len()),
                differing.join(", ")
            );
            bail!("{differences} event(s) differ from the expected effects");
        }
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A scenario directory's `registry.txt`: one `acct_... tenant` per line,
/// registered before its events run.
async fn register_scenario_tenants(runtime: &Runtime, db: &Db, scenario: &Path) -> Result<()> {
    let file = scenario.join("registry.txt");
    if !file.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&file)?;
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let Some((account, tenant)) = line.split_once(char::is_whitespace) else {
            bail!(
                "{}: expected `acct_... tenant`, got {line:?}",
                file.display()
            );
        };
        crate::tenants::register(runtime, db, account, tenant.trim()).await?;
    }
    Ok(())
}

/// Expected files are compared as JSON values, line by line, so that key
/// order and spacing in a hand-edited file do not matter.
fn normalise(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.to_string())))
        .collect()
}

fn sign(a: SignArgs) -> Result<()> {
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    let t = a.timestamp.unwrap_or_else(crate::db::unix_now);
    println!("{}", psa_billing_core::signature::sign(&body, &a.secret, t));
    Ok(())
}
