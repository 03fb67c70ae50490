//! The JSON form of effects, as stored in the outbox and served by
//! `GET /v1/effects`: the WIT record's fields in snake_case (serialised by
//! the serde derive on the generated bindings) plus the `kind` that
//! `psa_billing_core::effects::KINDS` names its variant, `unrouted: true`
//! when the effect names no tenant, and Stripe `metadata` as an object.

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
        // Stripe metadata (a WIT list of pairs) reads as the object it is.
        if let Some(Value::Array(pairs)) = body.get("metadata") {
            let object: Option<serde_json::Map<String, Value>> = pairs
                .iter()
                .map(|p| match p.as_array().map(Vec::as_slice) {
                    Some([Value::String(k), v]) => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect();
            if let Some(object) = object {
                body.insert("metadata".into(), Value::Object(object));
            }
        }
    }
    NewEffect {
        kind: kind.to_string(),
        body: Value::Object(body),
    }
}
