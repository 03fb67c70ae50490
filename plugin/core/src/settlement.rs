//! Settlement of a succeeded payment: what Stripe's balance transaction for
//! its charge says Stripe took. The mapping posts a payment's gross and its
//! application fee from the event alone; Stripe's processing fee is only in
//! the balance transaction, which a settlement job reads afterwards (the
//! host runs it with the Stripe capability) and hands to [`settle`].
//!
//! The fee is posted once per payment (`<pi>:processor-fee`) to the ledger
//! the payment was posted to: tenant → processor for direct and platform
//! charges, platform → processor for destination charges, where the
//! platform's balance pays Stripe.
//!
//! Knows nothing about Stripe's API or how the job is scheduled.

use crate::effects::PaymentSettled;
use crate::ledger;
use crate::mapping::{self, HandleError};
use crate::money::Money;
use crate::state::StateStore;

/// A balance transaction, as Stripe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceTransaction {
    /// The id (`txn_...`).
    pub id: String,
    /// The gross amount in the balance's currency.
    pub amount: Money,
    /// Every fee taken, minor units.
    pub fee: i64,
    /// amount − fee, minor units.
    pub net: i64,
    /// The fee's parts: (Stripe's type, amount).
    pub fee_details: Vec<(String, i64)>,
    /// Unix seconds at which the net is available.
    pub available_on: i64,
}

/// The payment being settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The payment intent (`pi_...`).
    pub payment_intent: String,
    /// Its charge (`ch_...`).
    pub charge: String,
    /// The charge's currency.
    pub currency: String,
    /// The connected account of a direct charge.
    pub account: Option<String>,
    /// A destination charge: the platform pays Stripe's fee.
    pub destination: bool,
    /// Unix seconds at which the fee is posted.
    pub at: i64,
}

/// Why a payment cannot be settled (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// The payment's own posting is not in the ledger yet: try again later.
    #[error("payment {0} is not posted yet")]
    NotPosted(String),
    /// Stripe's figures do not hold together.
    #[error("balance transaction {0}")]
    Invalid(String),
    /// The state store failed underneath.
    #[error("storage failed: {0}")]
    Storage(String),
}

/// Stripe's own fees in `bt`: every part but the application fee (posted
/// with the payment), or the whole fee when Stripe lists no parts.
pub fn processor_fee(bt: &BalanceTransaction) -> Result<i64, SettleError> {
    let fee = if bt.fee_details.is_empty() {
        bt.fee
    } else {
        bt.fee_details
            .iter()
            .filter(|(kind, _)| kind != "application_fee")
            .try_fold(0i64, |sum, (_, a)| sum.checked_add(*a))
            .ok_or_else(|| SettleError::Invalid(format!("{}: fees overflow", bt.id)))?
    };
    if !(0..=bt.fee).contains(&fee) || bt.amount.amount.checked_sub(bt.fee) != Some(bt.net) {
        return Err(SettleError::Invalid(format!(
            "{}: amount {}, fee {}, net {} and Stripe's part {fee} do not add up",
            bt.id, bt.amount.amount, bt.fee, bt.net
        )));
    }
    Ok(fee)
}

/// Posts Stripe's fee on `payment` (once) and describes the settlement.
/// A balance transaction in another currency than the charge (a converted
/// payment) is reported but not posted: the ledger has no exchange account.
pub fn settle(
    store: &mut dyn StateStore,
    payment: &Payment,
    bt: &BalanceTransaction,
) -> Result<PaymentSettled, SettleError> {
    let fee = processor_fee(bt)?;
    let (tenant, ledger_owner) = mapping::payment_owner(store, &payment.payment_intent)
        .map_err(|e| match e {
            HandleError::Storage(s) => SettleError::Storage(s),
            other => SettleError::Invalid(other.to_string()),
        })?
        .ok_or_else(|| SettleError::NotPosted(payment.payment_intent.clone()))?;
    let paid_by = if payment.destination {
        "platform"
    } else {
        "tenant"
    };
    let currency = bt.amount.currency.to_ascii_lowercase();
    if fee > 0 && currency.eq_ignore_ascii_case(&payment.currency) {
        let posting = ledger::Posting {
            id: format!("{}:processor-fee", payment.payment_intent),
            tenant: ledger_owner,
            currency: currency.clone(),
            description: format!("Stripe's fee on {} ({})", payment.charge, bt.id),
            at: payment.at,
            source: Some(payment.payment_intent.clone()),
            transfers: vec![ledger::Transfer::new(paid_by, "processor", fee)],
        };
        match ledger::post(store, posting) {
            // A repeat (the job run twice) posts nothing more.
            Ok(_) => {}
            // Another fee under the same id: a contradiction, never a silent success.
            Err(ledger::LedgerError::Conflict(why)) => {
                return Err(SettleError::Invalid(format!("{}: {why}", bt.id)));
            }
            Err(ledger::LedgerError::Storage(e)) => return Err(SettleError::Storage(e)),
            Err(e) => return Err(SettleError::Invalid(format!("{}: {e}", bt.id))),
        }
    }
    Ok(PaymentSettled {
        payment_intent: payment.payment_intent.clone(),
        charge: payment.charge.clone(),
        balance_transaction: bt.id.clone(),
        gross: Money::new(bt.amount.amount, currency.clone()),
        processor_fee: Money::new(fee, currency.clone()),
        net: Money::new(bt.net, currency),
        available_on: bt.available_on,
        paid_by: paid_by.into(),
        tenant,
        account: payment.account.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::handle;
    use crate::state::MemoryState;
    use serde_json::json;

    /// Seed 000: $100.00 by card, 2.5 % application fee; Stripe's fee is
    /// 2.9 % + 30¢ = $3.20, and the connected account's balance transaction
    /// lists both fees.
    fn seed_000() -> (MemoryState, BalanceTransaction) {
        let mut s = MemoryState::default();
        let pi = json!({"id": "pi_000", "object": "payment_intent", "amount": 10000,
            "amount_received": 10000, "currency": "usd", "status": "succeeded",
            "application_fee_amount": 250, "latest_charge": "ch_000",
            "metadata": {"tenant_id": "t_000"}});
        let body = json!({"id": "evt_000", "object": "event", "type": "payment_intent.succeeded",
            "created": 10, "account": "acct_000", "data": {"object": pi}});
        handle(body.to_string().as_bytes(), &mut s).unwrap();
        let bt = BalanceTransaction {
            id: "txn_000".into(),
            amount: Money::new(10_000, "usd"),
            fee: 570,
            net: 9_430,
            fee_details: vec![("stripe_fee".into(), 320), ("application_fee".into(), 250)],
            available_on: 1_000,
        };
        (s, bt)
    }

    fn payment(destination: bool) -> Payment {
        Payment {
            payment_intent: "pi_000".into(),
            charge: "ch_000".into(),
            currency: "usd".into(),
            account: Some("acct_000".into()),
            destination,
            at: 20,
        }
    }

    #[test]
    fn seed_000_leaves_the_tenant_at_94_30_once() {
        let (mut s, bt) = seed_000();
        let settled = settle(&mut s, &payment(false), &bt).unwrap();
        assert_eq!(settled.processor_fee.amount, 320);
        assert_eq!(settled.net.amount, 9_430);
        settle(&mut s, &payment(false), &bt).unwrap();
        let usd = &ledger::book(&mut s, "t_000").unwrap().balances["usd"];
        assert_eq!(usd["tenant"], 9_430);
        assert_eq!(usd["processor"], 320);
        assert_eq!(usd["platform"], 250);
        assert_eq!(usd["customer"], -10_000);
    }

    #[test]
    fn a_destination_charges_fee_is_the_platforms() {
        let (mut s, mut bt) = seed_000();
        bt.fee = 320;
        bt.net = 9_680;
        bt.fee_details = vec![("stripe_fee".into(), 320)];
        let settled = settle(&mut s, &payment(true), &bt).unwrap();
        assert_eq!(settled.paid_by, "platform");
        let usd = &ledger::book(&mut s, "t_000").unwrap().balances["usd"];
        assert_eq!(usd["tenant"], 9_750);
        assert_eq!(usd["platform"], 250 - 320);
    }

    #[test]
    fn figures_that_do_not_add_up_or_an_unposted_payment_are_refused() {
        let (mut s, mut bt) = seed_000();
        bt.net = 9_431;
        assert!(matches!(
            settle(&mut s, &payment(false), &bt),
            Err(SettleError::Invalid(_))
        ));
        let (_, bt) = seed_000();
        let mut empty = MemoryState::default();
        assert!(matches!(
            settle(&mut empty, &payment(false), &bt),
            Err(SettleError::NotPosted(_))
        ));
        // Another currency: reported, not posted.
        let (mut s, mut bt) = seed_000();
        bt.amount.currency = "eur".into();
        settle(&mut s, &payment(false), &bt).unwrap();
        assert!(
            !ledger::book(&mut s, "t_000")
                .unwrap()
                .balances
                .contains_key("eur")
        );
    }
}
