//! The event parser and the mapping: up to eight events (separated by 0xFF
//! bytes) handled in order against one store never panic, the streaming
//! envelope parse agrees with the whole-`Value` one, and whatever the
//! events, every tenant's ledger keeps balancing (debits = credits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use psa_billing_core::state::MemoryState;
use psa_billing_core::{event, ledger, mapping, thin};

fuzz_target!(|data: &[u8]| {
    let mut store = MemoryState::default();
    for body in data.split(|b| *b == 0xFF).take(8) {
        // The streaming envelope parse answers as the parse of a whole
        // `Value` does (malformed JSON's error text aside).
        let streamed = event::parse_envelope(body);
        let whole = event::parse_json(body).and_then(|v| event::envelope_of(&v));
        if !matches!(
            (&streamed, &whole),
            (Err(event::EventError::Malformed(_)), Err(event::EventError::Malformed(_)))
        ) {
            assert_eq!(streamed, whole);
        }
        let _ = thin::parse_thin(body);
        let _ = thin::snapshot_from_thin(body, Some(body));
        let _ = mapping::handle(body, &mut store);
    }
    let tenants: Vec<String> = store
        .entries
        .keys()
        .filter(|(collection, _)| collection == "ledger_books")
        .map(|(_, tenant)| tenant.clone())
        .collect();
    for t in tenants {
        let book = ledger::book(&mut store, &t).expect("a book the ledger wrote reads back");
        for (currency, accounts) in book.balances {
            let sum: i64 = accounts.values().sum();
            assert_eq!(sum, 0, "{t}'s {currency} ledger does not balance");
        }
    }
});
