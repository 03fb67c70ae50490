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
pub(crate) mod table;
pub mod tenants;

use crate::runtime::{CallError, OperationError, Runtime};
use crate::storage::{Attempt, Db, Round, Settled, StagedState, Then, Write, until_committed};

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

/// Parses a decimal amount ("120.50") in its currency with the plugin.
pub(crate) async fn amount(
    runtime: &Runtime,
    amount: &str,
    currency: &str,
) -> Result<crate::runtime::Money, ApiFailure> {
    runtime
        .parse_amount(amount, currency)
        .await?
        .map_err(|e| ApiFailure::Refused(OperationError::Fees(e)))
}

/// One round of an application call: its result (`Ok(None)`: run another
/// round once this one's writes are committed) and what it staged.
pub(crate) type Step<T> = Result<(Result<Option<T>, OperationError>, StagedState), CallError>;

/// Runs an application call's rounds ([`until_committed`], state only)
/// until one is done. What a round staged is committed even when the
/// plugin refused the call (a released hold), never half; a round lost to
/// a concurrent writer is redone on fresh reads. The plugin's Stripe writes
/// carry idempotency keys derived from the request id, so a redo gets
/// Stripe's first answer instead of a second charge.
pub(crate) async fn run<T, Fut>(
    db: &Db,
    label: &str,
    mut step: impl FnMut(StagedState) -> Fut,
) -> Result<T, ApiFailure>
where
    Fut: Future<Output = Step<T>>,
{
    let settled = until_committed(db, label, None, |attempt: Attempt| {
        let round = step(attempt.staged);
        async move {
            let (result, staged) = round.await?;
            Ok::<_, ApiFailure>(match result {
                Ok(Some(done)) => Round::state(staged, Ok(done)),
                Ok(None) => Round {
                    staged,
                    write: Write::State,
                    effects: Vec::new(),
                    then: Then::Again,
                },
                Err(refused) => Round::state(staged, Err(refused)),
            })
        }
    })
    .await?;
    settled_or(settled, label)?.map_err(ApiFailure::Refused)
}

/// [`run`] for a call done in one round.
pub(crate) async fn once<T, Fut>(
    db: &Db,
    label: &str,
    mut call: impl FnMut(StagedState) -> Fut,
) -> Result<T, ApiFailure>
where
    Fut: Future<Output = Result<(Result<T, OperationError>, StagedState), CallError>>,
{
    run(db, label, |staged| {
        let round = call(staged);
        async move {
            let (result, staged) = round.await?;
            Ok((result.map(Some), staged))
        }
    })
    .await
}

/// The answer of a settled loop; contention and database faults as failures.
pub(crate) fn settled_or<T>(settled: Settled<T>, label: &str) -> Result<T, ApiFailure> {
    match settled {
        Settled::Done(done, _) => Ok(done),
        // Only rounds with an event row can meet their row committed before.
        Settled::Duplicate => Err(ApiFailure::Database(anyhow::anyhow!(
            "{label}: committed before"
        ))),
        Settled::Exhausted => Err(ApiFailure::Database(anyhow::anyhow!(
            "{label}: the state it reads kept changing under concurrent requests; try again"
        ))),
        Settled::Failed(e) => Err(ApiFailure::Database(e)),
    }
}
