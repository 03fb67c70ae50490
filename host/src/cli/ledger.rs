//! `psa-billing ledger`: a tenant's balances and transactions, and postings.

use super::*;

#[derive(Args)]
pub(super) struct LedgerArgs {
    #[command(subcommand)]
    action: LedgerAction,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
pub(super) enum LedgerAction {
    /// Print the tenant's balances per currency and account.
    Balances {
        /// Tenant (metadata.tenant_id), connected account, or _platform.
        tenant: String,
    },
    /// Print the tenant's transactions, oldest first.
    Transactions {
        tenant: String,
        /// Only those after this position.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Post a transaction. Input: {"id": "offer-7:hold", "currency": "usd", "movements": [{"from": "customer", "to": "escrow", "amount": "105.00"}]}
    Post {
        tenant: String,
        /// JSON input file, or - for standard input.
        input: PathBuf,
    },
}

pub(super) async fn ledger(a: LedgerArgs) -> Result<()> {
    let billing = a.store.open().await?;
    let (runtime, db) = (billing.pipeline().runtime(), billing.pipeline().db());
    let out = match a.action {
        LedgerAction::Balances { tenant } => crate::api::ledger::balances(runtime, db, &tenant)
            .await
            .map(|b| crate::api::answer_json(&b)),
        LedgerAction::Transactions {
            tenant,
            after,
            limit,
        } => crate::api::ledger::transactions(runtime, db, &tenant, after, limit)
            .await
            .map(|page| crate::api::answer_json(&page)),
        LedgerAction::Post { tenant, input } => {
            let input: crate::api::ledger::PostInput =
                serde_json::from_str(&read_input(&input)?).context("the posting is not valid")?;
            crate::api::ledger::post(runtime, db, &tenant, input)
                .await
                .map(|posted| crate::api::answer_json(&posted))
        }
    };
    db.close().await;
    println!("{}", serde_json::to_string_pretty(&out?)?);
    Ok(())
}
