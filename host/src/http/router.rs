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
use crate::api::dispatch;
use crate::api::quotes::{self, QuoteInput};
use crate::api::tenants;
use crate::api::{ApiFailure, answer_json, ledger};
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
        .routes(routes!(effects))
        .routes(routes!(effects_stream))
        .routes(routes!(quote))
        .routes(routes!(quote_flow))
        .routes(routes!(ledger_balances))
        .routes(routes!(ledger_transactions, ledger_post))
        .routes(routes!(operation))
        .routes(routes!(tenants_list))
        .routes(routes!(reconciliation))
        .routes(routes!(contractor_lookup, contractor_register))
        .routes(routes!(tenant_lookup, tenant_register, tenant_unregister))
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
        return Some(too_many_attempts(wait));
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

/// 429 for a client held off after too many wrong tokens.
pub(super) fn too_many_attempts(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let mut refused = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many wrong API tokens from this address; try again in {seconds} s"),
    );
    refused
        .headers_mut()
        .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
    refused
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EffectsQuery {
    /// Effects after this sequence number (0: from the start).
    #[serde(default)]
    after: i64,
    /// At most this many, 1 to 1000 (default 100).
    limit: Option<i64>,
}

/// Read the effects outbox, in order.
///
/// Page with `next_after`. Sequence numbers are gapless and in commit
/// order, so a reader that remembers the last one it applied misses
/// nothing.
#[utoipa::path(
    get, path = "/v1/effects", tag = "effects",
    params(EffectsQuery),
    responses(
        (status = 200, description = "A page of effects.", body = EffectsPage),
        (status = 400, description = "`after` or `limit` is not a valid integer.", body = ErrorBody),
    ),
)]
async fn effects(
    State(app): State<Arc<AppState>>,
    query: Result<Query<EffectsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "after and limit must be integers",
        );
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "limit must be 1 to 1000",
        );
    }
    match app.pipeline.db().effects_after(q.after, limit).await {
        Ok(list) => {
            let next = list.last().map(|e| e.seq).unwrap_or(q.after);
            Json(EffectsPage {
                effects: list,
                next_after: next,
            })
            .into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database",
            format!("{e:#}"),
        ),
    }
}

/// How often an idle effects stream looks for effects that another process
/// committed (several `serve` on PostgreSQL); this process's own commits
/// wake it at once.
const STREAM_POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// A comment line this often keeps proxies from closing an idle stream.
const STREAM_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Start after this sequence number (0: from the start); a
    /// `Last-Event-ID` header wins over it.
    after: Option<i64>,
}

/// Follow the effects outbox as Server-Sent Events.
///
/// Every effect after `after` (or the `Last-Event-ID` a reconnecting client
/// sends, which wins), `id:` its sequence number and `event:` its kind,
/// then each new one as it commits. Sequence numbers are gapless, so a
/// client that reconnects with its last id misses nothing and gets nothing
/// twice. Ends when the service shuts down, or after its maximum lifetime
/// (the client reconnects with `Last-Event-ID`). At most `max_streams` are
/// open at once.
#[utoipa::path(
    get, path = "/v1/effects/stream", tag = "effects",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "The last sequence number received, when reconnecting."),
    ),
    responses(
        (status = 200, description = "An endless `text/event-stream`: one event per effect (`id:` its sequence, `event:` its kind, `data:` the effect as `GET /v1/effects` lists it), and a `keep-alive` comment every 15 s.",
            content_type = "text/event-stream", body = String),
        (status = 400, description = "`after` or `Last-Event-ID` is not a sequence number.", body = ErrorBody),
        (status = 503, description = "`too_many_streams`: every stream slot is taken (`Retry-After` says when to try again).", body = ErrorBody),
    ),
)]
async fn effects_stream(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "after must be an integer",
        );
    };
    let last_id = match headers.get("last-event-id").map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => match v.trim().parse::<i64>() {
            Ok(id) => Some(id),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_last_event_id",
                    "Last-Event-ID must be an effect's sequence number",
                );
            }
        },
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_last_event_id",
                "Last-Event-ID is not text",
            );
        }
    };
    let after = last_id.or(q.after).unwrap_or(0);
    if after < 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "after must be 0 or more",
        );
    }
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        let mut refused = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            "every effects stream slot is taken; reconnect later, or poll GET /v1/effects",
        );
        refused.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return refused;
    };
    struct Cursor {
        after: i64,
        page: std::collections::VecDeque<crate::storage::StoredEffect>,
        db: crate::storage::Db,
        closing: tokio::sync::watch::Receiver<bool>,
        /// When the stream ends; the client reconnects with `Last-Event-ID`.
        ends: tokio::time::Instant,
        /// The stream's slot, given back when it ends.
        _slot: tokio::sync::OwnedSemaphorePermit,
    }
    let start = Cursor {
        after,
        page: Default::default(),
        db: app.pipeline.db().clone(),
        closing: app.pipeline.closing(),
        ends: tokio::time::Instant::now() + app.stream_lifetime,
        _slot: permit,
    };
    let stream = futures_util::stream::unfold(start, |mut c| async move {
        loop {
            if *c.closing.borrow() || tokio::time::Instant::now() >= c.ends {
                return None;
            }
            if let Some(effect) = c.page.pop_front() {
                debug_assert!(effect.seq > c.after, "the outbox is read in order");
                c.after = effect.seq;
                let event = Event::default()
                    .id(effect.seq.to_string())
                    .event(effect.kind.clone())
                    .json_data(&effect)
                    .unwrap_or_else(|_| Event::default().comment("unserialisable effect"));
                return Some((Ok::<_, std::convert::Infallible>(event), c));
            }
            // Registered before the read: a commit in between still wakes it.
            let db = c.db.clone();
            let added = db.effects_added();
            tokio::pin!(added);
            added.as_mut().enable();
            match c.db.effects_after(c.after, 100).await {
                Ok(page) if !page.is_empty() => {
                    c.page.extend(page);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "effects stream: reading the outbox")
                }
            }
            tokio::select! {
                _ = added => {}
                // Other processes' commits (several on PostgreSQL) wake nobody here.
                _ = tokio::time::sleep(STREAM_POLL) => {}
                _ = tokio::time::sleep_until(c.ends) => return None,
                // Closing, or the pipeline gone: either way the next turn ends.
                changed = c.closing.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    });
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(STREAM_KEEP_ALIVE)
                .text("keep-alive"),
        )
        .into_response()
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
async fn quote(
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
async fn quote_flow(
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
fn api_response(result: Result<serde_json::Value, ApiFailure>, invalid: &str) -> Response {
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
async fn ledger_balances(State(app): State<Arc<AppState>>, Path(tenant): Path<String>) -> Response {
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    ledger_response(ledger::balances(rt, db, &tenant).await)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TransactionsQuery {
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
async fn ledger_transactions(
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
async fn ledger_post(
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
struct TenantInput {
    /// The application's id for the tenant.
    tenant: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReconciliationQuery {
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
async fn reconciliation(
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
async fn tenants_list(State(app): State<Arc<AppState>>) -> Response {
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
async fn tenant_lookup(State(app): State<Arc<AppState>>, Path(account): Path<String>) -> Response {
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
async fn tenant_register(
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
struct ContractorInput {
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
async fn contractor_register(
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
async fn contractor_lookup(
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
async fn tenant_unregister(
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
async fn operation(
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
fn refusal_response(e: OperationError) -> Response {
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
