//! The JSON form of effects, as stored in the outbox and served by
//! `GET /v1/effects`: the WIT record's fields in snake_case (serialised by
//! the serde derive on the generated bindings) plus the `kind` that
//! `psa_billing_core::effects::KINDS` names its variant, and
//! `unrouted: true` when the effect names no tenant.

use crate::runtime::Effect;
use crate::storage::NewEffect;
use psa_billing_core::effects::kind_of_variant;
use serde_json::Value;

pub fn to_json(effect: &Effect) -> NewEffect {
    // serde writes a variant as `{"VariantName": {fields}}`.
    let (variant, fields) = match serde_json::to_value(effect) {
        Ok(Value::Object(v)) => v.into_iter().next().unwrap_or_default(),
        _ => Default::default(),
    };
    let kind = kind_of_variant(&variant).unwrap_or("unknown");
    // `kind` first, for people reading the outbox.
    let mut body = serde_json::Map::from_iter([("kind".to_string(), Value::from(kind))]);
    if let Value::Object(fields) = fields {
        // An effect about someone whose tenant could not be found is kept,
        // marked for the application to route by hand.
        if fields.get("tenant") == Some(&Value::Null) {
            body.insert("unrouted".into(), Value::Bool(true));
        }
        body.extend(fields);
    }
    NewEffect {
        kind: kind.to_string(),
        body: Value::Object(body),
    }
}
