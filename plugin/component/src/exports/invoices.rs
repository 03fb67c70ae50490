//! Stripe invoices of a tenant's customers (seed 001): created from lines
//! that psa-billing totals exactly as `quote invoice` does (discounts,
//! inclusive and exclusive taxes), then finalized, sent, voided or marked
//! uncollectible.
//!
//! Creating is resumable: the draft, then its items a batch per call
//! (a plugin call may make at most 16 Stripe calls), each step recorded so
//! that a repeat or a crash carries on where it stopped and every Stripe
//! write carries its own idempotency key. A draft whose Stripe totals differ
//! from psa-billing's (a tax rate whose percentage is not the one given) is
//! never finalized.
//!
//! Knows nothing about how invoice webhooks are mapped.

use super::boundary::{TENANT_KEY, is_id, metadata_value};
use super::customers::owned_customer;
use super::requests::{
    check_account, check_request, idempotency_key, invalid, record, recorded, recorded_id,
    stripe_failed,
};
use crate::bindings::Plugin;
use crate::bindings::exports::psa::billing::fees::{self, InvoiceTotals};
use crate::bindings::exports::psa::billing::operations::{
    InvoiceAction, InvoiceAdvance, InvoiceRequest, Invoiced, NewInvoice, OperationError,
};
use crate::bindings::psa::billing::stripe::{
    self, Invoice, InvoiceItemParams, InvoiceParams, InvoiceStep, Money,
};
use serde_json::json;

/// Lines added per call: with the customer check, the draft and the
/// finalization, one call stays within the host's 16 Stripe calls.
const ITEMS_PER_CALL: usize = 12;
/// Lines one invoice may have (Stripe allows 250 per invoice; five calls
/// of twelve keep a request within the host's rounds).
const MAX_LINES: usize = 60;

/// Carries out an invoice request; `None`: commit and call again.
pub(super) fn manage(
    rules: Option<String>,
    req: InvoiceRequest,
) -> Result<Option<Invoiced>, OperationError> {
    check_request(&req.request_id, &req.tenant)?;
    if let Some(a) = &req.account {
        check_account("account", a)?;
    }
    match &req.action {
        InvoiceAction::Create(new) => create(rules, &req, new),
        InvoiceAction::Advance(step) => advance(&req, step).map(|invoice| {
            Some(Invoiced {
                invoice,
                totals: None,
            })
        }),
    }
}

fn create(
    rules: Option<String>,
    req: &InvoiceRequest,
    new: &NewInvoice,
) -> Result<Option<Invoiced>, OperationError> {
    let totals = check_new(rules, new)?;
    let account = req.account.as_deref();
    match (new.application_fee_amount, account) {
        (Some(fee), Some(_)) if !(0..=totals.total).contains(&fee) => {
            return Err(invalid(format!(
                "an application fee of {fee} does not fit an invoice of {}",
                totals.total
            )));
        }
        (Some(_), None) => {
            return Err(invalid(
                "an application fee is for an invoice on a connected account",
            ));
        }
        _ => {}
    }
    let key = |step: &str| idempotency_key("invoice", &req.tenant, &req.request_id, step);
    let progress = recorded("invoice", &req.tenant, &req.request_id)?;
    let Some(progress) = progress else {
        create_draft(req, new)?;
        return Ok(None);
    };
    let id = recorded_id(&progress, "invoice")?;
    if progress["done"].as_bool() == Some(true) {
        let invoice = stripe::retrieve_invoice(&id, account).map_err(stripe_failed)?;
        return Ok(Some(Invoiced {
            invoice,
            totals: Some(totals),
        }));
    }
    let added = progress["items"].as_u64().unwrap_or(0) as usize;
    let upto = (added + ITEMS_PER_CALL).min(new.lines.len());
    add_items(req, new, &totals, &id, added..upto)?;
    if upto < new.lines.len() {
        record(
            "invoice",
            &req.tenant,
            &req.request_id,
            json!({ "invoice": id, "items": upto, "done": false }),
        )?;
        return Ok(None);
    }
    let draft = stripe::retrieve_invoice(&id, account).map_err(stripe_failed)?;
    if draft.total != totals.total || draft.tax != totals.tax {
        return Err(OperationError::Refused(format!(
            "Stripe totals draft invoice {id} at {} (tax {}), psa-billing at {} (tax {}): \
             check that each tax-rate id has the percentage and inclusiveness given; \
             the draft is left unfinalized",
            draft.total, draft.tax, totals.total, totals.tax
        )));
    }
    let invoice = if new.finalize {
        stripe::advance_invoice(&id, InvoiceStep::Finalize, account, &key("finalize"))
            .map_err(stripe_failed)?
    } else {
        draft
    };
    record(
        "invoice",
        &req.tenant,
        &req.request_id,
        json!({ "invoice": id, "items": upto, "done": true }),
    )?;
    Ok(Some(Invoiced {
        invoice,
        totals: Some(totals),
    }))
}

/// The first round of a new invoice: the customer proven the tenant's,
/// the draft created at Stripe, its owner and the progress recorded.
fn create_draft(req: &InvoiceRequest, new: &NewInvoice) -> Result<(), OperationError> {
    let account = req.account.as_deref();
    owned_customer(&req.tenant, &new.customer, account)?;
    let params = InvoiceParams {
        customer: new.customer.clone(),
        currency: new.currency.to_ascii_lowercase(),
        collection_method: new.collection_method.clone(),
        days_until_due: new.days_until_due,
        description: None,
        metadata: vec![
            (TENANT_KEY.to_string(), req.tenant.clone()),
            ("invoice_id".to_string(), new.invoice_id.clone()),
        ],
        application_fee_amount: new.application_fee_amount,
    };
    let key = idempotency_key("invoice", &req.tenant, &req.request_id, "draft");
    let draft = stripe::create_invoice(&params, account, &key).map_err(stripe_failed)?;
    super::boundary::record_owner(&draft.id, &req.tenant)?;
    record(
        "invoice",
        &req.tenant,
        &req.request_id,
        json!({ "invoice": draft.id, "items": 0, "done": false }),
    )
}

/// The lines `range` of a new invoice added to its draft `id`, each at
/// what Stripe's tax rates apply to (after the discount, with any
/// inclusive tax still inside), each under its own idempotency key.
fn add_items(
    req: &InvoiceRequest,
    new: &NewInvoice,
    totals: &InvoiceTotals,
    id: &str,
    range: std::ops::Range<usize>,
) -> Result<(), OperationError> {
    for i in range {
        let (line, total) = (&new.lines[i], &totals.lines[i]);
        let params = InvoiceItemParams {
            customer: new.customer.clone(),
            invoice: id.to_string(),
            amount: Money {
                amount: total.subtotal - total.discount,
                currency: totals.currency.clone(),
            },
            description: line.line.description.clone(),
            tax_rates: line.tax_rate_ids.clone(),
        };
        let key = idempotency_key(
            "invoice",
            &req.tenant,
            &req.request_id,
            &format!("item:{i}"),
        );
        stripe::create_invoice_item(&params, req.account.as_deref(), &key)
            .map_err(stripe_failed)?;
    }
    Ok(())
}

/// Checks a new invoice and totals its lines as `fees.total-invoice` does.
fn check_new(rules: Option<String>, new: &NewInvoice) -> Result<InvoiceTotals, OperationError> {
    if new.invoice_id.is_empty() || new.invoice_id.chars().count() > 200 {
        return Err(invalid("invoice-id must be 1 to 200 characters"));
    }
    if new.lines.is_empty() || new.lines.len() > MAX_LINES {
        return Err(invalid(format!("an invoice takes 1 to {MAX_LINES} lines")));
    }
    match (new.collection_method.as_str(), new.days_until_due) {
        ("send_invoice", Some(1..)) | ("charge_automatically", None) => {}
        ("send_invoice", _) => {
            return Err(invalid("send_invoice needs days-until-due of at least 1"));
        }
        ("charge_automatically", Some(_)) => {
            return Err(invalid("days-until-due is for send_invoice only"));
        }
        (other, _) => {
            return Err(invalid(format!(
                "collection-method must be charge_automatically or send_invoice, not {other:?}"
            )));
        }
    }
    for (n, line) in new.lines.iter().enumerate() {
        if line.tax_rate_ids.len() != line.line.tax_rates.len() {
            return Err(invalid(format!(
                "line {n}: Stripe computes an invoice's tax from its tax rates, so each tax \
                 needs its tax rate id (txr_...): {} taxes, {} ids",
                line.line.tax_rates.len(),
                line.tax_rate_ids.len()
            )));
        }
        if let Some(bad) = line.tax_rate_ids.iter().find(|t| !is_id(t, "txr_")) {
            return Err(invalid(format!(
                "line {n}: {bad:?} is not a tax rate id (txr_...)"
            )));
        }
        if line.line.quantity < 1 {
            return Err(invalid(format!("line {n}: quantity must be at least 1")));
        }
    }
    let lines = new.lines.iter().map(|l| l.line.clone()).collect();
    let totals = <Plugin as fees::Guest>::total_invoice(rules, new.currency.clone(), lines)
        .map_err(OperationError::Fees)?;
    if let Some(n) = totals
        .lines
        .iter()
        .position(|l| l.subtotal - l.discount < 1)
    {
        return Err(invalid(format!(
            "line {n}: nothing left to invoice after its discount"
        )));
    }
    Ok(totals)
}

/// Finalizes, sends, voids or marks uncollectible one of the tenant's
/// invoices; a step already taken returns the invoice as it is.
fn advance(req: &InvoiceRequest, step: &InvoiceAdvance) -> Result<Invoice, OperationError> {
    if !is_id(&step.invoice, "in_") {
        return Err(invalid(format!(
            "invoice must be an in_... id, not {:?}",
            step.invoice
        )));
    }
    let account = req.account.as_deref();
    let invoice = stripe::retrieve_invoice(&step.invoice, account).map_err(stripe_failed)?;
    match metadata_value(&invoice.metadata, TENANT_KEY) {
        Some(t) if t == req.tenant => {}
        other => {
            return Err(OperationError::Refused(format!(
                "invoice {} is not one of tenant {}'s (its metadata {TENANT_KEY} is {})",
                step.invoice,
                req.tenant,
                other.map_or("missing".to_string(), |t| format!("{t:?}"))
            )));
        }
    }
    let status = invoice.status.as_deref().unwrap_or("");
    let (name, done) = match step.step {
        InvoiceStep::Finalize => ("finalize", status != "draft"),
        InvoiceStep::Send => ("send", false),
        InvoiceStep::Void => ("void", status == "void"),
        InvoiceStep::MarkUncollectible => ("mark-uncollectible", status == "uncollectible"),
        InvoiceStep::Pay => ("pay", status == "paid"),
    };
    if done {
        return Ok(invoice);
    }
    let key = idempotency_key("invoice", &req.tenant, &req.request_id, name);
    stripe::advance_invoice(&step.invoice, step.step, account, &key).map_err(stripe_failed)
}
