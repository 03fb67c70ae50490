//! The plugin's ledger as the HTTP API and the CLI post and read it: amounts
//! in major units as text on the way in, minor units plus display text on the
//! way out. Postings are committed by the host like an event's state: all of
//! it or nothing, redone when a concurrent event changed the tenant's book.

use crate::api::quotes::{Amount, amount_of, fee_error_text};
use crate::api::{ApiFailure, settled_or};
use crate::runtime::{LedgerError, Money, Movement, Runtime, Transaction};
use crate::storage::{Attempt, Db, Round, StagedState, until_committed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A transaction to post, e.g. an escrow stage from `quote escrow`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostInput {
    /// Unique per tenant: posting it again changes nothing.
    pub id: String,
    /// What the transaction is for, kept with it.
    #[serde(default)]
    pub description: String,
    /// ISO code of every movement's amount (`usd`).
    pub currency: String,
    /// The money moved; a transaction is their sum, debits equal to credits.
    pub movements: Vec<MovementInput>,
}

/// One movement of a posting: `amount` from one account to another.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MovementInput {
    /// The account debited (`customer`, `tenant`, `escrow`...).
    pub from: String,
    /// The account credited.
    pub to: String,
    /// What the movement is for ("platform_fee"); accepted so that an
    /// escrow plan's movements can be posted as they are, not stored.
    #[serde(default)]
    pub label: String,
    /// Major units as text: "105.00".
    pub amount: String,
}

/// A tenant's balances (`GET /v1/ledger/{tenant}/balances`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Balances {
    /// Whose ledger.
    pub tenant: String,
    /// Currency code → account → balance; accounts that never moved
    /// money in a currency are absent.
    pub balances: BTreeMap<String, BTreeMap<String, Amount>>,
}

/// A page of a tenant's transactions (`GET /v1/ledger/{tenant}/transactions`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransactionPage {
    /// Whose ledger.
    pub tenant: String,
    /// Oldest first.
    pub transactions: Vec<PostedTransaction>,
    /// The `after` of the next page (the last `seq` here, or the `after`
    /// asked for when the page is empty).
    pub next_after: u64,
}

/// A ledger transaction as the API answers it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PostedTransaction {
    /// Unique per tenant: posting an id again returns the first posting.
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
    /// The Stripe object whose money this is (`pi_`, `re_`, `tr_`...);
    /// none for movements the application posts.
    pub source: Option<String>,
    /// One debit and one credit per movement; debits equal credits.
    pub legs: Vec<PostedLeg>,
}

/// One side of a movement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PostedLeg {
    /// The account.
    pub account: String,
    /// Whether the account is debited or credited.
    pub side: LegSide,
    /// How much (positive).
    pub amount: Amount,
}

/// Debit or credit.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LegSide {
    /// Money leaves the account.
    Debit,
    /// Money arrives in the account.
    Credit,
}

/// Longest posting id (Stripe's own ids and idempotency keys fit in 255).
pub const MAX_POSTING_ID_CHARS: usize = 255;
/// Longest posting description.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;
/// Most movements in one posting.
pub const MAX_MOVEMENTS: usize = 100;

/// A tenant as the ledger API takes it: see [`psa_billing_core::mapping::check_tenant`].
pub fn check_tenant(tenant: &str) -> Result<(), ApiFailure> {
    psa_billing_core::mapping::check_tenant(tenant).map_err(ApiFailure::Invalid)
}

/// What the ledger stores of a posting is bounded: refused here with the
/// limit named, rather than by the database.
fn check_posting(input: &PostInput) -> Result<(), ApiFailure> {
    let invalid = |m: String| Err(ApiFailure::Invalid(m));
    let id_chars = input.id.chars().count();
    if input.id.is_empty() || id_chars > MAX_POSTING_ID_CHARS {
        return invalid(format!(
            "id is 1 to {MAX_POSTING_ID_CHARS} characters (got {id_chars})"
        ));
    }
    if input.id.chars().any(char::is_control) {
        return invalid("id must not contain control characters".into());
    }
    let description_chars = input.description.chars().count();
    if description_chars > MAX_DESCRIPTION_CHARS {
        return invalid(format!(
            "description is at most {MAX_DESCRIPTION_CHARS} characters (got {description_chars})"
        ));
    }
    if input.movements.len() > MAX_MOVEMENTS {
        return invalid(format!(
            "a posting has at most {MAX_MOVEMENTS} movements (got {})",
            input.movements.len()
        ));
    }
    Ok(())
}

fn refused(e: LedgerError) -> ApiFailure {
    match e {
        LedgerError::Invalid(m) | LedgerError::Unbalanced(m) => ApiFailure::Invalid(m),
        LedgerError::Conflict(m) => ApiFailure::Conflict(m),
        LedgerError::Storage(m) => ApiFailure::Database(anyhow::anyhow!(m)),
    }
}

fn staged(db: &Db, tenant: &str) -> StagedState {
    StagedState::new(db.clone(), format!("ledger:{tenant}"))
}

/// Posts one transaction to `tenant`'s ledger.
pub async fn post(
    runtime: &Runtime,
    db: &Db,
    tenant: &str,
    input: PostInput,
) -> Result<PostedTransaction, ApiFailure> {
    check_tenant(tenant)?;
    check_posting(&input)?;
    let accounts: Vec<&str> = input
        .movements
        .iter()
        .flat_map(|m| [m.from.as_str(), m.to.as_str()])
        .collect();
    if let Some(why) = psa_billing_core::ledger::reserved_for_service(tenant, &input.id, &accounts)
    {
        return Err(ApiFailure::Invalid(format!("reserved: {why}")));
    }
    let mut movements = Vec::with_capacity(input.movements.len());
    for m in input.movements {
        let amount = runtime
            .parse_amount(&m.amount, &input.currency)
            .await?
            .map_err(|e| {
                ApiFailure::Invalid(format!("{} → {}: {}", m.from, m.to, fee_error_text(e)))
            })?;
        movements.push(Movement {
            from: m.from,
            to: m.to,
            label: m.label,
            amount,
        });
    }
    let label = format!("ledger:{tenant}");
    let settled = until_committed(db, &label, None, |attempt: Attempt| {
        let posting = runtime.ledger_post(
            attempt.staged,
            input.id.clone(),
            tenant.to_string(),
            input.currency.clone(),
            input.description.clone(),
            movements.clone(),
        );
        async move {
            let (posted, staged) = posting.await?;
            // A refused posting ends the loop with nothing committed.
            let tx = posted.map_err(refused)?;
            Ok::<_, ApiFailure>(Round::state(staged, tx))
        }
    })
    .await?;
    settled_or(settled, &label).map(|tx| answer(&tx))
}

/// `tenant`'s balances: currency → account → amount.
pub async fn balances(runtime: &Runtime, db: &Db, tenant: &str) -> Result<Balances, ApiFailure> {
    check_tenant(tenant)?;
    let list = runtime
        .ledger_balances(staged(db, tenant), tenant.to_string())
        .await?
        .map_err(refused)?;
    let mut balances: BTreeMap<String, BTreeMap<String, Amount>> = BTreeMap::new();
    for b in list {
        let money = Money {
            amount: b.amount,
            currency: b.currency,
        };
        balances
            .entry(money.currency.clone())
            .or_default()
            .insert(b.account, amount_of(&money));
    }
    Ok(Balances {
        tenant: tenant.to_string(),
        balances,
    })
}

/// `tenant`'s transactions after position `after`.
pub async fn transactions(
    runtime: &Runtime,
    db: &Db,
    tenant: &str,
    after: u64,
    limit: u32,
) -> Result<TransactionPage, ApiFailure> {
    check_tenant(tenant)?;
    let list = runtime
        .ledger_transactions(staged(db, tenant), tenant.to_string(), after, limit)
        .await?
        .map_err(refused)?;
    let next = list.last().map_or(after, |t| t.seq);
    Ok(TransactionPage {
        tenant: tenant.to_string(),
        transactions: list.iter().map(answer).collect(),
        next_after: next,
    })
}

/// Every transaction of `tenant`'s ledger, oldest first.
pub(crate) async fn all_transactions(
    runtime: &Runtime,
    db: &Db,
    tenant: &str,
) -> Result<Vec<Transaction>, ApiFailure> {
    check_tenant(tenant)?;
    let mut all: Vec<Transaction> = Vec::new();
    loop {
        let after = all.last().map_or(0, |t| t.seq);
        let page = runtime
            .ledger_transactions(staged(db, tenant), tenant.to_string(), after, 1000)
            .await?
            .map_err(refused)?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

fn answer(t: &Transaction) -> PostedTransaction {
    let m = |amount| {
        amount_of(&Money {
            amount,
            currency: t.currency.clone(),
        })
    };
    PostedTransaction {
        id: t.id.clone(),
        tenant: t.tenant.clone(),
        seq: t.seq,
        currency: t.currency.clone(),
        description: t.description.clone(),
        at: t.at,
        source: t.source.clone(),
        legs: t
            .legs
            .iter()
            .map(|l| {
                let (side, amount) = if l.debit > 0 {
                    (LegSide::Debit, l.debit)
                } else {
                    (LegSide::Credit, l.credit)
                };
                PostedLeg {
                    account: l.account.clone(),
                    side,
                    amount: m(amount),
                }
            })
            .collect(),
    }
}
