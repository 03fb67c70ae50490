//! Payment intents: succeeded (with its ledger posting), failed, and the
//! other status changes.

use super::*;

pub(super) fn payment_succeeded(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    // `amount_received` is what was actually captured; fall back to `amount`.
    let amount = match ctx.object.get("amount_received").and_then(Value::as_i64) {
        Some(a) if a > 0 => Money::new(a, ctx.req_str("currency")?),
        _ => ctx.money("amount")?,
    };
    let application_fee = ctx
        .object
        .get("application_fee_amount")
        .and_then(Value::as_i64)
        .map(|a| Money::new(a, amount.currency.clone()));
    if let Err(stale) = advance(store, &PAYMENT_INTENT, &id, "succeeded", ctx.created)? {
        return Ok(Err(stale));
    }
    let effect = PaymentSucceeded {
        payment_intent: id,
        amount,
        tenant: ctx.tenant(),
        account: ctx.account.clone(),
        customer: id_at(ctx.object, &["customer"]),
        reference: ctx.reference(),
        application_fee,
    };
    post_payment(store, &effect, ctx.created)?;
    let mut effects = vec![];
    // Seed 002 marks wallet deposits in the payment's metadata.
    if ctx.opt_str(&["metadata", "type"]).as_deref() == Some("deposit") {
        effects.push(Effect::WalletDepositConfirmed(WalletDeposit {
            wallet: ctx
                .opt_str(&["metadata", "walletId"])
                .or_else(|| ctx.opt_str(&["metadata", "wallet_id"])),
            payment_intent: effect.payment_intent.clone(),
            amount: effect.amount.clone(),
            tenant: effect.tenant.clone(),
            reference: effect.reference.clone(),
        }));
    }
    effects.insert(0, Effect::PaymentSucceeded(effect));
    Ok(Ok(effects))
}

/// The ledger's view of a payment: the customer pays the tenant the amount
/// received, and the tenant pays the platform its application fee. Stripe's
/// processing fee is not in the event (it is on the balance transaction), so
/// it is not posted here.
pub(super) fn post_payment(
    store: &mut dyn StateStore,
    p: &PaymentSucceeded,
    at: i64,
) -> Result<(), HandleError> {
    let fee = p.application_fee.as_ref().map_or(0, |f| f.amount);
    let tenant = ledger_tenant(p.tenant.as_deref(), p.account.as_deref());
    // Remember whose ledger the payment went to, for its refunds.
    let owner = json!({ "tenant": p.tenant, "ledger": tenant });
    store
        .put(
            LEDGER_OWNERS,
            &key(&[&p.payment_intent]),
            &owner.to_string(),
        )
        .map_err(HandleError::Storage)?;
    let posting = ledger::Posting {
        id: format!("{}:payment", p.payment_intent),
        tenant,
        currency: p.amount.currency.clone(),
        description: format!("payment {}", p.payment_intent),
        at,
        transfers: vec![
            ledger::Transfer::new("customer", "tenant", p.amount.amount),
            ledger::Transfer::new("tenant", "platform", fee),
        ],
    };
    post_to_ledger(store, posting).map(drop)
}

/// Posts to the ledger; `false` when the posting's id was applied before.
pub(super) fn post_to_ledger(
    store: &mut dyn StateStore,
    posting: ledger::Posting,
) -> Result<bool, HandleError> {
    match ledger::post(store, posting) {
        Ok((_, new)) => Ok(new),
        // Posted before from another event of the same object: the first
        // posting stands.
        Err(ledger::LedgerError::Conflict(_)) => Ok(false),
        Err(ledger::LedgerError::Storage(e)) => Err(HandleError::Storage(e)),
        // Stripe sent numbers that cannot be posted (a negative fee, an
        // unknown currency): the event is wrong, not our storage.
        Err(e) => Err(HandleError::Malformed(format!(
            "its amounts cannot be posted to the ledger ({e})"
        ))),
    }
}

pub(super) fn payment_failed(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let amount = ctx.money("amount")?;
    if let Err(stale) = advance(
        store,
        &PAYMENT_INTENT,
        &id,
        "requires_payment_method",
        ctx.created,
    )? {
        return Ok(Err(stale));
    }
    let error = |field: &str| ctx.opt_str(&["last_payment_error", field]);
    Ok(Ok(vec![Effect::PaymentFailed(PaymentFailed {
        payment_intent: id,
        amount,
        tenant: ctx.tenant(),
        account: ctx.account.clone(),
        reference: ctx.reference(),
        code: error("code"),
        decline_code: error("decline_code"),
        message: error("message"),
    })]))
}

/// A payment intent moving to `status` without money changing hands yet
/// (processing, requires_action) or for good (canceled).
pub(super) fn payment_update(ctx: &Ctx, store: &mut dyn StateStore, status: &str) -> Mapped {
    let id = ctx.req_str("id")?;
    let amount = ctx.money("amount")?;
    if let Err(stale) = advance(store, &PAYMENT_INTENT, &id, status, ctx.created)? {
        return Ok(Err(stale));
    }
    let update = PaymentUpdate {
        payment_intent: id,
        amount,
        tenant: ctx.tenant(),
        account: ctx.account.clone(),
        reference: ctx.reference(),
        cancellation_reason: ctx.opt_str(&["cancellation_reason"]),
    };
    Ok(Ok(vec![match status {
        "processing" => Effect::PaymentProcessing(update),
        "requires_action" => Effect::PaymentRequiresAction(update),
        "requires_capture" => Effect::PaymentCapturable(update),
        "partially_funded" => Effect::PaymentPartiallyFunded(update),
        _ => Effect::PaymentCanceled(update),
    }]))
}

/// The statuses of a payment intent, in order.
pub(super) const PAYMENT_INTENT: Lifecycle = Lifecycle {
    kind: "payment_intent",
    rank: |status| match status {
        "succeeded" | "canceled" => FINAL,
        "processing" | "requires_capture" => 2,
        _ => 1,
    },
};
