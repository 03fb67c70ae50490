//! `/v1/ledger/{tenant}/...` and `/v1/reconciliation`: a tenant's
//! balances, transactions and postings, and the ledger against Stripe.
//!
//! Knows nothing about operations or the registry.

use super::answers::api_response;
use super::*;
use crate::api::ledger;

fn ledger_response<T: serde::Serialize>(result: Result<T, ApiFailure>) -> Response {
    api_response(result, "invalid_posting")
}

/// A tenant's ledger balances, per currency and account.
#[utoipa::path(
    get, path = "/v1/ledger/{tenant}/balances", tag = "ledger",
    params(("tenant" = String, Path, description = "The tenant.")),
    responses(
        (status = 200, description = "The balances.", body = crate::api::ledger::Balances),
        (status = 422, description = "`invalid_posting`: not a valid tenant id.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`: the plugin failed, a fault on psa-billing's side.", body = ErrorBody),
    ),
)]
pub(super) async fn ledger_balances(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
) -> Response {
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    ledger_response(ledger::balances(rt, db, &tenant).await)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct TransactionsQuery {
    /// Transactions after this position (0: from the first).
    #[serde(default)]
    after: u64,
    /// At most this many, 1 to 1000 (default 100).
    limit: Option<u32>,
}

/// A tenant's ledger transactions, oldest first.
#[utoipa::path(
    get, path = "/v1/ledger/{tenant}/transactions", tag = "ledger",
    params(("tenant" = String, Path, description = "The tenant."), TransactionsQuery),
    responses(
        (status = 200, description = "A page of transactions.", body = crate::api::ledger::TransactionPage),
        (status = 400, description = "`after` or `limit` out of range.", body = ErrorBody),
        (status = 422, description = "`invalid_posting`: not a valid tenant id.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`: the plugin failed, a fault on psa-billing's side.", body = ErrorBody),
    ),
)]
pub(super) async fn ledger_transactions(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    query: Result<Query<TransactionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) if (1..=1000).contains(&q.limit.unwrap_or(100)) => q,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "after must be a non-negative integer and limit 1 to 1000",
            );
        }
    };
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    let limit = q.limit.unwrap_or(100);
    ledger_response(ledger::transactions(rt, db, &tenant, q.after, limit).await)
}

/// Post a transaction to a tenant's ledger (an escrow stage, a manual
/// adjustment): all of it or nothing; posting the same id again changes
/// nothing and answers the first posting.
#[utoipa::path(
    post, path = "/v1/ledger/{tenant}/transactions", tag = "ledger",
    params(("tenant" = String, Path, description = "The tenant.")),
    request_body = crate::api::ledger::PostInput,
    responses(
        (status = 200, description = "The transaction as posted (or as first posted under that id).", body = crate::api::ledger::PostedTransaction),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 409, description = "`conflict`: the id was posted before with other content.", body = ErrorBody),
        (status = 422, description = "`bad_request`: the body does not fit; `invalid_posting`: amounts, accounts or limits refused.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`: the plugin failed, a fault on psa-billing's side.", body = ErrorBody),
    ),
)]
pub(super) async fn ledger_post(
    State(app): State<Arc<AppState>>,
    Path(tenant): Path<String>,
    input: Result<Json<ledger::PostInput>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match json_body(input) {
        Ok(i) => i,
        Err(refused) => return *refused,
    };
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    ledger_response(ledger::post(rt, db, &tenant, input).await)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReconciliationQuery {
    /// One tenant; none: every registered tenant.
    tenant: Option<String>,
    /// Start of the period, inclusive: a date (`2026-11-01`), an RFC 3339
    /// timestamp or Unix seconds.
    from: String,
    /// End of the period, exclusive, in the same forms.
    to: String,
}

/// Reconcile the ledger with Stripe's balance transactions.
///
/// 200 with the report, which says how many differences it found (a
/// difference is a finding, not a failed request).
#[utoipa::path(
    get, path = "/v1/reconciliation", tag = "reconciliation",
    params(ReconciliationQuery),
    responses(
        (status = 200, description = "The report: per tenant, each Stripe object's net and fee on both sides.", body = crate::api::reconcile::Reconciliation),
        (status = 400, description = "`from` or `to` missing.", body = ErrorBody),
        (status = 422, description = "`invalid_period`: a time that cannot be read, or `to` before `from`.", body = ErrorBody),
        (status = 403, description = "`stripe_denied`: no Stripe key is configured.", body = ErrorBody),
        (status = 502, description = "`stripe_authentication`, `stripe_error`: Stripe refused the listing.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`: the plugin failed, a fault on psa-billing's side.", body = ErrorBody),
    ),
)]
pub(super) async fn reconciliation(
    State(app): State<Arc<AppState>>,
    query: Result<Query<ReconciliationQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use crate::api::reconcile::{Scope, parse_time, reconcile, reports_json};
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "from and to are required (a date, an RFC 3339 timestamp or Unix seconds); tenant is optional",
        );
    };
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    let result = async {
        let (from, to) = (parse_time(&q.from)?, parse_time(&q.to)?);
        let scope = q.tenant.map_or(Scope::All, Scope::Tenant);
        let reports = reconcile(rt, db, &scope, from, to).await?;
        Ok(reports_json(&reports, from, to))
    }
    .await;
    api_response(result, "invalid_period")
}
