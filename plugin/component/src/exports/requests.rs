//! What every operation does with its request, shared by the operation
//! files (`operations.rs`, `customers.rs`, `subscriptions.rs`,
//! `checkout.rs`, `invoices.rs`, `withdrawals.rs`): checks its ids and
//! amounts, derives its Stripe idempotency keys, records its result so a
//! repeat answers it again, and the errors it answers with.
//!
//! Idempotency: every Stripe write carries a key made of the operation, the
//! tenant and the request id (Stripe replays the first answer for 24
//! hours), and every completed operation is recorded under its tenant and
//! request id, so a repeat returns the first result without creating
//! anything again, and two tenants may use the same request ids.
//!
//! Knows nothing about any one operation: it imports none of its siblings.

use crate::bindings::exports::psa::billing::operations::{self as ops, OperationError};
use crate::bindings::psa::billing::stripe::StripeError;
use crate::convert::{core_money, fee_error};
use crate::exports::load_rules;
use crate::imports::HostState;
use psa_billing_core::{escrow, ledger, mapping, state, state::StateStore};
use serde_json::Value;

/// Where completed operations are recorded, by operation, tenant and
/// request id (a key of those three parts).
const OPERATIONS: &str = "operations";

/// Stripe accepts idempotency keys up to 255 characters.
const MAX_REQUEST_ID: usize = 200;

pub(super) fn invalid(why: impl Into<String>) -> OperationError {
    OperationError::Invalid(why.into())
}

pub(super) fn stripe_failed(e: StripeError) -> OperationError {
    OperationError::Stripe(e)
}

pub(super) fn storage(e: impl std::fmt::Display) -> OperationError {
    OperationError::Storage(e.to_string())
}

/// The idempotency key of `operation`'s `step` for a tenant's request:
/// `psa-billing:<operation>:<tenant digest>:<request id>:<step>`. The
/// tenant's digest (16 hex digits of its SHA-256) keeps two tenants that
/// use the same request id apart; a request id that is not printable ASCII,
/// or that would take the key past Stripe's 255 bytes, is replaced by its
/// own digest.
pub(super) fn idempotency_key(
    operation: &str,
    tenant: &str,
    request_id: &str,
    step: &str,
) -> String {
    let tenant = &state::sha256_hex(tenant)[..16];
    let key = format!("psa-billing:{operation}:{tenant}:{request_id}:{step}");
    if key.len() <= 255
        && request_id
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return key;
    }
    let request_id = state::sha256_hex(request_id);
    let key = format!("psa-billing:{operation}:{tenant}:{request_id}:{step}");
    debug_assert!(
        key.len() <= 255,
        "a hashed key fits Stripe's 255 bytes: {key}"
    );
    key
}

pub(super) fn check_request(request_id: &str, tenant: &str) -> Result<(), OperationError> {
    if request_id.is_empty() || request_id.len() > MAX_REQUEST_ID {
        return Err(invalid(format!(
            "request-id must be 1 to {MAX_REQUEST_ID} characters"
        )));
    }
    if request_id.chars().any(|c| c.is_control()) {
        return Err(invalid("request-id must not contain control characters"));
    }
    mapping::check_tenant(tenant).map_err(invalid)?;
    Ok(())
}

pub(super) fn check_account(field: &str, account: &str) -> Result<(), OperationError> {
    if !account.starts_with("acct_") {
        return Err(invalid(format!(
            "{field} must be a connected account id (acct_...), not {account:?}"
        )));
    }
    Ok(())
}

/// The record of a tenant's completed request, if any. A record written
/// before records were kept per tenant (under `<operation>/<request id>`)
/// is still found, so a request retried across an upgrade is not done twice.
pub(super) fn recorded(
    operation: &str,
    tenant: &str,
    request_id: &str,
) -> Result<Option<Value>, OperationError> {
    let scoped = state::key(&[operation, tenant, request_id]);
    let raw = match HostState.get(OPERATIONS, &scoped).map_err(storage)? {
        Some(raw) => Some(raw),
        None => HostState
            .get(OPERATIONS, &format!("{operation}/{request_id}"))
            .map_err(storage)?,
    };
    raw.map(|raw| serde_json::from_str(&raw).map_err(storage))
        .transpose()
}

pub(super) fn record(
    operation: &str,
    tenant: &str,
    request_id: &str,
    value: Value,
) -> Result<(), OperationError> {
    let key = state::key(&[operation, tenant, request_id]);
    HostState
        .put(OPERATIONS, &key, &value.to_string())
        .map_err(storage)
}

/// The id a record stored under `field`.
pub(super) fn recorded_id(record: &Value, field: &str) -> Result<String, OperationError> {
    record[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| storage(format!("operation record without {field}")))
}

/// A deposit into `wallet`: a valid wallet id and an amount within the
/// rules' deposit limits.
pub(super) fn check_deposit(
    rules: Option<&str>,
    wallet: &str,
    amount: &ops::Money,
) -> Result<(), OperationError> {
    if !ledger::is_account(&format!("wallet:{wallet}")) {
        return Err(invalid(format!(
            "a wallet id is 1 to 64 of A-Z a-z 0-9 _ - . (got {wallet:?})"
        )));
    }
    let rules = load_rules(rules).map_err(OperationError::Fees)?;
    escrow::check_wallet_move(
        &rules,
        escrow::WalletMove::Deposit,
        &core_money(amount.clone()),
        0,
    )
    .map_err(|e| OperationError::Fees(fee_error(e)))
}
