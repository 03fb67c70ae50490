//! The event log's other side: failure records and the retries they
//! schedule (claimed, one process at a time), the dead-letter list, the
//! job queue and its cursors, the outbox read in order, and what the
//! console and the metrics read of the log.
//!
//! Knows nothing about committing a delivery: `mod.rs` and `committer.rs` do.

use super::*;

impl Db {
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
}
