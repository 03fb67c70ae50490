//! The plugin's ledger as the HTTP API and the CLI post and read it: amounts
//! in major units as text on the way in, minor units plus display text on the
//! way out. Postings are committed by the host like an event's state: all of
//! it or nothing, redone when a concurrent event changed the tenant's book.

use crate::api::quotes::{fee_error_text, money_json};
use crate::api::{ApiFailure, commit};
use crate::pipeline::Rounds;
use crate::runtime::{LedgerError, Money, Movement, Runtime, Transaction};
use crate::storage::Db;
use crate::storage::StagedState;
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A transaction to post, e.g. an escrow stage from `quote escrow`.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

/// How often a posting is redone when events keep changing the book.
const MAX_CONFLICT_RETRIES: u32 = 16;

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
) -> Result<Value, ApiFailure> {
    check_tenant(tenant)?;
    check_posting(&input)?;
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
    let mut rounds = Rounds::new(MAX_CONFLICT_RETRIES);
    while rounds.next().await {
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
        if commit(db, &staged).await? {
            return Ok(transaction_json(&tx));
        }
    }
    Err(ApiFailure::Database(anyhow::anyhow!(
        "the ledger of {tenant} kept changing under concurrent postings; try again"
    )))
}

/// `tenant`'s balances: currency → account → amount.
pub async fn balances(runtime: &Runtime, db: &Db, tenant: &str) -> Result<Value, ApiFailure> {
    check_tenant(tenant)?;
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
    check_tenant(tenant)?;
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
        "source": t.source,
        "legs": t.legs.iter().map(|l| {
            let (side, amount) = if l.debit > 0 { ("debit", l.debit) } else { ("credit", l.credit) };
            json!({ "account": l.account, "side": side, "amount": m(amount) })
        }).collect::<Vec<_>>(),
    })
}
