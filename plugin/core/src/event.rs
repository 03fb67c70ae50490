//! The envelope of a Stripe event, parsed loosely: only the fields the host
//! needs; unknown fields are ignored so new API versions do not break us.

use serde_json::Value;

/// `object` of a thin notification and of a v2 event.
pub const THIN_OBJECT: &str = "v2.core.event";

/// The fields of an event that the host needs before handling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Stripe's event id (`evt_...`): the de-duplication key.
    pub id: String,
    /// Stripe's event type, e.g. `invoice.paid`.
    pub event_type: String,
    /// Connected account (`acct_...`) for Connect events.
    pub account: Option<String>,
    /// Unix seconds at which Stripe created the event.
    pub created: i64,
    /// Live mode (true) or test mode.
    pub livemode: bool,
    /// The API version the event was rendered in.
    pub api_version: Option<String>,
}

/// Why a body is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body is not a JSON object.
    #[error("body is not a JSON object: {0}")]
    Malformed(String),
    /// A field every event has (id, type, created) is missing or mistyped.
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
///
/// Reads just the envelope's fields and skips the rest of the body while
/// checking it as the `Value` parse would, without building it:
/// verify runs on every delivery, and in the component allocation is dear.
/// The answer is exactly `envelope_of(&parse_json(body)?)`'s (the error
/// text of malformed JSON aside); a test and the fuzz target hold them to it.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, EventError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde::de::Deserializer::deserialize_any(&mut de, TopLevel)
        .and_then(|fields| de.end().map(|()| fields))
        .map_err(|e| EventError::Malformed(e.to_string()))?
        .envelope()
}

/// The envelope's fields as the body gave them (the last of a repeated
/// key wins, as in a `Value`).
#[derive(Default)]
struct Fields {
    id: Scalar,
    object: Scalar,
    event_type: Scalar,
    account: Scalar,
    created: Scalar,
    livemode: Scalar,
    api_version: Scalar,
}

/// A field's value, or `Other` for anything the envelope cannot use.
#[derive(Default)]
enum Scalar {
    Str(String),
    Int(i64),
    Bool(bool),
    #[default]
    Other,
}

impl Scalar {
    /// A field of a parsed `Value`, as the streaming parse would read it.
    fn of(value: &Value) -> Scalar {
        match value {
            Value::String(s) => Scalar::Str(s.clone()),
            Value::Bool(b) => Scalar::Bool(*b),
            other => other.as_i64().map_or(Scalar::Other, Scalar::Int),
        }
    }

    fn string(self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    fn required(self, field: &str) -> Result<String, EventError> {
        self.string()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| EventError::MissingField(field.into()))
    }
}

impl Fields {
    /// The envelope's rules, for both parses: a thin notification is
    /// refused, `id` and `type` must be non-empty strings, `created` an
    /// integer; anything else of the wrong type counts as absent.
    fn envelope(self) -> Result<Envelope, EventError> {
        if matches!(&self.object, Scalar::Str(o) if o == THIN_OBJECT) {
            return Err(EventError::Malformed(
                "this is a thin event notification (object v2.core.event): \
                 deliver it to the thin endpoint, /webhooks/stripe/thin"
                    .into(),
            ));
        }
        let id = self.id.required("id")?;
        let event_type = self.event_type.required("type")?;
        for (name, value) in [("id", &id), ("type", &event_type)] {
            check_name(name, value)?;
        }
        let Scalar::Int(created) = self.created else {
            return Err(EventError::MissingField("created".into()));
        };
        Ok(Envelope {
            id,
            event_type,
            account: self.account.string(),
            created,
            livemode: matches!(self.livemode, Scalar::Bool(true)),
            api_version: self.api_version.string(),
        })
    }
}

/// Longest event id or type accepted. Stripe's are a few dozen characters
/// (`evt_` and 24 more); this leaves room for any it may mint, and keeps a
/// sender from storing a megabyte under an id.
pub const MAX_NAME_BYTES: usize = 255;

/// An event's id and type are short and printable: they go into keys, logs
/// and the outbox.
fn check_name(name: &str, value: &str) -> Result<(), EventError> {
    if value.len() > MAX_NAME_BYTES {
        return Err(EventError::Malformed(format!(
            "its {name} is longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(EventError::Malformed(format!(
            "its {name} contains a control character"
        )));
    }
    Ok(())
}

/// Visits the top level, which must be an object (anything else is refused
/// as malformed, as `parse_json` refuses it).
struct TopLevel;

impl<'de> serde::de::Visitor<'de> for TopLevel {
    type Value = Fields;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::Id => &mut f.id,
                Key::Object => &mut f.object,
                Key::Type => &mut f.event_type,
                Key::Account => &mut f.account,
                Key::Created => &mut f.created,
                Key::Livemode => &mut f.livemode,
                Key::ApiVersion => &mut f.api_version,
                Key::Other => {
                    map.next_value::<Skip>()?;
                    continue;
                }
            };
            *slot = map.next_value::<Scalar>()?;
        }
        Ok(f)
    }
}

/// The top-level keys the envelope reads.
enum Key {
    Id,
    Object,
    Type,
    Account,
    Created,
    Livemode,
    ApiVersion,
    Other,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "id" => Key::Id,
                    "object" => Key::Object,
                    "type" => Key::Type,
                    "account" => Key::Account,
                    "created" => Key::Created,
                    "livemode" => Key::Livemode,
                    "api_version" => Key::ApiVersion,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(s))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(n).map_or(Scalar::Other, Scalar::Int))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<Scalar, A::Error> {
                Skipping.visit_map(m).map(|_| Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, s: A) -> Result<Scalar, A::Error> {
                Skipping.visit_seq(s).map(|_| Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, read as a `Value` reads it (strings decoded and
/// checked, numbers parsed) and dropped without being built. serde's
/// `IgnoredAny` skips strings and numbers unchecked: it let through bodies
/// the `Value` parse refuses (a lone surrogate escape, a number out of
/// range), as the `events` fuzz target found.
struct Skip;

impl<'de> serde::Deserialize<'de> for Skip {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
        d.deserialize_any(Skipping)
    }
}

struct Skipping;

impl<'de> serde::de::Visitor<'de> for Skipping {
    type Value = Skip;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// The envelope of an event already parsed whole (the mapping's case).
pub fn envelope_of(event: &Value) -> Result<Envelope, EventError> {
    let field = |name| event.get(name).map_or(Scalar::Other, Scalar::of);
    Fields {
        id: field("id"),
        object: field("object"),
        event_type: field("type"),
        account: field("account"),
        created: field("created"),
        livemode: field("livemode"),
        api_version: field("api_version"),
    }
    .envelope()
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

    /// The streaming parse answers as `envelope_of` over a whole `Value`
    /// does, for bodies with the envelope's keys in any order, repeated,
    /// of any type, nested, escaped, or cut short.
    mod same_as_value {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just("null".to_string()),
                any::<bool>().prop_map(|b| b.to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                Just("1.5".to_string()),
                Just("1e3".to_string()),
                Just("18446744073709551616".to_string()),
                "[a-z_.0-9]{0,12}".prop_map(|s| format!("\"{s}\"")),
                Just(r#""v2.core.event""#.to_string()),
                Just(r#""evt_\u00e9\n\"q\"""#.to_string()),
                // What a `Value` refuses: a lone surrogate, out of range.
                Just(r#""\ud800""#.to_string()),
                Just("1e400".to_string()),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4)
                        .prop_map(|v| format!("[{}]", v.join(","))),
                    prop::collection::vec(("[a-z]{1,3}", inner), 0..4).prop_map(|kv| {
                        let fields: Vec<String> =
                            kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                        format!("{{{}}}", fields.join(","))
                    }),
                ]
            })
        }

        /// A key of the envelope (or not), with a value of the type it
        /// needs three times in four.
        fn field() -> impl Strategy<Value = String> {
            let key = prop_oneof![
                Just("id"),
                Just("object"),
                Just("type"),
                Just("account"),
                Just("created"),
                Just("livemode"),
                Just("api_version"),
                Just("data"),
                Just("i\\u0064"),
            ];
            (
                key,
                value(),
                any::<bool>(),
                any::<i64>(),
                "[a-z_.0-9]{0,8}",
                0..4u8,
            )
                .prop_map(|(k, any_value, b, n, s, pick)| {
                    let good = match k {
                        "created" => n.to_string(),
                        "livemode" => b.to_string(),
                        "object" if b => r#""event""#.to_string(),
                        _ => format!("\"{s}\""),
                    };
                    format!("\"{k}\":{}", if pick == 0 { any_value } else { good })
                })
        }

        fn body() -> impl Strategy<Value = Vec<u8>> {
            // Usually a valid envelope first, so that enough bodies parse
            // for the later fields (repeats, wrong types) to matter.
            let valid = r#""id":"evt_1","type":"charge.succeeded","created":1,"#;
            let object = (prop::collection::vec(field(), 0..12), any::<bool>()).prop_map(
                move |(fields, start_valid)| {
                    let start = if start_valid { valid } else { "" };
                    format!("{{{start}{}}}", fields.join(","))
                },
            );
            (
                prop_oneof![6 => object, 1 => value()],
                any::<prop::sample::Index>(),
                0..4u8,
            )
                .prop_map(|(text, cut, whole)| {
                    let mut b = text.into_bytes();
                    if whole == 0 {
                        b.truncate(cut.index(b.len() + 1));
                    }
                    b
                })
        }

        #[test]
        fn streaming_and_value_agree() {
            let mut runner =
                proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(3000));
            let accepted = std::cell::Cell::new(0);
            runner
                .run(&body(), |body| {
                    let streamed = parse_envelope(&body);
                    let whole = parse_json(&body).and_then(|v| envelope_of(&v));
                    accepted.set(accepted.get() + u32::from(streamed.is_ok()));
                    if !matches!(
                        (&streamed, &whole),
                        (Err(EventError::Malformed(_)), Err(EventError::Malformed(_)))
                    ) {
                        let body = String::from_utf8_lossy(&body);
                        prop_assert_eq!(streamed, whole, "{}", body);
                    }
                    Ok(())
                })
                .unwrap();
            // Most bodies fail somewhere; enough must pass to compare envelopes.
            assert!(
                accepted.get() >= 300,
                "only {} envelopes parsed",
                accepted.get()
            );
        }

        /// Found by the `events` fuzz target: what `IgnoredAny` skipped
        /// unchecked in the fields the envelope does not read.
        #[test]
        fn the_skipped_fields_are_checked_as_a_value_checks_them() {
            let envelope = r#"{"id":"evt_1","type":"invoice.paid","created":1,"data":"#;
            for rest in [
                r#""\ud800""#,
                r#""\udc00x""#,
                "1e400",
                "-1e999",
                "[1e400]",
                r#"{"\ud800":1}"#,
            ] {
                let body = format!("{envelope}{rest}}}");
                assert!(
                    matches!(
                        parse_envelope(body.as_bytes()),
                        Err(EventError::Malformed(_))
                    ),
                    "{body}"
                );
                assert!(parse_json(body.as_bytes()).is_err(), "{body}");
            }
            let mut bad_utf8 =
                br#"{"id":"evt_1","type":"invoice.paid","created":1,"data":""#.to_vec();
            bad_utf8.extend_from_slice(b"\xff\"}");
            assert!(matches!(
                parse_envelope(&bad_utf8),
                Err(EventError::Malformed(_))
            ));
            assert!(parse_json(&bad_utf8).is_err());
        }

        #[test]
        fn the_last_of_a_repeated_key_wins_and_escapes_are_decoded() {
            let body = br#"{"id":"evt_a","id":"evt_\u0062","type":"x","created":5,"created":6}"#;
            let e = parse_envelope(body).unwrap();
            assert_eq!((e.id.as_str(), e.created), ("evt_b", 6));
            assert_eq!(Ok(e), envelope_of(&parse_json(body).unwrap()));
        }
    }
}
