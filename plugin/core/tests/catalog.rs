//! The event catalog against Stripe's lists and sample objects
//! (`tests/fixtures/stripe/`), and `docs/events.md` against the catalog.

use psa_billing_core::effects::{Effect, KINDS, kind_of_variant};
use psa_billing_core::mapping::{self, CATALOG, Class, HandleError, catalog_markdown};
use psa_billing_core::state::MemoryState;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The types the seeds use that Stripe sends today, and the ones a billing
/// integration needs that the seeds missed (issue 4).
const REQUIRED: &str = "account.application.authorized account.application.deauthorized \
account.external_account.created account.external_account.deleted account.external_account.updated \
account.updated capability.updated charge.captured charge.dispute.closed charge.dispute.created \
charge.dispute.funds_reinstated charge.dispute.funds_withdrawn charge.dispute.updated charge.failed \
charge.pending charge.refunded charge.succeeded charge.updated checkout.session.completed \
customer.created customer.deleted customer.source.created customer.source.deleted \
customer.source.updated customer.subscription.created customer.subscription.deleted \
customer.subscription.updated customer.updated invoice.created invoice.finalized \
invoice.payment_failed invoice.payment_succeeded invoice.upcoming \
payment_intent.amount_capturable_updated payment_intent.canceled payment_intent.created \
payment_intent.partially_funded payment_intent.payment_failed payment_intent.processing \
payment_intent.requires_action payment_intent.succeeded payment_method.attached \
payment_method.automatically_updated payment_method.detached payment_method.updated \
person.created person.deleted person.updated radar.early_fraud_warning.created refund.created \
review.closed review.opened subscription_schedule.canceled subscription_schedule.completed \
subscription_schedule.created subscription_schedule.expiring subscription_schedule.released \
subscription_schedule.updated transfer.created transfer.reversed transfer.updated \
invoice.paid invoice.voided invoice.marked_uncollectible invoice.payment_action_required \
customer.subscription.trial_will_end customer.subscription.paused customer.subscription.resumed \
checkout.session.async_payment_succeeded checkout.session.async_payment_failed \
checkout.session.expired charge.refund.updated refund.updated refund.failed payout.paid payout.failed";

/// Types the seeds name that Stripe no longer sends.
const LEGACY: &str = "transfer.paid transfer.canceled customer.card.created customer.card.updated \
customer.card.deleted customer.bank_account.created customer.bank_account.updated \
customer.bank_account.deleted payment_method.card_automatically_updated";

/// Stripe's reference data, vendored in `tests/fixtures/stripe/`.
fn vendored(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/stripe")
        .join(file)
}

fn stripe_types() -> Vec<String> {
    let path = vendored("event-types.txt");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading Stripe's event types from {}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn samples() -> Value {
    let path = vendored("fixtures3.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading Stripe's sample objects from {}: {e}",
            path.display()
        )
    });
    serde_json::from_str::<Value>(&text).unwrap()["resources"].take()
}

/// Stripe's sample object for the object an event type is about.
fn sample_for(samples: &Value, event_type: &str) -> Value {
    const BY_PREFIX: &[(&str, &str)] = &[
        ("charge.dispute.", "dispute"),
        ("charge.refund.", "refund"),
        ("customer.subscription.", "subscription"),
        ("customer.source.", "card"),
        ("customer.card.", "card"),
        ("customer.bank_account.", "bank_account"),
        ("account.application.", "application"),
        ("account.external_account.", "external_account"),
        ("checkout.session.", "checkout.session"),
        ("radar.early_fraud_warning.", "radar.early_fraud_warning"),
    ];
    let name = BY_PREFIX
        .iter()
        .find(|(p, _)| event_type.starts_with(p))
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| {
            event_type
                .rsplit_once('.')
                .map_or("", |(o, _)| o)
                .to_string()
        });
    let mut object = samples
        .get(&name)
        .cloned()
        .unwrap_or_else(|| json!({"id": "obj_unknown"}));
    object["metadata"] = json!({"tenant_id": "t_catalog"});
    // The sample is a snapshot in one state; some events only come in another.
    if event_type == "charge.refunded" || event_type == "application_fee.refunded" {
        object["amount_refunded"] = object["amount"].clone();
    }
    object
}

fn event(event_type: &str, object: Value) -> Vec<u8> {
    json!({"id": format!("evt_{event_type}"), "object": "event", "type": event_type,
           "created": 1_763_800_000, "account": "acct_catalog", "api_version": "2025-08-27.basil",
           "data": {"object": object}})
    .to_string()
    .into_bytes()
}

#[test]
fn every_required_and_legacy_type_has_its_catalog_row() {
    let known: BTreeSet<&str> = CATALOG.iter().map(|e| e.event_type).collect();
    for t in REQUIRED.split_whitespace() {
        assert!(known.contains(t), "{t} has no catalog row");
    }
    for t in LEGACY.split_whitespace() {
        let entry = mapping::entry(t).unwrap_or_else(|| panic!("{t} has no catalog row"));
        assert_eq!(entry.class, Class::Legacy, "{t}");
        assert!(
            entry.notes.contains("Replaced by"),
            "{t} must say what replaced it"
        );
    }
    // Legacy rows are exactly the types Stripe's list no longer has.
    let sent: BTreeSet<String> = stripe_types().into_iter().collect();
    for e in CATALOG {
        assert_eq!(
            e.class == Class::Legacy,
            !sent.contains(e.event_type),
            "{}: legacy means Stripe no longer sends it",
            e.event_type
        );
    }
    let unique: BTreeSet<&str> = CATALOG.iter().map(|e| e.event_type).collect();
    assert_eq!(unique.len(), CATALOG.len(), "a type is listed twice");
}

#[test]
fn each_row_emits_only_its_declared_effects_from_stripes_sample_object() {
    let samples = samples();
    for entry in CATALOG {
        let mut store = MemoryState::default();
        let body = event(entry.event_type, sample_for(&samples, entry.event_type));
        let effects = mapping::handle(&body, &mut store)
            .unwrap_or_else(|e| panic!("{}: {e}", entry.event_type));
        assert!(!effects.is_empty(), "{}", entry.event_type);
        for fx in &effects {
            // Hosts name effects by their variant through KINDS.
            let debug = format!("{fx:?}");
            let variant = debug.split('(').next().unwrap();
            assert_eq!(kind_of_variant(variant), Some(fx.kind()), "{variant}");
            assert!(
                entry.effects.contains(&fx.kind()),
                "{} emitted {} (declared {:?}): {fx:?}",
                entry.event_type,
                fx.kind(),
                entry.effects
            );
        }
        match entry.class {
            Class::ByDesign => assert!(
                matches!(&effects[..], [Effect::EventIgnored(i)] if i.reason.starts_with("no effect by design")),
                "{}: {effects:?}",
                entry.event_type
            ),
            // First delivery about a fresh object: never stale.
            _ => assert!(
                effects
                    .iter()
                    .all(|fx| !matches!(fx, Effect::EventIgnored(_))),
                "{}: {effects:?}",
                entry.event_type
            ),
        }
    }
}

#[test]
fn every_type_stripe_sends_is_recorded_never_an_error() {
    let samples = samples();
    let types = stripe_types();
    assert!(types.len() > 200, "Stripe's list looks truncated");
    for t in &types {
        let mut store = MemoryState::default();
        let result = mapping::handle(&event(t, sample_for(&samples, t)), &mut store);
        match result {
            Ok(effects) => assert!(!effects.is_empty(), "{t}"),
            Err(e @ HandleError::NotReady(_)) => panic!("{t}: {e}"),
            Err(e) => panic!("{t} failed on Stripe's own sample object: {e}"),
        }
        if mapping::entry(t).is_none() {
            let effects = mapping::handle(&event(t, json!({})), &mut store).unwrap();
            assert!(
                matches!(&effects[..], [Effect::EventIgnored(i)] if i.reason == "type not used"),
                "{t}"
            );
        }
    }
}

#[test]
fn docs_events_md_is_generated_from_the_catalog() {
    let listed: BTreeSet<String> = stripe_types().into_iter().collect();
    let others = listed
        .iter()
        .filter(|t| mapping::entry(t).is_none())
        .count();
    let generated = catalog_markdown(others);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.md");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/events.md is out of date: run `BLESS=1 cargo test -p psa-billing-core --test catalog` and commit it"
    );
}

#[test]
fn kinds_name_each_variant_once() {
    let variants: BTreeSet<&str> = KINDS.iter().map(|(v, _)| *v).collect();
    let kinds: BTreeSet<&str> = KINDS.iter().map(|(_, k)| *k).collect();
    assert_eq!((variants.len(), kinds.len()), (KINDS.len(), KINDS.len()));
    // Every kind the catalog promises exists.
    for e in CATALOG {
        for k in e.effects {
            assert!(kinds.contains(k), "{}: no effect kind {k}", e.event_type);
        }
    }
}
