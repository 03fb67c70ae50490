//! The tenant boundary, over every operation of the operations table: a
//! request by tenant A that names tenant B's object (or B's connected
//! account) is refused with 409 `not_owned` before anything is written to
//! Stripe, and an operation whose input names an object it does not
//! declare fails here.

use psa_billing::api::dispatch::{OPERATIONS, Owned};
use psa_billing::stripe::StripeConfig;
use psa_billing_tests::fake_stripe::{FAKE_KEY, FakeStripe};
use psa_billing_tests::{Options, TestServer, stripe_object};
use serde_json::{Value, json};
use std::time::Duration;

const PRICE: &str = "price_pro_license";

/// Input fields that name an object outside the request's own tenant.
/// Every operation input field with one of these names must be declared.
const OBJECT_FIELDS: [&str; 10] = [
    "account",
    "customer",
    "payment_method",
    "default_payment_method",
    "payment_intent",
    "subscription",
    "invoice",
    "adopt",
    "contractor",
    "destination",
];

async fn setup() -> (FakeStripe, TestServer) {
    let fake = FakeStripe::start().await;
    let mut stripe = StripeConfig::new(FAKE_KEY);
    stripe.base_url = Some(fake.url());
    stripe.backoff = Duration::from_millis(5);
    let server = TestServer::start(Options {
        stripe: Some(stripe),
        ..Options::default()
    })
    .await;
    (fake, server)
}

async fn op(server: &TestServer, name: &str, body: &Value) -> (u16, Value) {
    let a = server
        .post_json(&format!("/v1/operations/{name}"), body)
        .await;
    (a.status, a.body)
}

async fn ok(server: &TestServer, name: &str, body: Value) -> Value {
    let (status, answer) = op(server, name, &body).await;
    assert_eq!(status, 200, "{name} {body}: {answer}");
    answer
}

/// One tenant's objects, made through psa-billing's own operations (so
/// their owners are recorded), on the platform.
struct Objects {
    tenant: String,
    account: String,
    customer: String,
    external_id: String,
    payment_method: String,
    payment_intent: String,
    subscription: String,
    invoice: String,
    contractor: String,
    contractor_account: String,
}

/// `tag` names its ids (never the tenant, so that a refusal naming an
/// id cannot be mistaken for one naming the owner).
async fn objects_of(fake: &FakeStripe, server: &TestServer, tenant: &str, tag: &str) -> Objects {
    let account = format!("acct_{tag}Own");
    let put = server
        .put_json(
            &format!("/v1/tenants/{account}"),
            &json!({"tenant": tenant}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let contractor = format!("ctr{tag}");
    let contractor_account = format!("acct_{tag}Contractor");
    let put = server
        .put_json(
            &format!("/v1/contractors/{tenant}/{contractor}"),
            &json!({"account": contractor_account}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let external_id = format!("contact-{tag}");
    let customer = ok(
        server,
        "upsert-customer",
        json!({"request_id": "c-1", "tenant": tenant, "external_id": external_id}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let payment_method = format!("pm_{tag}Card");
    let mut pm = stripe_object("payment_method");
    pm["id"] = json!(payment_method);
    pm["customer"] = json!(null);
    fake.insert(None, pm);
    ok(
        server,
        "attach-payment-method",
        json!({"request_id": "pm-1", "tenant": tenant, "external_id": external_id,
               "payment_method": payment_method}),
    )
    .await;
    let payment_intent = ok(
        server,
        "charge-invoice",
        json!({"request_id": "ch-1", "tenant": tenant, "invoice_id": "inv-1",
               "amount": "100.00", "currency": "usd", "customer": customer,
               "payment_method": payment_method}),
    )
    .await["payment_intent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let subscription = ok(
        server,
        "create-subscription",
        json!({"request_id": "s-1", "tenant": tenant, "customer": customer,
               "items": [{"price": PRICE, "quantity": 2}]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let invoice = ok(
        server,
        "create-invoice",
        json!({"request_id": "i-1", "tenant": tenant, "customer": customer,
               "invoice_id": "PSA-1", "currency": "usd",
               "lines": [{"description": "Support", "quantity": 1, "unit_amount": "10.00"}]}),
    )
    .await["invoice"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    Objects {
        tenant: tenant.into(),
        account,
        customer,
        external_id,
        payment_method,
        payment_intent,
        subscription,
        invoice,
        contractor,
        contractor_account,
    }
}

/// A valid input of `name` for tenant `o.tenant`, naming its own objects.
/// Every operation of the table must have one: an operation added without
/// it fails [`every_operation_refuses_another_tenants_objects`].
fn input(name: &str, o: &Objects) -> Option<Value> {
    let t = o.tenant.as_str();
    Some(match name {
        "charge-invoice" => json!({"request_id": "x-1", "tenant": t, "invoice_id": "inv-x",
            "amount": "5.00", "currency": "usd", "customer": o.customer,
            "payment_method": o.payment_method}),
        "refund" => json!({"request_id": "x-1", "tenant": t, "payment_intent": o.payment_intent,
            "amount": "1.00", "currency": "usd"}),
        "deposit" => json!({"request_id": "x-1", "tenant": t, "wallet": "w-1", "amount": "5.00",
            "currency": "usd", "customer": o.customer, "payment_method": o.payment_method}),
        "withdraw" => json!({"request_id": "x-1", "tenant": t, "contractor": o.contractor,
            "destination": o.contractor_account, "amount": "1.00", "currency": "usd"}),
        "set-license-count" => {
            json!({"request_id": "x-1", "tenant": t, "subscription": o.subscription, "count": 3})
        }
        "onboard-tenant" => json!({"request_id": "x-1", "tenant": t, "country": "US",
            "refresh_url": "https://psa.example/r", "return_url": "https://psa.example/done"}),
        "account-status" => json!({"tenant": t, "account": o.account}),
        "upsert-customer" => json!({"request_id": "x-1", "tenant": t, "external_id": "new-one",
            "adopt": o.customer}),
        "find-customer" => json!({"tenant": t, "external_id": o.external_id}),
        "attach-payment-method" => json!({"request_id": "x-1", "tenant": t,
            "external_id": o.external_id, "payment_method": o.payment_method}),
        "create-subscription" => json!({"request_id": "x-1", "tenant": t, "customer": o.customer,
            "items": [{"price": PRICE}], "default_payment_method": o.payment_method}),
        "change-subscription-plan" => json!({"request_id": "x-1", "tenant": t,
            "subscription": o.subscription, "to_price": "price_premium"}),
        "cancel-subscription" | "resume-subscription" => {
            json!({"request_id": "x-1", "tenant": t, "subscription": o.subscription})
        }
        "create-checkout-session" => json!({"request_id": "x-1", "tenant": t,
            "customer": o.customer, "items": [{"price": PRICE}],
            "success_url": "https://psa.example/ok", "cancel_url": "https://psa.example/no"}),
        "create-portal-session" => json!({"request_id": "x-1", "tenant": t,
            "customer": o.customer, "return_url": "https://psa.example/back"}),
        "create-invoice" => json!({"request_id": "x-1", "tenant": t, "customer": o.customer,
            "invoice_id": "PSA-X", "currency": "usd",
            "lines": [{"description": "Support", "quantity": 1, "unit_amount": "10.00"}]}),
        "finalize-invoice"
        | "send-invoice"
        | "void-invoice"
        | "mark-invoice-uncollectible"
        | "pay-invoice" => {
            json!({"request_id": "x-1", "tenant": t, "invoice": o.invoice})
        }
        _ => return None,
    })
}

/// The value of B's that stands in for the object of `kind`.
fn theirs(kind: Owned, b: &Objects) -> String {
    match kind {
        Owned::Account => b.account.clone(),
        Owned::PaymentIntent => b.payment_intent.clone(),
        Owned::Customer | Owned::AdoptedCustomer => b.customer.clone(),
        Owned::PaymentMethod | Owned::AttachablePaymentMethod => b.payment_method.clone(),
        Owned::Subscription => b.subscription.clone(),
        Owned::Invoice => b.invoice.clone(),
        Owned::Contractor => b.contractor.clone(),
        Owned::Payee => b.contractor_account.clone(),
    }
}

fn writes(fake: &FakeStripe) -> usize {
    fake.requests().iter().filter(|r| r.method != "GET").count()
}

#[tokio::test]
async fn every_operation_refuses_another_tenants_objects() {
    let (fake, server) = setup().await;
    let a = objects_of(&fake, &server, "tA", "Alpha").await;
    let b = objects_of(&fake, &server, "tB", "Bravo").await;
    let mut refused = 0;
    for operation in OPERATIONS {
        let name = operation.name;
        let mine = input(name, &a).unwrap_or_else(|| {
            panic!("{name}: no input in this test; give it one (and declare what it acts on)")
        });
        for (field, kind) in operation.owns {
            let mut crossed = mine.clone();
            crossed[field] = json!(theirs(*kind, &b));
            let before = writes(&fake);
            let (status, body) = op(&server, name, &crossed).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (409, Some("not_owned")),
                "{name} with B's {field}: {body}"
            );
            let reason = body["reason"].as_str().unwrap();
            assert!(
                reason.contains(crossed[field].as_str().unwrap()) && reason.contains("tA"),
                "the refusal names the object and the tenant: {reason}"
            );
            assert!(
                !reason.contains("tB"),
                "the refusal does not name the owner: {reason}"
            );
            assert_eq!(writes(&fake), before, "{name}: nothing written to Stripe");
            refused += 1;
        }
    }
    assert!(refused >= 30, "{refused} cross-tenant requests refused");
}

#[tokio::test]
async fn every_object_field_of_every_operation_is_declared() {
    let (_fake, server) = setup().await;
    let doc = server
        .get("/v1/openapi.json", Some("test-token"))
        .await
        .body;
    for operation in OPERATIONS {
        let path = format!("/v1/operations/{}", operation.name);
        let schema = &doc["paths"][&path]["post"]["requestBody"]["content"]["application/json"]["schema"]
            ["$ref"];
        let name = schema
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .unwrap_or_else(|| panic!("{path}: no input schema"));
        let properties = doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: no properties"));
        for (field, property) in properties {
            // An id is a string (`destination` of charge-invoice is a flag).
            let is_text = match &property["type"] {
                Value::String(t) => t == "string",
                Value::Array(ts) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            if is_text && OBJECT_FIELDS.contains(&field.as_str()) {
                assert!(
                    operation.owns.iter().any(|(f, _)| f == field),
                    "{}: field {field} names an object but is not declared in OPERATIONS",
                    operation.name
                );
            }
        }
        for (field, _) in operation.owns {
            assert!(
                properties.contains_key(*field),
                "{}: declares {field}, which its input does not have",
                operation.name
            );
        }
    }
}

/// The inputs of the table-driven test are valid: the same requests with
/// the tenant's own objects are not refused at the boundary.
#[tokio::test]
async fn the_tenants_own_objects_pass_the_boundary() {
    let (fake, server) = setup().await;
    let a = objects_of(&fake, &server, "tA", "Alpha").await;
    for operation in OPERATIONS {
        let mine = input(operation.name, &a).unwrap();
        let (status, body) = op(&server, operation.name, &mine).await;
        assert_ne!(
            body["error"].as_str(),
            Some("not_owned"),
            "{} {mine}: {status} {body}",
            operation.name
        );
    }
}

#[tokio::test]
async fn a_request_id_reused_with_other_input_is_a_conflict() {
    let (fake, server) = setup().await;
    let a = objects_of(&fake, &server, "tA", "Alpha").await;
    let charge = json!({"request_id": "ch-9", "tenant": "tA", "invoice_id": "inv-9",
        "amount": "100.00", "currency": "usd", "customer": a.customer,
        "payment_method": a.payment_method});
    let first = ok(&server, "charge-invoice", charge.clone()).await;
    // The same request again: the same payment.
    let again = ok(&server, "charge-invoice", charge.clone()).await;
    assert_eq!(again["payment_intent"]["id"], first["payment_intent"]["id"]);
    // The same id with another amount: refused, nothing sent to Stripe.
    let before = writes(&fake);
    let mut other = charge.clone();
    other["amount"] = json!("900.00");
    let (status, body) = op(&server, "charge-invoice", &other).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(
        body["reason"].as_str().unwrap().contains("amount"),
        "{body}"
    );
    assert_eq!(writes(&fake), before);
    // Another tenant may use the same request id for its own request.
    let b = objects_of(&fake, &server, "tB", "Bravo").await;
    let mut theirs = charge.clone();
    theirs["tenant"] = json!("tB");
    theirs["customer"] = json!(b.customer);
    theirs["payment_method"] = json!(b.payment_method);
    ok(&server, "charge-invoice", theirs).await;
}

#[tokio::test]
async fn a_withdrawal_retried_under_its_request_id_cannot_change_its_payee() {
    let (fake, server) = setup().await;
    let a = objects_of(&fake, &server, "tA", "Alpha").await;
    let withdraw = json!({"request_id": "w-1", "tenant": "tA", "contractor": a.contractor,
        "destination": a.contractor_account, "amount": "10.00", "currency": "usd"});
    // Nothing is owed to the contractor yet: refused, but the id is taken.
    let (status, body) = op(&server, "withdraw", &withdraw).await;
    assert_ne!(status, 200, "{body}");
    let before = writes(&fake);
    // An account nobody registered, without the contractor: not the tenant's payee.
    let evil = json!({"request_id": "w-1", "tenant": "tA", "destination": "acct_EVIL",
        "amount": "10.00", "currency": "usd"});
    let (status, body) = op(&server, "withdraw", &evil).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("not_owned")),
        "{body}"
    );
    // The tenant's own account, but not what the request first named.
    let own = json!({"request_id": "w-1", "tenant": "tA", "destination": a.account,
        "amount": "10.00", "currency": "usd"});
    let (status, body) = op(&server, "withdraw", &own).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("contractor") && reason.contains("destination"),
        "{reason}"
    );
    assert_eq!(writes(&fake), before, "no transfer");
}
