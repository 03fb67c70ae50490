//! psa-billing host: loads the billing plugin component, supplies its
//! capabilities (storage in a real database, log, clock), and serves Stripe
//! webhooks.
//!
//! Embedding in a Rust application: build a [`Billing`] once, mount its
//! router, and consume the effects it commits.
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let billing = psa_billing::Billing::builder()
//!     .database("sqlite://billing.db")
//!     .webhook_secrets(["whsec_..."])
//!     .build()
//!     .await?;
//! let app = axum::Router::new().nest("/billing", billing.router());
//! // Or, in your own webhook route, with the raw body and the Stripe-Signature header:
//! # let (body, header) = (b"{}".to_vec(), Some("t=1,v1=00"));
//! let outcome = billing.handle_delivery(&body, header).await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod api;
pub mod backoff;
mod bindings;
mod capabilities;
pub mod cli;
pub mod clock;
mod embed;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod relay;
pub mod runtime;
pub mod storage;
pub mod stripe;

pub use embed::{Billing, BillingBuilder};
pub use pipeline::{DeliveryError, Outcome, Pipeline};
pub use runtime::{DEFAULT_PLUGIN, Limits, Runtime};
pub use storage::{Db, StagedState};

/// Stripe calls one plugin call may make.
pub use capabilities::MAX_STRIPE_CALLS;

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
    /// Path of the plugin authors' template component.
    pub const FEE_RULES_TEMPLATE_PATH: &str = concat!(env!("OUT_DIR"), "/fee_rules_template.wasm");

    /// The PostgreSQL server the tests use (`PSA_BILLING_TEST_POSTGRES_URL`,
    /// default the local `test` database).
    pub fn postgres_base_url() -> String {
        std::env::var("PSA_BILLING_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// A URL on a fresh, empty schema of the test PostgreSQL server, so that
    /// tests and runs never see each other's rows. Panics, loudly, when the
    /// server is unreachable: PostgreSQL is part of what is tested.
    pub async fn fresh_postgres_url(label: &str) -> String {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = postgres_base_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let schema = format!(
            "t_{label}_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let pool = sqlx::PgPool::connect(&base).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {base} ({e}); start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                 or set PSA_BILLING_TEST_POSTGRES_URL"
            )
        });
        // The name is ours (letters, digits, underscores), not input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{schema}")
    }
}
