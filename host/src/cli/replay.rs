//! `psa-billing replay`: fixture events through the real pipeline on an
//! in-memory database, compared with the expected effects.

use super::*;

#[derive(Args)]
pub(super) struct ReplayArgs {
    /// Event files, or directories whose *.json files form one scenario (run
    /// in name order against one store). Each argument gets a fresh store.
    #[arg(required_unless_present = "dead_letters")]
    paths: Vec<PathBuf>,
    /// Reprocess the dead-letter list of the database instead (after fixing
    /// what made them fail); exit 1 if any fails again.
    #[arg(long, conflicts_with_all = ["paths", "expect"])]
    pub(super) dead_letters: bool,
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
    /// With --dead-letters: the Stripe settings `serve` runs with, so that
    /// a dead settlement job (which reads Stripe) can succeed.
    #[command(flatten)]
    stripe: StripeArgs,
}

/// One replay scenario: its name and its event files in order.
pub(super) fn scenario_files(path: &Path) -> Result<(Option<String>, Vec<PathBuf>)> {
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
        Ok(Outcome::Rejected { event_id, reason }) => {
            vec![json!({ "event_id": event_id, "failed": reason })]
        }
    }
}

pub(super) async fn replay(a: ReplayArgs) -> Result<()> {
    if a.dead_letters {
        return replay_dead_letters(&a).await;
    }
    // The embedding's assembly compiles the component once; each scenario
    // gets a pipeline of its own on a fresh database in memory.
    let assembled = a
        .plugin
        .configure(Billing::builder().offline().database("sqlite::memory:"))
        .build()
        .await?;
    let runtime = assembled.pipeline().runtime().clone();
    let mut differences = 0;
    let (mut events, mut differing) = (0usize, Vec::new());
    for path in &a.paths {
        let (scenario, files) = scenario_files(path)?;
        let differences_before = differences;
        let db = Db::open("sqlite::memory:").await?;
        register_scenario_tenants(&runtime, &db, path).await?;
        let mut pipeline = a
            .routing
            .apply(Pipeline::new(runtime.clone(), db, Vec::new(), 0));
        if let Some(prices) = scenario_license_prices(path)? {
            pipeline = pipeline.with_license_prices(prices);
        }
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

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A scenario directory's `registry.txt`: one `acct_... tenant` per line,
/// registered before its events run.
pub(super) async fn register_scenario_tenants(
    runtime: &Runtime,
    db: &Db,
    scenario: &Path,
) -> Result<()> {
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
        crate::api::tenants::register(runtime, db, account, tenant.trim()).await?;
    }
    Ok(())
}

/// A scenario directory's `license-prices.txt`: one price per line, the
/// license prices its events are mapped with (instead of `--license-price`).
fn scenario_license_prices(scenario: &Path) -> Result<Option<Vec<String>>> {
    let file = scenario.join("license-prices.txt");
    if !file.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&file)?;
    let prices: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if let Some(bad) = prices.iter().find(|p| !p.starts_with("price_")) {
        bail!("{}: {bad:?} is not a price_... id", file.display());
    }
    Ok(Some(prices))
}

/// Expected files are compared as JSON values, line by line, so that key
/// order and spacing in a hand-edited file do not matter.
pub(super) fn normalise(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.to_string())))
        .collect()
}

/// `--dead-letters`: the database's dead letters redone with the Stripe
/// settings `serve` runs with; exits 1 when any fails again.
async fn replay_dead_letters(a: &ReplayArgs) -> Result<()> {
    let builder = Billing::builder().offline().database(&a.database_url);
    let builder = a
        .routing
        .configure(a.plugin.configure(a.stripe.configure(builder)?));
    let billing = builder.build().await?;
    let (pipeline, db) = (billing.pipeline(), billing.pipeline().db());
    let outcomes = pipeline.replay_dead_letters().await?;
    let mut failed = 0;
    for (id, outcome) in &outcomes {
        let line = match outcome {
            Ok(Outcome::Accepted { effects, .. }) => {
                json!({ "event_id": id, "status": "processed", "effects": effects.len() })
            }
            Ok(Outcome::Duplicate { .. }) => json!({ "event_id": id, "status": "duplicate" }),
            Ok(Outcome::Rejected { reason, .. }) => {
                failed += 1;
                json!({ "event_id": id, "status": "rejected", "reason": reason })
            }
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
    Ok(())
}
