//! The registry of connected accounts (`acct_...` → the application's
//! tenant) that routes Connect events. It lives in the plugin's state, so
//! any host of the component shares it; here the CLI, the HTTP API and
//! embedding applications fill it.

use crate::StagedState;
use crate::db::{CommitOutcome, Db};
use crate::ledger::ApiFailure;
use crate::runtime::Runtime;

fn staged(db: &Db, account: &str) -> StagedState {
    StagedState::new(db.clone(), format!("tenants:{account}"))
}

/// Registers (or moves) `account` to `tenant`. Events already handled keep
/// the routing they had; later ones follow the registry.
pub async fn register(
    runtime: &Runtime,
    db: &Db,
    account: &str,
    tenant: &str,
) -> Result<(), ApiFailure> {
    for _ in 0..MAX_CONFLICT_RETRIES {
        let (r, staged) = runtime
            .register_tenant(staged(db, account), account.into(), tenant.into())
            .await?;
        r.map_err(ApiFailure::Invalid)?;
        if commit(db, &staged).await? {
            return Ok(());
        }
    }
    Err(conflict(account))
}

/// Forgets `account`: its later events are routed by metadata alone.
pub async fn unregister(runtime: &Runtime, db: &Db, account: &str) -> Result<(), ApiFailure> {
    for _ in 0..MAX_CONFLICT_RETRIES {
        let (r, staged) = runtime
            .unregister_tenant(staged(db, account), account.into())
            .await?;
        r.map_err(ApiFailure::Invalid)?;
        if commit(db, &staged).await? {
            return Ok(());
        }
    }
    Err(conflict(account))
}

/// The tenant `account` is registered to.
pub async fn lookup(
    runtime: &Runtime,
    db: &Db,
    account: &str,
) -> Result<Option<String>, ApiFailure> {
    runtime
        .lookup_tenant(staged(db, account), account.into())
        .await?
        .map_err(|e| ApiFailure::Database(anyhow::anyhow!(e)))
}

/// Redone when another registration of the same account committed between
/// our read and our write.
const MAX_CONFLICT_RETRIES: usize = 8;

/// `false` on a conflict: the caller redoes the change.
async fn commit(db: &Db, staged: &StagedState) -> Result<bool, ApiFailure> {
    match db.commit_state(staged).await {
        Ok(CommitOutcome::Conflict) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(ApiFailure::Database(e)),
    }
}

fn conflict(account: &str) -> ApiFailure {
    ApiFailure::Database(anyhow::anyhow!(
        "{account} kept changing under concurrent registrations; try again"
    ))
}

/// Every registered account and its tenant, by account.
pub async fn list(db: &Db) -> Result<Vec<(String, String)>, ApiFailure> {
    db.state_entries(crate::runtime::TENANTS_COLLECTION)
        .await
        .map_err(ApiFailure::Database)
}
