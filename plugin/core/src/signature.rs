//! Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`,
//! HMAC-SHA256 over `"<t>.<raw body>"` keyed with the endpoint secret's bytes.
//!
//! Every `v1` is tried against every secret (secret rotation sends several),
//! comparison is constant-time (`subtle`), and the timestamp must
//! be within the tolerance on both sides of `now`: the official SDKs only
//! refuse old timestamps; a far-future one is as suspicious.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The default tolerance, as in Stripe's SDKs.
pub const DEFAULT_TOLERANCE_SECONDS: u32 = 300;

/// Why a delivery's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("missing Stripe-Signature header")]
    Missing,
    /// The header does not follow `t=...,v1=...`.
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(String),
    /// No `v1` signature matches any configured secret.
    #[error("no v1 signature matches any configured endpoint secret")]
    NoMatch,
    /// The signed timestamp is older than the tolerance (age in seconds).
    #[error("signature timestamp is {0} s old, beyond the tolerance")]
    TooOld(i64),
    /// The signed timestamp is ahead of the clock beyond the tolerance (seconds ahead).
    #[error("signature timestamp is {0} s in the future, beyond the tolerance")]
    InFuture(i64),
    /// No endpoint secret was given to check against.
    #[error("no endpoint secret configured")]
    NoSecret,
}

/// The parts of a `Stripe-Signature` header that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The signed timestamp `t`, Unix seconds.
    pub timestamp: i64,
    /// Decoded `v1` signatures (32 bytes each).
    pub v1: Vec<Vec<u8>>,
}

/// Parses the header. Unknown schemes (`v0`, future ones) are skipped, as
/// Stripe asks; a `v1` that is not 64 hex digits is an error.
pub fn parse_header(header: &str) -> Result<Header, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| SignatureError::Malformed(format!("element {part:?} has no '='")))?;
        match key {
            "t" => {
                let t = value.parse::<i64>().map_err(|_| {
                    SignatureError::Malformed(format!("timestamp {value:?} is not an integer"))
                })?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed("several timestamps".into()));
                }
            }
            "v1" => v1.push(decode_hex(value).ok_or_else(|| {
                SignatureError::Malformed(format!("v1 {value:?} is not 64 hex digits"))
            })?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| SignatureError::Malformed("no t= element".into()))?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature".into()));
    }
    Ok(Header { timestamp, v1 })
}

/// Checks a delivery. `now` is Unix seconds from the host's clock.
pub fn verify(
    body: &[u8],
    header: Option<&str>,
    secrets: &[String],
    tolerance: u32,
    now: i64,
) -> Result<(), SignatureError> {
    verify_with(body, header, secrets, tolerance, now, v1_tag)
}

/// [`verify`] with the tag computed by `tag(secret, timestamp, body)`: a
/// WebAssembly guest asks its host, whose SHA-256 uses the CPU's SHA
/// instructions (in the guest it is plain arithmetic, several times
/// slower). The comparison stays here, in constant time.
pub fn verify_with(
    body: &[u8],
    header: Option<&str>,
    secrets: &[String],
    tolerance: u32,
    now: i64,
    tag: impl Fn(&[u8], i64, &[u8]) -> [u8; 32],
) -> Result<(), SignatureError> {
    use subtle::ConstantTimeEq;
    let header = header.ok_or(SignatureError::Missing)?;
    let secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let parsed = parse_header(header)?;
    let matched = secrets.iter().any(|secret| {
        let expected = tag(secret.as_bytes(), parsed.timestamp, body);
        parsed
            .v1
            .iter()
            .any(|sig| bool::from(expected.as_slice().ct_eq(sig)))
    });
    if !matched {
        return Err(SignatureError::NoMatch);
    }
    // Checked after the signature so that an attacker learns nothing about
    // our clock from unsigned requests.
    let age = now.saturating_sub(parsed.timestamp);
    if age > i64::from(tolerance) {
        return Err(SignatureError::TooOld(age));
    }
    if -age > i64::from(tolerance) {
        return Err(SignatureError::InFuture(-age));
    }
    Ok(())
}

/// Stripe's v1 tag: HMAC-SHA256 of `{timestamp}.{body}` under the secret.
pub fn v1_tag(secret: &[u8], timestamp: i64, body: &[u8]) -> [u8; 32] {
    hmac_of_parts(secret, &[timestamp.to_string().as_bytes(), b".", body])
}

/// HMAC-SHA256 of `message` under `key`: what a host answers a guest's
/// [`verify_with`] with, over [`signed_payload`].
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    hmac_of_parts(key, &[message])
}

fn hmac_of_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    parts.iter().for_each(|p| mac.update(p));
    mac.finalize().into_bytes().into()
}

/// What [`v1_tag`] authenticates: `{timestamp}.{body}`.
pub fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(body.len() + 21);
    payload.extend_from_slice(timestamp.to_string().as_bytes());
    payload.push(b'.');
    payload.extend_from_slice(body);
    payload
}

/// Builds a valid header for `body` at `timestamp` (tests, the `sign` CLI).
pub fn sign(body: &[u8], secret: &str, timestamp: i64) -> String {
    format!(
        "t={timestamp},v1={}",
        encode_hex(&v1_tag(secret.as_bytes(), timestamp, body))
    )
}

pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;
    const NOW: i64 = 1_700_000_000;

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_tag_from_elsewhere_is_checked_the_same_way() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, "whsec_a", 1_700_000_000);
        let secrets = secrets(&["whsec_a"]);
        let hosted = |key: &[u8], t: i64, b: &[u8]| hmac_sha256(key, &signed_payload(t, b));
        assert_eq!(
            hosted(b"whsec_a", 1_700_000_000, body),
            v1_tag(b"whsec_a", 1_700_000_000, body)
        );
        let now = 1_700_000_010;
        assert_eq!(
            verify_with(body, Some(&header), &secrets, 300, now, hosted),
            Ok(())
        );
        assert_eq!(
            verify_with(body, Some(&header), &secrets, 300, now, |_, _, _| [0; 32]),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn accepts_a_valid_signature() {
        let h = sign(BODY, "whsec_a", NOW);
        assert_eq!(
            verify(BODY, Some(&h), &secrets(&["whsec_a"]), 300, NOW),
            Ok(())
        );
    }

    #[test]
    fn matches_a_known_vector() {
        // Computed independently with openssl:
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
        let h = sign(b"{}", "whsec_test", NOW);
        assert_eq!(
            h,
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn any_secret_and_any_v1_may_match() {
        let good = sign(BODY, "whsec_new", NOW);
        let bad = sign(BODY, "whsec_other", NOW);
        let both = format!("{},{}", bad, good.split_once(',').unwrap().1);
        let s = secrets(&["whsec_old", "whsec_new"]);
        assert_eq!(verify(BODY, Some(&both), &s, 300, NOW), Ok(()));
        assert_eq!(verify(BODY, Some(&good), &s, 300, NOW), Ok(()));
        assert_eq!(
            verify(BODY, Some(&bad), &s, 300, NOW),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn refuses_tampering_and_missing_parts() {
        let h = sign(BODY, "whsec_a", NOW);
        let s = secrets(&["whsec_a"]);
        let tampered = br#"{"id":"evt_2","type":"invoice.paid"}"#;
        assert_eq!(
            verify(tampered, Some(&h), &s, 300, NOW),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify(BODY, None, &s, 300, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(BODY, Some(&h), &secrets(&[""]), 300, NOW),
            Err(SignatureError::NoSecret)
        );
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "garbage", "t=1,t=2,v1=aa"] {
            assert!(
                matches!(
                    verify(BODY, Some(bad), &s, 300, NOW),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        // A v0 element is skipped, not an error.
        let with_v0 = format!("{h},v0=abc");
        assert_eq!(verify(BODY, Some(&with_v0), &s, 300, NOW), Ok(()));
    }

    #[test]
    fn timestamp_tolerance_on_both_sides() {
        let s = secrets(&["whsec_a"]);
        let at = |t: i64| sign(BODY, "whsec_a", t);
        assert_eq!(verify(BODY, Some(&at(NOW - 300)), &s, 300, NOW), Ok(()));
        assert_eq!(verify(BODY, Some(&at(NOW + 300)), &s, 300, NOW), Ok(()));
        assert_eq!(
            verify(BODY, Some(&at(NOW - 301)), &s, 300, NOW),
            Err(SignatureError::TooOld(301))
        );
        assert_eq!(
            verify(BODY, Some(&at(NOW + 301)), &s, 300, NOW),
            Err(SignatureError::InFuture(301))
        );
    }
}
