//! Money going out: refund objects, payouts and transfers.

use super::{
    Ctx, HandleError, Mapped, advance, last_applied, record_applied, registered_tenant, soft_tenant,
};
use crate::effects::*;
use crate::event::id_at;
use crate::money::Money;
use crate::state::{StateStore, key};

/// A refund object's status (`refund.*`, `charge.refund.updated`). The money
/// is accounted by `charge.refunded`; this reports where the refund stands.
pub(super) fn refund_changed(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let status = ctx.req_str("status")?;
    let amount = ctx.money("amount")?;
    if let Err(stale) = advance(store, "refund", &id, &status, ctx.created)? {
        return Ok(Err(stale));
    }
    let payment_intent = id_at(ctx.object, &["payment_intent"]);
    let update = RefundUpdate {
        refund: id,
        charge: id_at(ctx.object, &["charge"]),
        tenant: soft_tenant(ctx, store, payment_intent.as_deref())?,
        payment_intent,
        amount,
        reason: ctx.opt_str(&["reason"]),
        failure_reason: ctx.opt_str(&["failure_reason"]),
        account: ctx.account.clone(),
        reference: ctx.reference(),
        status,
    };
    Ok(Ok(vec![if update.status == "failed" {
        Effect::RefundFailed(update)
    } else {
        Effect::RefundUpdated(update)
    }]))
}

/// A payout's status: pending < in_transit < paid < failed/canceled.
pub(super) fn payout(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let status = ctx.req_str("status")?;
    let amount = ctx.money("amount")?;
    if let Err(stale) = advance(store, "payout", &id, &status, ctx.created)? {
        return Ok(Err(stale));
    }
    Ok(Ok(vec![Effect::PayoutChanged(Payout {
        payout: id,
        amount,
        status,
        arrival_date: ctx.opt_i64(&["arrival_date"]),
        destination: id_at(ctx.object, &["destination"]),
        failure_code: ctx.opt_str(&["failure_code"]),
        failure_message: ctx.opt_str(&["failure_message"]),
        tenant: ctx.tenant(),
        account: ctx.account.clone(),
    })]))
}

/// A transfer to a connected account. Its only moving part is
/// `amount_reversed`, which only grows: a smaller one, or the same one from
/// an older event, is stale.
pub(super) fn transfer(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let amount = ctx.money("amount")?;
    let reversed = ctx.opt_i64(&["amount_reversed"]).unwrap_or(0);
    if !(0..=amount.amount).contains(&reversed) {
        return Err(HandleError::MissingField(format!(
            "data.object.amount_reversed: {reversed} is outside 0..={}",
            amount.amount
        )));
    }
    let key = key(&["transfer", &id]);
    if let Some((last, last_created)) = last_applied(store, &key)? {
        let last: i64 = last.parse().unwrap_or(0);
        if reversed < last || (reversed == last && last_created > ctx.created) {
            return Ok(Err(format!(
                "stale: transfer {id} already has {last} reversed, this event says {reversed}"
            )));
        }
    }
    if let Err(stale) = record_applied(store, &key, &reversed.to_string(), ctx.created)? {
        return Ok(Err(stale));
    }
    // The destination is a connected account: route by the registry when
    // the application registered it.
    let destination = id_at(ctx.object, &["destination"]);
    let registered = registered_tenant(store, destination.as_deref())?;
    Ok(Ok(vec![Effect::TransferChanged(Transfer {
        transfer: id,
        amount_reversed: Money::new(reversed, amount.currency.clone()),
        reversed: reversed == amount.amount && reversed > 0,
        amount,
        destination,
        transfer_group: ctx.opt_str(&["transfer_group"]),
        tenant: ctx.tenant().or(registered),
        reference: ctx.reference(),
    })]))
}
