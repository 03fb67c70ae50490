//! How a failed attempt is read: retried (with Stripe's `Retry-After`) or
//! failed with a typed error, by Stripe's error body, the status and
//! `Stripe-Should-Retry`.
//!
//! Knows nothing about what was asked: `with_retries` calls it.

use super::convert::{invalid, unreadable};
use super::*;

/// The longest `Retry-After` waited out; beyond it, the back-off.
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Sorts a failed attempt into retry (with Stripe's wait, if it gave one)
/// or typed error.
pub(super) fn classify(f: transport::Failure) -> Attempt {
    match f {
        transport::Failure::Status {
            status,
            should_retry,
            retry_after,
            body,
        } => {
            let stripes = serde_json::from_str::<serde_json::Value>(&body)
                .is_ok_and(|v| v["error"].is_object());
            let guess = if stripes {
                stripe_error_body(status, &body)
            } else if status == 429 || status >= 500 {
                // Not Stripe's answer (a proxy's or gateway's page): retried
                // like any 5xx, its status kept.
                Attempt::Retry(WitError::Unreachable(format!(
                    "HTTP {status} with an answer that is not Stripe's (a proxy or gateway in between?)"
                )))
            } else {
                Attempt::Fail(WitError::Api(wit::ApiFailure {
                    status,
                    message: format!("HTTP {status} with an answer that is not Stripe's"),
                }))
            };
            match (should_retry_says(should_retry, guess), retry_after) {
                (Attempt::Retry(e), Some(after)) => Attempt::RetryAfter(e, after),
                // Stripe said the same request will not succeed: a failure
                // of Stripe's (502), not "unavailable, try again" (503).
                (Attempt::Fail(WitError::Unreachable(m) | WitError::RateLimited(m)), _) => {
                    Attempt::Fail(WitError::Api(wit::ApiFailure {
                        status,
                        message: format!("{m} (Stripe-Should-Retry: false)"),
                    }))
                }
                (decided, _) => decided,
            }
        }
        transport::Failure::Network(m) => Attempt::Retry(WitError::Unreachable(m)),
        transport::Failure::Unreadable(m) => Attempt::Fail(unreadable(m)),
    }
}

/// Stripe's own word on retrying, where its answer carries one
/// (`Stripe-Should-Retry`), over the status-based guess.
pub(super) fn should_retry_says(header: Option<bool>, guess: Attempt) -> Attempt {
    match (header, guess) {
        (Some(false), Attempt::Retry(e)) => Attempt::Fail(e),
        (Some(true), Attempt::Fail(e @ (WitError::Api(_) | WitError::Unreachable(_)))) => {
            Attempt::Retry(e)
        }
        (_, guess) => guess,
    }
}

/// Stripe's error body (`{"error": {...}}`, v1 and v2 alike) mapped by its
/// status and type.
pub(super) fn stripe_error_body(status: u16, body: &str) -> Attempt {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let e = &v["error"];
    let s = |k: &str| e[k].as_str().map(str::to_string);
    api_error(
        status,
        &s("type").unwrap_or_default(),
        s("code"),
        s("decline_code"),
        s("message").unwrap_or_else(|| format!("HTTP {status}")),
        s("param"),
    )
}

pub(super) fn api_error(
    status: u16,
    kind: &str,
    code: Option<String>,
    decline_code: Option<String>,
    message: String,
    param: Option<String>,
) -> Attempt {
    match status {
        429 => Attempt::Retry(WitError::RateLimited(message)),
        500.. => Attempt::Retry(WitError::Unreachable(format!("HTTP {status}: {message}"))),
        401 | 403 => Attempt::Fail(WitError::Authentication(message)),
        _ if kind == "card_error" => Attempt::Fail(WitError::CardDeclined(wit::CardDecline {
            code: code.unwrap_or_else(|| "card_declined".into()),
            decline_code,
            message,
        })),
        400 | 404 => Attempt::Fail(invalid(message, param)),
        _ => Attempt::Fail(WitError::Api(wit::ApiFailure {
            status,
            message: format!("{kind}: {message}"),
        })),
    }
}
