//! How an application call's answer becomes an HTTP answer: the result as
//! JSON, or `ApiFailure` and a refused operation's `OperationError` as a
//! status and an `ErrorBody`. Every `/v1` call answers through here.
//!
//! Knows nothing about routes.

use super::*;

/// `invalid` names what the caller sent wrong, for a 422.
pub(super) fn api_response<T: serde::Serialize>(
    result: Result<T, ApiFailure>,
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
