//! The world's exports, one file per interface: `fees`, `webhooks`,
//! `ledger`, `tenants` and `operations`. Each converts its arguments
//! (`convert`), calls `psa-billing-core`, and converts the answer back.
//!
//! Knows nothing about the host: storage, clock, crypto and Stripe are
//! imports.

mod fees;
mod ledger;
mod operations;
mod tenants;
mod webhooks;

pub(crate) use fees::load_rules;
