//! The plugin's ledger as the HTTP API and the CLI post and read it: amounts
//! in major units as text on the way in, minor units plus display text on the
//! way out. Postings are committed by the host like an event's state: all of
//! it or nothing, redone when a concurrent event changed the tenant's book.

use crate::StagedState;
use crate::db::{CommitOutcome, Db};
use crate::quoting::{fee_error_text, money_json};
use crate::runtime::{CallError, LedgerError, Money, Movement, Runtime, Transaction};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A transaction to post, e.g. an escrow stage from `quote escrow`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostInput {
    /// Unique per tenant: posting it again changes nothing.
    pub id: String,
    #[serde(default)]
    pub description: String,
    pub currency: String,
    pub movements: Vec<MovementInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovementInput {
    pub from: String,
    pub to: String,
    /// What the movement is for ("platform_fee"); accepted so that an
    /// escrow plan's movements can be posted as they are, not stored.
    #[serde(default)]
    pub label: String,
    /// Major units as text: "105.00".
    pub amount: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiFailure {
    /// The caller's to fix: unknown account, bad amount, empty posting.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Plugin(#[from] CallError),
    #[error("database: {0:#}")]
    Database(anyhow::Error),
}

/// How often a posting is redone when events keep changing the book.
const MAX_CONFLICT_RETRIES: usize = 16;

fn refused(e: LedgerError) -> ApiFailure {
    match e {
        LedgerError::Invalid(m) | LedgerError::Unbalanced(m) => ApiFailure::Invalid(m),
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
) -> Result<Value, ApiFailure> {
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
    for _ in 0..MAX_CONFLICT_RETRIES {
        let (posted, staged) = runtime
            .ledger_post(
                staged(db, tenant),
                input.id.clone(),
                tenant.to_string(),
                input.currency.clone(),
                input.description.clone(),
                movements.clone(),
            )
            .await?;
        let tx = posted.map_err(refused)?;
        match db
            .commit_state(&staged)
            .await
            .map_err(ApiFailure::Database)?
        {
            CommitOutcome::Conflict => continue,
            _ => return Ok(transaction_json(&tx)),
        }
    }
    Err(ApiFailure::Database(anyhow::anyhow!(
        "the ledger of {tenant} kept changing under concurrent postings; try again"
    )))
}

/// `tenant`'s balances: currency → account → amount.
pub async fn balances(runtime: &Runtime, db: &Db, tenant: &str) -> Result<Value, ApiFailure> {
    let list = runtime
        .ledger_balances(staged(db, tenant), tenant.to_string())
        .await?
        .map_err(refused)?;
    let mut by_currency: Map<String, Value> = Map::new();
    for b in list {
        let entry = by_currency
            .entry(b.currency.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[&b.account] = money_json(&Money {
            amount: b.amount,
            currency: b.currency,
        });
    }
    Ok(json!({ "tenant": tenant, "balances": by_currency }))
}

/// `tenant`'s transactions after position `after`.
pub async fn transactions(
    runtime: &Runtime,
    db: &Db,
    tenant: &str,
    after: u64,
    limit: u32,
) -> Result<Value, ApiFailure> {
    let list = runtime
        .ledger_transactions(staged(db, tenant), tenant.to_string(), after, limit)
        .await?
        .map_err(refused)?;
    let next = list.last().map_or(after, |t| t.seq);
    Ok(json!({
        "tenant": tenant,
        "transactions": list.iter().map(transaction_json).collect::<Vec<_>>(),
        "next_after": next,
    }))
}

fn transaction_json(t: &Transaction) -> Value {
    let m = |amount| {
        money_json(&Money {
            amount,
            currency: t.currency.clone(),
        })
    };
    json!({
        "id": t.id,
        "tenant": t.tenant,
        "seq": t.seq,
        "currency": t.currency,
        "description": t.description,
        "at": t.at,
        "legs": t.legs.iter().map(|l| {
            let (side, amount) = if l.debit > 0 { ("debit", l.debit) } else { ("credit", l.credit) };
            json!({ "account": l.account, "side": side, "amount": m(amount) })
        }).collect::<Vec<_>>(),
    })
}
