//! Reconciliation as the CLI and HTTP ask for it: for each tenant, its
//! connected accounts' and the platform's balance transactions for a
//! period (listed from Stripe with the host's key, every page), against
//! the tenant's ledger. The comparison itself is
//! [`psa_billing_core::reconcile`]; this file gathers both sides.
//!
//! Knows nothing about HTTP or the command line: it gives the reports as
//! values, JSON and a text table.

use crate::api::ApiFailure;
use crate::api::ledger::{all_transactions, check_tenant};
use crate::runtime::{OperationError, Runtime, StripeError, Transaction};
use crate::storage::Db;
use psa_billing_core::ledger as core_ledger;
use psa_billing_core::reconcile::{self, PLATFORM, Report, StripeTxn};
use std::collections::BTreeSet;

/// Which tenants to reconcile.
#[derive(Debug, Clone)]
pub enum Scope {
    /// One tenant (its ledger and its registered accounts).
    Tenant(String),
    /// Every tenant with a registered connected account.
    All,
}

/// A time as `reconcile` takes it: Unix seconds, a date (`2026-11-01`,
/// midnight UTC) or an RFC 3339 timestamp (`2026-11-01T12:00:00Z`).
pub fn parse_time(text: &str) -> Result<i64, ApiFailure> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        return date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .map_err(|e| ApiFailure::Invalid(format!("{text:?}: {e}")));
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| {
            ApiFailure::Invalid(format!(
                "{text:?} is not a time: give Unix seconds, a date (2026-11-01) or an RFC 3339 timestamp"
            ))
        })
}

/// Reconciles each tenant of `scope` for [`from`, `to`) (Unix seconds).
/// Needs the Stripe key: the balance transactions are Stripe's.
pub async fn reconcile(
    runtime: &Runtime,
    db: &Db,
    scope: &Scope,
    from: i64,
    to: i64,
) -> Result<Vec<Report>, ApiFailure> {
    if from >= to {
        return Err(ApiFailure::Invalid(format!(
            "the period is empty: from {from} is not before to {to}"
        )));
    }
    let stripe = runtime.stripe_api().ok_or_else(|| {
        ApiFailure::Refused(OperationError::Stripe(StripeError::Denied(
            "reconcile reads Stripe's balance transactions: set STRIPE_SECRET_KEY".into(),
        )))
    })?;
    let registry = crate::api::tenants::list(db).await?;
    let tenants: Vec<String> = match scope {
        Scope::Tenant(t) => {
            check_tenant(t)?;
            vec![t.clone()]
        }
        Scope::All => registry
            .iter()
            .map(|(_, t)| t.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let refused = |e| ApiFailure::Refused(OperationError::Stripe(e));
    let mut listed: Vec<StripeTxn> = Vec::new();
    let mut read = |balance: &str, rows: Vec<serde_json::Value>| -> Result<(), ApiFailure> {
        for row in rows {
            let txn = reconcile::stripe_txn(balance, &row).map_err(|m| {
                refused(StripeError::Api(crate::runtime::StripeApiFailure {
                    status: 200,
                    message: format!("a balance transaction Stripe listed: {m}"),
                }))
            })?;
            listed.push(txn);
        }
        Ok(())
    };
    let platform = stripe
        .list_balance_transactions(None, from, to)
        .await
        .map_err(refused)?;
    read(PLATFORM, platform)?;
    let mut reports = Vec::with_capacity(tenants.len());
    let mut accounts_of = Vec::with_capacity(tenants.len());
    for tenant in &tenants {
        let accounts: Vec<String> = registry
            .iter()
            .filter(|(_, t)| t == tenant)
            .map(|(a, _)| a.clone())
            .collect();
        for account in &accounts {
            let rows = stripe
                .list_balance_transactions(Some(account), from, to)
                .await
                .map_err(refused)?;
            read(account, rows)?;
        }
        accounts_of.push(accounts);
    }
    for (tenant, accounts) in tenants.iter().zip(&accounts_of) {
        let ledger: Vec<core_ledger::Transaction> = all_transactions(runtime, db, tenant)
            .await?
            .into_iter()
            .map(core_transaction)
            .collect();
        reports.push(reconcile::reconcile(
            tenant, accounts, from, to, &listed, &ledger,
        ));
    }
    Ok(reports)
}

/// The reports as JSON: the period, the number of differences over all
/// tenants, and each tenant's lines and totals (minor units).
pub fn reports_json(reports: &[Report], from: i64, to: i64) -> serde_json::Value {
    let answer = Reconciliation {
        from,
        to,
        differences: reports.iter().map(Report::differences).sum(),
        reports: reports.to_vec(),
    };
    crate::api::answer_json(&answer)
}

/// `GET /v1/reconciliation` and `psa-billing reconcile --json`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    /// Unix seconds, inclusive.
    pub from: i64,
    /// Unix seconds, exclusive.
    pub to: i64,
    /// Lines, over every report, where the ledger and Stripe differ.
    pub differences: usize,
    /// One per tenant reconciled.
    pub reports: Vec<Report>,
}

/// The reports as aligned text: one row per Stripe object, then totals.
pub fn reports_table(reports: &[Report]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let amount = |a: i64, c: &str| {
        psa_billing_core::money::format_amount(a, c).unwrap_or_else(|_| a.to_string())
    };
    for r in reports {
        let _ = writeln!(
            out,
            "tenant {}  from {} to {}",
            r.tenant,
            when(r.from),
            when(r.to)
        );
        let _ = writeln!(
            out,
            "{:<30} {:<4} {:>12} {:>12} {:>10} {:>10}  {:<17} rows",
            "object", "cur", "stripe net", "ledger net", "stripe fee", "ledger fee", "status",
        );
        for l in &r.lines {
            let status = serde_json::to_value(l.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<30} {:<4} {:>12} {:>12} {:>10} {:>10}  {:<17} {}",
                l.key,
                l.currency,
                amount(l.stripe.net, &l.currency),
                amount(l.ledger.net, &l.currency),
                amount(l.stripe.fee, &l.currency),
                amount(l.ledger.fee, &l.currency),
                status,
                l.stripe
                    .ids
                    .iter()
                    .chain(&l.ledger.ids)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        for t in &r.totals {
            let _ = writeln!(
                out,
                "{:<30} {:<4} {:>12} {:>12} {:>10} {:>10}",
                "total",
                t.currency,
                amount(t.stripe_net, &t.currency),
                amount(t.ledger_net, &t.currency),
                amount(t.stripe_fee, &t.currency),
                amount(t.ledger_fee, &t.currency),
            );
        }
        let _ = writeln!(out, "differences: {}\n", r.differences());
    }
    out
}

fn when(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

fn core_transaction(t: Transaction) -> core_ledger::Transaction {
    core_ledger::Transaction {
        id: t.id,
        tenant: t.tenant,
        seq: t.seq,
        currency: t.currency,
        description: t.description,
        at: t.at,
        source: t.source,
        legs: t
            .legs
            .into_iter()
            .map(|l| core_ledger::Leg {
                account: l.account,
                debit: l.debit,
                credit: l.credit,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_seconds_dates_or_timestamps() {
        assert_eq!(parse_time("1764547200").unwrap(), 1_764_547_200);
        assert_eq!(parse_time("2025-12-01").unwrap(), 1_764_547_200);
        assert_eq!(parse_time("2025-12-01T00:00:10Z").unwrap(), 1_764_547_210);
        for bad in ["2025-02-30", "yesterday", ""] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
