//! Fraud signals: early fraud warnings and Radar reviews.

use super::{Ctx, FINAL, Lifecycle, Mapped, advance, soft_tenant};
use crate::effects::*;
use crate::event::id_at;
use crate::state::StateStore;

/// The card networks reported a charge as fraud. Refunding while
/// `actionable` avoids the dispute that would follow.
pub(super) fn fraud_warning(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let actionable = ctx.flag("actionable");
    // Once no longer actionable, a warning does not become actionable again.
    let status = if actionable { "actionable" } else { "settled" };
    if let Err(stale) = super::advance_in_time(
        store,
        "early_fraud_warning",
        &id,
        status,
        ctx.created,
        Some("settled"),
    )? {
        return Ok(Err(stale));
    }
    let payment_intent = id_at(ctx.object, &["payment_intent"]);
    Ok(Ok(vec![Effect::FraudWarning(FraudWarning {
        warning: id,
        charge: id_at(ctx.object, &["charge"]),
        tenant: soft_tenant(ctx, store, payment_intent.as_deref())?,
        payment_intent,
        fraud_type: ctx.opt_str(&["fraud_type"]).unwrap_or_default(),
        actionable,
        account: ctx.account.clone(),
    })]))
}

/// A Radar review opened or closed; a closed review stays closed.
pub(super) fn review(ctx: &Ctx, store: &mut dyn StateStore, opened: bool) -> Mapped {
    let id = ctx.req_str("id")?;
    let status = if opened { "open" } else { "closed" };
    if let Err(stale) = advance(store, &REVIEW, &id, status, ctx.created)? {
        return Ok(Err(stale));
    }
    let reason_field = if opened {
        "opened_reason"
    } else {
        "closed_reason"
    };
    let payment_intent = id_at(ctx.object, &["payment_intent"]);
    let review = Review {
        review: id,
        charge: id_at(ctx.object, &["charge"]),
        tenant: soft_tenant(ctx, store, payment_intent.as_deref())?,
        payment_intent,
        reason: ctx
            .opt_str(&[reason_field])
            .or_else(|| ctx.opt_str(&["reason"]))
            .unwrap_or_default(),
        account: ctx.account.clone(),
    };
    Ok(Ok(vec![if opened {
        Effect::ReviewOpened(review)
    } else {
        Effect::ReviewClosed(review)
    }]))
}

/// The statuses of a review, in order.
pub(super) const REVIEW: Lifecycle = Lifecycle {
    kind: "review",
    rank: |status| match status {
        "closed" => FINAL,
        _ => 1,
    },
};
