//! Status progress: each object's announced status only moves forward
//! (the [`Lifecycle`] its family supplies), or, for objects without an order of statuses, with event time
//! (`advance_in_time`).
//!
//! Knows nothing about which object families use it.

use super::*;

/// Where objects' last applied statuses are kept.
pub const OBJECTS: &str = "objects";

/// The rank of a status an object never leaves.
pub(super) const FINAL: u8 = 3;

/// An object family whose statuses have an order. Each family's file
/// supplies its own: the kind (the prefix of its state key) and the rank of
/// each status, where a higher rank is further along its life and a status
/// never follows a higher rank. [`FINAL`] is a status the object never leaves.
pub(super) struct Lifecycle {
    /// The object family, e.g. "payment_intent".
    pub kind: &'static str,
    /// How far along its life an object with this status is.
    pub rank: fn(&str) -> u8,
}

/// Records `status` for the object unless it already went further. Returns
/// the stale reason when the event must not be applied.
pub(super) fn advance(
    store: &mut dyn StateStore,
    life: &Lifecycle,
    id: &str,
    status: &str,
    created: i64,
) -> Result<Result<(), String>, HandleError> {
    let kind = life.kind;
    let key = key(&[kind, id]);
    if let Some((last_status, last_created)) = last_applied(store, &key)? {
        let last_status = last_status.as_str();
        let (old, new) = ((life.rank)(last_status), (life.rank)(status));
        debug_assert!(old <= FINAL && new <= FINAL, "{kind} ranks beyond FINAL");
        // A final status (rank 3) never changes into another final one: a
        // succeeded payment is not canceled, a paid invoice not voided.
        let other_final = old == FINAL && last_status != status;
        if old > new
            || other_final
            || (old == new && last_created > created && last_status != status)
        {
            return Ok(Err(format!("stale: {kind} {id} is already {last_status}")));
        }
    }
    record_applied(store, &key, status, created)
}

/// The status and event time last applied to an object.
pub(super) fn last_applied(
    store: &mut dyn StateStore,
    key: &str,
) -> Result<Option<(String, i64)>, HandleError> {
    let Some(raw) = store.get(OBJECTS, key).map_err(HandleError::Storage)? else {
        return Ok(None);
    };
    let last: Value = serde_json::from_str(&raw)
        .map_err(|e| HandleError::Storage(format!("state {key} is corrupt: {e}")))?;
    let status = last["status"].as_str().unwrap_or_default().to_string();
    Ok(Some((status, last["created"].as_i64().unwrap_or_default())))
}

pub(super) fn record_applied(
    store: &mut dyn StateStore,
    key: &str,
    status: &str,
    created: i64,
) -> Result<Result<(), String>, HandleError> {
    let record = json!({ "status": status, "created": created });
    store
        .put(OBJECTS, key, &record.to_string())
        .map_err(HandleError::Storage)?;
    Ok(Ok(()))
}

/// For objects whose status moves back and forth (subscriptions, accounts):
/// events apply in `created` order, so an older one arriving late is stale
/// whatever it says; `final_status`, once applied, is never left.
pub(super) fn advance_in_time(
    store: &mut dyn StateStore,
    kind: &str,
    id: &str,
    status: &str,
    created: i64,
    final_status: Option<&str>,
) -> Result<Result<(), String>, HandleError> {
    let key = key(&[kind, id]);
    if let Some((last_status, last_created)) = last_applied(store, &key)? {
        let left_final = final_status == Some(last_status.as_str()) && status != last_status;
        if last_created > created || left_final {
            return Ok(Err(format!(
                "stale: {kind} {id} already applied a newer state ({last_status})"
            )));
        }
    }
    record_applied(store, &key, status, created)
}
