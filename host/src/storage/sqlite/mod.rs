//! The hot paths of a SQLite file without sqlx's connection threads: the
//! plugin's point reads, in place on the calling thread, and the group
//! commit, on a thread of its own.
//!
//! sqlx runs every SQLite connection on a thread of its own, so each query
//! is a round trip between threads: two context switches, and on a busy
//! core up to hundreds of microseconds of waiting to be scheduled, where
//! the work itself takes a few.
//!
//! - Reads (`reads`): a few read-only connections to the same file, each used by one
//!   caller at a time. In WAL mode a reader never waits for the writer, so
//!   a read blocks its thread only for its own few microseconds. A read
//!   sees the last committed state, like any pool read; the commit's
//!   version check catches whatever changes after it.
//! - Commits (this file): one thread owns the writing connection, takes
//!   every delivery waiting, and runs the group commit (the same statements
//!   and the same decisions as the sqlx committer, see `storage::decide`)
//!   straight through: one hand-over per group instead of one per statement.
//! - Checkpoints (`checkpoint`): a third thread copies the WAL back into the database
//!   file (PASSIVE: it never blocks the writer or a reader), so that the
//!   commit thread does not stall a whole group on SQLite's automatic
//!   checkpoint, with its writes and its fsync of the database file.
//!
//! Everything else (migrations, the CLI's queries, failure records) stays
//! on sqlx; SQLite's own locking orders its writes with the committer's.
//!
//! Knows nothing about WIT, the plugin or HTTP.

use super::decide::{
    GroupStats, MAX_GROUP, Pending, Reply, Version, decide, group_effects, group_ids, group_keys,
};
use super::group_sql::{self, KEYS_PER_STATEMENT, ROWS_PER_STATEMENT, pow2_chunks};
use super::{CommitOutcome, StateKey};
use crate::clock::unix_now;
mod checkpoint;
mod reads;

use checkpoint::{GROUPS_PER_CHECKPOINT, finish_checkpoint, spawn_checkpointer};
pub(crate) use reads::SqliteReads;

use anyhow::{Context, Result};
use rusqlite::types::ToSql;
use rusqlite::{Connection, TransactionBehavior, params_from_iter};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// WAL pages at which the commit connection checkpoints by itself: a
/// safety net for when the background thread falls behind, far enough
/// above its interval not to be reached while it keeps up.
const FALLBACK_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Page cache of the commit connection.
const COMMIT_CACHE_KIB: i64 = 16 * 1024;

/// One delivery for the committer thread; `alone` asks for a transaction
/// of its own (the benchmark's one-transaction-per-delivery floor).
pub(crate) struct Queued {
    pub(crate) pending: Pending,
    pub(crate) reply: Reply,
    pub(crate) alone: bool,
}

/// Makes the WAL durable: `fsync` of the file, as SQLite's FULL does after
/// each commit. Replaceable in tests.
pub(crate) type SyncWal = Box<dyn FnMut() -> std::io::Result<()> + Send>;

/// `fsync` of `path`'s WAL, opened afresh each time so that it is the file
/// SQLite writes now, whatever happened to an earlier one.
fn fsync_wal(path: &Path) -> SyncWal {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    Box::new(move || std::fs::File::open(&wal)?.sync_all())
}

/// Starts the thread that commits deliveries on `path`; it ends when every
/// sender of its queue is dropped. `synchronous_full`: a delivery is
/// answered only once its commit is on disk (see `Syncer`).
pub(crate) fn spawn_committer(
    path: &Path,
    synchronous_full: bool,
    stats: Arc<GroupStats>,
) -> Result<tokio::sync::mpsc::Sender<Queued>> {
    let sync = synchronous_full.then(|| fsync_wal(path));
    spawn_committer_syncing(path, sync, stats)
}

/// `spawn_committer`, with `sync` making the WAL durable (`None`:
/// synchronous=NORMAL, answers do not wait for the disk).
pub(crate) fn spawn_committer_syncing(
    path: &Path,
    sync: Option<SyncWal>,
    stats: Arc<GroupStats>,
) -> Result<tokio::sync::mpsc::Sender<Queued>> {
    let mut conn = Connection::open(path)
        .with_context(|| format!("opening {} for commits", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Per connection, as sqlx sets them on its own (journal_mode is the
    // file's). NORMAL even for a durable database: the syncer then does
    // the fsync FULL would do inside COMMIT, off this thread.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", FALLBACK_AUTOCHECKPOINT_PAGES)?;
    // A group's multi-row statements keep statement journals; past 64 KiB
    // SQLite spills them to a temporary file, created and deleted each time.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The B-tree pages a group walks to (event ids and state keys are
    // spread over the whole index): SQLite's default 2 MiB cache keeps
    // re-reading them from the file as the log grows.
    // Negative: a size in KiB rather than in pages.
    conn.pragma_update(None, "cache_size", -COMMIT_CACHE_KIB)?;
    conn.set_prepared_statement_cache_capacity(64);
    let checkpoints = spawn_checkpointer(path)?;
    let answers = match sync {
        Some(sync) => Answers::Synced(Syncer::spawn(sync)?),
        None => Answers::Now,
    };
    let (sender, mut queue) = tokio::sync::mpsc::channel::<Queued>(4 * MAX_GROUP);
    std::thread::Builder::new()
        .name("psa-billing-commit".into())
        .spawn(move || {
            batch_scheduling();
            let mut batch = Vec::with_capacity(MAX_GROUP);
            let mut since_checkpoint = 0u32;
            while let Some(first) = queue.blocking_recv() {
                batch.push(first);
                while batch.len() < MAX_GROUP
                    && let Ok(next) = queue.try_recv()
                {
                    batch.push(next);
                }
                if let Some(refusal) = answers.refusal() {
                    for q in batch.drain(..) {
                        let _ = q.reply.send(Err(refusal.clone()));
                    }
                    continue;
                }
                let (alone, grouped): (Vec<Queued>, Vec<Queued>) =
                    batch.drain(..).partition(|q| q.alone);
                commit_and_answer(&mut conn, grouped, &stats, &answers, || !queue.is_empty());
                for q in alone {
                    // The floor's transaction of its own: synced before the
                    // next one begins, as SQLite's FULL does.
                    let outcome = commit_one(&mut conn, &q.pending);
                    let _ = q.reply.send(answers.sync_now(outcome));
                }
                since_checkpoint += 1;
                // Full: a checkpoint is running, and it will take these too.
                if since_checkpoint >= GROUPS_PER_CHECKPOINT
                    && checkpoints.kick.try_send(()).is_ok()
                {
                    since_checkpoint = 0;
                }
                if checkpoints.caught_up.swap(false, Ordering::AcqRel) {
                    finish_checkpoint(&conn);
                }
            }
        })
        .context("starting the commit thread")?;
    Ok(sender)
}

/// Puts the calling thread under `SCHED_BATCH`: woken, it does not preempt
/// the thread that woke it. On a busy core the tokio worker then goes on
/// handling the deliveries it has ready before the commit thread runs, so
/// a group takes all of them (one transaction, one WAL write of the pages
/// they share) instead of the one or two queued at the moment of the
/// wake-up. With a core to itself the thread runs at once either way.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain system call on the calling thread; `param` outlives it.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "SCHED_BATCH refused");
        }
    }
}

/// One delivery in a transaction of its own.
fn commit_one(conn: &mut Connection, p: &Pending) -> std::result::Result<CommitOutcome, String> {
    match commit_group(conn, &[p]) {
        Ok(mut outcomes) => outcomes.remove(0),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Commits `grouped` as one group (each alone if the database refuses the
/// group, so that only the delivery at fault fails) and answers each.
fn commit_and_answer(
    conn: &mut Connection,
    grouped: Vec<Queued>,
    stats: &GroupStats,
    answers: &Answers,
    more_waiting: impl Fn() -> bool,
) {
    if grouped.is_empty() {
        return;
    }
    let pending: Vec<&Pending> = grouped.iter().map(|q| &q.pending).collect();
    let outcomes = match commit_group(conn, &pending) {
        Ok(outcomes) => {
            stats.groups.fetch_add(1, Ordering::Relaxed);
            outcomes
        }
        Err(e) => {
            tracing::warn!(deliveries = pending.len(), error = %format!("{e:#}"), "group commit failed; committing its deliveries one by one");
            stats
                .groups
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            pending.iter().map(|p| commit_one(conn, p)).collect()
        }
    };
    stats
        .deliveries
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
    answers.send(
        grouped.into_iter().map(|q| q.reply).zip(outcomes).collect(),
        more_waiting(),
    );
}

/// When answers go out.
enum Answers {
    /// At once: synchronous=NORMAL.
    Now,
    /// Once the WAL is on disk.
    Synced(Syncer),
}

impl Answers {
    /// Why nothing more can be committed: an fsync failed.
    fn refusal(&self) -> Option<String> {
        match self {
            Answers::Synced(s) if s.wal.failed.load(Ordering::Acquire) => Some(SYNC_FAILED.into()),
            _ => None,
        }
    }

    /// Answers a group: what it committed (or found committed) after an
    /// fsync, the rest (conflicts, errors) at once. With `more_waiting`
    /// (deliveries queued for the next group) the fsync is the sync
    /// thread's, overlapping that group's commit; otherwise there is
    /// nothing to overlap with, and this thread does it itself rather than
    /// wait for another thread to be scheduled (a lone delivery would pay
    /// for two thread switches).
    fn send(
        &self,
        answered: Vec<(Reply, std::result::Result<CommitOutcome, String>)>,
        more_waiting: bool,
    ) {
        let Answers::Synced(syncer) = self else {
            for (reply, outcome) in answered {
                let _ = reply.send(outcome);
            }
            return;
        };
        let (durable, now): (Vec<_>, Vec<_>) =
            answered.into_iter().partition(|(_, o)| needs_sync(o));
        for (reply, outcome) in now {
            let _ = reply.send(outcome);
        }
        if durable.is_empty() {
            return;
        }
        if !more_waiting {
            let synced = syncer.wal.sync();
            for (reply, outcome) in durable {
                let _ = reply.send(synced.clone().and(outcome));
            }
        } else if syncer.batches.send(durable).is_err() {
            // The syncer ended: it never does while this side lives.
            tracing::error!("the WAL sync thread is gone");
        }
    }

    /// `outcome`, after an fsync on this thread when it needs one.
    fn sync_now(
        &self,
        outcome: std::result::Result<CommitOutcome, String>,
    ) -> std::result::Result<CommitOutcome, String> {
        match self {
            Answers::Synced(syncer) if needs_sync(&outcome) => syncer.wal.sync().and(outcome),
            _ => outcome,
        }
    }
}

/// Whether an answer claims that something is stored: a commit, or a
/// duplicate (whose first commit may be in the group being synced).
fn needs_sync(outcome: &std::result::Result<CommitOutcome, String>) -> bool {
    matches!(
        outcome,
        Ok(CommitOutcome::Committed | CommitOutcome::Duplicate)
    )
}

const SYNC_FAILED: &str = "the database's write-ahead log could not be synced to disk; \
     nothing more is acknowledged until the service is restarted";

/// The durability of synchronous=FULL without its wait. SQLite's FULL
/// fsyncs the WAL inside COMMIT, so the commit thread, which is the only
/// writer, sat idle for every fsync and the next group waited behind it.
/// Here the commit thread commits with NORMAL (the same WAL frames, no
/// fsync) and, when more deliveries are waiting, hands the group's answers
/// to this thread, which fsyncs the WAL and only then answers: a 2xx still
/// means on disk, and the fsync of one group overlaps the next group's
/// commit. One fsync covers every group committed before it began.
struct Syncer {
    batches: std::sync::mpsc::Sender<Vec<(Reply, std::result::Result<CommitOutcome, String>)>>,
    wal: Arc<WalSync>,
}

/// The fsync itself, shared by the commit and the sync threads. After a
/// failed fsync the kernel may have dropped the pages it could not write,
/// so a later success would prove nothing: everything from then on is
/// refused until a restart.
struct WalSync {
    sync: Mutex<SyncWal>,
    failed: AtomicBool,
}

impl WalSync {
    /// An fsync on the calling thread (refused after a failed one).
    fn sync(&self) -> std::result::Result<(), String> {
        if self.failed.load(Ordering::Acquire) {
            return Err(SYNC_FAILED.to_string());
        }
        let mut sync = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        (sync)().map_err(|e| {
            self.failed.store(true, Ordering::Release);
            tracing::error!(error = %e, "fsync of the write-ahead log failed: refusing deliveries until restarted");
            format!("{SYNC_FAILED} ({e})")
        })
    }
}

impl Syncer {
    fn spawn(sync: SyncWal) -> Result<Syncer> {
        let (batches, waiting) =
            std::sync::mpsc::channel::<Vec<(Reply, std::result::Result<CommitOutcome, String>)>>();
        let wal = Arc::new(WalSync {
            sync: Mutex::new(sync),
            failed: AtomicBool::new(false),
        });
        let syncing = wal.clone();
        std::thread::Builder::new()
            .name("psa-billing-sync".into())
            .spawn(move || {
                while let Ok(mut answers) = waiting.recv() {
                    // Everything handed over so far was committed before
                    // this fsync begins: it covers them all.
                    while let Ok(more) = waiting.try_recv() {
                        answers.extend(more);
                    }
                    let synced = syncing.sync();
                    for (reply, outcome) in answers {
                        let _ = reply.send(synced.clone().and(outcome));
                    }
                }
            })
            .context("starting the WAL sync thread")?;
        Ok(Syncer { batches, wal })
    }
}

/// `storage::commit_group` on rusqlite: look-ups, decisions, then a few
/// statements per table, in one IMMEDIATE transaction. `Err`: nothing of
/// the group was written (the transaction rolls back when dropped).
fn commit_group(
    conn: &mut Connection,
    group: &[&Pending],
) -> Result<Vec<std::result::Result<CommitOutcome, String>>> {
    let now = unix_now();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut next_seq: i64 = tx
        .prepare_cached(group_sql::NEXT_SEQ)?
        .query_row([], |r| r.get(0))?;

    let mut claimed = HashSet::new();
    for chunk in pow2_chunks(&group_ids(group), KEYS_PER_STATEMENT) {
        let mut statement = tx.prepare_cached(&group_sql::event_statuses(chunk.len()))?;
        let mut rows = statement.query(params_from_iter(chunk))?;
        while let Some(row) = rows.next()? {
            let status: String = row.get(1)?;
            if status == "processed" || status == "ignored" {
                claimed.insert(row.get::<_, String>(0)?);
            }
        }
    }
    let keys = group_keys(group);
    let mut versions: HashMap<StateKey, Version> =
        keys.iter().map(|k| ((*k).clone(), None)).collect();
    for chunk in pow2_chunks(&keys, KEYS_PER_STATEMENT) {
        let mut statement = tx.prepare_cached(&group_sql::versions(chunk.len()))?;
        let params = chunk.iter().flat_map(|k| [&k.0, &k.1]);
        let mut rows = statement.query(params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            versions.insert((row.get(0)?, row.get(1)?), Some(row.get(2)?));
        }
    }

    let decided = decide(group, claimed, versions);
    for chunk in pow2_chunks(&decided.committed, ROWS_PER_STATEMENT) {
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 9);
        for p in chunk {
            params.extend([
                &p.event.id as &dyn ToSql,
                &p.event.event_type,
                &p.event.account,
                &p.event.created,
                &p.event.livemode,
                &now,
                &p.status,
                &p.payload,
                &now,
            ]);
        }
        let written = tx
            .prepare_cached(&group_sql::events(chunk.len()))?
            .execute(params_from_iter(params))?;
        // The writer lock is held: nothing can have claimed them since.
        anyhow::ensure!(
            written == chunk.len(),
            "{written} of {} event rows written",
            chunk.len()
        );
    }
    for chunk in pow2_chunks(&decided.upserts, KEYS_PER_STATEMENT) {
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 5);
        for (key, value, version) in chunk {
            params.extend([&key.0 as &dyn ToSql, &key.1, *value, version, &now]);
        }
        tx.prepare_cached(&group_sql::upserts(chunk.len()))?
            .execute(params_from_iter(params))?;
    }
    for chunk in pow2_chunks(&decided.deletes, KEYS_PER_STATEMENT) {
        let params = chunk.iter().flat_map(|k| [&k.0, &k.1]);
        tx.prepare_cached(&group_sql::deletes(chunk.len()))?
            .execute(params_from_iter(params))?;
    }
    let effects = group_effects(&decided.committed);
    for chunk in pow2_chunks(&effects, KEYS_PER_STATEMENT) {
        let seqs: Vec<i64> = (next_seq..).take(chunk.len()).collect();
        next_seq += chunk.len() as i64;
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * 5);
        for ((event_id, (kind, body)), seq) in chunk.iter().zip(&seqs) {
            params.extend([seq as &dyn ToSql, event_id, kind, body, &now]);
        }
        tx.prepare_cached(&group_sql::effects(chunk.len()))?
            .execute(params_from_iter(params))?;
    }
    tx.commit()?;
    Ok(decided.outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;
    use std::sync::atomic::AtomicU32;

    fn pending(id: &str) -> Pending {
        let mut p = crate::storage::decide::pending(id, vec![], 0);
        p.writes = vec![(("c".into(), id.into()), Some("v".into()))];
        p
    }

    /// A stand-in fsync that counts its calls and fails while `broken`.
    fn counted_sync() -> (SyncWal, Arc<AtomicU32>, Arc<AtomicBool>) {
        let syncs = Arc::new(AtomicU32::new(0));
        let broken = Arc::new(AtomicBool::new(false));
        let (counted, failing) = (syncs.clone(), broken.clone());
        let sync: SyncWal = Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            if failing.load(Ordering::SeqCst) {
                Err(std::io::Error::other("disk gone"))
            } else {
                Ok(())
            }
        });
        (sync, syncs, broken)
    }

    async fn commit(
        queue: &tokio::sync::mpsc::Sender<Queued>,
        id: &str,
        alone: bool,
    ) -> std::result::Result<CommitOutcome, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = pending(id);
        queue
            .send(Queued {
                pending,
                reply,
                alone,
            })
            .await
            .map_err(|_| "queue closed".to_string())?;
        answer.await.map_err(|_| "no answer".to_string())?
    }

    /// On the commit thread (nothing else waiting), a commit is answered
    /// only after an fsync that began after it, and a duplicate too; a
    /// failed fsync turns every answer from then on into an error, and
    /// nothing more is written.
    #[tokio::test]
    async fn answers_wait_for_the_wal_fsync_and_a_failed_fsync_stops_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.db");
        let db = Db::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let (sync, syncs, broken) = counted_sync();
        let queue =
            spawn_committer_syncing(&path, Some(sync), Arc::new(GroupStats::default())).unwrap();

        assert_eq!(
            commit(&queue, "evt_1", false).await,
            Ok(CommitOutcome::Committed)
        );
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        assert_eq!(
            commit(&queue, "evt_1", false).await,
            Ok(CommitOutcome::Duplicate)
        );
        assert_eq!(syncs.load(Ordering::SeqCst), 2);
        assert_eq!(
            commit(&queue, "evt_2", true).await,
            Ok(CommitOutcome::Committed)
        );
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            3,
            "a commit of its own syncs too"
        );

        broken.store(true, Ordering::SeqCst);
        let refused = commit(&queue, "evt_3", false).await.unwrap_err();
        assert!(
            refused.contains("could not be synced") && refused.contains("disk gone"),
            "{refused}"
        );
        // Written but not acknowledged: Stripe redelivers it, and the
        // restarted service answers it as a duplicate.
        assert_eq!(
            db.event_status("evt_3").await.unwrap().as_deref(),
            Some("processed")
        );

        broken.store(false, Ordering::SeqCst);
        let after = syncs.load(Ordering::SeqCst);
        for (id, alone) in [("evt_4", false), ("evt_5", true)] {
            let refused = commit(&queue, id, alone).await.unwrap_err();
            assert!(refused.contains("restarted"), "{refused}");
            assert_eq!(db.event_status(id).await.unwrap(), None, "{id} was written");
        }
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            after,
            "no fsync after the failure"
        );
    }

    /// Handed over to the sync thread (more deliveries waiting), a group's
    /// commits and duplicates are answered after one fsync, its conflicts
    /// at once; a failed fsync fails them, and the next group too.
    #[tokio::test]
    async fn the_sync_thread_answers_after_its_fsync() {
        let (sync, syncs, broken) = counted_sync();
        let answers = Answers::Synced(Syncer::spawn(sync).unwrap());
        let group = |outcomes: Vec<CommitOutcome>| {
            let (replies, answers): (Vec<_>, Vec<_>) = outcomes
                .into_iter()
                .map(|o| {
                    let (reply, answer) = tokio::sync::oneshot::channel();
                    ((reply, Ok(o)), answer)
                })
                .unzip();
            (replies, answers)
        };
        let (replies, waiting) = group(vec![
            CommitOutcome::Committed,
            CommitOutcome::Conflict,
            CommitOutcome::Duplicate,
        ]);
        answers.send(replies, true);
        let mut got = Vec::new();
        for answer in waiting {
            got.push(answer.await.unwrap());
        }
        assert_eq!(
            got,
            [
                Ok(CommitOutcome::Committed),
                Ok(CommitOutcome::Conflict),
                Ok(CommitOutcome::Duplicate)
            ]
        );
        assert_eq!(syncs.load(Ordering::SeqCst), 1, "one fsync for the group");

        broken.store(true, Ordering::SeqCst);
        for _ in 0..2 {
            let (replies, waiting) = group(vec![CommitOutcome::Committed]);
            answers.send(replies, true);
            for answer in waiting {
                let e = answer.await.unwrap().unwrap_err();
                assert!(e.contains("could not be synced"), "{e}");
            }
        }
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            2,
            "no fsync after the failure"
        );
        assert!(answers.refusal().is_some());
    }

    /// With synchronous=FULL the WAL file is what gets synced: the real
    /// function finds it and succeeds.
    #[tokio::test]
    async fn the_wal_of_a_database_can_be_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let _db = Db::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        fsync_wal(&path)().expect("the -wal file exists and syncs");
        fsync_wal(&dir.path().join("none.db"))().expect_err("no such WAL");
    }
}
