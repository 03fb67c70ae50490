//! The HTTP surface: `POST /webhooks/stripe` (snapshot events) and
//! `/webhooks/stripe/thin` (v2 notifications), `GET /v1/effects`, tenants,
//! operations (`POST /v1/operations/{name}`), quotes
//! (`POST /v1/quote[/{flow}]`), the ledger (`/v1/ledger/{tenant}/...`) and
//! `GET /healthz`, and the OpenAPI document of all of it
//! (`GET /v1/openapi.json`), which is taken from the same route list the
//! router is built from.

use super::bodies::{
    ContractorAccount, DeliveryAnswer, DeliveryStatus, EffectsPage, ErrorBody, Health,
    TenantAccount, TenantList,
};
use super::openapi;
use crate::api::quotes::QuoteInput;
use crate::api::{ApiFailure, answer_json};
use crate::pipeline::{DeliveryError, Outcome, Pipeline, describe_rejection, rejection_code};
use crate::runtime::CallError;
use crate::runtime::{OperationError, StripeError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use utoipa::IntoParams;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

mod answers;
mod effects;
mod ledger;
mod operations;
mod quotes;
mod tenants;

/// Default limit on a webhook body (Stripe's events are far smaller).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// What the router serves besides the pipeline: body limit, API token, rules.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest webhook body accepted; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// Bearer token for `/v1`; without one, `/v1` answers 403.
    pub api_token: Option<String>,
    /// Fee rules (TOML text, already checked) for `/v1/quote`.
    pub rules: Option<String>,
    /// Serve the operator console at `/console` (signed in with the API token).
    pub console: bool,
    /// Effects streams (`/v1/effects/stream`) open at once; one more is
    /// answered 503 with `Retry-After`.
    pub max_streams: usize,
    /// How long one effects stream stays open; the client reconnects with
    /// `Last-Event-ID` and misses nothing.
    pub stream_lifetime: std::time::Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            api_token: None,
            rules: None,
            console: false,
            max_streams: 256,
            stream_lifetime: std::time::Duration::from_secs(15 * 60),
        }
    }
}

struct AppState {
    pipeline: Pipeline,
    /// SHA-256 of the API token: comparing digests leaks nothing useful
    /// about the token through timing.
    token_digest: Option<[u8; 32]>,
    rules: Option<String>,
    /// The OpenAPI document of these routes, as served.
    openapi: String,
    /// One permit per effects stream open.
    streams: Arc<tokio::sync::Semaphore>,
    /// Wrong tokens per client, shared with the console's sign-in.
    throttle: Arc<super::throttle::Throttle>,
    stream_lifetime: std::time::Duration,
}

/// The routes of `serve`: the webhook endpoints, `/healthz`, `/metrics`,
/// and the `/v1` API behind the bearer token.
pub fn router(pipeline: Pipeline, options: ServerOptions) -> Router {
    router_with(pipeline, options, Router::new())
}

/// [`router`] with the application's own `extra` routes, served behind the
/// same bearer token as the `/v1` API (whatever their paths). Every `/v1`
/// route, psa-billing's and these, passes one auth layer: a route added
/// here is closed without the token by default, with no auth code of its own.
pub fn router_with(pipeline: Pipeline, options: ServerOptions, extra: Router) -> Router {
    let (open, v1, document) = routes(options.max_body_bytes);
    let throttle = Arc::new(super::throttle::Throttle::default());
    let console = options.console.then(|| {
        super::console::routes(
            pipeline.clone(),
            options.api_token.clone(),
            throttle.clone(),
        )
    });
    let state = Arc::new(AppState {
        throttle,
        pipeline,
        token_digest: options.api_token.as_deref().map(digest),
        rules: options.rules,
        openapi: openapi::to_json(&document),
        streams: Arc::new(tokio::sync::Semaphore::new(options.max_streams)),
        stream_lifetime: options.stream_lifetime,
    });
    let v1 = v1.with_state(state.clone()).merge(extra).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), require_token),
    );
    let app = open.with_state(state).merge(v1);
    match console {
        Some(console) => app.merge(console),
        None => app,
    }
}

/// The OpenAPI document of the routes [`router`] serves (without an
/// application's extra routes), as `GET /v1/openapi.json` answers it.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes(DEFAULT_MAX_BODY_BYTES).2
}

/// Every route, each registered with its OpenAPI operation so that none
/// is served undocumented: the open ones (webhooks, health, metrics), the
/// `/v1` ones (to be put behind the token), and the finished document.
fn routes(
    max_body_bytes: usize,
) -> (
    Router<Arc<AppState>>,
    Router<Arc<AppState>>,
    utoipa::openapi::OpenApi,
) {
    let limit = || DefaultBodyLimit::max(max_body_bytes);
    let (open, open_api) = OpenApiRouter::new()
        .routes(routes!(webhook).layer(limit()))
        .routes(routes!(thin_webhook).layer(limit()))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .split_for_parts();
    let (v1, v1_api) = OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(effects::effects))
        .routes(routes!(effects::effects_stream))
        .routes(routes!(quotes::quote))
        .routes(routes!(quotes::quote_flow))
        .routes(routes!(ledger::ledger_balances))
        .routes(routes!(ledger::ledger_transactions, ledger::ledger_post))
        .routes(routes!(operations::operation))
        .routes(routes!(tenants::tenants_list))
        .routes(routes!(ledger::reconciliation))
        .routes(routes!(
            tenants::contractor_lookup,
            tenants::contractor_register
        ))
        .routes(routes!(
            tenants::tenant_lookup,
            tenants::tenant_register,
            tenants::tenant_unregister
        ))
        .split_for_parts();
    (open, v1, openapi::document(open_api, v1_api))
}

/// The auth layer of every `/v1` route: the bearer token, or the refusal.
async fn require_token(
    State(app): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match refuse_unauthorized(&app, request.headers(), request.extensions()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn error(status: StatusCode, code: &str, reason: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(code, reason))).into_response()
}

/// Receive a Stripe event (snapshot payload).
///
/// Verifies `Stripe-Signature` against the webhook secret(s), records the
/// event once (a redelivery is answered `duplicate`), maps it to effects
/// and commits both in one transaction before answering. A permanent
/// problem (bad signature, malformed event) is answered 400 so that
/// Stripe stops retrying; only a failure on psa-billing's side is a 5xx.
#[utoipa::path(
    post, path = "/webhooks/stripe", tag = "webhooks",
    params(("Stripe-Signature" = String, Header, description = "Stripe's signature header (`t=...,v1=...`)")),
    request_body(content = Object, description = "The event exactly as Stripe sent it (the bytes are verified).", content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted, ignored (type not mapped) or duplicate.", body = DeliveryAnswer),
        (status = 400, description = "Bad or missing signature, unreadable event, or an event refused for good (`x-psa-billing-event` names it).", body = ErrorBody,
            headers(("x-psa-billing-event" = String, description = "The refused event's id, when it could be read."))),
        (status = 413, description = "The body exceeds the configured limit.", body = ErrorBody),
        (status = 500, description = "Processing failed on psa-billing's side; Stripe's retry will redo it.", body = ErrorBody,
            headers(("x-psa-billing-event" = String, description = "The event's id, when it could be read."))),
    ),
)]
async fn webhook(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    delivery(app, headers, body, false).await
}

/// Receive a Stripe API v2 event notification (thin event).
///
/// Same answers as `/webhooks/stripe`; the related object is fetched from
/// Stripe when the mapping needs it.
#[utoipa::path(
    post, path = "/webhooks/stripe/thin", tag = "webhooks",
    params(("Stripe-Signature" = String, Header, description = "Stripe's signature header (`t=...,v1=...`)")),
    request_body(content = Object, description = "The notification exactly as Stripe sent it.", content_type = "application/json"),
    responses(
        (status = 200, description = "Accepted, ignored or duplicate.", body = DeliveryAnswer),
        (status = 400, description = "Bad or missing signature, or an unreadable notification.", body = ErrorBody,
            headers(("x-psa-billing-event" = String, description = "The refused event's id, when it could be read."))),
        (status = 413, description = "The body exceeds the configured limit.", body = ErrorBody),
        (status = 500, description = "Processing failed on psa-billing's side; Stripe's retry will redo it.", body = ErrorBody,
            headers(("x-psa-billing-event" = String, description = "The event's id, when it could be read."))),
    ),
)]
async fn thin_webhook(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    delivery(app, headers, body, true).await
}

async fn delivery(
    app: Arc<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    thin: bool,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the body exceeds the configured limit",
            );
        }
        Err(rejection) => {
            return error(rejection.status(), "unreadable_body", rejection.body_text());
        }
    };
    // A header that is not valid text is passed on as such and fails to parse.
    let signature = headers
        .get("stripe-signature")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let started = std::time::Instant::now();
    let outcome = if thin {
        app.pipeline.receive_thin(&body, signature.as_deref()).await
    } else {
        app.pipeline.receive(&body, signature.as_deref()).await
    };
    let (label, reason) = match &outcome {
        Ok(Outcome::Accepted { ignored: true, .. }) => ("ignored", None),
        Ok(Outcome::Accepted { .. }) => ("accepted", None),
        Ok(Outcome::Duplicate { .. }) => ("duplicate", None),
        Ok(Outcome::Rejected { .. }) => ("rejected", Some("unprocessable")),
        Err(DeliveryError::Rejected(e)) => ("rejected", Some(rejection_code(e))),
        Err(DeliveryError::Refused { code, .. }) => ("rejected", Some(*code)),
        Err(DeliveryError::Failed { .. }) => ("failed", None),
    };
    app.pipeline
        .metrics()
        .delivery(label, reason, started.elapsed());
    delivery_response(outcome)
}

/// The answer to Stripe for a delivery's outcome: 200 with what happened,
/// 400 for what will never be processed (so Stripe stops retrying), 500
/// for a failure on psa-billing's side (Stripe retries).
fn delivery_response(outcome: Result<Outcome, DeliveryError>) -> Response {
    match outcome {
        Ok(Outcome::Accepted {
            event_id,
            effects,
            ignored,
        }) => Json(DeliveryAnswer {
            status: if ignored {
                DeliveryStatus::Ignored
            } else {
                DeliveryStatus::Accepted
            },
            event_id,
            effects: Some(effects.len()),
            reason: None,
        })
        .into_response(),
        Ok(Outcome::Duplicate { event_id }) => Json(DeliveryAnswer {
            status: DeliveryStatus::Duplicate,
            event_id,
            effects: None,
            reason: None,
        })
        .into_response(),
        Ok(Outcome::Rejected { event_id, reason }) => Json(DeliveryAnswer {
            status: DeliveryStatus::Rejected,
            event_id,
            effects: None,
            reason: Some(reason),
        })
        .into_response(),
        Err(DeliveryError::Rejected(e)) => {
            tracing::info!(reason = %describe_rejection(&e), "delivery rejected");
            error(
                StatusCode::BAD_REQUEST,
                rejection_code(&e),
                describe_rejection(&e),
            )
        }
        Err(DeliveryError::Refused {
            event_id,
            code,
            reason,
        }) => {
            let mut r = error(StatusCode::BAD_REQUEST, code, reason);
            if let Ok(v) = event_id.parse() {
                r.headers_mut().insert("x-psa-billing-event", v);
            }
            r
        }
        Err(DeliveryError::Failed { event_id, reason }) => {
            let mut r = error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "processing_failed",
                reason,
            );
            if let Some(id) = event_id
                && let Ok(v) = id.parse()
            {
                r.headers_mut().insert("x-psa-billing-event", v);
            }
            r
        }
    }
}

/// This API's OpenAPI 3.1 document (the one committed as
/// `docs/openapi.json`).
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "service",
    responses((status = 200, description = "The document.", body = Object)),
)]
async fn openapi_json(State(app): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.openapi.clone(),
    )
        .into_response()
}

/// Checks the bearer token of a `/v1` request; `Some` is the refusal.
fn refuse_unauthorized(
    app: &AppState,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Option<Response> {
    let Some(expected) = app.token_digest else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "api_closed",
            "the /v1 API is closed: start the server with PSA_BILLING_API_TOKEN set",
        ));
    };
    let client = super::throttle::client_of(extensions);
    if let Some(wait) = app.throttle.held_off(client) {
        return Some(super::throttle::too_many_attempts(wait));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if bool::from(digest(token).ct_eq(&expected)) => None,
        wrong => {
            // A wrong token is a guess; no token at all is not.
            if wrong.is_some() {
                app.throttle.failed(client);
            }
            Some(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            ))
        }
    }
}

/// The JSON body of a `/v1` request, or the answer refusing it.
fn json_body<T>(
    input: Result<Json<T>, axum::extract::rejection::JsonRejection>,
) -> Result<T, Box<Response>> {
    match input {
        Ok(Json(i)) => Ok(i),
        Err(e) => Err(Box::new(error(e.status(), "bad_request", e.body_text()))),
    }
}

/// Prometheus metrics (OpenMetrics text).
///
/// No tenant data, so open like `/healthz`.
#[utoipa::path(
    get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "OpenMetrics text: deliveries by outcome, latencies, outbox length, group commits.",
            content_type = "application/openmetrics-text", body = String),
        (status = 503, description = "The database did not answer.", body = ErrorBody),
    ),
)]
async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let outbox = match app.pipeline.db().outbox_len().await {
        Ok(n) => n,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database",
                format!("{e:#}"),
            );
        }
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.pipeline
            .metrics()
            .render(outbox, app.pipeline.db().group_commits()),
    )
        .into_response()
}

/// Health: whether the database answers.
#[utoipa::path(
    get, path = "/healthz", tag = "service",
    responses(
        (status = 200, description = "The service and its database answer.", body = Health),
        (status = 503, description = "The database did not answer.", body = ErrorBody),
    ),
)]
async fn healthz(State(app): State<Arc<AppState>>) -> Response {
    match app.pipeline.db().counts().await {
        Ok(_) => Json(Health {
            status: "ok".into(),
        })
        .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database",
            format!("{e:#}"),
        ),
    }
}
