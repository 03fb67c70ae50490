//! `psa-billing trigger`: `stripe trigger` without a Stripe account or a
//! network. It builds a realistic event of a type from Stripe's own sample
//! object for its resource (vendored in `tests/fixtures/stripe`), gives it
//! fresh ids and the current time, sets what the type implies (a succeeded
//! intent has succeeded and received its amount), applies `--set`, signs
//! it and posts it, or prints it. A scenario file triggers several events
//! whose ids are shared.
//!
//! Knows nothing about how events are handled: it only talks HTTP to an
//! endpoint, as Stripe does.

use super::*;

/// Stripe's sample object of every API resource (`resources.<name>`).
const SAMPLES: &str = include_str!("../../../tests/fixtures/stripe/fixtures3.json");
/// The webhook event types Stripe's API accepts for endpoints.
const EVENT_TYPES: &str = include_str!("../../../tests/fixtures/stripe/event-types.txt");
/// One event to trigger: its type and the fields a scenario sets on it.
type Step = (String, Vec<(String, Value)>);

/// The API version the events say they were rendered with.
const API_VERSION: &str = "2025-08-27.basil";

#[derive(Args)]
pub(super) struct TriggerArgs {
    /// The event type (`payment_intent.succeeded`...); see `--list`.
    #[arg(required_unless_present_any = ["list", "scenario"], conflicts_with = "scenario")]
    event_type: Option<String>,
    /// List the event types that can be triggered, with the resource each is built from.
    #[arg(long, conflicts_with = "scenario")]
    list: bool,
    /// A scenario file: several events sharing ids (see `docs/trigger.md`).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// The tenant: set as `metadata.tenant_id` of the event's object.
    #[arg(long)]
    tenant: Option<String>,
    /// A connected account's event (`account` on the event).
    #[arg(long, value_name = "acct_...")]
    account: Option<String>,
    /// Set a field: a dotted path from the event's root and a value, read as
    /// JSON when it is JSON (`5000`, `true`, `{"a":1}`), as text otherwise.
    /// Repeatable: `--set data.object.amount=5000 --set data.object.currency=eur`.
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
    /// The webhook endpoint.
    #[arg(
        long,
        env = "PSA_BILLING_WEBHOOK_URL",
        default_value = "http://127.0.0.1:8787/webhooks/stripe"
    )]
    url: String,
    /// The endpoint secret to sign with.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        required_unless_present = "list"
    )]
    secret: Option<String>,
    /// Print the signature header and the signed body instead of posting.
    #[arg(long)]
    print: bool,
}

pub(super) async fn trigger(a: TriggerArgs) -> Result<()> {
    let samples: Value = serde_json::from_str(SAMPLES).context("the vendored Stripe samples")?;
    let resources = &samples["resources"];
    if a.list {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for t in event_types() {
            let line = match resource_of(resources, t) {
                Some(r) => writeln!(out, "{t:<60} {r}"),
                None => writeln!(out, "{t:<60} (no sample object)"),
            };
            // A reader that stopped early (`| head`) is not an error.
            if line.is_err() {
                break;
            }
        }
        return Ok(());
    }
    let secret = a
        .secret
        .clone()
        .context("--secret (or STRIPE_WEBHOOK_SECRET) is required")?;
    let steps: Vec<Step> = match &a.scenario {
        Some(file) => scenario(file)?,
        None => {
            let t = a
                .event_type
                .clone()
                .expect("clap requires a type without --scenario");
            vec![(t, Vec::new())]
        }
    };
    let mut sets = Vec::new();
    for s in &a.sets {
        sets.push(parse_set(s)?);
    }
    let client = reqwest::Client::new();
    for (event_type, scenario_sets) in steps {
        let mut event = build(
            resources,
            &event_type,
            a.tenant.as_deref(),
            a.account.as_deref(),
        )?;
        let mut given = Vec::new();
        for (path, value) in scenario_sets.iter().chain(&sets) {
            set(&mut event, path, value.clone())?;
            given.push(path.as_str());
        }
        implied(&mut event["data"]["object"], &event_type, &given);
        let body = serde_json::to_vec_pretty(&event)?;
        let header = psa_billing_core::signature::sign(&body, &secret, crate::clock::unix_now());
        if a.print {
            println!("Stripe-Signature: {header}");
            println!("{}", String::from_utf8_lossy(&body));
            continue;
        }
        let answer = client
            .post(&a.url)
            .header("Stripe-Signature", &header)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("posting {event_type} to {}", a.url))?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        println!(
            "{event_type} {} {status} {text}",
            event["id"].as_str().unwrap_or("")
        );
        if !status.is_success() {
            bail!("{} answered {status} for {event_type}", a.url);
        }
    }
    Ok(())
}

fn event_types() -> impl Iterator<Item = &'static str> {
    EVENT_TYPES
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// The sample resource an event type's object is: the type without its
/// last part (`checkout.session`), else with its leading parts dropped one
/// at a time (`charge.dispute.created` → `dispute`).
fn resource_of<'a>(resources: &Value, event_type: &'a str) -> Option<&'a str> {
    let (object, _action) = event_type.rsplit_once('.')?;
    let mut candidate = object;
    loop {
        if resources.get(candidate).is_some_and(Value::is_object) {
            return Some(candidate);
        }
        candidate = candidate.split_once('.')?.1;
    }
}

/// A fresh id with `old`'s prefix (`pi_3Qx...` → `pi_<24 random>`).
fn fresh_id(old: &str) -> String {
    let prefix = match old.rfind('_') {
        Some(i) if i < 12 => &old[..=i],
        _ => "obj_",
    };
    let tail: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(24)
        .collect();
    format!("{prefix}{tail}")
}

/// The event of `event_type` around a copy of its resource's sample.
fn build(
    resources: &Value,
    event_type: &str,
    tenant: Option<&str>,
    account: Option<&str>,
) -> Result<Value> {
    if !event_types().any(|t| t == event_type) {
        bail!("{event_type:?} is not a Stripe event type; `psa-billing trigger --list` shows them");
    }
    let resource = resource_of(resources, event_type).with_context(|| {
        format!("no sample object for {event_type}: Stripe's samples have none for its resource")
    })?;
    let mut object = resources[resource].clone();
    if let Some(id) = object["id"].as_str() {
        object["id"] = Value::from(fresh_id(id));
    }
    let now = crate::clock::unix_now();
    if object.get("created").is_some() {
        object["created"] = Value::from(now);
    }
    if let Some(t) = tenant {
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        object["metadata"]["tenant_id"] = Value::from(t);
    }
    if let Some(a) = account
        && !a.starts_with("acct_")
    {
        bail!("--account must be a connected account id (acct_...), not {a:?}");
    }
    let mut event = json!({
        "id": fresh_id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": now,
        "data": { "object": object },
        "livemode": false,
        "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null },
        "type": event_type,
    });
    if let Some(a) = account {
        event["account"] = Value::from(a);
    }
    Ok(event)
}

/// What an event type says about its object's state, where the sample
/// says otherwise, derived after `--set` (so a set amount is the amount
/// received) except for the fields `given` set explicitly.
fn implied(object: &mut Value, event_type: &str, given: &[&str]) {
    let (amount, due) = (object["amount"].clone(), object["amount_due"].clone());
    let mut put = |k: &str, v: Value| {
        if !given.contains(&format!("data.object.{k}").as_str()) {
            object[k] = v;
        }
    };
    match event_type {
        "payment_intent.succeeded" => {
            put("status", json!("succeeded"));
            put("last_payment_error", Value::Null);
            put("amount_received", amount);
        }
        "payment_intent.payment_failed" => {
            put("status", json!("requires_payment_method"));
            put(
                "last_payment_error",
                json!({"type": "card_error", "code": "card_declined",
                       "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}),
            );
        }
        "payment_intent.processing" => put("status", json!("processing")),
        "payment_intent.canceled" => put("status", json!("canceled")),
        "payment_intent.requires_action" => put("status", json!("requires_action")),
        "invoice.paid" | "invoice.payment_succeeded" => {
            put("status", json!("paid"));
            put("amount_paid", due);
            put("amount_remaining", json!(0));
        }
        "invoice.finalized" => put("status", json!("open")),
        "invoice.voided" => put("status", json!("void")),
        "invoice.marked_uncollectible" => put("status", json!("uncollectible")),
        "customer.subscription.deleted" => put("status", json!("canceled")),
        "checkout.session.completed" => {
            put("status", json!("complete"));
            put("payment_status", json!("paid"));
        }
        "checkout.session.expired" => put("status", json!("expired")),
        "charge.refunded" => {
            put("amount_refunded", amount);
            put("refunded", json!(true));
        }
        "payout.paid" => put("status", json!("paid")),
        "payout.failed" => put("status", json!("failed")),
        _ => {}
    }
}

/// `path=value`: the value as JSON when it is JSON, as text otherwise.
fn parse_set(s: &str) -> Result<(String, Value)> {
    let (path, value) = s
        .split_once('=')
        .with_context(|| format!("--set {s:?}: expected PATH=VALUE"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
    Ok((path.to_string(), value))
}

/// Sets the field at a dotted `path` (objects made as needed).
fn set(event: &mut Value, path: &str, value: Value) -> Result<()> {
    let mut at = event;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            bail!("--set {path:?}: an empty part");
        }
        if !at.is_object() {
            bail!("--set {path:?}: {} is not an object", parts[..i].join("."));
        }
        if i == parts.len() - 1 {
            at[*part] = value;
            return Ok(());
        }
        if at.get(*part).is_none() {
            at[*part] = json!({});
        }
        at = &mut at[*part];
    }
    Ok(())
}

/// A scenario file: `{"ids": {"sub": "sub_"}, "events": [{"type": ...,
/// "set": {"data.object.id": "$sub"}}]}`. Each `$name` text value is
/// replaced by one fresh id with the prefix `ids` gives it, the same in
/// every event, so that events about one object name the same object.
fn scenario(file: &Path) -> Result<Vec<Step>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let mut ids = std::collections::BTreeMap::new();
    if let Some(declared) = v["ids"].as_object() {
        for (name, prefix) in declared {
            let prefix = prefix
                .as_str()
                .with_context(|| format!("ids.{name}: a prefix such as \"sub_\""))?;
            ids.insert(name.clone(), fresh_id(prefix));
        }
    }
    let events = v["events"]
        .as_array()
        .with_context(|| format!("{}: no \"events\" list", file.display()))?;
    let mut steps = Vec::with_capacity(events.len());
    for (n, e) in events.iter().enumerate() {
        let t = e["type"]
            .as_str()
            .with_context(|| format!("events[{n}]: no \"type\""))?;
        let mut sets = Vec::new();
        if let Some(fields) = e["set"].as_object() {
            for (path, value) in fields {
                let value = match value.as_str().and_then(|s| s.strip_prefix('$')) {
                    Some(name) => Value::from(
                        ids.get(name)
                            .with_context(|| format!("events[{n}]: ${name} is not in \"ids\""))?
                            .clone(),
                    ),
                    None => value.clone(),
                };
                sets.push((path.clone(), value));
            }
        }
        steps.push((t.to_string(), sets));
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources() -> Value {
        serde_json::from_str::<Value>(SAMPLES).unwrap()["resources"].clone()
    }

    #[test]
    fn each_type_finds_its_resource() {
        let r = resources();
        assert_eq!(
            resource_of(&r, "payment_intent.succeeded"),
            Some("payment_intent")
        );
        assert_eq!(
            resource_of(&r, "checkout.session.completed"),
            Some("checkout.session")
        );
        assert_eq!(resource_of(&r, "charge.dispute.created"), Some("dispute"));
        assert_eq!(
            resource_of(&r, "customer.subscription.trial_will_end"),
            Some("subscription")
        );
        assert_eq!(resource_of(&r, "no_such.thing"), None);
    }

    #[test]
    fn a_built_event_has_fresh_ids_the_tenant_and_what_its_type_implies() {
        let r = resources();
        let mut e = build(&r, "payment_intent.succeeded", Some("t1"), Some("acct_1X")).unwrap();
        set(&mut e, "data.object.amount", json!(5000)).unwrap();
        implied(
            &mut e["data"]["object"],
            "payment_intent.succeeded",
            &["data.object.amount"],
        );
        let o = &e["data"]["object"];
        assert_eq!(
            o["amount_received"], 5000,
            "the amount set is the amount received"
        );
        assert!(e["id"].as_str().unwrap().starts_with("evt_"));
        assert!(o["id"].as_str().unwrap().starts_with("pi_"));
        assert_ne!(o["id"], r["payment_intent"]["id"]);
        assert_eq!(o["status"], "succeeded");
        assert_eq!(o["amount_received"], o["amount"]);
        assert_eq!(o["metadata"]["tenant_id"], "t1");
        assert_eq!(e["account"], "acct_1X");
        let other = build(&r, "payment_intent.succeeded", None, None).unwrap();
        assert_ne!(other["id"], e["id"], "every event its own id");
        assert!(build(&r, "payment_intent.exploded", None, None).is_err());
    }

    #[test]
    fn set_writes_json_or_text_at_a_path() {
        let mut e = json!({"data": {"object": {"amount": 1}}});
        let (p, v) = parse_set("data.object.amount=5000").unwrap();
        set(&mut e, &p, v).unwrap();
        let (p, v) = parse_set("data.object.metadata.contract=C-1").unwrap();
        set(&mut e, &p, v).unwrap();
        assert_eq!(e["data"]["object"]["amount"], 5000);
        assert_eq!(e["data"]["object"]["metadata"]["contract"], "C-1");
        assert!(set(&mut e, "data.object.amount.x", json!(1)).is_err());
        assert!(parse_set("no-equals").is_err());
    }
}
