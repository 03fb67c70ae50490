//! psa-billing host: loads the billing plugin component, supplies its
//! capabilities (storage in a real database, log, clock), and serves Stripe
//! webhooks.
//!
//! Embedding in a Rust application:
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use psa_billing::{Db, Limits, Pipeline, Runtime, DEFAULT_PLUGIN};
//! let runtime = Runtime::new(DEFAULT_PLUGIN, Limits::default())?;
//! let db = Db::open("sqlite://billing.db").await?;
//! let pipeline = Pipeline::new(runtime, db, vec!["whsec_...".into()], 300);
//! // In your webhook route, with the raw body and the Stripe-Signature header:
//! # let (body, header) = (b"{}".to_vec(), Some("t=1,v1=00"));
//! let outcome = pipeline.receive(&body, header).await;
//! # Ok(()) }
//! ```

mod capabilities;
pub mod cli;
pub mod db;
mod effects_json;
pub mod ledger;
pub mod pipeline;
pub mod quoting;
pub mod runtime;
pub mod server;
pub mod tenants;

pub use capabilities::StagedState;
pub use db::Db;
pub use pipeline::{DeliveryError, Outcome, Pipeline};
pub use runtime::{DEFAULT_PLUGIN, Limits, Runtime};

/// For the workspace's own tests: a component that misbehaves on purpose.
#[doc(hidden)]
pub mod testing {
    /// Path of the hostile test plugin built next to the default one.
    pub const HOSTILE_PLUGIN_PATH: &str =
        concat!(env!("OUT_DIR"), "/psa_billing_hostile_plugin.wasm");
    /// Path of a custom fee-rules component that misbehaves on purpose.
    pub const HOSTILE_FEE_RULES_PATH: &str =
        concat!(env!("OUT_DIR"), "/psa_billing_hostile_fee_rules.wasm");
    /// Path of the example custom fee-rules component.
    pub const VOLUME_DISCOUNT_RULES_PATH: &str =
        concat!(env!("OUT_DIR"), "/volume_discount_rules.wasm");
}
