//! The group committer task (PostgreSQL, and SQLite in memory): every
//! waiting delivery in one transaction, decided as if each committed alone,
//! and a group the database refuses redone one delivery at a time.
//!
//! Knows nothing about the SQLite file's own commit thread (`sqlite/`).

use super::*;

/// The group committer: takes whatever deliveries are waiting (at least
/// one, at most [`MAX_GROUP`]), writes them in one transaction (see
/// [`commit_group`]), commits, then answers each. No timer: while one group is
/// being fsynced the next one gathers, so groups grow with the load.
pub(super) async fn run_committer(
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
pub(super) async fn commit_one(pool: &Pool, p: &Pending) -> Result<CommitOutcome> {
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

pub(super) async fn finish<DB: sqlx::Database>(
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
