//! Operations through the Stripe capability, end to end: HTTP `/v1/operations`
//! → the component → the host's async-stripe client → a FAKE Stripe server
//! on 127.0.0.1 (see `fake_stripe`). The tests assert on the exact requests
//! the client sent.

use psa_billing::stripe::StripeConfig;
use psa_billing::{Limits, Runtime};
use psa_billing_tests::fake_stripe::{FAKE_KEY, FakeStripe, Fault};
use psa_billing_tests::{Options, TestServer, stripe_object};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ACCOUNT: &str = "acct_1TenantA";

fn config(fake: &FakeStripe) -> StripeConfig {
    let mut c = StripeConfig::new(FAKE_KEY);
    c.base_url = Some(fake.url());
    c.backoff = Duration::from_millis(5);
    c
}

/// A 2.5 % Connect application fee.
const RULES: &str = "[platform]\npercent = \"2.5\"\n";

/// What the operations of these tests name is t1's, as the tenant
/// boundary requires: `ACCOUNT` registered to t1; customer `cus_123`
/// (metadata `tenant_id` t1) with its saved cards, on the platform and on
/// `ACCOUNT`; t2's customer `cus_456` and market's `cus_789` likewise.
async fn own(fake: &FakeStripe, server: &TestServer) {
    for (account, tenant) in ACCOUNTS {
        let put = server
            .put_json(
                &format!("/v1/tenants/{account}"),
                &json!({"tenant": tenant}),
            )
            .await;
        assert_eq!(put.status, 200, "{}", put.body);
    }
    own_objects(fake);
}

/// The connected accounts of t1 and t2.
const ACCOUNTS: [(&str, &str); 2] = [(ACCOUNT, "t1"), ("acct_1TenantB", "t2")];

/// The customers and cards of [`own`], at the fake Stripe.
fn own_objects(fake: &FakeStripe) {
    for on in [None, Some(ACCOUNT), Some("acct_1TenantB")] {
        for (customer, tenant, cards) in [
            (
                "cus_123",
                "t1",
                ["pm_card", "pm_card_visa", "pm_card_chargeDeclined"],
            ),
            (
                "cus_456",
                "t2",
                ["pm_t2_card", "pm_t2_visa", "pm_t2_declined"],
            ),
            (
                "cus_789",
                "market",
                ["pm_market_card", "pm_market_visa", "pm_market_declined"],
            ),
        ] {
            let mut c = stripe_object("customer");
            c["id"] = json!(customer);
            c["metadata"] = json!({"tenant_id": tenant});
            fake.insert(on, c);
            for card in cards {
                let mut pm = stripe_object("payment_method");
                pm["id"] = json!(card);
                pm["customer"] = json!(customer);
                fake.insert(on, pm);
            }
        }
    }
}

async fn setup() -> (FakeStripe, TestServer) {
    let fake = FakeStripe::start().await;
    let server = TestServer::start(Options {
        stripe: Some(config(&fake)),
        rules: Some(RULES.into()),
        ..Options::default()
    })
    .await;
    own(&fake, &server).await;
    (fake, server)
}

fn invoice(request_id: &str, pm: Option<&str>) -> Value {
    json!({
        "request_id": request_id, "tenant": "t1", "account": ACCOUNT,
        "invoice_id": "inv-42", "amount": "100.00", "currency": "usd",
        "payment_method": pm, "customer": "cus_123",
    })
}

#[tokio::test]
async fn charge_invoice_sends_a_direct_charge_with_the_rules_fee_once() {
    let (fake, server) = setup().await;
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-1", None))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let pi = &a.body["payment_intent"];
    let fee = a.body["fees"]["application_fee"]["amount"]
        .as_i64()
        .unwrap();
    assert_eq!(fee, 250, "2.5 % of 100.00");
    assert_eq!(pi["amount"]["amount"], 10_000);
    assert_eq!(pi["status"], "requires_payment_method");

    let sent = fake.requests_to("POST", "/v1/payment_intents");
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(
        r.account.as_deref(),
        Some(ACCOUNT),
        "a direct charge is made on the tenant's account"
    );
    assert_eq!(
        r.idempotency_key.as_deref(),
        Some(idempotency_key("charge-invoice", "t1", "req-1", "payment_intent").as_str())
    );
    assert_eq!(r.form["amount"], "10000");
    assert_eq!(r.form["currency"], "usd");
    assert_eq!(r.form["application_fee_amount"], fee.to_string());
    assert_eq!(r.form["metadata[tenant_id]"], "t1");
    assert_eq!(r.form["metadata[invoice_id]"], "inv-42");
    assert_eq!(r.form["customer"], "cus_123");
    assert!(!r.form.contains_key("transfer_data[destination]"));

    // The same request again: the same intent, nothing created.
    let again = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-1", None))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["payment_intent"]["id"], pi["id"]);
    assert_eq!(fake.requests_to("POST", "/v1/payment_intents").len(), 1);
}

#[tokio::test]
async fn a_destination_charge_is_made_on_the_platform() {
    let (fake, server) = setup().await;
    let mut body = invoice("req-d", None);
    body["destination"] = json!(true);
    let a = server
        .post_json("/v1/operations/charge-invoice", &body)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["payment_intent"]["transfer_destination"], ACCOUNT);
    let r = &fake.requests_to("POST", "/v1/payment_intents")[0];
    assert_eq!(r.account, None);
    assert_eq!(r.form["transfer_data[destination]"], ACCOUNT);
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_idempotency_key() {
    let (fake, server) = setup().await;
    fake.fail_next_writes([Fault::Status(429), Fault::Status(500)]);
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-r", None))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = fake.requests_to("POST", "/v1/payment_intents");
    assert_eq!(sent.len(), 3, "two failures, then success");
    assert!(
        sent.iter()
            .all(|r| r.idempotency_key == sent[0].idempotency_key)
    );

    // Retries are bounded: four failures in a row exhaust them.
    fake.fail_next_writes(std::iter::repeat_n(Fault::Status(503), 4));
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-x", None))
        .await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.body["error"], "stripe_unavailable");
    assert!(
        a.body["reason"].as_str().unwrap().contains("503"),
        "{}",
        a.body
    );
    assert_eq!(fake.requests_to("POST", "/v1/payment_intents").len(), 3 + 4);
}

#[tokio::test]
async fn a_declined_card_comes_back_typed_with_its_decline_code() {
    let (fake, server) = setup().await;
    fake.fail_next_writes([Fault::CardDecline("insufficient_funds")]);
    let a = server
        .post_json(
            "/v1/operations/charge-invoice",
            &invoice("req-c", Some("pm_card")),
        )
        .await;
    assert_eq!(a.status, 402, "{}", a.body);
    assert_eq!(a.body["error"], "card_declined");
    let decline = &a.body["card_declined"];
    assert_eq!(decline["code"], "card_declined");
    assert_eq!(decline["decline_code"], "insufficient_funds");
    assert_eq!(
        fake.requests_to("POST", "/v1/payment_intents").len(),
        1,
        "a decline is not retried"
    );
}

#[tokio::test]
async fn a_wrong_key_is_an_authentication_error_and_no_key_denies() {
    let fake = FakeStripe::start().await;
    let mut c = config(&fake);
    c.secret_key = "sk_test_wrong".into();
    let server = TestServer::start(Options {
        stripe: Some(c),
        ..Options::default()
    })
    .await;
    own(&fake, &server).await;
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-k", None))
        .await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (502, Some("stripe_authentication")),
        "{}",
        a.body
    );
    assert_eq!(fake.requests().len(), 1, "a refused key is not retried");

    let unconfigured = TestServer::start(Options::default()).await;
    own(&fake, &unconfigured).await;
    let a = unconfigured
        .post_json("/v1/operations/charge-invoice", &invoice("req-k", None))
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body["reason"]
            .as_str()
            .unwrap()
            .contains("STRIPE_SECRET_KEY"),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn operations_outside_the_allow_list_are_denied_before_any_request() {
    let fake = FakeStripe::start().await;
    let mut c = config(&fake);
    c.allow = Some(
        StripeConfig::parse_allow(
            "retrieve-payment-intent,retrieve-charge,retrieve-customer,retrieve-payment-method",
        )
        .unwrap(),
    );
    let server = TestServer::start(Options {
        stripe: Some(c),
        ..Options::default()
    })
    .await;
    own(&fake, &server).await;
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-a", None))
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.body["error"], "stripe_denied");
    assert!(
        a.body["reason"]
            .as_str()
            .unwrap()
            .contains("create-payment-intent")
    );
    // The tenant boundary read what the request names; nothing was written.
    assert!(fake.requests().iter().all(|r| r.method == "GET"));
    assert!(StripeConfig::parse_allow("create-refund,charge-everything").is_err());
}

/// A confirmed $100 charge with its fee; returns the payment intent id.
async fn paid_invoice(server: &TestServer, request_id: &str) -> (String, i64) {
    let a = server
        .post_json(
            "/v1/operations/charge-invoice",
            &invoice(request_id, Some("pm_card_visa")),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["payment_intent"]["status"], "succeeded");
    let fee = a.body["payment_intent"]["application_fee_amount"]
        .as_i64()
        .unwrap();
    (
        a.body["payment_intent"]["id"].as_str().unwrap().to_string(),
        fee,
    )
}

#[tokio::test]
async fn refunds_split_the_fee_and_cannot_exceed_what_is_left() {
    let (fake, server) = setup().await;
    let (pi, fee) = paid_invoice(&server, "req-p").await;
    let refund = |id: &str, amount: Option<&str>| {
        json!({
            "request_id": id, "tenant": "t1", "account": ACCOUNT, "payment_intent": pi,
            "amount": amount, "currency": amount.map(|_| "usd"), "refund_application_fee": true,
        })
    };
    let a = server
        .post_json("/v1/operations/refund", &refund("ref-1", Some("30.00")))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let split = &a.body["split"];
    assert_eq!(split["amount"]["amount"], 3_000);
    assert_eq!(
        split["application_fee_refunded"].as_i64().unwrap(),
        fee * 3 / 10
    );
    assert_eq!(split["total_refunded"], 3_000);
    let r = &fake.requests_to("POST", "/v1/refunds")[0];
    assert_eq!(r.account.as_deref(), Some(ACCOUNT));
    assert_eq!(r.form["payment_intent"], pi);
    assert_eq!(r.form["amount"], "3000");
    assert_eq!(r.form["refund_application_fee"], "true");
    assert_eq!(
        r.idempotency_key.as_deref(),
        Some(idempotency_key("refund", "t1", "ref-1", "refund").as_str())
    );

    // More than the 70.00 left: refused before Stripe is asked.
    let a = server
        .post_json("/v1/operations/refund", &refund("ref-2", Some("70.01")))
        .await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (409, Some("refused")),
        "{}",
        a.body
    );
    assert_eq!(fake.requests_to("POST", "/v1/refunds").len(), 1);

    // The rest, without an amount: the split returns the whole fee.
    let a = server
        .post_json("/v1/operations/refund", &refund("ref-3", None))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["split"]["amount"]["amount"], 7_000);
    assert_eq!(a.body["split"]["full"], true);
    let back = a.body["split"]["application_fee_refunded"]
        .as_i64()
        .unwrap();
    assert_eq!(back + fee * 3 / 10, fee, "the fee comes back whole");
    let charge = fake
        .object(Some(ACCOUNT), &format!("ch_fake{:06}", 2))
        .unwrap();
    assert_eq!(charge["amount_refunded"], 10_000);
}

async fn fund_contractor(server: &TestServer, tenant: &str, amount: &str) {
    let a = server
        .post_json(
            &format!("/v1/ledger/{tenant}/transactions"),
            &json!({"id": "offer-1:complete", "currency": "usd",
                    "movements": [{"from": "customer", "to": "contractor", "amount": amount}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

async fn balance(server: &TestServer, tenant: &str, account: &str) -> i64 {
    let a = server
        .get(
            &format!("/v1/ledger/{tenant}/balances"),
            Some(psa_billing_tests::API_TOKEN),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["balances"]["usd"][account]["amount"]
        .as_i64()
        .unwrap_or(0)
}

fn withdrawal(id: &str, destination: &str, amount: &str) -> Value {
    json!({"request_id": id, "tenant": "market", "destination": destination,
           "amount": amount, "currency": "usd"})
}

#[tokio::test]
async fn withdrawals_hold_then_transfer_and_never_overdraw() {
    let (fake, server) = setup().await;
    let mut contractor = stripe_object("account");
    contractor["id"] = json!("acct_1Contractor");
    fake.insert(None, contractor);
    fund_contractor(&server, "market", "80.00").await;
    // Paid only to an account registered as one of the tenant's.
    let put = server
        .put_json(
            "/v1/contractors/market/c-1",
            &json!({"account": "acct_1Contractor"}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);

    let a = server
        .post_json(
            "/v1/operations/withdraw",
            &withdrawal("w-1", "acct_1Contractor", "50.00"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["transfer"]["destination"], "acct_1Contractor");
    let t = &fake.requests_to("POST", "/v1/transfers")[0];
    assert_eq!(t.account, None, "a transfer is made from the platform");
    assert_eq!(t.form["amount"], "5000");
    assert_eq!(t.form["destination"], "acct_1Contractor");
    assert_eq!(
        t.idempotency_key.as_deref(),
        Some(idempotency_key("withdraw", "market", "w-1", "transfer").as_str())
    );
    assert_eq!(balance(&server, "market", "contractor").await, 3_000);
    assert_eq!(balance(&server, "market", "paid_out").await, 5_000);
    assert_eq!(balance(&server, "market", "withdrawing").await, 0);

    // The same request: the same transfer, nothing moves twice.
    let again = server
        .post_json(
            "/v1/operations/withdraw",
            &withdrawal("w-1", "acct_1Contractor", "50.00"),
        )
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["transfer"]["id"], a.body["transfer"]["id"]);
    assert_eq!(fake.requests_to("POST", "/v1/transfers").len(), 1);
    assert_eq!(balance(&server, "market", "paid_out").await, 5_000);

    // Beyond the 30.00 left: refused, no transfer.
    let a = server
        .post_json(
            "/v1/operations/withdraw",
            &withdrawal("w-2", "acct_1Contractor", "30.01"),
        )
        .await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (409, Some("refused")),
        "{}",
        a.body
    );
    assert_eq!(fake.requests_to("POST", "/v1/transfers").len(), 1);

    // An account that is not the tenant's: refused before any hold or transfer.
    let a = server
        .post_json(
            "/v1/operations/withdraw",
            &withdrawal("w-3", "acct_1Unknown", "10.00"),
        )
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"], "not_owned");
    assert_eq!(balance(&server, "market", "contractor").await, 3_000);
    assert_eq!(balance(&server, "market", "withdrawing").await, 0);

    // Stripe unreachable: the hold stays; the same request later completes it.
    fake.fail_next_writes(std::iter::repeat_n(Fault::Status(500), 4));
    let a = server
        .post_json(
            "/v1/operations/withdraw",
            &withdrawal("w-4", "acct_1Contractor", "20.00"),
        )
        .await;
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(balance(&server, "market", "withdrawing").await, 2_000);
    assert_eq!(balance(&server, "market", "contractor").await, 1_000);
    let a = server
        .post_json(
            "/v1/operations/withdraw",
            &withdrawal("w-4", "acct_1Contractor", "20.00"),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(balance(&server, "market", "withdrawing").await, 0);
    assert_eq!(balance(&server, "market", "paid_out").await, 7_000);
}

#[tokio::test]
async fn a_contractor_withdraws_its_own_balance_to_its_own_account() {
    let (fake, server) = setup().await;
    for id in ["acct_1Ana", "acct_1Ben"] {
        let mut a = stripe_object("account");
        a["id"] = json!(id);
        fake.insert(None, a);
    }
    let register = |contractor: &str, account: &str| {
        let path = format!("/v1/contractors/market/{contractor}");
        let body = json!({ "account": account });
        let server = &server;
        async move { server.put_json(&path, &body).await }
    };
    assert_eq!(register("ana", "acct_1Ana").await.status, 200);
    assert_eq!(register("ben", "acct_1Ben").await.status, 200);
    let bad = register("bad!", "acct_1Ana").await;
    assert_eq!(
        (bad.status, bad.body["error"].as_str()),
        (422, Some("invalid_contractor"))
    );
    let looked = server
        .get(
            "/v1/contractors/market/ana",
            Some(psa_billing_tests::API_TOKEN),
        )
        .await;
    assert_eq!(looked.body["account"], "acct_1Ana", "{}", looked.body);
    let unknown = server
        .get(
            "/v1/contractors/market/cy",
            Some(psa_billing_tests::API_TOKEN),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    // Ana earned 80.00, Ben 20.00.
    let a = server
        .post_json(
            "/v1/ledger/market/transactions",
            &json!({"id": "offer-1:complete", "currency": "usd", "movements": [
                {"from": "customer", "to": "contractor:ana", "amount": "80.00"},
                {"from": "customer", "to": "contractor:ben", "amount": "20.00"}]}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let withdraw = |id: &str, contractor: &str, destination: &str, amount: &str| {
        let body = json!({"request_id": id, "tenant": "market", "contractor": contractor,
                          "destination": destination, "amount": amount, "currency": "usd"});
        let server = &server;
        async move { server.post_json("/v1/operations/withdraw", &body).await }
    };
    // Ben cannot take Ana's money, nor send his own to Ana's account.
    let a = withdraw("w-b1", "ben", "acct_1Ben", "30.00").await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (409, Some("refused")),
        "{}",
        a.body
    );
    let a = withdraw("w-b2", "ben", "acct_1Ana", "10.00").await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(
        a.body["reason"]
            .as_str()
            .unwrap()
            .contains("paid to acct_1Ben"),
        "{}",
        a.body
    );
    let a = withdraw("w-c1", "cy", "acct_1Ana", "1.00").await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(fake.requests_to("POST", "/v1/transfers").is_empty());

    let a = withdraw("w-a1", "ana", "acct_1Ana", "50.00").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let t = &fake.requests_to("POST", "/v1/transfers")[0];
    assert_eq!(t.form["metadata[psa_billing_contractor]"], "ana");
    assert_eq!(balance(&server, "market", "contractor:ana").await, 3_000);
    assert_eq!(balance(&server, "market", "contractor:ben").await, 2_000);

    // Stripe reverses 10.00 of Ana's transfer: it is Ana's again.
    let transfer = a.body["transfer"]["id"].as_str().unwrap();
    let reversed = fake.reverse_transfer(transfer, 1_000);
    let a = server
        .deliver_signed(&psa_billing_tests::event(
            "evt_rev_ana",
            "transfer.reversed",
            reversed,
        ))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(balance(&server, "market", "contractor:ana").await, 4_000);
    assert_eq!(balance(&server, "market", "paid_out").await, 4_000);
}

#[tokio::test]
async fn a_deposit_is_held_to_the_rules_limits_and_credits_the_wallet() {
    let fake = FakeStripe::start().await;
    let rules = format!(
        "{RULES}\n[[limits]]\ncurrency = \"usd\"\ndeposit_min = 500\ndeposit_max = 100000\n"
    );
    let server = TestServer::start(Options {
        stripe: Some(config(&fake)),
        rules: Some(rules),
        ..Options::default()
    })
    .await;
    own(&fake, &server).await;
    let deposit = |id: &str, amount: &str| {
        json!({"request_id": id, "tenant": "market", "wallet": "w-1", "amount": amount,
               "currency": "usd", "customer": "cus_789", "payment_method": "pm_market_visa"})
    };
    // Below the minimum and above the maximum: refused before Stripe.
    for (id, amount, limit) in [
        ("d-small", "4.99", "minimum deposit is 5.00"),
        ("d-big", "1000.01", "maximum deposit is 1000.00"),
    ] {
        let a = server
            .post_json("/v1/operations/deposit", &deposit(id, amount))
            .await;
        assert_eq!(a.status, 422, "{}", a.body);
        assert!(
            a.body["reason"].as_str().unwrap().contains(limit),
            "{}",
            a.body
        );
    }
    let mut bad = deposit("d-bad", "10.00");
    bad["wallet"] = json!("w/1");
    let a = server.post_json("/v1/operations/deposit", &bad).await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(fake.requests_to("POST", "/v1/payment_intents").is_empty());

    // Within them: a payment intent on the platform, marked as a deposit.
    let a = server
        .post_json("/v1/operations/deposit", &deposit("d-1", "105.00"))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = &fake.requests_to("POST", "/v1/payment_intents")[0];
    assert_eq!(sent.account, None);
    assert_eq!(sent.form["metadata[type]"], "deposit");
    assert_eq!(sent.form["metadata[walletId]"], "w-1");
    assert_eq!(sent.form.get("application_fee_amount"), None);
    let again = server
        .post_json("/v1/operations/deposit", &deposit("d-1", "105.00"))
        .await;
    assert_eq!(again.body["id"], a.body["id"], "{}", again.body);
    assert_eq!(fake.requests_to("POST", "/v1/payment_intents").len(), 1);

    // Its webhook credits the wallet, not the tenant.
    let pi = fake.object(None, a.body["id"].as_str().unwrap()).unwrap();
    assert_eq!(pi["status"], "succeeded");
    let body = psa_billing_tests::event("evt_dep_1", "payment_intent.succeeded", pi);
    assert_eq!(server.deliver_signed(&body).await.status, 200);
    assert_eq!(balance(&server, "market", "wallet:w-1").await, 10_500);
    assert_eq!(balance(&server, "market", "tenant").await, 0);
}

#[tokio::test]
async fn set_license_count_updates_the_single_item_quantity() {
    let (fake, server) = setup().await;
    let mut sub = stripe_object("subscription");
    let sub_id = sub["id"].as_str().unwrap().to_string();
    let item = sub["items"]["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(sub["items"]["data"].as_array().unwrap().len(), 1);
    sub["metadata"] = json!({"tenant_id": "t1"});
    fake.insert(Some(ACCOUNT), sub);
    let body = json!({"request_id": "seats-1", "tenant": "t1", "account": ACCOUNT,
                      "subscription": sub_id, "count": 7});
    let a = server
        .post_json("/v1/operations/set-license-count", &body)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["items"][0]["quantity"], 7);
    let r = &fake.requests_to("POST", "/v1/subscriptions/")[0];
    assert_eq!(r.account.as_deref(), Some(ACCOUNT));
    assert_eq!(r.form["items[0][id]"], item);
    assert_eq!(r.form["items[0][quantity]"], "7");
    assert_eq!(
        r.idempotency_key.as_deref(),
        Some(idempotency_key("set-license-count", "t1", "seats-1", "quantity").as_str())
    );

    let zero = json!({"request_id": "seats-2", "tenant": "t1", "account": ACCOUNT,
                      "subscription": sub_id, "count": 0});
    let a = server
        .post_json("/v1/operations/set-license-count", &zero)
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
}

/// Seed 004: seats and an add-on on one subscription. Naming the license
/// price sets its item alone; without it, two items are refused.
#[tokio::test]
async fn set_license_count_by_price_leaves_an_add_on_alone() {
    let (fake, server) = setup().await;
    let mut sub = stripe_object("subscription");
    let sub_id = sub["id"].as_str().unwrap().to_string();
    let mut seats = sub["items"]["data"][0].clone();
    seats["id"] = json!("si_seats");
    seats["price"]["id"] = json!("price_pro");
    seats["quantity"] = json!(5);
    let mut addon = seats.clone();
    addon["id"] = json!("si_addon");
    addon["price"]["id"] = json!("price_addon");
    addon["quantity"] = json!(2);
    sub["items"]["data"] = json!([addon, seats]);
    sub["metadata"] = json!({"tenant_id": "t1"});
    fake.insert(Some(ACCOUNT), sub);
    let body = |id: &str, price: Option<&str>| {
        json!({"request_id": id, "tenant": "t1", "account": ACCOUNT,
               "subscription": sub_id, "price": price, "count": 9})
    };
    let a = server
        .post_json("/v1/operations/set-license-count", &body("seats-a", None))
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(
        a.body["reason"].as_str().unwrap().contains("price"),
        "{}",
        a.body
    );
    let a = server
        .post_json(
            "/v1/operations/set-license-count",
            &body("seats-b", Some("price_x")),
        )
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(fake.requests_to("POST", "/v1/subscriptions/").is_empty());

    let a = server
        .post_json(
            "/v1/operations/set-license-count",
            &body("seats-c", Some("price_pro")),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = &fake.requests_to("POST", "/v1/subscriptions/")[0];
    assert_eq!(r.form["items[0][id]"], "si_seats");
    assert_eq!(r.form["items[0][quantity]"], "9");
    let items = fake.object(Some(ACCOUNT), &sub_id).unwrap()["items"]["data"].clone();
    assert_eq!(items[0]["quantity"], 2, "the add-on is left alone");
    assert_eq!(items[1]["quantity"], 9);
}

#[tokio::test]
async fn onboarding_creates_the_account_registers_it_and_links() {
    let (fake, server) = setup().await;
    let body = json!({"request_id": "onb-1", "tenant": "t-new", "country": "us",
                      "email": "owner@example.com",
                      "refresh_url": "https://app.example/refresh",
                      "return_url": "https://app.example/done"});
    let a = server
        .post_json("/v1/operations/onboard-tenant", &body)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let account = a.body["account"]["id"].as_str().unwrap().to_string();
    assert!(a.body["link"]["url"].as_str().unwrap().contains(&account));
    let r = &fake.requests_to("POST", "/v1/accounts")[0];
    assert_eq!(r.form["type"], "express");
    assert_eq!(r.form["country"], "US");
    assert_eq!(r.form["metadata[tenant_id]"], "t-new");
    let link = &fake.requests_to("POST", "/v1/account_links")[0];
    assert_eq!(link.form["account"], account);
    assert_eq!(link.form["type"], "account_onboarding");

    let looked = server
        .get(
            &format!("/v1/tenants/{account}"),
            Some(psa_billing_tests::API_TOKEN),
        )
        .await;
    assert_eq!(looked.body["tenant"], "t-new", "{}", looked.body);

    // Again (the link expired): the same account, a fresh link.
    let a = server
        .post_json("/v1/operations/onboard-tenant", &body)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["account"]["id"], account);
    assert_eq!(fake.requests_to("POST", "/v1/accounts").len(), 1);

    // Another request id for the same tenant (a second click, another
    // process): still its one account, a fresh link.
    let mut other = body.clone();
    other["request_id"] = json!("onb-2");
    let a = server
        .post_json("/v1/operations/onboard-tenant", &other)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["account"]["id"], account);
    assert_eq!(fake.requests_to("POST", "/v1/accounts").len(), 1);
    assert_eq!(fake.requests_to("POST", "/v1/account_links").len(), 3);
    // Another tenant gets its own.
    let mut third = body.clone();
    third["tenant"] = json!("t-other");
    let a = server
        .post_json("/v1/operations/onboard-tenant", &third)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_ne!(a.body["account"]["id"], account);
    assert_eq!(fake.requests_to("POST", "/v1/accounts").len(), 2);

    // Its status, as Stripe has it now: not enabled yet, what is due.
    let status = |body: Value| {
        let server = &server;
        async move {
            server
                .post_json("/v1/operations/account-status", &body)
                .await
        }
    };
    let a = status(json!({"tenant": "t-new"})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["id"], account);
    assert_eq!(a.body["charges_enabled"], false);
    assert!(a.body["requirements_due"].is_array(), "{}", a.body);
    let got = fake.requests_to("GET", &format!("/v1/accounts/{account}"));
    assert_eq!(got.last().unwrap().account, None, "read as the platform");
    // Another tenant's account, or a tenant never onboarded: refused.
    let a = status(json!({"tenant": "t-other", "account": account})).await;
    assert_eq!(a.status, 409, "{}", a.body);
    let a = status(json!({"tenant": "t-never"})).await;
    assert_eq!(a.status, 409, "{}", a.body);
}

#[tokio::test]
async fn a_tenant_without_an_account_is_charged_on_the_platform() {
    let (fake, server) = setup().await;
    let mut body = invoice("req-p1", None);
    body.as_object_mut().unwrap().remove("account");
    let a = server
        .post_json("/v1/operations/charge-invoice", &body)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = &fake.requests_to("POST", "/v1/payment_intents")[0];
    assert_eq!(r.account, None, "on the platform");
    assert!(
        !r.form.contains_key("application_fee_amount"),
        "{:?}",
        r.form
    );
    assert!(!r.form.contains_key("transfer_data[destination]"));
    assert_eq!(r.form["metadata[tenant_id]"], "t1");
    assert_eq!(r.form["amount"], "10000");

    body["request_id"] = json!("req-p2");
    body["destination"] = json!(true);
    let a = server
        .post_json("/v1/operations/charge-invoice", &body)
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert_eq!(fake.requests_to("POST", "/v1/payment_intents").len(), 1);
}

/// The application fee `POST /v1/quote` gives for t1's invoice, and the one
/// `charge-invoice` then sends to Stripe for it.
async fn quoted_and_charged(server: &TestServer, fake: &FakeStripe, volume: &str) -> (i64, String) {
    let q = server
        .post_json(
            "/v1/quote",
            &json!({"amount": "100.00", "currency": "usd", "tenant": "t1", "monthly_volume": volume}),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.body);
    let mut body = invoice(&format!("req-{volume}"), None);
    body["monthly_volume"] = json!(volume);
    let a = server
        .post_json("/v1/operations/charge-invoice", &body)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["fees"]["application_fee"]["amount"],
        q.body["application_fee"]["amount"]
    );
    let sent = fake.requests_to("POST", "/v1/payment_intents");
    let form = &sent.last().unwrap().form;
    (
        q.body["application_fee"]["amount"].as_i64().unwrap(),
        form["application_fee_amount"].clone(),
    )
}

#[tokio::test]
async fn the_fee_charged_is_the_fee_quoted_with_the_rules_file() {
    let (fake, server) = setup().await;
    let (quoted, charged) = quoted_and_charged(&server, &fake, "0").await;
    assert_eq!(quoted, 250, "the rules file's 2.5 %");
    assert_eq!(charged, quoted.to_string());
}

#[tokio::test]
async fn the_fee_charged_is_the_fee_quoted_by_a_fee_rules_component() {
    let fake = FakeStripe::start().await;
    let wasm = std::fs::read(psa_billing::testing::VOLUME_DISCOUNT_RULES_PATH).unwrap();
    let runtime =
        Runtime::with_fee_rules(psa_billing::DEFAULT_PLUGIN, Some(&wasm), Limits::default())
            .unwrap();
    // The rules file says 5 %: with a component loaded it must price nothing.
    let server = TestServer::start(Options {
        runtime: Some(runtime),
        stripe: Some(config(&fake)),
        rules: Some("[platform]\npercent = \"5\"\n".into()),
        ..Options::default()
    })
    .await;
    own(&fake, &server).await;
    let (quoted, charged) = quoted_and_charged(&server, &fake, "0").await;
    assert_eq!(
        quoted, 250,
        "the component's 2.5 % below its volume threshold"
    );
    assert_eq!(charged, quoted.to_string());
    // Above the threshold the component's lower rate, in both.
    let (quoted, charged) = quoted_and_charged(&server, &fake, "12000.00").await;
    assert_eq!(
        quoted, 150,
        "the component's 1.5 % above its volume threshold"
    );
    assert_eq!(charged, quoted.to_string());
}

#[tokio::test]
async fn bad_requests_are_refused_with_reasons() {
    let (fake, server) = setup().await;
    let mut bad = invoice("req-b", None);
    bad["account"] = json!("tenant-a");
    let a = server
        .post_json("/v1/operations/charge-invoice", &bad)
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body["reason"].as_str().unwrap().contains("acct_"));
    let a = server
        .post_json("/v1/operations/charge-invoice", &json!({"request_id": "x"}))
        .await;
    assert_eq!(a.status, 422, "{}", a.body);
    let a = server
        .post_json("/v1/operations/charge-everything", &json!({}))
        .await;
    assert_eq!(a.status, 404, "{}", a.body);
    let open = server
        .client
        .post(server.url("/v1/operations/charge-invoice"))
        .json(&invoice("req-b", None))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 401, "operations need the bearer token");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_hostile_plugin_cannot_spin_or_flood_stripe_through_operations() {
    let fake = FakeStripe::start().await;
    let wasm = std::fs::read(psa_billing::testing::HOSTILE_PLUGIN_PATH).unwrap();
    let limits = Limits {
        call_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let server = TestServer::start(Options {
        runtime: Some(Runtime::new(&wasm, limits).unwrap()),
        stripe: Some(config(&fake)),
        ..Options::default()
    })
    .await;
    // Spins after a Stripe call: stopped by the deadline on its own work.
    let started = Instant::now();
    let onboard = json!({"request_id": "h-1", "tenant": "t", "country": "US",
                         "refresh_url": "https://a.example/r", "return_url": "https://a.example/d"});
    let a = server
        .post_json("/v1/operations/onboard-tenant", &onboard)
        .await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (500, Some("plugin_failed")),
        "{}",
        a.body
    );
    assert!(
        a.body["reason"].as_str().unwrap().contains("deadline"),
        "{}",
        a.body
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fake.requests_to("GET", "/v1/accounts/").len(), 1);
    // Calls Stripe without end: capped.
    let a = server
        .post_json(
            "/v1/operations/refund",
            &json!({"request_id": "h-2", "tenant": "t1", "payment_intent": "pi_1"}),
        )
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body["reason"].as_str().unwrap().contains("at most"),
        "{}",
        a.body
    );
    assert_eq!(
        fake.requests_to("GET", "/v1/payment_intents/").len(),
        psa_billing::MAX_STRIPE_CALLS as usize
    );
    // Stages a write and traps: nothing is committed, the server still answers.
    let a = server
        .post_json(
            "/v1/operations/set-license-count",
            &json!({"request_id": "h-3", "tenant": "t", "subscription": "sub_1", "count": 2}),
        )
        .await;
    assert_eq!(a.status, 500, "{}", a.body);
    assert!(
        server
            .db
            .state_entries("operations")
            .await
            .unwrap()
            .is_empty()
    );
    let a = server.get("/healthz", None).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn the_embedding_api_runs_operations_with_its_stripe_configuration() {
    let fake = FakeStripe::start().await;
    let dir = tempfile::tempdir().unwrap();
    let billing = psa_billing::Billing::builder()
        .database(format!("sqlite://{}", dir.path().join("b.db").display()))
        .webhook_secrets(["whsec_embed"])
        .stripe(config(&fake))
        .build()
        .await
        .unwrap();
    for (account, tenant) in ACCOUNTS {
        billing.register_tenant(account, tenant).await.unwrap();
    }
    own_objects(&fake);
    let input: psa_billing::api::operations::ChargeInvoiceInput =
        serde_json::from_value(invoice("emb-1", Some("pm_card_visa"))).unwrap();
    let charged = billing.charge_invoice(input).await.unwrap();
    assert_eq!(charged.payment_intent.status, "succeeded");
    let sent = fake.requests_to("POST", "/v1/payment_intents");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].account.as_deref(), Some(ACCOUNT));

    let seats: psa_billing::api::operations::LicenseCountInput = serde_json::from_value(
        json!({"request_id": "emb-2", "tenant": "t1", "subscription": "sub_missing", "count": 3}),
    )
    .unwrap();
    let err = billing.set_license_count(seats).await.unwrap_err();
    assert!(err.to_string().contains("No such subscription"), "{err}");
}

/// The idempotency key the plugin sends for a tenant's request: the
/// tenant's digest keeps two tenants' equal request ids apart.
fn idempotency_key(operation: &str, tenant: &str, request_id: &str, step: &str) -> String {
    let tenant = &psa_billing_core::state::sha256_hex(tenant)[..16];
    format!("psa-billing:{operation}:{tenant}:{request_id}:{step}")
}

#[tokio::test]
async fn two_tenants_may_use_the_same_request_id() {
    let (fake, server) = setup().await;
    let first = server
        .post_json("/v1/operations/charge-invoice", &invoice("inv-1001", None))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let mut other = invoice("inv-1001", None);
    other["tenant"] = json!("t2");
    other["account"] = json!("acct_1TenantB");
    other["customer"] = json!("cus_456");
    other["amount"] = json!("42.00");
    let second = server
        .post_json("/v1/operations/charge-invoice", &other)
        .await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_ne!(
        second.body["payment_intent"]["id"], first.body["payment_intent"]["id"],
        "t2 got t1's charge"
    );
    assert_eq!(second.body["payment_intent"]["amount"]["amount"], 4_200);
    let sent = fake.requests_to("POST", "/v1/payment_intents");
    assert_eq!(sent.len(), 2, "each tenant's request made its own charge");
    assert_ne!(sent[0].idempotency_key, sent[1].idempotency_key);
    // Each repeat still gets its own tenant's first answer.
    let again = server
        .post_json("/v1/operations/charge-invoice", &other)
        .await;
    assert_eq!(
        again.body["payment_intent"]["id"],
        second.body["payment_intent"]["id"]
    );
    assert_eq!(fake.requests_to("POST", "/v1/payment_intents").len(), 2);
}

#[tokio::test]
async fn a_gateway_page_instead_of_stripes_answer_is_retried_as_unavailable() {
    let (fake, server) = setup().await;
    // Once: retried with the same idempotency key, then done.
    fake.fail_next_writes([Fault::Html(503)]);
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-gw-1", None))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = fake.requests_to("POST", "/v1/payment_intents");
    assert_eq!(sent.len(), 2, "the gateway's page, then Stripe's answer");
    assert_eq!(sent[0].idempotency_key, sent[1].idempotency_key);
    // Every attempt: 503 stripe_unavailable (retry later), not a 502 "HTTP 200".
    fake.fail_next_writes(std::iter::repeat_n(Fault::Html(503), 4));
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-gw-2", None))
        .await;
    assert_eq!(
        (a.status, a.body["error"].as_str()),
        (503, Some("stripe_unavailable")),
        "{}",
        a.body
    );
}

/// `calls_per_second` caps the requests this process sends to Stripe:
/// eleven reads at five a second cannot take less than the pace allows.
#[tokio::test]
async fn stripe_calls_are_paced_by_the_configured_rate() {
    let (fake, _server) = setup().await;
    let mut c = config(&fake);
    c.calls_per_second = std::num::NonZeroU32::new(5);
    let api = psa_billing::stripe::StripeApi::new(c).unwrap();
    let started = Instant::now();
    for _ in 0..11 {
        api.retrieve_customer("cus_123", None).await.unwrap();
    }
    // Five at once (the burst), then one every 200 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests_to("GET", "/v1/customers/cus_123").len(), 11);
}

#[tokio::test]
async fn stripes_word_on_retrying_is_honoured() {
    let (fake, server) = setup().await;
    // `Stripe-Should-Retry: false` on a 5xx: not retried.
    fake.fail_next_writes([Fault::DoNotRetry(500)]);
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-sr-1", None))
        .await;
    assert_eq!(a.status, 502, "{}", a.body);
    assert_eq!(fake.requests_to("POST", "/v1/payment_intents").len(), 1);
    // `Retry-After: 1` on a 429: the retry waits for it (the back-off
    // alone is 5 ms here).
    fake.fail_next_writes([Fault::RetryAfter(1)]);
    let started = Instant::now();
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-sr-2", None))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fake.requests_to("POST", "/v1/payment_intents").len(), 3);
}

/// A charge Stripe made whose answer async-stripe's type cannot read (a
/// field of another type, as a newer API version might send) is still a
/// charge: answered and recorded by the fields psa-billing needs, so the
/// same request later finds it instead of failing or charging again.
#[tokio::test]
async fn a_charge_whose_answer_does_not_fit_the_types_is_still_recorded() {
    let (fake, server) = setup().await;
    fake.fail_next_writes([Fault::Garbled]);
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-gb", None))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.body["payment_intent"]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("pi_"), "{}", a.body);
    assert_eq!(a.body["payment_intent"]["amount"]["amount"], 10_000);
    // Recorded: the same request answers the same payment, no second charge.
    let again = server
        .post_json("/v1/operations/charge-invoice", &invoice("req-gb", None))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["payment_intent"]["id"], id.as_str());
    assert_eq!(fake.requests_to("POST", "/v1/payment_intents").len(), 1);
}

/// A request id that is not printable ASCII, or would make the key longer
/// than Stripe's 255 bytes, is hashed into the idempotency key.
#[tokio::test]
async fn idempotency_keys_stay_within_stripes_limit_in_bytes() {
    let (fake, server) = setup().await;
    let long = "é".repeat(100);
    let a = server
        .post_json("/v1/operations/charge-invoice", &invoice(&long, None))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sent = fake.requests_to("POST", "/v1/payment_intents");
    let key = sent[0].idempotency_key.clone().unwrap();
    assert!(key.len() <= 255, "{} bytes: {key}", key.len());
    assert!(key.is_ascii(), "{key}");
    // The same request again: the same key, the same payment.
    let again = server
        .post_json("/v1/operations/charge-invoice", &invoice(&long, None))
        .await;
    assert_eq!(
        again.body["payment_intent"]["id"],
        a.body["payment_intent"]["id"]
    );
}
