//! The `Stripe-Signature` parser and verifier: any header, body, secret and
//! clock never panic; a header made by `sign` always verifies, and any
//! change to the body makes it fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psa_billing_core::signature::{parse_header, sign, verify};

fuzz_target!(|data: &[u8]| {
    // Layout: [tolerance][now: 4 bytes] header \0 secret \0 body
    if data.len() < 5 {
        return;
    }
    let tolerance = u32::from(data[0]);
    let now = 1_700_000_000 + i64::from(u32::from_le_bytes([data[1], data[2], data[3], data[4]]) % 100_000);
    let mut parts = data[5..].splitn(3, |b| *b == 0);
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let secret = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let body = parts.next().unwrap_or_default();

    let _ = parse_header(&header);
    let secrets = vec![secret.clone()];
    let _ = verify(body, Some(&header), &secrets, tolerance, now);

    if !secret.is_empty() {
        let good = sign(body, &secret, now);
        assert!(verify(body, Some(&good), &secrets, tolerance, now).is_ok(), "{good}");
        let mut other = body.to_vec();
        other.push(b'x');
        assert!(verify(&other, Some(&good), &secrets, tolerance, now).is_err());
    }
});
