//! Storage in a real database: the event log, the plugin's state and the
//! effects outbox. SQLite (bundled, WAL) is the embedded default; PostgreSQL
//! lets several host processes share one database.
//!
//! One event is one transaction: the event record, the plugin's staged state
//! writes and the effects commit together or not at all. Commits serialise:
//! SQLite has one writer, and on PostgreSQL every commit first takes one
//! transaction-scoped advisory lock. The plugin's work (the expensive part)
//! runs outside, in parallel; the optimistic version check then needs no
//! row locks, and outbox sequence numbers are handed out in commit order
//! without gaps, so a reader following `seq` never skips an effect.
//!
//! The SQL is written once, with `$N` parameters (both databases accept
//! them), and run on either pool by the `on_pool!` macro.

use crate::capabilities::StagedState;
use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// A plugin state key: (collection, key).
pub type StateKey = (String, String);

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Clone)]
pub struct Db {
    pool: Pool,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to whichever pool the database uses: the
/// same code, compiled once per backend.
macro_rules! on_pool {
    ($db:expr, |$p:ident| $body:expr) => {
        match &$db.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// On PostgreSQL, waits for the commit lock inside transaction `$tx`
/// (released when it ends); SQLite's writer lock does the same job.
macro_rules! lock_commits {
    ($db:expr, $tx:ident) => {
        if matches!($db.pool, Pool::Postgres(_)) {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(COMMIT_LOCK)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// Applies staged writes in transaction `$tx` if nothing the plugin read
/// has changed since; `false` (nothing written) when something did. Commits
/// are serialised, so checking then writing is safe without row locks.
macro_rules! apply_state {
    ($tx:ident, $staged:expr, $now:expr) => {{
        let mut unchanged = true;
        for (key, version) in &$staged.reads {
            let current: Option<i64> = sqlx::query_scalar(
                "SELECT version FROM plugin_state WHERE collection = $1 AND key = $2",
            )
            .bind(&key.0)
            .bind(&key.1)
            .fetch_optional(&mut *$tx)
            .await?;
            if current != *version {
                unchanged = false;
                break;
            }
        }
        if unchanged {
            for (key, value) in &$staged.writes {
                match value {
                    Some(v) => {
                        sqlx::query(
                            "INSERT INTO plugin_state (collection, key, value, version, updated_at) VALUES ($1, $2, $3, 1, $4)
                             ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value,
                                 version = plugin_state.version + 1, updated_at = excluded.updated_at",
                        )
                        .bind(&key.0)
                        .bind(&key.1)
                        .bind(v)
                        .bind($now)
                        .execute(&mut *$tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM plugin_state WHERE collection = $1 AND key = $2")
                            .bind(&key.0)
                            .bind(&key.1)
                            .execute(&mut *$tx)
                            .await?;
                    }
                }
            }
        }
        unchanged
    }};
}

/// An [`EventRecord`] from a row whose first eight columns are id, type,
/// account, created, status, attempts, last_error, received_at.
macro_rules! event_record {
    ($r:ident) => {
        EventRecord {
            id: $r.get(0),
            event_type: $r.get(1),
            account: $r.get(2),
            created: $r.get(3),
            status: $r.get(4),
            attempts: $r.get(5),
            last_error: $r.get(6),
            received_at: $r.get(7),
        }
    };
}

/// The key of the advisory lock that serialises commits on PostgreSQL.
const COMMIT_LOCK: i64 = 0x0050_5341_4249_4c4c; // "PSABILL"

/// The event fields the log keeps.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub id: String,
    pub event_type: String,
    pub account: Option<String>,
    pub created: i64,
    pub livemode: bool,
}

/// How failed events are retried by the host (besides Stripe's own
/// redeliveries): exponential back-off, then the dead-letter list.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before an event is dead-lettered, the first included.
    pub max_attempts: i64,
    /// Delay after the first failure; doubled after each.
    pub base: std::time::Duration,
    /// Longest delay between attempts.
    pub cap: std::time::Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base: std::time::Duration::from_secs(30),
            cap: std::time::Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` failures; `None`: dead-letter it.
    pub fn delay_after(&self, attempts: i64) -> Option<std::time::Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let doublings = (attempts - 1).clamp(0, 20) as u32;
        Some(self.base.saturating_mul(1 << doublings).min(self.cap))
    }
}

/// One effect ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEffect {
    pub kind: String,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// The event was already processed (another delivery won): nothing applied.
    Duplicate,
    /// State the plugin read changed before the commit: handle the event again.
    Conflict,
}

/// An effect as the application reads it from the outbox.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredEffect {
    pub seq: i64,
    pub event_id: String,
    pub kind: String,
    pub effect: serde_json::Value,
    pub created_at: i64,
}

/// An event log row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventRecord {
    pub id: String,
    pub event_type: String,
    pub account: Option<String>,
    pub created: i64,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub received_at: i64,
}

impl Db {
    /// Opens (creating if needed) the database at `url` and runs migrations.
    /// Accepts `sqlite://path`, `sqlite:path`, `sqlite::memory:` and
    /// `postgres://user@host:port/db` (`?options=-c search_path=...` for a schema).
    pub async fn open(url: &str) -> Result<Db> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::open_postgres(url).await;
        }
        if !url.starts_with("sqlite:") {
            anyhow::bail!(
                "unsupported database URL {url:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE"
            );
        }
        // `?synchronous=normal` trades power-loss durability (a crash of the
        // process still loses nothing) for fewer fsyncs.
        let (url, synchronous) = match url.split_once("?synchronous=") {
            Some((base, "normal" | "NORMAL")) => (base, SqliteSynchronous::Normal),
            Some((base, "full" | "FULL")) => (base, SqliteSynchronous::Full),
            Some((_, other)) => anyhow::bail!("synchronous={other}: use normal or full"),
            None => (url, SqliteSynchronous::Full),
        };
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("bad database URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL (default): a 2xx means the event survives a power loss, not just a crash.
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let in_memory = url.contains(":memory:");
        let pool = SqlitePoolOptions::new()
            // An in-memory database exists per connection: keep exactly one.
            .max_connections(if in_memory { 1 } else { 8 })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(3600))
            })
            .connect_with(options)
            .await
            .with_context(|| format!("opening {url}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("running database migrations")?;
        Ok(Db {
            pool: Pool::Sqlite(pool),
        })
    }

    async fn open_postgres(url: &str) -> Result<Db> {
        let options =
            PgConnectOptions::from_str(url).with_context(|| format!("bad database URL {url:?}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to {}", redact(url)))?;
        // Several processes may start at once: one migrates, the others wait.
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(COMMIT_LOCK)
            .execute(&mut *conn)
            .await?;
        let migrated = sqlx::migrate!("./migrations/postgres").run(&pool).await;
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(COMMIT_LOCK)
            .execute(&mut *conn)
            .await?;
        migrated.context("running database migrations")?;
        Ok(Db {
            pool: Pool::Postgres(pool),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    pub async fn read_state(&self, key: &StateKey) -> Result<Option<(String, i64)>> {
        let row = on_pool!(self, |p| sqlx::query(
            "SELECT value, version FROM plugin_state WHERE collection = $1 AND key = $2"
        )
        .bind(&key.0)
        .bind(&key.1)
        .fetch_optional(p)
        .await?
        .map(|r| (r.get(0), r.get(1))));
        Ok(row)
    }

    /// Every key and value of one plugin state collection, by key.
    pub async fn state_entries(&self, collection: &str) -> Result<Vec<(String, String)>> {
        Ok(on_pool!(self, |p| sqlx::query(
            "SELECT key, value FROM plugin_state WHERE collection = $1 ORDER BY key"
        )
        .bind(collection)
        .fetch_all(p)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()))
    }

    /// The status of an event already in the log.
    pub async fn event_status(&self, id: &str) -> Result<Option<String>> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT status FROM events WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await?))
    }

    /// Commits an event, its state writes and its effects in one transaction.
    pub async fn commit(
        &self,
        event: &EventMeta,
        payload: &[u8],
        staged: &StagedState,
        effects: &[NewEffect],
        status: &str,
    ) -> Result<CommitOutcome> {
        let now = unix_now();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            lock_commits!(self, tx);
            // SQLite: a write first, so that it takes the write lock at once
            // (waiting on the busy timeout) instead of failing to upgrade a
            // read snapshot.
            let claimed = sqlx::query(
                "INSERT INTO events (id, type, account, created, livemode, received_at, status, attempts, payload, processed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = events.attempts + 1,
                     last_error = NULL, processed_at = excluded.processed_at
                 WHERE events.status NOT IN ('processed', 'ignored')",
            )
            .bind(&event.id)
            .bind(&event.event_type)
            .bind(&event.account)
            .bind(event.created)
            .bind(event.livemode)
            .bind(now)
            .bind(status)
            .bind(payload)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if claimed == 0 {
                tx.rollback().await?;
                return Ok(CommitOutcome::Duplicate);
            }
            if !apply_state!(tx, staged, now) {
                tx.rollback().await?;
                return Ok(CommitOutcome::Conflict);
            }
            // Commits are serialised, so the next numbers are ours alone.
            let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM effects")
                .fetch_one(&mut *tx)
                .await?;
            for (seq, effect) in (last + 1..).zip(effects) {
                sqlx::query(
                    "INSERT INTO effects (seq, event_id, kind, body, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(seq)
                .bind(&event.id)
                .bind(&effect.kind)
                .bind(effect.body.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(CommitOutcome::Committed)
        })
    }

    /// Commits the plugin's staged state on its own (a ledger posting made
    /// through the API rather than by an event), under the same optimistic
    /// check as an event: `Conflict` means handle it again.
    pub async fn commit_state(&self, staged: &StagedState) -> Result<CommitOutcome> {
        let now = unix_now();
        match &self.pool {
            // IMMEDIATE: take the write lock at once (see `commit`).
            Pool::Sqlite(p) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                let applied = apply_state!(tx, staged, now);
                finish(tx, applied).await
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                lock_commits!(self, tx);
                let applied = apply_state!(tx, staged, now);
                finish(tx, applied).await
            }
        }
    }

    /// Records a failed attempt (nothing else of it is kept) so that an
    /// operator sees it and a retry starts from a clean slate. Schedules the
    /// next host-side attempt by `policy`, or moves the event to the
    /// dead-letter list (`dead`) when its attempts are used up. Returns the
    /// attempts so far.
    pub async fn record_failure(
        &self,
        event: &EventMeta,
        payload: &[u8],
        error: &str,
        policy: &RetryPolicy,
    ) -> Result<i64> {
        let now = unix_now();
        let attempts: Option<i64> = on_pool!(self, |p| {
            sqlx::query_scalar(
            "INSERT INTO events (id, type, account, created, livemode, received_at, status, attempts, last_error, payload)
             VALUES ($1, $2, $3, $4, $5, $6, 'failed', 1, $7, $8)
             ON CONFLICT (id) DO UPDATE SET attempts = events.attempts + 1, last_error = excluded.last_error
             WHERE events.status NOT IN ('processed', 'ignored')
             RETURNING attempts",
        )
        .bind(&event.id)
        .bind(&event.event_type)
        .bind(&event.account)
        .bind(event.created)
        .bind(event.livemode)
        .bind(now)
        .bind(error)
        .bind(payload)
        .fetch_optional(p)
        .await?
        });
        // Processed meanwhile (a concurrent delivery won): nothing to schedule.
        let Some(attempts) = attempts else {
            return Ok(0);
        };
        let (status, retry_at) = match policy.delay_after(attempts) {
            Some(delay) => ("failed", Some(now + delay.as_secs() as i64)),
            None => ("dead", None),
        };
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE events SET status = $2, retry_at = $3
                 WHERE id = $1 AND status NOT IN ('processed', 'ignored')",
            )
            .bind(&event.id)
            .bind(status)
            .bind(retry_at)
            .execute(p)
            .await
            .map(drop)?
        });
        Ok(attempts)
    }

    /// Failed events whose next attempt is due, oldest first: id and payload.
    pub async fn due_retries(&self, now: i64, limit: i64) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, payload FROM events WHERE status = 'failed' AND retry_at <= $1
                 ORDER BY retry_at LIMIT $2",
            )
            .bind(now)
            .bind(limit)
            .fetch_all(p)
            .await?
        }))
    }

    /// The dead-letter list: events whose attempts are used up, with their payloads.
    pub async fn dead_letters(&self) -> Result<Vec<(EventRecord, Vec<u8>)>> {
        Ok(on_pool!(self, |p| {
            sqlx::query(
                "SELECT id, type, account, created, status, attempts, last_error, received_at, payload
                 FROM events WHERE status = 'dead' ORDER BY received_at, id",
            )
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| {
                (event_record!(r), r.get(8))
            })
            .collect()
        }))
    }

    /// Effects with a sequence number above `after`, in order.
    pub async fn effects_after(&self, after: i64, limit: i64) -> Result<Vec<StoredEffect>> {
        let rows: Vec<(i64, String, String, String, i64)> = on_pool!(self, |p| {
            sqlx::query(
            "SELECT seq, event_id, kind, body, created_at FROM effects WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(p)
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
        });
        rows.into_iter()
            .map(|(seq, event_id, kind, body, created_at)| {
                Ok(StoredEffect {
                    seq,
                    event_id,
                    kind,
                    effect: serde_json::from_str(&body).context("effect body is not JSON")?,
                    created_at,
                })
            })
            .collect()
    }

    pub async fn event(&self, id: &str) -> Result<Option<EventRecord>> {
        Ok(on_pool!(self, |p| {
            sqlx::query(
            "SELECT id, type, account, created, status, attempts, last_error, received_at FROM events WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(p)
        .await?
        .map(|r| event_record!(r))
        }))
    }

    /// How many effects the outbox holds: its last sequence number, since
    /// numbers are gapless (an index lookup, not a count).
    pub async fn outbox_len(&self) -> Result<i64> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM effects"
        )
        .fetch_one(p)
        .await?))
    }

    /// Counts of the three tables, for tests and health checks.
    pub async fn counts(&self) -> Result<(i64, i64, i64)> {
        Ok(on_pool!(self, |p| {
            let r = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM plugin_state), (SELECT COUNT(*) FROM effects)",
            )
            .fetch_one(p)
            .await?;
            (r.get(0), r.get(1), r.get(2))
        }))
    }

    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }
}

async fn finish<DB: sqlx::Database>(
    tx: sqlx::Transaction<'_, DB>,
    applied: bool,
) -> Result<CommitOutcome> {
    if applied {
        tx.commit().await?;
        Ok(CommitOutcome::Committed)
    } else {
        tx.rollback().await?;
        Ok(CommitOutcome::Conflict)
    }
}

/// Redacts the password of a database URL for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..scheme + 3 + colon], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}
