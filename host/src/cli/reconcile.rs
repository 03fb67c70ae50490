//! `psa-billing reconcile`: the ledger against Stripe's balance
//! transactions for a period, as a table or JSON; exits 1 on any
//! difference so that it can run from cron.

use super::*;
use crate::api::reconcile::{Scope, parse_time, reports_json, reports_table};
use psa_billing_core::reconcile::Report;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["tenant", "all"])))]
pub(super) struct ReconcileArgs {
    /// The tenant to reconcile (its ledger and registered accounts).
    #[arg(long)]
    tenant: Option<String>,
    /// Every tenant with a registered connected account.
    #[arg(long)]
    all: bool,
    /// Start of the period, inclusive: a date (2026-11-01, midnight UTC),
    /// an RFC 3339 timestamp or Unix seconds.
    #[arg(long)]
    from: String,
    /// End of the period, exclusive (same forms as --from).
    #[arg(long)]
    to: String,
    /// `table` for people, `json` for programs.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    stripe: StripeArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

pub(super) async fn reconcile(a: ReconcileArgs) -> Result<()> {
    let scope = match a.tenant {
        Some(t) => Scope::Tenant(t),
        None => Scope::All,
    };
    let (from, to) = (parse_time(&a.from)?, parse_time(&a.to)?);
    let billing = a.stripe.configure(a.store.builder())?.build().await?;
    let (runtime, db) = (billing.pipeline().runtime(), billing.pipeline().db());
    let reports = crate::api::reconcile::reconcile(runtime, db, &scope, from, to).await;
    db.close().await;
    let reports = reports?;
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&reports_json(&reports, from, to))?
        ),
        Format::Table => print!("{}", reports_table(&reports)),
    }
    let differences: usize = reports.iter().map(Report::differences).sum();
    if differences > 0 {
        eprintln!("{differences} difference(s) between the ledger and Stripe");
        std::process::exit(1);
    }
    Ok(())
}
