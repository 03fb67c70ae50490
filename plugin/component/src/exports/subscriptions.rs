//! Subscriptions of a tenant's customers (seeds 000, 004): created with
//! metadata `tenant_id` (so their webhooks route back), moved to another
//! price with Stripe's `proration_behavior`, cancelled now or at period
//! end, and resumed. A subscription whose metadata names another tenant is
//! refused.
//!
//! Knows nothing about license counts: `set-license-count` only borrows
//! [`item_of`] and [`proration`].

use super::boundary::{TENANT_KEY, is_id, metadata_value};
use super::customers::{owned_customer, with_own_keys};
use super::requests::{
    check_account, check_request, idempotency_key, invalid, record, recorded, recorded_id,
    stripe_failed,
};
use crate::bindings::exports::psa::billing::operations::{
    NewSubscription, OperationError, PlanChange, SubscriptionAction, SubscriptionRequest,
};
use crate::bindings::psa::billing::stripe::{
    self, Subscription, SubscriptionItem, SubscriptionItemChange, SubscriptionParams,
    SubscriptionUpdate,
};
use serde_json::json;

/// Stripe's `proration_behavior` values.
const PRORATIONS: [&str; 3] = ["create_prorations", "always_invoice", "none"];

/// Carries out a subscription request.
pub(super) fn manage(req: SubscriptionRequest) -> Result<Subscription, OperationError> {
    check_request(&req.request_id, &req.tenant)?;
    if let Some(a) = &req.account {
        check_account("account", a)?;
    }
    let account = req.account.as_deref();
    let key = |step: &str| idempotency_key("subscription", &req.tenant, &req.request_id, step);
    match &req.action {
        SubscriptionAction::Create(new) => create(&req, new),
        SubscriptionAction::ChangePlan(change) => change_plan(&req, change),
        SubscriptionAction::Cancel(cancel) => {
            let sub = owned(&req.tenant, &cancel.subscription, account)?;
            if sub.status == "canceled" || (cancel.at_period_end && sub.cancel_at_period_end) {
                return Ok(sub);
            }
            if cancel.at_period_end {
                stripe::update_subscription(
                    &sub.id,
                    &ending(Some(true)),
                    account,
                    &key("cancel-at-period-end"),
                )
                .map_err(stripe_failed)
            } else {
                stripe::cancel_subscription(&sub.id, account, &key("cancel")).map_err(stripe_failed)
            }
        }
        SubscriptionAction::Resume(id) => {
            let sub = owned(&req.tenant, id, account)?;
            if sub.status == "canceled" {
                return Err(OperationError::Refused(format!(
                    "subscription {id} is canceled for good; create a new one"
                )));
            }
            if !sub.cancel_at_period_end {
                return Ok(sub);
            }
            stripe::update_subscription(&sub.id, &ending(Some(false)), account, &key("resume"))
                .map_err(stripe_failed)
        }
    }
}

/// A new subscription of one of the tenant's customers, created once per
/// request id (a repeat returns the one made).
fn create(
    req: &SubscriptionRequest,
    new: &NewSubscription,
) -> Result<Subscription, OperationError> {
    let account = req.account.as_deref();
    let key = |step: &str| idempotency_key("subscription", &req.tenant, &req.request_id, step);
    if new.items.is_empty() || new.items.len() > 20 {
        return Err(invalid("a subscription takes 1 to 20 items"));
    }
    for item in &new.items {
        if !is_id(&item.price, "price_") {
            return Err(invalid(format!(
                "price must be a price_... id, not {:?}",
                item.price
            )));
        }
    }
    if let Some(first) = recorded("subscription", &req.tenant, &req.request_id)? {
        let id = recorded_id(&first, "subscription")?;
        return stripe::retrieve_subscription(&id, account).map_err(stripe_failed);
    }
    owned_customer(&req.tenant, &new.customer, account)?;
    let params = SubscriptionParams {
        customer: new.customer.clone(),
        items: new.items.clone(),
        trial_period_days: new.trial_period_days,
        default_payment_method: new.default_payment_method.clone(),
        metadata: with_own_keys(&new.metadata, &[(TENANT_KEY, &req.tenant)])?,
    };
    let sub =
        stripe::create_subscription(&params, account, &key("create")).map_err(stripe_failed)?;
    super::boundary::record_owner(&sub.id, &req.tenant)?;
    record(
        "subscription",
        &req.tenant,
        &req.request_id,
        json!({ "subscription": sub.id }),
    )?;
    Ok(sub)
}

/// One of the tenant's subscriptions moved to another price (a no-op when
/// it is there already).
fn change_plan(
    req: &SubscriptionRequest,
    change: &PlanChange,
) -> Result<Subscription, OperationError> {
    let account = req.account.as_deref();
    let key = |step: &str| idempotency_key("subscription", &req.tenant, &req.request_id, step);
    if !is_id(&change.to_price, "price_") {
        return Err(invalid(format!(
            "to-price must be a price_... id, not {:?}",
            change.to_price
        )));
    }
    let proration = proration(change.proration_behavior.as_deref())?;
    let sub = owned(&req.tenant, &change.subscription, account)?;
    let item = item_of(&sub, change.from_price.as_deref())?;
    if item.price == change.to_price && change.quantity.is_none_or(|q| item.quantity == Some(q)) {
        return Ok(sub);
    }
    let update = SubscriptionUpdate {
        items: vec![SubscriptionItemChange {
            id: item.id.clone(),
            price: Some(change.to_price.clone()),
            quantity: change.quantity,
        }],
        proration_behavior: proration.map(str::to_string),
        cancel_at_period_end: None,
        metadata: vec![],
    };
    stripe::update_subscription(&sub.id, &update, account, &key("plan")).map_err(stripe_failed)
}

fn ending(cancel_at_period_end: Option<bool>) -> SubscriptionUpdate {
    SubscriptionUpdate {
        items: vec![],
        proration_behavior: None,
        cancel_at_period_end,
        metadata: vec![],
    }
}

/// The subscription `id` if its metadata names `tenant`.
fn owned(tenant: &str, id: &str, account: Option<&str>) -> Result<Subscription, OperationError> {
    if !is_id(id, "sub_") {
        return Err(invalid(format!(
            "subscription must be a sub_... id, not {id:?}"
        )));
    }
    let sub = stripe::retrieve_subscription(id, account).map_err(stripe_failed)?;
    match metadata_value(&sub.metadata, TENANT_KEY) {
        Some(t) if t == tenant => Ok(sub),
        other => Err(OperationError::Refused(format!(
            "subscription {id} is not one of tenant {tenant}'s (its metadata {TENANT_KEY} is {})",
            other.map_or("missing".to_string(), |t| format!("{t:?}"))
        ))),
    }
}

/// The item of `price`, or the subscription's only item when no price is
/// named; refused when that does not name exactly one item.
pub(super) fn item_of<'a>(
    sub: &'a Subscription,
    price: Option<&str>,
) -> Result<&'a SubscriptionItem, OperationError> {
    match (price, sub.items.as_slice()) {
        (Some(price), items) => {
            let mut of_price = items.iter().filter(|i| i.price == price);
            match (of_price.next(), of_price.next()) {
                (Some(item), None) => Ok(item),
                (None, _) => Err(invalid(format!(
                    "subscription {} has no item of price {price}",
                    sub.id
                ))),
                (Some(_), Some(_)) => Err(invalid(format!(
                    "subscription {} has several items of price {price}",
                    sub.id
                ))),
            }
        }
        (None, [item]) => Ok(item),
        (None, items) => Err(invalid(format!(
            "subscription {} has {} items; name the price of the one to change",
            sub.id,
            items.len()
        ))),
    }
}

/// A `proration_behavior` Stripe knows, or none.
pub(super) fn proration(behavior: Option<&str>) -> Result<Option<&str>, OperationError> {
    match behavior {
        Some(b) if !PRORATIONS.contains(&b) => Err(invalid(format!(
            "proration-behavior must be one of {}, not {b:?}",
            PRORATIONS.join(", ")
        ))),
        other => Ok(other),
    }
}
