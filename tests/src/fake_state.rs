//! The fake Stripe's state (the requests it received, its objects by
//! account, idempotent replays, faults to answer) and the helpers every
//! object family of the fake shares: ids, Stripe's error bodies, form
//! fields, storing an object.
//!
//! Knows nothing about any object family: `fake_stripe` (payments, the
//! server) and `fake_billing` (customers, subscriptions, invoices) use it.

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub account: Option<String>,
    pub idempotency_key: Option<String>,
    pub form: BTreeMap<String, String>,
    /// The raw body, as sent.
    pub body: String,
    pub authorized: bool,
}

/// What the next request gets instead of its answer.
#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    /// A gateway's HTML page with this status, not Stripe's JSON.
    Html(u16),
    /// Stripe's 5xx error, with `Stripe-Should-Retry: false`.
    DoNotRetry(u16),
    /// A 429 with `Retry-After` of this many seconds.
    RetryAfter(u64),
    /// The real answer (the write done, and replayed as done), but with a
    /// field of a type the client's typed objects do not expect (`created`
    /// as text), as a newer API version might send.
    Garbled,
    /// A 402 card error with this decline code.
    CardDecline(&'static str),
}

/// An object or idempotency key as seen from an account (`None`: the platform).
pub(crate) type Scoped = (Option<String>, String);
pub(crate) type Form = BTreeMap<String, String>;

pub(crate) struct FakeState {
    pub(crate) requests: Vec<Recorded>,
    /// Idempotency key → the first request's form, and its answer.
    pub(crate) replays: HashMap<Scoped, (Form, u16, Value)>,
    /// (account, id) → object.
    pub(crate) objects: HashMap<Scoped, Value>,
    pub(crate) faults: VecDeque<Fault>,
    /// Headers the answer being built carries besides its own.
    pub(crate) extra_headers: Vec<(&'static str, String)>,
    /// Faults for the next writes (any method but GET) alone.
    pub(crate) write_faults: VecDeque<Fault>,
    pub(crate) next: u64,
    /// Stripe's card fee on a charge: (basis points, fixed minor units).
    pub(crate) card_fee: (i64, i64),
    /// Unix seconds at which new balance transactions are created.
    pub(crate) now: i64,
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            requests: vec![],
            replays: HashMap::new(),
            objects: HashMap::new(),
            faults: VecDeque::new(),
            extra_headers: Vec::new(),
            write_faults: VecDeque::new(),
            next: 0,
            card_fee: (290, 30),
            now: AVAILABLE_ON - 172_800,
        }
    }
}

/// When a fake balance transaction's net becomes available.
pub const AVAILABLE_ON: i64 = 1_764_000_000;

pub(crate) fn stripe_error(status: u16, kind: &str, message: &str, extra: Value) -> (u16, Value) {
    let mut error = json!({ "type": kind, "message": message });
    if let Value::Object(extra) = extra {
        error.as_object_mut().unwrap().extend(extra);
    }
    (status, json!({ "error": error }))
}

pub(crate) fn missing(id: &str) -> (u16, Value) {
    // Stripe names the resource in its message.
    let kind = match id.split('_').next().unwrap_or_default() {
        "cus" => "customer",
        "sub" => "subscription",
        "pi" => "payment_intent",
        "pm" => "PaymentMethod",
        "in" => "invoice",
        _ => "object",
    };
    stripe_error(
        404,
        "invalid_request_error",
        &format!("No such {kind}: '{id}'"),
        json!({ "code": "resource_missing", "param": "id" }),
    )
}

pub(crate) fn new_id(s: &mut FakeState, prefix: &str) -> String {
    s.next += 1;
    format!("{prefix}_fake{:06}", s.next)
}

pub(crate) fn metadata(form: &BTreeMap<String, String>) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in form {
        if let Some(key) = k
            .strip_prefix("metadata[")
            .and_then(|k| k.strip_suffix(']'))
        {
            m.insert(key.to_string(), json!(v));
        }
    }
    Value::Object(m)
}

pub(crate) fn int(form: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    form.get(key).and_then(|v| v.parse().ok())
}

pub(crate) fn required(form: &BTreeMap<String, String>, key: &str) -> Result<String, (u16, Value)> {
    form.get(key).cloned().ok_or_else(|| {
        stripe_error(
            400,
            "invalid_request_error",
            &format!("Missing required param: {key}."),
            json!({ "code": "parameter_missing", "param": key }),
        )
    })
}

pub(crate) fn store(s: &mut FakeState, account: &Option<String>, object: Value) -> (u16, Value) {
    let id = object["id"].as_str().unwrap().to_string();
    s.objects.insert((account.clone(), id), object.clone());
    (200, object)
}
