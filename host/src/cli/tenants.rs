//! `psa-billing tenants`: the registry of connected accounts.

use super::*;

#[derive(Args)]
pub(super) struct TenantsArgs {
    #[command(subcommand)]
    action: TenantsAction,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
pub(super) enum TenantsAction {
    /// Register (or move) a connected account to a tenant.
    Register { account: String, tenant: String },
    /// Forget a connected account.
    Unregister { account: String },
    /// Print the tenant of a connected account.
    Lookup { account: String },
    /// Print every registered account and its tenant.
    List,
}

pub(super) async fn tenants(a: TenantsArgs) -> Result<()> {
    use crate::api::tenants;
    let billing = a.store.open().await?;
    let (runtime, db) = (billing.pipeline().runtime(), billing.pipeline().db());
    let out = match a.action {
        TenantsAction::Register { account, tenant } => {
            tenants::register(runtime, db, &account, &tenant)
                .await
                .map(|()| json!({ "account": account, "tenant": tenant }))
        }
        TenantsAction::Unregister { account } => tenants::unregister(runtime, db, &account)
            .await
            .map(|()| json!({ "account": account, "tenant": null })),
        TenantsAction::Lookup { account } => tenants::lookup(runtime, db, &account)
            .await
            .map(|tenant| json!({ "account": account, "tenant": tenant })),
        TenantsAction::List => tenants::list(db).await.map(|list| {
            let list: Vec<Value> = list
                .into_iter()
                .map(|(account, tenant)| json!({ "account": account, "tenant": tenant }))
                .collect();
            json!({ "tenants": list })
        }),
    };
    db.close().await;
    println!("{}", serde_json::to_string_pretty(&out?)?);
    Ok(())
}
