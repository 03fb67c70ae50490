//! The operator console (`/console`, served with `serve --console`): one
//! server-rendered page (maud, no script) with deliveries per minute by
//! outcome as an SVG chart, the latest deliveries filterable by status and
//! type, failed and dead-lettered events each with a Replay button, the
//! effects outbox, tenants with their connected accounts, and each
//! tenant's ledger balances.
//!
//! Signing in takes the API token through a form and sets a session
//! cookie (HttpOnly, SameSite=Strict, eight hours), an HMAC of its expiry
//! keyed by the token: nothing is stored, and changing the token ends every
//! session. Every POST carries a CSRF token, an HMAC of the session, so a
//! form cannot be posted on an operator's behalf.
//!
//! Knows nothing about the `/v1` API or its document: it reads through the
//! pipeline and the storage, and replays through the pipeline.

use crate::pipeline::{DeliveryError, Outcome, Pipeline};
use crate::storage::{EventRecord, StoredEffect};
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "psa_billing_console";
/// How long a session lasts.
const SESSION_SECONDS: i64 = 8 * 3600;
/// How many deliveries, effects and tenants a page shows.
const ROWS: i64 = 50;
/// Minutes the chart covers.
const CHART_MINUTES: i64 = 60;
/// Outcomes as the event log names them, in the chart's stacking order.
const OUTCOMES: [(&str, &str); 4] = [
    ("processed", "#2f855a"),
    ("ignored", "#a0aec0"),
    ("failed", "#dd6b20"),
    ("dead", "#c53030"),
];

#[derive(Clone)]
struct Console {
    pipeline: Pipeline,
    /// The API token; none: the console is closed like `/v1`.
    token: Option<std::sync::Arc<str>>,
    /// Sessions signed out before they expired (value → expiry). Kept in
    /// this process: behind a load balancer, sign out on each, or rotate
    /// the token.
    revoked: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
    /// Wrong tokens per client, shared with the `/v1` bearer check.
    throttle: std::sync::Arc<super::throttle::Throttle>,
}

/// The console's routes, to be merged into the service's router.
pub fn routes(
    pipeline: Pipeline,
    api_token: Option<String>,
    throttle: std::sync::Arc<super::throttle::Throttle>,
) -> Router {
    Router::new()
        .route("/console", get(page))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/replay", post(replay))
        .with_state(Console {
            pipeline,
            token: api_token.map(Into::into),
            revoked: Default::default(),
            throttle,
        })
        .layer(axum::middleware::map_response(security_headers))
}

/// Every console answer: never framed (clickjacking), never cached (the
/// page holds tenants' balances), no type sniffing, no referrer, and no
/// script, style or form target but its own.
async fn security_headers(mut response: Response) -> Response {
    use axum::http::HeaderValue;
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn mac(token: &str, message: &str) -> String {
    hex(&psa_billing_core::signature::hmac_sha256(
        token.as_bytes(),
        message.as_bytes(),
    ))
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A session cookie's value: its expiry and the token's HMAC of it.
fn session_value(token: &str, expires: i64) -> String {
    format!("{expires}.{}", mac(token, &format!("session:{expires}")))
}

/// The CSRF token of a session.
fn csrf(token: &str, session: &str) -> String {
    mac(token, &format!("csrf:{session}"))
}

impl Console {
    /// The request's valid, unexpired session, if any.
    fn session(&self, headers: &HeaderMap) -> Option<String> {
        let token = self.token.as_deref()?;
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value.to_string())?;
        let (expires, _) = value.split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        let revoked = self
            .revoked
            .lock()
            .expect("not poisoned")
            .contains_key(&value);
        (!revoked
            && expires > crate::clock::unix_now()
            && same(&value, &session_value(token, expires)))
        .then_some(value)
    }
}

fn closed() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(
            layout(
                "Console closed",
                html! { p { "The console needs an API token: start the service with PSA_BILLING_API_TOKEN set." } },
            )
            .into_string(),
        ),
    )
        .into_response()
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1a202c}\
h1{font-size:1.3rem}h2{font-size:1.05rem;margin-top:2rem}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e2e8f0;padding:.3rem .5rem;text-align:left;vertical-align:top}\
th{background:#f7fafc}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.status-processed{color:#2f855a}.status-failed{color:#dd6b20}.status-dead{color:#c53030;font-weight:600}.status-ignored{color:#718096}\
.notice{background:#ebf8ff;border:1px solid #90cdf4;padding:.5rem}.error{background:#fff5f5;border:1px solid #feb2b2;padding:.5rem}\
form.inline{display:inline}code{font-size:12px}header{display:flex;justify-content:space-between;align-items:center}\
.legend span{margin-right:1rem}.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · psa-billing" }
                style { (STYLE) }
            }
            body { (body) }
        }
    }
}

async fn login_page(State(console): State<Console>, headers: HeaderMap) -> Response {
    if console.token.is_none() {
        return closed();
    }
    if console.session(&headers).is_some() {
        return Redirect::to("/console").into_response();
    }
    Html(login_form(None).into_string()).into_response()
}

fn login_form(error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        html! {
            h1 { "psa-billing console" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/console/login" {
                label { "API token " input type="password" name="token" autocomplete="current-password" required autofocus; }
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(console): State<Console>,
    client: Option<axum::Extension<super::throttle::Peer>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = console.token.as_deref() else {
        return closed();
    };
    let client = client.map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| {
        p.0.0
    });
    if let Some(wait) = console.throttle.held_off(client) {
        return super::throttle::too_many_attempts(wait);
    }
    use sha2::{Digest, Sha256};
    let (given, expected) = (
        Sha256::digest(form.token.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    if !bool::from(given.as_slice().ct_eq(expected.as_slice())) {
        console.throttle.failed(client);
        return (
            StatusCode::UNAUTHORIZED,
            Html(login_form(Some("That is not the API token.")).into_string()),
        )
            .into_response();
    }
    let expires = crate::clock::unix_now() + SESSION_SECONDS;
    let cookie = format!(
        "{COOKIE}={}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}",
        session_value(token, expires)
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/console")).into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = console.refuse_post(&headers, &form.csrf) {
        return refused;
    }
    // The cookie is dropped by the browser, and the session itself ends:
    // a copy of the cookie no longer signs in.
    if let Some(session) = console.session(&headers) {
        let expires = session
            .split_once('.')
            .and_then(|(e, _)| e.parse().ok())
            .unwrap_or(i64::MAX);
        let now = crate::clock::unix_now();
        let mut revoked = console.revoked.lock().expect("not poisoned");
        revoked.retain(|_, until| *until > now);
        revoked.insert(session, expires);
    }
    let cookie = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/login"),
    )
        .into_response()
}

impl Console {
    /// Checks a POST's session and CSRF token; `Some` is the refusal.
    fn refuse_post(&self, headers: &HeaderMap, given: &str) -> Option<Response> {
        let Some(token) = self.token.as_deref() else {
            return Some(closed());
        };
        let Some(session) = self.session(headers) else {
            return Some(Redirect::to("/console/login").into_response());
        };
        if !same(given, &csrf(token, &session)) {
            return Some((StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response());
        }
        None
    }
}

#[derive(Deserialize)]
struct ReplayForm {
    csrf: String,
    event: String,
}

async fn replay(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<ReplayForm>,
) -> Response {
    if let Some(refused) = console.refuse_post(&headers, &form.csrf) {
        return refused;
    }
    let notice = match console.pipeline.replay(&form.event).await {
        Ok(None) => format!("{} is not a failed or dead-lettered event.", form.event),
        Ok(Some(Ok(Outcome::Duplicate { .. }))) => format!("{} was already processed.", form.event),
        Ok(Some(Ok(Outcome::Rejected { reason, .. }))) => {
            format!("{} cannot be processed: {reason}", form.event)
        }
        Ok(Some(Ok(Outcome::Accepted {
            ignored, effects, ..
        }))) => format!(
            "{} replayed: {}, {} effect{}.",
            form.event,
            if ignored { "ignored" } else { "processed" },
            effects.len(),
            if effects.len() == 1 { "" } else { "s" }
        ),
        Ok(Some(Err(e))) => format!("{} failed again: {}", form.event, describe(&e)),
        Err(e) => format!("reading {}: {e:#}", form.event),
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", &notice)
        .finish();
    Redirect::to(&format!("/console?{query}")).into_response()
}

fn describe(e: &DeliveryError) -> String {
    match e {
        DeliveryError::Rejected(r) => crate::pipeline::describe_rejection(r),
        DeliveryError::Refused { reason, .. } | DeliveryError::Failed { reason, .. } => {
            reason.clone()
        }
    }
}

#[derive(Deserialize, Default)]
struct Filter {
    /// Only deliveries with this status.
    status: Option<String>,
    /// Only deliveries of this type.
    r#type: Option<String>,
    /// What the last action did.
    notice: Option<String>,
}

async fn page(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Response {
    let Some(token) = console.token.as_deref() else {
        return closed();
    };
    let Some(session) = console.session(&headers) else {
        return Redirect::to("/console/login").into_response();
    };
    let csrf = csrf(token, &session);
    match gather(&console.pipeline, &filter).await {
        Ok(view) => Html(render(&view, &filter, &csrf).into_string()).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(
                layout(
                    "Unavailable",
                    html! { p.error { "The database did not answer: " (format!("{e:#}")) } },
                )
                .into_string(),
            ),
        )
            .into_response(),
    }
}

/// What the page shows.
struct View {
    now: i64,
    per_minute: Vec<(i64, String, i64)>,
    deliveries: Vec<EventRecord>,
    failed: Vec<EventRecord>,
    effects: Vec<StoredEffect>,
    /// Connected account → tenant.
    registry: BTreeMap<String, String>,
    /// Tenant → currency → account → display amount.
    balances: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

async fn gather(pipeline: &Pipeline, filter: &Filter) -> anyhow::Result<View> {
    let db = pipeline.db();
    let now = crate::clock::unix_now();
    let pick = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
    let (status, kind) = (pick(&filter.status), pick(&filter.r#type));
    let per_minute = db.deliveries_per_minute(now - CHART_MINUTES * 60).await?;
    let deliveries = db
        .recent_events(status.as_deref(), kind.as_deref(), ROWS)
        .await?;
    let mut failed = db.recent_events(Some("dead"), None, ROWS).await?;
    failed.extend(db.recent_events(Some("failed"), None, ROWS).await?);
    let last = db.outbox_len().await?;
    let mut effects = db.effects_after((last - ROWS).max(0), ROWS).await?;
    effects.reverse();
    let registry: BTreeMap<String, String> = crate::api::tenants::list(db)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_iter()
        .collect();
    let mut balances = BTreeMap::new();
    let tenants: std::collections::BTreeSet<&String> = registry.values().collect();
    for tenant in tenants.into_iter().take(ROWS as usize) {
        let Ok(answer) = crate::api::ledger::balances(pipeline.runtime(), db, tenant).await else {
            continue;
        };
        let by_currency: BTreeMap<String, BTreeMap<String, String>> = answer
            .balances
            .into_iter()
            .map(|(currency, accounts)| {
                let shown = accounts.into_iter().map(|(a, amount)| (a, amount.display));
                (currency, shown.collect())
            })
            .collect();
        balances.insert(tenant.clone(), by_currency);
    }
    Ok(View {
        now,
        per_minute,
        deliveries,
        failed,
        effects,
        registry,
        balances,
    })
}

fn when(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| unix.to_string())
}

fn render(view: &View, filter: &Filter, csrf: &str) -> Markup {
    layout(
        "Console",
        html! {
            header {
                h1 { "psa-billing console" }
                form.inline method="post" action="/console/logout" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Sign out" }
                }
            }
            @if let Some(n) = &filter.notice { p.notice role="status" { (n) } }

            h2 { "Deliveries per minute, last hour" }
            (chart(view))

            h2 #failed { "Failed and dead-lettered" }
            (failed_table(view, csrf))

            h2 #deliveries { "Latest deliveries" }
            (deliveries_table(view, filter))

            h2 #outbox { "Effects outbox (latest)" }
            (outbox_table(view))

            h2 #tenants { "Tenants and connected accounts" }
            (tenants_table(view))
            p { small { "Rendered at " (when(view.now)) " UTC." } }
        },
    )
}

/// The tenant an event's account is registered to ("" when none).
fn tenant_of(view: &View, account: &Option<String>) -> String {
    account
        .as_ref()
        .and_then(|a| view.registry.get(a))
        .cloned()
        .unwrap_or_default()
}

/// Failed and dead-lettered events, each with its Replay button.
fn failed_table(view: &View, csrf: &str) -> Markup {
    html! {
        @if view.failed.is_empty() { p { "None." } } @else {
            table #failed-table {
                tr { th { "event" } th { "type" } th { "tenant" } th { "status" } th { "attempts" } th { "last error" } th {} }
                @for e in &view.failed {
                    tr data-event=(e.id) {
                        td { code { (e.id) } } td { (e.event_type) } td { (tenant_of(view, &e.account)) }
                        td class={ "status-" (e.status) } { (e.status) }
                        td.num { (e.attempts) }
                        td { (e.last_error.clone().unwrap_or_default()) }
                        td {
                            form.inline method="post" action="/console/replay" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="event" value=(e.id);
                                button type="submit" { "Replay" }
                            }
                        }
                    }
                }
            }
    }
    }
}

/// The latest deliveries, with the status and type filter.
fn deliveries_table(view: &View, filter: &Filter) -> Markup {
    let selected = filter.status.clone().unwrap_or_default();
    html! {
        form method="get" action="/console" {
            label { "Status " select name="status" {
                option value="" { "any" }
                @for (s, _) in OUTCOMES { option value=(s) selected[selected == s] { (s) } }
            } }
            " "
            label { "Type " input type="text" name="type" value=(filter.r#type.clone().unwrap_or_default()) placeholder="invoice.paid"; }
            " "
            button type="submit" { "Filter" }
    }
    table #deliveries-table {
        tr { th { "received (UTC)" } th { "event" } th { "type" } th { "tenant" } th { "status" } th { "attempts" } th { "last error" } }
        @for e in &view.deliveries {
            tr data-event=(e.id) {
                td { (when(e.received_at)) } td { code { (e.id) } } td { (e.event_type) }
                td { (tenant_of(view, &e.account)) }
                td class={ "status-" (e.status) } { (e.status) }
                td.num { (e.attempts) }
                td { (e.last_error.clone().unwrap_or_default()) }
            }
        }
    }
    }
}

/// The last effects of the outbox.
fn outbox_table(view: &View) -> Markup {
    html! {
        table #outbox-table {
            tr { th { "seq" } th { "kind" } th { "tenant" } th { "event" } th { "committed (UTC)" } }
            @for f in &view.effects {
                tr {
                    td.num { (f.seq) } td { (f.kind) }
                    td { (f.effect["tenant"].as_str().unwrap_or("")) }
                    td { code { (f.event_id) } } td { (when(f.created_at)) }
                }
            }
    }
    }
}

/// Tenants with their connected accounts and ledger balances.
fn tenants_table(view: &View) -> Markup {
    let mut by_tenant: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (account, tenant) in &view.registry {
        by_tenant.entry(tenant).or_default().push(account);
    }
    html! {
        table #tenants-table {
            tr { th { "tenant" } th { "connected accounts" } th { "balances" } }
            @for (tenant, accounts) in &by_tenant {
                tr {
                    td { (tenant) }
                    td { @for a in accounts { code { (a) } " " } }
                    td {
                        @if let Some(currencies) = view.balances.get(*tenant) {
                            @for (currency, accounts) in currencies {
                                div { strong { (currency.to_uppercase()) } " "
                                    @for (account, amount) in accounts { (account) ": " (amount) "; " }
                                }
                            }
                        }
                    }
                }
            }
    }
    }
}

/// Deliveries per minute, stacked by outcome, as plain SVG.
fn chart(view: &View) -> Markup {
    const W: i64 = 720;
    const H: i64 = 140;
    let start = (view.now / 60 - CHART_MINUTES + 1) * 60;
    let mut counts: BTreeMap<i64, BTreeMap<&str, i64>> = BTreeMap::new();
    for (minute, status, n) in &view.per_minute {
        if let Some((s, _)) = OUTCOMES.iter().find(|(s, _)| s == status) {
            *counts.entry(*minute).or_default().entry(s).or_default() += n;
        }
    }
    let peak = counts
        .values()
        .map(|m| m.values().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let bar = W / CHART_MINUTES;
    let mut bars = String::new();
    for i in 0..CHART_MINUTES {
        let minute = start + i * 60;
        let mut y = H;
        for (status, color) in OUTCOMES {
            let n = counts
                .get(&minute)
                .and_then(|m| m.get(status))
                .copied()
                .unwrap_or(0);
            if n == 0 {
                continue;
            }
            let h = (n * (H - 10) / peak).max(1);
            y -= h;
            let _ = write!(
                bars,
                r#"<rect x="{}" y="{y}" width="{}" height="{h}" fill="{color}"><title>{} {status}: {n}</title></rect>"#,
                i * bar,
                bar - 1,
                when(minute)
            );
        }
    }
    let total: i64 = counts.values().flat_map(|m| m.values()).sum();
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(W) height=(H + 16) viewBox={ "0 0 " (W) " " (H + 16) } role="img"
            aria-label={ (total) " deliveries in the last hour" } {
            rect x="0" y="0" width=(W) height=(H) fill="#f7fafc" {}
            (maud::PreEscaped(bars))
            text x="0" y=(H + 12) font-size="10" { (when(start)) }
            text x=(W) y=(H + 12) font-size="10" text-anchor="end" { "now · peak " (peak) "/min" }
        }
        p.legend {
            @for (status, color) in OUTCOMES {
                span { span.swatch style={ "background:" (color) } {} (status) }
            }
        }
    }
}
