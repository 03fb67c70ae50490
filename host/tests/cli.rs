//! The `psa-billing` binary as a user runs it.

mod common;

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The API token the `serve` processes of these tests run with.
const CLI_TOKEN: &str = "cli-test-token-0123";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_psa-billing"));
    c.env_remove("STRIPE_WEBHOOK_SECRET")
        .env_remove("PSA_BILLING_API_TOKEN")
        .env("RUST_LOG", "warn");
    c
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn scenario_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/fixtures/events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn the_fixture_corpus_replays_to_its_expected_effects() {
    let out = bin()
        // The default log level, as a user runs it.
        .env_remove("RUST_LOG")
        .arg("replay")
        .args(scenario_dirs())
        .arg("--expect")
        .arg(repo().join("tests/fixtures/expected"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Every line printed is JSON.
    let mut events = std::collections::BTreeSet::new();
    for line in stdout(&out).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        events.insert(v["event_id"].to_string());
    }
    // One closing line counts what was compared, and nothing else is said:
    // the corpus's deliberately failing events are outcomes, not log noise.
    let err = stderr(&out);
    let files: usize = scenario_dirs()
        .iter()
        .map(|d| {
            std::fs::read_dir(d)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .path()
                        .extension()
                        .is_some_and(|x| x == "json")
                })
                .count()
        })
        .sum();
    assert!(files >= events.len() && files > 20, "{files} event files");
    assert_eq!(
        err.trim(),
        format!(
            "{} scenarios, {files} events: all match",
            scenario_dirs().len()
        ),
        "{err}"
    );
}

#[test]
fn replay_reports_a_difference_and_fails() {
    let expected = tempfile::tempdir().unwrap();
    let scenario = repo().join("tests/fixtures/events/connect-payment");
    let dir = expected.path().join("connect-payment");
    std::fs::create_dir_all(&dir).unwrap();
    let good = repo().join("tests/fixtures/expected/connect-payment");
    for entry in std::fs::read_dir(&good).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        // Change one amount: the harness must notice.
        std::fs::write(
            dir.join(p.file_name().unwrap()),
            text.replace("10000", "10001"),
        )
        .unwrap();
    }
    let out = bin()
        .arg("replay")
        .arg(&scenario)
        .arg("--expect")
        .arg(expected.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("DIFFERENCE"), "{err}");
    assert!(
        err.contains("1 scenario, ")
            && err.contains(" in 1 scenario differ: ")
            && err.contains("connect-payment"),
        "{err}"
    );
}

#[test]
fn quote_reproduces_the_seed_000_example() {
    let out = bin()
        .args(["quote", "--amount", "100.00", "--currency", "usd"])
        .args(["--application-fee-percent", "2.5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let q: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(q["processor_fee"]["amount"], 320);
    assert_eq!(q["application_fee"]["amount"], 250);
    assert_eq!(q["net"]["amount"], 9430);
    assert_eq!(q["net"]["display"], "94.30");
}

#[test]
fn quote_refuses_bad_amounts_clearly() {
    for (amount, currency, says) in [
        ("1.001", "usd", "decimal"),
        ("10.5", "jpy", "decimal"),
        ("-5", "usd", "negative"),
        ("5", "zzz", "unknown currency"),
    ] {
        let out = bin()
            .args(["quote", "--amount", amount, "--currency", currency])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(says),
            "{amount} {currency}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn serve_refuses_to_start_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("STRIPE_WEBHOOK_SECRET"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("psa-billing.db").exists());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `psa-billing serve` in `dir` (the SQLite default there) with webhook
/// secret `secret` and API token `tok`, once it answers `/healthz`; and its
/// base URL.
async fn serve_in(dir: &Path, secret: &str, stderr: Stdio) -> (std::process::Child, String) {
    let port = free_port();
    let server = bin()
        .current_dir(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("STRIPE_WEBHOOK_SECRET", secret)
        .env("PSA_BILLING_API_TOKEN", CLI_TOKEN)
        .stderr(stderr)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (server, base)
}

/// The README's flow: serve on the SQLite default, sign an event with the
/// CLI, deliver it with an HTTP client, read the effect back, stop cleanly.
#[tokio::test]
async fn serve_sign_deliver_read_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = serve_in(dir.path(), "whsec_readme", Stdio::piped()).await;
    let client = reqwest::Client::new();
    assert!(
        dir.path().join("psa-billing.db").exists(),
        "default database path"
    );

    let event = std::fs::read(
        repo().join("tests/fixtures/events/connect-payment/01-payment_intent_succeeded.json"),
    )
    .unwrap();
    let mut sign = bin()
        .args(["sign", "--secret", "whsec_readme"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sign.stdin.take().unwrap().write_all(&event).unwrap();
    let header = stdout(&sign.wait_with_output().unwrap()).trim().to_string();

    let r = client
        .post(format!("{base}/webhooks/stripe"))
        .header("Stripe-Signature", &header)
        .body(event.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fx: Value = client
        .get(format!("{base}/v1/effects"))
        .bearer_auth(CLI_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fx["effects"][0]["kind"], "payment.succeeded");

    // SIGTERM: graceful shutdown, exit 0.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.wait().unwrap();
    assert!(status.success(), "exit status {status}");
}

fn quote_with_rules(extra: &[&str]) -> Value {
    let out = bin()
        .arg("quote")
        .arg("--rules")
        .arg(repo().join("examples/rules/default.toml"))
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn quote_applies_the_example_rules_file() {
    let q = quote_with_rules(&["--amount", "100.00"]);
    assert_eq!(
        (
            q["processor_fee"]["amount"].as_i64(),
            q["application_fee"]["amount"].as_i64()
        ),
        (Some(320), Some(250))
    );
    // International card: 2.9% + 1.5% + 30¢.
    let q = quote_with_rules(&["--amount", "100.00", "--international"]);
    assert_eq!(q["processor_fee"]["amount"], 470);
    // The tenant with graduated tiers: 3% of $1,000 + 2% of $500.
    let q = quote_with_rules(&[
        "--amount",
        "1500.00",
        "--tenant",
        "5f0c1a52-0d1e-4c3a-9a57-0c1b6f3a2d11",
    ]);
    assert_eq!(q["application_fee"]["amount"], 4000);
    // The customer pays the processor fee: grossed up to $103.30.
    let q = quote_with_rules(&["--amount", "100.00", "--tenant", "customer-pays"]);
    assert_eq!(q["gross"]["amount"], 10330);
    assert_eq!(q["net"]["amount"], 10330 - 330 - 250);
    // ACH is capped at $5.00.
    let q = quote_with_rules(&["--amount", "5000.00", "--payment-method", "us_bank_account"]);
    assert_eq!(q["processor_fee"]["amount"], 500);
}

#[test]
fn a_bad_rules_file_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "rounding = \"half_up\"\n[platform]\npercent = \"250\"\n",
    )
    .unwrap();
    let out = bin()
        .args(["quote", "--amount", "1.00", "--rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("line 3") && err.contains("between 0 and 100"),
        "{err}"
    );
}

fn flow(name: &str) -> Value {
    flow_with(name, name)
}

fn flow_with(name: &str, file: &str) -> Value {
    let out = bin()
        .args(["quote", name])
        .arg(repo().join(format!("examples/flows/{file}.json")))
        .arg("--rules")
        .arg(repo().join("examples/rules/default.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

#[test]
fn quote_covers_the_seed_flows() {
    // Seed 002: $100 offer, 5% platform fee into escrow, 20% service fee.
    let e = flow("escrow");
    assert_eq!(e["hold"]["amount"], 10_500);
    assert_eq!(e["on_accept"][0]["amount"]["amount"], 500);
    assert_eq!(e["on_complete"][0]["amount"]["amount"], 2_000);
    assert_eq!(e["on_complete"][1]["to"], "contractor");
    assert_eq!(e["on_complete"][1]["amount"]["amount"], 8_000);
    assert_eq!(e["on_cancel"][0]["amount"]["amount"], 10_500);
    assert_eq!(flow_with("wallet", "withdrawal")["allowed"], true);
    // Seed 001: lines rounded one by one; the total is their sum.
    let i = flow("invoice");
    assert_eq!(i["lines"][0]["total"]["amount"], 5_997 - 600 + 445);
    assert_eq!(i["total"]["amount"], 5_997 - 600 + 445 + 2_000);
    // Seed 004: 10 -> 12 seats at $50 with 20 of 30 days left.
    let s = flow("seats");
    assert_eq!(s["license_count"], 12);
    assert_eq!(s["net"]["amount"], 6_667);
    let r = flow("refund");
    assert_eq!(r["application_fee_refunded"]["amount"], 75);
    assert_eq!(r["full"], false);
}

#[test]
fn a_flow_with_bad_input_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.json");
    std::fs::write(
        &path,
        r#"{"kind":"withdrawal","amount":"90.00","currency":"usd","available":"80.00"}"#,
    )
    .unwrap();
    let out = bin().args(["quote", "wallet"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("exceeds the available balance"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&path, r#"{"amount":"1.00"}"#).unwrap();
    let out = bin().args(["quote", "escrow"]).arg(&path).output().unwrap();
    assert!(
        stderr(&out).contains("missing field `currency`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn quote_with_a_custom_fee_rules_component() {
    let rules = psa_billing::testing::VOLUME_DISCOUNT_RULES_PATH;
    let quote = |volume: &str| {
        let out = bin()
            .args(["quote", "--amount", "100.00", "--monthly-volume", volume])
            .args(["--fee-rules", rules])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<Value>(&stdout(&out)).unwrap()
    };
    assert_eq!(quote("0")["application_fee"]["amount"], 250);
    assert_eq!(quote("9950.00")["application_fee"]["amount"], 150);
    // A billing plugin given as fee rules is refused with the world it lacks.
    let out = bin()
        .args(["quote", "--amount", "1.00", "--fee-rules"])
        .arg(psa_billing::testing::HOSTILE_PLUGIN_PATH)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("fee-rules-plugin"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ledger_post_then_balances_on_a_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let post = |json: &str| {
        let mut child = bin()
            .args(["ledger", "post", "shop-1", "-", "--database-url", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(json.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let hold = post(
        r#"{"id": "offer-1:hold", "currency": "usd",
            "movements": [{"from": "customer", "to": "escrow", "amount": "105.00"}]}"#,
    );
    assert!(hold.status.success(), "{}", stderr(&hold));
    let refused = post(
        r#"{"id": "bad", "currency": "usd",
            "movements": [{"from": "customer", "to": "bank", "amount": "1.00"}]}"#,
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("unknown account"),
        "{}",
        stderr(&refused)
    );
    let out = bin()
        .args(["ledger", "balances", "shop-1", "--database-url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let b: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(b["balances"]["usd"]["escrow"]["amount"], 10_500);
    assert_eq!(b["balances"]["usd"]["customer"]["display"], "-105.00");
}

#[test]
fn tenants_register_lookup_list_and_unregister_on_a_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tenants.db").display());
    let run = |args: &[&str]| {
        bin()
            .arg("tenants")
            .args(args)
            .args(["--database-url", &url])
            .output()
            .unwrap()
    };
    let out = run(&["register", "acct_1Cli", "tenant-cli"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let looked: Value = serde_json::from_str(&stdout(&run(&["lookup", "acct_1Cli"]))).unwrap();
    assert_eq!(looked["tenant"], "tenant-cli");
    let list: Value = serde_json::from_str(&stdout(&run(&["list"]))).unwrap();
    assert_eq!(
        list["tenants"],
        serde_json::json!([{"account": "acct_1Cli", "tenant": "tenant-cli"}])
    );
    // Not an account id: refused with the reason, nothing stored.
    let bad = run(&["register", "cus_1", "tenant-cli"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("acct_"), "{}", stderr(&bad));
    assert!(run(&["unregister", "acct_1Cli"]).status.success());
    let list: Value = serde_json::from_str(&stdout(&run(&["list"]))).unwrap();
    assert_eq!(list["tenants"], serde_json::json!([]));
}

fn check_plugin(path: &Path) -> (Output, Value) {
    check_plugin_as(path, &[])
}

fn check_plugin_as(path: &Path, args: &[&str]) -> (Output, Value) {
    let out = bin()
        .arg("check-plugin")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_str(&stdout(&out)).unwrap_or(Value::Null);
    (out, report)
}

#[test]
fn check_plugin_names_the_world_and_runs_the_sample_quotes() {
    let (out, report) = check_plugin(Path::new(psa_billing::testing::VOLUME_DISCOUNT_RULES_PATH));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report["world"], "psa:billing/fee-rules-plugin");
    assert_eq!(report["violations"], 0);
    assert_eq!(report["quotes"].as_array().unwrap().len(), 6);
    // 1.5% above the $10,000 monthly volume: 1.50 on 100.00.
    assert_eq!(
        report["quotes"][0]["result"]["application_fee"]["amount"],
        150
    );

    // The built-in plugin, written out by `component`, is a billing plugin.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugin.wasm");
    let written = bin().arg("component").arg(&file).output().unwrap();
    assert!(written.status.success(), "{}", stderr(&written));
    let (out, report) = check_plugin(&file);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report["world"], "psa:billing/billing-plugin");
    assert!(
        report["exports"]
            .as_array()
            .unwrap()
            .contains(&Value::from("psa:billing/webhooks@0.1.0"))
    );
}

#[test]
fn check_plugin_refuses_what_it_cannot_use_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let (out, report) = check_plugin(&core);
    assert!(!out.status.success());
    assert_eq!(report["binary"], "core module");
    assert!(stderr(&out).contains("wasm32-wasip2"), "{}", stderr(&out));

    let text = dir.path().join("text.wasm");
    std::fs::write(&text, b"not wasm at all").unwrap();
    let (out, report) = check_plugin(&text);
    assert!(!out.status.success());
    assert_eq!(report["binary"], "not WebAssembly");

    // Fee rules that leak a cent, or loop, for one tenant: reported, exit 1.
    let hostile = Path::new(psa_billing::testing::HOSTILE_FEE_RULES_PATH);
    let (out, report) = check_plugin(hostile);
    assert!(
        out.status.success(),
        "well-behaved for other tenants: {report}"
    );
    for (tenant, what) in [("leak", "refused"), ("loop", "failed")] {
        let (out, report) = check_plugin_as(hostile, &["--tenant", tenant]);
        assert!(!out.status.success(), "{tenant}");
        assert_eq!(report["world"], "psa:billing/fee-rules-plugin");
        assert_eq!(report["violations"], 6, "{tenant}: {report}");
        assert!(
            report["quotes"][0].get(what).is_some(),
            "{tenant}: {report}"
        );
    }
}

#[test]
fn the_template_builds_loads_and_quotes_as_its_readme_says() {
    let template = Path::new(psa_billing::testing::FEE_RULES_TEMPLATE_PATH);
    let (out, report) = check_plugin(template);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(report["world"], "psa:billing/fee-rules-plugin");
    let out = bin()
        .args(["quote", "--amount", "100.00", "--fee-rules"])
        .arg(template)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let q: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(q["processor_fee"]["display"], "3.20");
    assert_eq!(q["application_fee"]["display"], "2.00");
    assert_eq!(q["net"]["display"], "94.80");
}

#[tokio::test]
async fn dead_letters_are_replayed_once_the_cause_is_fixed() {
    use psa_billing::pipeline::RetryPolicy;
    let (_dir, url, db) = temp_sqlite("dead").await;
    // Misconfigured: a strict API version the events do not have, one attempt.
    let runtime =
        psa_billing::Runtime::new(psa_billing::DEFAULT_PLUGIN, Default::default()).unwrap();
    let pipeline = psa_billing::Pipeline::new(runtime, db.clone(), vec![], 0)
        .with_api_version("1999-01-01".into(), true)
        .with_retry_policy(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        });
    let body = paid_fixture();
    assert!(pipeline.receive_unsigned(&body).await.is_err());
    let dead = db.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "one attempt allowed: dead-lettered at once");
    let id = dead[0].0.id.clone();
    db.close().await;

    let out = bin()
        .args(["replay", "--dead-letters", "--database-url", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let line: Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(
        (line["event_id"].as_str(), line["status"].as_str()),
        (Some(id.as_str()), Some("processed"))
    );
    let db = psa_billing::Db::open(&url).await.unwrap();
    assert_eq!(
        db.event_status(&id).await.unwrap().as_deref(),
        Some("processed")
    );
    assert!(db.dead_letters().await.unwrap().is_empty());
    // Nothing left: a second replay has nothing to do and succeeds.
    let again = bin()
        .args(["replay", "--dead-letters", "--database-url", &url])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(stdout(&again).is_empty());
}

#[tokio::test]
async fn delivery_logs_carry_the_event_and_its_tenant_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let mut child = bin()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env(
            "PSA_BILLING_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("l.db").display()),
        )
        .env("STRIPE_WEBHOOK_SECRET", common::SECRET)
        .env("PSA_BILLING_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    common::wait_healthy(&client, &base).await;
    let url = format!("{base}/webhooks/stripe");
    let answer = common::deliver(client, url, common::payment("logs", 7, 3)).await;
    assert_eq!(answer, "accepted");
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let line = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["message"] == "delivery processed")
        .expect("a JSON line for the delivery");
    assert_eq!(line["span"]["event"], "evt_logs_0007", "{line}");
    assert_eq!(line["span"]["tenant"], "tenant-1", "{line}");
    assert_eq!(line["span"]["type"], "payment_intent.succeeded", "{line}");
}

/// The pipeline does not look an event up before handling it: the commit
/// and the failure record both refuse an event already processed. So a
/// redelivery whose handling would now fail (here: a strict API version
/// configured since) is still answered as a duplicate, and its record and
/// effects are untouched.
#[tokio::test]
async fn a_redelivery_of_a_processed_event_is_a_duplicate_even_if_handling_it_now_fails() {
    let (_dir, _url, db) = temp_sqlite("dup").await;
    let runtime =
        psa_billing::Runtime::new(psa_billing::DEFAULT_PLUGIN, Default::default()).unwrap();
    let body = paid_fixture();
    let lenient = psa_billing::Pipeline::new(runtime.clone(), db.clone(), vec![], 0);
    let first = lenient.receive_unsigned(&body).await.unwrap();
    let psa_billing::pipeline::Outcome::Accepted { event_id, .. } = first else {
        panic!("first delivery: {first:?}");
    };
    let effects_before = db.effects_after(0, 100).await.unwrap().len();
    let strict = psa_billing::Pipeline::new(runtime, db.clone(), vec![], 0)
        .with_api_version("1999-01-01".into(), true);
    let again = strict.receive_unsigned(&body).await.unwrap();
    assert_eq!(
        again,
        psa_billing::pipeline::Outcome::Duplicate {
            event_id: event_id.clone()
        }
    );
    let rec = db.event(&event_id).await.unwrap().unwrap();
    assert_eq!((rec.status.as_str(), rec.last_error), ("processed", None));
    assert_eq!(
        db.effects_after(0, 100).await.unwrap().len(),
        effects_before
    );
}

/// A SQLite database in a temporary directory: the directory, its URL, it.
async fn temp_sqlite(name: &str) -> (tempfile::TempDir, String, psa_billing::Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join(format!("{name}.db")).display()
    );
    let db = psa_billing::Db::open(&url).await.unwrap();
    (dir, url, db)
}

/// A fixture `payment_intent.succeeded` event.
fn paid_fixture() -> Vec<u8> {
    std::fs::read(
        repo()
            .join("tests/fixtures/events/card-declined-then-paid/02-payment_intent_succeeded.json"),
    )
    .unwrap()
}

/// Every `serve` setting is in the README's configuration table, under its
/// flag, with the default `serve --help` states.
#[test]
fn the_readme_configuration_table_agrees_with_serve_help() {
    let out = bin().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    // (flag, env, default) of each option, from its block of help text.
    let mut options = Vec::new();
    for block in help.split("\n      --").skip(1) {
        let flag = format!("--{}", block.split([' ', '\n']).next().unwrap());
        let between = |open: &str, close: char| {
            block
                .split_once(open)
                .map(|(_, rest)| rest.split(close).next().unwrap().to_string())
        };
        let Some(env) = between("[env: ", ']') else {
            continue;
        };
        let env = env.trim_end_matches('=').to_string();
        options.push((flag, env, between("[default: ", ']')));
    }
    assert!(options.len() > 20, "{help}");
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    for (flag, env, default) in &options {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{env}` |")))
            .unwrap_or_else(|| panic!("README's configuration table has no row for {env}"));
        let cells: Vec<&str> = row.split(" | ").collect();
        assert_eq!(cells[1], format!("`{flag}`"), "{row}");
        if let Some(default) = default {
            let documented = cells[2].trim_start_matches('`');
            assert!(
                documented.starts_with(default.as_str()),
                "README says {env} defaults to {:?}; serve --help says {default}",
                cells[2]
            );
        }
    }
}

/// `reconcile` against a stand-in for Stripe's list endpoint that reports
/// one charge on the tenant's account: the ledger has none of it, so the
/// command prints the line and exits 1; for a period without balance
/// transactions it exits 0. Without a key it refuses clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_exits_1_on_a_difference_and_0_without() {
    use axum::extract::Query;
    use std::collections::HashMap;
    let list = |Query(q): Query<HashMap<String, String>>| async move {
        // One charge created at 1_764_000_000, on the connected account only.
        let from: i64 = q["created[gte]"].parse().unwrap();
        let data = if from <= 1_764_000_000 {
            vec![
                serde_json::json!({"id": "txn_1", "object": "balance_transaction",
                "type": "charge", "amount": 1000, "fee": 59, "net": 941, "currency": "usd",
                "created": 1_764_000_000, "fee_details": [{"type": "stripe_fee", "amount": 59}],
                "source": {"id": "ch_1", "object": "charge", "payment_intent": "pi_1"}}),
            ]
        } else {
            vec![]
        };
        axum::Json(serde_json::json!({"object": "list", "has_more": false, "data": data}))
    };
    let accounts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = accounts.clone();
    let app = axum::Router::new().route(
        "/v1/balance_transactions",
        axum::routing::get(move |headers: axum::http::HeaderMap, q| {
            let account = headers
                .get("stripe-account")
                .map(|v| v.to_str().unwrap().to_string());
            seen.lock().unwrap().push(account.clone());
            async move {
                match account {
                    Some(_) => axum::response::IntoResponse::into_response(list(q).await),
                    None => axum::response::IntoResponse::into_response(axum::Json(
                        serde_json::json!({"object": "list", "has_more": false, "data": []}),
                    )),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], key: bool| {
        let mut c = bin();
        c.current_dir(dir.path()).args(args);
        if key {
            c.env("STRIPE_SECRET_KEY", "sk_test_cli")
                .env("PSA_BILLING_STRIPE_URL", &url);
        } else {
            c.env_remove("STRIPE_SECRET_KEY");
        }
        c.output().unwrap()
    };
    let out = run(&["tenants", "register", "acct_1Cli", "t-cli"], false);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = tokio::task::block_in_place(|| {
        run(
            &[
                "reconcile",
                "--tenant",
                "t-cli",
                "--from",
                "2025-11-01",
                "--to",
                "2025-12-01",
            ],
            true,
        )
    });
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("pi_1"), "{table}");
    assert!(table.contains("missing_in_ledger"), "{table}");
    assert!(table.contains("differences: 1"), "{table}");
    assert!(stderr(&out).contains("1 difference"), "{}", stderr(&out));
    assert!(
        accounts
            .lock()
            .unwrap()
            .contains(&Some("acct_1Cli".to_string()))
    );

    let out = tokio::task::block_in_place(|| {
        run(
            &[
                "reconcile",
                "--all",
                "--from",
                "2025-12-01",
                "--to",
                "2026-01-01",
                "--format",
                "json",
            ],
            true,
        )
    });
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["differences"], 0);
    assert_eq!(report["reports"][0]["tenant"], "t-cli");

    let out = run(
        &[
            "reconcile",
            "--all",
            "--from",
            "2025-12-01",
            "--to",
            "2026-01-01",
        ],
        false,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("STRIPE_SECRET_KEY"),
        "{}",
        stderr(&out)
    );
}

/// `trigger`, as the README shows it: realistic events from Stripe's
/// samples, signed and posted to a running `serve`, one at a time and as a
/// scenario whose events share ids; `--print`, `--list`, and an unknown type.
#[tokio::test]
async fn trigger_posts_realistic_signed_events_and_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = serve_in(dir.path(), "whsec_trigger", Stdio::null()).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/webhooks/stripe");
    let trigger = |args: &[&str]| {
        bin()
            .arg("trigger")
            .args(args)
            .args(["--url", &url, "--secret", "whsec_trigger"])
            .output()
            .unwrap()
    };

    let out = trigger(&[
        "payment_intent.succeeded",
        "--tenant",
        "t1",
        "--set",
        "data.object.amount=5000",
        "--set",
        "data.object.currency=eur",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"status\":\"accepted\""),
        "{}",
        stdout(&out)
    );

    let scenario = dir.path().join("subscription.json");
    std::fs::write(
        &scenario,
        r#"{"ids": {"sub": "sub_"},
            "events": [
              {"type": "customer.subscription.created",
               "set": {"data.object.id": "$sub", "data.object.status": "trialing"}},
              {"type": "customer.subscription.deleted", "set": {"data.object.id": "$sub"}}
            ]}"#,
    )
    .unwrap();
    let out = trigger(&["--scenario", scenario.to_str().unwrap(), "--tenant", "t1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));

    let fx: Value = client
        .get(format!("{base}/v1/effects"))
        .bearer_auth(CLI_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let effects = fx["effects"].as_array().unwrap();
    let paid = &effects[0]["effect"];
    assert_eq!(paid["kind"], "payment.succeeded");
    assert_eq!(
        paid["amount"]["amount"], 5000,
        "the amount set is the amount received"
    );
    assert_eq!(paid["amount"]["currency"], "eur");
    assert_eq!(paid["tenant"], "t1");
    let subs: Vec<&Value> = effects
        .iter()
        .map(|e| &e["effect"])
        .filter(|e| e["kind"] == "subscription.changed")
        .collect();
    assert_eq!(subs.len(), 2, "{fx}");
    assert_eq!(
        subs[0]["subscription"], subs[1]["subscription"],
        "one shared id"
    );
    assert_eq!(subs[0]["status"], "trialing");
    assert_eq!(subs[1]["status"], "canceled");

    // --print: the header and the body, which `serve` accepts as they are.
    let out = trigger(&["invoice.paid", "--tenant", "t1", "--print"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let (header, body) = text.split_once('\n').unwrap();
    let header = header.strip_prefix("Stripe-Signature: ").unwrap();
    let body = body.strip_suffix('\n').unwrap_or(body);
    let tampered = body.replacen("\"livemode\": false", "\"livemode\":false", 1);
    assert_ne!(tampered, body);
    let r = client
        .post(&url)
        .header("Stripe-Signature", header)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "signed bytes are the bytes printed");
    let r = client
        .post(&url)
        .header("Stripe-Signature", header)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    let list = bin().args(["trigger", "--list"]).output().unwrap();
    assert!(list.status.success());
    assert!(stdout(&list).lines().any(|l| l.starts_with("checkout.session.completed") && l.ends_with("checkout.session")));
    let out = trigger(&["payment_intent.exploded"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a Stripe event type"),
        "{}",
        stderr(&out)
    );

    let pid = server.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    server.wait().unwrap();
}

/// Runs `args` with its standard output read for one line (or not at all)
/// and then closed, as `| head -1` and `| true` do; returns the status and
/// what it wrote to standard error.
fn with_a_closed_pipe(
    args: &[&str],
    stdin: Option<&[u8]>,
    read_a_line: bool,
) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = bin()
        .args(args)
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    if read_a_line {
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "{args:?} printed a first line");
    } else {
        drop(out);
    }
    if let Some(input) = stdin {
        let _ = child.stdin.take().unwrap().write_all(input);
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap(), err)
}

/// Ended by its own output's reader going away: success, or the
/// conventional SIGPIPE ending; never a panic.
fn ended_quietly(args: &[&str], status: std::process::ExitStatus, err: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(
        status.success() || status.signal() == Some(SIGPIPE),
        "{args:?}: {status:?} {err}"
    );
}

/// The signal a write to a closed pipe raises (Linux).
const SIGPIPE: i32 = 13;

#[test]
fn commands_end_quietly_on_a_closed_pipe() {
    // Output far larger than a pipe buffer, the reader gone after one line.
    let (status, err) = with_a_closed_pipe(&["openapi"], None, true);
    ended_quietly(&["openapi"], status, &err);
    let corpus = repo().join("tests/fixtures/events");
    let scenarios: Vec<String> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    let mut replay = vec!["replay"];
    replay.extend(scenarios.iter().map(String::as_str));
    let (status, err) = with_a_closed_pipe(&replay, None, true);
    ended_quietly(&["replay"], status, &err);
    // The reader gone before anything is written (`| true`).
    let quote = ["quote", "--amount", "100.00", "--currency", "usd"];
    let (status, err) = with_a_closed_pipe(&quote, None, false);
    ended_quietly(&quote, status, &err);
    let sign = ["sign", "--secret", "whsec_pipe"];
    let (status, err) = with_a_closed_pipe(&sign, Some(b"{\"id\":\"evt_1\"}"), false);
    ended_quietly(&sign, status, &err);
}

/// `replay --dead-letters` takes `serve`'s Stripe settings: a dead
/// settlement job (which reads the payment at Stripe) is retried through
/// them, not refused as if no key were set.
#[tokio::test]
async fn dead_settlement_jobs_are_replayed_with_the_stripe_settings() {
    use psa_billing::pipeline::RetryPolicy;
    let (_dir, url, db) = temp_sqlite("dead-job").await;
    // Nothing listens there: every Stripe call fails as unreachable.
    let closed = format!("http://127.0.0.1:{}/", common::free_port());
    let mut config = psa_billing::stripe::StripeConfig::new("sk_test_replay");
    config.base_url = Some(closed.clone());
    config.max_attempts = 1;
    let api = psa_billing::stripe::StripeApi::new(config).unwrap();
    let runtime = psa_billing::Runtime::new(psa_billing::DEFAULT_PLUGIN, Default::default())
        .unwrap()
        .with_stripe(Some(api));
    let pipeline =
        psa_billing::Pipeline::new(runtime, db.clone(), vec![], 0).with_retry_policy(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        });
    pipeline.receive_unsigned(&paid_fixture()).await.unwrap();
    pipeline.queue_jobs().await.unwrap();
    pipeline.retry_due().await.unwrap();
    let dead = db.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "the settlement job is dead-lettered");
    assert!(dead[0].0.id.starts_with("job:"), "{}", dead[0].0.id);
    drop(pipeline);
    db.close().await;

    // Replayed with the settings: it reaches for Stripe (unreachable here),
    // where without them it would be refused as `denied`.
    let out = bin()
        .args(["replay", "--dead-letters", "--database-url", &url])
        .env("STRIPE_SECRET_KEY", "sk_test_replay")
        .env("PSA_BILLING_STRIPE_URL", &closed)
        .output()
        .unwrap();
    assert!(!out.status.success(), "it fails again: {}", stderr(&out));
    let line: Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    let reason = line["reason"].as_str().unwrap();
    assert!(
        !reason.contains("STRIPE_SECRET_KEY") && !reason.contains("denied"),
        "the replay called Stripe: {reason}"
    );
    assert!(
        reason.to_lowercase().contains("unreach") || reason.contains("connect"),
        "{reason}"
    );
}

/// One token reaches every tenant: `serve` refuses a short one where others
/// can reach it, and says what a good one is.
#[test]
fn a_short_api_token_is_refused_off_loopback() {
    let out = bin()
        .args([
            "serve",
            "--listen",
            &format!("0.0.0.0:{}", common::free_port()),
        ])
        .env("STRIPE_WEBHOOK_SECRET", "whsec_short")
        .env("PSA_BILLING_API_TOKEN", "t")
        .env("PSA_BILLING_DATABASE_URL", "sqlite::memory:")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("16 characters"), "{err}");
}
