//! `/v1/tenants/...` and `/v1/contractors/...`: the registry of connected
//! accounts and where contractors are paid, over HTTP.
//!
//! Knows nothing about the ledger or operations.

use super::answers::api_response;
use super::*;
use crate::api::tenants;

/// The tenant a connected account is registered to.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantInput {
    /// The application's id for the tenant.
    tenant: String,
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
        Err(e) => api_response(Err::<(), _>(e), "invalid_contractor"),
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
