//! An application that mounts psa-billing's webhook route inside its own
//! axum server and reads the effects outbox to update its records.
//!
//! Run: `STRIPE_WEBHOOK_SECRET=whsec_... cargo run -p psa-billing-example-embed`

use anyhow::Result;
use psa_billing::server::{self, ServerOptions};
use psa_billing::{DEFAULT_PLUGIN, Db, Limits, Pipeline, Runtime};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<()> {
    let secrets =
        psa_billing::cli::parse_secrets(std::env::var("STRIPE_WEBHOOK_SECRET").ok().as_deref())?;
    let runtime = Runtime::new(DEFAULT_PLUGIN, Limits::default())?;
    let db = Db::open("sqlite://embedded-billing.db").await?;
    let pipeline = Pipeline::new(runtime, db.clone(), secrets, 300);

    // The application's own routes, plus psa-billing's under /billing.
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "my PSA app" }))
        .nest(
            "/billing",
            server::router(pipeline, ServerOptions::default()),
        );

    // The application consumes effects in order, remembering where it stopped.
    tokio::spawn(async move {
        let mut after = 0;
        loop {
            match db.effects_after(after, 100).await {
                Ok(effects) => {
                    for e in effects {
                        println!(
                            "apply #{} {} from {}: {}",
                            e.seq, e.kind, e.event_id, e.effect
                        );
                        after = e.seq;
                    }
                }
                Err(e) => eprintln!("reading effects: {e:#}"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000 (webhooks at /billing/webhooks/stripe)");
    axum::serve(listener, app).await?;
    Ok(())
}
