//! The HTTP surface: `POST /webhooks/stripe` (snapshot events) and
//! `/webhooks/stripe/thin` (v2 notifications), `GET /v1/effects`, tenants,
//! operations (`POST /v1/operations/{name}`), quotes
//! (`POST /v1/quote[/{flow}]`), the ledger (`/v1/ledger/{tenant}/...`) and
//! `GET /healthz`.

use crate::api::operations;
use crate::api::quotes::{self, QuoteInput};
use crate::api::tenants;
use crate::api::{ApiFailure, ledger};
use crate::pipeline::{DeliveryError, Outcome, Pipeline, describe_rejection, rejection_code};
use crate::runtime::CallError;
use crate::runtime::{OperationError, StripeError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

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
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            api_token: None,
            rules: None,
        }
    }
}

struct AppState {
    pipeline: Pipeline,
    /// SHA-256 of the API token: comparing digests leaks nothing useful
    /// about the token through timing.
    token_digest: Option<[u8; 32]>,
    rules: Option<String>,
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
    let state = Arc::new(AppState {
        pipeline,
        token_digest: options.api_token.as_deref().map(digest),
        rules: options.rules,
    });
    let v1 = Router::new()
        .route("/v1/effects", get(effects))
        .route("/v1/effects/stream", get(effects_stream))
        .route("/v1/quote", post(quote))
        .route("/v1/quote/{flow}", post(quote_flow))
        .route("/v1/ledger/{tenant}/balances", get(ledger_balances))
        .route(
            "/v1/ledger/{tenant}/transactions",
            get(ledger_transactions).post(ledger_post),
        )
        .route("/v1/operations/{operation}", post(operation))
        .route("/v1/tenants", get(tenants_list))
        .route("/v1/reconciliation", get(reconciliation))
        .route(
            "/v1/contractors/{tenant}/{contractor}",
            get(contractor_lookup).put(contractor_register),
        )
        .route(
            "/v1/tenants/{account}",
            get(tenant_lookup)
                .put(tenant_register)
                .delete(tenant_unregister),
        )
        .with_state(state.clone())
        .merge(extra)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    Router::new()
        .route(
            "/webhooks/stripe",
            post(webhook).layer(DefaultBodyLimit::max(options.max_body_bytes)),
        )
        .route(
            "/webhooks/stripe/thin",
            post(thin_webhook).layer(DefaultBodyLimit::max(options.max_body_bytes)),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(v1)
}

/// The auth layer of every `/v1` route: the bearer token, or the refusal.
async fn require_token(
    State(app): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match refuse_unauthorized(&app, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn error(status: StatusCode, code: &str, reason: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "error": code, "reason": reason.into() })),
    )
        .into_response()
}

async fn webhook(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    delivery(app, headers, body, false).await
}

/// `POST /webhooks/stripe/thin`: API v2 event notifications.
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
        }) => {
            let status = if ignored { "ignored" } else { "accepted" };
            Json(json!({ "status": status, "event_id": event_id, "effects": effects.len() }))
                .into_response()
        }
        Ok(Outcome::Duplicate { event_id }) => {
            Json(json!({ "status": "duplicate", "event_id": event_id })).into_response()
        }
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

/// Checks the bearer token of a `/v1` request; `Some` is the refusal.
fn refuse_unauthorized(app: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = app.token_digest else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "api_closed",
            "the /v1 API is closed: start the server with PSA_BILLING_API_TOKEN set",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if bool::from(digest(token).ct_eq(&expected)) => None,
        _ => Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )),
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

#[derive(Deserialize)]
struct EffectsQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

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
            Json(json!({ "effects": list, "next_after": next })).into_response()
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database",
            format!("{e:#}"),
        ),
    }
}

/// How often an idle effects stream looks for new effects (another
/// process may have committed them, so it reads the outbox rather than
/// waiting for this process's commits).
const STREAM_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// A comment line this often keeps proxies from closing an idle stream.
const STREAM_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Deserialize)]
struct StreamQuery {
    after: Option<i64>,
}

/// `GET /v1/effects/stream`: every effect after `after` (or the
/// `Last-Event-ID` a reconnecting client sends, which wins) as Server-Sent
/// Events, `id:` its sequence number and `event:` its kind, then each new
/// one as it commits. Sequence numbers are gapless, so a client that
/// reconnects with its last id misses nothing and gets nothing twice. Ends
/// when the service shuts down.
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
    struct Cursor {
        after: i64,
        page: std::collections::VecDeque<crate::storage::StoredEffect>,
        db: crate::storage::Db,
        closing: tokio::sync::watch::Receiver<bool>,
    }
    let start = Cursor {
        after,
        page: Default::default(),
        db: app.pipeline.db().clone(),
        closing: app.pipeline.closing(),
    };
    let stream = futures_util::stream::unfold(start, |mut c| async move {
        loop {
            if *c.closing.borrow() {
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
                _ = tokio::time::sleep(STREAM_POLL) => {}
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

/// Prometheus scrape: no tenant data, so open like `/healthz`.
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

async fn healthz(State(app): State<Arc<AppState>>) -> Response {
    match app.pipeline.db().counts().await {
        Ok(_) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database",
            format!("{e:#}"),
        ),
    }
}

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

async fn ledger_balances(State(app): State<Arc<AppState>>, Path(tenant): Path<String>) -> Response {
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    ledger_response(ledger::balances(rt, db, &tenant).await)
}

#[derive(Deserialize)]
struct TransactionsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u32>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantInput {
    tenant: String,
}

#[derive(Deserialize)]
struct ReconciliationQuery {
    /// One tenant; none: every registered tenant.
    tenant: Option<String>,
    from: String,
    to: String,
}

/// `GET /v1/reconciliation?tenant=&from=&to=`: 200 with the report, which
/// says how many differences it found (a difference is a finding, not a
/// failed request).
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

async fn tenants_list(State(app): State<Arc<AppState>>) -> Response {
    let list = tenants::list(app.pipeline.db()).await.map(|list| {
        let list: Vec<serde_json::Value> = list
            .into_iter()
            .map(|(account, tenant)| json!({ "account": account, "tenant": tenant }))
            .collect();
        json!({ "tenants": list })
    });
    api_response(list, "invalid_tenant")
}

async fn tenant_lookup(State(app): State<Arc<AppState>>, Path(account): Path<String>) -> Response {
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    match tenants::lookup(rt, db, &account).await {
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_registered",
            format!("{account} is not registered to a tenant"),
        ),
        found => api_response(
            found.map(|t| json!({ "account": account, "tenant": t })),
            "invalid_tenant",
        ),
    }
}

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
        done.map(|()| json!({ "account": account, "tenant": input.tenant })),
        "invalid_tenant",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractorInput {
    account: String,
}

/// `PUT /v1/contractors/{tenant}/{contractor}` `{"account": "acct_..."}`:
/// where that contractor's withdrawals are paid.
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
        done.map(
            |()| json!({ "tenant": tenant, "contractor": contractor, "account": input.account }),
        ),
        "invalid_contractor",
    )
}

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
        other => api_response(
            other.map(|a| json!({ "tenant": tenant, "contractor": contractor, "account": a })),
            "invalid_contractor",
        ),
    }
}

async fn tenant_unregister(
    State(app): State<Arc<AppState>>,
    Path(account): Path<String>,
) -> Response {
    let (rt, db) = (app.pipeline.runtime(), app.pipeline.db());
    let done = tenants::unregister(rt, db, &account).await;
    api_response(
        done.map(|()| json!({ "account": account, "tenant": null })),
        "invalid_tenant",
    )
}

/// `POST /v1/operations/{name}`: any of [`operations::NAMES`].
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
    let result = match operations::dispatch(rt, db, app.rules.as_deref(), &name, input).await {
        Ok(result) => result,
        Err(operations::Dispatch::BadInput(why)) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "bad_request", why);
        }
        Err(operations::Dispatch::Unknown(why)) => {
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
    let mut body = json!({ "error": code, "reason": why });
    if let OperationError::Stripe(StripeError::CardDeclined(d)) = &e {
        body["card_declined"] = json!({
            "code": d.code, "decline_code": d.decline_code, "message": d.message,
        });
    }
    (status, Json(body)).into_response()
}
