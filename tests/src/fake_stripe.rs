//! A FAKE Stripe API for the tests, on 127.0.0.1 (Stripe itself cannot be
//! reached from the test machines). The host's real client (async-stripe,
//! reqwest for v2) talks to it through the configurable base URL.
//!
//! It parses form-encoded bodies, checks the bearer key, records every
//! request (path, `Stripe-Account`, `Idempotency-Key`, form), replays the
//! first answer for a repeated idempotency key (and refuses the key reused
//! with other parameters, as Stripe does), keeps objects per account (an
//! object created on a connected account is not found without its header),
//! and answers the faults it is told to (429, 500, a card decline).
//!
//! Money moves with balance transactions, as Stripe writes them:
//! - a succeeded charge: `charge` with Stripe's card fee (2.9 % + 30¢ unless
//!   the test sets another, rounded half up) and, on a direct charge, the
//!   application fee in `fee_details`; the platform gets the
//!   `application_fee` (a `fee_...` object naming the charge and account).
//!   A destination charge is the platform's `charge` and `transfer` (with
//!   `source_transaction`), and the connected account's `payment` (a `py_`
//!   charge with `source_transfer`).
//! - a refund: `refund` on the charge's balance; a refund that fails
//!   ([`FakeStripe::fail_refund`]): `adjustment` giving it back.
//! - an application-fee refund: the platform's `application_fee_refund`
//!   and the connected account's `adjustment` (a `fr_...` object).
//! - a lost dispute: `adjustment` of the amount and Stripe's dispute fee.
//! - a transfer: the platform's `transfer`; its reversal `transfer_refund`
//!   (a `trr_...` object).
//! - a payout ([`FakeStripe::payout`]): `payout` on the paying balance.
//!
//! `GET /v1/balance_transactions` lists a balance's transactions newest
//! first, with `created[gte]`/`created[lt]`, `limit`, `starting_after`,
//! `has_more`, and `expand[]=data.source` (the source object as stored).
//! Every transaction is created at the fake's clock ([`FakeStripe::set_now`]).
//!
//! Customers, subscriptions, Checkout and portal sessions and invoices
//! are in `fake_billing`, with what they do not model.
//!
//! What it does not model: balances themselves (a transfer never fails for
//! lack of funds, nothing becomes available, no payout is made on its own
//! schedule or fails), the
//! connected side of transfers to other accounts than a destination
//! charge's, currency conversion (a balance transaction is in the charge's
//! currency), asynchronous payment states (a confirmed intent succeeds at
//! once), dispute fees given back when a dispute is won, webhooks it would
//! send, expansion other than `data.source`, `ending_before`, and most
//! validation of parameters beyond the ones psa-billing sends.

use crate::fake_billing as billing;
pub use crate::fake_state::{AVAILABLE_ON, Fault, Recorded};
use crate::fake_state::{FakeState, int, metadata, missing, new_id, required, store, stripe_error};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const FAKE_KEY: &str = "sk_test_fake_key";

/// What a gateway in front of an API answers when it is down.
const GATEWAY_PAGE: &str = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>";

pub struct FakeStripe {
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeStripe { addr, state, task }
    }

    /// The base URL to configure the host with.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests to paths starting with `prefix` (`POST /v1/refunds`...).
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// Stripe's fee on the charges made from now on: `basis_points` of the
    /// amount (290: 2.9 %) plus `fixed` minor units, rounded half up.
    pub fn set_card_fee(&self, basis_points: i64, fixed: i64) {
        self.state.lock().unwrap().card_fee = (basis_points, fixed);
    }

    /// A payment that succeeded at Stripe without this fake's help (its
    /// webhook is what the test delivers): its intent, its charge and the
    /// charge's balance transaction, on `account` (a direct charge) or the
    /// platform. Returns (charge id, balance transaction id).
    pub fn succeeded_payment(
        &self,
        account: Option<&str>,
        payment_intent: &str,
        amount: i64,
        currency: &str,
        application_fee: Option<i64>,
        destination: Option<&str>,
    ) -> (String, String) {
        let s = &mut self.state.lock().unwrap();
        let account = account.map(str::to_string);
        let mut pi = crate::stripe_object("payment_intent");
        pi["id"] = json!(payment_intent);
        pi["amount"] = json!(amount);
        pi["amount_received"] = json!(amount);
        pi["currency"] = json!(currency);
        pi["application_fee_amount"] = json!(application_fee);
        pi["status"] = json!("succeeded");
        pi["metadata"] = json!({});
        pi["transfer_data"] = match destination {
            Some(d) => json!({ "destination": d }),
            None => Value::Null,
        };
        let charge = charge_with_balance(
            s,
            &account,
            payment_intent,
            amount,
            currency,
            application_fee,
            destination,
        );
        pi["latest_charge"] = json!(charge.0);
        store(s, &account, pi);
        charge
    }

    /// The time new balance transactions are created at (Unix seconds).
    pub fn set_now(&self, now: i64) {
        self.state.lock().unwrap().now = now;
    }

    /// Refunds `amount` of `charge` (on `account`'s balance): the refund
    /// object and its `refund` balance transaction. Returns the refund.
    pub fn refund_charge(&self, account: Option<&str>, charge: &str, amount: i64) -> Value {
        let s = &mut self.state.lock().unwrap();
        let account = account.map(str::to_string);
        refund_with_balance(s, &account, charge, amount, json!({})).expect("the charge exists")
    }

    /// The refund fails at the bank: status `failed`, the charge's refunded
    /// amount given back, and an `adjustment` returning the money to the
    /// balance. Returns the refund.
    pub fn fail_refund(&self, account: Option<&str>, refund: &str) -> Value {
        let s = &mut self.state.lock().unwrap();
        let account = account.map(str::to_string);
        let mut re = s.objects[&(account.clone(), refund.to_string())].clone();
        let amount = re["amount"].as_i64().unwrap();
        let charge_key = (account.clone(), re["charge"].as_str().unwrap().to_string());
        let mut charge = s.objects[&charge_key].clone();
        charge["amount_refunded"] = json!(charge["amount_refunded"].as_i64().unwrap() - amount);
        charge["refunded"] = json!(false);
        s.objects.insert(charge_key, charge);
        let txn = balance_transaction(
            s,
            &account,
            "adjustment",
            amount,
            &[],
            refund,
            &re["currency"],
        );
        re["status"] = json!("failed");
        re["failure_reason"] = json!("expired_or_canceled_card");
        re["failure_balance_transaction"] = json!(txn);
        store(s, &account, re).1
    }

    /// Gives back `amount` of an application fee (a platform object): the
    /// `fr_...` refund, the platform's `application_fee_refund` and the
    /// connected account's `adjustment`. Returns the updated fee.
    pub fn refund_application_fee(&self, fee: &str, amount: i64) -> Value {
        let s = &mut self.state.lock().unwrap();
        let mut f = s.objects[&(None, fee.to_string())].clone();
        let account = f["account"].as_str().map(str::to_string);
        let currency = f["currency"].clone();
        let fr = new_id(s, "fr");
        let refund = json!({"id": fr, "object": "fee_refund", "amount": amount,
                            "currency": currency, "fee": fee, "metadata": {}});
        store(s, &None, refund.clone());
        store(s, &account, refund);
        balance_transaction(
            s,
            &None,
            "application_fee_refund",
            -amount,
            &[],
            &fr,
            &currency,
        );
        balance_transaction(s, &account, "adjustment", amount, &[], &fr, &currency);
        f["amount_refunded"] = json!(f["amount_refunded"].as_i64().unwrap() + amount);
        f["refunded"] = json!(f["amount_refunded"] == f["amount"]);
        store(s, &None, f).1
    }

    /// `charge` (on `account`) is disputed and lost: the dispute, with the
    /// `adjustment` taking the amount and Stripe's `fee` in its
    /// `balance_transactions`. Returns the dispute.
    pub fn lose_dispute(&self, account: Option<&str>, charge: &str, fee: i64) -> Value {
        let s = &mut self.state.lock().unwrap();
        let account = account.map(str::to_string);
        let ch = s.objects[&(account.clone(), charge.to_string())].clone();
        let amount = ch["amount"].as_i64().unwrap();
        let id = new_id(s, "du");
        let txn = balance_transaction(
            s,
            &account,
            "adjustment",
            -amount,
            &[("stripe_fee", fee)],
            &id,
            &ch["currency"],
        );
        let bt = s.objects[&(account.clone(), txn)].clone();
        let dispute = json!({"id": id, "object": "dispute", "amount": amount,
            "currency": ch["currency"], "charge": charge, "payment_intent": ch["payment_intent"],
            "status": "lost", "reason": "fraudulent", "balance_transactions": [bt],
            "metadata": {}});
        store(s, &account, dispute).1
    }

    /// Reverses `amount` of a platform transfer: the `trr_...` reversal and
    /// the platform's `transfer_refund`. Returns the updated transfer.
    pub fn reverse_transfer(&self, transfer: &str, amount: i64) -> Value {
        let s = &mut self.state.lock().unwrap();
        let mut t = s.objects[&(None, transfer.to_string())].clone();
        let id = new_id(s, "trr");
        let currency = t["currency"].clone();
        store(
            s,
            &None,
            json!({"id": id, "object": "transfer_reversal", "amount": amount,
                                "currency": currency, "transfer": transfer, "metadata": {}}),
        );
        balance_transaction(s, &None, "transfer_refund", amount, &[], &id, &currency);
        t["amount_reversed"] = json!(t["amount_reversed"].as_i64().unwrap() + amount);
        t["reversed"] = json!(t["amount_reversed"] == t["amount"]);
        store(s, &None, t).1
    }

    /// Pays `amount` out of `account`'s balance to its bank: the payout
    /// (status `paid`) and its `payout` balance transaction. Returns the payout.
    pub fn payout(&self, account: Option<&str>, amount: i64, currency: &str) -> Value {
        let s = &mut self.state.lock().unwrap();
        let account = account.map(str::to_string);
        let id = new_id(s, "po");
        let txn = balance_transaction(s, &account, "payout", -amount, &[], &id, &json!(currency));
        let payout = json!({"id": id, "object": "payout", "amount": amount, "currency": currency,
            "status": "paid", "balance_transaction": txn, "arrival_date": s.now + 86_400,
            "metadata": {}});
        store(s, &account, payout).1
    }

    /// Changes a stored balance transaction (a test's "Stripe says
    /// otherwise"): `change` edits its JSON.
    pub fn edit_balance_transaction(
        &self,
        account: Option<&str>,
        id: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let s = &mut self.state.lock().unwrap();
        let key = (account.map(str::to_string), id.to_string());
        let txn = s
            .objects
            .get_mut(&key)
            .expect("a stored balance transaction");
        change(txn);
    }

    /// The next requests answer these faults, in order.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// The next writes (not the reads before them, such as the tenant
    /// boundary's) answer these faults, in order.
    pub fn fail_next_writes(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().write_faults.extend(faults);
    }

    /// Stores an object (with its `id`) as seen from `account`.
    pub fn insert(&self, account: Option<&str>, object: Value) {
        let id = object["id"]
            .as_str()
            .expect("an object with an id")
            .to_string();
        self.state
            .lock()
            .unwrap()
            .objects
            .insert((account.map(str::to_string), id), object);
    }

    pub fn object(&self, account: Option<&str>, id: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(&(account.map(str::to_string), id.to_string()))
            .cloned()
    }
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let form: BTreeMap<String, String> = form_urlencoded::parse(&body)
        .chain(form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        account: header("stripe-account"),
        idempotency_key: header("idempotency-key"),
        authorized: header("authorization").as_deref() == Some(&format!("Bearer {FAKE_KEY}")),
        form,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let mut s = state.lock().unwrap();
    s.requests.push(recorded.clone());
    let (status, body) = answer(&mut s, &recorded);
    let status = StatusCode::from_u16(status).unwrap();
    let mut response = match body {
        Value::String(page) if page == GATEWAY_PAGE => {
            (status, [("content-type", "text/html")], page).into_response()
        }
        body => (status, axum::Json(body)).into_response(),
    };
    if let Some(key) = &recorded.idempotency_key {
        response
            .headers_mut()
            .insert("idempotency-key", key.parse().unwrap());
    }
    for (name, value) in s.extra_headers.drain(..) {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

fn answer(s: &mut FakeState, r: &Recorded) -> (u16, Value) {
    if !r.authorized {
        return stripe_error(
            401,
            "invalid_request_error",
            "Invalid API Key provided",
            json!({}),
        );
    }
    let write_fault = if r.method != "GET" {
        s.write_faults.pop_front()
    } else {
        None
    };
    let fault = write_fault.or_else(|| s.faults.pop_front());
    let garbled = matches!(fault, Some(Fault::Garbled));
    if let Some(fault) = fault.filter(|_| !garbled) {
        return match fault {
            Fault::Status(429) => stripe_error(
                429,
                "invalid_request_error",
                "Too many requests hit the API too quickly.",
                json!({ "code": "rate_limit" }),
            ),
            Fault::Status(code) => stripe_error(
                code,
                "api_error",
                "Something went wrong on Stripe's end.",
                json!({}),
            ),
            Fault::Html(code) => (code, Value::String(GATEWAY_PAGE.into())),
            Fault::Garbled => unreachable!("answered below"),
            Fault::DoNotRetry(code) => {
                s.extra_headers
                    .push(("stripe-should-retry", "false".into()));
                stripe_error(
                    code,
                    "api_error",
                    "Something went wrong on Stripe's end.",
                    json!({}),
                )
            }
            Fault::RetryAfter(seconds) => {
                s.extra_headers.push(("retry-after", seconds.to_string()));
                stripe_error(
                    429,
                    "invalid_request_error",
                    "Too many requests hit the API too quickly.",
                    json!({ "code": "rate_limit" }),
                )
            }
            Fault::CardDecline(decline) => stripe_error(
                402,
                "card_error",
                "Your card was declined.",
                json!({ "code": "card_declined", "decline_code": decline }),
            ),
        };
    }
    let replay_key = r.idempotency_key.clone().map(|k| (r.account.clone(), k));
    if r.method == "POST"
        && let Some(key) = &replay_key
        && let Some((form, status, body)) = s.replays.get(key)
    {
        if *form != r.form {
            return stripe_error(
                400,
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                json!({}),
            );
        }
        return (*status, body.clone());
    }
    let (status, body) = route(s, r);
    if r.method == "POST"
        && let Some(key) = replay_key
    {
        s.replays
            .insert(key, (r.form.clone(), status, body.clone()));
    }
    if garbled {
        let mut body = body;
        body["created"] = json!("yesterday");
        return (status, body);
    }
    (status, body)
}

fn route(s: &mut FakeState, r: &Recorded) -> (u16, Value) {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let account = r.account.clone();
    let get = |s: &FakeState, id: &str| s.objects.get(&(account.clone(), id.to_string())).cloned();
    match (r.method.as_str(), parts.as_slice()) {
        ("GET", ["v1", "balance_transactions"]) => list_balance_transactions(s, r),
        ("GET", ["v1", "customers", "search"]) => billing::search_customers(s, r),
        ("GET", ["v2", "core", "events", id]) | ("GET", ["v1", _, id]) => match get(s, id) {
            Some(o) => (200, o),
            None => missing(id),
        },
        ("POST", ["v1", "payment_intents"]) => create_payment_intent(s, r),
        ("POST", ["v1", "refunds"]) => create_refund(s, r),
        ("POST", ["v1", "transfers"]) => create_transfer(s, r),
        ("POST", ["v1", "subscriptions"]) => billing::create_subscription(s, r),
        ("POST", ["v1", "subscriptions", id]) => billing::update_subscription(s, r, id),
        ("DELETE", ["v1", "subscriptions", id]) => billing::cancel_subscription(s, r, id),
        ("POST", ["v1", "customers"]) => billing::create_customer(s, r),
        ("POST", ["v1", "customers", id]) => billing::update_customer(s, r, id),
        ("POST", ["v1", "payment_methods", pm, "attach"]) => {
            billing::attach_payment_method(s, r, pm)
        }
        ("POST", ["v1", "checkout", "sessions"]) => billing::create_checkout_session(s, r),
        ("POST", ["v1", "billing_portal", "sessions"]) => billing::create_portal_session(s, r),
        ("POST", ["v1", "invoices"]) => billing::create_invoice(s, r),
        ("POST", ["v1", "invoiceitems"]) => billing::create_invoice_item(s, r),
        ("POST", ["v1", "invoices", id, verb]) => billing::invoice_step(s, r, id, verb),
        ("POST", ["v1", "accounts"]) => create_account(s, r),
        ("POST", ["v1", "account_links"]) => create_account_link(s, r),
        _ => stripe_error(
            404,
            "invalid_request_error",
            &format!("Unrecognized request URL ({} {})", r.method, r.path),
            json!({}),
        ),
    }
}

fn create_payment_intent(s: &mut FakeState, r: &Recorded) -> (u16, Value) {
    let f = &r.form;
    let (Some(amount), Ok(currency)) = (int(f, "amount"), required(f, "currency")) else {
        return stripe_error(
            400,
            "invalid_request_error",
            "Missing required param: amount.",
            json!({ "param": "amount" }),
        );
    };
    if amount < 1 {
        return stripe_error(
            400,
            "invalid_request_error",
            "Amount must be at least 1",
            json!({ "param": "amount", "code": "amount_too_small" }),
        );
    }
    let fee = int(f, "application_fee_amount");
    if fee.is_some_and(|fee| fee > amount) {
        return stripe_error(
            400,
            "invalid_request_error",
            "The application fee cannot exceed the amount.",
            json!({ "param": "application_fee_amount" }),
        );
    }
    let destination = f.get("transfer_data[destination]").cloned();
    if destination.is_some() && r.account.is_some() {
        return stripe_error(
            400,
            "invalid_request_error",
            "Destination charges are made on the platform, not with Stripe-Account.",
            json!({ "param": "transfer_data[destination]" }),
        );
    }
    let id = new_id(s, "pi");
    let confirmed =
        f.get("confirm").map(String::as_str) == Some("true") && f.contains_key("payment_method");
    let mut pi = crate::stripe_object("payment_intent");
    pi["id"] = json!(id);
    pi["amount"] = json!(amount);
    pi["amount_received"] = json!(if confirmed { amount } else { 0 });
    pi["currency"] = json!(currency);
    pi["application_fee_amount"] = json!(fee);
    pi["customer"] = json!(f.get("customer"));
    pi["payment_method"] = json!(f.get("payment_method"));
    pi["description"] = json!(f.get("description"));
    pi["metadata"] = metadata(f);
    pi["client_secret"] = json!(format!("{id}_secret_fake"));
    pi["transfer_data"] = match &destination {
        Some(d) => json!({ "destination": d }),
        None => Value::Null,
    };
    pi["status"] = json!(if confirmed {
        "succeeded"
    } else {
        "requires_payment_method"
    });
    pi["latest_charge"] = Value::Null;
    if confirmed {
        let (charge_id, _) = charge_with_balance(
            s,
            &r.account,
            &id,
            amount,
            &currency,
            fee,
            destination.as_deref(),
        );
        pi["latest_charge"] = json!(charge_id);
    }
    store(s, &r.account, pi)
}

/// A succeeded charge of `payment_intent` and its balance transaction:
/// Stripe's card fee, plus the application fee when the charge is direct
/// (on `account`, whose balance pays it; the platform gets the fee). A
/// destination charge also transfers the amount less the application fee
/// to `destination`. (charge id, transaction id).
fn charge_with_balance(
    s: &mut FakeState,
    account: &Option<String>,
    payment_intent: &str,
    amount: i64,
    currency: &str,
    application_fee: Option<i64>,
    destination: Option<&str>,
) -> (String, String) {
    let charge_id = new_id(s, "ch");
    let (bp, fixed) = s.card_fee;
    let stripe_fee = (amount * bp + 5_000) / 10_000 + fixed;
    let app_fee = application_fee.filter(|a| *a > 0);
    let mut fees = vec![("stripe_fee", stripe_fee)];
    if let (Some(app), None) = (app_fee, destination) {
        fees.push(("application_fee", app));
    }
    let cur = json!(currency);
    let txn_id = balance_transaction(s, account, "charge", amount, &fees, &charge_id, &cur);
    let mut ch = crate::stripe_object("charge");
    ch["id"] = json!(charge_id);
    ch["amount"] = json!(amount);
    ch["amount_captured"] = json!(amount);
    ch["amount_refunded"] = json!(0);
    ch["refunded"] = json!(false);
    ch["currency"] = json!(currency);
    ch["payment_intent"] = json!(payment_intent);
    ch["application_fee_amount"] = json!(application_fee);
    ch["status"] = json!("succeeded");
    ch["paid"] = json!(true);
    ch["balance_transaction"] = json!(txn_id);
    ch["metadata"] = json!({});
    match (destination, app_fee) {
        (Some(dest), _) => {
            // The platform keeps the application fee and transfers the rest.
            let paid = amount - app_fee.unwrap_or(0);
            let tr = new_id(s, "tr");
            let py = new_id(s, "py");
            let dest_account = Some(dest.to_string());
            let py_txn = balance_transaction(s, &dest_account, "payment", paid, &[], &py, &cur);
            store(
                s,
                &dest_account,
                json!({"id": py, "object": "charge", "amount": paid,
                "currency": currency, "source_transfer": tr, "balance_transaction": py_txn,
                "status": "succeeded", "metadata": {}}),
            );
            let tr_txn = balance_transaction(s, &None, "transfer", -paid, &[], &tr, &cur);
            store(
                s,
                &None,
                json!({"id": tr, "object": "transfer", "amount": paid,
                "amount_reversed": 0, "currency": currency, "destination": dest,
                "destination_payment": py, "source_transaction": charge_id,
                "balance_transaction": tr_txn, "metadata": {}}),
            );
            ch["transfer"] = json!(tr);
            ch["transfer_data"] = json!({ "destination": dest });
        }
        (None, Some(app)) => {
            let fee_id = new_id(s, "fee");
            balance_transaction(s, &None, "application_fee", app, &[], &fee_id, &cur);
            store(
                s,
                &None,
                json!({"id": fee_id, "object": "application_fee", "amount": app,
                "amount_refunded": 0, "refunded": false, "currency": currency,
                "charge": charge_id, "account": account, "originating_transaction": null}),
            );
            ch["application_fee"] = json!(fee_id);
        }
        (None, None) => {}
    }
    store(s, account, ch);
    (charge_id, txn_id)
}

/// A balance transaction on `account`'s balance (the platform's: `None`),
/// created now; `fees` as Stripe's `fee_details`. Returns its id.
fn balance_transaction(
    s: &mut FakeState,
    account: &Option<String>,
    kind: &str,
    amount: i64,
    fees: &[(&str, i64)],
    source: &str,
    currency: &Value,
) -> String {
    let id = new_id(s, "txn");
    let fee: i64 = fees.iter().map(|(_, a)| a).sum();
    let fee_details: Vec<Value> = fees
        .iter()
        .map(|(kind, a)| {
            json!({"type": kind, "amount": a, "currency": currency,
                                "description": kind, "application": null})
        })
        .collect();
    let txn = json!({
        "id": id, "object": "balance_transaction", "amount": amount, "currency": currency,
        "fee": fee, "net": amount - fee, "fee_details": fee_details, "type": kind,
        "reporting_category": kind, "source": source, "status": "pending",
        "available_on": AVAILABLE_ON, "created": s.now,
        "balance_type": "payments", "description": null, "exchange_rate": null,
    });
    store(s, account, txn);
    id
}

/// `GET /v1/balance_transactions`: newest first, paged.
fn list_balance_transactions(s: &FakeState, r: &Recorded) -> (u16, Value) {
    let f = &r.form;
    let limit = int(f, "limit").unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return stripe_error(
            400,
            "invalid_request_error",
            "limit must be between 1 and 100",
            json!({ "param": "limit" }),
        );
    }
    let (gte, lt) = (int(f, "created[gte]"), int(f, "created[lt]"));
    let expand = f
        .iter()
        .any(|(k, v)| k.starts_with("expand") && v == "data.source");
    let mut rows: Vec<&Value> = s
        .objects
        .iter()
        .filter(|((a, _), o)| *a == r.account && o["object"] == "balance_transaction")
        .map(|(_, o)| o)
        .filter(|o| {
            let c = o["created"].as_i64().unwrap();
            gte.is_none_or(|g| c >= g) && lt.is_none_or(|l| c < l)
        })
        .collect();
    let order = |o: &Value| {
        (
            o["created"].as_i64().unwrap(),
            o["id"].as_str().unwrap().to_string(),
        )
    };
    rows.sort_by_key(|o| std::cmp::Reverse(order(o)));
    let start = match f.get("starting_after") {
        None => 0,
        Some(after) => match rows.iter().position(|o| o["id"] == after.as_str()) {
            Some(i) => i + 1,
            None => return missing(after),
        },
    };
    let page: Vec<Value> = rows
        .iter()
        .skip(start)
        .take(limit as usize)
        .map(|o| {
            let mut o = (*o).clone();
            if expand
                && let Some(id) = o["source"].as_str()
                && let Some(obj) = s.objects.get(&(r.account.clone(), id.to_string()))
            {
                o["source"] = obj.clone();
            }
            o
        })
        .collect();
    let has_more = start + page.len() < rows.len();
    (
        200,
        json!({"object": "list", "url": "/v1/balance_transactions", "has_more": has_more, "data": page}),
    )
}

/// Refunds `amount` of `charge_id`: the refund object and its `refund`
/// balance transaction. Refuses more than the charge has left.
fn refund_with_balance(
    s: &mut FakeState,
    account: &Option<String>,
    charge_id: &str,
    amount: i64,
    metadata: Value,
) -> Result<Value, (u16, Value)> {
    let key = (account.clone(), charge_id.to_string());
    let mut charge = s
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| missing(charge_id))?;
    let left = charge["amount"].as_i64().unwrap() - charge["amount_refunded"].as_i64().unwrap();
    if amount > left {
        return Err(stripe_error(
            400,
            "invalid_request_error",
            &format!(
                "Refund amount ({amount}) is greater than unrefunded amount on charge ({left})"
            ),
            json!({ "param": "amount", "code": "amount_too_large" }),
        ));
    }
    charge["amount_refunded"] = json!(charge["amount_refunded"].as_i64().unwrap() + amount);
    charge["refunded"] = json!(amount == left);
    let currency = charge["currency"].clone();
    let pi = charge["payment_intent"].clone();
    s.objects.insert(key, charge);
    let id = new_id(s, "re");
    let txn = balance_transaction(s, account, "refund", -amount, &[], &id, &currency);
    let mut refund = crate::stripe_object("refund");
    refund["id"] = json!(id);
    refund["amount"] = json!(amount);
    refund["currency"] = currency;
    refund["charge"] = json!(charge_id);
    refund["payment_intent"] = pi;
    refund["status"] = json!("succeeded");
    refund["balance_transaction"] = json!(txn);
    refund["metadata"] = metadata;
    Ok(store(s, account, refund).1)
}

fn create_refund(s: &mut FakeState, r: &Recorded) -> (u16, Value) {
    let pi_id = match required(&r.form, "payment_intent") {
        Ok(p) => p,
        Err(e) => return e,
    };
    let Some(pi) = s.objects.get(&(r.account.clone(), pi_id.clone())).cloned() else {
        return missing(&pi_id);
    };
    let Some(charge_id) = pi["latest_charge"].as_str().map(str::to_string) else {
        return stripe_error(
            400,
            "invalid_request_error",
            "This PaymentIntent does not have a successful charge to refund.",
            json!({ "param": "payment_intent" }),
        );
    };
    let charge = &s.objects[&(r.account.clone(), charge_id.clone())];
    let left = charge["amount"].as_i64().unwrap() - charge["amount_refunded"].as_i64().unwrap();
    let amount = int(&r.form, "amount").unwrap_or(left);
    match refund_with_balance(s, &r.account, &charge_id, amount, metadata(&r.form)) {
        Ok(refund) => (200, refund),
        Err(e) => e,
    }
}

fn create_transfer(s: &mut FakeState, r: &Recorded) -> (u16, Value) {
    let (Some(amount), Ok(currency), Ok(destination)) = (
        int(&r.form, "amount"),
        required(&r.form, "currency"),
        required(&r.form, "destination"),
    ) else {
        return stripe_error(
            400,
            "invalid_request_error",
            "amount, currency and destination are required",
            json!({}),
        );
    };
    if !s.objects.contains_key(&(None, destination.clone())) {
        return stripe_error(
            400,
            "invalid_request_error",
            &format!("No such destination: '{destination}'"),
            json!({ "param": "destination", "code": "resource_missing" }),
        );
    }
    let mut t = crate::stripe_object("transfer");
    t["id"] = json!(new_id(s, "tr"));
    t["amount"] = json!(amount);
    t["amount_reversed"] = json!(0);
    t["currency"] = json!(currency);
    t["destination"] = json!(destination);
    t["transfer_group"] = json!(r.form.get("transfer_group"));
    t["metadata"] = metadata(&r.form);
    let id = t["id"].as_str().unwrap().to_string();
    t["balance_transaction"] = json!(balance_transaction(
        s,
        &r.account,
        "transfer",
        -amount,
        &[],
        &id,
        &json!(currency)
    ));
    store(s, &r.account, t)
}

fn create_account(s: &mut FakeState, r: &Recorded) -> (u16, Value) {
    let mut a = crate::stripe_object("account");
    a["id"] = json!(new_id(s, "acct"));
    a["type"] = json!(
        r.form
            .get("type")
            .cloned()
            .unwrap_or_else(|| "standard".into())
    );
    a["country"] = json!(r.form.get("country"));
    a["email"] = json!(r.form.get("email"));
    a["metadata"] = metadata(&r.form);
    a["charges_enabled"] = json!(false);
    a["payouts_enabled"] = json!(false);
    a["details_submitted"] = json!(false);
    store(s, &None, a)
}

fn create_account_link(s: &mut FakeState, r: &Recorded) -> (u16, Value) {
    let account = match required(&r.form, "account") {
        Ok(a) => a,
        Err(e) => return e,
    };
    if !s.objects.contains_key(&(None, account.clone())) {
        return missing(&account);
    }
    let now = psa_billing::clock::unix_now();
    (
        200,
        json!({
            "object": "account_link",
            "created": now,
            "expires_at": now + 300,
            "url": format!("https://connect.stripe.com/setup/e/{account}/fake{}", s.next),
        }),
    )
}
