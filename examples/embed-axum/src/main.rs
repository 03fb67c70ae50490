//! A tiny PSA-like application with psa-billing embedded through its
//! builder API: its own invoices and license counts, updated from the
//! effects psa-billing commits; Stripe's webhooks and the billing API
//! mounted under `/billing`; a price preview from the fee engine.
//!
//! Run: `STRIPE_WEBHOOK_SECRET=whsec_... cargo run -p psa-billing-example-embed-axum`
//! then `curl -X POST localhost:3000/invoices/INV-1001`, send Stripe a
//! payment with `metadata.invoice_id = INV-1001` (or a signed fixture), and
//! `curl localhost:3000/invoices`.

use anyhow::Result;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use psa_billing::Billing;
use psa_billing::api::quotes::QuoteInput;
use psa_billing::storage::StoredEffect;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The application's own records.
#[derive(Default)]
struct Records {
    /// Invoice id → status.
    invoices: BTreeMap<String, String>,
    /// Tenant → license count (seed 004).
    licenses: BTreeMap<String, i64>,
}

#[derive(Clone)]
struct App {
    billing: Billing,
    records: Arc<Mutex<Records>>,
}

/// Applies one effect to the application's records.
fn apply(records: &Mutex<Records>, e: &StoredEffect) {
    let mut r = records.lock().expect("records lock");
    let effect = &e.effect;
    match e.kind.as_str() {
        "payment.succeeded" => {
            if let Some(invoice) = effect["reference"].as_str() {
                r.invoices.insert(invoice.into(), "paid".into());
            }
        }
        "payment.failed" => {
            if let Some(invoice) = effect["reference"].as_str() {
                r.invoices.insert(invoice.into(), "payment_failed".into());
            }
        }
        "license.count_set" => {
            if let (Some(t), Some(n)) = (effect["tenant"].as_str(), effect["count"].as_i64()) {
                r.licenses.insert(t.into(), n);
            }
        }
        _ => {}
    }
}

async fn create_invoice(State(app): State<App>, Path(id): Path<String>) -> Json<Value> {
    let mut r = app.records.lock().expect("records lock");
    r.invoices
        .entry(id.clone())
        .or_insert_with(|| "open".into());
    Json(json!({ "invoice": id, "status": r.invoices[&id] }))
}

async fn list(State(app): State<App>) -> Json<Value> {
    let r = app.records.lock().expect("records lock");
    Json(json!({ "invoices": r.invoices, "licenses": r.licenses }))
}

/// `GET /price?amount=100.00&currency=usd`: what the tenant keeps.
async fn price(State(app): State<App>, Query(q): Query<BTreeMap<String, String>>) -> Json<Value> {
    let mut input = QuoteInput::new(
        q.get("amount").map_or("100.00", String::as_str),
        q.get("currency").map_or("usd", String::as_str),
    );
    input.application_fee_percent = Some("2.5".into());
    Json(match app.billing.quote(input).await {
        Ok(q) => serde_json::to_value(q).expect("a quote serialises"),
        Err(e) => json!({ "error": e.to_string() }),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let secret = std::env::var("STRIPE_WEBHOOK_SECRET").unwrap_or_default();
    let billing = Billing::builder()
        .database("sqlite://embedded-billing.db")
        .webhook_secrets(secret.split(',').filter(|s| !s.is_empty()))
        .api_token(std::env::var("PSA_BILLING_API_TOKEN").unwrap_or_else(|_| "dev-token".into()))
        .build()
        .await?;
    let records = Arc::new(Mutex::new(Records::default()));

    // Effects in commit order, from the start of the outbox (an application
    // would store its cursor and resume from it).
    let mut effects = billing.subscribe(0);
    let sink = records.clone();
    tokio::spawn(async move {
        while let Some(e) = effects.recv().await {
            println!("effect #{} {} from {}", e.seq, e.kind, e.event_id);
            apply(&sink, &e);
        }
    });

    let app = axum::Router::new()
        .route("/invoices", get(list))
        .route("/invoices/{id}", post(create_invoice))
        .route("/price", get(price))
        .with_state(App {
            billing: billing.clone(),
            records,
        })
        .nest("/billing", billing.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("http://127.0.0.1:3000 (Stripe webhooks at /billing/webhooks/stripe)");
    axum::serve(listener, app).await?;
    Ok(())
}
