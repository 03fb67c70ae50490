//! Storage in a real database: the event log, the plugin's state and the
//! effects outbox. SQLite (bundled, WAL) is the embedded default; PostgreSQL
//! lets several host processes share one database.
//!
//! One event is atomic: the event record, the plugin's staged state writes
//! and the effects commit together or not at all. Deliveries share commits
//! (group commit): a committer task takes every delivery waiting, decides
//! each one's outcome (committed, duplicate, conflict) as if it committed
//! alone, writes the whole group with a few statements per table in one
//! transaction and answers them after the COMMIT, so a 2xx still means
//! durably stored while one fsync serves many. A group the database refuses
//! is committed again one delivery at a time, so that only the delivery at
//! fault fails.
//! On a SQLite file the committer is a thread of its own and the plugin's
//! reads run in place, both on rusqlite (`sqlite`): sqlx would make
//! each statement a round trip to a connection thread.
//! Commits serialise: one committer per process, SQLite has one writer, and
//! on PostgreSQL every commit first takes one transaction-scoped advisory
//! lock. The plugin's work (the expensive part) runs outside, in parallel;
//! the optimistic version check then needs no row locks, and outbox
//! sequence numbers are handed out in commit order without gaps, so a
//! reader following `seq` never skips an effect.
//!
//! The SQL is written once, with `$N` parameters (both databases accept
//! them), and run on either pool by the `on_pool!` macro; the group
//! commit's texts (`group_sql`) and its decision (`decide`) also serve
//! the SQLite commit thread. The files: this one, the [`Db`] handle, its
//! queries on either pool and the sqlx group committer; `staged`, one
//! call's reads and writes; `decide`, the pure commit decision;
//! `group_sql`, the statements; `lease`, the one process that runs a
//! singleton job; `sqlite/`, the SQLite file's own paths.
//!
//! Knows nothing about WIT, the plugin, Stripe or HTTP: state is keys and
//! strings, effects are kinds and JSON.

mod decide;
mod group_sql;
mod lease;
pub(crate) mod sqlite;
mod staged;

pub use lease::Lease;

use crate::clock::unix_now;
use decide::{
    Decided, GroupStats, MAX_GROUP, Pending, Reply, Version, decide, group_effects, group_ids,
    group_keys,
};
use group_sql::{KEYS_PER_STATEMENT, ROWS_PER_STATEMENT, key_matches, pow2_chunks, upsert_rows};

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};
pub use staged::StagedState;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a due retry taken by [`Db::due_retries`] is left to the process
/// that took it before another may take it.
pub const CLAIM_SECONDS: i64 = 120;

/// A plugin state key: (collection, key).
pub type StateKey = (String, String);

/// A handle on the database: cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// Plugin-state reads in place, on a SQLite file (see `sqlite`).
    reads: Option<Arc<crate::storage::sqlite::SqliteReads>>,
    /// Deliveries waiting for the group commit (see [`Db::commit`]).
    committer: Committer,
    groups: Arc<GroupStats>,
    /// Woken after a commit of this process that added effects (readers of
    /// the outbox wait on it; other processes' commits are only polled).
    effects_added: Arc<tokio::sync::Notify>,
}

/// Where deliveries go to be committed.
#[derive(Clone)]
enum Committer {
    /// A task running the group commit on the sqlx pool (PostgreSQL, and
    /// SQLite in memory, which exists only in the pool's one connection).
    Task(tokio::sync::mpsc::Sender<(Pending, Reply)>),
    /// The commit thread of a SQLite file (see `sqlite`).
    Thread(tokio::sync::mpsc::Sender<crate::storage::sqlite::Queued>),
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to whichever pool the database uses: the
/// same code, compiled once per backend.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match &$pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// Begins a writing transaction on `$p` (a pool of `$pool`) that holds the
/// commit lock from its first statement: on SQLite, BEGIN IMMEDIATE takes
/// the writer lock (waiting on the busy timeout) instead of failing later
/// to upgrade a read snapshot; on PostgreSQL, a transaction-scoped advisory
/// lock, released when it ends.
macro_rules! begin_commit {
    ($pool:expr, $p:ident) => {{
        if matches!($pool, Pool::Sqlite(_)) {
            $p.begin_with("BEGIN IMMEDIATE").await?
        } else {
            let mut tx = $p.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(COMMIT_LOCK)
                .execute(&mut *tx)
                .await?;
            tx
        }
    }};
}

/// Applies staged writes in transaction `$tx` if nothing the plugin read
/// has changed since; `false` (nothing written) when something did. Commits
/// are serialised, so checking then writing is safe without row locks. One
/// statement checks every read and one writes every upsert: inside a group
/// commit each statement is time the whole group waits for.
macro_rules! apply_state {
    ($tx:ident, $staged:expr, $now:expr) => {{
        let reads: Vec<(&StateKey, Option<i64>)> =
            $staged.reads.iter().map(|(k, v)| (k, *v)).collect();
        let mut unchanged = true;
        for chunk in reads.chunks(KEYS_PER_STATEMENT) {
            let sql = format!(
                "SELECT collection, key, version FROM plugin_state WHERE {}",
                key_matches(chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (key, _) in chunk {
                query = query.bind(&key.0).bind(&key.1);
            }
            let current: std::collections::HashMap<StateKey, i64> = query
                .fetch_all(&mut *$tx)
                .await?
                .iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect();
            if !chunk.iter().all(|(key, version)| current.get(*key).copied() == *version) {
                unchanged = false;
                break;
            }
        }
        if unchanged {
            let upserts: Vec<(&StateKey, &String)> = $staged
                .writes
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
                .collect();
            for chunk in upserts.chunks(KEYS_PER_STATEMENT) {
                let sql = format!(
                    "INSERT INTO plugin_state (collection, key, value, version, updated_at) VALUES {}
                     ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value,
                         version = plugin_state.version + 1, updated_at = excluded.updated_at",
                    upsert_rows(chunk.len())
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (key, value) in chunk {
                    query = query.bind(&key.0).bind(&key.1).bind(*value).bind($now);
                }
                query.execute(&mut *$tx).await?;
            }
            for (key, value) in &$staged.writes {
                if value.is_none() {
                    sqlx::query("DELETE FROM plugin_state WHERE collection = $1 AND key = $2")
                        .bind(&key.0)
                        .bind(&key.1)
                        .execute(&mut *$tx)
                        .await?;
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

/// The next outbox number, read once per commit: commits are serialised,
/// so the numbers from there on are this transaction's alone.
macro_rules! next_seq {
    ($tx:ident) => {
        sqlx::query_scalar::<_, i64>(group_sql::NEXT_SEQ)
            .fetch_one(&mut *$tx)
            .await?
    };
}

/// The key of the advisory lock that serialises commits on PostgreSQL.
const COMMIT_LOCK: i64 = 0x0050_5341_4249_4c4c; // "PSABILL"

/// The event fields the log keeps.
#[derive(Debug, Clone)]
pub struct EventMeta {
    /// The event's id (`evt_...`).
    pub id: String,
    /// Its type (`payment_intent.succeeded`).
    pub event_type: String,
    /// The connected account it came from, if any.
    pub account: Option<String>,
    /// When Stripe created it (Unix seconds).
    pub created: i64,
    /// Whether it is a live-mode event.
    pub livemode: bool,
}

/// One effect ready for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEffect {
    /// Its kind (`payment.succeeded`).
    pub kind: String,
    /// Its JSON body, as the outbox keeps it.
    pub body: serde_json::Value,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written.
    Committed,
    /// The event was already processed (another delivery won): nothing applied.
    Duplicate,
    /// State the plugin read changed before the commit: handle the event again.
    Conflict,
}

/// A follow-up job to queue (see [`Db::queue_jobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Its id in the events table: [`JOB_PREFIX`] and what it is about.
    pub id: String,
    /// What kind of job it is (`psa_billing.settle_payment`).
    pub job_type: String,
    /// The connected account it concerns, if any.
    pub account: Option<String>,
    /// What the job needs to run, as JSON.
    pub payload: Vec<u8>,
}

/// How a job's id begins; no Stripe event id does (they begin with `evt_`).
pub const JOB_PREFIX: &str = "job:";

/// An effect as the application reads it from the outbox.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct StoredEffect {
    /// Its position in the outbox: gapless, in commit order.
    pub seq: i64,
    /// The event that produced it.
    pub event_id: String,
    /// Its kind (`payment.succeeded`).
    pub kind: String,
    /// Its JSON body: `kind` again, the kind's fields in snake_case
    /// (docs/events.md lists them), `tenant` (`unrouted: true` when no
    /// tenant could be found), and Stripe `metadata` as an object.
    #[schema(value_type = Object)]
    pub effect: serde_json::Value,
    /// When it was committed (Unix seconds).
    pub created_at: i64,
}

/// An event log row.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventRecord {
    /// The event's id.
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// The connected account it came from, if any.
    pub account: Option<String>,
    /// When Stripe created it (Unix seconds).
    pub created: i64,
    /// `processed`, `ignored`, `failed` or `dead`.
    pub status: String,
    /// Attempts so far, the first included.
    pub attempts: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it first arrived (Unix seconds).
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
        let (url, full) = match url.split_once("?synchronous=") {
            Some((base, "normal" | "NORMAL")) => (base, false),
            Some((base, "full" | "FULL")) => (base, true),
            Some((_, other)) => anyhow::bail!("synchronous={other}: use normal or full"),
            None => (url, true),
        };
        let synchronous = if full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
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
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening {url}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("running database migrations")?;
        if in_memory {
            return Ok(Db::with_committer(Pool::Sqlite(pool)));
        }
        let path = options.get_filename();
        let groups = Arc::new(GroupStats::default());
        Ok(Db {
            pool: Pool::Sqlite(pool),
            reads: Some(Arc::new(crate::storage::sqlite::SqliteReads::open(path)?)),
            committer: Committer::Thread(crate::storage::sqlite::spawn_committer(
                path,
                full,
                groups.clone(),
            )?),
            groups,
            effects_added: Arc::default(),
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
        Ok(Db::with_committer(Pool::Postgres(pool)))
    }

    /// Starts the committer task; it ends when the last handle is dropped.
    fn with_committer(pool: Pool) -> Db {
        let (committer, queue) = tokio::sync::mpsc::channel(4 * MAX_GROUP);
        let groups = Arc::new(GroupStats::default());
        tokio::spawn(run_committer(pool.clone(), queue, groups.clone()));
        Db {
            pool,
            reads: None,
            committer: Committer::Task(committer),
            groups,
            effects_added: Arc::default(),
        }
    }

    /// Resolves after this process next commits effects. Create it (and
    /// `enable` it) before reading the outbox, so a commit in between is
    /// not missed.
    pub fn effects_added(&self) -> tokio::sync::futures::Notified<'_> {
        self.effects_added.notified()
    }

    /// Group commits written so far, and the deliveries they carried.
    pub fn group_commits(&self) -> (u64, u64) {
        (
            self.groups.groups.load(Ordering::Relaxed),
            self.groups.deliveries.load(Ordering::Relaxed),
        )
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// The value and version of one plugin state key.
    pub async fn read_state(&self, key: &StateKey) -> Result<Option<(String, i64)>> {
        if let Some(reads) = &self.reads {
            return reads.state(key);
        }
        let row = on_pool!(self.pool, |p| sqlx::query(
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
        Ok(on_pool!(self.pool, |p| sqlx::query(
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
        Ok(on_pool!(self.pool, |p| sqlx::query_scalar(
            "SELECT status FROM events WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await?))
    }

    /// The body an event was stored with (the one processed, or the last
    /// one that failed).
    pub async fn event_payload(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(on_pool!(self.pool, |p| sqlx::query_scalar(
            "SELECT payload FROM events WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await?))
    }

    /// Commits an event, its state writes and its effects atomically, as
    /// part of the next group commit: deliveries that arrive while a commit
    /// is being written share the following one (one fsync for all); each
    /// gets its own outcome, so a duplicate or a conflict in one leaves the
    /// others alone. Returns once the group's COMMIT has returned (and, on
    /// a SQLite file with synchronous=full, its WAL has been fsynced).
    pub async fn commit(
        &self,
        event: &EventMeta,
        payload: &[u8],
        staged: &StagedState,
        effects: &[NewEffect],
        status: &str,
    ) -> Result<CommitOutcome> {
        let pending = Pending::new(event, payload, staged, effects, status);
        let outcome = self.queue(pending, false).await;
        self.announce(effects, &outcome);
        outcome
    }

    /// Wakes the outbox's waiting readers after a commit that added effects.
    fn announce(&self, effects: &[NewEffect], outcome: &Result<CommitOutcome>) {
        if !effects.is_empty() && matches!(outcome, Ok(CommitOutcome::Committed)) {
            self.effects_added.notify_waiters();
        }
    }

    /// Hands `pending` to the committer and waits for its outcome.
    async fn queue(&self, pending: Pending, alone: bool) -> Result<CommitOutcome> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = match &self.committer {
            Committer::Task(queue) => queue.send((pending, reply)).await.is_ok(),
            Committer::Thread(queue) => queue
                .send(crate::storage::sqlite::Queued {
                    pending,
                    reply,
                    alone,
                })
                .await
                .is_ok(),
        };
        anyhow::ensure!(sent, "the committer has stopped");
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the committer has stopped"))?
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// [`Db::commit`] in a transaction of its own, without waiting for a
    /// group: the one-transaction-per-delivery baseline the benchmark
    /// measures group commit against.
    pub async fn commit_alone(
        &self,
        event: &EventMeta,
        payload: &[u8],
        staged: &StagedState,
        effects: &[NewEffect],
        status: &str,
    ) -> Result<CommitOutcome> {
        let pending = Pending::new(event, payload, staged, effects, status);
        let outcome = match self.committer {
            Committer::Task(_) => commit_one(&self.pool, &pending).await,
            Committer::Thread(_) => self.queue(pending, true).await,
        };
        self.announce(effects, &outcome);
        outcome
    }

    /// Commits the plugin's staged state on its own (a ledger posting made
    /// through the API rather than by an event), under the same optimistic
    /// check as an event: `Conflict` means handle it again.
    pub async fn commit_state(&self, staged: &StagedState) -> Result<CommitOutcome> {
        let now = unix_now();
        on_pool!(self.pool, |p| {
            let mut tx = begin_commit!(self.pool, p);
            let applied = apply_state!(tx, staged, now);
            finish(tx, applied).await
        })
    }

    /// Records a failed attempt (nothing else of it is kept) so that an
    /// operator sees it and a retry starts from a clean slate. Schedules the
    /// next host-side attempt after `delay_after(attempts)`, or moves the
    /// event to the dead-letter list (`dead`) when that is `None`. Returns the
    /// attempts so far, or `None` when the event is already processed.
    pub async fn record_failure(
        &self,
        event: &EventMeta,
        payload: &[u8],
        error: &str,
        delay_after: impl Fn(i64) -> Option<Duration>,
    ) -> Result<Option<i64>> {
        let now = unix_now();
        let attempts: Option<i64> = on_pool!(self.pool, |p| {
            sqlx::query_scalar(
            "INSERT INTO events (id, type, account, created, livemode, received_at, status, attempts, last_error, payload)
             VALUES ($1, $2, $3, $4, $5, $6, 'failed', 1, $7, $8)
             ON CONFLICT (id) DO UPDATE SET attempts = events.attempts + 1, last_error = excluded.last_error,
                 type = excluded.type, account = excluded.account, created = excluded.created,
                 livemode = excluded.livemode, payload = excluded.payload
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
        // Processed already (a redelivery) or meanwhile (a concurrent
        // delivery won): nothing to record or schedule.
        let Some(attempts) = attempts else {
            return Ok(None);
        };
        let (status, retry_at) = match delay_after(attempts) {
            Some(delay) => ("failed", Some(now + delay.as_secs() as i64)),
            None => ("dead", None),
        };
        on_pool!(self.pool, |p| {
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
        Ok(Some(attempts))
    }

    /// Failed events and queued jobs whose next attempt is due, oldest
    /// first: id and payload.
    ///
    /// The rows returned are claimed: their `retry_at` moves
    /// [`CLAIM_SECONDS`] ahead, so that another process polling meanwhile
    /// (several `serve` on PostgreSQL) takes other rows, not these; the
    /// attempt's outcome then sets the real next time (or none). A process
    /// that dies mid-attempt leaves them due again once the claim lapses.
    pub async fn due_retries(&self, now: i64, limit: i64) -> Result<Vec<(String, Vec<u8>)>> {
        let claim = now + CLAIM_SECONDS;
        // PostgreSQL skips rows another process is claiming this instant;
        // SQLite has one writer, so the update alone is the claim.
        let skip_locked = match self.pool {
            Pool::Postgres(_) => "FOR UPDATE SKIP LOCKED",
            Pool::Sqlite(_) => "",
        };
        let sql = format!(
            "UPDATE events SET retry_at = $3 WHERE id IN (
                 SELECT id FROM events WHERE status IN ('failed', 'queued') AND retry_at <= $1
                 ORDER BY retry_at LIMIT $2 {skip_locked})
             RETURNING id, payload"
        );
        Ok(on_pool!(self.pool, |p| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(now)
                .bind(limit)
                .bind(claim)
                .fetch_all(p)
                .await?
        }))
    }

    /// How far the job source `name` has read the effects outbox (0: not yet).
    pub async fn job_cursor(&self, name: &str) -> Result<i64> {
        let seq: Option<i64> = on_pool!(self.pool, |p| {
            sqlx::query_scalar("SELECT seq FROM job_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await?
        });
        Ok(seq.unwrap_or(0))
    }

    /// Queues `jobs`, due now, and moves the cursor of the job source `name`
    /// to `seq`, in one transaction: a job is queued once whatever happens
    /// between its effect's commit and this one. A job id queued before is
    /// left as it is; the cursor never moves back (two processes may queue
    /// the same jobs at once).
    pub async fn queue_jobs(&self, name: &str, seq: i64, jobs: &[NewJob]) -> Result<()> {
        let now = unix_now();
        on_pool!(self.pool, |p| {
            let mut tx = begin_commit!(self.pool, p);
            for job in jobs {
                debug_assert!(
                    job.id.starts_with(JOB_PREFIX),
                    "job ids begin with {JOB_PREFIX}"
                );
                sqlx::query(
                    "INSERT INTO events (id, type, account, created, livemode, received_at, status, attempts, payload, retry_at)
                     VALUES ($1, $2, $3, $4, $5, $4, 'queued', 0, $6, $4)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&job.id)
                .bind(&job.job_type)
                .bind(&job.account)
                .bind(now)
                .bind(false)
                .bind(&job.payload)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "INSERT INTO job_cursors (name, seq) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET seq = CASE WHEN excluded.seq > job_cursors.seq
                     THEN excluded.seq ELSE job_cursors.seq END",
            )
            .bind(name)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The dead-letter list: events whose attempts are used up, with their payloads.
    pub async fn dead_letters(&self) -> Result<Vec<(EventRecord, Vec<u8>)>> {
        Ok(on_pool!(self.pool, |p| {
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

    /// The latest deliveries (jobs left out), newest first, optionally only
    /// those with `status` and of `event_type`. Reads the log without an
    /// index on arrival time (one would cost every delivery a write): for
    /// an operator's page, not a hot path.
    pub async fn recent_events(
        &self,
        status: Option<&str>,
        event_type: Option<&str>,
        limit: i64,
    ) -> Result<Vec<EventRecord>> {
        Ok(on_pool!(self.pool, |p| {
            sqlx::query(
                "SELECT id, type, account, created, status, attempts, last_error, received_at FROM events
                 WHERE id NOT LIKE 'job:%' AND ($1 IS NULL OR status = $1) AND ($2 IS NULL OR type = $2)
                 ORDER BY received_at DESC, id DESC LIMIT $3",
            )
            .bind(status)
            .bind(event_type)
            .bind(limit)
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| event_record!(r))
            .collect()
        }))
    }

    /// Deliveries that first arrived at or after `since` (Unix seconds),
    /// counted per minute and status: (minute start, status, count).
    pub async fn deliveries_per_minute(&self, since: i64) -> Result<Vec<(i64, String, i64)>> {
        Ok(on_pool!(self.pool, |p| {
            sqlx::query_as(
                "SELECT (received_at / 60) * 60, status, COUNT(*) FROM events
                 WHERE received_at >= $1 AND id NOT LIKE 'job:%'
                 GROUP BY (received_at / 60) * 60, status ORDER BY 1, 2",
            )
            .bind(since)
            .fetch_all(p)
            .await?
        }))
    }

    /// Effects with a sequence number above `after`, in order.
    pub async fn effects_after(&self, after: i64, limit: i64) -> Result<Vec<StoredEffect>> {
        let rows: Vec<(i64, String, String, String, i64)> = on_pool!(self.pool, |p| {
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

    /// One event's log row.
    pub async fn event(&self, id: &str) -> Result<Option<EventRecord>> {
        Ok(on_pool!(self.pool, |p| {
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
        Ok(on_pool!(self.pool, |p| sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) FROM effects"
        )
        .fetch_one(p)
        .await?))
    }

    /// Counts of the three tables, for tests and health checks.
    pub async fn counts(&self) -> Result<(i64, i64, i64)> {
        Ok(on_pool!(self.pool, |p| {
            let r = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM plugin_state), (SELECT COUNT(*) FROM effects)",
            )
            .fetch_one(p)
            .await?;
            (r.get(0), r.get(1), r.get(2))
        }))
    }

    /// Waits for the committer to finish and closes the connections.
    pub async fn close(&self) {
        on_pool!(self.pool, |p| p.close().await)
    }
}

/// The group committer: takes whatever deliveries are waiting (at least
/// one, at most [`MAX_GROUP`]), writes them in one transaction (see
/// [`commit_group`]), commits, then answers each. No timer: while one group is
/// being fsynced the next one gathers, so groups grow with the load.
async fn run_committer(
    pool: Pool,
    mut queue: tokio::sync::mpsc::Receiver<(Pending, Reply)>,
    stats: Arc<GroupStats>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while queue.recv_many(&mut group, MAX_GROUP).await > 0 {
        let pending: Vec<&Pending> = group.iter().map(|(p, _)| p).collect();
        let outcomes = match commit_group(&pool, &pending).await {
            Ok(outcomes) => {
                stats.groups.fetch_add(1, Ordering::Relaxed);
                outcomes
            }
            Err(e) => {
                // One delivery the database refuses must not fail the others:
                // commit each alone, so that only it gets the error.
                tracing::warn!(deliveries = group.len(), error = %format!("{e:#}"), "group commit failed; committing its deliveries one by one");
                let mut outcomes = Vec::with_capacity(pending.len());
                for p in &pending {
                    outcomes.push(commit_one(&pool, p).await.map_err(|e| format!("{e:#}")));
                }
                stats
                    .groups
                    .fetch_add(pending.len() as u64, Ordering::Relaxed);
                outcomes
            }
        };
        stats
            .deliveries
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        for ((_, reply), outcome) in group.drain(..).zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
}

/// One delivery in a transaction of its own: a group of one, so that it
/// is decided and written exactly as in a group.
async fn commit_one(pool: &Pool, p: &Pending) -> Result<CommitOutcome> {
    let mut outcomes = commit_group(pool, &[p]).await?;
    outcomes.remove(0).map_err(|e| anyhow::anyhow!(e))
}

/// One transaction for the whole `group`, with a few statements per table
/// rather than several per delivery: each statement is a round trip to the
/// database's thread, which made up most of a delivery's cost. The outcome
/// of every delivery is decided before anything is written, from one
/// look-up of the group's event ids (`Duplicate`) and one of every key it
/// reads or writes (`Conflict`), taken in arrival order, so that a delivery
/// sees the writes of those before it exactly as if each had committed
/// alone. Then the event rows, state upserts, deletes and effects of the
/// committed deliveries are written in one statement each (per chunk).
/// `Err` when the transaction failed.
async fn commit_group(
    pool: &Pool,
    group: &[&Pending],
) -> Result<Vec<std::result::Result<CommitOutcome, String>>> {
    let now = unix_now();
    on_pool!(pool, |db| {
        let mut tx = begin_commit!(pool, db);
        let mut next_seq = next_seq!(tx);

        // Events already processed (a redelivery is a duplicate).
        let ids = group_ids(group);
        let mut claimed = std::collections::HashSet::new();
        for chunk in pow2_chunks(&ids, KEYS_PER_STATEMENT) {
            let mut query =
                sqlx::query(sqlx::AssertSqlSafe(group_sql::event_statuses(chunk.len())));
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                let status: String = row.get(1);
                if status == "processed" || status == "ignored" {
                    claimed.insert(row.get::<String, _>(0));
                }
            }
        }

        // The version of every key the group reads or writes.
        let keys = group_keys(group);
        let mut versions: std::collections::HashMap<StateKey, Version> =
            keys.iter().map(|k| ((*k).clone(), None)).collect();
        for chunk in pow2_chunks(&keys, KEYS_PER_STATEMENT) {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(group_sql::versions(chunk.len())));
            for key in chunk {
                query = query.bind(&key.0).bind(&key.1);
            }
            for row in query.fetch_all(&mut *tx).await? {
                versions.insert((row.get(0), row.get(1)), Some(row.get(2)));
            }
        }

        let Decided {
            outcomes,
            committed,
            upserts,
            deletes,
        } = decide(group, claimed, versions);
        for chunk in pow2_chunks(&committed, ROWS_PER_STATEMENT) {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(group_sql::events(chunk.len())));
            for p in chunk {
                query = query
                    .bind(&p.event.id)
                    .bind(&p.event.event_type)
                    .bind(&p.event.account)
                    .bind(p.event.created)
                    .bind(p.event.livemode)
                    .bind(now)
                    .bind(&p.status)
                    .bind(&p.payload)
                    .bind(now);
            }
            let written = query.execute(&mut *tx).await?.rows_affected();
            // The commit lock is held: nothing can have claimed them since.
            anyhow::ensure!(
                written == chunk.len() as u64,
                "{written} of {} event rows written",
                chunk.len()
            );
        }
        for chunk in pow2_chunks(&upserts, KEYS_PER_STATEMENT) {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(group_sql::upserts(chunk.len())));
            for (key, value, version) in chunk {
                query = query
                    .bind(&key.0)
                    .bind(&key.1)
                    .bind(*value)
                    .bind(*version)
                    .bind(now);
            }
            query.execute(&mut *tx).await?;
        }
        for chunk in pow2_chunks(&deletes, KEYS_PER_STATEMENT) {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(group_sql::deletes(chunk.len())));
            for key in chunk {
                query = query.bind(&key.0).bind(&key.1);
            }
            query.execute(&mut *tx).await?;
        }
        let effects = group_effects(&committed);
        for chunk in pow2_chunks(&effects, KEYS_PER_STATEMENT) {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(group_sql::effects(chunk.len())));
            for (event_id, (kind, body)) in chunk {
                query = query
                    .bind(next_seq)
                    .bind(*event_id)
                    .bind(kind)
                    .bind(body)
                    .bind(now);
                next_seq += 1;
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    })
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
