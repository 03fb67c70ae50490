//! `POST /v1/operations/{name}`: every operation of the table, by name,
//! through `api::dispatch`.
//!
//! Knows nothing about any one operation: the table does.

use super::answers::api_response;
use super::*;
use crate::api::dispatch;

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
