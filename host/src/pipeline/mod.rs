//! The flow of one webhook delivery: verify (in the plugin), skip what was
//! already processed, handle (in the plugin, with staged storage), commit the
//! event, state and effects in one transaction.
//!
//! Knows nothing about HTTP (the router maps its outcomes to statuses) or
//! about SQL (storage commits what it is given).

use crate::capabilities::escape_controls;
use crate::metrics::Metrics;
use crate::runtime::{Delivery, Envelope, HandleError, Routing, Runtime, VerifyError};
use crate::storage::{
    Attempt, Db, EventMeta, NewEffect, Round, Settled, StagedState, until_committed,
};
use std::fmt;

pub(crate) mod effects_json;
mod failures;
mod jobs;
mod retry;

use failures::{describe_handle_error, failed};
pub use failures::{describe_rejection, rejection_code};
pub use jobs::{SETTLE_PAYMENT, settle_job_id};
pub use retry::RetryPolicy;

/// Lanes for deliveries handled again after a conflict (see `Lanes`).
const LANES: usize = 64;

/// Locks taken by a delivery that lost a commit race, one per key it
/// contends for (hashed into `LANES`), held until it is done. Deliveries
/// racing for one hot key (a tenant's ledger book, when a burst of its
/// payments arrives at once) then take turns: without them, all but one of
/// every group lost again, and after 16 rounds some gave up with a 5xx
/// (64 payments for one tenant at once on PostgreSQL: 12 refused). A
/// first attempt never waits for a lane, so the common case costs nothing.
/// (Tried and left out: a first attempt that finds a lane of its keys held
/// joins the turns. With one hot tenant it cut re-handled deliveries from
/// about 2,000 to 14 of 3,000, but at c=64 over 50 tenants, where lanes are
/// shared by hashing and its first handling is thrown away, it halved the
/// group commits and took p99 from 22 to 170 ms.)
struct Lanes(Vec<tokio::sync::Mutex<()>>);

impl Lanes {
    fn new() -> Lanes {
        Lanes((0..LANES).map(|_| Default::default()).collect())
    }

    /// Takes the lanes of the keys `staged` read and rewrote (those a
    /// concurrent delivery invalidates), or of every key it read if it
    /// rewrote none; in ascending order, so that deliveries waiting for
    /// overlapping lanes never wait for each other in a cycle.
    async fn take(&self, staged: &StagedState) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let lane = |k| BuildHasherDefault::<DefaultHasher>::default().hash_one(k) as usize % LANES;
        let mut lanes: Vec<usize> = staged
            .reads
            .keys()
            .filter(|k| staged.writes.contains_key(*k))
            .map(lane)
            .collect();
        if lanes.is_empty() {
            lanes = staged.reads.keys().map(lane).collect();
        }
        lanes.sort_unstable();
        lanes.dedup();
        let mut held = Vec::with_capacity(lanes.len());
        for i in lanes {
            held.push(self.0[i].lock().await);
        }
        held
    }
}

/// Most effects one event may produce (the catalog's mappers emit one to a
/// few); more is a misbehaving plugin, and the event fails.
pub const MAX_EFFECTS_PER_EVENT: usize = 100;
/// Most bytes of effect JSON one event may produce.
pub const MAX_EFFECT_BYTES: usize = 256 * 1024;

/// What became of a delivery that was not refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Applied now; `ignored` when its only effect is `event.ignored`.
    Accepted {
        /// The event's id.
        event_id: String,
        /// The effects committed with it, in order.
        effects: Vec<NewEffect>,
        /// Whether its only effect is `event.ignored` (a type with no effect by design).
        ignored: bool,
    },
    /// Already processed earlier: acknowledged, nothing applied.
    Duplicate {
        /// The event's id.
        event_id: String,
    },
    /// Its content can never be processed (malformed, a field missing or
    /// out of range): acknowledged so that Stripe stops retrying, nothing
    /// applied, and dead-lettered at once with the reason.
    Rejected {
        /// The event's id.
        event_id: String,
        /// Why it cannot be processed.
        reason: String,
    },
}

/// Why a delivery was refused or failed.
#[derive(Debug)]
pub enum DeliveryError {
    /// Not a valid Stripe delivery: answer 400 with the reason.
    Rejected(VerifyError),
    /// Signed, but this deployment does not take it (an event of the mode,
    /// live or test, it does not run in): answer 400, keep nothing.
    Refused {
        /// The event's id.
        event_id: String,
        /// A stable code for it (`livemode_mismatch`...).
        code: &'static str,
        /// A sentence for the operator.
        reason: String,
    },
    /// Valid, but processing failed: rolled back and recorded; answer 5xx.
    Failed {
        /// The event's id, when the body got that far.
        event_id: Option<String>,
        /// A sentence for the operator.
        reason: String,
    },
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Rejected(e) => f.write_str(&describe_rejection(e)),
            DeliveryError::Refused { reason, .. } => f.write_str(reason),
            DeliveryError::Failed { reason, .. } => write!(f, "processing failed: {reason}"),
        }
    }
}

/// Processes deliveries against one runtime and one database.
#[derive(Clone)]
pub struct Pipeline {
    runtime: Runtime,
    db: Db,
    secrets: Vec<String>,
    /// Secrets of the thin-event endpoint (a separate Stripe destination).
    thin_secrets: Vec<String>,
    tolerance_seconds: u32,
    routing: Routing,
    api_version: Option<ApiVersion>,
    /// The only mode (`true`: live) taken; `None`: both.
    livemode: Option<bool>,
    metrics: std::sync::Arc<Metrics>,
    retry: RetryPolicy,
    lanes: std::sync::Arc<Lanes>,
    /// Set once the service begins to shut down: long-lived answers (the
    /// effects stream) end so that shutdown does not wait on them.
    closing: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

/// The Stripe API version the deployment expects its events in.
#[derive(Debug, Clone)]
struct ApiVersion {
    version: String,
    /// Refuse (and keep for retry) rather than warn.
    strict: bool,
}

impl Pipeline {
    /// A pipeline over `runtime` and `db`, taking deliveries signed with one of `secrets` within `tolerance_seconds`.
    pub fn new(runtime: Runtime, db: Db, secrets: Vec<String>, tolerance_seconds: u32) -> Self {
        Pipeline {
            runtime,
            db,
            secrets,
            thin_secrets: vec![],
            tolerance_seconds,
            routing: Routing {
                tenant_keys: vec![],
                reference_keys: vec![],
                license_prices: vec![],
            },
            api_version: None,
            livemode: None,
            metrics: Default::default(),
            retry: RetryPolicy::default(),
            lanes: std::sync::Arc::new(Lanes::new()),
            closing: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Ends the long-lived answers (effects streams) of every clone of this
    /// pipeline: `Billing::serve` calls it when shutdown begins; an
    /// application serving `Billing::router` itself calls it at its own.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Changes to `true` once [`Pipeline::close_streams`] was called.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// How failed events are retried before they are dead-lettered.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Reprocesses the failed events whose next attempt is due (from their
    /// stored payloads, verified when they arrived); returns how many were
    /// tried. `serve` calls it every few seconds.
    pub async fn retry_due(&self) -> anyhow::Result<usize> {
        let due = self.db.due_retries(crate::clock::unix_now(), 64).await?;
        for (id, payload) in &due {
            if id.starts_with(crate::storage::JOB_PREFIX) {
                // Logged and recorded by the job itself.
                let _ = self.run_job(id, payload).await;
                continue;
            }
            match self.receive_unsigned(payload).await {
                Ok(_) => tracing::info!(event = %escape_controls(id), "retried event processed"),
                Err(e) => {
                    tracing::warn!(event = %escape_controls(id), error = %e, "retried event failed again")
                }
            }
        }
        Ok(due.len())
    }

    /// Reprocesses every dead-lettered event; the outcome of each.
    pub async fn replay_dead_letters(
        &self,
    ) -> anyhow::Result<Vec<(String, Result<Outcome, DeliveryError>)>> {
        let mut outcomes = Vec::new();
        for (record, payload) in self.db.dead_letters().await? {
            let outcome = self.redo(&record.id, &payload).await;
            outcomes.push((record.id, outcome));
        }
        Ok(outcomes)
    }

    /// Reprocesses one failed or dead-lettered event (or job) now, from
    /// its stored payload; `None` when there is no such event or it is
    /// not failed or dead (a processed event is never applied twice).
    pub async fn replay(&self, id: &str) -> anyhow::Result<Option<Result<Outcome, DeliveryError>>> {
        let Some(record) = self.db.event(id).await? else {
            return Ok(None);
        };
        if record.status != "failed" && record.status != "dead" {
            return Ok(None);
        }
        let Some(payload) = self.db.event_payload(id).await? else {
            return Ok(None);
        };
        Ok(Some(self.redo(id, &payload).await))
    }

    async fn redo(&self, id: &str, payload: &[u8]) -> Result<Outcome, DeliveryError> {
        if id.starts_with(crate::storage::JOB_PREFIX) {
            match self.run_job(id, payload).await {
                Ok(effects) => Ok(Outcome::Accepted {
                    event_id: id.to_string(),
                    effects,
                    ignored: false,
                }),
                Err(reason) => Err(failed(Some(id.to_string()), reason)),
            }
        } else {
            self.receive_unsigned(payload).await
        }
    }

    /// What this pipeline has done, for `GET /metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Metadata keys naming the tenant and the application's reference,
    /// first present wins; empty lists keep the plugin's defaults
    /// (`tenant_id`; `reference`, `invoice_id`).
    pub fn with_routing(mut self, tenant_keys: Vec<String>, reference_keys: Vec<String>) -> Self {
        self.routing.tenant_keys = tenant_keys;
        self.routing.reference_keys = reference_keys;
        self
    }

    /// The prices whose subscription items are licenses (seed 004): the
    /// license count adds up those items alone. Empty: every item counts.
    pub fn with_license_prices(mut self, prices: Vec<String>) -> Self {
        self.routing.license_prices = prices;
        self
    }

    /// The API version events should carry (the endpoint's, in Stripe's
    /// dashboard). A mismatch is logged; with `strict` the event is refused
    /// with a 5xx, recorded as failed, so Stripe keeps retrying until the
    /// configuration is fixed and nothing is lost.
    pub fn with_api_version(mut self, version: String, strict: bool) -> Self {
        self.api_version = Some(ApiVersion { version, strict });
        self
    }

    /// Takes only live events (`Some(true)`) or only test events
    /// (`Some(false)`); the others are answered 400 and not kept. Stripe
    /// signs each endpoint's events with that endpoint's secret, so a
    /// deployment configured with one mode's secrets sees the other mode's
    /// events only through a configuration mistake; this makes the mistake
    /// loud. `None` (the default) takes both, as a sandbox setup wants.
    pub fn with_livemode(mut self, livemode: Option<bool>) -> Self {
        self.livemode = livemode;
        self
    }

    /// Endpoint secrets of the thin-event destination.
    pub fn with_thin_secrets(mut self, secrets: Vec<String>) -> Self {
        self.thin_secrets = secrets;
        self
    }

    /// The database it commits to.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The plugin runtime it calls.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn delivery(&self, body: &[u8], signature: Option<&str>, secrets: &[String]) -> Delivery {
        Delivery {
            body: body.to_vec(),
            signature_header: signature.map(str::to_string),
            secrets: secrets.to_vec(),
            tolerance_seconds: self.tolerance_seconds,
        }
    }

    /// A signed delivery from Stripe.
    pub async fn receive(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Outcome, DeliveryError> {
        let delivery = self.delivery(body, signature, &self.secrets);
        let started = std::time::Instant::now();
        let verified = self.runtime.verify(delivery).await;
        self.metrics.plugin_call(started.elapsed());
        let envelope = match verified {
            Ok(Ok(env)) => env,
            Ok(Err(e)) => return Err(DeliveryError::Rejected(e)),
            Err(e) => return Err(failed(None, e.to_string())),
        };
        self.process(envelope, body).await
    }

    /// A signed thin (v2) notification: verified, its event and related
    /// object fetched through the Stripe capability, then processed as a
    /// snapshot event. Stripe failures answer 5xx, so Stripe redelivers.
    pub async fn receive_thin(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Outcome, DeliveryError> {
        let delivery = self.delivery(body, signature, &self.thin_secrets);
        let thin = match self.runtime.verify_thin(delivery).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(DeliveryError::Rejected(e)),
            Err(e) => return Err(failed(None, e.to_string())),
        };
        let id = thin.id.clone();
        let db_failed = |e: anyhow::Error| failed(Some(id.clone()), format!("database: {e:#}"));
        // Seen before: no need to ask Stripe again.
        if let Some(s) = self.db.event_status(&thin.id).await.map_err(db_failed)?
            && (s == "processed" || s == "ignored")
        {
            return Ok(Outcome::Duplicate { event_id: thin.id });
        }
        let Some(stripe) = self.runtime.stripe_api() else {
            return Err(failed(
                Some(thin.id),
                "thin events are fetched from Stripe: configure STRIPE_SECRET_KEY".into(),
            ));
        };
        let fetch_failed = |what: &str, e: crate::runtime::StripeError| {
            failed(
                Some(thin.id.clone()),
                format!("fetching {what}: {}", crate::stripe::describe_stripe(&e)),
            )
        };
        let event = stripe
            .retrieve_thin_event(&thin.id)
            .await
            .map_err(|e| fetch_failed("the event", e))?;
        let related = match &thin.related_url {
            Some(url) if thin.event_type.starts_with("v1.") => Some(
                stripe
                    .retrieve_related(url, thin.context.as_deref())
                    .await
                    .map_err(|e| fetch_failed("its related object", e))?,
            ),
            _ => None,
        };
        let snapshot = match self
            .runtime
            .snapshot_from_thin(event.into_bytes(), related.map(String::into_bytes))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(failed(Some(thin.id), describe_rejection(&e))),
            Err(e) => return Err(failed(Some(thin.id), e.to_string())),
        };
        self.receive_unsigned(&snapshot).await
    }

    /// An unsigned event (fixture replay): parsed, then processed as usual.
    pub async fn receive_unsigned(&self, body: &[u8]) -> Result<Outcome, DeliveryError> {
        let envelope = match self.runtime.parse(body).await {
            Ok(Ok(env)) => env,
            Ok(Err(e)) => return Err(DeliveryError::Rejected(e)),
            Err(e) => return Err(failed(None, e.to_string())),
        };
        self.process(envelope, body).await
    }

    /// Processes one event inside a `delivery` span: every log line about
    /// it (the plugin's included) carries the event id, type, account and,
    /// once known, the tenant.
    async fn process(&self, envelope: Envelope, body: &[u8]) -> Result<Outcome, DeliveryError> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "delivery",
            event = %escape_controls(&envelope.id),
            r#type = %escape_controls(&envelope.event_type),
            account = %escape_controls(envelope.account.as_deref().unwrap_or("-")),
            tenant = tracing::field::Empty,
        );
        let outcome = self
            .process_in_span(envelope, body)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        match &outcome {
            Ok(Outcome::Accepted {
                effects, ignored, ..
            }) => {
                let status = if *ignored { "ignored" } else { "accepted" };
                tracing::info!(status, effects = effects.len(), "delivery processed");
            }
            Ok(Outcome::Duplicate { .. }) => tracing::info!("duplicate delivery acknowledged"),
            Ok(Outcome::Rejected { .. }) | Err(_) => {} // logged where it was refused
        }
        outcome
    }

    async fn process_in_span(
        &self,
        envelope: Envelope,
        body: &[u8],
    ) -> Result<Outcome, DeliveryError> {
        if let Some(wanted) = self.livemode
            && envelope.livemode != wanted
        {
            let mode = |live| if live { "live" } else { "test" };
            let reason = format!(
                "a {} mode event at an endpoint that takes {} mode events only",
                mode(envelope.livemode),
                mode(wanted)
            );
            tracing::warn!(%reason, "delivery refused");
            return Err(DeliveryError::Refused {
                event_id: envelope.id,
                code: "livemode_mismatch",
                reason,
            });
        }
        let api_version = envelope.api_version;
        let event = EventMeta {
            id: envelope.id,
            event_type: envelope.event_type,
            account: envelope.account,
            created: envelope.created,
            livemode: envelope.livemode,
        };
        // No look-up of the event first: the commit refuses an event already
        // processed (`Duplicate`), and so does recording a failure, so a
        // redelivery is answered as a duplicate either way. That saves a
        // read for every new delivery, at the price of handling a duplicate
        // again (rare: Stripe's redeliveries) before its commit says so.
        if let Some(expected) = &self.api_version
            && api_version.as_deref() != Some(expected.version.as_str())
        {
            let got = api_version.as_deref().unwrap_or("none");
            let reason = format!(
                "api_version {got} differs from the configured {}",
                expected.version
            );
            if expected.strict {
                return self
                    .fail(&event, body, format!("{reason} (strict mode)"))
                    .await;
            }
            tracing::warn!(event = %escape_controls(&event.id), %reason, "handling it anyway: fields may have moved");
        }
        self.handle_and_commit(event, body).await
    }

    /// Handles a delivery and commits its state, effects and row, redone on
    /// fresh reads when a concurrent delivery changed what it read.
    async fn handle_and_commit(
        &self,
        event: EventMeta,
        body: &[u8],
    ) -> Result<Outcome, DeliveryError> {
        // The first retry has its lanes: those it raced with take turns, no
        // need to wait. Later ones lost to first attempts (and wait).
        let lanes = tokio::sync::Mutex::new(Vec::new());
        let settled = until_committed(
            &self.db,
            &event.id,
            Some((&event, body)),
            |attempt: Attempt| {
                let lanes = &lanes;
                async move {
                    if let Some(lost) = &attempt.lost_to {
                        self.metrics.conflict();
                        let mut lanes = lanes.lock().await;
                        if lanes.is_empty() {
                            *lanes = self.lanes.take(lost).await;
                        }
                    }
                    self.handle_round(body, attempt.staged).await
                }
            },
        )
        .await;
        drop(lanes);
        match settled {
            Ok(Settled::Done(ignored, effects)) => Ok(Outcome::Accepted {
                event_id: event.id,
                effects,
                ignored,
            }),
            Ok(Settled::Duplicate) => {
                self.compare_duplicate(&event.id, body).await;
                Ok(Outcome::Duplicate { event_id: event.id })
            }
            Ok(Settled::Exhausted) => {
                self.metrics.conflict();
                let reason = "state kept changing under concurrent deliveries";
                self.fail(&event, body, reason.into()).await
            }
            Ok(Settled::Failed(e)) => self.fail(&event, body, format!("database: {e:#}")).await,
            Err(Unhandled::Failed(reason)) => self.fail(&event, body, reason).await,
            Err(Unhandled::Rejected(reason)) => self.reject(&event, body, reason).await,
        }
    }

    /// One round of a delivery: the plugin handles it on `staged`, and the
    /// effects it returned are checked against the limits. Answers whether
    /// the event was ignored.
    async fn handle_round(
        &self,
        body: &[u8],
        staged: StagedState,
    ) -> Result<Round<bool>, Unhandled> {
        let started = std::time::Instant::now();
        let handled = self.runtime.handle(body, &self.routing, staged).await;
        self.metrics.plugin_call(started.elapsed());
        let (handled, staged) = handled.map_err(|e| Unhandled::Failed(e.to_string()))?;
        let effects: Vec<NewEffect> = match handled {
            Ok(effects) if effects.len() > MAX_EFFECTS_PER_EVENT => {
                return Err(Unhandled::Failed(format!(
                    "the plugin returned {} effects; at most {MAX_EFFECTS_PER_EVENT} are accepted",
                    effects.len()
                )));
            }
            Ok(effects) => effects.iter().map(effects_json::to_json).collect(),
            Err(e @ (HandleError::MalformedPayload(_) | HandleError::MissingField(_))) => {
                return Err(Unhandled::Rejected(describe_handle_error(&e)));
            }
            Err(e) => return Err(Unhandled::Failed(describe_handle_error(&e))),
        };
        let bytes: usize = effects.iter().map(|e| e.body.to_string().len()).sum();
        if bytes > MAX_EFFECT_BYTES {
            return Err(Unhandled::Failed(format!(
                "the plugin returned {bytes} bytes of effects; at most {MAX_EFFECT_BYTES} are accepted"
            )));
        }
        if let Some(tenant) = effects
            .iter()
            .find_map(|e| e.body.get("tenant").and_then(serde_json::Value::as_str))
        {
            tracing::Span::current().record("tenant", escape_controls(tenant).as_ref());
        }
        let ignored = !effects.is_empty() && effects.iter().all(|e| e.kind == "event.ignored");
        let status = if ignored { "ignored" } else { "processed" };
        Ok(Round::row(staged, status, effects, ignored))
    }
}

/// Why a delivery's round ended without a commit.
enum Unhandled {
    /// Recorded as failed, to be retried.
    Failed(String),
    /// Refused for good: rejected and dead-lettered at once.
    Rejected(String),
}
