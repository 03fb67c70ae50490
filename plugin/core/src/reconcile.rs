//! Reconciliation: a tenant's ledger against Stripe's balance transactions,
//! the record of what Stripe actually moved.
//!
//! The ledger and Stripe split money differently: the ledger posts a
//! payment as customer → tenant with the application fee to the platform
//! in one transaction, while Stripe writes a `charge` on the connected
//! account and an `application_fee` on the platform (or, for a destination
//! charge, a `charge` and a `transfer` on the platform and a `payment` on
//! the connected account). So both sides are compared per **Stripe object
//! the money belongs to** (the key), not per row:
//! - a balance transaction's key is its source, followed up the links its
//!   expanded source names: a charge → its payment intent, a connected
//!   account's `py_` payment → the transfer that made it → the charge that
//!   transfer came from, an application fee → its charge, a fee refund →
//!   its fee, a transfer reversal → its transfer. Refunds (`re_`),
//!   disputes, payouts and transfers without a source charge are keys of
//!   their own.
//! - a ledger transaction's key is its recorded `source`, followed up the
//!   same links (an application-fee refund is posted with its charge).
//!
//! Per key and currency two figures are compared:
//! - **net**: Stripe's `net` summed over the tenant's balances (its
//!   connected account and what of the platform's belongs to it), against
//!   what the ledger's accounts held inside Stripe gained: every account
//!   but the outside parties (`customer`, `customer:<id>`, `processor`,
//!   `paid_out`). Money moved between the platform and the tenant nets to
//!   zero on both sides.
//! - **Stripe's fee**: the fee parts other than the application fee,
//!   against what the ledger paid `processor`.
//!
//! Knows nothing about how the transactions are listed (paging, the
//! `Stripe-Account` header) or how the report is printed.

use crate::event::{id_at, str_at};
use crate::ledger::Transaction;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The balance a transaction was listed on: the platform's own.
pub const PLATFORM: &str = "platform";

/// One of Stripe's balance transactions, with what its expanded source
/// says about where the money belongs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StripeTxn {
    /// The id (`txn_...`).
    pub id: String,
    /// Whose balance: [`PLATFORM`] or the connected account (`acct_...`).
    pub balance: String,
    /// Stripe's `type` (`charge`, `refund`, `application_fee`, `adjustment`...).
    pub kind: String,
    /// The source object's id, when Stripe gives one.
    pub source: Option<String>,
    /// Lowercase ISO currency code.
    pub currency: String,
    /// Gross amount, minor units.
    pub amount: i64,
    /// Stripe's own fees: every fee part but the application fee.
    pub stripe_fee: i64,
    /// amount − every fee, minor units.
    pub net: i64,
    /// Unix seconds.
    pub created: i64,
    /// (object, the object it belongs to) pairs the expanded source names.
    #[serde(skip)]
    pub links: Vec<(String, String)>,
    /// Connected accounts and tenants the source names (a destination, the
    /// account an application fee came from, `metadata.tenant_id`).
    #[serde(skip)]
    pub parties: Vec<String>,
}

/// Reads one balance transaction as Stripe lists it with
/// `expand[]=data.source`, listed on `balance` ([`PLATFORM`] or an
/// `acct_...`). An unexpanded source (a plain id) is kept, without links.
pub fn stripe_txn(balance: &str, bt: &Value) -> Result<StripeTxn, String> {
    let id = str_at(bt, &["id"])
        .filter(|id| id.starts_with("txn_"))
        .ok_or("a balance transaction without a txn_ id")?
        .to_string();
    let int = |field: &str| {
        bt.get(field)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("{id}: {field} is missing or not an integer"))
    };
    let (amount, fee, net, created) = (int("amount")?, int("fee")?, int("net")?, int("created")?);
    if amount.checked_sub(fee) != Some(net) {
        return Err(format!(
            "{id}: amount {amount} − fee {fee} is not net {net}"
        ));
    }
    let mut application_fee = 0i64;
    if let Some(details) = bt.get("fee_details").and_then(Value::as_array) {
        for d in details {
            if str_at(d, &["type"]) == Some("application_fee") {
                application_fee += d.get("amount").and_then(Value::as_i64).unwrap_or(0);
            }
        }
    }
    let currency = str_at(bt, &["currency"])
        .ok_or_else(|| format!("{id}: currency is missing"))?
        .to_ascii_lowercase();
    let source = bt.get("source");
    let source_id = source.and_then(|_| id_at(bt, &["source"]));
    let mut links = Vec::new();
    let mut parties = Vec::new();
    if let (Some(obj @ Value::Object(_)), Some(sid)) = (source, &source_id) {
        let mut link = |field: &[&str]| {
            if let Some(to) = id_at(obj, field) {
                links.push((sid.clone(), to));
            }
        };
        match str_at(obj, &["object"]) {
            Some("charge") => {
                link(&["source_transfer"]);
                link(&["payment_intent"]);
            }
            Some("application_fee") => link(&["charge"]),
            Some("fee_refund") => link(&["fee"]),
            Some("transfer") => link(&["source_transaction"]),
            Some("transfer_reversal") => link(&["transfer"]),
            _ => {}
        }
        for field in [
            &["transfer_data", "destination"][..],
            &["on_behalf_of"],
            &["account"],
            &["destination"],
            &["metadata", "tenant_id"],
        ] {
            if let Some(p) = id_at(obj, field) {
                parties.push(p);
            }
        }
    }
    Ok(StripeTxn {
        kind: str_at(bt, &["type"]).unwrap_or("unknown").to_string(),
        balance: balance.to_string(),
        source: source_id,
        currency,
        amount,
        stripe_fee: fee - application_fee,
        net,
        created,
        links,
        parties,
        id,
    })
}

/// How one key compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Both sides agree on net and Stripe's fee.
    Matched,
    /// Stripe moved money the ledger does not have.
    MissingInLedger,
    /// The ledger has money Stripe did not move.
    MissingAtStripe,
    /// Both sides have it, with another net or fee.
    Differs,
}

/// One side's figures for a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Side {
    /// Net into the tenant's money held at Stripe, minor units.
    pub net: i64,
    /// Stripe's own fees, minor units.
    pub fee: i64,
    /// The rows behind it: balance transaction ids, or ledger transaction ids.
    pub ids: Vec<String>,
}

/// One Stripe object's money, both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Line {
    /// The object the money belongs to (`pi_`, `re_`, `du_`, `tr_`, `po_`...).
    pub key: String,
    /// Lowercase ISO currency code.
    pub currency: String,
    /// How the sides compare.
    pub status: Status,
    /// What Stripe's balance transactions say.
    pub stripe: Side,
    /// What the ledger says.
    pub ledger: Side,
}

/// One currency's totals, side by side.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Totals {
    /// Lowercase ISO currency code.
    pub currency: String,
    /// Σ Stripe net.
    pub stripe_net: i64,
    /// Σ ledger net (accounts held inside Stripe).
    pub ledger_net: i64,
    /// Σ Stripe's own fees.
    pub stripe_fee: i64,
    /// Σ what the ledger paid `processor`.
    pub ledger_fee: i64,
}

/// A tenant's reconciliation for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    /// Whose ledger.
    pub tenant: String,
    /// Unix seconds, inclusive.
    pub from: i64,
    /// Unix seconds, exclusive.
    pub to: i64,
    /// One line per key and currency, sorted by currency then key.
    pub lines: Vec<Line>,
    /// Per currency.
    pub totals: Vec<Totals>,
}

impl Report {
    /// How many lines are not [`Status::Matched`].
    pub fn differences(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.status != Status::Matched)
            .count()
    }
}

/// Accounts whose money is outside Stripe's balances: the customers',
/// Stripe's own, and what left through transfers and payouts.
fn outside(account: &str) -> bool {
    matches!(account, "customer" | "processor" | "paid_out") || account.starts_with("customer:")
}

/// Follows `links` from `id` to the object its money belongs to.
fn resolve<'a>(links: &'a HashMap<String, String>, id: &'a str) -> &'a str {
    let mut at = id;
    // Links only climb (refund → charge → payment intent), a few hops; the
    // bound guards against a cycle in what Stripe sent.
    for _ in 0..8 {
        match links.get(at) {
            Some(next) if next != at => at = next,
            _ => break,
        }
    }
    at
}

/// Compares `tenant`'s ledger transactions with the balance transactions
/// listed for the period [`from`, `to`): those of its connected
/// `accounts` all count; a platform transaction counts when its source
/// names one of them or the tenant, or its key is one of the ledger's.
/// `stripe` may hold other tenants' platform transactions: their links
/// still help resolve keys.
pub fn reconcile(
    tenant: &str,
    accounts: &[String],
    from: i64,
    to: i64,
    stripe: &[StripeTxn],
    ledger: &[Transaction],
) -> Report {
    let links: HashMap<String, String> = stripe
        .iter()
        .flat_map(|t| t.links.iter().cloned())
        .collect();
    type Group = (Side, Side, bool, bool);
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut ledger_keys = BTreeSet::new();
    for tx in ledger
        .iter()
        .filter(|t| t.tenant == tenant && (from..to).contains(&t.at))
    {
        let (mut net, mut fee) = (0i64, 0i64);
        for leg in &tx.legs {
            let delta = leg.debit - leg.credit;
            if leg.account == "processor" {
                fee += delta;
            }
            if !outside(&leg.account) {
                net += delta;
            }
        }
        let key = match &tx.source {
            Some(s) => resolve(&links, s).to_string(),
            // Posted by the application (an escrow stage): only money
            // that crossed Stripe's edge needs a Stripe object.
            None if net == 0 && fee == 0 => continue,
            None => format!("ledger:{}", tx.id),
        };
        ledger_keys.insert(key.clone());
        let g = groups.entry((tx.currency.clone(), key)).or_default();
        g.1.net += net;
        g.1.fee += fee;
        g.1.ids.push(tx.id.clone());
        g.3 = true;
    }
    for bt in stripe.iter().filter(|t| (from..to).contains(&t.created)) {
        let key = resolve(&links, bt.source.as_deref().unwrap_or(&bt.id)).to_string();
        let ours = accounts.contains(&bt.balance)
            || (bt.balance == PLATFORM
                && (bt
                    .parties
                    .iter()
                    .any(|p| p == tenant || accounts.contains(p))
                    || ledger_keys.contains(&key)));
        if !ours {
            continue;
        }
        let g = groups.entry((bt.currency.clone(), key)).or_default();
        g.0.net += bt.net;
        g.0.fee += bt.stripe_fee;
        g.0.ids.push(bt.id.clone());
        g.2 = true;
    }
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    let lines = groups
        .into_iter()
        .map(
            |((currency, key), (stripe, ledger, at_stripe, in_ledger))| {
                let t = totals.entry(currency.clone()).or_insert_with(|| Totals {
                    currency: currency.clone(),
                    ..Totals::default()
                });
                t.stripe_net += stripe.net;
                t.stripe_fee += stripe.fee;
                t.ledger_net += ledger.net;
                t.ledger_fee += ledger.fee;
                let status = match (at_stripe, in_ledger) {
                    (true, false) => Status::MissingInLedger,
                    (false, true) if ledger.net == 0 && ledger.fee == 0 => Status::Matched,
                    (false, true) => Status::MissingAtStripe,
                    _ if stripe.net == ledger.net && stripe.fee == ledger.fee => Status::Matched,
                    _ => Status::Differs,
                };
                debug_assert!(at_stripe || in_ledger, "a group has a side");
                Line {
                    key,
                    currency,
                    status,
                    stripe,
                    ledger,
                }
            },
        )
        .collect();
    Report {
        tenant: tenant.to_string(),
        from,
        to,
        lines,
        totals: totals.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{self, Posting, Transfer};
    use crate::state::MemoryState;
    use serde_json::json;

    fn bt(id: &str, kind: &str, amount: i64, fees: &[(&str, i64)], source: Value) -> Value {
        let fee: i64 = fees.iter().map(|(_, a)| a).sum();
        json!({"id": id, "object": "balance_transaction", "type": kind, "amount": amount,
            "fee": fee, "net": amount - fee, "currency": "usd", "created": 100,
            "fee_details": fees.iter().map(|(t, a)| json!({"type": t, "amount": a})).collect::<Vec<_>>(),
            "source": source})
    }

    fn post(s: &mut MemoryState, id: &str, source: Option<&str>, moves: &[(&str, &str, i64)]) {
        ledger::post(
            s,
            Posting {
                id: id.into(),
                tenant: "t_1".into(),
                currency: "usd".into(),
                description: id.into(),
                at: 100,
                source: source.map(str::to_string),
                transfers: moves
                    .iter()
                    .map(|(f, t, a)| Transfer::new(f, t, *a))
                    .collect(),
            },
        )
        .unwrap();
    }

    fn txs(s: &mut MemoryState) -> Vec<Transaction> {
        ledger::transactions(s, "t_1", 0, 100).unwrap()
    }

    fn accounts() -> Vec<String> {
        vec!["acct_1".to_string()]
    }

    /// Seed 000 as a direct charge: the connected account's charge lists
    /// both fees, the platform's application fee names the charge.
    fn direct() -> (MemoryState, Vec<StripeTxn>) {
        let mut s = MemoryState::default();
        post(
            &mut s,
            "pi_1:payment",
            Some("pi_1"),
            &[("customer", "tenant", 10_000), ("tenant", "platform", 250)],
        );
        post(
            &mut s,
            "pi_1:processor-fee",
            Some("pi_1"),
            &[("tenant", "processor", 320)],
        );
        let stripe = vec![
            stripe_txn("acct_1", &bt("txn_1", "charge", 10_000,
                &[("stripe_fee", 320), ("application_fee", 250)],
                json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_1"}))).unwrap(),
            stripe_txn(PLATFORM, &bt("txn_2", "application_fee", 250, &[],
                json!({"id": "fee_1", "object": "application_fee", "charge": "ch_1", "account": "acct_1"}))).unwrap(),
        ];
        (s, stripe)
    }

    #[test]
    fn a_direct_charge_matches_across_the_two_balances() {
        let (mut s, stripe) = direct();
        let r = reconcile("t_1", &accounts(), 0, 1_000, &stripe, &txs(&mut s));
        assert_eq!(r.differences(), 0, "{r:#?}");
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].key, "pi_1");
        assert_eq!(r.lines[0].stripe.net, 9_680);
        assert_eq!(r.lines[0].stripe.fee, 320);
        assert_eq!(r.totals[0].ledger_net, 9_680);
    }

    #[test]
    fn a_changed_fee_or_a_missing_posting_is_reported() {
        let (mut s, mut stripe) = direct();
        stripe[0].stripe_fee = 330;
        stripe[0].net -= 10;
        let r = reconcile("t_1", &accounts(), 0, 1_000, &stripe, &txs(&mut s));
        assert_eq!(r.lines[0].status, Status::Differs);

        let (mut s, mut stripe) = direct();
        stripe.push(
            stripe_txn(
                "acct_1",
                &bt(
                    "txn_3",
                    "refund",
                    -500,
                    &[],
                    json!({"id": "re_1", "object": "refund", "charge": "ch_1"}),
                ),
            )
            .unwrap(),
        );
        post(
            &mut s,
            "withdraw:w1:paid",
            None,
            &[("withdrawing", "paid_out", 700)],
        );
        let r = reconcile("t_1", &accounts(), 0, 1_000, &stripe, &txs(&mut s));
        let status: BTreeMap<_, _> = r.lines.iter().map(|l| (l.key.as_str(), l.status)).collect();
        assert_eq!(status["re_1"], Status::MissingInLedger);
        assert_eq!(status["ledger:withdraw:w1:paid"], Status::MissingAtStripe);
        assert_eq!(status["pi_1"], Status::Matched);
        assert_eq!(r.differences(), 2);
    }

    #[test]
    fn a_destination_charge_resolves_the_connected_payment_to_its_charge() {
        let mut s = MemoryState::default();
        post(
            &mut s,
            "pi_2:payment",
            Some("pi_2"),
            &[("customer", "tenant", 10_000), ("tenant", "platform", 250)],
        );
        post(
            &mut s,
            "pi_2:processor-fee",
            Some("pi_2"),
            &[("platform", "processor", 320)],
        );
        let stripe = vec![
            stripe_txn(PLATFORM, &bt("txn_1", "charge", 10_000, &[("stripe_fee", 320)],
                json!({"id": "ch_2", "object": "charge", "payment_intent": "pi_2",
                       "transfer_data": {"destination": "acct_1"}}))).unwrap(),
            stripe_txn(PLATFORM, &bt("txn_2", "transfer", -9_750, &[],
                json!({"id": "tr_2", "object": "transfer", "source_transaction": "ch_2", "destination": "acct_1"}))).unwrap(),
            stripe_txn("acct_1", &bt("txn_3", "payment", 9_750, &[],
                json!({"id": "py_2", "object": "charge", "source_transfer": "tr_2"}))).unwrap(),
            // Another tenant's platform charge is not ours.
            stripe_txn(PLATFORM, &bt("txn_4", "charge", 5_000, &[("stripe_fee", 175)],
                json!({"id": "ch_9", "object": "charge", "payment_intent": "pi_9",
                       "transfer_data": {"destination": "acct_9"}}))).unwrap(),
        ];
        let r = reconcile("t_1", &accounts(), 0, 1_000, &stripe, &txs(&mut s));
        assert_eq!(r.differences(), 0, "{r:#?}");
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].stripe.ids, ["txn_1", "txn_2", "txn_3"]);
    }

    #[test]
    fn the_period_and_inside_movements_are_respected() {
        let (mut s, stripe) = direct();
        // Escrow stages move money inside Stripe's balances: nothing to match.
        post(&mut s, "offer:hold", None, &[("tenant", "escrow", 1_000)]);
        let r = reconcile("t_1", &accounts(), 0, 1_000, &stripe, &txs(&mut s));
        assert_eq!(r.differences(), 0, "{r:#?}");
        // Out of the period: neither side counts.
        let r = reconcile("t_1", &accounts(), 200, 1_000, &stripe, &txs(&mut s));
        assert!(r.lines.is_empty(), "{r:#?}");
    }

    #[test]
    fn figures_that_do_not_add_up_are_refused() {
        let mut b = bt(
            "txn_1",
            "charge",
            1_000,
            &[("stripe_fee", 59)],
            json!("ch_1"),
        );
        b["net"] = json!(1_000);
        assert!(stripe_txn("acct_1", &b).unwrap_err().contains("is not net"));
        assert!(stripe_txn("acct_1", &json!({"id": "ch_1"})).is_err());
        // An unexpanded source keeps its id and no links.
        let t = stripe_txn("acct_1", &bt("txn_1", "charge", 1_000, &[], json!("ch_1"))).unwrap();
        assert_eq!((t.source.as_deref(), t.links.len()), (Some("ch_1"), 0));
    }
}
