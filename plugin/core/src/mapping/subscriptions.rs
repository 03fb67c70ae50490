//! Subscriptions: plan, status and the license count.

use super::*;

/// Where the license count last announced per subscription is kept.
pub(super) const LICENSES: &str = "licenses";

/// Subscriptions move back and forth (active, past_due, active...), so their
/// events apply in `created` order: an older one arriving late is stale,
/// whatever it says. `canceled` is final. A `license.count_set` follows
/// whenever the quantity differs from the count last announced.
pub(super) fn subscription_changed(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let object = ctx.object;
    let id = ctx.req_str("id")?;
    let status = ctx.req_str("status")?;
    let items = at(object, &["items", "data"])
        .and_then(Value::as_array)
        .ok_or_else(|| HandleError::MissingField("data.object.items.data".into()))?;
    let mut quantity = 0i64;
    let licenses = &ctx.routing.license_prices;
    for item in items {
        // Only license items count when the license prices are known: an
        // add-on on the same subscription is not a seat.
        if !licenses.is_empty() && !id_at(item, &["price"]).is_some_and(|p| licenses.contains(&p)) {
            continue;
        }
        // An item without quantity (metered prices) counts for nothing.
        quantity = quantity
            .checked_add(item.get("quantity").and_then(Value::as_i64).unwrap_or(0))
            .ok_or_else(|| HandleError::MissingField("data.object.items.data.quantity".into()))?;
    }
    // Per item since API 2025-03-31 (the latest end, the earliest start),
    // top-level before.
    let period = |field: &str, latest: bool| {
        let per_item = items
            .iter()
            .filter_map(|i| i.get(field).and_then(Value::as_i64));
        let picked = if latest {
            per_item.max()
        } else {
            per_item.min()
        };
        picked.or_else(|| object.get(field).and_then(Value::as_i64))
    };
    let is_license = |item: &&Value| id_at(item, &["price"]).is_some_and(|p| licenses.contains(&p));
    let price = items
        .iter()
        .find(is_license)
        .or_else(|| items.first())
        .and_then(|item| id_at(item, &["price"]));
    let mut metadata: Vec<(String, String)> = object
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    metadata.sort();
    if let Err(stale) = advance_in_time(
        store,
        "subscription",
        &id,
        &status,
        ctx.created,
        Some("canceled"),
    )? {
        return Ok(Err(stale));
    }
    let tenant = ctx.tenant();
    let mut effects = vec![Effect::SubscriptionChanged(SubscriptionChanged {
        subscription: id.clone(),
        status,
        quantity,
        price,
        current_period_start: period("current_period_start", false),
        current_period_end: period("current_period_end", true),
        trial_end: object.get("trial_end").and_then(Value::as_i64),
        metadata,
        cancel_at_period_end: object
            .get("cancel_at_period_end")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        tenant: tenant.clone(),
        account: ctx.account.clone(),
        customer: id_at(object, &["customer"]),
    })];
    let announced = store
        .get(LICENSES, &key(&[&id]))
        .map_err(HandleError::Storage)?;
    if announced.as_deref() != Some(quantity.to_string().as_str()) {
        store
            .put(LICENSES, &key(&[&id]), &quantity.to_string())
            .map_err(HandleError::Storage)?;
        effects.push(Effect::LicenseCountSet(LicenseCountSet {
            subscription: id,
            tenant,
            count: quantity,
        }));
    }
    Ok(Ok(effects))
}
