//! The JSON bodies of the HTTP surface that no application call owns: a
//! delivery's answer, the error body every failure shares, pages of
//! effects and tenants, the health answer. The router builds its answers
//! from these types and the OpenAPI document takes their schemas from the
//! same types, so the two cannot drift apart.
//!
//! Knows nothing about routing, statuses or the pipeline.

use crate::storage::StoredEffect;
use serde::Serialize;
use utoipa::ToSchema;

/// The answer to a webhook delivery that was taken (2xx).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryAnswer {
    /// What became of it.
    pub status: DeliveryStatus,
    /// The event's id (`evt_...`).
    pub event_id: String,
    /// How many effects it produced; absent for a duplicate or a rejection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effects: Option<usize>,
    /// With `rejected` only: why its content cannot be processed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Recorded, with its effects in the outbox.
    Accepted,
    /// Recorded; its type is not one psa-billing maps (`event.ignored`).
    Ignored,
    /// Already recorded: nothing was done again.
    Duplicate,
    /// Signed, but its content can never be processed (malformed, a field
    /// missing or out of range): taken so that Stripe stops retrying,
    /// nothing applied, put on the dead-letter list with `reason`.
    Rejected,
}

/// Every error answer: a stable code to branch on and a sentence to log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable (`bad_signature`, `unauthorized`,
    /// `invalid_request`, `card_declined`, `database`...).
    pub error: String,
    /// For people: what was wrong and, where it helps, what to do.
    pub reason: String,
    /// With `card_declined` only: Stripe's decline, safe to show the payer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_declined: Option<crate::runtime::CardDecline>,
}

impl ErrorBody {
    /// An error body without a decline.
    pub fn new(error: &str, reason: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.to_string(),
            reason: reason.into(),
            card_declined: None,
        }
    }
}

/// A page of the effects outbox (`GET /v1/effects`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EffectsPage {
    /// In sequence order.
    pub effects: Vec<StoredEffect>,
    /// The `after` of the next page: the last `seq` here, or the `after`
    /// asked for when the page is empty.
    pub next_after: i64,
}

/// The tenant registry (`GET /v1/tenants`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantList {
    /// Every connected account registered to a tenant.
    pub tenants: Vec<TenantAccount>,
}

/// A connected account and the tenant it is registered to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantAccount {
    /// The connected account (`acct_...`).
    pub account: String,
    /// The tenant; `null` once unregistered.
    pub tenant: Option<String>,
}

/// Where a contractor's withdrawals are paid.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContractorAccount {
    /// The tenant the contractor works for.
    pub tenant: String,
    /// The application's id for the contractor.
    pub contractor: String,
    /// The contractor's connected account (`acct_...`).
    pub account: String,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`: the database answered.
    pub status: String,
}
