//! The operations table and the one path every operation takes:
//! [`OPERATIONS`] names each operation and the input fields that name
//! objects; [`dispatch`] parses an input, proves those objects the
//! tenant's (the plugin's `prove-owned`), binds the request id to its
//! input, then runs the operation. HTTP, `Billing::operation` and the
//! typed embedding calls all come here.
//!
//! Knows nothing about what an operation does at Stripe: the functions of
//! [`super::operations`] and [`super::billing`] do.

use super::operations::{
    account_status, charge_invoice, deposit, onboard_tenant, refund, set_license_count, withdraw,
};
use crate::api::{ApiFailure, commit};
use crate::runtime::{OperationError, OwnedObject, OwnershipClaim, Runtime};
use crate::storage::{Db, StagedState, StateKey};
use serde_json::Value;

/// What an input field of an operation names, for the tenant boundary:
/// each is proven the request's tenant's (by the plugin's `prove-owned`)
/// before the operation runs, so before anything is written to Stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owned {
    /// A connected account (`acct_...`): registered to the tenant. The
    /// other objects of the request are read on it.
    Account,
    /// A payment intent: the owner recorded for its payment, else its metadata.
    PaymentIntent,
    /// A customer: its recorded owner, else its metadata.
    Customer,
    /// A customer to take on: no other tenant's.
    AdoptedCustomer,
    /// A saved payment method: attached to a customer the tenant owns.
    PaymentMethod,
    /// A payment method to attach: attached to no customer, or to the tenant's.
    AttachablePaymentMethod,
    /// A subscription: its recorded owner, else its metadata.
    Subscription,
    /// An invoice: its recorded owner, else its metadata.
    Invoice,
    /// A contractor: registered for the tenant with a payout account.
    Contractor,
    /// A payout destination: the tenant's account or one of its contractors'.
    Payee,
}

/// One operation: its name and the top-level fields of its input that name
/// objects it acts on. Fields that name nothing outside the tenant (a
/// wallet, an external id: both are kept per tenant) are not listed.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// The name in `POST /v1/operations/{name}`.
    pub name: &'static str,
    /// The fields naming objects that must be the tenant's, and what they name.
    pub owns: &'static [(&'static str, Owned)],
}

const fn op(name: &'static str, owns: &'static [(&'static str, Owned)]) -> Operation {
    Operation { name, owns }
}

use Owned as O;
const ACCOUNT: (&str, Owned) = ("account", O::Account);
const CUSTOMER: (&str, Owned) = ("customer", O::Customer);
const SUBSCRIPTION: (&str, Owned) = ("subscription", O::Subscription);
const INVOICE: (&str, Owned) = ("invoice", O::Invoice);

/// Every operation [`dispatch`] runs, with what it acts on.
pub const OPERATIONS: [Operation; 21] = [
    op(
        "charge-invoice",
        &[ACCOUNT, CUSTOMER, ("payment_method", O::PaymentMethod)],
    ),
    op("refund", &[ACCOUNT, ("payment_intent", O::PaymentIntent)]),
    op("deposit", &[CUSTOMER, ("payment_method", O::PaymentMethod)]),
    op(
        "withdraw",
        &[("contractor", O::Contractor), ("destination", O::Payee)],
    ),
    op("set-license-count", &[ACCOUNT, SUBSCRIPTION]),
    op("onboard-tenant", &[]),
    op("account-status", &[ACCOUNT]),
    op("upsert-customer", &[ACCOUNT, ("adopt", O::AdoptedCustomer)]),
    op("find-customer", &[ACCOUNT]),
    op(
        "attach-payment-method",
        &[ACCOUNT, ("payment_method", O::AttachablePaymentMethod)],
    ),
    op(
        "create-subscription",
        &[
            ACCOUNT,
            CUSTOMER,
            ("default_payment_method", O::PaymentMethod),
        ],
    ),
    op("change-subscription-plan", &[ACCOUNT, SUBSCRIPTION]),
    op("cancel-subscription", &[ACCOUNT, SUBSCRIPTION]),
    op("resume-subscription", &[ACCOUNT, SUBSCRIPTION]),
    op("create-checkout-session", &[ACCOUNT, CUSTOMER]),
    op("create-portal-session", &[ACCOUNT, CUSTOMER]),
    op("create-invoice", &[ACCOUNT, CUSTOMER]),
    op("finalize-invoice", &[ACCOUNT, INVOICE]),
    op("send-invoice", &[ACCOUNT, INVOICE]),
    op("void-invoice", &[ACCOUNT, INVOICE]),
    op("mark-invoice-uncollectible", &[ACCOUNT, INVOICE]),
];

/// Every operation's name, in [`OPERATIONS`]' order.
pub const NAMES: [&str; OPERATIONS.len()] = {
    let mut names = [""; OPERATIONS.len()];
    let mut i = 0;
    while i < OPERATIONS.len() {
        names[i] = OPERATIONS[i].name;
        i += 1;
    }
    names
};

/// The tenant boundary: the claim `input` makes for `operation` (its
/// tenant, its account, the objects its declared fields name), proven by
/// the plugin. Runs before the operation, so a refusal (`not-owned`)
/// happens before anything is written to Stripe.
async fn prove(
    runtime: &Runtime,
    db: &Db,
    operation: &Operation,
    input: &Value,
) -> Result<(), ApiFailure> {
    let text = |field: &str| input.get(field).and_then(Value::as_str).map(str::to_string);
    let Some(tenant) = text("tenant") else {
        // Every operation's input has a required tenant: serde refused it already.
        return Err(ApiFailure::Invalid("an operation needs its tenant".into()));
    };
    let mut account = None;
    let mut objects = Vec::new();
    for (field, kind) in operation.owns {
        let Some(id) = text(field) else { continue };
        objects.push(match kind {
            Owned::Account => {
                account = Some(id);
                continue;
            }
            Owned::PaymentIntent => OwnedObject::PaymentIntent(id),
            Owned::Customer => OwnedObject::Customer(id),
            Owned::AdoptedCustomer => OwnedObject::AdoptedCustomer(id),
            Owned::PaymentMethod => OwnedObject::PaymentMethod(id),
            Owned::AttachablePaymentMethod => OwnedObject::AttachablePaymentMethod(id),
            Owned::Subscription => OwnedObject::Subscription(id),
            Owned::Invoice => OwnedObject::Invoice(id),
            Owned::Contractor => OwnedObject::Contractor(id),
            Owned::Payee => OwnedObject::Payee(id),
        });
    }
    let claim = OwnershipClaim {
        tenant,
        account,
        objects,
    };
    if claim.account.is_none() && claim.objects.is_empty() {
        return Ok(());
    }
    // Reads only: what the call staged is dropped.
    let staged = StagedState::new(db.clone(), format!("operation:{}:prove", operation.name));
    let (proven, _) = runtime.prove_owned(staged, claim).await?;
    proven.map_err(ApiFailure::Refused)
}

/// Each write request's input, by operation, tenant and request id.
const REQUEST_INPUTS: &str = "request_inputs";

/// Binds a request id to its input: the first input given with
/// `(operation, tenant, request_id)` that got past validation is kept, and
/// a later one that differs is refused (409 `conflict`, naming the fields
/// that differ) instead of silently answering the first request's result,
/// or, for a withdrawal retried after a failure, paying whoever the retry
/// names. An absent field and `null` are the same. Reads (no
/// `request_id`) bind nothing. Answers the key to bind once the operation
/// has run, when none is bound yet.
async fn check_binding(
    db: &Db,
    operation: &Operation,
    input: &Value,
) -> Result<Option<StateKey>, ApiFailure> {
    let text = |field: &str| input.get(field).and_then(Value::as_str);
    let (Some(tenant), Some(request_id)) = (text("tenant"), text("request_id")) else {
        return Ok(None);
    };
    let key = (
        REQUEST_INPUTS.to_string(),
        psa_billing_core::state::key(&[operation.name, tenant, request_id]),
    );
    let Some((first, _version)) = db.read_state(&key).await.map_err(ApiFailure::Database)? else {
        return Ok(Some(key));
    };
    let first: Value = serde_json::from_str(&first)
        .map_err(|e| ApiFailure::Database(anyhow::anyhow!("a recorded request input: {e}")))?;
    let differ = differing_fields(&first, input);
    if differ.is_empty() {
        return Ok(None);
    }
    Err(ApiFailure::Conflict(format!(
        "request_id {request_id:?} of {} was first used with other values of: {}; \
         a new request needs a new request_id",
        operation.name,
        differ.join(", ")
    )))
}

/// Binds `key` to `input` after the operation ran, unless it was refused
/// as malformed or not the tenant's (nothing was done: the id stays free
/// for the corrected request). A concurrent first binding wins.
async fn bind(
    db: &Db,
    key: StateKey,
    input: &Value,
    result: &Result<Value, ApiFailure>,
) -> Result<(), ApiFailure> {
    let malformed = matches!(
        result,
        Err(ApiFailure::Invalid(_)
            | ApiFailure::Refused(
                OperationError::Invalid(_) | OperationError::Fees(_) | OperationError::NotOwned(_)
            ))
    );
    if malformed {
        return Ok(());
    }
    let mut staged = StagedState::new(db.clone(), "operation:bind".to_string());
    if staged
        .read(key.clone())
        .await
        .map_err(ApiFailure::Database)?
        .is_none()
    {
        staged.write(key, Some(input.to_string()));
        commit(db, &staged).await?;
    }
    Ok(())
}

/// The top-level fields whose values differ (absent and `null` alike).
fn differing_fields(first: &Value, now: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        first.as_object().unwrap_or(&empty),
        now.as_object().unwrap_or(&empty),
    );
    let mut fields: Vec<&String> = a.keys().chain(b.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| a.get(*f).unwrap_or(&Value::Null) != b.get(*f).unwrap_or(&Value::Null))
        .cloned()
        .collect()
}

/// Why [`dispatch`] ran nothing.
#[derive(Debug)]
pub enum Dispatch {
    /// No operation has that name.
    Unknown(String),
    /// The input does not fit the operation (serde's reason).
    BadInput(String),
}

/// Runs the operation `name` on its JSON input: `Ok(..)` is the
/// operation's own result.
pub async fn dispatch(
    runtime: &Runtime,
    db: &Db,
    rules: Option<&str>,
    name: &str,
    input: Value,
) -> Result<Result<Value, ApiFailure>, Dispatch> {
    use super::billing as b;
    use crate::runtime::InvoiceStep;
    // `$op(runtime, db, [arg,] input)` with the input parsed as its type.
    let Some(operation) = OPERATIONS.iter().find(|o| o.name == name) else {
        return Err(Dispatch::Unknown(format!(
            "no operation {name:?}; there are {}",
            NAMES.join(", ")
        )));
    };
    // The input parsed as its type (a bad input is refused first), then
    // the tenant boundary, then the request id bound to its input, then
    // the operation.
    macro_rules! run_op {
        ($op:path $(, $arg:expr)?) => {
            match serde_json::from_value(input.clone()) {
                Ok(i) => Ok(match prove(runtime, db, operation, &input).await {
                    Ok(()) => match check_binding(db, operation, &input).await {
                        Ok(unbound) => {
                            let result = $op(runtime, db, $($arg,)? i).await;
                            match unbound {
                                Some(key) => bind(db, key, &input, &result).await.and(result),
                                None => result,
                            }
                        }
                        Err(refused) => Err(refused),
                    },
                    Err(refused) => Err(refused),
                }),
                Err(e) => Err(Dispatch::BadInput(e.to_string())),
            }
        };
    }
    match name {
        "charge-invoice" => run_op!(charge_invoice, rules),
        "refund" => run_op!(refund, rules),
        "deposit" => run_op!(deposit, rules),
        "withdraw" => run_op!(withdraw, rules),
        "set-license-count" => run_op!(set_license_count),
        "onboard-tenant" => run_op!(onboard_tenant),
        "account-status" => run_op!(account_status),
        "upsert-customer" => run_op!(b::upsert_customer),
        "find-customer" => run_op!(b::find_customer),
        "attach-payment-method" => run_op!(b::attach_payment_method),
        "create-subscription" => run_op!(b::create_subscription),
        "change-subscription-plan" => run_op!(b::change_subscription_plan),
        "cancel-subscription" => run_op!(b::cancel_subscription),
        "resume-subscription" => run_op!(b::resume_subscription),
        "create-checkout-session" => run_op!(b::create_checkout_session, rules),
        "create-portal-session" => run_op!(b::create_portal_session),
        "create-invoice" => run_op!(b::create_invoice, rules),
        "finalize-invoice" => run_op!(b::advance_invoice, InvoiceStep::Finalize),
        "send-invoice" => run_op!(b::advance_invoice, InvoiceStep::Send),
        "void-invoice" => run_op!(b::advance_invoice, InvoiceStep::Void),
        "mark-invoice-uncollectible" => {
            run_op!(b::advance_invoice, InvoiceStep::MarkUncollectible)
        }
        _ => unreachable!("{name} is listed in OPERATIONS but not dispatched"),
    }
}
