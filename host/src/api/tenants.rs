//! The registry of connected accounts (`acct_...` → the application's
//! tenant) that routes Connect events. It lives in the plugin's state, so
//! any host of the component shares it; here the CLI, the HTTP API and
//! embedding applications fill it.

use crate::api::{ApiFailure, settled_or};
use crate::pipeline::effects_json;
use crate::runtime::{Effect, Runtime};
use crate::storage::{self, Db, EventMeta, NewEffect, Round, Settled, StagedState};

fn staged(db: &Db, account: &str) -> StagedState {
    StagedState::new(db.clone(), format!("tenants:{account}"))
}

/// Registers (or moves) `account` to `tenant`. Later events follow the
/// registry; ledger postings kept under the account's own id (events that
/// came first) move to the tenant's ledger as new postings, and an
/// `account.rerouted` effect lists them. Effects already in the outbox keep
/// the routing they had.
pub async fn register(
    runtime: &Runtime,
    db: &Db,
    account: &str,
    tenant: &str,
) -> Result<(), ApiFailure> {
    change(runtime, db, account, Some(tenant)).await
}

/// Forgets `account`: its later events are routed by metadata alone.
pub async fn unregister(runtime: &Runtime, db: &Db, account: &str) -> Result<(), ApiFailure> {
    change(runtime, db, account, None).await
}

/// Registers `account` to `tenant`, or forgets it (`None`).
async fn change(
    runtime: &Runtime,
    db: &Db,
    account: &str,
    tenant: Option<&str>,
) -> Result<(), ApiFailure> {
    check_account(account)?;
    if let Some(t) = tenant {
        psa_billing_core::mapping::check_tenant(t).map_err(ApiFailure::Invalid)?;
    }
    until_committed(db, account, |staged| async move {
        match tenant {
            Some(t) => {
                let (r, staged) = runtime
                    .register_tenant(staged, account.into(), t.into())
                    .await?;
                Ok((r.map_err(ApiFailure::Invalid)?, staged))
            }
            None => {
                let (r, staged) = runtime.unregister_tenant(staged, account.into()).await?;
                r.map_err(ApiFailure::Invalid)?;
                Ok((vec![], staged))
            }
        }
    })
    .await
}

/// Runs `step` on fresh reads of the registry entry `entry` until what it
/// staged commits (a concurrent change of the same entry makes it redo),
/// with the effects it returned: those go to the outbox under a
/// registration row of the events table (each outbox effect belongs to a
/// row).
async fn until_committed<Fut>(
    db: &Db,
    entry: &str,
    mut step: impl FnMut(StagedState) -> Fut,
) -> Result<(), ApiFailure>
where
    Fut: Future<Output = Result<(Vec<Effect>, StagedState), ApiFailure>>,
{
    let row = EventMeta {
        id: format!("registration:{entry}:{:016x}", fastrand::u64(..)),
        event_type: "psa_billing.registration".into(),
        account: Some(entry.to_string()),
        created: crate::clock::unix_now(),
        livemode: false,
    };
    let label = format!("tenants:{entry}");
    let settled = storage::until_committed(db, &label, Some((&row, b"")), |attempt| {
        let round = step(attempt.staged);
        async move {
            let (effects, staged) = round.await?;
            let effects: Vec<NewEffect> = effects.iter().map(effects_json::to_json).collect();
            Ok::<_, ApiFailure>(if effects.is_empty() {
                Round::state(staged, ())
            } else {
                Round::row(staged, "processed", effects, ())
            })
        }
    })
    .await?;
    match settled {
        Settled::Duplicate => Ok(()),
        settled => settled_or(settled, &label),
    }
}

/// The tenant `account` is registered to.
pub async fn lookup(
    runtime: &Runtime,
    db: &Db,
    account: &str,
) -> Result<Option<String>, ApiFailure> {
    check_account(account)?;
    runtime
        .lookup_tenant(staged(db, account), account.into())
        .await?
        .map_err(|e| ApiFailure::Database(anyhow::anyhow!(e)))
}

/// Registers (or moves) the connected account `contractor` of `tenant` is
/// paid to: a withdrawal for that contractor goes there and nowhere else.
pub async fn register_contractor(
    runtime: &Runtime,
    db: &Db,
    tenant: &str,
    contractor: &str,
    account: &str,
) -> Result<(), ApiFailure> {
    check_account(account)?;
    psa_billing_core::mapping::check_tenant(tenant).map_err(ApiFailure::Invalid)?;
    psa_billing_core::mapping::check_contractor(contractor).map_err(ApiFailure::Invalid)?;
    let entry = format!("{tenant}/{contractor}");
    until_committed(db, &entry, |staged| async move {
        let (r, staged) = runtime
            .register_contractor(staged, tenant.into(), contractor.into(), account.into())
            .await?;
        r.map_err(ApiFailure::Invalid)?;
        Ok((vec![], staged))
    })
    .await
}

/// The connected account `contractor` of `tenant` is paid to.
pub async fn contractor_account(
    runtime: &Runtime,
    db: &Db,
    tenant: &str,
    contractor: &str,
) -> Result<Option<String>, ApiFailure> {
    psa_billing_core::mapping::check_tenant(tenant).map_err(ApiFailure::Invalid)?;
    psa_billing_core::mapping::check_contractor(contractor).map_err(ApiFailure::Invalid)?;
    runtime
        .contractor_account(staged(db, tenant), tenant.into(), contractor.into())
        .await?
        .map_err(|e| ApiFailure::Database(anyhow::anyhow!(e)))
}

/// An account id as Stripe mints them, refused (422) otherwise.
fn check_account(account: &str) -> Result<(), ApiFailure> {
    psa_billing_core::mapping::check_account_id(account).map_err(ApiFailure::Invalid)
}

/// Every registered account and its tenant, by account.
pub async fn list(db: &Db) -> Result<Vec<(String, String)>, ApiFailure> {
    // The plugin keeps the registry under this collection.
    db.state_entries(psa_billing_core::mapping::TENANTS)
        .await
        .map_err(ApiFailure::Database)
}
