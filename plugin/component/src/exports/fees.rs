//! The `fees` export: quotes, custom-breakdown checks, rules checks, and
//! the flows (escrow, wallet moves, invoices, seats, refunds, amounts).

use crate::bindings::Plugin;
use crate::bindings::exports::psa::billing::fees::{self, FeeError, Quote, QuoteRequest};
use crate::bindings::psa::billing::types::{FeeLine, Money, Movement};
use crate::convert::{core_money, core_request, fee_error, wit_money, wit_quote, wit_refund_split};
use psa_billing_core::{escrow, fees as core_fees, invoice, money, refunds, rules, seats};

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

    fn plan_escrow(
        rules_text: Option<String>,
        price: Money,
        parties: fees::EscrowParties,
    ) -> Result<fees::EscrowPlan, FeeError> {
        let rules = load_rules(rules_text.as_deref())?;
        let parties = escrow::Parties {
            wallet: parties.wallet,
            contractor: parties.contractor,
        };
        let p = escrow::plan(&rules, &core_money(price), &parties).map_err(fee_error)?;
        let m = |amount| Money {
            amount,
            currency: p.currency.clone(),
        };
        let mv = |list: &[escrow::Movement]| {
            list.iter()
                .map(|x| Movement {
                    from: x.from.clone(),
                    to: x.to.clone(),
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
