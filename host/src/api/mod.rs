//! The application calls that HTTP, the CLI and an embedding application
//! share: quotes, the ledger, the tenant registry, the Stripe operations
//! and reconciliation with Stripe's balance transactions,
//! each validating its input and committing what the plugin staged; and
//! the one error type they answer with.
//!
//! Knows nothing about HTTP: the router maps [`ApiFailure`] to statuses.

pub mod billing;
pub mod dispatch;
pub mod ledger;
pub mod operations;
pub mod quotes;
pub mod reconcile;
pub mod tenants;

use crate::runtime::{CallError, OperationError};
use crate::storage::{CommitOutcome, Db, StagedState};

/// Why an application call did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// The caller's to fix: unknown account, bad amount, empty posting,
    /// wrong rules.
    #[error("{0}")]
    Invalid(String),
    /// The plugin (or a custom fee-rules component) failed: a host-side
    /// fault, not the caller's.
    #[error(transparent)]
    Plugin(#[from] CallError),
    /// The request contradicts one made before (a posting id reused with
    /// other content): answered 409, never retried as it is.
    #[error("{0}")]
    Conflict(String),
    /// The plugin or Stripe refused an operation.
    #[error("{}", describe(.0))]
    Refused(OperationError),
    /// The database failed or kept changing under concurrent requests.
    #[error("database: {0:#}")]
    Database(anyhow::Error),
}

/// An answer as JSON. Answers are plain records (strings, numbers, lists,
/// maps with string keys), which always serialise.
pub fn answer_json<T: serde::Serialize>(answer: &T) -> serde_json::Value {
    serde_json::to_value(answer).expect("answers serialize")
}

/// A short, stable code and a sentence for an operation error.
pub fn describe(e: &OperationError) -> String {
    match e {
        OperationError::Invalid(m) | OperationError::Refused(m) | OperationError::Storage(m) => {
            m.clone()
        }
        OperationError::NotOwned(n) => {
            format!("{} is not tenant {:?}'s: {}", n.object, n.tenant, n.reason)
        }
        OperationError::Fees(f) => crate::api::quotes::fee_error_text(f.clone()),
        OperationError::Stripe(s) => crate::stripe::describe_stripe(s),
    }
}

/// Commits what an application call staged (state only: no event row, no
/// effects). `false` when a concurrent writer changed what the call read:
/// the caller redoes it on fresh reads, in a [`crate::pipeline::Rounds`] loop.
async fn commit(db: &Db, staged: &StagedState) -> Result<bool, ApiFailure> {
    match db.commit_state(staged).await {
        Ok(CommitOutcome::Conflict) => Ok(false),
        Ok(CommitOutcome::Committed | CommitOutcome::Duplicate) => Ok(true),
        Err(e) => Err(ApiFailure::Database(e)),
    }
}
