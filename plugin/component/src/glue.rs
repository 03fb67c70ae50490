//! wit-bindgen glue: WIT types <-> core types.

use psa_billing_core::{
    escrow, event, fees as core_fees, invoice, ledger as core_ledger, mapping, money, refunds,
    rules, seats, signature, state, thin,
};

wit_bindgen::generate!({
    path: "../../wit",
    world: "billing-plugin",
});

use exports::psa::billing::fees::{self, FeeError, Quote, QuoteRequest};
use exports::psa::billing::ledger::{self, LedgerError};
use exports::psa::billing::webhooks::{self, Delivery, Effect, Envelope, HandleError, VerifyError};
use psa::billing::types::{FeeLine, Money, Movement};
use psa::billing::{clock, crypto, log, storage};

pub(crate) struct Plugin;

export!(Plugin);

pub(crate) fn wit_money(m: money::Money) -> Money {
    Money {
        amount: m.amount,
        currency: m.currency,
    }
}

fn core_request(req: QuoteRequest) -> core_fees::QuoteRequest {
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

pub(crate) fn load_rules(text: Option<&str>) -> Result<rules::FeeRules, FeeError> {
    match text {
        Some(t) => PARSED_RULES.with_borrow_mut(|last| match last {
            Some((cached, rules)) if cached == t => Ok(rules.clone()),
            _ => {
                let rules = rules::FeeRules::from_toml(t).map_err(FeeError::InvalidRules)?;
                *last = Some((t.to_string(), rules.clone()));
                Ok(rules)
            }
        }),
        None => Ok(rules::FeeRules::default()),
    }
}

std::thread_local! {
    /// The last valid rules text and what it parsed to. A host sends its
    /// rules file with every call and an instance serves many calls in
    /// turn (the host's `calls_per_instance`), so this spares a TOML parse
    /// per quote: 28 -> 7 µs with the examples' 2 KB file. One entry, so
    /// the memory it holds is one rules text; a text that fails is not kept.
    static PARSED_RULES: std::cell::RefCell<Option<(String, rules::FeeRules)>> =
        const { std::cell::RefCell::new(None) };
}

impl fees::Guest for Plugin {
    fn compute_quote(rules_text: Option<String>, req: QuoteRequest) -> Result<Quote, FeeError> {
        let mut rules = load_rules(rules_text.as_deref())?;
        if req.application_fee_percent.is_some() || req.application_fee_fixed.is_some() {
            // A per-request platform fee replaces the rules' one, tenant's included.
            let percent = match &req.application_fee_percent {
                Some(p) => rules::Percent::parse(p).map_err(FeeError::InvalidRate)?,
                None => rules::Percent::default(),
            };
            let fixed = req.application_fee_fixed.unwrap_or(0);
            if fixed < 0 {
                return Err(FeeError::InvalidRate(format!(
                    "fixed fee {fixed} must not be negative"
                )));
            }
            rules.platform = Some(rules::PlatformFee {
                percent,
                fixed,
                min: None,
                max: None,
                tiers: Vec::new(),
                tier_mode: rules::TierMode::Graduated,
            });
            rules.tenants.values_mut().for_each(|t| t.platform = None);
        }
        let q = core_fees::quote(&rules, &core_request(req)).map_err(fee_error)?;
        Ok(wit_quote(q))
    }

    fn check_breakdown(req: QuoteRequest, lines: Vec<FeeLine>) -> Result<Quote, FeeError> {
        let lines: Vec<core_fees::ProposedLine> = lines
            .into_iter()
            .map(|l| core_fees::ProposedLine {
                label: l.label,
                amount: core_money(l.amount),
            })
            .collect();
        core_fees::check_breakdown(&core_request(req), &lines)
            .map(wit_quote)
            .map_err(fee_error)
    }

    fn check_rules(text: String) -> Result<(), FeeError> {
        load_rules(Some(&text)).map(|_| ())
    }

    fn plan_escrow(rules_text: Option<String>, price: Money) -> Result<fees::EscrowPlan, FeeError> {
        let rules = load_rules(rules_text.as_deref())?;
        let p = escrow::plan(&rules, &core_money(price)).map_err(fee_error)?;
        let m = |amount| Money {
            amount,
            currency: p.currency.clone(),
        };
        let mv = |list: &[escrow::Movement]| {
            list.iter()
                .map(|x| Movement {
                    from: x.from.into(),
                    to: x.to.into(),
                    label: x.label.into(),
                    amount: m(x.amount),
                })
                .collect()
        };
        Ok(fees::EscrowPlan {
            price: m(p.price),
            hold: m(p.hold),
            on_hold: mv(&p.on_hold),
            on_accept: mv(&p.on_accept),
            on_complete: mv(&p.on_complete),
            on_cancel: mv(&p.on_cancel),
        })
    }

    fn check_wallet_move(
        rules_text: Option<String>,
        kind: fees::WalletMove,
        amount: Money,
        available: i64,
    ) -> Result<(), FeeError> {
        let rules = load_rules(rules_text.as_deref())?;
        let kind = match kind {
            fees::WalletMove::Deposit => escrow::WalletMove::Deposit,
            fees::WalletMove::Withdrawal => escrow::WalletMove::Withdrawal,
        };
        escrow::check_wallet_move(&rules, kind, &core_money(amount), available).map_err(fee_error)
    }

    fn total_invoice(
        rules_text: Option<String>,
        currency: String,
        lines: Vec<fees::InvoiceLine>,
    ) -> Result<fees::InvoiceTotals, FeeError> {
        let rules = load_rules(rules_text.as_deref())?;
        let percent = |p: &str| rules::Percent::parse(p).map_err(FeeError::InvalidRate);
        let mut core_lines = Vec::with_capacity(lines.len());
        for l in lines {
            core_lines.push(invoice::Line {
                description: l.description,
                quantity: l.quantity,
                unit_amount: l.unit_amount,
                discount: match l.discount {
                    None => None,
                    Some(fees::Discount::Percent(p)) => {
                        Some(invoice::Discount::Percent(percent(&p)?))
                    }
                    Some(fees::Discount::Amount(a)) => Some(invoice::Discount::Amount(a)),
                },
                tax_rates: l
                    .tax_rates
                    .iter()
                    .map(|t| {
                        Ok(invoice::TaxRate {
                            percent: percent(&t.percent)?,
                            inclusive: t.inclusive,
                        })
                    })
                    .collect::<Result<_, FeeError>>()?,
            });
        }
        let t = invoice::totals(&currency, &core_lines, rules.rounding).map_err(fee_error)?;
        Ok(fees::InvoiceTotals {
            currency: t.currency,
            lines: t
                .lines
                .into_iter()
                .map(|l| fees::LineTotal {
                    description: l.description,
                    subtotal: l.subtotal,
                    discount: l.discount,
                    tax_exclusive: l.tax_exclusive,
                    tax_inclusive: l.tax_inclusive,
                    total: l.total,
                })
                .collect(),
            subtotal: t.subtotal,
            discount: t.discount,
            tax: t.tax,
            total: t.total,
        })
    }

    fn prorate_seats(
        rules_text: Option<String>,
        c: fees::SeatChange,
    ) -> Result<fees::Proration, FeeError> {
        let rules = load_rules(rules_text.as_deref())?;
        let p = seats::prorate(
            &seats::SeatChange {
                currency: c.unit_amount.currency,
                unit_amount: c.unit_amount.amount,
                old_quantity: c.old_quantity,
                new_quantity: c.new_quantity,
                period_start: c.period_start,
                period_end: c.period_end,
                change_at: c.change_at,
            },
            rules.rounding,
        )
        .map_err(fee_error)?;
        let m = |amount| Money {
            amount,
            currency: p.currency.clone(),
        };
        Ok(fees::Proration {
            license_count: p.license_count,
            credit: m(p.credit),
            charge: m(p.charge),
            net: m(p.net),
        })
    }

    fn split_refund(
        rules_text: Option<String>,
        original: fees::Charged,
        amount: i64,
        refund_application_fee: bool,
    ) -> Result<fees::RefundSplit, FeeError> {
        let rules = load_rules(rules_text.as_deref())?;
        money::currency(&original.gross.currency).map_err(|e| fee_error(e.into()))?;
        let r = refunds::refund(
            &refunds::Charged {
                gross: original.gross.amount,
                application_fee: original.application_fee,
                refunded: original.refunded,
                application_fee_refunded: original.application_fee_refunded,
            },
            amount,
            refund_application_fee,
            rules.rounding,
        )
        .map_err(fee_error)?;
        Ok(wit_refund_split(r, &original.gross.currency))
    }

    fn parse_amount(amount: String, currency: String) -> Result<Money, FeeError> {
        money::parse_amount(&amount, &currency)
            .map(wit_money)
            .map_err(|e| fee_error(e.into()))
    }
}

fn verify_signature(d: &Delivery) -> Result<(), VerifyError> {
    use signature::SignatureError as S;
    signature::verify_with(
        &d.body,
        d.signature_header.as_deref(),
        &d.secrets,
        d.tolerance_seconds,
        clock::now(),
        |secret, timestamp, body| {
            let tag = crypto::hmac_sha256(secret, &signature::signed_payload(timestamp, body));
            // A broken host traps the call (a made-up tag could match).
            tag.try_into()
                .expect("the host's hmac-sha256 answers 32 bytes")
        },
    )
    .map_err(|e| match e {
        S::Missing => VerifyError::MissingSignature,
        S::Malformed(m) => VerifyError::MalformedHeader(m),
        S::NoMatch => VerifyError::NoMatchingSignature,
        S::TooOld(s) => VerifyError::TimestampTooOld(s),
        S::InFuture(s) => VerifyError::TimestampInFuture(s),
        S::NoSecret => VerifyError::NoSecretConfigured,
    })?;
    Ok(())
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

fn wit_envelope(e: event::Envelope) -> Envelope {
    Envelope {
        id: e.id,
        event_type: e.event_type,
        account: e.account,
        created: e.created,
        livemode: e.livemode,
        api_version: e.api_version,
    }
}

fn parse_error(e: event::EventError) -> VerifyError {
    match e {
        event::EventError::Malformed(m) => VerifyError::MalformedPayload(m),
        event::EventError::MissingField(f) => VerifyError::MissingField(f),
    }
}

/// The host's storage import as a core `StateStore`.
pub(crate) struct HostState;

impl state::StateStore for HostState {
    fn get(&mut self, collection: &str, key: &str) -> Result<Option<String>, String> {
        storage::get(collection, key).map_err(|e| format!("{e:?}"))
    }
    fn put(&mut self, collection: &str, key: &str, value: &str) -> Result<(), String> {
        storage::put(collection, key, value).map_err(|e| format!("{e:?}"))
    }
    fn delete(&mut self, collection: &str, key: &str) -> Result<(), String> {
        storage::delete(collection, key).map_err(|e| format!("{e:?}"))
    }
}

fn ledger_error(e: core_ledger::LedgerError) -> LedgerError {
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

impl webhooks::Guest for Plugin {
    fn verify(d: Delivery) -> Result<Envelope, VerifyError> {
        verify_signature(&d)?;
        Self::parse(d.body)
    }

    fn parse(body: Vec<u8>) -> Result<Envelope, VerifyError> {
        event::parse_envelope(&body)
            .map(wit_envelope)
            .map_err(parse_error)
    }

    fn verify_thin(d: Delivery) -> Result<webhooks::ThinEnvelope, VerifyError> {
        verify_signature(&d)?;
        thin::parse_thin(&d.body)
            .map(|t| webhooks::ThinEnvelope {
                id: t.id,
                event_type: t.event_type,
                context: t.context,
                related_url: t.related_url,
            })
            .map_err(parse_error)
    }

    fn snapshot_from_thin(
        event: Vec<u8>,
        related: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, VerifyError> {
        thin::snapshot_from_thin(&event, related.as_deref()).map_err(parse_error)
    }

    fn handle(body: Vec<u8>, routing: webhooks::Routing) -> Result<Vec<Effect>, HandleError> {
        let routing = mapping::Routing::or_defaults(routing.tenant_keys, routing.reference_keys);
        let effects = mapping::handle_with(&body, &routing, &mut HostState).map_err(|e| {
            log::log(log::Level::Warn, &e.to_string());
            match e {
                mapping::HandleError::Malformed(m) => HandleError::MalformedPayload(m),
                mapping::HandleError::MissingField(f) => HandleError::MissingField(f),
                mapping::HandleError::Storage(m) => HandleError::Storage(m),
                mapping::HandleError::NotReady(m) => HandleError::NotReady(m),
            }
        })?;
        Ok(effects
            .into_iter()
            .map(crate::effect_glue::wit_effect)
            .collect())
    }
}

impl exports::psa::billing::tenants::Guest for Plugin {
    fn register(account: String, tenant: String) -> Result<(), String> {
        mapping::register_tenant(&mut HostState, &account, &tenant)
    }
    fn unregister(account: String) -> Result<(), String> {
        mapping::unregister_tenant(&mut HostState, &account)
    }
    fn lookup(account: String) -> Result<Option<String>, String> {
        mapping::lookup_tenant(&mut HostState, &account)
    }
}
