//! Disputes: status changes and funds withdrawn or reinstated.

use super::*;

pub(super) fn dispute_update(
    ctx: &Ctx,
    store: &mut dyn StateStore,
    kind: fn(DisputeUpdate) -> Effect,
) -> Mapped {
    let id = ctx.req_str("id")?;
    let status = ctx.req_str("status")?;
    let payment_intent = id_at(ctx.object, &["payment_intent"]);
    if let Err(stale) = advance(store, &DISPUTE, &id, &status, ctx.created)? {
        return Ok(Err(stale));
    }
    let (tenant, _) = owner_of(ctx, store, payment_intent.as_deref())?;
    Ok(Ok(vec![kind(DisputeUpdate {
        dispute: id,
        charge: id_at(ctx.object, &["charge"]),
        payment_intent,
        amount: ctx.money("amount")?,
        reason: ctx.opt_str(&["reason"]).unwrap_or_default(),
        status,
        evidence_due_by: at(ctx.object, &["evidence_details", "due_by"]).and_then(Value::as_i64),
        tenant,
        account: ctx.account.clone(),
    })]))
}

/// Funds withdrawn for a dispute leave the tenant's balance (with Stripe's
/// dispute fee when the balance transaction shows it); reinstated funds come
/// back. Each is posted once per dispute, so withdrawn-then-reinstated nets
/// out in any order and a repeat is stale.
pub(super) fn dispute_funds(ctx: &Ctx, store: &mut dyn StateStore, withdrawn: bool) -> Mapped {
    let id = ctx.req_str("id")?;
    let amount = ctx.money("amount")?;
    let payment_intent = id_at(ctx.object, &["payment_intent"]);
    let (tenant, ledger_owner) = owner_of(ctx, store, payment_intent.as_deref())?;
    let fee = at(ctx.object, &["balance_transactions"])
        .and_then(Value::as_array)
        .map(|txs| {
            txs.iter()
                .filter(|t| (t["amount"].as_i64().unwrap_or(0) < 0) == withdrawn)
                .filter_map(|t| t["fee"].as_i64())
                .sum::<i64>()
        })
        .filter(|f| *f != 0)
        .map(|f| Money::new(f, amount.currency.clone()));
    let (stage, from, to) = if withdrawn {
        ("withdrawn", "tenant", "customer")
    } else {
        ("reinstated", "customer", "tenant")
    };
    let mut transfers = vec![ledger::Transfer::new(from, to, amount.amount)];
    if let Some(f) = &fee {
        // A positive fee is charged; a negative one is a fee given back.
        transfers.push(if f.amount > 0 {
            ledger::Transfer::new("tenant", "processor", f.amount)
        } else {
            ledger::Transfer::new("processor", "tenant", -f.amount)
        });
    }
    let posting = ledger::Posting {
        id: format!("{id}:{stage}"),
        tenant: ledger_owner,
        currency: amount.currency.clone(),
        description: format!("dispute {id} funds {stage}"),
        at: ctx.created,
        source: Some(id.clone()),
        transfers,
    };
    match ledger::post(store, posting) {
        Ok((_, true)) => {}
        Ok((_, false)) | Err(ledger::LedgerError::Conflict(_)) => {
            return Ok(Err(format!("stale: dispute {id} funds already {stage}")));
        }
        Err(ledger::LedgerError::Storage(e)) => return Err(HandleError::Storage(e)),
        Err(e) => {
            return Err(HandleError::Malformed(format!(
                "its amounts cannot be posted to the ledger ({e})"
            )));
        }
    }
    let funds = DisputeFunds {
        dispute: id,
        charge: id_at(ctx.object, &["charge"]),
        amount,
        fee,
        tenant,
        account: ctx.account.clone(),
    };
    Ok(Ok(vec![if withdrawn {
        Effect::DisputeFundsWithdrawn(funds)
    } else {
        Effect::DisputeFundsReinstated(funds)
    }]))
}

/// The statuses of a dispute, in order.
pub(super) const DISPUTE: Lifecycle = Lifecycle {
    kind: "dispute",
    rank: |status| match status {
        "won" | "lost" | "warning_closed" | "prevented" => FINAL,
        "under_review" | "warning_under_review" => 2,
        _ => 1,
    },
};
