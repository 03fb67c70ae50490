//! The one path every operation takes, generated from the table of
//! [`super::table`]: [`OPERATIONS`] names each operation and the input
//! fields that name objects; [`dispatch`] parses a JSON input and [`call`]
//! holds one typed call per operation; each proves the named objects the
//! tenant's (the plugin's `prove-owned`), binds the request id to its
//! input, then runs the operation. HTTP, `Billing::operation` and the
//! typed embedding calls all come here.
//!
//! Knows nothing about what an operation does at Stripe: the functions of
//! [`super::operations`] and [`super::billing`] do.

use super::table::operations_table;
use crate::api::{ApiFailure, answer_json};
use crate::runtime::{OperationError, OwnedObject, OwnershipClaim, Runtime};
use crate::storage::{Db, StagedState, StateKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
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

/// One operation: its name, its summary and the top-level fields of its
/// input that name objects it acts on. Fields that name nothing outside
/// the tenant (a wallet, an external id: both are kept per tenant) are not
/// listed.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// The name in `POST /v1/operations/{name}`.
    pub name: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// The fields naming objects that must be the tenant's, and what they name.
    pub owns: &'static [(&'static str, Owned)],
}

/// Generates, from the table: [`OPERATIONS`], one typed call per
/// operation in [`call`], and the JSON dispatch.
macro_rules! generate {
    ($($method:ident $name:literal in $module:ident: $input:ident => $output:ident,
        $summary:literal, owns [$($field:ident: $kind:ident),*];)*) => {
        /// Every operation [`dispatch`] runs, in the table's order, with
        /// what it acts on.
        pub const OPERATIONS: &[Operation] = &[$(Operation {
            name: $name,
            summary: $summary,
            owns: &[$((stringify!($field), Owned::$kind)),*],
        }),*];

        /// One typed call per operation: the tenant boundary, the request
        /// id bound, then the operation (what `Billing`'s typed methods call).
        pub mod call {
            use crate::api::ApiFailure;
            use crate::runtime::Runtime;
            use crate::storage::Db;
            $(
                #[doc = $summary]
                pub async fn $method(
                    runtime: &Runtime,
                    db: &Db,
                    rules: Option<&str>,
                    input: crate::api::$module::$input,
                ) -> Result<crate::runtime::$output, ApiFailure> {
                    super::guarded(runtime, db, $name, input, async |input| {
                        crate::api::$module::$method(runtime, db, rules, input).await
                    })
                    .await
                }
            )*
        }

        /// Runs the operation `name` on its JSON input: `Ok(..)` is the
        /// operation's own result, as JSON.
        pub async fn dispatch(
            runtime: &Runtime,
            db: &Db,
            rules: Option<&str>,
            name: &str,
            input: Value,
        ) -> Result<Result<Value, ApiFailure>, Dispatch> {
            match name {
                $($name => {
                    let input = parse(input)?;
                    Ok(call::$method(runtime, db, rules, input).await.map(|o| answer_json(&o)))
                })*
                _ => Err(Dispatch::Unknown(format!(
                    "no operation {name:?}; there are {}",
                    NAMES.join(", ")
                ))),
            }
        }
    };
}

operations_table!(generate);

/// The input as its operation's type; a mismatch is serde's reason.
fn parse<I: DeserializeOwned>(input: Value) -> Result<I, Dispatch> {
    serde_json::from_value(input).map_err(|e| Dispatch::BadInput(e.to_string()))
}

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

/// The one path every operation takes: the tenant boundary ([`prove`]),
/// the request id bound to its input ([`check_binding`]), then `run`.
/// Both the boundary and the binding read the input as its type
/// serialises it, so an HTTP request and a typed call that mean the same
/// (a default left out or spelt out) are the same request.
async fn guarded<I: Serialize, O>(
    runtime: &Runtime,
    db: &Db,
    name: &str,
    input: I,
    run: impl AsyncFnOnce(I) -> Result<O, ApiFailure>,
) -> Result<O, ApiFailure> {
    let operation = OPERATIONS
        .iter()
        .find(|o| o.name == name)
        .expect("the table generates each call with its own name");
    let json = answer_json(&input);
    prove(runtime, db, operation, &json).await?;
    let unbound = check_binding(db, operation, &json).await?;
    let result = run(input).await;
    if let Some(key) = unbound {
        bind(db, key, &json, result.as_ref().err()).await?;
    }
    result
}

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
    debug_assert_eq!(
        objects.len() + usize::from(account.is_some()),
        operation
            .owns
            .iter()
            .filter(|(f, _)| text(f).is_some())
            .count(),
        "{}: every declared object the input names is in the claim",
        operation.name
    );
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
    failed: Option<&ApiFailure>,
) -> Result<(), ApiFailure> {
    let malformed = matches!(
        failed,
        Some(
            ApiFailure::Invalid(_)
                | ApiFailure::Refused(
                    OperationError::Invalid(_)
                        | OperationError::Fees(_)
                        | OperationError::NotOwned(_)
                )
        )
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
        // A conflict is a concurrent first binding: it stays.
        db.commit_state(&staged)
            .await
            .map_err(ApiFailure::Database)?;
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
