//! The world's exports, one file per interface: `fees`, `webhooks`,
//! `ledger`, `tenants` and `operations` (whose Stripe objects have files of
//! their own: `customers`, `subscriptions`, `checkout`, `invoices`). Each
//! converts its arguments
//! (`convert`), calls `psa-billing-core`, and converts the answer back.
//!
//! Knows nothing about the host: storage, clock, crypto and Stripe are
//! imports.

mod boundary;
mod checkout;
mod customers;
mod fees;
mod invoices;
mod ledger;
mod operations;
mod requests;
mod subscriptions;
mod tenants;
mod webhooks;
mod withdrawals;

pub(crate) use fees::load_rules;
