//! A double-entry ledger per tenant, kept through the storage capability.
//!
//! Every movement of money ("`from` pays `to`", the same parties as the fee
//! lines and escrow plans) becomes two legs of a transaction: a credit to the
//! payer's account and a debit to the payee's. An account's balance is its
//! debits minus its credits, i.e. what it holds: the customer account goes
//! negative by what customers paid, the tenant account holds what the tenant
//! is owed. Invariants, checked on every post:
//! - a transaction is in one currency and its debits equal its credits, so
//!   each tenant's balances in a currency always sum to zero;
//! - amounts are positive minor units and accounts come from [`ACCOUNTS`]
//!   or are a party's ([`PARTY_ACCOUNTS`]: `wallet:<id>`...);
//! - a transaction id is posted once per tenant (a repeat with the same
//!   content returns the first; with other content it is refused);
//! - currency codes are kept in lower case, as Stripe writes them.
//!
//! Storage layout, keys made by [`crate::state::key`] (so a tenant or an id
//! containing `/` cannot reach another tenant's records): `ledger_books`
//! `<tenant>` holds the balances and the next sequence number; `ledger_tx`
//! `<tenant>/<seq>` each transaction; `ledger_ids` `<tenant>/<id>` the
//! sequence of an id. One book per tenant means
//! two events of the same tenant are applied one after the other (the host's
//! optimistic concurrency redoes the later one), never interleaved.

use crate::money;
use crate::state::{StateStore, key};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const BOOKS: &str = "ledger_books";
const TRANSACTIONS: &str = "ledger_tx";
const IDS: &str = "ledger_ids";

/// The accounts of a tenant's ledger.
pub const ACCOUNTS: [&str; 8] = [
    // Whoever pays: goes negative by what customers paid.
    "customer",
    // Stripe's processing fees.
    "processor",
    // Platform revenue: application, platform and service fees.
    "platform",
    // The tenant's balance: what the connected account is owed.
    "tenant",
    // Money held for a marketplace offer until it completes or is cancelled.
    "escrow",
    // What a marketplace contractor is owed until it is paid out.
    "contractor",
    // Held for a withdrawal whose transfer is in flight.
    "withdrawing",
    // Transferred out to connected accounts.
    "paid_out",
];

/// Accounts kept per party, named `<kind>:<party>`: `wallet:<id>` what a
/// customer holds in an application wallet (seed 002), `customer:<id>` and
/// `contractor:<id>` one customer's or contractor's share where a flow
/// names them. A party is 1 to 64 of `A-Z a-z 0-9 _ - .`.
pub const PARTY_ACCOUNTS: [&str; 3] = ["wallet", "customer", "contractor"];

/// Whether `name` is an account of a tenant's ledger: one of [`ACCOUNTS`],
/// or a party's account (see [`PARTY_ACCOUNTS`]).
pub fn is_account(name: &str) -> bool {
    if ACCOUNTS.contains(&name) {
        return true;
    }
    let Some((kind, party)) = name.split_once(':') else {
        return false;
    };
    PARTY_ACCOUNTS.contains(&kind)
        && (1..=64).contains(&party.len())
        && party
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The ledger of payments made to the platform account itself (no tenant).
pub const PLATFORM_TENANT: &str = "_platform";

/// Accounts only psa-billing moves money in: Stripe's fees (from Stripe's
/// records), a withdrawal's hold and what was transferred or paid out.
pub const SERVICE_ACCOUNTS: [&str; 3] = ["processor", "withdrawing", "paid_out"];

/// Prefixes of the transaction ids psa-billing posts under itself, besides
/// Stripe object ids (`pi_...:payment`, `re_...`, `po_...`).
const SERVICE_ID_PREFIXES: [&str; 3] = ["withdraw:", "refund:", "rerouted:"];

/// The prefixes of the Stripe objects whose money psa-billing posts:
/// payments and charges, refunds, disputes, transfers and their reversals,
/// payouts, application fees and their refunds.
const STRIPE_POSTED: [&str; 12] = [
    "pi", "ch", "py", "re", "pyr", "dp", "du", "tr", "trr", "po", "fee", "fr",
];

/// Why an application may not post a transaction with this id or touching
/// this account (the rule named), if it may not: ids psa-billing posts
/// itself (a Stripe object's id, alone or with a suffix; `withdraw:`,
/// `refund:`, `rerouted:`; `...:rerouted`), the accounts in
/// [`SERVICE_ACCOUNTS`] and the platform's own ledger. A hand posting under
/// one of them would turn the service's own later posting into a no-op or
/// a conflict, or move money no balance holds.
pub fn reserved_for_service(tenant: &str, id: &str, accounts: &[&str]) -> Option<String> {
    if tenant == PLATFORM_TENANT {
        return Some(format!("the ledger {PLATFORM_TENANT} is psa-billing's own"));
    }
    if let Some(prefix) = SERVICE_ID_PREFIXES.iter().find(|p| id.starts_with(*p)) {
        return Some(format!("ids starting {prefix:?} are psa-billing's own"));
    }
    if id.ends_with(":rerouted") {
        return Some("ids ending \":rerouted\" are psa-billing's own".into());
    }
    let head = id.split(':').next().unwrap_or(id);
    let stripe_id = head.split_once('_').is_some_and(|(kind, rest)| {
        STRIPE_POSTED.contains(&kind)
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if stripe_id {
        return Some(format!(
            "ids starting with a Stripe object id ({head}) are psa-billing's own postings of that object"
        ));
    }
    accounts
        .iter()
        .find(|a| SERVICE_ACCOUNTS.contains(a))
        .map(|a| format!("the account {a} moves only with Stripe's records"))
}

/// Why a posting or a read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The posting is malformed (empty, negative or overflowing amounts, bad names).
    #[error("invalid ledger transaction: {0}")]
    Invalid(String),
    /// Debits and credits differ.
    #[error("unbalanced ledger transaction: {0}")]
    Unbalanced(String),
    /// The state store failed underneath.
    #[error("ledger storage failed: {0}")]
    Storage(String),
    /// The id was posted before with other movements, currency or
    /// description.
    #[error("{0}")]
    Conflict(String),
}

/// One movement to post: `from` pays `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// The amount.
    pub amount: i64,
}

impl Transfer {
    /// A movement of `amount` from `from` to `to`.
    pub fn new(from: &str, to: &str, amount: i64) -> Transfer {
        Transfer {
            from: from.into(),
            to: to.into(),
            amount,
        }
    }
}

/// One side of a transaction: exactly one of `debit` and `credit` is positive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    /// Ledger account: one of [`ACCOUNTS`], or a party's (see [`PARTY_ACCOUNTS`]).
    pub account: String,
    /// Amount debited, minor units (0 when credited).
    pub debit: i64,
    /// Amount credited, minor units (0 when debited).
    pub credit: i64,
}

/// One posted ledger transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Unique per tenant; posting the same id again changes nothing.
    pub id: String,
    /// Whose ledger.
    pub tenant: String,
    /// Position in the tenant's ledger, from 1.
    pub seq: u64,
    /// Lowercase ISO currency code.
    pub currency: String,
    /// Free text for people reading it.
    pub description: String,
    /// Unix seconds.
    pub at: i64,
    /// The Stripe object whose money this is, if any (see [`Posting::source`]).
    /// Transactions posted before sources were recorded have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// One debit and one credit per movement; debits equal credits.
    pub legs: Vec<Leg>,
}

/// A tenant's balances: currency → account → debits − credits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    /// Currency → account → debits − credits.
    pub balances: BTreeMap<String, BTreeMap<String, i64>>,
    /// The sequence number of the next transaction posted.
    pub next_seq: u64,
}

/// What to post: `post` validates it and turns it into a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    /// Idempotency key: the same id with the same content posts once.
    pub id: String,
    /// Whose ledger.
    pub tenant: String,
    /// Lowercase ISO currency code of every movement.
    pub currency: String,
    /// Free text for people reading it.
    pub description: String,
    /// Unix seconds at which the money moved.
    pub at: i64,
    /// The Stripe object whose money this is (`pi_`, `re_`, `du_`, `tr_`,
    /// `ch_`...), for reconciliation with Stripe's balance transactions;
    /// `None` for movements inside the application (escrow stages).
    pub source: Option<String>,
    /// The movements; each becomes a debit and a credit.
    pub transfers: Vec<Transfer>,
}

/// Turns transfers into legs and checks every invariant but uniqueness.
pub fn legs(posting: &Posting) -> Result<Vec<Leg>, LedgerError> {
    let invalid = |m: String| LedgerError::Invalid(m);
    if posting.id.is_empty() || posting.tenant.is_empty() {
        return Err(invalid("id and tenant must not be empty".into()));
    }
    money::currency(&posting.currency).map_err(|e| invalid(e.to_string()))?;
    if posting.transfers.is_empty() {
        return Err(invalid(
            "a transaction moves some money: no movements".into(),
        ));
    }
    let mut legs = Vec::with_capacity(posting.transfers.len() * 2);
    for t in &posting.transfers {
        for account in [&t.from, &t.to] {
            if !is_account(account) {
                return Err(invalid(format!(
                    "unknown account {account:?} (known: {}, or {} with :<party>)",
                    ACCOUNTS.join(", "),
                    PARTY_ACCOUNTS.join(", ")
                )));
            }
        }
        if t.from == t.to {
            return Err(invalid(format!("{} pays itself", t.from)));
        }
        if t.amount < 0 {
            return Err(invalid(format!(
                "{} → {}: amount {} is negative",
                t.from, t.to, t.amount
            )));
        }
        // A zero movement (a 0% fee) records nothing, but the posting
        // still records that the stage happened.
        if t.amount == 0 {
            continue;
        }
        legs.push(Leg {
            account: t.from.clone(),
            debit: 0,
            credit: t.amount,
        });
        legs.push(Leg {
            account: t.to.clone(),
            debit: t.amount,
            credit: 0,
        });
    }
    check_balanced(&legs)?;
    Ok(legs)
}

/// Debits equal credits, each leg one-sided and non-negative.
pub fn check_balanced(legs: &[Leg]) -> Result<(), LedgerError> {
    let (mut debits, mut credits) = (0i64, 0i64);
    for l in legs {
        if l.debit < 0 || l.credit < 0 || (l.debit > 0) == (l.credit > 0) {
            return Err(LedgerError::Unbalanced(format!(
                "leg on {} must have exactly one positive side (debit {}, credit {})",
                l.account, l.debit, l.credit
            )));
        }
        let overflow = || LedgerError::Invalid("amounts overflow".into());
        debits = debits.checked_add(l.debit).ok_or_else(overflow)?;
        credits = credits.checked_add(l.credit).ok_or_else(overflow)?;
    }
    if debits != credits {
        return Err(LedgerError::Unbalanced(format!(
            "debits {debits} ≠ credits {credits}"
        )));
    }
    Ok(())
}

fn storage(e: String) -> LedgerError {
    LedgerError::Storage(e)
}

fn decode<T: for<'de> Deserialize<'de>>(raw: &str, what: &str) -> Result<T, LedgerError> {
    serde_json::from_str(raw).map_err(|e| LedgerError::Storage(format!("{what} is corrupt: {e}")))
}

/// The tenant's book (empty when nothing was posted).
pub fn book(store: &mut dyn StateStore, tenant: &str) -> Result<Book, LedgerError> {
    match store.get(BOOKS, &key(&[tenant])).map_err(storage)? {
        Some(raw) => decode(&raw, "ledger book"),
        None => Ok(Book::default()),
    }
}

/// Posts a transaction and updates the tenant's balances. Returns the
/// transaction and whether it was new (false: the id was posted before, and
/// the first posting is returned unchanged).
pub fn post(
    store: &mut dyn StateStore,
    posting: Posting,
) -> Result<(Transaction, bool), LedgerError> {
    let mut posting = posting;
    posting.currency.make_ascii_lowercase();
    let legs = legs(&posting)?;
    // Double entry: what one transaction debits, it credits.
    debug_assert_eq!(
        legs.iter().map(|l| i128::from(l.debit)).sum::<i128>(),
        legs.iter().map(|l| i128::from(l.credit)).sum::<i128>(),
        "transaction {} does not balance",
        posting.id
    );
    let id_key = key(&[&posting.tenant, &posting.id]);
    if let Some(seq) = store.get(IDS, &id_key).map_err(storage)? {
        let seq: u64 = decode(&seq, "ledger id")?;
        let tx = transaction(store, &posting.tenant, seq)?
            .ok_or_else(|| LedgerError::Storage(format!("transaction {seq} is missing")))?;
        debug_assert_eq!((&tx.id, &tx.tenant), (&posting.id, &posting.tenant));
        if tx.currency != posting.currency
            || tx.legs != legs
            || tx.description != posting.description
        {
            return Err(LedgerError::Conflict(format!(
                "transaction {:?} was posted before with other movements, currency or description; \
                 a posting id stands for one transaction",
                posting.id
            )));
        }
        return Ok((tx, false));
    }
    let mut book = book(store, &posting.tenant)?;
    let balances = book.balances.entry(posting.currency.clone()).or_default();
    for l in &legs {
        let b = balances.entry(l.account.clone()).or_default();
        *b = b
            .checked_add(l.debit)
            .and_then(|b| b.checked_sub(l.credit))
            .ok_or_else(|| LedgerError::Invalid("balance overflows".into()))?;
    }
    book.next_seq = book.next_seq.max(1);
    let tx = Transaction {
        id: posting.id,
        tenant: posting.tenant,
        seq: book.next_seq,
        currency: posting.currency,
        description: posting.description,
        at: posting.at,
        source: posting.source,
        legs,
    };
    book.next_seq += 1;
    store
        .put(TRANSACTIONS, &tx_key(&tx.tenant, tx.seq), &to_json(&tx))
        .map_err(storage)?;
    store
        .put(IDS, &id_key, &tx.seq.to_string())
        .map_err(storage)?;
    store
        .put(BOOKS, &key(&[&tx.tenant]), &to_json(&book))
        .map_err(storage)?;
    Ok((tx, true))
}

/// What `transfers` do to each account, net (negative: debited): two
/// postings that move the same money compare equal however they are split.
pub fn net_moves(transfers: &[Transfer]) -> std::collections::BTreeMap<String, i128> {
    let mut net = std::collections::BTreeMap::new();
    for t in transfers {
        *net.entry(t.from.clone()).or_insert(0) -= i128::from(t.amount);
        *net.entry(t.to.clone()).or_insert(0) += i128::from(t.amount);
    }
    net.retain(|_, v| *v != 0);
    net
}

/// The movements a transaction was posted from: its legs come in pairs,
/// the payer's credit then the payee's debit (see [`legs`]).
pub fn transfers_of(tx: &Transaction) -> Vec<Transfer> {
    debug_assert!(
        tx.legs.len().is_multiple_of(2),
        "{}: legs come in pairs",
        tx.id
    );
    tx.legs
        .chunks(2)
        .map(|pair| {
            debug_assert!(pair[0].credit > 0 && pair[0].credit == pair[1].debit);
            Transfer::new(&pair[0].account, &pair[1].account, pair[0].credit)
        })
        .collect()
}

fn tx_key(tenant: &str, seq: u64) -> String {
    key(&[tenant, &seq.to_string()])
}

/// The transaction posted under `id` in a tenant's ledger, if any.
pub fn transaction_by_id(
    store: &mut dyn StateStore,
    tenant: &str,
    id: &str,
) -> Result<Option<Transaction>, LedgerError> {
    match store.get(IDS, &key(&[tenant, id])).map_err(storage)? {
        Some(seq) => transaction(store, tenant, decode(&seq, "ledger id")?),
        None => Ok(None),
    }
}

/// One transaction by its position.
pub fn transaction(
    store: &mut dyn StateStore,
    tenant: &str,
    seq: u64,
) -> Result<Option<Transaction>, LedgerError> {
    match store
        .get(TRANSACTIONS, &tx_key(tenant, seq))
        .map_err(storage)?
    {
        Some(raw) => decode(&raw, "ledger transaction").map(Some),
        None => Ok(None),
    }
}

/// Transactions after position `after`, oldest first, at most `limit`.
pub fn transactions(
    store: &mut dyn StateStore,
    tenant: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<Transaction>, LedgerError> {
    let book = book(store, tenant)?;
    let mut out = Vec::new();
    // A cursor past every position reads nothing (never wraps to the start).
    let mut seq = after.saturating_add(1);
    while seq < book.next_seq && out.len() < limit as usize {
        if let Some(tx) = transaction(store, tenant, seq)? {
            out.push(tx);
        }
        seq += 1;
    }
    Ok(out)
}

/// The ledger's own types have string keys and integers: encoding cannot fail.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("ledger types always serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryState;
    use proptest::prelude::*;

    fn posting(id: &str, transfers: Vec<Transfer>) -> Posting {
        Posting {
            id: id.into(),
            tenant: "t_1".into(),
            currency: "usd".into(),
            description: "test".into(),
            at: 0,
            source: None,
            transfers,
        }
    }

    #[test]
    fn the_seed_002_escrow_balances_at_every_stage() {
        let mut s = MemoryState::default();
        // $100 offer, 5% platform fee held, 20% service fee at completion.
        post(
            &mut s,
            posting("hold", vec![Transfer::new("customer", "escrow", 10_500)]),
        )
        .unwrap();
        post(
            &mut s,
            posting("accept", vec![Transfer::new("escrow", "platform", 500)]),
        )
        .unwrap();
        post(
            &mut s,
            posting(
                "complete",
                vec![
                    Transfer::new("escrow", "platform", 2_000),
                    Transfer::new("escrow", "contractor", 8_000),
                ],
            ),
        )
        .unwrap();
        let b = book(&mut s, "t_1").unwrap();
        let usd = &b.balances["usd"];
        assert_eq!(usd["customer"], -10_500);
        assert_eq!(usd["escrow"], 0);
        assert_eq!(usd["platform"], 2_500);
        assert_eq!(usd["contractor"], 8_000);
        assert_eq!(usd.values().sum::<i64>(), 0);
        let txs = transactions(&mut s, "t_1", 0, 10).unwrap();
        assert_eq!(
            txs.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["hold", "accept", "complete"]
        );
        assert_eq!(transactions(&mut s, "t_1", 2, 10).unwrap().len(), 1);
        assert_eq!(transactions(&mut s, "t_1", 0, 1).unwrap().len(), 1);
    }

    #[test]
    fn a_zero_fee_stage_is_recorded_without_legs() {
        let mut s = MemoryState::default();
        let (tx, _) = post(
            &mut s,
            posting("accept", vec![Transfer::new("escrow", "platform", 0)]),
        )
        .unwrap();
        assert!(tx.legs.is_empty());
        assert_eq!(book(&mut s, "t_1").unwrap().next_seq, 2);
    }

    #[test]
    fn a_repeated_id_is_posted_once() {
        let mut s = MemoryState::default();
        let p = posting("pi_1", vec![Transfer::new("customer", "tenant", 100)]);
        let (first, new) = post(&mut s, p.clone()).unwrap();
        assert!(new);
        let (again, new) = post(&mut s, p).unwrap();
        assert!(!new);
        assert_eq!(first, again);
        assert_eq!(book(&mut s, "t_1").unwrap().balances["usd"]["tenant"], 100);
    }

    #[test]
    fn bad_postings_are_refused_and_change_nothing() {
        let mut s = MemoryState::default();
        for (transfers, says) in [
            (
                vec![Transfer::new("customer", "bank", 1)],
                "unknown account",
            ),
            (vec![Transfer::new("tenant", "tenant", 1)], "pays itself"),
            (vec![Transfer::new("customer", "tenant", -1)], "negative"),
            (vec![], "moves some money"),
        ] {
            let err = post(&mut s, posting("x", transfers)).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
        let mut bad_currency = posting("x", vec![Transfer::new("customer", "tenant", 1)]);
        bad_currency.currency = "zzz".into();
        assert!(post(&mut s, bad_currency).is_err());
        assert!(s.entries.is_empty());
        let lopsided = [
            Leg {
                account: "tenant".into(),
                debit: 5,
                credit: 0,
            },
            Leg {
                account: "customer".into(),
                debit: 0,
                credit: 4,
            },
        ];
        assert!(matches!(
            check_balanced(&lopsided),
            Err(LedgerError::Unbalanced(_))
        ));
    }

    proptest! {
        #[test]
        fn balances_always_sum_to_zero(
            moves in proptest::collection::vec((0usize..6, 0usize..6, 1i64..1_000_000), 1..40)
        ) {
            let mut s = MemoryState::default();
            for (i, (from, to, amount)) in moves.iter().enumerate() {
                if from == to { continue; }
                let t = Transfer::new(ACCOUNTS[*from], ACCOUNTS[*to], *amount);
                post(&mut s, posting(&format!("tx{i}"), vec![t])).unwrap();
            }
            let b = book(&mut s, "t_1").unwrap();
            for per_account in b.balances.values() {
                prop_assert_eq!(per_account.values().sum::<i64>(), 0);
            }
            for tx in transactions(&mut s, "t_1", 0, 100).unwrap() {
                prop_assert!(check_balanced(&tx.legs).is_ok());
            }
        }
    }
}
