//! `/v1/quote` and `/v1/quote/{flow}`: fee quotes and the flows beyond
//! one payment, over HTTP.
//!
//! Knows nothing about state: a quote reads and writes none.

use super::answers::api_response;
use super::*;
use crate::api::quotes;

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

fn quote_response<T: serde::Serialize>(result: Result<T, ApiFailure>) -> Response {
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
