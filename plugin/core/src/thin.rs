//! Thin events (Stripe's API v2 event notifications). A notification
//! carries only the event's id, type and a reference to the object it is
//! about (`related_object`); the host fetches the event
//! (`GET /v2/core/events/{id}`) and the related object, and this module
//! turns them into a snapshot-shaped event that the catalog maps like any
//! other: a thin `v1.<type>` becomes `<type>` with the object as fetched.
//! Types without a `v1.` prefix (v2 resources) map to `event.ignored`.

use crate::event::{EventError, THIN_OBJECT, parse_json, required_str, str_at};
use serde_json::{Value, json};

/// What the host needs from a verified thin notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinEnvelope {
    /// The event's id (`evt_...`): the de-duplication key.
    pub id: String,
    /// The v2 type, e.g. `v1.payment_intent.succeeded`.
    pub event_type: String,
    /// The connected account it happened on (`context`).
    pub context: Option<String>,
    /// The related object's API path (`/v1/payment_intents/pi_...`), to fetch.
    pub related_url: Option<String>,
}

/// Parses a thin notification (or a fetched v2 event).
pub fn parse_thin(body: &[u8]) -> Result<ThinEnvelope, EventError> {
    thin_of(&parse_json(body)?)
}

fn thin_of(v: &Value) -> Result<ThinEnvelope, EventError> {
    match str_at(v, &["object"]) {
        Some(THIN_OBJECT) => {}
        Some("event") => {
            return Err(EventError::Malformed(
                "this is a snapshot event (object event): deliver it to /webhooks/stripe".into(),
            ));
        }
        _ => return Err(EventError::MissingField("object".into())),
    }
    let related_url = str_at(v, &["related_object", "url"])
        .filter(|u| u.starts_with("/v1/"))
        .map(str::to_string);
    Ok(ThinEnvelope {
        id: required_str(v, "id")?.to_string(),
        event_type: required_str(v, "type")?.to_string(),
        context: str_at(v, &["context"])
            .filter(|c| c.starts_with("acct_"))
            .map(str::to_string),
        related_url,
    })
}

/// A snapshot-shaped event from a fetched v2 event and its related object.
pub fn snapshot_from_thin(event: &[u8], related: Option<&[u8]>) -> Result<Vec<u8>, EventError> {
    let v = parse_json(event)?;
    let thin = thin_of(&v)?;
    let created = str_at(&v, &["created"])
        .ok_or_else(|| EventError::MissingField("created".into()))
        .and_then(unix_seconds)?;
    let (event_type, object) = match (thin.event_type.strip_prefix("v1."), related) {
        (Some(t), Some(raw)) => (t.to_string(), parse_json(raw)?),
        // Nothing to map it onto: the catalog records it as ignored.
        _ => (
            thin.event_type.clone(),
            v.get("data").cloned().unwrap_or(json!({})),
        ),
    };
    let snapshot = json!({
        "id": thin.id,
        "object": "event",
        "type": event_type,
        "created": created,
        "account": thin.context,
        "livemode": v.get("livemode").and_then(Value::as_bool).unwrap_or(false),
        "api_version": Value::Null,
        "data": { "object": object },
        "psa_billing_thin": true,
    });
    Ok(snapshot.to_string().into_bytes())
}

/// Unix seconds of an RFC 3339 timestamp (`2024-09-26T17:46:22.134Z`,
/// `...+02:00`); fractions are dropped. The date must exist
/// (`2024-02-31` is refused); parsing is jiff's.
pub fn unix_seconds(text: &str) -> Result<i64, EventError> {
    let bad = || EventError::MissingField(format!("created ({text:?} is not an RFC 3339 time)"));
    // RFC 3339's shape: a full date, `T`, hours, minutes and seconds, then
    // an offset (jiff alone would also take ISO 8601's shorter forms).
    let b = text.as_bytes();
    let shaped = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':'
        && !text.contains('[');
    if !shaped {
        return Err(bad());
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            unix_seconds("2024-09-26T17:46:22.134Z").unwrap(),
            1_727_372_782
        );
        assert_eq!(
            unix_seconds("2024-09-26T19:46:22+02:00").unwrap(),
            1_727_372_782
        );
        assert_eq!(unix_seconds("2000-02-29T00:00:00Z").unwrap(), 951_782_400);
        for bad in [
            "",
            "2024-09-26",
            "2024-13-01T00:00:00Z",
            "2024-09-26T17:46:22",
            "2024-09-26T17:46:22.Z",
            "2024-02-31T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-04-31T12:00:00+02:00",
            "2024-09-26T17:46Z",
            "2024-09-26T17:46:22+02:00[Europe/Paris]",
        ] {
            assert!(unix_seconds(bad).is_err(), "{bad}");
        }
    }

    fn thin(kind: &str) -> Vec<u8> {
        json!({
            "id": "evt_test_65R", "object": "v2.core.event", "type": kind,
            "created": "2024-09-26T17:46:22.134Z", "livemode": false, "context": "acct_1X",
            "related_object": {"id": "pi_1", "type": "payment_intent", "url": "/v1/payment_intents/pi_1"},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_v1_thin_event_becomes_its_snapshot_type_with_the_fetched_object() {
        let env = parse_thin(&thin("v1.payment_intent.succeeded")).unwrap();
        assert_eq!(env.context.as_deref(), Some("acct_1X"));
        assert_eq!(env.related_url.as_deref(), Some("/v1/payment_intents/pi_1"));
        let object = br#"{"id": "pi_1", "object": "payment_intent", "amount": 100}"#;
        let snap = snapshot_from_thin(&thin("v1.payment_intent.succeeded"), Some(object)).unwrap();
        let env = crate::event::parse_envelope(&snap).unwrap();
        assert_eq!(env.event_type, "payment_intent.succeeded");
        assert_eq!(env.created, 1_727_372_782);
        assert_eq!(env.account.as_deref(), Some("acct_1X"));
        let v: Value = serde_json::from_slice(&snap).unwrap();
        assert_eq!(v["data"]["object"]["amount"], 100);
    }

    #[test]
    fn each_endpoint_refuses_the_other_kind() {
        let snapshot = br#"{"id": "evt_1", "object": "event", "type": "x", "created": 1}"#;
        let e = parse_thin(snapshot).unwrap_err();
        assert!(matches!(e, EventError::Malformed(m) if m.contains("/webhooks/stripe")));
        let e = crate::event::parse_envelope(&thin("v1.charge.refunded")).unwrap_err();
        assert!(matches!(e, EventError::Malformed(m) if m.contains("/webhooks/stripe/thin")));
    }
}
