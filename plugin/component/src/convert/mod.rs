//! WIT types <-> core types, field for field: money, quotes, refund splits,
//! envelopes, ledger transactions and errors here; effects in `effects`.
//!
//! Knows nothing about what the exports do with them.

pub(crate) mod effects;

use crate::bindings::exports::psa::billing::fees::{self, FeeError, Quote, QuoteRequest};
use crate::bindings::exports::psa::billing::ledger::{self, LedgerError};
use crate::bindings::exports::psa::billing::webhooks::{Envelope, VerifyError};
use crate::bindings::psa::billing::types::{FeeLine, Money};
use psa_billing_core::{event, fees as core_fees, ledger as core_ledger, money, refunds};

pub(crate) fn wit_money(m: money::Money) -> Money {
    Money {
        amount: m.amount,
        currency: m.currency,
    }
}

pub(crate) fn core_request(req: QuoteRequest) -> core_fees::QuoteRequest {
    core_fees::QuoteRequest {
        amount: core_money(req.amount),
        payment_method: req.payment_method,
        tenant: req.tenant,
        international: req.international,
        converted: req.converted,
    }
}

pub(crate) fn wit_quote(q: core_fees::Quote) -> Quote {
    let m = |amount| Money {
        amount,
        currency: q.currency.clone(),
    };
    Quote {
        gross: m(q.gross),
        processor_fee: m(q.processor_fee),
        application_fee: m(q.application_fee),
        net: m(q.net),
        lines: q
            .lines
            .iter()
            .map(|l| FeeLine {
                label: l.label.into(),
                payer: l.payer.into(),
                payee: l.payee.into(),
                amount: m(l.amount),
            })
            .collect(),
    }
}

pub(crate) fn core_money(m: Money) -> money::Money {
    money::Money::new(m.amount, m.currency)
}

pub(crate) fn fee_error(e: core_fees::FeeError) -> FeeError {
    use core_fees::FeeError as E;
    match e {
        E::UnknownCurrency(c) => FeeError::UnknownCurrency(c),
        E::InvalidAmount(m) => FeeError::InvalidAmount(m),
        E::InvalidRate(m) => FeeError::InvalidRate(m),
        E::FeesExceedAmount(m) => FeeError::FeesExceedAmount(m),
        E::InvalidRules(m) => FeeError::InvalidRules(m),
    }
}

pub(crate) fn wit_refund_split(r: refunds::Refund, currency: &str) -> fees::RefundSplit {
    fees::RefundSplit {
        amount: Money {
            amount: r.amount,
            currency: currency.to_string(),
        },
        application_fee_refunded: r.application_fee_refunded,
        tenant_debit: r.tenant_debit,
        total_refunded: r.total_refunded,
        full: r.full,
    }
}

pub(crate) fn wit_envelope(e: event::Envelope) -> Envelope {
    Envelope {
        id: e.id,
        event_type: e.event_type,
        account: e.account,
        created: e.created,
        livemode: e.livemode,
        api_version: e.api_version,
    }
}

pub(crate) fn parse_error(e: event::EventError) -> VerifyError {
    match e {
        event::EventError::Malformed(m) => VerifyError::MalformedPayload(m),
        event::EventError::MissingField(f) => VerifyError::MissingField(f),
    }
}

pub(crate) fn ledger_error(e: core_ledger::LedgerError) -> LedgerError {
    use core_ledger::LedgerError as E;
    match e {
        E::Invalid(m) => LedgerError::Invalid(m),
        E::Unbalanced(m) => LedgerError::Unbalanced(m),
        E::Storage(m) => LedgerError::Storage(m),
        E::Conflict(m) => LedgerError::Conflict(m),
    }
}

pub(crate) fn wit_transaction(t: core_ledger::Transaction) -> ledger::Transaction {
    ledger::Transaction {
        id: t.id,
        tenant: t.tenant,
        seq: t.seq,
        currency: t.currency,
        description: t.description,
        at: t.at,
        source: t.source,
        legs: t
            .legs
            .into_iter()
            .map(|l| ledger::Leg {
                account: l.account,
                debit: l.debit,
                credit: l.credit,
            })
            .collect(),
    }
}
