//! The `ledger` export: postings, balances and transactions of a tenant's
//! double-entry ledger, kept in the host's storage.

use crate::bindings::Plugin;
use crate::bindings::exports::psa::billing::ledger::{self, LedgerError};
use crate::bindings::psa::billing::clock;
use crate::bindings::psa::billing::types::Movement;
use crate::convert::{ledger_error, wit_transaction};
use crate::imports::HostState;
use psa_billing_core::ledger as core_ledger;

impl ledger::Guest for Plugin {
    fn post(
        id: String,
        tenant: String,
        currency: String,
        description: String,
        movements: Vec<Movement>,
    ) -> Result<ledger::Transaction, LedgerError> {
        let currency = currency.to_ascii_lowercase();
        if let Some(m) = movements
            .iter()
            .find(|m| !m.amount.currency.eq_ignore_ascii_case(&currency))
        {
            return Err(LedgerError::Invalid(format!(
                "the transaction is in {currency}, a movement in {}",
                m.amount.currency
            )));
        }
        let posting = core_ledger::Posting {
            id,
            tenant,
            currency,
            description,
            at: clock::now(),
            // Posted by the application: no Stripe object of its own.
            source: None,
            transfers: movements
                .iter()
                .map(|m| core_ledger::Transfer::new(&m.from, &m.to, m.amount.amount))
                .collect(),
        };
        core_ledger::post(&mut HostState, posting)
            .map(|(tx, _)| wit_transaction(tx))
            .map_err(ledger_error)
    }

    fn balances(tenant: String) -> Result<Vec<ledger::Balance>, LedgerError> {
        let book = core_ledger::book(&mut HostState, &tenant).map_err(ledger_error)?;
        Ok(book
            .balances
            .into_iter()
            .flat_map(|(currency, accounts)| {
                accounts
                    .into_iter()
                    .map(move |(account, amount)| ledger::Balance {
                        currency: currency.clone(),
                        account,
                        amount,
                    })
            })
            .collect())
    }

    fn transactions(
        tenant: String,
        after: u64,
        limit: u32,
    ) -> Result<Vec<ledger::Transaction>, LedgerError> {
        core_ledger::transactions(&mut HostState, &tenant, after, limit)
            .map(|txs| txs.into_iter().map(wit_transaction).collect())
            .map_err(ledger_error)
    }
}
