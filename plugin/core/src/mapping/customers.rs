//! Customers, their ways to pay, and Checkout Sessions.

use super::{Ctx, FINAL, Lifecycle, Mapped, advance, advance_in_time};
use crate::effects::*;
use crate::event::id_at;
use crate::money::Money;
use crate::state::StateStore;

/// `customer.created/updated/deleted`: applied in event-time order; a
/// deleted customer stays deleted.
pub(super) fn customer(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let deleted = ctx.flag("deleted");
    let status = if deleted { "deleted" } else { "live" };
    if let Err(stale) =
        advance_in_time(store, "customer", &id, status, ctx.created, Some("deleted"))?
    {
        return Ok(Err(stale));
    }
    Ok(Ok(vec![Effect::CustomerChanged(Customer {
        customer: id,
        email: ctx.opt_str(&["email"]),
        name: ctx.opt_str(&["name"]),
        deleted,
        tenant: ctx.tenant(),
        account: ctx.account.clone(),
    })]))
}

/// A payment method or legacy source (card, bank account, source) changed
/// on a customer. Applied in event-time order; detached is final.
pub(super) fn payment_method(ctx: &Ctx, store: &mut dyn StateStore, change: &str) -> Mapped {
    let id = ctx.req_str("id")?;
    let status = if change == "detached" {
        "detached"
    } else {
        "attached"
    };
    if let Err(stale) = advance_in_time(
        store,
        "payment_method",
        &id,
        status,
        ctx.created,
        Some("detached"),
    )? {
        return Ok(Err(stale));
    }
    // Payment methods keep card details under `card`; legacy cards and bank
    // accounts at the top level; sources under their type's name.
    let method_type = ctx
        .opt_str(&["type"])
        .or_else(|| ctx.opt_str(&["object"]).filter(|o| o != "source"));
    let nested = method_type.as_deref().unwrap_or("card");
    let details = |field: &str| {
        ctx.opt_str(&[nested, field])
            .or_else(|| ctx.opt_str(&[field]))
    };
    let number = |field: &str| {
        ctx.opt_i64(&[nested, field])
            .or_else(|| ctx.opt_i64(&[field]))
    };
    Ok(Ok(vec![Effect::PaymentMethodChanged(PaymentMethod {
        payment_method: id,
        customer: id_at(ctx.object, &["customer"]),
        change: change.to_string(),
        brand: details("brand").or_else(|| details("bank_name")),
        last4: details("last4"),
        exp_month: number("exp_month"),
        exp_year: number("exp_year"),
        method_type,
        tenant: ctx.tenant(),
        account: ctx.account.clone(),
    })]))
}

/// A Checkout Session completed (paid, or unpaid while an asynchronous
/// method settles), then paid, failed or expired. `outcome` is the status
/// the event sets, `None` for a completion (ranked by its payment status).
pub(super) fn checkout(
    ctx: &Ctx,
    store: &mut dyn StateStore,
    outcome: Option<&str>,
    effect: fn(CheckoutSession) -> Effect,
) -> Mapped {
    let id = ctx.req_str("id")?;
    let payment_status = ctx.req_str("payment_status")?;
    let status = match outcome {
        None => format!("complete:{payment_status}"),
        Some(other) => other.to_string(),
    };
    if let Err(stale) = advance(store, &CHECKOUT_SESSION, &id, &status, ctx.created)? {
        return Ok(Err(stale));
    }
    let amount_total = match (ctx.opt_i64(&["amount_total"]), ctx.opt_str(&["currency"])) {
        (Some(amount), Some(currency)) => Some(Money::new(amount, currency)),
        _ => None,
    };
    let session = CheckoutSession {
        session: id,
        mode: ctx.opt_str(&["mode"]).unwrap_or_default(),
        status: ctx.opt_str(&["status"]).unwrap_or_default(),
        payment_status,
        amount_total,
        customer: id_at(ctx.object, &["customer"]),
        payment_intent: id_at(ctx.object, &["payment_intent"]),
        subscription: id_at(ctx.object, &["subscription"]),
        invoice: id_at(ctx.object, &["invoice"]),
        tenant: ctx.tenant(),
        account: ctx.account.clone(),
        // Checkout's own field for the application's record comes first.
        reference: ctx
            .opt_str(&["client_reference_id"])
            .or_else(|| ctx.reference()),
    };
    Ok(Ok(vec![effect(session)]))
}

/// The statuses of a checkout session, in order.
pub(super) const CHECKOUT_SESSION: Lifecycle = Lifecycle {
    kind: "checkout_session",
    rank: |status| match status {
        // A completed session whose asynchronous payment is still settling
        // can still succeed or fail.
        "complete:unpaid" => 1,
        _ => FINAL,
    },
};
