//! Money going out: refunds (`charge.refunded` totals and refund objects),
//! payouts and transfers.

use super::{
    Ctx, FINAL, HandleError, Lifecycle, Mapped, advance, last_applied, record_applied,
    registered_tenant, soft_tenant,
};
use super::{owner_of, post_to_ledger};
use crate::effects::*;
use crate::event::id_at;
use crate::ledger;
use crate::money::Money;
use crate::state::{StateStore, key};

/// A refund object's status (`refund.*`, `charge.refund.updated`). The money
/// is accounted by `charge.refunded`; this reports where the refund stands.
pub(super) fn refund_changed(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let status = ctx.req_str("status")?;
    let amount = ctx.money("amount")?;
    if let Err(stale) = advance(store, &REFUND, &id, &status, ctx.created)? {
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
    if let Err(stale) = advance(store, &PAYOUT, &id, &status, ctx.created)? {
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

/// Where the refunded total last applied per charge is kept.
pub const REFUNDS: &str = "refunds";

/// `charge.refunded` carries the charge's cumulative `amount_refunded`, so
/// the refund applied is its growth since the last one applied: partial
/// refunds accumulate, a repeat applies nothing, and an older total arriving
/// late is stale. The tenant pays the customer back in the ledger.
pub(super) fn refund_recorded(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let total = ctx.money("amount_refunded")?;
    let charged = ctx.req_i64("amount")?;
    let before: i64 = match store
        .get(REFUNDS, &key(&[&id]))
        .map_err(HandleError::Storage)?
    {
        Some(raw) => raw
            .parse()
            .map_err(|e| HandleError::Storage(format!("refund state of {id} is corrupt: {e}")))?,
        None => 0,
    };
    if total.amount <= before {
        return Ok(Err(format!(
            "stale: charge {id} already has {before} refunded, this event says {}",
            total.amount
        )));
    }
    if total.amount > charged {
        return Err(HandleError::MissingField(format!(
            "data.object.amount_refunded: {} exceeds the charge's amount {charged}",
            total.amount
        )));
    }
    store
        .put(REFUNDS, &key(&[&id]), &total.amount.to_string())
        .map_err(HandleError::Storage)?;
    let payment_intent = id_at(ctx.object, &["payment_intent"]);
    // Charges do not always repeat the payment's metadata.
    let (tenant, ledger_owner) = owner_of(ctx, store, payment_intent.as_deref())?;
    let effect = RefundRecorded {
        charge: id.clone(),
        payment_intent,
        amount: Money::new(total.amount - before, total.currency.clone()),
        full: total.amount == charged,
        total_refunded: total,
        tenant,
        account: ctx.account.clone(),
        reference: ctx.reference(),
    };
    let posting = ledger::Posting {
        id: format!("{id}:refunded:{}", effect.total_refunded.amount),
        tenant: ledger_owner,
        currency: effect.amount.currency.clone(),
        description: format!("refund on {id}"),
        at: ctx.created,
        transfers: vec![ledger::Transfer::new(
            "tenant",
            "customer",
            effect.amount.amount,
        )],
    };
    post_to_ledger(store, posting)?;
    Ok(Ok(vec![Effect::RefundRecorded(effect)]))
}

/// The statuses of a payout, in order.
pub(super) const PAYOUT: Lifecycle = Lifecycle {
    kind: "payout",
    rank: |status| match status {
        // A payout reported paid can still fail days later.
        "failed" | "canceled" => FINAL,
        "paid" => 2,
        "in_transit" => 1,
        _ => 0,
    },
};

/// The statuses of a refund, in order.
pub(super) const REFUND: Lifecycle = Lifecycle {
    kind: "refund",
    rank: |status| match status {
        "failed" | "canceled" => FINAL,
        "succeeded" => 2,
        _ => 1,
    },
};
