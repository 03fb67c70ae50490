//! Storage in a real database: the event log, the plugin's state and the
//! effects outbox. SQLite (bundled, WAL) is the embedded default.
//!
//! One event is one transaction: the event record, the plugin's staged state
//! writes and the effects commit together or not at all.

use crate::capabilities::StagedState;
use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
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
    pool: SqlitePool,
}

/// The event fields the log keeps.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub id: String,
    pub event_type: String,
    pub account: Option<String>,
    pub created: i64,
    pub livemode: bool,
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
    /// Accepts `sqlite://path`, `sqlite:path` and `sqlite::memory:`.
    pub async fn open(url: &str) -> Result<Db> {
        if !url.starts_with("sqlite:") {
            anyhow::bail!(
                "unsupported database URL {url:?}: this build supports sqlite://PATH (PostgreSQL comes with the multi-process deployment)"
            );
        }
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("bad database URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a 2xx means the event survives a power loss, not just a crash.
            .synchronous(SqliteSynchronous::Full)
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
        Ok(Db { pool })
    }

    pub async fn read_state(&self, key: &StateKey) -> Result<Option<(String, i64)>> {
        let row =
            sqlx::query("SELECT value, version FROM plugin_state WHERE collection = ? AND key = ?")
                .bind(&key.0)
                .bind(&key.1)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// The status of an event already in the log.
    /// Every key and value of one plugin state collection, by key.
    pub async fn state_entries(&self, collection: &str) -> Result<Vec<(String, String)>> {
        let rows =
            sqlx::query("SELECT key, value FROM plugin_state WHERE collection = ? ORDER BY key")
                .bind(collection)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn event_status(&self, id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT status FROM events WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
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
        let mut tx = self.pool.begin().await?;
        // A write first, so that SQLite takes the write lock at once (waiting
        // on the busy timeout) instead of failing to upgrade a read snapshot.
        let claimed = sqlx::query(
            "INSERT INTO events (id, type, account, created, livemode, received_at, status, attempts, payload, processed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
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
        if !apply_state(&mut tx, staged, now).await? {
            tx.rollback().await?;
            return Ok(CommitOutcome::Conflict);
        }
        for effect in effects {
            sqlx::query(
                "INSERT INTO effects (event_id, kind, body, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(&event.id)
            .bind(&effect.kind)
            .bind(effect.body.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(CommitOutcome::Committed)
    }

    /// Commits the plugin's staged state on its own (a ledger posting made
    /// through the API rather than by an event), under the same optimistic
    /// check as an event: `Conflict` means handle it again.
    pub async fn commit_state(&self, staged: &StagedState) -> Result<CommitOutcome> {
        // IMMEDIATE: take the write lock at once (see `commit`).
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if !apply_state(&mut tx, staged, unix_now()).await? {
            tx.rollback().await?;
            return Ok(CommitOutcome::Conflict);
        }
        tx.commit().await?;
        Ok(CommitOutcome::Committed)
    }

    /// Records a failed attempt (nothing else of it is kept) so that an
    /// operator sees it and Stripe's retry starts from a clean slate.
    pub async fn record_failure(
        &self,
        event: &EventMeta,
        payload: &[u8],
        error: &str,
    ) -> Result<()> {
        let now = unix_now();
        sqlx::query(
            "INSERT INTO events (id, type, account, created, livemode, received_at, status, attempts, last_error, payload)
             VALUES (?, ?, ?, ?, ?, ?, 'failed', 1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET attempts = events.attempts + 1, last_error = excluded.last_error
             WHERE events.status NOT IN ('processed', 'ignored')",
        )
        .bind(&event.id)
        .bind(&event.event_type)
        .bind(&event.account)
        .bind(event.created)
        .bind(event.livemode)
        .bind(now)
        .bind(error)
        .bind(payload)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Effects with a sequence number above `after`, in order.
    pub async fn effects_after(&self, after: i64, limit: i64) -> Result<Vec<StoredEffect>> {
        let rows = sqlx::query(
            "SELECT seq, event_id, kind, body, created_at FROM effects WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let body: String = r.get(3);
                Ok(StoredEffect {
                    seq: r.get(0),
                    event_id: r.get(1),
                    kind: r.get(2),
                    effect: serde_json::from_str(&body).context("effect body is not JSON")?,
                    created_at: r.get(4),
                })
            })
            .collect()
    }

    pub async fn event(&self, id: &str) -> Result<Option<EventRecord>> {
        let row = sqlx::query(
            "SELECT id, type, account, created, status, attempts, last_error, received_at FROM events WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| EventRecord {
            id: r.get(0),
            event_type: r.get(1),
            account: r.get(2),
            created: r.get(3),
            status: r.get(4),
            attempts: r.get(5),
            last_error: r.get(6),
            received_at: r.get(7),
        }))
    }

    /// Counts of the three tables, for tests and health checks.
    pub async fn counts(&self) -> Result<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM plugin_state), (SELECT COUNT(*) FROM effects)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.get(0), row.get(1), row.get(2)))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Applies staged writes if nothing the plugin read has changed since;
/// `false` (nothing written) when something did.
async fn apply_state(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    staged: &StagedState,
    now: i64,
) -> Result<bool> {
    for (key, version) in &staged.reads {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM plugin_state WHERE collection = ? AND key = ?")
                .bind(&key.0)
                .bind(&key.1)
                .fetch_optional(&mut **tx)
                .await?;
        if current != *version {
            return Ok(false);
        }
    }
    for (key, value) in &staged.writes {
        match value {
            Some(v) => {
                sqlx::query(
                        "INSERT INTO plugin_state (collection, key, value, version, updated_at) VALUES (?, ?, ?, 1, ?)
                         ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value,
                             version = plugin_state.version + 1, updated_at = excluded.updated_at",
                    )
                    .bind(&key.0)
                    .bind(&key.1)
                    .bind(v)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM plugin_state WHERE collection = ? AND key = ?")
                    .bind(&key.0)
                    .bind(&key.1)
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(true)
}
