//! Withdrawals (seed 002): a contractor's or wallet's money paid out to a
//! connected account in steps that survive a crash between them: hold it
//! in `withdrawing` (committed), transfer at Stripe, then settle it to
//! `paid_out`, or release it when Stripe refuses the transfer.
//!
//! Knows nothing about the other operations: it borrows their request
//! checks, records and idempotency keys.

use super::requests::{
    check_account, check_request, idempotency_key, invalid, record, recorded, recorded_id, storage,
};
use crate::bindings::exports::psa::billing::operations::{
    OperationError, PaidWithdrawal, WithdrawRequest, Withdrawal,
};
use crate::bindings::psa::billing::stripe::{self, StripeError, TransferParams};
use crate::bindings::psa::billing::{clock, log};
use crate::convert::{core_money, fee_error, wit_transaction};
use crate::exports::load_rules;
use crate::imports::HostState;
use psa_billing_core::{escrow, ledger, mapping, money};
use serde_json::{Value, json};

pub(super) fn withdraw(
    rules: Option<String>,
    req: WithdrawRequest,
) -> Result<Withdrawal, OperationError> {
    check_request(&req.request_id, &req.tenant)?;
    check_account("destination", &req.destination)?;
    let party = paying_party(&req)?;
    let rules = load_rules(rules.as_deref()).map_err(OperationError::Fees)?;
    let amount = core_money(req.amount.clone());
    money::currency(&amount.currency).map_err(|e| OperationError::Fees(fee_error(e.into())))?;
    let hold_id = format!("withdraw:{}:hold", req.request_id);
    let paid_id = format!("withdraw:{}:paid", req.request_id);
    if let Some(tx) = posted(&req.tenant, &paid_id)? {
        let first = recorded("withdraw", &req.tenant, &req.request_id)?
            .ok_or_else(|| storage("withdrawal paid without its record"))?;
        let transfer = stripe_transfer_from_record(&first, &amount)?;
        return Ok(Withdrawal::Paid(PaidWithdrawal {
            transfer,
            transaction: wit_transaction(tx),
        }));
    }
    let Some(hold) = posted(&req.tenant, &hold_id)? else {
        // Step 1: check and hold the amount; the host commits, then calls again.
        hold_funds(&req, &rules, &amount, &party, &hold_id)?;
        return Ok(Withdrawal::Reserved);
    };
    if hold.currency != amount.currency || hold_amount(&hold) != amount.amount {
        return Err(invalid(format!(
            "request {} was first made for another amount",
            req.request_id
        )));
    }
    // Step 2: the amount is held (committed); transfer it, then settle.
    transfer_held(&req, &party, &paid_id).map(Withdrawal::Paid)
}

/// The ledger account the money is paid from: `contractor:<id>` for a
/// named contractor, whose registered account must be the destination
/// (only its own account may receive its money); else `contractor`.
fn paying_party(req: &WithdrawRequest) -> Result<String, OperationError> {
    let Some(c) = &req.contractor else {
        return Ok("contractor".to_string());
    };
    mapping::check_contractor(c).map_err(invalid)?;
    match mapping::contractor_account(&mut HostState, &req.tenant, c).map_err(storage)? {
        Some(a) if a == req.destination => Ok(format!("contractor:{c}")),
        Some(a) => Err(OperationError::Refused(format!(
            "contractor {c} is paid to {a}, not {}",
            req.destination
        ))),
        None => Err(OperationError::Refused(format!(
            "contractor {c} of {} has no registered account \
             (PUT /v1/contractors/{}/{c})",
            req.tenant, req.tenant
        ))),
    }
}

/// Step 1: the rules' withdrawal limits against `party`'s balance, then the
/// amount held in `withdrawing` under `hold_id`.
fn hold_funds(
    req: &WithdrawRequest,
    rules: &psa_billing_core::rules::FeeRules,
    amount: &money::Money,
    party: &str,
    hold_id: &str,
) -> Result<(), OperationError> {
    let book = ledger::book(&mut HostState, &req.tenant).map_err(storage)?;
    let available = book
        .balances
        .get(&amount.currency)
        .and_then(|b| b.get(party))
        .copied()
        .unwrap_or(0);
    escrow::check_wallet_move(rules, escrow::WalletMove::Withdrawal, amount, available)
        .map_err(|e| OperationError::Refused(e.to_string()))?;
    post(req, hold_id, None, party, "withdrawing", "withdrawal held")?;
    Ok(())
}

/// Step 2: the held amount transferred at Stripe, then settled to
/// `paid_out` under `paid_id`; released back to `party` when Stripe will
/// not make the transfer, kept held when its outcome is unknown (the same
/// request retries it).
fn transfer_held(
    req: &WithdrawRequest,
    party: &str,
    paid_id: &str,
) -> Result<PaidWithdrawal, OperationError> {
    let params = TransferParams {
        amount: req.amount.clone(),
        destination: req.destination.clone(),
        transfer_group: Some(format!("withdraw:{}", req.request_id)),
        metadata: [
            ("tenant_id".to_string(), Some(req.tenant.clone())),
            (
                "psa_billing_request".to_string(),
                Some(req.request_id.clone()),
            ),
            // The reversal of this transfer goes back to this contractor.
            ("psa_billing_contractor".to_string(), req.contractor.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect(),
    };
    let key = idempotency_key("withdraw", &req.tenant, &req.request_id, "transfer");
    match stripe::create_transfer(&params, &key) {
        Ok(transfer) => {
            let tx = post(
                req,
                paid_id,
                Some(&transfer.id),
                "withdrawing",
                "paid_out",
                "withdrawal paid",
            )?;
            record(
                "withdraw",
                &req.tenant,
                &req.request_id,
                json!({ "transfer": transfer.id, "destination": req.destination }),
            )?;
            Ok(PaidWithdrawal {
                transfer,
                transaction: wit_transaction(tx),
            })
        }
        // Stripe will not make this transfer: give the hold back.
        Err(
            e @ (StripeError::InvalidRequest(_)
            | StripeError::Denied(_)
            | StripeError::CardDeclined(_)),
        ) => {
            let release = format!("withdraw:{}:release", req.request_id);
            post(
                req,
                &release,
                None,
                "withdrawing",
                party,
                "withdrawal released",
            )?;
            Err(OperationError::Stripe(e))
        }
        // Unknown outcome: keep the hold; the same request retries the transfer.
        Err(e) => {
            log::log(
                log::Level::Warn,
                &format!("withdrawal {} transfer pending: {e:?}", req.request_id),
            );
            Err(OperationError::Stripe(e))
        }
    }
}

/// The transaction posted under `id` in a tenant's ledger, if any.
fn posted(tenant: &str, id: &str) -> Result<Option<ledger::Transaction>, OperationError> {
    ledger::transaction_by_id(&mut HostState, tenant, id).map_err(storage)
}

fn post(
    req: &WithdrawRequest,
    id: &str,
    source: Option<&str>,
    from: &str,
    to: &str,
    description: &str,
) -> Result<ledger::Transaction, OperationError> {
    let posting = ledger::Posting {
        id: id.to_string(),
        tenant: req.tenant.clone(),
        currency: req.amount.currency.to_ascii_lowercase(),
        description: format!("{description} to {}", req.destination),
        at: clock::now(),
        source: source.map(str::to_string),
        transfers: vec![ledger::Transfer::new(from, to, req.amount.amount)],
    };
    ledger::post(&mut HostState, posting)
        .map(|(tx, _)| tx)
        .map_err(|e| match e {
            // The request id was used before for another withdrawal.
            ledger::LedgerError::Conflict(m) => OperationError::Refused(m),
            e => storage(e),
        })
}

/// The amount a one-movement transaction moved.
fn hold_amount(tx: &ledger::Transaction) -> i64 {
    tx.legs.iter().map(|l| l.debit).sum()
}

fn stripe_transfer_from_record(
    first: &Value,
    amount: &money::Money,
) -> Result<stripe::Transfer, OperationError> {
    Ok(stripe::Transfer {
        id: recorded_id(first, "transfer")?,
        amount: crate::convert::wit_money(amount.clone()),
        destination: first["destination"].as_str().map(str::to_string),
        amount_reversed: 0,
    })
}
