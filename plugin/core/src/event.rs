//! The envelope of a Stripe event, parsed loosely: only the fields the host
//! needs; unknown fields are ignored so new API versions do not break us.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub event_type: String,
    pub account: Option<String>,
    pub created: i64,
    pub livemode: bool,
    pub api_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not a JSON object: {0}")]
    Malformed(String),
    #[error("required field {0} is missing or has the wrong type")]
    MissingField(String),
}

/// Parses a body into a JSON object.
pub fn parse_json(body: &[u8]) -> Result<Value, EventError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EventError::Malformed(e.to_string()))?;
    if !value.is_object() {
        return Err(EventError::Malformed("top level is not an object".into()));
    }
    Ok(value)
}

/// Parses the envelope of a Stripe (snapshot) event.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, EventError> {
    envelope_of(&parse_json(body)?)
}

pub fn envelope_of(event: &Value) -> Result<Envelope, EventError> {
    if str_at(event, &["object"]) == Some(crate::thin::THIN_OBJECT) {
        return Err(EventError::Malformed(
            "this is a thin event notification (object v2.core.event): \
             deliver it to the thin endpoint, /webhooks/stripe/thin"
                .into(),
        ));
    }
    let id = required_str(event, "id")?;
    let event_type = required_str(event, "type")?;
    let created = event
        .get("created")
        .and_then(Value::as_i64)
        .ok_or_else(|| EventError::MissingField("created".into()))?;
    Ok(Envelope {
        id: id.to_string(),
        event_type: event_type.to_string(),
        account: str_at(event, &["account"]).map(str::to_string),
        created,
        livemode: event
            .get("livemode")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        api_version: str_at(event, &["api_version"]).map(str::to_string),
    })
}

pub(crate) fn required_str<'a>(event: &'a Value, field: &str) -> Result<&'a str, EventError> {
    str_at(event, &[field])
        .filter(|s| !s.is_empty())
        .ok_or_else(|| EventError::MissingField(field.into()))
}

/// The value at a path of object keys.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// A string at a path; `None` for a missing, null or non-string value.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

/// An id at a path, whether Stripe sent it as a string or an expanded object.
pub fn id_at(value: &Value, path: &[&str]) -> Option<String> {
    match at(value, path)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_envelope() {
        let body = br#"{"id":"evt_1","object":"event","type":"invoice.paid","created":1700000000,
            "account":"acct_9","livemode":true,"api_version":"2024-06-20","data":{"object":{}}}"#;
        let e = parse_envelope(body).unwrap();
        assert_eq!(e.id, "evt_1");
        assert_eq!(e.event_type, "invoice.paid");
        assert_eq!(e.account.as_deref(), Some("acct_9"));
        assert_eq!(e.created, 1_700_000_000);
        assert!(e.livemode);
        assert_eq!(e.api_version.as_deref(), Some("2024-06-20"));
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        assert!(matches!(
            parse_envelope(b"{not json"),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            parse_envelope(b"[1,2]"),
            Err(EventError::Malformed(_))
        ));
        assert_eq!(
            parse_envelope(br#"{"type":"x","created":1}"#),
            Err(EventError::MissingField("id".into()))
        );
        assert_eq!(
            parse_envelope(br#"{"id":"","type":"x","created":1}"#),
            Err(EventError::MissingField("id".into()))
        );
        assert_eq!(
            parse_envelope(br#"{"id":"evt","created":1}"#),
            Err(EventError::MissingField("type".into()))
        );
        assert_eq!(
            parse_envelope(br#"{"id":"evt","type":"x","created":"soon"}"#),
            Err(EventError::MissingField("created".into()))
        );
    }
}
