//! The benchmark that explains itself. In one run, on one machine:
//!
//! 1. **floor**: the same durable work as a delivery without HTTP and without
//!    the sandbox: native signature check, envelope parse, the mapping run
//!    natively (its state reads and writes), and one transaction per
//!    delivery, at concurrency 1 and `--concurrency`; and, for comparison
//!    with earlier reports, the event row and one effect only;
//! 2. **sandbox**: verify + map + quote through the component against the
//!    same code natively (the same storage reads on both sides), as a ratio;
//! 3. **serve**: the real `psa-billing serve` process, driven over loopback
//!    with signed `payment_intent.succeeded` deliveries: events per second
//!    and latency percentiles at concurrency 1 and `--concurrency`;
//! 4. **start**: `serve` from launch to a healthy `/healthz`, compiling the
//!    component and then from the compiled-component cache; its resident
//!    memory at idle and after the load.
//!
//! On two or more cores, the floor, the sandbox and the server run pinned
//! to core 0 and the load generator to core 1, so that the server's figures
//! are one core's work. It prints a table and writes a JSON report:
//!
//!   cargo build --release -p psa-billing -p psa-billing-bench
//!   target/release/psa-billing-bench --events 3000 --concurrency 16 --synchronous full

use anyhow::{Context, Result, ensure};
use clap::Parser;
use psa_billing::runtime::{Delivery, Money, QuoteRequest, Routing};
use psa_billing::storage::{CommitOutcome, EventMeta, NewEffect, StateKey};
use psa_billing::{DEFAULT_PLUGIN, Db, Limits, Runtime, StagedState};
use psa_billing_core::state::StateStore;
use psa_billing_core::{event, fees, mapping, rules, signature};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Deliveries per measured phase.
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Deliveries in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// SQLite durability: full (survives power loss) or normal.
    #[arg(long, default_value = "full")]
    synchronous: String,
    /// Where to write the JSON report.
    #[arg(long, default_value = "bench-report.json")]
    report: std::path::PathBuf,
    /// The `psa-billing` binary to serve with (default: next to this one).
    #[arg(long)]
    serve_binary: Option<PathBuf>,
    /// Leave scheduling to the OS instead of pinning to cores.
    #[arg(long)]
    no_pin: bool,
    /// Only the sandbox comparison, over `--events` deliveries (for
    /// profiling the plugin path), then exit.
    #[arg(long)]
    sandbox_only: bool,
    /// Tenants the deliveries go to, in turn. Each payment rewrites its
    /// tenant's ledger book, so with fewer tenants than deliveries in
    /// flight they race for it (1: every delivery for one hot tenant).
    #[arg(long, default_value_t = 50)]
    tenants: usize,
    /// The deliveries' bodies: `small` (a 390-byte payment_intent.succeeded
    /// with just the fields the mapping reads; the figures of earlier
    /// reports) or `stripe` (Stripe's own sample payment intent from the
    /// fixture corpus, pretty-printed as Stripe sends it: 2 KB).
    #[arg(long, value_enum, default_value_t = Payload::Small)]
    payload: Payload,
}

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
enum Payload {
    Small,
    Stripe,
}

/// Stripe's sample payment intent, as the fixture corpus has it (parsed
/// once; each delivery is a copy with its own ids).
static STRIPE_SAMPLE: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    let text = include_str!(
        "../../tests/fixtures/events/connect-payment/01-payment_intent_succeeded.json"
    );
    serde_json::from_str(text).expect("the sample is JSON")
});

/// What the deliveries of a phase look like.
#[derive(Clone, Copy)]
struct Load {
    tenants: usize,
    payload: Payload,
}

// The `psa-billing` binary's allocator (host/src/main.rs), so that the
// floor and the native side of the sandbox run on what `serve` runs on:
// with glibc's malloc they were up to a tenth slower, which flattered
// `serve` against the floor and the component against native code.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "whsec_bench";

fn body(prefix: &str, i: usize, load: Load) -> Vec<u8> {
    let (id, pi, tenant) = (
        format!("evt_{prefix}_{i}"),
        format!("pi_{prefix}_{i}"),
        format!("tenant-{}", i % load.tenants),
    );
    let created = 1_763_800_000 + i as i64;
    match load.payload {
        Payload::Small => json!({
            "id": id, "object": "event", "type": "payment_intent.succeeded",
            "created": created, "livemode": false, "api_version": "2025-08-27.basil",
            "data": {"object": {
                "id": pi, "object": "payment_intent", "amount": 10000,
                "amount_received": 10000, "currency": "usd", "status": "succeeded",
                "customer": "cus_bench", "application_fee_amount": 250,
                "metadata": {"tenant_id": tenant, "invoice_id": format!("INV-{i}")}
            }}
        })
        .to_string()
        .into_bytes(),
        Payload::Stripe => {
            let mut event = STRIPE_SAMPLE.clone();
            event["id"] = json!(id);
            event["created"] = json!(created);
            event["account"] = Value::Null;
            let object = &mut event["data"]["object"];
            object["id"] = json!(pi);
            object["metadata"] = json!({ "tenant_id": tenant, "invoice_id": format!("INV-{i}") });
            serde_json::to_vec_pretty(&event).expect("a Value serialises")
        }
    }
}

fn signed(prefix: &str, n: usize, load: Load) -> Arc<Vec<(Vec<u8>, String)>> {
    let now = psa_billing::clock::unix_now();
    Arc::new(
        (0..n)
            .map(|i| {
                let b = body(prefix, i, load);
                let sig = signature::sign(&b, SECRET, now);
                (b, sig)
            })
            .collect(),
    )
}

/// The URL of SQLite database `name` in `dir`.
fn sqlite_url(dir: &Path, name: &str, synchronous: &str) -> String {
    format!(
        "sqlite://{}?synchronous={synchronous}",
        dir.join(name).display()
    )
}

async fn open_db(dir: &Path, name: &str, synchronous: &str) -> Result<Db> {
    Db::open(&sqlite_url(dir, name, synchronous)).await
}

/// Throughput and latency of one phase.
#[derive(Debug)]
struct Phase {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Phase {
    fn from(n: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Phase {
        latencies.sort();
        let pct =
            |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
        Phase {
            per_second: n as f64 / elapsed.as_secs_f64(),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        }
    }

    fn json(&self) -> Value {
        json!({ "per_second": self.per_second.round(), "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "max_ms": self.max_ms })
    }
}

/// Runs `work(i)` for i in 0..n with `concurrency` workers.
async fn drive<F, Fut>(n: usize, concurrency: usize, work: F) -> Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (work, next) = (work.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                work(i).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    for r in workers.join_all().await {
        latencies.extend(r?);
    }
    Ok(Phase::from(n, started.elapsed(), latencies))
}

/// The native half of a delivery before the plugin: signature and envelope.
fn verify_and_parse(body: &[u8], sig: &str) -> Result<event::Envelope> {
    let now = psa_billing::clock::unix_now();
    signature::verify(body, Some(sig), &[SECRET.to_string()], 300, now)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    event::parse_envelope(body).map_err(|e| anyhow::anyhow!("{e}"))
}

/// What the floor commits for each delivery.
#[derive(Clone, Copy, PartialEq)]
enum FloorWork {
    /// What `serve` commits: the native mapping's state reads and writes
    /// (the payment record, the tenant's ledger) and its effect.
    Mapped,
    /// The event row and one effect only (the floor of earlier reports):
    /// less than a delivery writes.
    EventOnly,
}

/// The floor: native verify + parse (+ map) + one transaction per delivery.
async fn floor(
    db: Db,
    requests: Arc<Vec<(Vec<u8>, String)>>,
    concurrency: usize,
    work: FloorWork,
) -> Result<Phase> {
    let n = requests.len();
    // Redos take turns (the pipeline's lanes, as one lane): with a hot
    // tenant, racing redos would otherwise keep losing to each other.
    let redo = Arc::new(tokio::sync::Mutex::new(()));
    drive(n, concurrency, move |i| {
        let (db, requests, redo) = (db.clone(), requests.clone(), redo.clone());
        async move {
            let (b, sig) = &requests[i];
            let env = verify_and_parse(b, sig)?;
            let meta = EventMeta {
                id: env.id.clone(),
                event_type: env.event_type,
                account: env.account,
                created: env.created,
                livemode: env.livemode,
            };
            // Deliveries for one tenant share its ledger: a commit whose
            // reads changed under it is redone, as in the pipeline. With
            // one hot tenant and FULL a redo keeps losing to fresh first
            // attempts (seen: a p99 of 320 ms), hence the many tries.
            let mut turn = None;
            for _ in 0..4096 {
                let mut staged = StagedState::new(db.clone(), meta.id.clone());
                let effects = match work {
                    FloorWork::EventOnly => vec![NewEffect {
                        kind: "payment.succeeded".into(),
                        body: json!({ "payment_intent": env.id }),
                    }],
                    FloorWork::Mapped => native_effects(b, &mut staged)?,
                };
                match db
                    .commit_alone(&meta, b, &staged, &effects, "processed")
                    .await?
                {
                    CommitOutcome::Committed => return Ok(()),
                    CommitOutcome::Conflict => {
                        if turn.is_none() {
                            turn = Some(redo.lock().await);
                        }
                    }
                    CommitOutcome::Duplicate => anyhow::bail!("{} was a duplicate", meta.id),
                }
            }
            anyhow::bail!("{} kept conflicting", meta.id)
        }
    })
    .await
}

/// The native mapping of `body` over `staged`, its effects as outbox rows.
/// The core's effects have no serde form (the host's JSON comes from the
/// WIT records), so a row's body is the effect's debug text: the same
/// fields, about the same bytes to store.
fn native_effects(body: &[u8], staged: &mut StagedState) -> Result<Vec<NewEffect>> {
    let effects = mapping::handle_with(body, &mapping::Routing::default(), &mut Bridge(staged))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(effects
        .iter()
        .map(|e| {
            let kind = e.kind();
            NewEffect {
                kind: kind.into(),
                body: json!({ "kind": kind, "effect": format!("{e:?}") }),
            }
        })
        .collect())
}

/// Native storage for the mapping that reads through the host's staged
/// state, as the component's storage import does: the same reads on both sides.
struct Bridge<'a>(&'a mut StagedState);

impl StateStore for Bridge<'_> {
    fn get(&mut self, collection: &str, key: &str) -> Result<Option<String>, String> {
        let key: StateKey = (collection.to_string(), key.to_string());
        // On SQLite the read is done in place and ready at the first poll;
        // only a read that waits (PostgreSQL) pays for blocking the thread.
        let mut read = std::pin::pin!(self.0.read(key));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let found = match read.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(found) => found,
            std::task::Poll::Pending => {
                tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(read))
            }
        };
        found.map_err(|e| e.to_string())
    }
    fn put(&mut self, collection: &str, key: &str, value: &str) -> Result<(), String> {
        self.0
            .write((collection.into(), key.into()), Some(value.into()));
        Ok(())
    }
    fn delete(&mut self, collection: &str, key: &str) -> Result<(), String> {
        self.0.write((collection.into(), key.into()), None);
        Ok(())
    }
}

fn quote_request() -> QuoteRequest {
    QuoteRequest {
        amount: Money {
            amount: 10_000,
            currency: "usd".into(),
        },
        payment_method: "card".into(),
        tenant: Some("tenant-1".into()),
        international: false,
        converted: false,
        application_fee_percent: None,
        application_fee_fixed: None,
        monthly_volume: None,
    }
}

/// Microseconds per delivery of each step of the sandbox comparison.
#[derive(Debug, Default, Clone, Copy)]
struct Steps {
    verify: f64,
    map: f64,
    quote: f64,
}

impl Steps {
    fn total(&self) -> f64 {
        self.verify + self.map + self.quote
    }

    fn json(&self) -> Value {
        json!({ "verify_us": self.verify, "map_us": self.map, "quote_us": self.quote, "total_us": self.total() })
    }
}

/// Adds the time `f` takes to `*into`.
async fn timed<T>(
    into: &mut Duration,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let started = Instant::now();
    let r = f.await;
    *into += started.elapsed();
    r
}

/// verify + map + quote, `n` times, natively and through the component,
/// each step timed on its own (the map step includes the same storage
/// reads on both sides); returns (native, component) per delivery.
async fn sandbox(runtime: &Runtime, db: &Db, n: usize, load: Load) -> Result<(Steps, Steps)> {
    let requests = signed("sandbox", n, load);
    let routing = Routing {
        tenant_keys: vec![],
        reference_keys: vec![],
        license_prices: vec![],
    };
    let native_routing = mapping::Routing::default();
    let rules = rules::FeeRules::default();
    let core_quote = fees::QuoteRequest {
        amount: psa_billing_core::money::Money::new(10_000, "usd"),
        payment_method: "card".into(),
        tenant: Some("tenant-1".into()),
        international: false,
        converted: false,
    };
    let per = |d: [Duration; 3]| {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        Steps {
            verify: us(d[0]),
            map: us(d[1]),
            quote: us(d[2]),
        }
    };
    // The first round warms both paths up (instance pool, caches).
    let mut result = None;
    for _round in 0..2 {
        let mut native = [Duration::ZERO; 3];
        for (b, sig) in requests.iter() {
            timed(&mut native[0], async { verify_and_parse(b, sig) }).await?;
            let mut staged = StagedState::new(db.clone(), "native");
            timed(&mut native[1], async {
                mapping::handle_with(b, &native_routing, &mut Bridge(&mut staged))
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .await?;
            timed(&mut native[2], async {
                fees::quote(&rules, &core_quote).map_err(|e| anyhow::anyhow!("{e}"))
            })
            .await?;
        }
        let mut component = [Duration::ZERO; 3];
        for (b, sig) in requests.iter() {
            let delivery = Delivery {
                body: b.clone(),
                signature_header: Some(sig.clone()),
                secrets: vec![SECRET.into()],
                tolerance_seconds: 300,
            };
            timed(&mut component[0], async {
                runtime
                    .verify(delivery)
                    .await?
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
            })
            .await?;
            let staged = StagedState::new(db.clone(), "component");
            timed(&mut component[1], async {
                let (r, _) = runtime.handle(b, &routing, staged).await?;
                r.map_err(|e| anyhow::anyhow!("{e:?}"))
            })
            .await?;
            timed(&mut component[2], async {
                runtime
                    .quote(None, quote_request())
                    .await?
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
            })
            .await?;
        }
        result = Some((per(native), per(component)));
    }
    Ok(result.expect("two rounds ran"))
}

/// The rules file of the examples, as a host with `--rules` sends it.
const RULES: &str = include_str!("../../examples/rules/default.toml");

/// Microseconds of single plugin calls outside the native comparison.
#[derive(Debug, Clone, Copy)]
struct Calls {
    /// A trivial export (`parse-amount`: two short strings in, a small
    /// record out): the fixed cost of a crossing, which no change to the
    /// plugin's code removes.
    trivial: f64,
    /// A quote with a rules file (the examples' 2 KB TOML), which the host
    /// sends with every call, as `serve --rules` does.
    rules_quote: f64,
}

impl Calls {
    async fn measure(runtime: &Runtime, n: usize) -> Result<Calls> {
        let trivial = per_call_us(n, || async {
            runtime
                .parse_amount("10.00", "usd")
                .await?
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        })
        .await?;
        let rules_quote = per_call_us(n, || async {
            runtime
                .quote(Some(RULES.into()), quote_request())
                .await?
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        })
        .await?;
        Ok(Calls {
            trivial,
            rules_quote,
        })
    }

    fn json(&self) -> Value {
        json!({ "trivial_call_us": self.trivial, "quote_with_rules_file_us": self.rules_quote })
    }
}

/// Microseconds `call` takes, `n` times after as many to warm up.
async fn per_call_us<T, F: std::future::Future<Output = Result<T>>>(
    n: usize,
    call: impl Fn() -> F,
) -> Result<f64> {
    let mut took = Duration::ZERO;
    for _round in 0..2 {
        took = Duration::ZERO;
        for _ in 0..n {
            timed(&mut took, call()).await?;
        }
    }
    Ok(took.as_secs_f64() * 1e6 / n as f64)
}

fn print_sandbox(native: &Steps, component: &Steps, calls: Calls) {
    println!(
        "sandbox: verify+map+quote {:.1} µs native, {:.1} µs component: {:.2}×",
        native.total(),
        component.total(),
        component.total() / native.total()
    );
    for (step, n, c) in [
        ("verify", native.verify, component.verify),
        ("map (with its storage reads)", native.map, component.map),
        ("quote", native.quote, component.quote),
    ] {
        println!(
            "  {step:<30} {n:>8.1} µs native {c:>8.1} µs component  {:.2}×",
            c / n
        );
    }
    println!(
        "  one call to a trivial export (the fixed cost of a crossing): {:.2} µs",
        calls.trivial
    );
    println!(
        "  a quote with a 2 KB rules file sent along (as serve --rules): {:.1} µs",
        calls.rules_quote
    );
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Pins the calling thread to `core`; threads and processes it starts
/// afterwards inherit the pinning.
fn pin_to(core: usize) -> Result<()> {
    // SAFETY: `set` is a plain bit set, zeroed then filled by CPU_SET, and
    // its size is passed along with it.
    let ok = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    };
    ensure!(
        ok,
        "pinning to core {core}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// A `psa-billing serve` child process, stopped when dropped.
struct Server {
    child: Child,
    base: String,
    /// From launch to the first healthy `/healthz`.
    start_ms: f64,
}

impl Server {
    /// Launches `serve` (on `core` when pinning) and waits until it is healthy.
    async fn start(
        binary: &Path,
        database_url: &str,
        cache: &Path,
        core: Option<usize>,
    ) -> Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let started = Instant::now();
        // The child inherits this thread's pinning: pin, spawn, pin back.
        if let Some(core) = core {
            pin_to(core)?;
        }
        let spawned = Command::new(binary)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("PSA_BILLING_DATABASE_URL", database_url)
            .env("PSA_BILLING_COMPONENT_CACHE", cache)
            .env("STRIPE_WEBHOOK_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if core.is_some() {
            pin_to(LOAD_CORE)?;
        }
        let child = spawned.with_context(|| format!("starting {}", binary.display()))?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "serve did not become healthy"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Server {
            child,
            base,
            start_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }

    /// Group commits so far, the deliveries they carried and the deliveries
    /// handled again after a state conflict, from `/metrics`.
    async fn commit_counters(&self, client: &reqwest::Client) -> Result<(f64, f64, f64)> {
        let text = client
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?;
        let counter = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .with_context(|| format!("{name} missing from /metrics"))
        };
        Ok((
            counter("psa_billing_commit_groups_total ")?,
            counter("psa_billing_committed_deliveries_total ")?,
            counter("psa_billing_state_conflicts_total ")?,
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the server runs (with the floor and the sandbox) and where the
/// load generator runs, when pinning.
const SERVER_CORE: usize = 0;
const LOAD_CORE: usize = 1;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// The machine, with `cores` counted before any pinning.
fn machine(cores: usize) -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "cores": cores,
        "cpu": cpu,
        "os": std::env::consts::OS,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        matches!(args.synchronous.as_str(), "full" | "normal"),
        "--synchronous is full or normal"
    );
    let binary = match &args.serve_binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("psa-billing"),
    };
    ensure!(
        args.sandbox_only || binary.exists(),
        "{} is missing: build it with `cargo build --release -p psa-billing` (or pass --serve-binary)",
        binary.display()
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = cores >= 2 && !args.no_pin;
    let dir = tempfile::tempdir()?;
    let sync = args.synchronous.as_str();
    let c = args.concurrency;
    let load = Load {
        tenants: args.tenants,
        payload: args.payload,
    };
    let body_bytes = body("size", 0, load).len();

    // 1 and 2, on the server's core: the floor and the sandbox's cost.
    if pinned {
        pin_to(SERVER_CORE)?;
    }
    if args.sandbox_only {
        let (native, component, calls) = runtime()?.block_on(async {
            let runtime = Runtime::new(DEFAULT_PLUGIN, Limits::default())?;
            let db = open_db(dir.path(), "sandbox.db", sync).await?;
            let (native, component) = sandbox(&runtime, &db, args.events, load).await?;
            anyhow::Ok((
                native,
                component,
                Calls::measure(&runtime, args.events).await?,
            ))
        })?;
        println!("{} deliveries of {body_bytes} bytes", args.events);
        print_sandbox(&native, &component, calls);
        return Ok(());
    }
    let (floor_1, floor_c, floor_event_only, native, component, calls) =
        runtime()?.block_on(async {
            let runtime = Runtime::new(DEFAULT_PLUGIN, Limits::default())?;
            let floor_1 = floor(
                open_db(dir.path(), "floor1.db", sync).await?,
                signed("floor1", args.events, load),
                1,
                FloorWork::Mapped,
            )
            .await?;
            let floor_c = floor(
                open_db(dir.path(), "floorc.db", sync).await?,
                signed("floorc", args.events, load),
                c,
                FloorWork::Mapped,
            )
            .await?;
            let floor_event_only = floor(
                open_db(dir.path(), "floore.db", sync).await?,
                signed("floore", args.events, load),
                c,
                FloorWork::EventOnly,
            )
            .await?;
            let sandbox_db = open_db(dir.path(), "sandbox.db", sync).await?;
            let (native, component) =
                sandbox(&runtime, &sandbox_db, args.events.min(2000), load).await?;
            let calls = Calls::measure(&runtime, args.events.min(2000)).await?;
            anyhow::Ok((floor_1, floor_c, floor_event_only, native, component, calls))
        })?;

    // 3 and 4: `serve` on the server's core, the load generator on the other.
    if pinned {
        pin_to(LOAD_CORE)?;
    }
    let core = pinned.then_some(SERVER_CORE);
    let database_url = sqlite_url(dir.path(), "serve.db", sync);
    let cache = dir.path().join("component-cache");
    let rt = runtime()?;
    let (serve_phases, start_cold_ms, start_cached_ms, idle_rss, loaded_rss) =
        rt.block_on(async {
            // The first start compiles the component and fills the cache.
            let cold = Server::start(&binary, &database_url, &cache, core).await?;
            let start_cold_ms = cold.start_ms;
            drop(cold);
            let server = Server::start(&binary, &database_url, &cache, core).await?;
            let idle_rss = server.rss_mib();
            let url = format!("{}/webhooks/stripe", server.base);
            let client = reqwest::Client::new();
            let mut phases = Vec::new();
            for (round, concurrency) in [1, c].into_iter().enumerate() {
                let requests = signed(&format!("serve{round}"), args.events, load);
                let (load, url) = (client.clone(), url.clone());
                let phase = drive(args.events, concurrency, move |i| {
                    let (client, url, requests) = (load.clone(), url.clone(), requests.clone());
                    async move {
                        let (b, sig) = &requests[i];
                        let r = client
                            .post(&url)
                            .header("Stripe-Signature", sig)
                            .body(b.clone())
                            .send()
                            .await?;
                        ensure!(r.status() == 200, "status {}", r.status());
                        Ok(())
                    }
                })
                .await?;
                let groups = server.commit_counters(&client).await?;
                phases.push((concurrency, phase, groups));
            }
            let loaded_rss = server.rss_mib();
            let start_cached_ms = server.start_ms;
            drop(server);
            // Every 2xx is in the log with its effect.
            let (events, _, effects) = Db::open(&database_url).await?.counts().await?;
            ensure!(
                events as usize == 2 * args.events && effects as usize == 2 * args.events,
                "serve stored {events} events and {effects} effects for {} deliveries",
                2 * args.events
            );
            anyhow::Ok((phases, start_cold_ms, start_cached_ms, idle_rss, loaded_rss))
        })?;

    let ratio = component.total() / native.total();
    let serve_c = &serve_phases[1].1;
    // Each phase's share of the counters (they run on between phases).
    let counters = |i: usize| {
        let (groups, deliveries, conflicts) = serve_phases[i].2;
        let (g0, d0, x0) = if i == 0 {
            (0.0, 0.0, 0.0)
        } else {
            serve_phases[i - 1].2
        };
        (groups - g0, deliveries - d0, conflicts - x0)
    };
    let group_size = |i: usize| {
        let (groups, deliveries, _) = counters(i);
        deliveries / groups.max(1.0)
    };
    let conflicts = |i: usize| counters(i).2;
    let report = json!({
        "machine": machine(cores),
        "pinned": if pinned { json!({ "server": SERVER_CORE, "load_generator": LOAD_CORE }) } else { Value::Null },
        "events_per_phase": args.events,
        "concurrency": c,
        "tenants": args.tenants,
        "payload": { "kind": format!("{:?}", args.payload).to_lowercase(), "body_bytes": body_bytes },
        "sqlite_synchronous": sync,
        "floor": { "c1": floor_1.json(), "cN": floor_c.json(), "cN_event_only": floor_event_only.json() },
        "sandbox": { "native": native.json(), "component": component.json(), "ratio": ratio, "calls": calls.json() },
        "serve": { "c1": serve_phases[0].1.json(), "cN": serve_c.json() },
        "serve_mean_group_commit": { "c1": group_size(0), "cN": group_size(1) },
        "serve_state_conflicts": { "c1": conflicts(0), "cN": conflicts(1) },
        "serve_vs_floor": serve_c.per_second / floor_c.per_second,
        "serve_vs_event_only_floor": serve_c.per_second / floor_event_only.per_second,
        "start_ms": { "compiling": start_cold_ms, "from_cache": start_cached_ms },
        "serve_rss_mib": { "idle": idle_rss, "after_load": loaded_rss },
    });
    std::fs::write(&args.report, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.report.display()))?;

    println!("machine: {}", report["machine"]);
    println!(
        "sqlite synchronous={sync}, {} events per phase to {} tenants, {body_bytes}-byte bodies, {}",
        args.events,
        args.tenants,
        if pinned {
            "server on core 0, load generator on core 1"
        } else {
            "not pinned"
        }
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        "phase", "events/s", "p50 ms", "p99 ms"
    );
    let row = |name: String, p: &Phase| {
        println!(
            "{name:<44} {:>9.0} {:>9.2} {:>9.2}",
            p.per_second, p.p50_ms, p.p99_ms
        )
    };
    row(
        "floor: native verify+parse+map+commit, c=1".into(),
        &floor_1,
    );
    row(
        format!("floor: native verify+parse+map+commit, c={c}"),
        &floor_c,
    );
    row(
        format!("floor: event row + one effect only, c={c}"),
        &floor_event_only,
    );
    for (conc, p, _) in &serve_phases {
        row(format!("psa-billing serve over HTTP, c={conc}"), p);
    }
    println!(
        "serve: {:.1} deliveries per group commit at c=1, {:.1} at c={c}; {} deliveries handled again after a state conflict at c={c}",
        group_size(0),
        group_size(1),
        conflicts(1)
    );
    print_sandbox(&native, &component, calls);
    println!(
        "serve/floor at c={c}: {:.2}× ({:.2}× the event-only floor); serve start: {start_cold_ms:.0} ms compiling, {start_cached_ms:.0} ms from the cache; serve RSS {idle_rss:.0} MiB idle, {loaded_rss:.0} MiB after load",
        serve_c.per_second / floor_c.per_second,
        serve_c.per_second / floor_event_only.per_second
    );
    println!("report: {}", args.report.display());
    Ok(())
}
