//! A tenant's Stripe customers (seeds 000, 001, 002): one customer per
//! tenant, account and application id (the PSA's contact or company id),
//! created or updated, found, and given payment methods. Each carries
//! metadata `tenant_id` and `psa_external_id`, and psa-billing records
//! which customer an external id names.
//!
//! Knows nothing about subscriptions, invoices or Checkout: they only ask
//! [`owned_customer`] whether a customer is the tenant's.

use super::boundary::{TENANT_KEY, is_id, metadata_value};
use super::requests::{
    check_account, check_request, idempotency_key, invalid, storage, stripe_failed,
};
use crate::bindings::exports::psa::billing::operations::{
    CustomerAction, CustomerFields, CustomerRequest, OperationError,
};
use crate::bindings::psa::billing::stripe::{self, Customer, CustomerParams, StripeError};
use crate::imports::HostState;
use psa_billing_core::state::{self, StateStore};

/// Where the customer an external id names is recorded, by tenant,
/// account and external id.
const CUSTOMERS: &str = "customers";
/// The customer an external id named before it was deleted at Stripe, by
/// the same key as [`CUSTOMERS`].
const REPLACED: &str = "customers_replaced";
/// The metadata key naming the application's id for a customer.
const EXTERNAL_KEY: &str = "psa_external_id";

/// Carries out a customer request.
pub(super) fn manage(req: CustomerRequest) -> Result<Customer, OperationError> {
    check_request(&req.request_id, &req.tenant)?;
    if let Some(a) = &req.account {
        check_account("account", a)?;
    }
    check_external_id(&req.external_id)?;
    let account = req.account.as_deref();
    match &req.action {
        CustomerAction::Find => find(&req.tenant, account, &req.external_id)?
            .ok_or_else(|| unknown(&req.tenant, &req.external_id)),
        CustomerAction::Upsert(fields) => upsert(&req, fields),
        CustomerAction::AttachPaymentMethod(attach) => {
            let pm = &attach.payment_method;
            if !is_id(pm, "pm_") {
                return Err(invalid(format!(
                    "payment-method must be a pm_... id, not {pm:?}"
                )));
            }
            let customer = find(&req.tenant, account, &req.external_id)?
                .ok_or_else(|| unknown(&req.tenant, &req.external_id))?;
            let key = idempotency_key("customer", &req.tenant, &req.request_id, "attach");
            stripe::attach_payment_method(pm, &customer.id, account, &key)
                .map_err(stripe_failed)?;
            if !attach.make_default {
                return stripe::retrieve_customer(&customer.id, account).map_err(stripe_failed);
            }
            let params = CustomerParams {
                email: None,
                name: None,
                default_payment_method: Some(pm.clone()),
                metadata: vec![],
            };
            let key = idempotency_key("customer", &req.tenant, &req.request_id, "default");
            stripe::update_customer(&customer.id, &params, account, &key).map_err(stripe_failed)
        }
    }
}

/// The customer `customer` if its metadata names `tenant`; refused otherwise,
/// so that one tenant never bills, subscribes or opens a portal for
/// another's customer.
pub(super) fn owned_customer(
    tenant: &str,
    customer: &str,
    account: Option<&str>,
) -> Result<Customer, OperationError> {
    if !is_id(customer, "cus_") {
        return Err(invalid(format!(
            "customer must be a cus_... id, not {customer:?}"
        )));
    }
    let c = stripe::retrieve_customer(customer, account).map_err(stripe_failed)?;
    match metadata_value(&c.metadata, TENANT_KEY) {
        Some(t) if t == tenant => Ok(c),
        other => Err(OperationError::Refused(format!(
            "customer {customer} is not one of tenant {tenant}'s (its metadata {TENANT_KEY} is {}); \
             manage-customer upsert with `adopt` takes on a customer made elsewhere",
            other.map_or("missing".to_string(), |t| format!("{t:?}"))
        ))),
    }
}

/// Metadata to send: the caller's, then psa-billing's own keys, which the
/// caller may not set.
pub(super) fn with_own_keys(
    extra: &[(String, String)],
    own: &[(&str, &str)],
) -> Result<Vec<(String, String)>, OperationError> {
    let mut out = Vec::with_capacity(extra.len() + own.len());
    for (k, v) in extra {
        if own.iter().any(|(o, _)| o == k) {
            return Err(invalid(format!(
                "metadata key {k:?} is set by psa-billing and cannot be given"
            )));
        }
        if k.is_empty() || k.chars().count() > 40 || v.chars().count() > 500 {
            return Err(invalid(format!(
                "metadata {k:?}: Stripe takes keys of 1 to 40 characters and values up to 500"
            )));
        }
        out.push((k.clone(), v.clone()));
    }
    out.extend(own.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    if out.len() > 50 {
        return Err(invalid("Stripe takes at most 50 metadata keys"));
    }
    Ok(out)
}

fn unknown(tenant: &str, external_id: &str) -> OperationError {
    OperationError::Refused(format!(
        "tenant {tenant} has no customer {external_id:?}; manage-customer upsert creates it"
    ))
}

/// External ids go into Stripe's search query: printable, no quotes or
/// backslashes, and short enough for metadata.
fn check_external_id(id: &str) -> Result<(), OperationError> {
    let ok = !id.is_empty()
        && id.chars().count() <= 200
        && !id
            .chars()
            .any(|c| c.is_control() || c == '\'' || c == '"' || c == '\\');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "external-id must be 1 to 200 characters, without quotes, backslashes or control characters",
        ))
    }
}

fn record_key(tenant: &str, account: Option<&str>, external_id: &str) -> String {
    state::key(&[tenant, account.unwrap_or(""), external_id])
}

/// The customer recorded for the external id, else the one Stripe's search
/// finds by metadata (made before psa-billing kept records, or by another
/// process whose record is not visible yet), recorded from then on.
fn find(
    tenant: &str,
    account: Option<&str>,
    external_id: &str,
) -> Result<Option<Customer>, OperationError> {
    let key = record_key(tenant, account, external_id);
    if let Some(id) = HostState.get(CUSTOMERS, &key).map_err(storage)? {
        return match stripe::retrieve_customer(&id, account) {
            Ok(c) => Ok(Some(c)),
            // Deleted at Stripe (or gone): the record is dropped, so the
            // external id has no customer and the next upsert makes one.
            Err(StripeError::InvalidRequest(e)) if e.message.starts_with("No such customer") => {
                HostState.delete(CUSTOMERS, &key).map_err(storage)?;
                HostState.put(REPLACED, &key, &id).map_err(storage)?;
                Ok(None)
            }
            Err(e) => Err(stripe_failed(e)),
        };
    }
    if tenant.contains('\\') {
        // Stripe's search cannot quote a backslash: the record is all there is.
        return Ok(None);
    }
    let query = [
        (TENANT_KEY.to_string(), tenant.to_string()),
        (EXTERNAL_KEY.to_string(), external_id.to_string()),
    ];
    let mut found = stripe::search_customers(&query, account).map_err(stripe_failed)?;
    match found.len() {
        0 => Ok(None),
        1 => {
            let c = found.remove(0);
            HostState.put(CUSTOMERS, &key, &c.id).map_err(storage)?;
            Ok(Some(c))
        }
        n => Err(OperationError::Refused(format!(
            "{n} Stripe customers carry tenant {tenant} and external id {external_id:?}; \
             take one on with `adopt`"
        ))),
    }
}

fn upsert(req: &CustomerRequest, fields: &CustomerFields) -> Result<Customer, OperationError> {
    let account = req.account.as_deref();
    let metadata = with_own_keys(
        &fields.metadata,
        &[(TENANT_KEY, &req.tenant), (EXTERNAL_KEY, &req.external_id)],
    )?;
    let params = CustomerParams {
        email: fields.email.clone(),
        name: fields.name.clone(),
        default_payment_method: None,
        metadata,
    };
    let existing = match &fields.adopt {
        Some(id) => Some(adoptable(req, id)?),
        None => find(&req.tenant, account, &req.external_id)?.map(|c| c.id),
    };
    let customer = match existing {
        Some(id) => {
            let key = idempotency_key("customer", &req.tenant, &req.request_id, "update");
            stripe::update_customer(&id, &params, account, &key).map_err(stripe_failed)?
        }
        None => {
            // Keyed by the external id, not the request: two first requests
            // racing with different ids still make one customer. A customer
            // made again after one was deleted gets a key of its own (the
            // first key would replay the deleted one's creation).
            let mut one = format!("{}:{}", account.unwrap_or(""), req.external_id);
            let record = record_key(&req.tenant, account, &req.external_id);
            if let Some(deleted) = HostState.get(REPLACED, &record).map_err(storage)? {
                one = format!("{one}:after:{deleted}");
            }
            let key = idempotency_key("customer", &req.tenant, &one, "create");
            stripe::create_customer(&params, account, &key).map_err(stripe_failed)?
        }
    };
    let key = record_key(&req.tenant, account, &req.external_id);
    HostState
        .put(CUSTOMERS, &key, &customer.id)
        .map_err(storage)?;
    super::boundary::record_owner(&customer.id, &req.tenant)?;
    Ok(customer)
}

/// A customer made elsewhere that may be taken on: its metadata names no
/// other tenant and no other external id.
fn adoptable(req: &CustomerRequest, id: &str) -> Result<String, OperationError> {
    if !is_id(id, "cus_") {
        return Err(invalid(format!("adopt must be a cus_... id, not {id:?}")));
    }
    let c = stripe::retrieve_customer(id, req.account.as_deref()).map_err(stripe_failed)?;
    for (key, ours) in [(TENANT_KEY, &req.tenant), (EXTERNAL_KEY, &req.external_id)] {
        if let Some(theirs) = metadata_value(&c.metadata, key)
            && theirs != ours.as_str()
        {
            return Err(OperationError::Refused(format!(
                "customer {id} has metadata {key} {theirs:?}, not {ours:?}"
            )));
        }
    }
    Ok(c.id)
}
