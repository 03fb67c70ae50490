//! What becomes of a delivery that does not go through: the codes and
//! sentences of a refused one, the failure record of one that failed (and
//! may be retried), the dead-letter record of one whose content can never
//! be processed, and a redelivery's body compared with the one processed.
//!
//! Knows nothing about handling a delivery: `mod.rs` calls it.

use super::*;

/// A stable code and a readable reason for a refused delivery.
pub fn rejection_code(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::MissingSignature => "missing_signature",
        VerifyError::MalformedHeader(_) => "malformed_signature_header",
        VerifyError::NoMatchingSignature => "bad_signature",
        VerifyError::TimestampTooOld(_) => "timestamp_too_old",
        VerifyError::TimestampInFuture(_) => "timestamp_in_future",
        VerifyError::NoSecretConfigured => "no_secret_configured",
        VerifyError::MalformedPayload(_) => "malformed_payload",
        VerifyError::MissingField(_) => "missing_field",
    }
}

/// A sentence for a refused delivery (the body of a 400 or 401).
pub fn describe_rejection(e: &VerifyError) -> String {
    match e {
        VerifyError::MissingSignature => "missing Stripe-Signature header".into(),
        VerifyError::MalformedHeader(m) => format!("malformed Stripe-Signature header: {m}"),
        VerifyError::NoMatchingSignature => {
            "no v1 signature matches any configured endpoint secret".into()
        }
        VerifyError::TimestampTooOld(s) => {
            format!("signature timestamp is {s} s old, outside the tolerance")
        }
        VerifyError::TimestampInFuture(s) => {
            format!("signature timestamp is {s} s in the future, outside the tolerance")
        }
        VerifyError::NoSecretConfigured => "no webhook endpoint secret is configured".into(),
        VerifyError::MalformedPayload(m) => format!("malformed event: {m}"),
        VerifyError::MissingField(f) => format!("event field {f:?} is missing or invalid"),
    }
}

pub(super) fn describe_handle_error(e: &HandleError) -> String {
    match e {
        HandleError::MalformedPayload(m) => format!("malformed event: {m}"),
        HandleError::MissingField(f) => format!("required field {f} is missing or invalid"),
        HandleError::Storage(m) => format!("storage failed: {m}"),
        HandleError::NotReady(m) => format!("not ready: {m}"),
    }
}

impl Pipeline {
    /// A redelivery of an event already processed should carry the body
    /// that was processed: Stripe resends an event unchanged. When it does
    /// not, the new body is not applied (the event id is what counts), but
    /// the difference is logged with both digests and counted. Costs a read,
    /// on duplicates only.
    pub(super) async fn compare_duplicate(&self, id: &str, body: &[u8]) {
        use psa_billing_core::state::sha256_hex;
        let stored = match self.db.event_payload(id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "could not read a duplicate's stored body");
                return;
            }
        };
        if stored != body {
            self.metrics.duplicate_mismatch();
            tracing::warn!(
                event = %escape_controls(id),
                processed_sha256 = %sha256_hex(&stored),
                delivered_sha256 = %sha256_hex(body),
                "a duplicate delivery's body differs from the processed one; the processed one stands"
            );
        }
    }

    /// Records the failure (best effort: the database may be what failed)
    /// and answers with it; an event already processed (a redelivery, or a
    /// concurrent delivery that won) is a duplicate instead.
    pub(super) async fn fail(
        &self,
        event: &EventMeta,
        body: &[u8],
        reason: String,
    ) -> Result<Outcome, DeliveryError> {
        let recorded = self
            .db
            .record_failure(event, body, &reason, |n| self.retry.delay_after(n))
            .await;
        if matches!(recorded, Ok(None)) {
            self.compare_duplicate(&event.id, body).await;
            return Ok(Outcome::Duplicate {
                event_id: event.id.clone(),
            });
        }
        tracing::warn!(event = %escape_controls(&event.id), r#type = %escape_controls(&event.event_type), %reason, "event processing failed");
        match recorded {
            Ok(None) => {}
            Ok(Some(attempts)) => {
                let dead = attempts >= self.retry.max_attempts;
                self.metrics.failure(dead);
                if dead {
                    tracing::error!(event = %escape_controls(&event.id), attempts, %reason, "event dead-lettered: replay it with `psa-billing replay --dead-letters`");
                }
            }
            Err(e) => {
                tracing::error!(event = %escape_controls(&event.id), error = %format!("{e:#}"), "could not record the failure")
            }
        }
        Err(failed(Some(event.id.clone()), reason))
    }
}

impl Pipeline {
    /// Dead-letters an event whose content can never be processed, at
    /// once, and answers it as taken: a 5xx would have Stripe retry it for
    /// days (and disable the endpoint) for nothing. Redelivered, it is
    /// rejected again the same way, logged at debug.
    pub(super) async fn reject(
        &self,
        event: &EventMeta,
        body: &[u8],
        reason: String,
    ) -> Result<Outcome, DeliveryError> {
        let recorded = format!("rejected: {reason}");
        match self
            .db
            .record_failure(event, body, &recorded, |_| None)
            .await
        {
            Ok(None) => {
                self.compare_duplicate(&event.id, body).await;
                return Ok(Outcome::Duplicate {
                    event_id: event.id.clone(),
                });
            }
            Ok(Some(1)) => {
                self.metrics.failure(true);
                tracing::warn!(event = %escape_controls(&event.id), r#type = %escape_controls(&event.event_type), %reason, "event rejected and dead-lettered: its content cannot be processed");
            }
            Ok(Some(attempts)) => {
                tracing::debug!(event = %escape_controls(&event.id), attempts, "a rejected event was delivered again")
            }
            // Not recorded: a 5xx, so that Stripe's retry finds it recorded.
            Err(e) => {
                tracing::error!(event = %escape_controls(&event.id), error = %format!("{e:#}"), "could not record the rejection");
                return Err(failed(Some(event.id.clone()), reason));
            }
        }
        Ok(Outcome::Rejected {
            event_id: event.id.clone(),
            reason,
        })
    }
}

pub(super) fn failed(event_id: Option<String>, reason: String) -> DeliveryError {
    DeliveryError::Failed { event_id, reason }
}
