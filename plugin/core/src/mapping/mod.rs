//! Maps a Stripe event onto effects.
//!
//! Stripe neither orders nor de-duplicates deliveries, so for every object the
//! plugin remembers the status it last applied (collection `objects`) and never
//! moves an object backwards: a late, older status becomes an `event.ignored`
//! effect with a "stale" reason instead of contradicting the newer one.

use crate::effects::*;
use crate::event::{self, EventError, at, id_at, str_at};
use crate::ledger;
use crate::money::Money;
use crate::state::{StateStore, key};
use serde_json::{Value, json};

/// Why an event could not be handled. Every case fails the delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The body is not a JSON event.
    #[error("body is not a JSON event: {0}")]
    Malformed(String),
    /// A field the event's type needs is missing or mistyped.
    #[error("required field {0} is missing or has the wrong type")]
    MissingField(String),
    /// The state store failed underneath.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The event refers to one not seen yet that it needs (a refund before
    /// its payment): failed now so that Stripe's retry applies it later.
    #[error("not ready: {0}")]
    NotReady(String),
}

impl From<EventError> for HandleError {
    fn from(e: EventError) -> Self {
        match e {
            EventError::Malformed(m) => HandleError::Malformed(m),
            EventError::MissingField(f) => HandleError::MissingField(f),
        }
    }
}

mod catalog;
mod customers;

mod money_out;
mod refunds;

mod risk;

mod accounts;
mod disputes;
mod invoices;
mod payments;
mod progress;
mod routing;
mod subscriptions;

use accounts::*;
use disputes::*;
use invoices::*;
use payments::*;
use progress::*;
pub use refunds::{FEE_REFUNDS, REFUNDS};
pub use routing::*;
use subscriptions::*;

pub use catalog::{CATALOG, Class, Entry, catalog_markdown, entry};

/// Handles one event body with the default routing.
pub fn handle(body: &[u8], store: &mut dyn StateStore) -> Result<Vec<Effect>, HandleError> {
    handle_with(body, &Routing::default(), store)
}

/// Handles one event body.
pub fn handle_with(
    body: &[u8],
    routing: &Routing,
    store: &mut dyn StateStore,
) -> Result<Vec<Effect>, HandleError> {
    let event = event::parse_json(body)?;
    let env = event::envelope_of(&event)?;
    let Some(entry) = entry(&env.event_type) else {
        return Ok(vec![ignored(&env.event_type, "type not used")]);
    };
    let Some(map) = entry.map else {
        return Ok(vec![ignored(
            &env.event_type,
            &format!("no effect by design: {}", entry.notes),
        )]);
    };
    let object = at(&event, &["data", "object"])
        .filter(|o| o.is_object())
        .ok_or_else(|| HandleError::MissingField("data.object".into()))?;
    let registered = registered_tenant(store, env.account.as_deref())?;
    let mut ctx = Ctx {
        object,
        account: env.account.clone(),
        created: env.created,
        routing,
        tenant: None,
    };
    ctx.tenant = registered.or_else(|| ctx.metadata(&["metadata"], &routing.tenant_keys));
    // A tenant the API could not name (blank, control characters, too
    // long) is refused here too, so no ledger exists that the API cannot read.
    if let Some(tenant) = &ctx.tenant {
        check_tenant(tenant)
            .map_err(|why| HandleError::MissingField(format!("metadata tenant ({why})")))?;
    }
    Ok(map(&ctx, store)?.unwrap_or_else(|stale| vec![ignored(&env.event_type, &stale)]))
}

/// Mapping result: the effect, or the reason the event is stale.
type Mapped = Result<Result<Vec<Effect>, String>, HandleError>;

type MapFn = fn(&Ctx, &mut dyn StateStore) -> Mapped;

struct Ctx<'a> {
    object: &'a Value,
    account: Option<String>,
    created: i64,
    routing: &'a Routing,
    /// The registered tenant of the event's account, else the object's metadata's.
    tenant: Option<String>,
}

impl Ctx<'_> {
    fn req_str(&self, field: &str) -> Result<String, HandleError> {
        str_at(self.object, &[field])
            .map(str::to_string)
            .ok_or_else(|| HandleError::MissingField(format!("data.object.{field}")))
    }
    fn req_i64(&self, field: &str) -> Result<i64, HandleError> {
        self.object
            .get(field)
            .and_then(Value::as_i64)
            .ok_or_else(|| HandleError::MissingField(format!("data.object.{field}")))
    }
    fn opt_str(&self, path: &[&str]) -> Option<String> {
        str_at(self.object, path).map(str::to_string)
    }
    fn opt_i64(&self, path: &[&str]) -> Option<i64> {
        at(self.object, path).and_then(Value::as_i64)
    }
    fn flag(&self, field: &str) -> bool {
        self.object
            .get(field)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    fn money(&self, field: &str) -> Result<Money, HandleError> {
        Ok(Money::new(self.req_i64(field)?, self.req_str("currency")?))
    }
    /// The first of `keys` present (and not empty) in the metadata at `path`.
    fn metadata(&self, path: &[&str], keys: &[String]) -> Option<String> {
        let metadata = at(self.object, path)?;
        keys.iter()
            .filter_map(|k| metadata.get(k.as_str()).and_then(Value::as_str))
            .find(|v| !v.is_empty())
            .map(str::to_string)
    }
    /// The application's tenant (see [`handle_with`]).
    fn tenant(&self) -> Option<String> {
        self.tenant.clone()
    }
    /// The application's own reference for the object.
    fn reference(&self) -> Option<String> {
        self.metadata(&["metadata"], &self.routing.reference_keys)
    }
}

fn ignored(event_type: &str, reason: &str) -> Effect {
    Effect::EventIgnored(EventIgnored {
        event_type: event_type.to_string(),
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests;
