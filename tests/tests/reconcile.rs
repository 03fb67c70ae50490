//! One tenant's month against the FAKE Stripe (`fake_stripe`), over HTTP:
//! webhooks, settlement jobs, ledger postings and a withdrawal, then
//! `GET /v1/reconciliation`, which lists the platform's and the connected
//! account's balance transactions (every page) and compares them with the
//! ledger. It must find nothing, and find the one balance transaction the
//! test then changes at the fake.

use psa_billing::stripe::StripeConfig;
use psa_billing_tests::fake_stripe::{FAKE_KEY, FakeStripe};
use psa_billing_tests::{API_TOKEN, Options, TestServer, stripe_object};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const TENANT: &str = "t_month";
const ACCOUNT: &str = "acct_1Month";
const WORKER: &str = "acct_1Worker";

async fn setup(postgres: bool) -> (FakeStripe, TestServer) {
    let fake = FakeStripe::start().await;
    fake.set_now(psa_billing::clock::unix_now());
    let mut config = StripeConfig::new(FAKE_KEY);
    config.base_url = Some(fake.url());
    config.backoff = Duration::from_millis(5);
    let server = TestServer::start(Options {
        stripe: Some(config),
        postgres,
        ..Options::default()
    })
    .await;
    let a = server
        .put_json(
            &format!("/v1/tenants/{ACCOUNT}"),
            &json!({"tenant": TENANT}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let mut worker = stripe_object("account");
    worker["id"] = json!(WORKER);
    fake.insert(None, worker);
    let a = server
        .put_json(
            &format!("/v1/contractors/{TENANT}/c-9"),
            &json!({"account": WORKER}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    (fake, server)
}

/// An event of `kind` about `object`, from `account` (a Connect event) or
/// the platform, delivered signed; it must be taken.
async fn deliver(server: &TestServer, id: &str, kind: &str, account: Option<&str>, object: &Value) {
    let body = json!({"id": id, "object": "event", "type": kind, "account": account,
        "created": psa_billing::clock::unix_now(), "livemode": false,
        "api_version": "2025-08-27.basil", "data": {"object": object}});
    let a = server.deliver_signed(body.to_string().as_bytes()).await;
    assert_eq!(a.status, 200, "{kind}: {}", a.body);
}

/// The payment intent the fake holds, with the application's metadata.
fn intent(fake: &FakeStripe, account: Option<&str>, id: &str, metadata: Value) -> Value {
    let mut pi = fake.object(account, id).expect("the fake's intent");
    pi["metadata"] = metadata;
    pi
}

async fn post(server: &TestServer, path: &str, body: Value) -> Value {
    let a = server.post_json(path, &body).await;
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    a.body
}

async fn reconcile(server: &TestServer, from: i64, to: i64) -> Value {
    let a = server
        .get(
            &format!("/v1/reconciliation?tenant={TENANT}&from={from}&to={to}"),
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

async fn balances(server: &TestServer) -> BTreeMap<String, i64> {
    let a = server
        .get(&format!("/v1/ledger/{TENANT}/balances"), Some(API_TOKEN))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["balances"]["usd"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["amount"].as_i64().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_tenants_month_reconciles_with_stripe_to_the_cent() {
    a_month(false).await;
}

#[tokio::test]
async fn a_tenants_month_reconciles_on_postgresql_too() {
    a_month(true).await;
}

async fn a_month(postgres: bool) {
    let (fake, server) = setup(postgres).await;
    let ours = json!({"tenant_id": TENANT});

    // A direct charge on the tenant's account (seed 000), and one that
    // will be disputed and lost.
    let (direct, _) =
        fake.succeeded_payment(Some(ACCOUNT), "pi_direct", 10_000, "usd", Some(250), None);
    let pi = intent(&fake, Some(ACCOUNT), "pi_direct", ours.clone());
    deliver(
        &server,
        "evt_1",
        "payment_intent.succeeded",
        Some(ACCOUNT),
        &pi,
    )
    .await;
    let (disputed, _) =
        fake.succeeded_payment(Some(ACCOUNT), "pi_disputed", 2_000, "usd", Some(50), None);
    let pi = intent(&fake, Some(ACCOUNT), "pi_disputed", ours.clone());
    deliver(
        &server,
        "evt_2",
        "payment_intent.succeeded",
        Some(ACCOUNT),
        &pi,
    )
    .await;
    // A destination charge on the platform, for the tenant's account.
    let (dest, _) = fake.succeeded_payment(None, "pi_dest", 5_000, "usd", Some(500), Some(ACCOUNT));
    let pi = intent(&fake, None, "pi_dest", ours.clone());
    deliver(&server, "evt_3", "payment_intent.succeeded", None, &pi).await;
    // A wallet deposit on the platform (seed 002).
    fake.succeeded_payment(None, "pi_deposit", 10_500, "usd", None, None);
    let pi = intent(
        &fake,
        None,
        "pi_deposit",
        json!({"tenant_id": TENANT, "type": "deposit", "walletId": "w-1"}),
    );
    deliver(&server, "evt_4", "payment_intent.succeeded", None, &pi).await;
    // Each payment's settlement reads Stripe's fee.
    assert_eq!(server.pipeline.queue_jobs().await.unwrap(), 4);
    assert_eq!(server.pipeline.retry_due().await.unwrap(), 4);

    // A partial refund of the direct charge.
    let refund = fake.refund_charge(Some(ACCOUNT), &direct, 3_000);
    deliver(&server, "evt_5", "refund.created", Some(ACCOUNT), &refund).await;
    // A refund of the destination charge that fails at the bank.
    let refund = fake.refund_charge(None, &dest, 1_000);
    deliver(&server, "evt_6", "refund.created", None, &refund).await;
    let failed = fake.fail_refund(None, refund["id"].as_str().unwrap());
    deliver(&server, "evt_7", "refund.failed", None, &failed).await;
    // The platform gives back 1.00 of the direct charge's application fee.
    let fee_id = fake.object(Some(ACCOUNT), &direct).unwrap()["application_fee"]
        .as_str()
        .unwrap()
        .to_string();
    let fee = fake.refund_application_fee(&fee_id, 100);
    deliver(&server, "evt_8", "application_fee.refunded", None, &fee).await;
    // The disputed charge is lost, with Stripe's 15.00 dispute fee.
    let dispute = fake.lose_dispute(Some(ACCOUNT), &disputed, 1_500);
    deliver(
        &server,
        "evt_9",
        "charge.dispute.funds_withdrawn",
        Some(ACCOUNT),
        &dispute,
    )
    .await;

    // Escrow from the wallet: hold, accept, complete (seed 002's 105 / 5 / 20 / 80).
    let path = format!("/v1/ledger/{TENANT}/transactions");
    for (id, moves) in [
        (
            "offer-7:hold",
            json!([{"from": "wallet:w-1", "to": "escrow", "amount": "105.00"}]),
        ),
        (
            "offer-7:accept",
            json!([{"from": "escrow", "to": "platform", "amount": "5.00"}]),
        ),
        (
            "offer-7:complete",
            json!([{"from": "escrow", "to": "platform", "amount": "20.00"},
                   {"from": "escrow", "to": "contractor:c-9", "amount": "80.00"}]),
        ),
    ] {
        post(
            &server,
            &path,
            json!({"id": id, "currency": "usd", "movements": moves}),
        )
        .await;
    }
    // The contractor withdraws 50.00; 10.00 of the transfer comes back.
    let w = json!({"request_id": "w-1", "tenant": TENANT, "contractor": "c-9",
                   "destination": WORKER, "amount": "50.00", "currency": "usd"});
    let paid = post(&server, "/v1/operations/withdraw", w).await;
    let transfer = paid["transfer"]["id"].as_str().unwrap().to_string();
    let reversed = fake.reverse_transfer(&transfer, 1_000);
    deliver(&server, "evt_10", "transfer.reversed", None, &reversed).await;

    // The tenant's account pays 60.00 out to its bank.
    let payout = fake.payout(Some(ACCOUNT), 6_000, "usd");
    deliver(&server, "evt_11", "payout.paid", Some(ACCOUNT), &payout).await;

    let now = psa_billing::clock::unix_now();
    let (from, to) = (now - 86_400, now + 86_400);
    let report = reconcile(&server, from, to).await;
    let r = &report["reports"][0];
    println!("{}", table(&report));
    assert_eq!(report["differences"], 0, "{report:#}");
    let lines: BTreeMap<&str, &Value> = r["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["key"].as_str().unwrap(), l))
        .collect();
    // Each payment is one line however Stripe split it between balances.
    assert_eq!(lines["pi_direct"]["stripe"]["fee"], 320, "{report:#}");
    assert_eq!(
        lines["pi_direct"]["stripe"]["ids"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "charge, fee, fee refund on both balances"
    );
    assert_eq!(
        lines["pi_dest"]["stripe"]["ids"].as_array().unwrap().len(),
        3,
        "charge, transfer, payment"
    );
    assert_eq!(
        lines[transfer.as_str()]["stripe"]["net"],
        -4_000,
        "transfer and reversal"
    );
    assert_eq!(
        lines[dispute["id"].as_str().unwrap()]["stripe"]["net"],
        -3_500
    );
    assert_eq!(
        lines[payout["id"].as_str().unwrap()]["ledger"]["net"],
        -6_000
    );

    // The ledger's accounts held at Stripe sum to what Stripe's balances say.
    let b = balances(&server).await;
    let totals = &r["totals"][0];
    let held: i64 = b
        .iter()
        .filter(|(a, _)| !matches!(a.as_str(), "customer" | "processor" | "paid_out"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        held,
        totals["stripe_net"].as_i64().unwrap(),
        "{b:?} {totals}"
    );
    assert_eq!(
        b["processor"],
        totals["stripe_fee"].as_i64().unwrap(),
        "{b:?}"
    );
    // And each party holds what its flows leave it.
    assert_eq!(b["wallet:w-1"], 0, "{b:?}");
    assert_eq!(b["escrow"], 0, "{b:?}");
    assert_eq!(b["contractor:c-9"], 8_000 - 5_000 + 1_000, "{b:?}");
    assert_eq!(
        b["paid_out"],
        4_000 + 6_000,
        "the withdrawal and the payout: {b:?}"
    );
    assert_eq!(b.get("withdrawing").copied().unwrap_or(0), 0, "{b:?}");
    assert_eq!(b.values().sum::<i64>(), 0, "double entry: {b:?}");

    // Stripe says otherwise about one balance transaction: it is found.
    let charge = fake.object(Some(ACCOUNT), &direct).unwrap();
    let txn = charge["balance_transaction"].as_str().unwrap();
    fake.edit_balance_transaction(Some(ACCOUNT), txn, |t| {
        t["fee"] = json!(t["fee"].as_i64().unwrap() + 1);
        t["net"] = json!(t["net"].as_i64().unwrap() - 1);
        t["fee_details"][0]["amount"] = json!(t["fee_details"][0]["amount"].as_i64().unwrap() + 1);
    });
    let report = reconcile(&server, from, to).await;
    assert_eq!(report["differences"], 1, "{report:#}");
    let line = report["reports"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["status"] != "matched")
        .unwrap();
    assert_eq!(line["key"], "pi_direct");
    assert_eq!(line["status"], "differs");
    assert_eq!(line["stripe"]["fee"], 321);
    assert_eq!(line["ledger"]["fee"], 320);
    println!("{}", table(&report));
}

/// The report as `psa-billing reconcile` prints it (shown with --nocapture).
fn table(report: &Value) -> String {
    let reports = serde_json::from_value::<Vec<_>>(report["reports"].clone()).unwrap();
    psa_billing::api::reconcile::reports_table(&reports)
}

#[tokio::test]
async fn pages_are_followed_and_a_bad_period_or_no_key_is_refused() {
    let (fake, server) = setup(false).await;
    // 230 charges on the platform: three pages of 100.
    for i in 0..230 {
        fake.succeeded_payment(None, &format!("pi_many{i}"), 1_000, "usd", None, None);
    }
    let now = psa_billing::clock::unix_now();
    let report = reconcile(&server, now - 10, now + 10).await;
    // None of them is the tenant's: listed, resolved, and left out.
    assert_eq!(report["differences"], 0, "{report:#}");
    let pages = fake.requests_to("GET", "/v1/balance_transactions");
    let platform: Vec<_> = pages.iter().filter(|r| r.account.is_none()).collect();
    assert_eq!(platform.len(), 3, "{pages:?}");
    assert!(!platform[0].form.contains_key("starting_after"));
    assert!(platform[1].form.contains_key("starting_after"));
    assert_eq!(platform[0].form["created[gte]"], (now - 10).to_string());
    assert!(pages.iter().any(|r| r.account.as_deref() == Some(ACCOUNT)));

    for (query, status) in [
        (
            format!("tenant={TENANT}&from=2025-12-01&to=2025-11-01"),
            422,
        ),
        (format!("tenant={TENANT}&from=yesterday&to=2025-11-01"), 422),
        (format!("tenant={TENANT}&from=2025-11-01"), 400),
        ("tenant=%20&from=2025-11-01&to=2025-12-01".to_string(), 422),
    ] {
        let a = server
            .get(&format!("/v1/reconciliation?{query}"), Some(API_TOKEN))
            .await;
        assert_eq!(a.status, status, "{query}: {}", a.body);
    }

    // Without a Stripe key there is nothing to reconcile against.
    let bare = TestServer::start(Options::default()).await;
    let a = bare
        .get(
            "/v1/reconciliation?from=2025-11-01&to=2025-12-01",
            Some(API_TOKEN),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.body["error"], "stripe_denied");
}
