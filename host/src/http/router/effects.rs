//! The effects outbox over HTTP: `GET /v1/effects` (a page after a
//! sequence number) and `GET /v1/effects/stream` (Server-Sent Events,
//! woken by this process's commits, capped and with a lifetime).
//!
//! Knows nothing about how effects are made: it reads the outbox.

use super::*;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EffectsQuery {
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
pub(super) async fn effects(
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
pub(super) struct StreamQuery {
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
pub(super) async fn effects_stream(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    use axum::response::sse::{KeepAlive, Sse};
    let Ok(Query(q)) = query else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "after must be an integer",
        );
    };
    let last_id = match last_event_id(&headers) {
        Ok(id) => id,
        Err(refused) => return *refused,
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
    let start = Cursor {
        after,
        page: Default::default(),
        db: app.pipeline.db().clone(),
        closing: app.pipeline.closing(),
        ends: tokio::time::Instant::now() + app.stream_lifetime,
        _slot: permit,
    };
    let stream = futures_util::stream::unfold(start, |mut c| async move {
        let event = c.next_event().await?;
        Some((Ok::<_, std::convert::Infallible>(event), c))
    });
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(STREAM_KEEP_ALIVE)
                .text("keep-alive"),
        )
        .into_response()
}

/// The `Last-Event-ID` a reconnecting client sends, or the 400 refusing it.
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, Box<Response>> {
    let refused =
        |reason: &str| Box::new(error(StatusCode::BAD_REQUEST, "bad_last_event_id", reason));
    match headers.get("last-event-id").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) => v
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| refused("Last-Event-ID must be an effect's sequence number")),
        Some(Err(_)) => Err(refused("Last-Event-ID is not text")),
    }
}

/// Where one effects stream stands in the outbox.
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

impl Cursor {
    /// The next effect as an SSE event, waiting for one to be committed;
    /// `None` when the stream ends (its lifetime is over, or shutdown).
    async fn next_event(&mut self) -> Option<axum::response::sse::Event> {
        use axum::response::sse::Event;
        loop {
            if *self.closing.borrow() || tokio::time::Instant::now() >= self.ends {
                return None;
            }
            if let Some(effect) = self.page.pop_front() {
                debug_assert!(effect.seq > self.after, "the outbox is read in order");
                self.after = effect.seq;
                return Some(
                    Event::default()
                        .id(effect.seq.to_string())
                        .event(effect.kind.clone())
                        .json_data(&effect)
                        .unwrap_or_else(|_| Event::default().comment("unserialisable effect")),
                );
            }
            // Registered before the read: a commit in between still wakes it.
            let db = self.db.clone();
            let added = db.effects_added();
            tokio::pin!(added);
            added.as_mut().enable();
            match self.db.effects_after(self.after, 100).await {
                Ok(page) if !page.is_empty() => {
                    self.page.extend(page);
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
                _ = tokio::time::sleep_until(self.ends) => return None,
                // Closing, or the pipeline gone: either way the next turn ends.
                changed = self.closing.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}
