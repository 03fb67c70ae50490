//! `GET /metrics`: what the host has done, in the Prometheus/OpenMetrics
//! text format (prometheus-client). Deliveries by outcome (and rejection
//! reason), processing and plugin-call latency, and the outbox's length.
//!
//! A leaf: knows nothing about what it counts; the pipeline and the router
//! report to it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Labels of a delivery: its outcome and, for a rejection, the reason code.
type Labels = Vec<(&'static str, &'static str)>;

/// The host's counters and histograms, rendered at `GET /metrics`.
pub struct Metrics {
    registry: Registry,
    deliveries: Family<Labels, Counter>,
    processing: Histogram,
    plugin_calls: Histogram,
    outbox: Gauge,
    retries: Family<Labels, Counter>,
    jobs: Family<Labels, Counter>,
    commit_groups: Counter,
    grouped_deliveries: Counter,
    conflicts: Counter,
    duplicate_mismatches: Counter,
    /// Two scrapes at once must not both add the same difference.
    catch_up: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("psa_billing");
        let deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "deliveries",
            "Webhook deliveries by outcome (accepted, ignored, duplicate, rejected with its reason, failed)",
            deliveries.clone(),
        );
        // 0.1 ms to ~3 s.
        let processing = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "delivery_seconds",
            "Time from a delivery's arrival to its answer",
            processing.clone(),
        );
        let plugin_calls = Histogram::new(exponential_buckets(0.00001, 2.0, 16));
        registry.register(
            "plugin_call_seconds",
            "Time of one call into the billing plugin (verify or handle), storage included",
            plugin_calls.clone(),
        );
        let outbox = Gauge::default();
        registry.register("outbox_effects", "Effects in the outbox", outbox.clone());
        let retries = Family::<Labels, Counter>::default();
        registry.register(
            "event_failures",
            "Failed attempts at an event by what followed: retry_scheduled or dead_lettered",
            retries.clone(),
        );
        let jobs = Family::<Labels, Counter>::default();
        registry.register(
            "jobs",
            "Runs of follow-up jobs (settle_payment) by outcome: done, retry_scheduled or dead_lettered",
            jobs.clone(),
        );
        let commit_groups = Counter::default();
        registry.register(
            "commit_groups",
            "Group commits written (one transaction and fsync each)",
            commit_groups.clone(),
        );
        let grouped_deliveries = Counter::default();
        registry.register(
            "committed_deliveries",
            "Deliveries written by group commits (divided by commit_groups: the mean group size)",
            grouped_deliveries.clone(),
        );
        let conflicts = Counter::default();
        registry.register(
            "state_conflicts",
            "Deliveries handled again because plugin state they read changed before their commit",
            conflicts.clone(),
        );
        let duplicate_mismatches = Counter::default();
        registry.register(
            "duplicate_body_mismatches",
            "Redeliveries of an event already processed whose body differs from the one processed",
            duplicate_mismatches.clone(),
        );
        Metrics {
            registry,
            jobs,
            conflicts,
            duplicate_mismatches,
            commit_groups,
            grouped_deliveries,
            catch_up: Default::default(),
            deliveries,
            processing,
            plugin_calls,
            outbox,
            retries,
        }
    }
}

impl Metrics {
    /// Counts one delivery; `reason` only for a rejection.
    pub fn delivery(&self, outcome: &'static str, reason: Option<&'static str>, took: Duration) {
        let mut labels = vec![("outcome", outcome)];
        if let Some(r) = reason {
            labels.push(("reason", r));
        }
        self.deliveries.get_or_create(&labels).inc();
        self.processing.observe(took.as_secs_f64());
    }

    /// Counts a failed attempt: `dead` when it went to the dead-letter list.
    pub fn failure(&self, dead: bool) {
        let next = if dead {
            "dead_lettered"
        } else {
            "retry_scheduled"
        };
        self.retries.get_or_create(&vec![("next", next)]).inc();
    }

    /// Counts one run of a follow-up job by its kind and outcome (done,
    /// retry_scheduled, dead_lettered).
    pub fn job(&self, kind: &'static str, outcome: &'static str) {
        self.jobs
            .get_or_create(&vec![("kind", kind), ("outcome", outcome)])
            .inc();
    }

    /// Counts a delivery sent back to be handled again (a state conflict).
    pub fn conflict(&self) {
        self.conflicts.inc();
    }

    /// Counts a duplicate delivery whose body differs from the processed one.
    pub fn duplicate_mismatch(&self) {
        self.duplicate_mismatches.inc();
    }

    /// Counts one plugin call and how long it took.
    pub fn plugin_call(&self, took: Duration) {
        self.plugin_calls.observe(took.as_secs_f64());
    }

    /// The text exposition, with the outbox length read just before and
    /// the database's group-commit counts.
    pub fn render(&self, outbox_effects: i64, (groups, deliveries): (u64, u64)) -> String {
        self.outbox.set(outbox_effects);
        // Counters only grow: bring them up to the database's totals.
        let _one_at_a_time = self.catch_up.lock().unwrap_or_else(|e| e.into_inner());
        self.commit_groups
            .inc_by(groups.saturating_sub(self.commit_groups.get()));
        self.grouped_deliveries
            .inc_by(deliveries.saturating_sub(self.grouped_deliveries.get()));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
