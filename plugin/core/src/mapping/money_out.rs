//! Money going out to banks and connected accounts: payouts, and transfers
//! with their reversals.
//!
//! Knows nothing about refunds (`refunds.rs`) or how a payment's owner was
//! recorded.

use super::post_to_ledger;
use super::{
    Ctx, FINAL, HandleError, Lifecycle, Mapped, advance, last_applied, record_applied,
    registered_tenant,
};
use crate::effects::*;
use crate::event::id_at;
use crate::ledger;
use crate::money::Money;
use crate::state::{StateStore, key};

/// A payout's status: pending < in_transit < paid < failed/canceled.
pub(super) fn payout(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let status = ctx.req_str("status")?;
    let amount = ctx.money("amount")?;
    // Posted before the status check: an older event arriving late still
    // finds its postings made (each once, by id), in any order.
    post_payout(ctx, store, &id, &status, &amount)?;
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

/// Stripe takes a payout from the balance when it creates it (`<po>:out`,
/// tenant → paid_out) and gives it back when it fails or is canceled
/// (`<po>:returned`), as its `payout` and `payout_failure` balance
/// transactions do. A failure seen first posts both.
fn post_payout(
    ctx: &Ctx,
    store: &mut dyn StateStore,
    id: &str,
    status: &str,
    amount: &Money,
) -> Result<(), HandleError> {
    if amount.amount <= 0 {
        return Ok(());
    }
    let owner = super::ledger_tenant(ctx.tenant().as_deref(), ctx.account.as_deref());
    let mut stages = vec![("out", "tenant", "paid_out", "sent")];
    if matches!(status, "failed" | "canceled") {
        stages.push(("returned", "paid_out", "tenant", "returned"));
    }
    for (suffix, from, to, what) in stages {
        let posting = ledger::Posting {
            id: format!("{id}:{suffix}"),
            tenant: owner.clone(),
            currency: amount.currency.clone(),
            description: format!("payout {id} {what}"),
            at: ctx.created,
            source: Some(id.to_string()),
            transfers: vec![ledger::Transfer::new(from, to, amount.amount)],
        };
        post_to_ledger(store, posting)?;
    }
    Ok(())
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
    let mut before = 0;
    if let Some((last, last_created)) = last_applied(store, &key)? {
        let last: i64 = last.parse().unwrap_or(0);
        if reversed < last || (reversed == last && last_created > ctx.created) {
            return Ok(Err(format!(
                "stale: transfer {id} already has {last} reversed, this event says {reversed}"
            )));
        }
        before = last;
    }
    if let Err(stale) = record_applied(store, &key, &reversed.to_string(), ctx.created)? {
        return Ok(Err(stale));
    }
    // The destination is a connected account: route by the registry when
    // the application registered it.
    let destination = id_at(ctx.object, &["destination"]);
    let registered = registered_tenant(store, destination.as_deref())?;
    // A withdrawal's transfer (made by the `withdraw` operation, named in
    // its metadata) reversed: the money is the contractor's again. Other
    // transfers (a destination charge's, the platform's own) move no
    // ledger account of a tenant's and are reported only.
    let withdrawal = ctx.opt_str(&["metadata", "psa_billing_request"]).is_some();
    if let (true, Some(tenant)) = (withdrawal && reversed > before, ctx.tenant()) {
        // A contractor's own withdrawal goes back to that contractor.
        let party = match ctx.opt_str(&["metadata", "psa_billing_contractor"]) {
            Some(c) => {
                super::check_contractor(&c).map_err(HandleError::Malformed)?;
                format!("contractor:{c}")
            }
            None => "contractor".to_string(),
        };
        let posting = ledger::Posting {
            id: format!("{id}:reversed:{reversed}"),
            tenant,
            currency: amount.currency.clone(),
            description: format!("transfer {id} reversed"),
            at: ctx.created,
            source: Some(id.clone()),
            transfers: vec![ledger::Transfer::new("paid_out", &party, reversed - before)],
        };
        post_to_ledger(store, posting)?;
    }
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

#[cfg(test)]
mod tests {
    use crate::ledger;
    use crate::mapping::handle;
    use crate::state::MemoryState;
    use serde_json::{Value, json};

    fn transfer(reversed: i64, metadata: Value) -> Value {
        json!({"id": "tr_1", "object": "transfer", "amount": 5000, "amount_reversed": reversed,
               "currency": "usd", "destination": "acct_c", "metadata": metadata})
    }

    fn event(id: &str, created: i64, object: Value) -> Vec<u8> {
        crate::mapping::tests::event(id, "transfer.reversed", created, object)
    }

    /// A connected account's payout leaves the tenant's balance once; a
    /// failure gives it back, whatever order the events come in.
    #[test]
    fn a_payout_leaves_the_tenant_once_and_a_failure_returns_it_in_any_order() {
        let payout = |status: &str| {
            json!({"id": "po_1", "object": "payout", "amount": 4000, "currency": "usd",
                   "status": status, "metadata": {"tenant_id": "t_1"}})
        };
        let e = |id: &str, kind: &str, created: i64, status: &str| {
            crate::mapping::tests::event(id, kind, created, payout(status))
        };
        let created = e("evt_p1", "payout.created", 10, "pending");
        let paid = e("evt_p2", "payout.paid", 20, "paid");
        let failed = e("evt_p3", "payout.failed", 30, "failed");
        let usd = |s: &mut MemoryState| ledger::book(s, "t_1").unwrap().balances["usd"].clone();
        for order in [[&created, &paid], [&paid, &created]] {
            let mut s = MemoryState::default();
            for ev in order {
                handle(ev, &mut s).unwrap();
            }
            assert_eq!(usd(&mut s)["tenant"], -4000);
            assert_eq!(usd(&mut s)["paid_out"], 4000);
        }
        for order in [
            [&created, &paid, &failed],
            [&failed, &paid, &created],
            [&paid, &failed, &created],
        ] {
            let mut s = MemoryState::default();
            for ev in order {
                handle(ev, &mut s).unwrap();
            }
            assert_eq!(usd(&mut s)["tenant"], 0, "failed: given back");
            assert_eq!(usd(&mut s)["paid_out"], 0);
            let txs = ledger::transactions(&mut s, "t_1", 0, 10).unwrap();
            assert_eq!(txs.len(), 2, "{txs:?}");
            assert!(txs.iter().all(|t| t.source.as_deref() == Some("po_1")));
        }
    }

    #[test]
    fn a_withdrawals_reversal_returns_its_growth_to_the_contractor_in_any_order() {
        let ours = json!({"tenant_id": "t_1", "psa_billing_request": "w-1"});
        let part = event("evt_1", 10, transfer(2000, ours.clone()));
        let all = event("evt_2", 20, transfer(5000, ours));
        for order in [[&part, &all], [&all, &part]] {
            let mut s = MemoryState::default();
            for e in order {
                handle(e, &mut s).unwrap();
            }
            let usd = &ledger::book(&mut s, "t_1").unwrap().balances["usd"];
            assert_eq!(usd["contractor"], 5000);
            assert_eq!(usd["paid_out"], -5000);
        }
        // Another transfer (not a withdrawal) is reported, never posted.
        let mut s = MemoryState::default();
        let theirs = event("evt_3", 10, transfer(5000, json!({"tenant_id": "t_1"})));
        handle(&theirs, &mut s).unwrap();
        assert!(ledger::book(&mut s, "t_1").unwrap().balances.is_empty());
    }
}
