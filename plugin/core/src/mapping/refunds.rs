//! Refunds, posted once per refund object, and application-fee refunds.
//!
//! Stripe records each refund as its own balance transaction, and a failed
//! or canceled refund as a second one that gives the money back. The ledger
//! follows: `refund:<re_...>` moves the refund tenant → customer the first
//! time any event shows the refund, and `refund:<re_...>:failed` moves it
//! back when it fails.
//!
//! `charge.refunded` only carries the charge's cumulative `amount_refunded`
//! (and, on older API versions, its refund list). What that total says
//! beyond the refund objects known for the charge is posted as the charge's
//! unmatched refunds, and taken back as refund objects arrive to explain it:
//! in every delivery order the ledger ends at
//! `Σ refunds − Σ failed + max(0, max total − Σ refunds)`.
//!
//! Knows nothing about how the owner of a payment was recorded (routing) or
//! about payouts and transfers.

use super::{Ctx, FINAL, HandleError, Lifecycle, Mapped, advance, owner_of, post_to_ledger};
use crate::effects::*;
use crate::event::{at, id_at, str_at};
use crate::ledger;
use crate::money::Money;
use crate::state::{StateStore, key};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Where each charge's refund state is kept (by charge id).
pub const REFUNDS: &str = "refunds";

/// Where each application fee's refunded total is kept (by fee id).
pub const FEE_REFUNDS: &str = "application_fee_refunds";

/// What the ledger knows of one charge's refunds. Every field only grows,
/// so the state (and the ledger) ends the same in any delivery order.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChargeRefunds {
    /// The largest `amount_refunded` a `charge.refunded` event reported.
    total: i64,
    /// The charge's refund objects seen so far.
    refunds: BTreeMap<String, RefundSeen>,
    /// Posted as unmatched refunds: `max(0, total − Σ refunds)`.
    unmatched: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct RefundSeen {
    amount: i64,
    failed: bool,
}

impl ChargeRefunds {
    fn load(store: &mut dyn StateStore, charge: &str) -> Result<ChargeRefunds, HandleError> {
        let corrupt =
            |e: String| HandleError::Storage(format!("refund state of {charge} is corrupt: {e}"));
        match store
            .get(REFUNDS, &key(&[charge]))
            .map_err(HandleError::Storage)?
        {
            None => Ok(ChargeRefunds::default()),
            // Before refunds were kept per object, the state was the total
            // alone, all of it posted as one growth: unmatched.
            Some(raw) if !raw.starts_with('{') => {
                let total: i64 = raw.parse().map_err(|e| corrupt(format!("{e}")))?;
                Ok(ChargeRefunds {
                    total,
                    unmatched: total,
                    ..ChargeRefunds::default()
                })
            }
            Some(raw) => serde_json::from_str(&raw).map_err(|e| corrupt(e.to_string())),
        }
    }

    fn save(&self, store: &mut dyn StateStore, charge: &str) -> Result<(), HandleError> {
        let raw = serde_json::to_string(self).expect("refund state serializes");
        store
            .put(REFUNDS, &key(&[charge]), &raw)
            .map_err(HandleError::Storage)
    }

    fn matched(&self) -> Result<i64, HandleError> {
        self.refunds
            .values()
            .try_fold(0i64, |sum, r| sum.checked_add(r.amount))
            .ok_or_else(|| HandleError::Malformed("refund amounts overflow".into()))
    }
}

/// Where one charge's refunds are posted: its currency and ledger.
struct Book<'a> {
    charge: &'a str,
    currency: String,
    ledger: String,
    at: i64,
}

impl Book<'_> {
    fn post(
        &self,
        store: &mut dyn StateStore,
        id: String,
        source: &str,
        description: String,
        movement: ledger::Transfer,
    ) -> Result<(), HandleError> {
        let posting = ledger::Posting {
            id,
            tenant: self.ledger.clone(),
            currency: self.currency.clone(),
            description,
            at: self.at,
            source: Some(source.to_string()),
            transfers: vec![movement],
        };
        post_to_ledger(store, posting).map(drop)
    }

    /// Records a refund object in `state` and posts what it adds: the
    /// refund the first time it is seen, its return the first time it is
    /// seen failed.
    fn refund(
        &self,
        store: &mut dyn StateStore,
        state: &mut ChargeRefunds,
        id: &str,
        amount: i64,
        failed: bool,
    ) -> Result<(), HandleError> {
        if amount <= 0 {
            return Err(HandleError::MissingField(format!(
                "refund {id}: amount {amount} must be positive"
            )));
        }
        let seen = state.refunds.get(id).copied();
        // The first amount posted is the one given back if it fails.
        let posted = seen.map_or(amount, |s| s.amount);
        let was_failed = seen.is_some_and(|s| s.failed);
        if seen.is_none() {
            self.post(
                store,
                format!("refund:{id}"),
                id,
                format!("refund {id} on {}", self.charge),
                ledger::Transfer::new("tenant", "customer", amount),
            )?;
        }
        if failed && !was_failed {
            self.post(
                store,
                format!("refund:{id}:failed"),
                id,
                format!("refund {id} on {} failed: money back", self.charge),
                ledger::Transfer::new("customer", "tenant", posted),
            )?;
        }
        state.refunds.insert(
            id.to_string(),
            RefundSeen {
                amount: posted,
                failed: failed || was_failed,
            },
        );
        Ok(())
    }

    /// Brings the unmatched refunds to `max(0, total − Σ refunds)`.
    fn rebalance(
        &self,
        store: &mut dyn StateStore,
        state: &mut ChargeRefunds,
    ) -> Result<(), HandleError> {
        let matched = state.matched()?;
        let target = (state.total - matched).max(0);
        let delta = target - state.unmatched;
        if delta != 0 {
            // (total, matched) only grow, so each pair names one posting.
            let id = format!(
                "{}:refunds-unmatched:{}:{matched}",
                self.charge, state.total
            );
            let (from, to) = if delta > 0 {
                ("tenant", "customer")
            } else {
                ("customer", "tenant")
            };
            let description = if delta > 0 {
                format!(
                    "refund on {} not matched to a refund object yet",
                    self.charge
                )
            } else {
                format!("refund on {} matched to its refund objects", self.charge)
            };
            let movement = ledger::Transfer::new(from, to, delta.abs());
            self.post(store, id, self.charge, description, movement)?;
            state.unmatched = target;
        }
        debug_assert_eq!(state.unmatched, (state.total - state.matched()?).max(0));
        Ok(())
    }
}

fn failed_status(status: &str) -> bool {
    matches!(status, "failed" | "canceled")
}

/// A refund object's status (`refund.*`, `charge.refund.updated`): posts the
/// refund once, and gives it back if it failed or was canceled.
pub(super) fn refund_changed(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let status = ctx.req_str("status")?;
    let amount = ctx.money("amount")?;
    if let Err(stale) = advance(store, &REFUND, &id, &status, ctx.created)? {
        return Ok(Err(stale));
    }
    let payment_intent = id_at(ctx.object, &["payment_intent"]);
    let charge = id_at(ctx.object, &["charge"]);
    let (tenant, ledger_owner) = owner_of(ctx, store, payment_intent.as_deref())?;
    if let Some(charge) = &charge {
        let book = Book {
            charge,
            currency: amount.currency.clone(),
            ledger: ledger_owner,
            at: ctx.created,
        };
        let mut state = ChargeRefunds::load(store, charge)?;
        book.refund(
            store,
            &mut state,
            &id,
            amount.amount,
            failed_status(&status),
        )?;
        book.rebalance(store, &mut state)?;
        state.save(store, charge)?;
    }
    let update = RefundUpdate {
        refund: id,
        charge,
        tenant,
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

/// `charge.refunded` carries the charge's cumulative `amount_refunded`, so
/// the refund reported is its growth since the largest total applied:
/// partial refunds accumulate, a repeat applies nothing, and an older total
/// arriving late is stale. Refund objects listed on the charge (older API
/// versions) are posted as such; the rest of the total waits, unmatched,
/// for its refund objects.
pub(super) fn refund_recorded(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let total = ctx.money("amount_refunded")?;
    let charged = ctx.req_i64("amount")?;
    let mut state = ChargeRefunds::load(store, &id)?;
    let before = state.total;
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
    let payment_intent = id_at(ctx.object, &["payment_intent"]);
    // Charges do not always repeat the payment's metadata.
    let (tenant, ledger_owner) = owner_of(ctx, store, payment_intent.as_deref())?;
    let book = Book {
        charge: &id,
        currency: total.currency.clone(),
        ledger: ledger_owner,
        at: ctx.created,
    };
    state.total = total.amount;
    let listed = at(ctx.object, &["refunds", "data"]).and_then(Value::as_array);
    for refund in listed.into_iter().flatten() {
        // Another charge's refunds (a sample object) are not this charge's.
        let on_this_charge = str_at(refund, &["charge"]).is_none_or(|c| c == id);
        let (Some(re), Some(amount), true) = (
            str_at(refund, &["id"]),
            refund.get("amount").and_then(Value::as_i64),
            on_this_charge,
        ) else {
            continue;
        };
        let failed = str_at(refund, &["status"]).is_some_and(failed_status);
        book.refund(store, &mut state, re, amount, failed)?;
    }
    book.rebalance(store, &mut state)?;
    state.save(store, &id)?;
    let effect = RefundRecorded {
        charge: id,
        payment_intent,
        amount: Money::new(total.amount - before, total.currency.clone()),
        full: total.amount == charged,
        total_refunded: total,
        tenant,
        account: ctx.account.clone(),
        reference: ctx.reference(),
    };
    Ok(Ok(vec![Effect::RefundRecorded(effect)]))
}

/// `application_fee.refunded`: the platform gives part of its application
/// fee back to the tenant (a refund with `refund_application_fee`, or the
/// platform's own fee refund). `amount_refunded` is cumulative, so the
/// growth since the largest total applied is posted platform → tenant, to
/// the ledger of the tenant the fee's connected account is registered to.
pub(super) fn application_fee_refunded(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let total = ctx.money("amount_refunded")?;
    let fee = ctx.req_i64("amount")?;
    let key = key(&[&id]);
    let before: i64 = match store.get(FEE_REFUNDS, &key).map_err(HandleError::Storage)? {
        Some(raw) => raw.parse().map_err(|e| {
            HandleError::Storage(format!("fee refund state of {id} is corrupt: {e}"))
        })?,
        None => 0,
    };
    if total.amount <= before {
        return Ok(Err(format!(
            "stale: application fee {id} already has {before} refunded, this event says {}",
            total.amount
        )));
    }
    if total.amount > fee {
        return Err(HandleError::MissingField(format!(
            "data.object.amount_refunded: {} exceeds the fee's amount {fee}",
            total.amount
        )));
    }
    // The fee's `account` is the connected account that paid it; the
    // event itself comes from the platform.
    let account = id_at(ctx.object, &["account"]);
    let registered = super::registered_tenant(store, account.as_deref())?;
    let tenant = registered.or_else(|| ctx.tenant());
    let ledger_owner = super::ledger_tenant(tenant.as_deref(), account.as_deref());
    store
        .put(FEE_REFUNDS, &key, &total.amount.to_string())
        .map_err(HandleError::Storage)?;
    let amount = Money::new(total.amount - before, total.currency.clone());
    let posting = ledger::Posting {
        id: format!("{id}:refunded:{}", total.amount),
        tenant: ledger_owner,
        currency: total.currency.clone(),
        description: format!("application fee {id} refunded"),
        at: ctx.created,
        // The charge the fee was taken on: the payment's other money.
        source: Some(id_at(ctx.object, &["charge"]).unwrap_or_else(|| id.clone())),
        transfers: vec![ledger::Transfer::new("platform", "tenant", amount.amount)],
    };
    post_to_ledger(store, posting)?;
    Ok(Ok(vec![Effect::ApplicationFeeRefunded(
        ApplicationFeeRefund {
            application_fee: id,
            charge: id_at(ctx.object, &["charge"]),
            amount,
            total_refunded: total,
            tenant,
            account,
        },
    )]))
}

/// The statuses of a refund, in order.
pub(super) const REFUND: Lifecycle = Lifecycle {
    kind: "refund",
    rank: |status| match status {
        "failed" | "canceled" => FINAL,
        "succeeded" => 2,
        _ => 1,
    },
};

#[cfg(test)]
mod tests {
    use crate::effects::Effect;
    use crate::ledger;
    use crate::mapping::handle;
    use crate::mapping::tests::event;
    use crate::state::{MemoryState, StateStore};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    fn payment() -> Vec<u8> {
        let pi = json!({"id": "pi_1", "object": "payment_intent", "amount": 10000,
            "amount_received": 10000, "currency": "usd", "status": "succeeded",
            "application_fee_amount": 250, "metadata": {"tenant_id": "t_1"}});
        event("evt_p", "payment_intent.succeeded", 10, pi)
    }

    fn refund(id: &str, amount: i64, status: &str) -> Value {
        json!({"id": id, "object": "refund", "amount": amount, "currency": "usd",
               "charge": "ch_1", "payment_intent": "pi_1", "status": status, "metadata": {}})
    }

    fn charge(refunded: i64, listed: &[Value]) -> Value {
        json!({"id": "ch_1", "object": "charge", "amount": 10000, "amount_refunded": refunded,
               "currency": "usd", "payment_intent": "pi_1", "metadata": {},
               "refunds": {"object": "list", "data": listed}})
    }

    fn balances(s: &mut MemoryState) -> BTreeMap<String, i64> {
        ledger::book(s, "t_1").unwrap().balances["usd"].clone()
    }

    /// Every order of `events` after the payment: the balances each ends at.
    fn in_every_order(events: &[Vec<u8>]) -> Vec<BTreeMap<String, i64>> {
        fn permutations(n: usize) -> Vec<Vec<usize>> {
            if n == 0 {
                return vec![vec![]];
            }
            let mut out = vec![];
            for p in permutations(n - 1) {
                for at in 0..=p.len() {
                    let mut q = p.clone();
                    q.insert(at, n - 1);
                    out.push(q);
                }
            }
            out
        }
        permutations(events.len())
            .into_iter()
            .map(|order| {
                let mut s = MemoryState::default();
                handle(&payment(), &mut s).unwrap();
                for i in order {
                    handle(&events[i], &mut s).unwrap();
                }
                balances(&mut s)
            })
            .collect()
    }

    #[test]
    fn a_failed_refund_gives_its_own_posting_back_in_any_order() {
        let events = [
            event(
                "evt_1",
                "refund.created",
                20,
                refund("re_1", 3_000, "pending"),
            ),
            event("evt_2", "charge.refunded", 21, charge(3_000, &[])),
            event(
                "evt_3",
                "refund.failed",
                30,
                refund("re_1", 3_000, "failed"),
            ),
        ];
        for got in in_every_order(&events) {
            // As if nothing was refunded: the payment's own postings.
            assert_eq!(got["customer"], -10_000, "{got:?}");
            assert_eq!(got["tenant"], 9_750, "{got:?}");
            assert_eq!(got["platform"], 250, "{got:?}");
        }
        let mut s = MemoryState::default();
        handle(&payment(), &mut s).unwrap();
        for e in &events {
            handle(e, &mut s).unwrap();
        }
        let ids: Vec<String> = ledger::transactions(&mut s, "t_1", 0, 10)
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert!(ids.contains(&"refund:re_1".to_string()), "{ids:?}");
        assert!(ids.contains(&"refund:re_1:failed".to_string()), "{ids:?}");
    }

    #[test]
    fn the_charge_total_and_its_refund_objects_post_each_refund_once() {
        let events = [
            event(
                "evt_1",
                "refund.created",
                20,
                refund("re_1", 3_000, "succeeded"),
            ),
            event("evt_2", "charge.refunded", 21, charge(3_000, &[])),
            event(
                "evt_3",
                "refund.created",
                30,
                refund("re_2", 2_000, "pending"),
            ),
            event("evt_4", "charge.refunded", 31, charge(5_000, &[])),
            event(
                "evt_5",
                "refund.updated",
                40,
                refund("re_2", 2_000, "succeeded"),
            ),
        ];
        for got in in_every_order(&events) {
            assert_eq!(got["customer"], -5_000, "{got:?}");
            assert_eq!(got["tenant"], 4_750, "{got:?}");
        }
        // The charge alone (no refund objects subscribed to): its total.
        let alone = in_every_order(&events[3..4]);
        assert_eq!(alone[0]["customer"], -5_000);
        // Refunds listed on the charge (older API versions) are posted by id.
        let mut s = MemoryState::default();
        handle(&payment(), &mut s).unwrap();
        let listed = [
            refund("re_1", 3_000, "succeeded"),
            refund("re_2", 2_000, "succeeded"),
        ];
        handle(
            &event("evt_6", "charge.refunded", 31, charge(5_000, &listed)),
            &mut s,
        )
        .unwrap();
        handle(&events[0], &mut s).unwrap();
        assert_eq!(balances(&mut s)["customer"], -5_000);
        let txs = ledger::transactions(&mut s, "t_1", 0, 10).unwrap();
        assert_eq!(
            txs.len(),
            3,
            "the payment and two refunds, nothing unmatched"
        );
    }

    #[test]
    fn an_application_fee_refund_goes_back_to_the_tenant_once() {
        let mut s = MemoryState::default();
        handle(&payment(), &mut s).unwrap();
        // The fee's connected account is registered to t_1.
        s.put(
            super::super::TENANTS,
            &crate::state::key(&["acct_1"]),
            "t_1",
        )
        .unwrap();
        let fee = |total: i64| {
            json!({"id": "fee_1", "object": "application_fee", "amount": 250,
                   "amount_refunded": total, "currency": "usd", "account": "acct_1",
                   "charge": "ch_1"})
        };
        let half = event("evt_f1", "application_fee.refunded", 20, fee(125));
        let all = event("evt_f2", "application_fee.refunded", 30, fee(250));
        let fx = handle(&half, &mut s).unwrap();
        assert!(
            matches!(&fx[0], Effect::ApplicationFeeRefunded(f) if f.amount.amount == 125 && f.tenant.as_deref() == Some("t_1")),
            "{fx:?}"
        );
        handle(&all, &mut s).unwrap();
        handle(&half, &mut s).unwrap();
        let got = balances(&mut s);
        assert_eq!(got["platform"], 0, "{got:?}");
        assert_eq!(got["tenant"], 10_000, "{got:?}");
        let over = event("evt_f3", "application_fee.refunded", 40, fee(251));
        assert!(handle(&over, &mut s).is_err());
    }
}
