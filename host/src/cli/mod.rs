//! The `psa-billing` command line.
//! Parses arguments and environment, then calls the same parts an
//! embedding application uses. It knows nothing about how they work
//! inside, and nothing below it knows about it.

pub mod check_plugin;
mod ledger;
mod quote;
mod reconcile;
mod replay;
mod serve;
mod sign;
mod tenants;
mod trigger;

use ledger::{LedgerArgs, ledger};
use quote::{QuoteArgs, quote};
use reconcile::{ReconcileArgs, reconcile};
pub use replay::replay_event;
use replay::{ReplayArgs, replay};
use serve::{ServeArgs, serve};
use sign::{SignArgs, sign};
use tenants::{TenantsArgs, tenants};
use trigger::{TriggerArgs, trigger};

use crate::api::quotes::QuoteInput;
use crate::embed::{Billing, BillingBuilder};
use crate::http;
use crate::pipeline::RetryPolicy;
use crate::pipeline::{DeliveryError, Outcome, Pipeline, describe_rejection, rejection_code};
use crate::runtime::{Limits, Runtime};
use crate::storage::Db;
use crate::stripe::StripeConfig;
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
/// The command line: one subcommand and its options.
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
    /// Build a realistic event of a type from Stripe's sample objects, sign
    /// it and post it to the endpoint (`stripe trigger` without an account).
    Trigger(TriggerArgs),
    /// Read or post a tenant's double-entry ledger.
    Ledger(LedgerArgs),
    /// Compare the ledger with Stripe's balance transactions for a period
    /// (needs STRIPE_SECRET_KEY); exits 1 on any difference.
    Reconcile(ReconcileArgs),
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
    /// Print the OpenAPI 3.1 document of the HTTP API (what
    /// `GET /v1/openapi.json` serves; committed as docs/openapi.json).
    Openapi,
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
    /// Prices whose subscription items are licenses (seed 004's license
    /// price); the license count adds up those items alone (default: all).
    #[arg(
        long = "license-price",
        env = "PSA_BILLING_LICENSE_PRICES",
        value_delimiter = ','
    )]
    license_prices: Vec<String>,
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
    fn livemode(&self) -> Option<bool> {
        match self.livemode {
            Mode::Live => Some(true),
            Mode::Test => Some(false),
            Mode::Any => None,
        }
    }

    /// The same settings for `serve`, on the embedding builder.
    fn configure(&self, builder: BillingBuilder) -> BillingBuilder {
        let builder = builder
            .tenant_keys(self.tenant_keys.clone())
            .license_prices(self.license_prices.clone())
            .reference_keys(self.reference_keys.clone())
            .livemode(self.livemode());
        match &self.api_version {
            Some(v) => builder.api_version(v.clone(), self.strict_api_version),
            None => builder,
        }
    }

    fn apply(&self, pipeline: Pipeline) -> Pipeline {
        let livemode = self.livemode();
        let pipeline = pipeline
            .with_routing(self.tenant_keys.clone(), self.reference_keys.clone())
            .with_license_prices(self.license_prices.clone())
            .with_livemode(livemode);
        match &self.api_version {
            Some(v) => pipeline.with_api_version(v.clone(), self.strict_api_version),
            None => pipeline,
        }
    }
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
    /// The embedding's assembly, offline (no deliveries), on this database.
    fn builder(&self) -> BillingBuilder {
        self.plugin
            .configure(Billing::builder().offline().database(&self.database_url))
    }

    async fn open(&self) -> Result<Billing> {
        self.builder().build().await
    }
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
    fn limits(&self) -> Limits {
        Limits {
            call_timeout: Duration::from_millis(self.call_timeout_ms),
            memory_bytes: self.memory_mib << 20,
            calls_per_instance: self.calls_per_instance,
            fee_rules_calls_per_instance: self.fee_rules_calls_per_instance,
            ..Limits::default()
        }
    }

    /// The same settings for `serve`, on the embedding builder.
    fn configure(&self, mut builder: BillingBuilder) -> BillingBuilder {
        builder = builder.limits(self.limits());
        if let Some(path) = &self.plugin {
            builder = builder.component_file(path);
        }
        if let Some(path) = &self.fee_rules {
            builder = builder.fee_rules_file(path);
        }
        if let Some(dir) = &self.component_cache {
            builder = builder.compile_cache(dir);
        }
        builder
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
    /// Requests to Stripe a second at most, from this process (Stripe's own
    /// limit is 100 in live mode, 25 in test mode); 0: no cap.
    #[arg(
        long,
        env = "PSA_BILLING_STRIPE_CALLS_PER_SECOND",
        default_value_t = 25
    )]
    stripe_calls_per_second: u32,
}

impl StripeArgs {
    fn config(&self) -> Result<Option<StripeConfig>> {
        let Some(key) = self.stripe_secret_key.as_deref().filter(|k| !k.is_empty()) else {
            return Ok(None);
        };
        let mut config = StripeConfig::new(key);
        config.base_url = self.stripe_url.clone();
        if let Some(list) = &self.stripe_allow {
            config.allow = Some(StripeConfig::parse_allow(list)?);
        }
        config.calls_per_second = std::num::NonZeroU32::new(self.stripe_calls_per_second);
        Ok(Some(config))
    }

    /// The same settings on the embedding builder.
    fn configure(&self, builder: BillingBuilder) -> Result<BillingBuilder> {
        Ok(match self.config()? {
            Some(config) => builder.stripe(config),
            None => builder,
        })
    }
}

/// Whether a command prints its result and talks to no peer over a
/// socket (a quote, a replay, a signature, a document): those end when
/// their reader goes away. The others keep Rust's default, so a peer
/// closing a connection is an error they report, never a signal.
fn prints_a_result(command: &Command) -> bool {
    match command {
        Command::Quote(_)
        | Command::Sign(_)
        | Command::Openapi
        | Command::CheckPlugin { .. }
        | Command::Component { .. } => true,
        Command::Replay(r) => !r.dead_letters,
        _ => false,
    }
}

/// Rust ignores SIGPIPE, so `println!` to a closed pipe (`| head -1`)
/// panics. A command that only prints takes the default action instead,
/// as Unix filters do: it ends at once, with the conventional SIGPIPE
/// status (141 in a shell), and prints nothing more.
fn end_quietly_on_a_closed_pipe() {
    // SAFETY: called once, before any thread is started; restoring a
    // signal's default disposition has no other effect on this process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
    if prints_a_result(&cli.command) {
        end_quietly_on_a_closed_pipe();
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
            Command::Trigger(a) => trigger(a).await,
            Command::Ledger(a) => ledger(a).await,
            Command::Tenants(a) => tenants(a).await,
            Command::Reconcile(a) => reconcile(a).await,
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
            Command::Openapi => {
                use std::io::Write;
                let document = crate::http::openapi::to_json(&crate::http::openapi_document());
                std::io::stdout()
                    .write_all(document.as_bytes())
                    .context("writing the document")
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

async fn check_plugin(file: &Path, tenant: Option<&str>) -> Result<()> {
    let wasm = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let report = crate::cli::check_plugin::check(&wasm, tenant).await;
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
