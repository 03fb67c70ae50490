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
//! `group_sql`, the statements; `records`, the rows it takes and gives
//! (events, effects, jobs, commit outcomes); `rounds`, the one
//! read-handle-commit loop; `log`, failure records, retries, dead letters,
//! jobs and the outbox read; `lease`, the one process that runs a
//! singleton job; `sqlite/`, the SQLite file's own paths.
//!
//! Knows nothing about WIT, the plugin, Stripe or HTTP: state is keys and
//! strings, effects are kinds and JSON.

mod decide;
mod group_sql;
mod lease;
mod records;
mod rounds;
pub(crate) mod sqlite;
mod staged;

pub use lease::Lease;
pub use rounds::{Attempt, Round, Settled, Then, Write, until_committed};

use crate::clock::unix_now;
use decide::{
    Decided, GroupStats, MAX_GROUP, Pending, Reply, Version, decide, group_effects, group_ids,
    group_keys,
};
use group_sql::{KEYS_PER_STATEMENT, ROWS_PER_STATEMENT, key_matches, pow2_chunks, upsert_rows};

use anyhow::{Context, Result};
pub use records::{
    CommitOutcome, EventMeta, EventRecord, JOB_PREFIX, NewEffect, NewJob, StoredEffect,
};
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

mod committer;
mod log;

use committer::{commit_one, finish, run_committer};

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

    /// Waits for the committer to finish and closes the connections.
    pub async fn close(&self) {
        on_pool!(self.pool, |p| p.close().await)
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
