//! Money parsing: any text and currency code never panic, and an amount
//! that parses formats back to text that parses to the same amount.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psa_billing_core::money::{format_amount, parse_amount};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (code, amount) = match text.split_once(' ') {
        Some((c, a)) => (c.to_string(), a.to_string()),
        None => ("usd".to_string(), text.to_string()),
    };
    if let Ok(m) = parse_amount(&amount, &code) {
        let shown = format_amount(m.amount, &code).expect("a parsed currency formats");
        let again = parse_amount(&shown, &code).expect("formatted text parses");
        assert_eq!(again.amount, m.amount, "{amount:?} -> {shown:?}");
    }
});
