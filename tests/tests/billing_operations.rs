//! Customers, subscriptions, Checkout and portal sessions and invoices,
//! end to end: HTTP `/v1/operations/{name}` (and the embedding API) → the
//! component → the host's async-stripe client → the FAKE Stripe on
//! 127.0.0.1 (`fake_billing`). The tests assert the exact requests sent
//! (path, `Stripe-Account`, `Idempotency-Key`, form fields) and what comes
//! back.

use psa_billing::stripe::StripeConfig;
use psa_billing_tests::fake_stripe::{FAKE_KEY, FakeStripe};
use psa_billing_tests::{Options, TestServer, stripe_object};
use serde_json::{Value, json};
use std::time::Duration;

const LICENSE: &str = "price_pro_license";
const ADDON: &str = "price_storage_addon";
const PREMIUM: &str = "price_premium_license";

fn config(fake: &FakeStripe) -> StripeConfig {
    let mut c = StripeConfig::new(FAKE_KEY);
    c.base_url = Some(fake.url());
    c.backoff = Duration::from_millis(5);
    c
}

async fn setup(rules: Option<&str>) -> (FakeStripe, TestServer) {
    let fake = FakeStripe::start().await;
    let server = TestServer::start(Options {
        stripe: Some(config(&fake)),
        rules: rules.map(str::to_string),
        ..Options::default()
    })
    .await;
    (fake, server)
}

fn key(operation: &str, tenant: &str, request_id: &str, step: &str) -> String {
    let tenant = &psa_billing_core::state::sha256_hex(tenant)[..16];
    format!("psa-billing:{operation}:{tenant}:{request_id}:{step}")
}

async fn op(server: &TestServer, name: &str, body: Value) -> (u16, Value) {
    let a = server
        .post_json(&format!("/v1/operations/{name}"), &body)
        .await;
    (a.status, a.body)
}

/// `op`, which must succeed.
async fn ok(server: &TestServer, name: &str, body: Value) -> Value {
    let (status, body) = op(server, name, body).await;
    assert_eq!(status, 200, "{name}: {body}");
    body
}

async fn customer(server: &TestServer, tenant: &str, external_id: &str) -> String {
    let c = ok(
        server,
        "upsert-customer",
        json!({"request_id": format!("c-{external_id}"), "tenant": tenant,
               "external_id": external_id, "email": "ops@acme.example"}),
    )
    .await;
    c["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn one_customer_per_tenant_and_external_id_found_and_given_a_default_card() {
    let (fake, server) = setup(None).await;
    let created = ok(
        &server,
        "upsert-customer",
        json!({"request_id": "c-1", "tenant": "t1", "external_id": "contact-7",
               "email": "ops@acme.example", "name": "Acme", "metadata": {"crm": "hubspot"}}),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("cus_"), "{created}");
    let sent = fake.requests_to("POST", "/v1/customers");
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r.path, "/v1/customers");
    assert_eq!(r.account, None, "a platform customer");
    assert_eq!(
        r.idempotency_key.as_deref(),
        Some(key("customer", "t1", ":contact-7", "create").as_str()),
        "keyed by the external id, not the request"
    );
    assert_eq!(r.form["email"], "ops@acme.example");
    assert_eq!(r.form["metadata[tenant_id]"], "t1");
    assert_eq!(r.form["metadata[psa_external_id]"], "contact-7");
    assert_eq!(r.form["metadata[crm]"], "hubspot");

    // Another request for the same contact updates the same customer.
    let updated = ok(
        &server,
        "upsert-customer",
        json!({"request_id": "c-2", "tenant": "t1", "external_id": "contact-7", "name": "Acme Inc"}),
    )
    .await;
    assert_eq!(updated["id"], id.as_str());
    assert_eq!(updated["name"], "Acme Inc");
    assert_eq!(updated["email"], "ops@acme.example", "left as it was");
    let sent = fake.requests_to("POST", "/v1/customers");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].path, format!("/v1/customers/{id}"));
    assert_eq!(
        sent[1].idempotency_key.as_deref(),
        Some(key("customer", "t1", "c-2", "update").as_str())
    );

    let found = ok(
        &server,
        "find-customer",
        json!({"tenant": "t1", "external_id": "contact-7"}),
    )
    .await;
    assert_eq!(found["id"], id.as_str());
    // The same external id means nothing for another tenant.
    let (status, body) = op(
        &server,
        "find-customer",
        json!({"tenant": "t2", "external_id": "contact-7"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "refused");

    // A customer made before psa-billing kept records is found by Stripe's
    // search on its metadata, and recorded from then on.
    let mut legacy = stripe_object("customer");
    legacy["id"] = json!("cus_legacy9");
    legacy["metadata"] = json!({"tenant_id": "t1", "psa_external_id": "company-9"});
    fake.insert(None, legacy);
    let found = ok(
        &server,
        "find-customer",
        json!({"tenant": "t1", "external_id": "company-9"}),
    )
    .await;
    assert_eq!(found["id"], "cus_legacy9");
    let searches = fake.requests_to("GET", "/v1/customers/search");
    let last = searches.last().unwrap();
    assert_eq!(
        last.form["query"],
        "metadata['tenant_id']:'t1' AND metadata['psa_external_id']:'company-9'"
    );
    let before = searches.len();
    ok(
        &server,
        "find-customer",
        json!({"tenant": "t1", "external_id": "company-9"}),
    )
    .await;
    assert_eq!(
        fake.requests_to("GET", "/v1/customers/search").len(),
        before,
        "recorded: no second search"
    );

    // A tenant whose id has a quote: Stripe's query escapes it.
    let mut quoted = stripe_object("customer");
    quoted["id"] = json!("cus_obrien");
    quoted["metadata"] = json!({"tenant_id": "O'Brien & Co", "psa_external_id": "c-1"});
    fake.insert(None, quoted);
    let found = ok(
        &server,
        "find-customer",
        json!({"tenant": "O'Brien & Co", "external_id": "c-1"}),
    )
    .await;
    assert_eq!(found["id"], "cus_obrien");
    assert_eq!(
        fake.requests_to("GET", "/v1/customers/search")
            .last()
            .unwrap()
            .form["query"],
        "metadata['tenant_id']:'O\\'Brien & Co' AND metadata['psa_external_id']:'c-1'"
    );

    // A card attached and made the default.
    let mut pm = stripe_object("payment_method");
    pm["id"] = json!("pm_card_acme");
    pm["customer"] = json!(null);
    fake.insert(None, pm);
    let with_card = ok(
        &server,
        "attach-payment-method",
        json!({"request_id": "pm-1", "tenant": "t1", "external_id": "contact-7",
               "payment_method": "pm_card_acme", "default": true}),
    )
    .await;
    assert_eq!(with_card["default_payment_method"], "pm_card_acme");
    let attach = fake.requests_to("POST", "/v1/payment_methods/pm_card_acme/attach");
    assert_eq!(attach.len(), 1);
    assert_eq!(attach[0].form["customer"], id.as_str());
    assert_eq!(
        attach[0].idempotency_key.as_deref(),
        Some(key("customer", "t1", "pm-1", "attach").as_str())
    );
    let default = fake.requests_to("POST", &format!("/v1/customers/{id}"));
    assert_eq!(
        default.last().unwrap().form["invoice_settings[default_payment_method]"],
        "pm_card_acme"
    );

    // Bad input is refused before Stripe, with a reason.
    let calls = fake.requests().len();
    for (body, why) in [
        (
            json!({"request_id": "x", "tenant": "t1", "external_id": "it's"}),
            "quotes",
        ),
        (
            json!({"request_id": "x", "tenant": "t1", "external_id": "c", "metadata": {"tenant_id": "t9"}}),
            "set by psa-billing",
        ),
    ] {
        let (status, body) = op(&server, "upsert-customer", body).await;
        assert_eq!(status, 422, "{body}");
        assert!(body["reason"].as_str().unwrap().contains(why), "{body}");
    }
    let (status, body) = op(
        &server,
        "upsert-customer",
        json!({"request_id": "x", "tenant": "t1", "external_id": "c", "colour": "red"}),
    )
    .await;
    assert_eq!(status, 422, "unknown field: {body}");
    assert_eq!(fake.requests().len(), calls, "nothing reached Stripe");
}

#[tokio::test]
async fn a_subscription_is_created_moved_to_another_plan_cancelled_and_resumed() {
    let (fake, server) = setup(None).await;
    let cus = customer(&server, "t1", "contact-1").await;
    let create = json!({
        "request_id": "sub-1", "tenant": "t1", "customer": cus,
        "items": [{"price": LICENSE, "quantity": 3}, {"price": ADDON}],
        "trial_period_days": 14, "metadata": {"contract_id": "PSA-C-7781"},
    });
    let sub = ok(&server, "create-subscription", create.clone()).await;
    let id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(sub["status"], "trialing");
    assert!(sub["trial_end"].as_i64().unwrap() > sub["current_period_start"].as_i64().unwrap());
    assert_eq!(
        sub["metadata"],
        json!([["contract_id", "PSA-C-7781"], ["tenant_id", "t1"]])
    );
    let sent = fake.requests_to("POST", "/v1/subscriptions");
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(
        r.idempotency_key.as_deref(),
        Some(key("subscription", "t1", "sub-1", "create").as_str())
    );
    assert_eq!(r.form["customer"], cus.as_str());
    assert_eq!(r.form["items[0][price]"], LICENSE);
    assert_eq!(r.form["items[0][quantity]"], "3");
    assert_eq!(r.form["items[1][price]"], ADDON);
    assert_eq!(r.form["items[1][quantity]"], "1");
    assert_eq!(r.form["trial_period_days"], "14");
    assert_eq!(r.form["metadata[tenant_id]"], "t1");
    assert_eq!(r.form["metadata[contract_id]"], "PSA-C-7781");

    // The same request again returns the same subscription; nothing is created.
    let again = ok(&server, "create-subscription", create).await;
    assert_eq!(again["id"], id.as_str());
    assert_eq!(fake.requests_to("POST", "/v1/subscriptions").len(), 1);

    // Another tenant's customer, or another tenant's subscription: refused.
    let other = customer(&server, "t2", "contact-1").await;
    let (status, body) = op(
        &server,
        "create-subscription",
        json!({"request_id": "sub-x", "tenant": "t1", "customer": other,
               "items": [{"price": LICENSE}]}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = op(
        &server,
        "cancel-subscription",
        json!({"request_id": "cx", "tenant": "t2", "subscription": id}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("is not tenant \"t2\"'s"),
        "{body}"
    );

    // Plan change: the license item moves to Premium with 4 seats, the
    // add-on stays; proration as asked.
    let (status, body) = op(
        &server,
        "change-subscription-plan",
        json!({"request_id": "plan-1", "tenant": "t1", "subscription": id,
               "from_price": LICENSE, "to_price": PREMIUM, "proration_behavior": "sometimes"}),
    )
    .await;
    assert_eq!(status, 422, "an unknown proration behavior: {body}");
    let moved = ok(
        &server,
        "change-subscription-plan",
        json!({"request_id": "plan-1", "tenant": "t1", "subscription": id,
               "from_price": LICENSE, "to_price": PREMIUM, "quantity": 4,
               "proration_behavior": "always_invoice"}),
    )
    .await;
    let prices: Vec<&str> = moved["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["price"].as_str().unwrap())
        .collect();
    assert_eq!(prices, [PREMIUM, ADDON]);
    assert_eq!(moved["items"][0]["quantity"], 4);
    let update = fake.requests_to("POST", &format!("/v1/subscriptions/{id}"));
    let r = update.last().unwrap();
    assert_eq!(
        r.form["items[0][id]"],
        moved["items"][0]["id"].as_str().unwrap()
    );
    assert_eq!(r.form["items[0][price]"], PREMIUM);
    assert_eq!(r.form["items[0][quantity]"], "4");
    assert_eq!(r.form["proration_behavior"], "always_invoice");
    assert_eq!(
        r.idempotency_key.as_deref(),
        Some(key("subscription", "t1", "plan-1", "plan").as_str())
    );

    // The license count by price, with a proration behavior.
    let seats = ok(
        &server,
        "set-license-count",
        json!({"request_id": "seats-1", "tenant": "t1", "subscription": id,
               "price": PREMIUM, "count": 6, "proration_behavior": "none"}),
    )
    .await;
    assert_eq!(seats["items"][0]["quantity"], 6);
    assert_eq!(seats["items"][1]["quantity"], 1, "the add-on is left alone");
    let r = fake
        .requests_to("POST", &format!("/v1/subscriptions/{id}"))
        .pop()
        .unwrap();
    assert_eq!(r.form["proration_behavior"], "none");

    // Cancel at period end, then resume.
    let ending = ok(
        &server,
        "cancel-subscription",
        json!({"request_id": "end-1", "tenant": "t1", "subscription": id, "at_period_end": true}),
    )
    .await;
    assert_eq!(ending["cancel_at_period_end"], true);
    assert_eq!(
        ending["status"], "trialing",
        "still running until the period ends"
    );
    let r = fake
        .requests_to("POST", &format!("/v1/subscriptions/{id}"))
        .pop()
        .unwrap();
    assert_eq!(r.form["cancel_at_period_end"], "true");
    let resumed = ok(
        &server,
        "resume-subscription",
        json!({"request_id": "resume-1", "tenant": "t1", "subscription": id}),
    )
    .await;
    assert_eq!(resumed["cancel_at_period_end"], false);
    let r = fake
        .requests_to("POST", &format!("/v1/subscriptions/{id}"))
        .pop()
        .unwrap();
    assert_eq!(r.form["cancel_at_period_end"], "false");

    // Cancelled now: DELETE; it cannot be resumed.
    let cancelled = ok(
        &server,
        "cancel-subscription",
        json!({"request_id": "cancel-1", "tenant": "t1", "subscription": id}),
    )
    .await;
    assert_eq!(cancelled["status"], "canceled");
    assert!(cancelled["canceled_at"].is_i64());
    let deletes = fake.requests_to("DELETE", &format!("/v1/subscriptions/{id}"));
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].body, "",
        "a write without parameters sends no body"
    );
    let (status, body) = op(
        &server,
        "resume-subscription",
        json!({"request_id": "resume-2", "tenant": "t1", "subscription": id}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("canceled for good")
    );
}

#[tokio::test]
async fn checkout_sells_licenses_or_a_deposit_and_the_portal_opens_for_the_tenants_customer() {
    let rules = "[platform]\npercent = \"2.5\"\n\n[[limits]]\ncurrency = \"usd\"\ndeposit_min = 500\ndeposit_max = 100000\n";
    let (fake, server) = setup(Some(rules)).await;
    let cus = customer(&server, "t1", "org-42").await;
    let urls = |body: Value| {
        let mut b = body;
        b["success_url"] = json!("https://psa.example/billing/done");
        b["cancel_url"] = json!("https://psa.example/billing");
        b
    };
    let licenses = ok(
        &server,
        "create-checkout-session",
        urls(
            json!({"request_id": "buy-1", "tenant": "t1", "customer": cus,
                    "client_reference_id": "org-42",
                    "items": [{"price": LICENSE, "quantity": 5}, {"price": ADDON, "quantity": 2}]}),
        ),
    )
    .await;
    assert_eq!(licenses["mode"], "subscription");
    assert!(
        licenses["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/"),
        "{licenses}"
    );
    let sent = fake.requests_to("POST", "/v1/checkout/sessions");
    let r = &sent[0];
    assert_eq!(r.form["mode"], "subscription");
    assert_eq!(r.form["line_items[0][price]"], LICENSE);
    assert_eq!(r.form["line_items[0][quantity]"], "5");
    assert_eq!(r.form["line_items[1][price]"], ADDON);
    assert_eq!(r.form["customer"], cus.as_str());
    assert_eq!(r.form["client_reference_id"], "org-42");
    assert_eq!(r.form["metadata[tenant_id]"], "t1");
    assert_eq!(
        r.form["subscription_data[metadata][tenant_id]"], "t1",
        "the subscription's own webhooks route back to the tenant"
    );
    assert!(!r.form.keys().any(|k| k.starts_with("payment_intent_data")));
    assert_eq!(
        r.idempotency_key.as_deref(),
        Some(key("checkout", "t1", "buy-1", "session").as_str())
    );

    // A wallet deposit: a payment-mode session whose payment intent carries
    // the deposit's metadata; outside the limits it never reaches Stripe.
    let deposit = ok(
        &server,
        "create-checkout-session",
        urls(json!({"request_id": "dep-1", "tenant": "market",
                    "deposit": {"wallet": "w-1", "amount": "105.00", "currency": "usd"}})),
    )
    .await;
    assert_eq!(deposit["mode"], "payment");
    let r = fake
        .requests_to("POST", "/v1/checkout/sessions")
        .pop()
        .unwrap();
    assert_eq!(r.form["line_items[0][price_data][unit_amount]"], "10500");
    assert_eq!(r.form["line_items[0][price_data][currency]"], "usd");
    assert_eq!(r.form["line_items[0][quantity]"], "1");
    assert_eq!(r.form["payment_intent_data[metadata][type]"], "deposit");
    assert_eq!(r.form["payment_intent_data[metadata][walletId]"], "w-1");
    assert_eq!(r.form["payment_intent_data[metadata][tenant_id]"], "market");
    let calls = fake.requests().len();
    let (status, body) = op(
        &server,
        "create-checkout-session",
        urls(json!({"request_id": "dep-2", "tenant": "market",
                    "deposit": {"wallet": "w-1", "amount": "1000.01", "currency": "usd"}})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("maximum deposit"),
        "{body}"
    );
    let (status, _) = op(
        &server,
        "create-checkout-session",
        urls(
            json!({"request_id": "both", "tenant": "t1", "items": [{"price": LICENSE}],
                    "deposit": {"wallet": "w-1", "amount": "10.00", "currency": "usd"}}),
        ),
    )
    .await;
    assert_eq!(status, 422, "items and deposit together");
    assert_eq!(fake.requests().len(), calls, "nothing reached Stripe");

    // The billing portal, for the tenant's own customer only.
    let portal = ok(
        &server,
        "create-portal-session",
        json!({"request_id": "portal-1", "tenant": "t1", "customer": cus,
               "return_url": "https://psa.example/account"}),
    )
    .await;
    assert!(
        portal["url"]
            .as_str()
            .unwrap()
            .starts_with("https://billing.stripe.com/"),
        "{portal}"
    );
    let r = &fake.requests_to("POST", "/v1/billing_portal/sessions")[0];
    assert_eq!(r.form["customer"], cus.as_str());
    assert_eq!(r.form["return_url"], "https://psa.example/account");
    let (status, body) = op(
        &server,
        "create-portal-session",
        json!({"request_id": "portal-2", "tenant": "t2", "customer": cus,
               "return_url": "https://psa.example/account"}),
    )
    .await;
    assert_eq!(status, 409, "another tenant's customer: {body}");
}

/// A Stripe tax rate in the fake.
fn tax_rate(fake: &FakeStripe, id: &str, percentage: f64, inclusive: bool) {
    let mut t = stripe_object("tax_rate");
    t["id"] = json!(id);
    t["percentage"] = json!(percentage);
    t["inclusive"] = json!(inclusive);
    fake.insert(None, t);
}

fn lines() -> Value {
    json!([
        {"description": "Managed services", "quantity": 2, "unit_amount": "150.00",
         "discount": {"percent": "10"},
         "tax_rates": [{"percent": "8.25", "stripe_id": "txr_sales"}]},
        {"description": "Firewall (VAT incl.)", "quantity": 1, "unit_amount": "119.00",
         "tax_rates": [{"percent": "19", "inclusive": true, "stripe_id": "txr_vat"}]},
        {"description": "Onboarding", "quantity": 1, "unit_amount": "49.99"},
    ])
}

#[tokio::test]
async fn an_invoice_totals_as_quoted_with_inclusive_and_exclusive_tax_and_moves_through_its_states()
{
    let (fake, server) = setup(None).await;
    tax_rate(&fake, "txr_sales", 8.25, false);
    tax_rate(&fake, "txr_vat", 19.0, true);
    let cus = customer(&server, "t1", "company-3").await;
    let quoted = server
        .post_json(
            "/v1/quote/invoice",
            &json!({"currency": "usd", "lines": lines()}),
        )
        .await;
    assert_eq!(quoted.status, 200, "{}", quoted.body);
    let create = json!({"request_id": "inv-1", "tenant": "t1", "customer": cus,
                        "invoice_id": "PSA-INV-1001", "currency": "usd", "lines": lines(),
                        "finalize": true});
    let made = ok(&server, "create-invoice", create.clone()).await;
    let invoice = &made["invoice"];
    let id = invoice["id"].as_str().unwrap().to_string();
    // psa-billing's totals are the quote's, and Stripe's are the same.
    assert_eq!(made["totals"]["total"], quoted.body["total"]["amount"]);
    assert_eq!(made["totals"]["tax"], quoted.body["tax"]["amount"]);
    assert_eq!(invoice["total"], made["totals"]["total"]);
    assert_eq!(invoice["tax"], made["totals"]["tax"]);
    // 270.00 + 22.28 exclusive tax; 119.00 with 19.00 of VAT inside; 49.99.
    assert_eq!(invoice["total"], 27_000 + 2_228 + 11_900 + 4_999);
    assert_eq!(invoice["tax"], 2_228 + 1_900);
    assert_eq!(invoice["status"], "open");
    assert!(
        invoice["hosted_invoice_url"]
            .as_str()
            .unwrap()
            .starts_with("https://invoice.stripe.com/")
    );
    assert!(invoice["invoice_pdf"].as_str().unwrap().ends_with("/pdf"));
    assert!(invoice["number"].is_string());
    assert_eq!(invoice["collection_method"], "send_invoice");

    let draft = &fake.requests_to("POST", "/v1/invoices")[0];
    assert_eq!(draft.path, "/v1/invoices");
    assert_eq!(draft.form["customer"], cus.as_str());
    assert_eq!(draft.form["collection_method"], "send_invoice");
    assert_eq!(draft.form["days_until_due"], "30");
    assert_eq!(draft.form["pending_invoice_items_behavior"], "exclude");
    assert_eq!(draft.form["metadata[tenant_id]"], "t1");
    assert_eq!(draft.form["metadata[invoice_id]"], "PSA-INV-1001");
    let items = fake.requests_to("POST", "/v1/invoiceitems");
    let amounts: Vec<&str> = items.iter().map(|r| r.form["amount"].as_str()).collect();
    assert_eq!(
        amounts,
        ["27000", "11900", "4999"],
        "after discount, inclusive tax inside"
    );
    assert_eq!(items[0].form["tax_rates[0]"], "txr_sales");
    assert_eq!(items[1].form["tax_rates[0]"], "txr_vat");
    assert!(!items[2].form.keys().any(|k| k.starts_with("tax_rates")));
    assert_eq!(items[0].form["invoice"], id.as_str());
    assert_eq!(
        items[2].idempotency_key.as_deref(),
        Some(key("invoice", "t1", "inv-1", "item:2").as_str())
    );
    assert_eq!(
        fake.requests_to("POST", &format!("/v1/invoices/{id}/finalize"))[0]
            .idempotency_key
            .as_deref(),
        Some(key("invoice", "t1", "inv-1", "finalize").as_str())
    );

    // The same request again: the same invoice, nothing added.
    let calls = fake.requests_to("POST", "/v1/").len();
    let again = ok(&server, "create-invoice", create).await;
    assert_eq!(again["invoice"]["id"], id.as_str());
    assert_eq!(fake.requests_to("POST", "/v1/").len(), calls);

    // Sent, marked uncollectible, voided; a step already taken is not repeated.
    let step = |name: &'static str, request: &'static str| {
        let (server, id) = (&server, id.clone());
        async move {
            op(
                server,
                name,
                json!({"request_id": request, "tenant": "t1", "invoice": id}),
            )
            .await
        }
    };
    let (status, sent) = step("send-invoice", "send-1").await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(
        fake.requests_to("POST", &format!("/v1/invoices/{id}/send"))
            .len(),
        1
    );
    let (status, body) = step("mark-invoice-uncollectible", "bad-debt-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["invoice"]["status"], "uncollectible");
    let (status, body) = step("void-invoice", "void-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["invoice"]["status"], "void");
    let (status, body) = step("void-invoice", "void-2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        fake.requests_to("POST", &format!("/v1/invoices/{id}/void"))
            .len(),
        1,
        "already void: no second call"
    );
    // Stripe refuses sending a void invoice; the refusal comes back typed.
    let (status, body) = step("send-invoice", "send-2").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "stripe_invalid_request");
    // Another tenant cannot touch it.
    let (status, body) = op(
        &server,
        "finalize-invoice",
        json!({"request_id": "f-x", "tenant": "t2", "invoice": id}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn an_invoice_whose_tax_rate_disagrees_stays_a_draft_and_many_lines_take_several_calls() {
    let (fake, server) = setup(None).await;
    // Stripe's rate is 7 %, the application says 8.25 %.
    tax_rate(&fake, "txr_sales", 7.0, false);
    let cus = customer(&server, "t1", "company-4").await;
    let one = json!([{"description": "Support", "quantity": 1, "unit_amount": "100.00",
                      "tax_rates": [{"percent": "8.25", "stripe_id": "txr_sales"}]}]);
    let (status, body) = op(
        &server,
        "create-invoice",
        json!({"request_id": "inv-7", "tenant": "t1", "customer": cus, "invoice_id": "I-7",
               "currency": "usd", "lines": one, "finalize": true}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("10700") && reason.contains("10825"),
        "{reason}"
    );
    assert!(
        fake.requests_to("POST", "/v1/invoices/")
            .iter()
            .all(|r| !r.path.ends_with("/finalize"))
    );

    // A tax without its Stripe tax rate, or days with charge_automatically: 422.
    for (body, why) in [(
        json!([{"quantity": 1, "unit_amount": "10.00", "tax_rates": [{"percent": "5"}]}]),
        "tax rate id",
    )] {
        let (status, answer) = op(
            &server,
            "create-invoice",
            json!({"request_id": "bad", "tenant": "t1", "customer": cus, "invoice_id": "I-8",
                   "currency": "usd", "lines": body}),
        )
        .await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer["reason"].as_str().unwrap().contains(why), "{answer}");
    }
    let (status, _) = op(
        &server,
        "create-invoice",
        json!({"request_id": "bad-2", "tenant": "t1", "customer": cus, "invoice_id": "I-8",
               "currency": "usd", "collection_method": "charge_automatically", "days_until_due": 5,
               "lines": [{"quantity": 1, "unit_amount": "10.00"}]}),
    )
    .await;
    assert_eq!(status, 422);

    // 30 lines: the draft, then twelve lines a call, each step committed.
    let many: Vec<Value> = (0..30)
        .map(|n| json!({"description": format!("Ticket {n}"), "quantity": 1, "unit_amount": "12.50"}))
        .collect();
    let made = ok(
        &server,
        "create-invoice",
        json!({"request_id": "inv-30", "tenant": "t1", "customer": cus, "invoice_id": "I-30",
               "currency": "usd", "lines": many, "collection_method": "charge_automatically"}),
    )
    .await;
    assert_eq!(made["invoice"]["total"], 30 * 1_250);
    assert_eq!(made["invoice"]["status"], "draft", "not asked to finalize");
    let id = made["invoice"]["id"].as_str().unwrap();
    let items: Vec<_> = fake
        .requests_to("POST", "/v1/invoiceitems")
        .into_iter()
        .filter(|r| r.form["invoice"] == id)
        .collect();
    assert_eq!(items.len(), 30, "each line once");
}

#[tokio::test]
async fn an_invoice_on_a_connected_account_carries_the_quoted_application_fee() {
    let (fake, server) = setup(Some("[platform]\npercent = \"2.5\"\n")).await;
    let account = "acct_1TenantInv";
    let mut a = stripe_object("account");
    a["id"] = json!(account);
    fake.insert(None, a);
    let put = server
        .put_json(&format!("/v1/tenants/{account}"), &json!({"tenant": "t1"}))
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let c = ok(
        &server,
        "upsert-customer",
        json!({"request_id": "c-1", "tenant": "t1", "account": account, "external_id": "client-5"}),
    )
    .await;
    let lines = json!([{"description": "Monthly support", "quantity": 1, "unit_amount": "400.00"}]);
    let made = ok(
        &server,
        "create-invoice",
        json!({"request_id": "inv-c", "tenant": "t1", "account": account, "customer": c["id"],
               "invoice_id": "I-C1", "currency": "usd", "lines": lines}),
    )
    .await;
    let quoted = server
        .post_json(
            "/v1/quote",
            &json!({"amount": "400.00", "currency": "usd", "tenant": "t1"}),
        )
        .await;
    assert_eq!(quoted.status, 200, "{}", quoted.body);
    let fee = quoted.body["application_fee"]["amount"].as_i64().unwrap();
    assert!(fee > 0, "{}", quoted.body);
    let draft = &fake.requests_to("POST", "/v1/invoices")[0];
    assert_eq!(
        draft.account.as_deref(),
        Some(account),
        "made on the tenant's account"
    );
    assert_eq!(draft.form["application_fee_amount"], fee.to_string());
    assert_eq!(made["invoice"]["total"], 40_000);
    for item in fake.requests_to("POST", "/v1/invoiceitems") {
        assert_eq!(item.account.as_deref(), Some(account));
    }
}

#[tokio::test]
async fn the_embedding_api_runs_the_billing_operations_by_name() {
    let fake = FakeStripe::start().await;
    let dir = tempfile::tempdir().unwrap();
    let billing = psa_billing::Billing::builder()
        .database(format!("sqlite://{}", dir.path().join("b.db").display()))
        .webhook_secrets(["whsec_embed"])
        .stripe(config(&fake))
        .build()
        .await
        .unwrap();
    let c = billing
        .operation(
            "upsert-customer",
            json!({"request_id": "e-1", "tenant": "t1", "external_id": "contact-1"}),
        )
        .await
        .unwrap();
    let cus = c["id"].as_str().unwrap();
    let sub = billing
        .operation(
            "create-subscription",
            json!({"request_id": "e-2", "tenant": "t1", "customer": cus,
                   "items": [{"price": LICENSE, "quantity": 2}]}),
        )
        .await
        .unwrap();
    assert_eq!(
        sub["status"], "incomplete",
        "no payment method and no trial"
    );
    assert_eq!(fake.requests_to("POST", "/v1/subscriptions").len(), 1);
    let err = billing
        .operation("create-subscriptions", json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no operation"), "{err}");
    let err = billing
        .operation("find-customer", json!({"tenant": "t1"}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("external_id"), "{err}");
}

#[tokio::test]
async fn a_customer_deleted_at_stripe_is_forgotten_and_made_again() {
    let (fake, server) = setup(None).await;
    let first = customer(&server, "t1", "contact-9").await;
    // Deleted in Stripe's dashboard: Stripe answers a stub.
    fake.insert(
        None,
        json!({"id": first, "object": "customer", "deleted": true}),
    );
    let (status, body) = op(
        &server,
        "find-customer",
        json!({"tenant": "t1", "external_id": "contact-9"}),
    )
    .await;
    assert_eq!(status, 409, "not found, not a 502: {body}");
    assert!(
        body["reason"].as_str().unwrap().contains("has no customer"),
        "{body}"
    );
    let again = ok(
        &server,
        "upsert-customer",
        json!({"request_id": "c-again", "tenant": "t1", "external_id": "contact-9"}),
    )
    .await;
    assert_ne!(again["id"], first.as_str(), "a new customer");
    assert_eq!(fake.requests_to("POST", "/v1/customers").len(), 2);
}

#[tokio::test]
async fn an_open_invoice_is_paid_now_with_the_customers_default_card_once() {
    let (fake, server) = setup(None).await;
    let cus = customer(&server, "t1", "company-9").await;
    let invoice = |request_id: &str| {
        json!({"request_id": request_id, "tenant": "t1", "customer": cus,
               "invoice_id": format!("PSA-{request_id}"), "currency": "usd",
               "collection_method": "charge_automatically", "finalize": true,
               "lines": [{"description": "Onsite visit", "quantity": 2, "unit_amount": "95.00"}]})
    };
    let made = ok(&server, "create-invoice", invoice("inv-pay-1")).await;
    let id = made["invoice"]["id"].as_str().unwrap().to_string();
    assert_eq!(made["invoice"]["status"], "open");
    let pay = |request_id: &'static str, tenant: &'static str| {
        let (server, id) = (&server, id.clone());
        async move {
            op(
                server,
                "pay-invoice",
                json!({"request_id": request_id, "tenant": tenant, "invoice": id}),
            )
            .await
        }
    };

    // No default payment method yet: Stripe's refusal, typed, and nothing paid.
    let (status, body) = pay("pay-0", "t1").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "stripe_invalid_request");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("default payment method"),
        "{body}"
    );

    // Another tenant cannot pay it, and Stripe never hears of the attempt.
    let before = fake
        .requests_to("POST", &format!("/v1/invoices/{id}/pay"))
        .len();
    let (status, body) = pay("pay-x", "t2").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "not_owned");
    assert_eq!(
        fake.requests_to("POST", &format!("/v1/invoices/{id}/pay"))
            .len(),
        before
    );

    // With a default card, it is collected now, under the request's key.
    let mut pm = stripe_object("payment_method");
    pm["id"] = json!("pm_card_company9");
    pm["customer"] = json!(null);
    fake.insert(None, pm);
    ok(
        &server,
        "attach-payment-method",
        json!({"request_id": "pm-9", "tenant": "t1", "external_id": "company-9",
               "payment_method": "pm_card_company9", "default": true}),
    )
    .await;
    let paid = ok(
        &server,
        "pay-invoice",
        json!({"request_id": "pay-1", "tenant": "t1", "invoice": id}),
    )
    .await;
    assert_eq!(paid["invoice"]["status"], "paid");
    assert_eq!(paid["invoice"]["amount_paid"], json!(19000));
    let sent = fake.requests_to("POST", &format!("/v1/invoices/{id}/pay"));
    assert_eq!(
        sent.last().unwrap().idempotency_key.as_deref(),
        Some(key("invoice", "t1", "pay-1", "pay").as_str())
    );

    // Paying it again (a new request) finds it paid: no second charge.
    let calls = sent.len();
    let again = ok(
        &server,
        "pay-invoice",
        json!({"request_id": "pay-2", "tenant": "t1", "invoice": id}),
    )
    .await;
    assert_eq!(again["invoice"]["status"], "paid");
    assert_eq!(
        fake.requests_to("POST", &format!("/v1/invoices/{id}/pay"))
            .len(),
        calls
    );
}
