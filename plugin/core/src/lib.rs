//! The billing plugin's logic, as plain Rust that compiles both natively (for
//! unit tests and the host's tooling) and to `wasm32-wasip2` (inside the
//! component). Nothing here does I/O: state goes through [`state::StateStore`],
//! time is passed in.

#![warn(missing_docs)]

pub mod currency;
pub mod effects;
pub mod escrow;
pub mod event;
pub mod fees;
pub mod invoice;
pub mod ledger;
pub mod mapping;
pub mod money;
pub mod reconcile;
pub mod refunds;
pub mod rules;
pub mod seats;
pub mod settlement;
pub mod signature;
pub mod state;
pub mod thin;
