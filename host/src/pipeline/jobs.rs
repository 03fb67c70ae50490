//! Follow-up jobs: work that a committed effect calls for and that needs
//! Stripe, which webhook handling never has. One kind so far: settling a
//! succeeded payment (`payment.succeeded` → the plugin reads the charge's
//! balance transaction, posts Stripe's fee and emits `payment.settled`).
//!
//! A job is a row of `events` with an id of its own (`job:settle:<pi>`),
//! queued from the effects outbox. The outbox is gapless and in commit
//! order, so reading it from a cursor queues each job once, in the same
//! transaction that moves the cursor; a crash between a payment's commit
//! and its job's queueing only delays the job. A job runs like a retried
//! event: its result (state and effects) commits with its row, a failure
//! is retried under the events' policy, and a job that keeps failing, or
//! fails for good, ends in the dead letters.
//!
//! Knows nothing about HTTP, or about SQL (storage queues and commits).

use super::{Pipeline, effects_json};
use crate::capabilities::escape_controls;
use crate::clock::unix_now;
use crate::runtime::{OperationError, SettleRequest, StripeError};
use crate::storage::{
    Attempt, EventMeta, JOB_PREFIX, NewEffect, NewJob, Round, Settled, until_committed,
};
use serde::{Deserialize, Serialize};

/// The type of a settlement job's row.
pub const SETTLE_PAYMENT: &str = "psa_billing.settle_payment";

/// The settlement jobs' cursor over the outbox.
const SETTLEMENT_CURSOR: &str = "settlements";

/// Effects read from the outbox at a time.
const BATCH: i64 = 500;

/// What a settlement job needs: the payment and where it lives.
#[derive(Debug, Serialize, Deserialize)]
struct SettleJob {
    payment_intent: String,
    account: Option<String>,
    /// The `payment.succeeded` effect it follows.
    effect_seq: i64,
}

/// The id of the job that settles `payment_intent`.
pub fn settle_job_id(payment_intent: &str) -> String {
    format!("{JOB_PREFIX}settle:{payment_intent}")
}

impl Pipeline {
    /// Queues a settlement job for each `payment.succeeded` effect committed
    /// since the last call, and answers how many. Without a Stripe key
    /// nothing is queued (and the ledger has no processor fees).
    pub async fn queue_jobs(&self) -> anyhow::Result<usize> {
        if !self.runtime.has_stripe() {
            return Ok(0);
        }
        let mut queued = 0;
        loop {
            let cursor = self.db.job_cursor(SETTLEMENT_CURSOR).await?;
            let batch = self.db.effects_after(cursor, BATCH).await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                return Ok(queued);
            };
            let jobs: Vec<NewJob> = batch
                .iter()
                .filter(|e| e.kind == "payment.succeeded")
                .filter_map(|e| {
                    let job = SettleJob {
                        payment_intent: e.effect["payment_intent"].as_str()?.to_string(),
                        account: e.effect["account"].as_str().map(str::to_string),
                        effect_seq: e.seq,
                    };
                    Some(NewJob {
                        id: settle_job_id(&job.payment_intent),
                        job_type: SETTLE_PAYMENT.into(),
                        account: job.account.clone(),
                        payload: serde_json::to_vec(&job).expect("a job serializes"),
                    })
                })
                .collect();
            queued += jobs.len();
            self.db.queue_jobs(SETTLEMENT_CURSOR, last, &jobs).await?;
            if (batch.len() as i64) < BATCH {
                return Ok(queued);
            }
        }
    }

    /// Runs one due job (a row whose id begins with [`JOB_PREFIX`]): the
    /// effects it committed, or why it failed (recorded for a retry, or
    /// dead-lettered).
    pub(super) async fn run_job(&self, id: &str, payload: &[u8]) -> Result<Vec<NewEffect>, String> {
        let job_type = if id.starts_with(&settle_job_id("")) {
            SETTLE_PAYMENT
        } else {
            "unknown"
        };
        let event = EventMeta {
            id: id.to_string(),
            event_type: job_type.to_string(),
            account: None,
            created: unix_now(),
            livemode: false,
        };
        let outcome = match job_type {
            SETTLE_PAYMENT => self.settle(&event, payload).await,
            other => Err(Failure::Permanent(format!("no job of type {other:?}"))),
        };
        let kind = "settle_payment";
        let (reason, permanent) = match outcome {
            Ok(effects) => {
                self.metrics.job(kind, "done");
                tracing::info!(job = %escape_controls(id), "job done");
                return Ok(effects);
            }
            Err(Failure::Permanent(r)) => (r, true),
            Err(Failure::Later(r)) => (r, false),
        };
        let recorded = self
            .db
            .record_failure(&event, payload, &reason, |n| {
                if permanent {
                    None
                } else {
                    self.retry.delay_after(n)
                }
            })
            .await;
        let dead = permanent
            || matches!(recorded, Ok(Some(attempts)) if attempts >= self.retry.max_attempts);
        self.metrics.job(
            kind,
            if dead {
                "dead_lettered"
            } else {
                "retry_scheduled"
            },
        );
        tracing::warn!(job = %escape_controls(id), %reason, dead, "job failed");
        if let Err(e) = recorded {
            tracing::error!(job = %escape_controls(id), error = %format!("{e:#}"), "could not record the job's failure");
        }
        Err(reason)
    }

    async fn settle(&self, event: &EventMeta, payload: &[u8]) -> Result<Vec<NewEffect>, Failure> {
        let job: SettleJob = serde_json::from_slice(payload).map_err(|e| {
            Failure::Permanent(format!("the job's payload is not a settlement: {e}"))
        })?;
        let request = SettleRequest {
            payment_intent: job.payment_intent.clone(),
            account: job.account.clone(),
        };
        let event = EventMeta {
            account: job.account,
            ..event.clone()
        };
        let runtime = &self.runtime;
        let settled = until_committed(
            &self.db,
            &event.id,
            Some((&event, payload)),
            |attempt: Attempt| {
                let settling = runtime.settle_payment(attempt.staged, request.clone());
                async move {
                    let (result, staged) = settling
                        .await
                        .map_err(|e| Failure::Later(format!("the plugin failed: {e}")))?;
                    let effects: Vec<NewEffect> = result
                        .map_err(failure)?
                        .iter()
                        .map(effects_json::to_json)
                        .collect();
                    Ok(Round::row(staged, "processed", effects, ()))
                }
            },
        )
        .await?;
        match settled {
            Settled::Done((), effects) => Ok(effects),
            Settled::Duplicate => Ok(vec![]),
            Settled::Exhausted => Err(Failure::Later(
                "the payment's ledger kept changing under concurrent work".into(),
            )),
            Settled::Failed(e) => Err(Failure::Later(format!("the database failed: {e:#}"))),
        }
    }
}

/// Why a job did not complete.
enum Failure {
    /// It cannot succeed as it is: dead-lettered at once.
    Permanent(String),
    /// It may succeed later (Stripe unreachable, the balance transaction
    /// not there yet): retried under the policy.
    Later(String),
}

fn failure(e: OperationError) -> Failure {
    match e {
        OperationError::Invalid(m) => Failure::Permanent(m),
        OperationError::Stripe(
            s @ (StripeError::InvalidRequest(_)
            | StripeError::Authentication(_)
            | StripeError::CardDeclined(_)),
        ) => Failure::Permanent(crate::stripe::describe_stripe(&s)),
        OperationError::Stripe(s) => Failure::Later(crate::stripe::describe_stripe(&s)),
        OperationError::Refused(m) | OperationError::Storage(m) => Failure::Later(m),
        OperationError::Fees(f) => Failure::Permanent(format!("{f:?}")),
        OperationError::NotOwned(n) => {
            Failure::Permanent(format!("{} is not {}'s: {}", n.object, n.tenant, n.reason))
        }
    }
}
