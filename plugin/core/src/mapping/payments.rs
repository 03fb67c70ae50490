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
    // Seed 002 marks wallet deposits in the payment's metadata: the money
    // is the customer's, held in its wallet, not the tenant's revenue.
    let deposit = ctx.opt_str(&["metadata", "type"]).as_deref() == Some("deposit");
    let wallet = ctx
        .opt_str(&["metadata", "walletId"])
        .or_else(|| ctx.opt_str(&["metadata", "wallet_id"]));
    let payee = if deposit {
        let party = wallet
            .clone()
            .or_else(|| effect.customer.clone())
            .unwrap_or_else(|| effect.payment_intent.clone());
        format!("wallet:{party}")
    } else {
        "tenant".to_string()
    };
    post_payment(store, &effect, &payee, ctx.created)?;
    let mut effects = vec![];
    if deposit {
        effects.push(Effect::WalletDepositConfirmed(WalletDeposit {
            wallet,
            payment_intent: effect.payment_intent.clone(),
            amount: effect.amount.clone(),
            tenant: effect.tenant.clone(),
            reference: effect.reference.clone(),
        }));
    }
    effects.insert(0, Effect::PaymentSucceeded(effect));
    Ok(Ok(effects))
}

/// The ledger's view of a payment: the customer pays `payee` (the tenant,
/// or a wallet for a deposit) the amount received, and `payee` pays the
/// platform its application fee. Stripe's processing fee is not in the
/// event (it is on the balance transaction: see `crate::settlement`), so it
/// is not posted here.
pub(super) fn post_payment(
    store: &mut dyn StateStore,
    p: &PaymentSucceeded,
    payee: &str,
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
        source: Some(p.payment_intent.clone()),
        transfers: vec![
            ledger::Transfer::new("customer", payee, p.amount.amount),
            ledger::Transfer::new(payee, "platform", fee),
        ],
    };
    post_to_ledger(store, posting).map(drop)
}

/// Posts to the ledger; `false` when the posting's id was applied before.
pub(super) fn post_to_ledger(
    store: &mut dyn StateStore,
    posting: ledger::Posting,
) -> Result<bool, HandleError> {
    let (id, tenant, currency) = (
        posting.id.clone(),
        posting.tenant.clone(),
        posting.currency.clone(),
    );
    let moves = ledger::net_moves(&posting.transfers);
    match ledger::post(store, posting) {
        Ok((_, new)) => Ok(new),
        // Posted before from another event of the same object (its
        // description may differ): the first posting stands. Other money
        // under the same id is a contradiction, and loud.
        Err(ledger::LedgerError::Conflict(why)) => {
            let first = ledger::transaction_by_id(store, &tenant, &id)
                .map_err(|e| HandleError::Storage(e.to_string()))?;
            match first {
                Some(tx)
                    if tx.currency == currency
                        && ledger::net_moves(&ledger::transfers_of(&tx)) == moves =>
                {
                    Ok(false)
                }
                _ => Err(HandleError::Malformed(format!(
                    "its posting contradicts the one recorded under the same id ({why})"
                ))),
            }
        }
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

#[cfg(test)]
mod tests {
    use crate::ledger::{self, Posting, Transfer};
    use crate::mapping::handle;
    use crate::mapping::tests::event;
    use crate::state::MemoryState;
    use serde_json::json;

    /// Seed 002: a $105.00 deposit into wallet w-1 of the marketplace
    /// tenant, then an offer of $100 with a 5 % platform fee held in escrow
    /// and a 20 % service fee at completion: platform 5 + 20, contractor 80.
    #[test]
    fn seed_002_a_deposit_is_the_customers_and_escrow_pays_105_5_20_80() {
        let mut s = MemoryState::default();
        let pi = json!({"id": "pi_dep", "object": "payment_intent", "amount": 10500,
            "amount_received": 10500, "currency": "usd", "status": "succeeded",
            "customer": "cus_1",
            "metadata": {"tenant_id": "market", "type": "deposit", "walletId": "w-1"}});
        handle(
            &event("evt_dep", "payment_intent.succeeded", 10, pi),
            &mut s,
        )
        .unwrap();
        let usd = |s: &mut MemoryState| ledger::book(s, "market").unwrap().balances["usd"].clone();
        let b = usd(&mut s);
        assert_eq!(b["wallet:w-1"], 10_500, "{b:?}");
        assert_eq!(
            b.get("tenant").copied().unwrap_or(0),
            0,
            "a deposit is not revenue"
        );

        let stage = |s: &mut MemoryState, id: &str, moves: &[(&str, &str, i64)]| {
            let posting = Posting {
                id: id.into(),
                tenant: "market".into(),
                currency: "usd".into(),
                description: id.into(),
                at: 20,
                source: None,
                transfers: moves
                    .iter()
                    .map(|(f, t, a)| Transfer::new(f, t, *a))
                    .collect(),
            };
            ledger::post(s, posting).unwrap();
        };
        stage(&mut s, "offer-7:hold", &[("wallet:w-1", "escrow", 10_500)]);
        stage(&mut s, "offer-7:accept", &[("escrow", "platform", 500)]);
        stage(
            &mut s,
            "offer-7:complete",
            &[
                ("escrow", "platform", 2_000),
                ("escrow", "contractor:c-9", 8_000),
            ],
        );
        let b = usd(&mut s);
        assert_eq!(b["customer"], -10_500, "the customer paid once: {b:?}");
        assert_eq!(b["wallet:w-1"], 0);
        assert_eq!(b["escrow"], 0);
        assert_eq!(b["platform"], 2_500);
        assert_eq!(b["contractor:c-9"], 8_000);
        assert_eq!(b.values().sum::<i64>(), 0);
        // A party name that could reach another key is refused.
        let bad = Posting {
            id: "bad".into(),
            tenant: "market".into(),
            currency: "usd".into(),
            description: "bad".into(),
            at: 30,
            source: None,
            transfers: vec![Transfer::new("wallet:../x", "escrow", 1)],
        };
        assert!(ledger::post(&mut s, bad).is_err());
    }
}
