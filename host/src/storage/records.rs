//! The rows storage takes and gives: an event's fields, an effect for the
//! outbox and one read from it, a follow-up job, an event log row, and
//! what a commit did.
//!
//! Knows nothing about how they are stored: `Db` and the committers do.

use serde::Serialize;

/// The event fields the log keeps.
#[derive(Debug, Clone)]
pub struct EventMeta {
    /// The event's id (`evt_...`).
    pub id: String,
    /// Its type (`payment_intent.succeeded`).
    pub event_type: String,
    /// The connected account it came from, if any.
    pub account: Option<String>,
    /// When Stripe created it (Unix seconds).
    pub created: i64,
    /// Whether it is a live-mode event.
    pub livemode: bool,
}

/// One effect ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEffect {
    /// Its kind (`payment.succeeded`).
    pub kind: String,
    /// Its JSON body, as the outbox keeps it.
    pub body: serde_json::Value,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written.
    Committed,
    /// The event was already processed (another delivery won): nothing applied.
    Duplicate,
    /// State the plugin read changed before the commit: handle the event again.
    Conflict,
}

/// A follow-up job to queue (see [`Db::queue_jobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Its id in the events table: [`JOB_PREFIX`] and what it is about.
    pub id: String,
    /// What kind of job it is (`psa_billing.settle_payment`).
    pub job_type: String,
    /// The connected account it concerns, if any.
    pub account: Option<String>,
    /// What the job needs to run, as JSON.
    pub payload: Vec<u8>,
}

/// How a job's id begins; no Stripe event id does (they begin with `evt_`).
pub const JOB_PREFIX: &str = "job:";

/// An effect as the application reads it from the outbox.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct StoredEffect {
    /// Its position in the outbox: gapless, in commit order.
    pub seq: i64,
    /// The event that produced it.
    pub event_id: String,
    /// Its kind (`payment.succeeded`).
    pub kind: String,
    /// Its JSON body: `kind` again, the kind's fields in snake_case
    /// (docs/events.md lists them), `tenant` (`unrouted: true` when no
    /// tenant could be found), and Stripe `metadata` as an object.
    #[schema(value_type = Object)]
    pub effect: serde_json::Value,
    /// When it was committed (Unix seconds).
    pub created_at: i64,
}

/// An event log row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventRecord {
    /// The event's id.
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// The connected account it came from, if any.
    pub account: Option<String>,
    /// When Stripe created it (Unix seconds).
    pub created: i64,
    /// `processed`, `ignored`, `failed` or `dead`.
    pub status: String,
    /// Attempts so far, the first included.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it first arrived (Unix seconds).
    pub received_at: i64,
}
