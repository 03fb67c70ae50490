//! The outbox relay: every committed effect published to NATS JetStream,
//! at least once and in outbox order, for applications that consume
//! effects from a broker rather than from `GET /v1/effects`.
//!
//! - Each effect goes to `<prefix>.<kind>` (`psa-billing.effects.payment.succeeded`)
//!   as the JSON `GET /v1/effects` answers, with `Nats-Msg-Id` set to its
//!   outbox sequence number, so that JetStream drops a second copy within
//!   its duplicate window (two minutes by default).
//! - The relay's cursor is stored in the database (`job_cursors`, as the
//!   settlement jobs' is) and moved only past effects whose publication
//!   JetStream acknowledged: a crash or a NATS outage re-publishes from the
//!   cursor, and the message ids make those copies harmless.
//! - With several processes on one PostgreSQL database, one relays at a
//!   time: the holder of the relay's lease (`storage::Lease`); the others
//!   ask for it every second and one takes over when the holder dies.
//! - A stream covering `<prefix>.>` is created (named after the prefix) if
//!   none exists; one the operator created with other settings is used as
//!   it is.
//!
//! Knows nothing about HTTP, the plugin or how effects are made.

use crate::backoff::{Backoff, Jitter};
use crate::storage::{Db, StoredEffect};
use anyhow::{Context, Result};
use async_nats::jetstream;
use std::time::Duration;

/// Effects read from the outbox and published at a time.
const BATCH: i64 = 256;
/// How often an idle relay looks for new effects, and a process without
/// the lease asks for it.
const POLL: Duration = Duration::from_millis(200);
const LEASE_POLL: Duration = Duration::from_secs(1);

/// Where and under which subjects effects are published.
#[derive(Debug, Clone)]
pub struct NatsRelay {
    /// The NATS server (`nats://127.0.0.1:4222`).
    pub url: String,
    /// Subjects are `<prefix>.<kind>` (default `psa-billing.effects`).
    pub subject_prefix: String,
}

/// The subject prefix `serve --publish` uses unless told otherwise.
pub const DEFAULT_SUBJECT_PREFIX: &str = "psa-billing.effects";

impl NatsRelay {
    /// The name of the relay's cursor and lease: one per subject prefix,
    /// so two relays of one database to two prefixes keep their own.
    fn job_name(&self) -> String {
        format!("nats:{}", self.subject_prefix)
    }

    /// The stream created when none covers the prefix's subjects:
    /// `psa-billing.effects` → `PSA_BILLING_EFFECTS`.
    fn stream_name(&self) -> String {
        self.subject_prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Checks the prefix: NATS subject tokens, no wildcards or spaces.
    pub fn validate(&self) -> Result<()> {
        let ok = !self.subject_prefix.is_empty()
            && self.subject_prefix.split('.').all(|t| {
                !t.is_empty()
                    && t.bytes()
                        .all(|b| b.is_ascii_graphic() && !matches!(b, b'*' | b'>'))
            });
        anyhow::ensure!(
            ok,
            "subject prefix {:?}: dot-separated tokens without spaces, * or >",
            self.subject_prefix
        );
        Ok(())
    }

    /// Runs the relay until the task is aborted: waits for the lease,
    /// connects, publishes from the cursor; on any failure logs it, waits
    /// and carries on from the cursor.
    pub async fn run(self, db: Db) {
        let name = self.job_name();
        let mut failures = 0u32;
        loop {
            let lease = match db.lease(&name).await {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    tokio::time::sleep(LEASE_POLL).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "NATS relay: asking for the lease");
                    tokio::time::sleep(LEASE_POLL).await;
                    continue;
                }
            };
            tracing::info!(url = %self.url, prefix = %self.subject_prefix, "NATS relay: this process relays the outbox");
            match self.relay(&db, lease, &mut failures).await {
                Ok(()) => tracing::warn!("NATS relay: lost the lease; another process relays"),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %format!("{e:#}"), "NATS relay failed; trying again from its cursor");
                    tokio::time::sleep(RETRY_BACKOFF.delay(failures)).await;
                }
            }
        }
    }

    /// Publishes while the lease is held (`Ok`: it was lost).
    async fn relay(
        &self,
        db: &Db,
        mut lease: crate::storage::Lease,
        failures: &mut u32,
    ) -> Result<()> {
        let client = async_nats::ConnectOptions::new()
            .name("psa-billing relay")
            .connection_timeout(Duration::from_secs(5))
            .connect(self.url.as_str())
            .await
            .with_context(|| format!("connecting to {}", self.url))?;
        let js = jetstream::new(client);
        self.ensure_stream(&js).await;
        let name = self.job_name();
        // Read once per lease: while it is held no other process moves it.
        let mut cursor = db.job_cursor(&name).await?;
        loop {
            if !lease.held().await {
                return Ok(());
            }
            let batch = db.effects_after(cursor, BATCH).await?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            self.publish(&js, &batch).await?;
            // Acknowledged, every one: the cursor moves past them.
            db.queue_jobs(&name, last, &[]).await?;
            cursor = last;
            *failures = 0;
            tracing::debug!(effects = batch.len(), up_to = last, "NATS relay: published");
        }
    }

    /// Publishes `batch` (sent together, then each acknowledgment awaited
    /// in order); the first failure fails the batch.
    async fn publish(&self, js: &jetstream::Context, batch: &[StoredEffect]) -> Result<()> {
        let mut acks = Vec::with_capacity(batch.len());
        for effect in batch {
            let payload = serde_json::to_vec(effect).expect("an effect serializes");
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id(effect.seq.to_string());
            let subject = format!("{}.{}", self.subject_prefix, effect.kind);
            let ack = js
                .send_publish(subject, message)
                .await
                .with_context(|| format!("publishing effect {}", effect.seq))?;
            acks.push((effect.seq, ack));
        }
        for (seq, ack) in acks {
            ack.await
                .with_context(|| format!("JetStream did not acknowledge effect {seq}"))?;
        }
        Ok(())
    }

    /// Creates the prefix's stream unless one already takes its subjects.
    async fn ensure_stream(&self, js: &jetstream::Context) {
        let probe = format!("{}.payment.succeeded", self.subject_prefix);
        if js.stream_by_subject(probe).await.is_ok() {
            return;
        }
        let config = jetstream::stream::Config {
            name: self.stream_name(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            ..Default::default()
        };
        if let Err(e) = js.get_or_create_stream(config).await {
            // Publishing says whether some stream takes the subjects.
            tracing::warn!(error = %e, "NATS relay: creating the stream");
        }
    }
}

/// The wait after failures in a row: half a second, doubling, at most
/// 30 s, drawn from its upper half so that processes that failed together
/// do not retry together.
const RETRY_BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(500),
    max: Duration::from_secs(30),
    jitter: Jitter::UpperHalf,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(prefix: &str) -> NatsRelay {
        NatsRelay {
            url: "nats://127.0.0.1:4222".into(),
            subject_prefix: prefix.into(),
        }
    }

    #[test]
    fn retries_back_off_up_to_half_a_minute() {
        assert!((250..=500).contains(&RETRY_BACKOFF.delay(0).as_millis()));
        assert!((500..=1000).contains(&RETRY_BACKOFF.delay(1).as_millis()));
        assert!((15_000..=30_000).contains(&RETRY_BACKOFF.delay(40).as_millis()));
    }

    #[test]
    fn prefixes_are_checked_and_name_their_stream() {
        assert_eq!(
            relay(DEFAULT_SUBJECT_PREFIX).stream_name(),
            "PSA_BILLING_EFFECTS"
        );
        assert!(relay("acme.billing").validate().is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a"] {
            assert!(relay(bad).validate().is_err(), "{bad:?} is refused");
        }
    }
}
