//! The `/v1` application calls over HTTP: quotes and flows, the ledger,
//! the tenant and contractor registry, reconciliation and the Stripe
//! operations; each maps its `api` call's answer or `ApiFailure` to a status.
//!
//! Knows nothing about webhooks or the effects outbox (the router and
//! `effects.rs`).

use super::*;

/// The fees of one payment under the configured rules.
#[utoipa::path(
    post, path = "/v1/quote", tag = "quotes",
    request_body = QuoteInput,
    responses(
        (status = 200, description = "The payment's fees.", body = crate::api::quotes::QuotedFees),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 422, description = "`bad_request`: the body does not fit the input; `invalid_quote`: the rules refuse it (unknown currency, bad amount, fees above the amount).", body = ErrorBody),
        (status = 500, description = "The plugin or the custom fee rules failed.", body = ErrorBody),
    ),
)]
pub(super) async fn quote(
    State(app): State<Arc<AppState>>,
    input: Result<Json<QuoteInput>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match json_body(input) {
        Ok(i) => i,
        Err(refused) => return *refused,
    };
    quote_response(quotes::quote(app.pipeline.runtime(), app.rules.as_deref(), input).await)
}

fn quote_response(result: Result<serde_json::Value, ApiFailure>) -> Response {
    api_response(result, "invalid_quote")
}

/// The figures of a flow beyond one payment (`escrow`, `wallet`,
/// `invoice`, `seats`, `refund`); the document lists each as its own path.
#[utoipa::path(
    post, path = "/v1/quote/{flow}", tag = "quotes",
    params(("flow" = String, Path, description = "The flow.")),
    request_body = Object,
    responses(
        (status = 200, description = "The flow's figures.", body = Object),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 422, description = "`invalid_quote`: unknown flow, input that does not fit it, or the rules refuse it.", body = ErrorBody),
        (status = 500, description = "The plugin or the custom fee rules failed.", body = ErrorBody),
    ),
)]
pub(super) async fn quote_flow(
    State(app): State<Arc<AppState>>,
    Path(flow): Path<String>,
    input: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match json_body(input) {
        Ok(i) => i,
        Err(refused) => return *refused,
    };
    let rt = app.pipeline.runtime();
    quote_response(quotes::flow(rt, app.rules.as_deref(), &flow, input).await)
}

fn ledger_response(result: Result<serde_json::Value, ApiFailure>) -> Response {
    api_response(result, "invalid_posting")
}

/// `invalid` names what the caller sent wrong, for a 422.
pub(super) fn api_response(
    result: Result<serde_json::Value, ApiFailure>,
    invalid: &str,
) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(ApiFailure::Invalid(m)) => error(StatusCode::UNPROCESSABLE_ENTITY, invalid, m),
        Err(ApiFailure::Conflict(m)) => error(StatusCode::CONFLICT, "conflict", m),
        Err(ApiFailure::Plugin(e @ CallError::FeeRules(_))) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fee_rules_failed",
            e.to_string(),
        ),
        Err(ApiFailure::Plugin(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_failed",
            e.to_string(),
        ),
        Err(e @ ApiFailure::Database(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "database", e.to_string())
        }
        Err(ApiFailure::Refused(e)) => refusal_response(e),
    }
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

/// The tenant a connected account is registered to.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantInput {
    /// The application's id for the tenant.
    tenant: String,
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

/// Every connected account registered to a tenant.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    responses((status = 200, description = "The registry.", body = TenantList)),
)]
pub(super) async fn tenants_list(State(app): State<Arc<AppState>>) -> Response {
    let list = tenants::list(app.pipeline.db()).await.map(|list| {
        let tenants = list
            .into_iter()
            .map(|(account, tenant)| TenantAccount {
                account,
                tenant: Some(tenant),
            })
            .collect();
        answer_json(&TenantList { tenants })
    });
    api_response(list, "invalid_tenant")
}

/// The tenant a connected account is registered to.
#[utoipa::path(
    get, path = "/v1/tenants/{account}", tag = "tenants",
    params(("account" = String, Path, description = "The connected account (`acct_...`).")),
    responses(
        (status = 200, description = "Registered.", body = TenantAccount),
        (status = 404, description = "`not_registered`.", body = ErrorBody),
        (status = 422, description = "`invalid_tenant`: not an account id.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`: the plugin failed, a fault on psa-billing's side.", body = ErrorBody),
    ),
)]
pub(super) async fn tenant_lookup(
    State(app): State<Arc<AppState>>,
    Path(account): Path<String>,
) -> Response {
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    match tenants::lookup(rt, db, &account).await {
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_registered",
            format!("{account} is not registered to a tenant"),
        ),
        found => api_response(
            found.map(|tenant| answer_json(&TenantAccount { account, tenant })),
            "invalid_tenant",
        ),
    }
}

/// Register a connected account to a tenant (events from that account
/// are routed to it); registering it again to another tenant moves it.
#[utoipa::path(
    put, path = "/v1/tenants/{account}", tag = "tenants",
    params(("account" = String, Path, description = "The connected account (`acct_...`).")),
    request_body = TenantInput,
    responses(
        (status = 200, description = "Registered.", body = TenantAccount),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 422, description = "`bad_request`: the body does not fit; `invalid_tenant`: a bad account or tenant id.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`: the plugin failed, a fault on psa-billing's side.", body = ErrorBody),
    ),
)]
pub(super) async fn tenant_register(
    State(app): State<Arc<AppState>>,
    Path(account): Path<String>,
    input: Result<Json<TenantInput>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match json_body(input) {
        Ok(i) => i,
        Err(refused) => return *refused,
    };
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    let done = tenants::register(rt, db, &account, &input.tenant).await;
    api_response(
        done.map(|()| {
            answer_json(&TenantAccount {
                account,
                tenant: Some(input.tenant),
            })
        }),
        "invalid_tenant",
    )
}

/// Where a contractor's withdrawals are paid.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ContractorInput {
    /// The contractor's connected account (`acct_...`).
    account: String,
}

/// Register where a contractor's withdrawals are paid.
#[utoipa::path(
    put, path = "/v1/contractors/{tenant}/{contractor}", tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant."),
        ("contractor" = String, Path, description = "The application's id for the contractor."),
    ),
    request_body = ContractorInput,
    responses(
        (status = 200, description = "Registered.", body = ContractorAccount),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 422, description = "`bad_request`: the body does not fit; `invalid_contractor`: a bad id.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`: the plugin failed, a fault on psa-billing's side.", body = ErrorBody),
    ),
)]
pub(super) async fn contractor_register(
    State(app): State<Arc<AppState>>,
    Path((tenant, contractor)): Path<(String, String)>,
    input: Result<Json<ContractorInput>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match json_body(input) {
        Ok(i) => i,
        Err(refused) => return *refused,
    };
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    let done = tenants::register_contractor(rt, db, &tenant, &contractor, &input.account).await;
    api_response(
        done.map(|()| {
            answer_json(&ContractorAccount {
                tenant,
                contractor,
                account: input.account,
            })
        }),
        "invalid_contractor",
    )
}

/// Where a contractor's withdrawals are paid.
#[utoipa::path(
    get, path = "/v1/contractors/{tenant}/{contractor}", tag = "tenants",
    params(
        ("tenant" = String, Path, description = "The tenant."),
        ("contractor" = String, Path, description = "The application's id for the contractor."),
    ),
    responses(
        (status = 200, description = "Registered.", body = ContractorAccount),
        (status = 404, description = "`unknown_contractor`: no account registered.", body = ErrorBody),
        (status = 422, description = "`invalid_contractor`: a bad id.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`: the plugin failed, a fault on psa-billing's side.", body = ErrorBody),
    ),
)]
pub(super) async fn contractor_lookup(
    State(app): State<Arc<AppState>>,
    Path((tenant, contractor)): Path<(String, String)>,
) -> Response {
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    match tenants::contractor_account(rt, db, &tenant, &contractor).await {
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "unknown_contractor",
            format!("contractor {contractor} of {tenant} has no registered account"),
        ),
        Ok(Some(account)) => Json(ContractorAccount {
            tenant,
            contractor,
            account,
        })
        .into_response(),
        Err(e) => api_response(Err(e), "invalid_contractor"),
    }
}

/// Unregister a connected account; its events are then routed by
/// metadata again.
#[utoipa::path(
    delete, path = "/v1/tenants/{account}", tag = "tenants",
    params(("account" = String, Path, description = "The connected account (`acct_...`).")),
    responses(
        (status = 200, description = "Unregistered (also when it was not registered): `tenant` is null.", body = TenantAccount),
        (status = 422, description = "`invalid_tenant`: not an account id.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`: the plugin failed, a fault on psa-billing's side.", body = ErrorBody),
    ),
)]
pub(super) async fn tenant_unregister(
    State(app): State<Arc<AppState>>,
    Path(account): Path<String>,
) -> Response {
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    let done = tenants::unregister(rt, db, &account).await;
    api_response(
        done.map(|()| {
            answer_json(&TenantAccount {
                account,
                tenant: None,
            })
        }),
        "invalid_tenant",
    )
}

/// Run an operation (any of [`dispatch::NAMES`]); the document lists
/// each as its own path with its own input and result.
#[utoipa::path(
    post, path = "/v1/operations/{operation}", tag = "operations",
    params(("operation" = String, Path, description = "The operation.")),
    request_body = Object,
    responses(
        (status = 200, description = "The operation's result.", body = Object),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 402, description = "`card_declined`: the card was declined (`card_declined` holds Stripe's codes and a message for the payer).", body = ErrorBody),
        (status = 403, description = "`stripe_denied`: the deployment does not allow this operation, or no Stripe key is configured.", body = ErrorBody),
        (status = 404, description = "`unknown_operation`.", body = ErrorBody),
        (status = 409, description = "`not_owned`: an object or account the request names is not the tenant's (nothing was sent to Stripe); `refused`: the plugin refused it (insufficient balance, a request id reused with other content, a wrong state); `conflict`: likewise, found at commit.", body = ErrorBody),
        (status = 422, description = "`bad_request`: the body does not fit the operation; `invalid_request`: the plugin refused the values; `stripe_invalid_request`: Stripe refused the parameters.", body = ErrorBody),
        (status = 500, description = "`plugin_failed`, `fee_rules_failed`: a fault on psa-billing's side.", body = ErrorBody),
        (status = 502, description = "`stripe_authentication`: Stripe refused the secret key; `stripe_error`: another Stripe error.", body = ErrorBody),
        (status = 503, description = "`stripe_unavailable`: Stripe did not answer or rate-limited after the retries; `storage`: the plugin's storage failed.", body = ErrorBody),
    ),
)]
pub(super) async fn operation(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    input: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let input = match json_body(input) {
        Ok(i) => i,
        Err(refused) => return *refused,
    };
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    let result = match dispatch::dispatch(rt, db, app.rules.as_deref(), &name, input).await {
        Ok(result) => result,
        Err(dispatch::Dispatch::BadInput(why)) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "bad_request", why);
        }
        Err(dispatch::Dispatch::Unknown(why)) => {
            return error(StatusCode::NOT_FOUND, "unknown_operation", why);
        }
    };
    operation_response(result)
}

fn operation_response(result: Result<serde_json::Value, ApiFailure>) -> Response {
    api_response(result, "invalid_request")
}

/// An operation the plugin or Stripe refused.
pub(super) fn refusal_response(e: OperationError) -> Response {
    let why = crate::api::describe(&e);
    let (status, code) = match &e {
        OperationError::Invalid(_) | OperationError::Fees(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
        }
        OperationError::Refused(_) => (StatusCode::CONFLICT, "refused"),
        OperationError::NotOwned(_) => (StatusCode::CONFLICT, "not_owned"),
        OperationError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage"),
        OperationError::Stripe(s) => match s {
            StripeError::CardDeclined(_) => (StatusCode::PAYMENT_REQUIRED, "card_declined"),
            StripeError::InvalidRequest(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "stripe_invalid_request")
            }
            StripeError::Denied(_) => (StatusCode::FORBIDDEN, "stripe_denied"),
            StripeError::Authentication(_) => (StatusCode::BAD_GATEWAY, "stripe_authentication"),
            StripeError::RateLimited(_) | StripeError::Unreachable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "stripe_unavailable")
            }
            StripeError::Api(_) => (StatusCode::BAD_GATEWAY, "stripe_error"),
        },
    };
    let mut body = ErrorBody::new(code, why);
    if let OperationError::Stripe(StripeError::CardDeclined(d)) = &e {
        body.card_declined = Some(d.clone());
    }
    (status, Json(body)).into_response()
}
