//! The tenant boundary: proves that the connected account and the Stripe
//! objects a request names are the request's tenant's, before the
//! operation writes anything to Stripe, and records the owner of each
//! object an operation creates.
//!
//! An object is the tenant's by the owner psa-billing recorded (a payment
//! from its webhooks, an object from the operation that created it, an
//! account from the registry), else by the `tenant_id` in its Stripe
//! metadata; anything else is `not-owned`. A refusal names the object and
//! the requesting tenant, never the tenant that owns it.
//!
//! Knows nothing about what operations do with the objects: the host says
//! which fields of each operation name what (`api::operations::OPERATIONS`),
//! and the operations only call [`record_owner`] for what they create.

use crate::bindings::exports::psa::billing::operations::{
    NotOwned, OperationError, OwnedObject, OwnershipClaim,
};
use crate::bindings::psa::billing::stripe;
use crate::imports::HostState;
use psa_billing_core::mapping;
use psa_billing_core::state::{self, StateStore};

/// Object id → the tenant whose operation created or took it on.
const OWNERS: &str = "owners";

/// The metadata key psa-billing writes a tenant under.
pub(super) const TENANT_KEY: &str = "tenant_id";

/// Proves every part of `claim`; the first that fails is the answer.
pub(super) fn prove(claim: &OwnershipClaim) -> Result<(), OperationError> {
    let tenant = claim.tenant.as_str();
    mapping::check_tenant(tenant).map_err(OperationError::Invalid)?;
    let account = claim.account.as_deref();
    if let Some(a) = account {
        mapping::check_account_id(a)
            .map_err(|e| OperationError::Invalid(format!("account: {e}")))?;
        match mapping::lookup_tenant(&mut HostState, a).map_err(storage)? {
            Some(t) if t == tenant => {}
            Some(_) => return Err(not_owned(a, tenant, "it is registered to another tenant")),
            None => {
                return Err(not_owned(
                    a,
                    tenant,
                    "it is not registered to the tenant (onboard-tenant, or PUT /v1/tenants/{account})",
                ));
            }
        }
    }
    for object in &claim.objects {
        prove_one(tenant, account, object)?;
    }
    Ok(())
}

/// Records that `tenant` owns `id` (an object its operation created or
/// took on). Staged with the operation's other writes.
pub(super) fn record_owner(id: &str, tenant: &str) -> Result<(), OperationError> {
    HostState
        .put(OWNERS, &state::key(&[id]), tenant)
        .map_err(storage)
}

fn prove_one(
    tenant: &str,
    account: Option<&str>,
    object: &OwnedObject,
) -> Result<(), OperationError> {
    match object {
        OwnedObject::PaymentIntent(id) => prove_payment_intent(tenant, account, id),
        OwnedObject::Customer(id) => {
            check_id(id, "cus_")?;
            by_record_or(id, tenant, || customer_tenant(id, account))
        }
        OwnedObject::AdoptedCustomer(id) => prove_adoptable(tenant, account, id),
        OwnedObject::PaymentMethod(id) => prove_payment_method(tenant, account, id, false),
        OwnedObject::AttachablePaymentMethod(id) => prove_payment_method(tenant, account, id, true),
        OwnedObject::Subscription(id) => {
            check_id(id, "sub_")?;
            by_record_or(id, tenant, || {
                let sub =
                    stripe::retrieve_subscription(id, account).map_err(OperationError::Stripe)?;
                Ok(metadata_tenant(&sub.metadata))
            })
        }
        OwnedObject::Invoice(id) => {
            check_id(id, "in_")?;
            by_record_or(id, tenant, || {
                let invoice =
                    stripe::retrieve_invoice(id, account).map_err(OperationError::Stripe)?;
                Ok(metadata_tenant(&invoice.metadata))
            })
        }
        OwnedObject::Contractor(c) => prove_contractor(tenant, c),
        OwnedObject::Payee(a) => prove_payee(tenant, a),
    }
}

/// A payment intent: the owner its payment was posted under wins over
/// anything else; then the recorded owner, then its metadata.
fn prove_payment_intent(
    tenant: &str,
    account: Option<&str>,
    id: &str,
) -> Result<(), OperationError> {
    check_id(id, "pi_")?;
    if let Some((owner, _ledger)) =
        mapping::payment_owner(&mut HostState, id).map_err(|e| storage(format!("{e:?}")))?
        && let Some(owner) = owner
    {
        return same(id, tenant, &owner);
    }
    by_record_or(id, tenant, || {
        let pi = stripe::retrieve_payment_intent(id, account).map_err(OperationError::Stripe)?;
        Ok(metadata_tenant(&pi.metadata))
    })
}

/// A customer to take on: no other tenant's (by record, else metadata).
fn prove_adoptable(tenant: &str, account: Option<&str>, id: &str) -> Result<(), OperationError> {
    check_id(id, "cus_")?;
    let owner = match recorded(id)? {
        Some(owner) => Some(owner),
        None => customer_tenant(id, account)?,
    };
    match owner {
        Some(owner) if owner != tenant => {
            Err(not_owned(id, tenant, "it is another tenant's customer"))
        }
        _ => Ok(()),
    }
}

/// A payment method: attached to a customer the tenant owns; one to
/// attach (`attachable`) may also be attached to no customer yet.
fn prove_payment_method(
    tenant: &str,
    account: Option<&str>,
    id: &str,
    attachable: bool,
) -> Result<(), OperationError> {
    check_id(id, "pm_")?;
    let pm = stripe::retrieve_payment_method(id, account).map_err(OperationError::Stripe)?;
    match pm.customer {
        Some(customer) => prove_customer_of(id, tenant, account, &customer),
        None if attachable => Ok(()),
        None => Err(not_owned(
            id,
            tenant,
            "it is attached to no customer; attach it to one of the tenant's (attach-payment-method)",
        )),
    }
}

/// A contractor: registered for the tenant with a payout account.
fn prove_contractor(tenant: &str, contractor: &str) -> Result<(), OperationError> {
    match mapping::contractor_account(&mut HostState, tenant, contractor)
        .map_err(OperationError::Invalid)?
    {
        Some(_) => Ok(()),
        None => Err(not_owned(
            contractor,
            tenant,
            "the tenant has no such contractor with a registered account (PUT /v1/contractors/{tenant}/{contractor})",
        )),
    }
}

/// A payout destination: the tenant's registered account or one of its
/// contractors'.
fn prove_payee(tenant: &str, account: &str) -> Result<(), OperationError> {
    mapping::check_account_id(account)
        .map_err(|e| OperationError::Invalid(format!("destination: {e}")))?;
    let own = mapping::lookup_tenant(&mut HostState, account).map_err(storage)?;
    let contractor = mapping::contractor_of(&mut HostState, tenant, account).map_err(storage)?;
    if own.as_deref() == Some(tenant) || contractor.is_some() {
        Ok(())
    } else {
        Err(not_owned(
            account,
            tenant,
            "it is neither the tenant's registered account nor one of its contractors'",
        ))
    }
}

/// A payment method's customer, which must be the tenant's.
fn prove_customer_of(
    pm: &str,
    tenant: &str,
    account: Option<&str>,
    customer: &str,
) -> Result<(), OperationError> {
    by_record_or(customer, tenant, || customer_tenant(customer, account)).map_err(|e| match e {
        OperationError::NotOwned(_) => not_owned(
            pm,
            tenant,
            &format!("it is attached to customer {customer}, which is not the tenant's"),
        ),
        e => e,
    })
}

/// The recorded owner of `id` decides; without one, `read` (its metadata at Stripe).
fn by_record_or(
    id: &str,
    tenant: &str,
    read: impl FnOnce() -> Result<Option<String>, OperationError>,
) -> Result<(), OperationError> {
    if let Some(owner) = recorded(id)? {
        return same(id, tenant, &owner);
    }
    match read()? {
        Some(owner) => same(id, tenant, &owner),
        None => Err(not_owned(
            id,
            tenant,
            "it has no recorded owner and no metadata tenant_id",
        )),
    }
}

fn same(id: &str, tenant: &str, owner: &str) -> Result<(), OperationError> {
    if owner == tenant {
        Ok(())
    } else {
        Err(not_owned(id, tenant, "it is another tenant's"))
    }
}

fn recorded(id: &str) -> Result<Option<String>, OperationError> {
    HostState.get(OWNERS, &state::key(&[id])).map_err(storage)
}

fn customer_tenant(id: &str, account: Option<&str>) -> Result<Option<String>, OperationError> {
    let c = stripe::retrieve_customer(id, account).map_err(OperationError::Stripe)?;
    Ok(metadata_tenant(&c.metadata))
}

fn metadata_tenant(metadata: &[(String, String)]) -> Option<String> {
    metadata_value(metadata, TENANT_KEY).map(str::to_string)
}

/// Ids go to Stripe in URL paths: only its id alphabet, with the right prefix.
fn check_id(id: &str, prefix: &str) -> Result<(), OperationError> {
    if is_id(id, prefix) {
        Ok(())
    } else {
        Err(OperationError::Invalid(format!(
            "expected a {prefix}... id, not {id:?}"
        )))
    }
}

/// The value of `key` in Stripe metadata.
pub(super) fn metadata_value<'a>(metadata: &'a [(String, String)], key: &str) -> Option<&'a str> {
    metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Whether `id` looks like a Stripe id with `prefix`.
pub(super) fn is_id(id: &str, prefix: &str) -> bool {
    id.len() > prefix.len()
        && id.len() <= 255
        && id.starts_with(prefix)
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn not_owned(object: &str, tenant: &str, reason: &str) -> OperationError {
    OperationError::NotOwned(NotOwned {
        object: object.to_string(),
        tenant: tenant.to_string(),
        reason: reason.to_string(),
    })
}

fn storage(e: impl std::fmt::Display) -> OperationError {
    OperationError::Storage(e.to_string())
}
