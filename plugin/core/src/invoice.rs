//! Invoice totals (seed 001): lines of quantity × unit price, an optional
//! discount, and tax rates, exclusive (added on top) or inclusive (contained
//! in the price). Each line is rounded on its own, and the invoice totals are
//! the sums of the lines, so they always match.

use crate::fees::FeeError;
use crate::money;
use crate::rules::{Percent, Rounding};
use rust_decimal::Decimal;

/// A discount on an invoice line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discount {
    /// Percent off, as a decimal string.
    Percent(Percent),
    /// Minor units off the line, at most the line's subtotal.
    Amount(i64),
}

/// A tax on an invoice line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxRate {
    /// Decimal string, e.g. "8.25".
    pub percent: Percent,
    /// Already contained in the unit price (VAT-style), rather than added.
    pub inclusive: bool,
}

/// One line of an invoice: quantity × unit price, less a discount, plus taxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Free text for people reading it.
    pub description: String,
    /// How many units; never negative.
    pub quantity: i64,
    /// Price of one unit, minor units.
    pub unit_amount: i64,
    /// A discount on this line, if any.
    pub discount: Option<Discount>,
    /// Taxes on this line, applied after the discount.
    pub tax_rates: Vec<TaxRate>,
}

/// Totals of one line, all in minor units. total = subtotal - discount + tax-exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTotal {
    /// Free text for people reading it.
    pub description: String,
    /// quantity × unit amount.
    pub subtotal: i64,
    /// Discount taken off, minor units.
    pub discount: i64,
    /// Tax added on top (exclusive rates).
    pub tax_exclusive: i64,
    /// Tax contained in the price (inclusive rates), for reporting.
    pub tax_inclusive: i64,
    /// subtotal − discount + exclusive tax.
    pub total: i64,
}

/// Invoice totals: each the sum of the lines' values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceTotals {
    /// Lowercase ISO currency code.
    pub currency: String,
    /// Each line's totals, in input order.
    pub lines: Vec<LineTotal>,
    /// Before discounts and taxes, minor units.
    pub subtotal: i64,
    /// Discount taken off, minor units.
    pub discount: i64,
    /// Tax, minor units.
    pub tax: i64,
    /// What is due, minor units.
    pub total: i64,
}

fn too_large() -> FeeError {
    FeeError::InvalidAmount("invoice amounts too large".into())
}

fn round(d: Decimal, rounding: Rounding) -> Result<i64, FeeError> {
    rounding.apply(d).try_into().map_err(|_| too_large())
}

/// Computes an invoice's totals, line by line.
pub fn totals(
    currency: &str,
    lines: &[Line],
    rounding: Rounding,
) -> Result<InvoiceTotals, FeeError> {
    let cur = money::currency(currency)?;
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let at = |why: String| FeeError::InvalidAmount(format!("line {}: {why}", i + 1));
        if l.quantity < 0 || l.unit_amount < 0 {
            return Err(at("quantity and unit amount must not be negative".into()));
        }
        let subtotal = l
            .quantity
            .checked_mul(l.unit_amount)
            .ok_or_else(too_large)?;
        let discount = match &l.discount {
            None => 0,
            Some(Discount::Percent(p)) => round(
                Decimal::from(subtotal) * p.0 / Decimal::ONE_HUNDRED,
                rounding,
            )?,
            Some(Discount::Amount(a)) if *a < 0 => {
                return Err(at("discount must not be negative".into()));
            }
            Some(Discount::Amount(a)) => (*a).min(subtotal),
        };
        let taxable = Decimal::from(subtotal - discount);
        let inclusive_rate: Decimal = l
            .tax_rates
            .iter()
            .filter(|t| t.inclusive)
            .map(|t| t.percent.0)
            .sum();
        // The part of an inclusive price that is tax: price − price / (1 + rate).
        let tax_inclusive = if inclusive_rate.is_zero() {
            0
        } else {
            let net = taxable / (Decimal::ONE + inclusive_rate / Decimal::ONE_HUNDRED);
            round(taxable - net, rounding)?
        };
        // Exclusive taxes apply to the price net of inclusive tax, each rounded.
        let base = taxable - Decimal::from(tax_inclusive);
        let mut tax_exclusive = 0i64;
        for t in l.tax_rates.iter().filter(|t| !t.inclusive) {
            tax_exclusive += round(base * t.percent.0 / Decimal::ONE_HUNDRED, rounding)?;
        }
        out.push(LineTotal {
            description: l.description.clone(),
            subtotal,
            discount,
            tax_exclusive,
            tax_inclusive,
            total: subtotal - discount + tax_exclusive,
        });
    }
    let sum = |f: fn(&LineTotal) -> i64| {
        out.iter()
            .map(f)
            .try_fold(0i64, |a, b| a.checked_add(b))
            .ok_or_else(too_large)
    };
    Ok(InvoiceTotals {
        currency: cur.code.to_string(),
        subtotal: sum(|l| l.subtotal)?,
        discount: sum(|l| l.discount)?,
        tax: sum(|l| l.tax_exclusive + l.tax_inclusive)?,
        total: sum(|l| l.total)?,
        lines: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn pct(s: &str) -> Percent {
        Percent(Decimal::from_str(s).unwrap())
    }

    fn line(q: i64, unit: i64) -> Line {
        Line {
            description: "item".into(),
            quantity: q,
            unit_amount: unit,
            discount: None,
            tax_rates: vec![],
        }
    }

    #[test]
    fn exclusive_tax_and_discounts() {
        let lines = vec![
            Line {
                discount: Some(Discount::Percent(pct("10"))),
                tax_rates: vec![TaxRate {
                    percent: pct("8.25"),
                    inclusive: false,
                }],
                ..line(3, 1_999)
            },
            Line {
                discount: Some(Discount::Amount(500)),
                ..line(1, 2_500)
            },
        ];
        let t = totals("usd", &lines, Rounding::HalfUp).unwrap();
        // 3 × 19.99 = 59.97; −10% = 6.00 (5.997); 53.97 × 8.25% = 4.45 (4.452525).
        assert_eq!(
            (
                t.lines[0].subtotal,
                t.lines[0].discount,
                t.lines[0].tax_exclusive
            ),
            (5_997, 600, 445)
        );
        assert_eq!(t.lines[0].total, 5_997 - 600 + 445);
        assert_eq!(t.lines[1].total, 2_000);
        assert_eq!(t.total, t.lines.iter().map(|l| l.total).sum::<i64>());
        assert_eq!(t.subtotal - t.discount + 445, t.total);
    }

    #[test]
    fn inclusive_tax_is_contained() {
        // €119.00 including 19% VAT: €19.00 of it is tax; the total stays €119.00.
        let l = Line {
            tax_rates: vec![TaxRate {
                percent: pct("19"),
                inclusive: true,
            }],
            ..line(1, 11_900)
        };
        let t = totals("eur", &[l], Rounding::HalfUp).unwrap();
        assert_eq!(
            (t.lines[0].tax_inclusive, t.total, t.tax),
            (1_900, 11_900, 1_900)
        );
    }

    #[test]
    fn refuses_bad_lines() {
        assert!(totals("usd", &[line(-1, 100)], Rounding::HalfUp).is_err());
        assert!(totals("zzz", &[line(1, 100)], Rounding::HalfUp).is_err());
        assert!(totals("usd", &[line(i64::MAX, 2)], Rounding::HalfUp).is_err());
        let l = Line {
            discount: Some(Discount::Amount(-5)),
            ..line(1, 100)
        };
        assert!(
            matches!(totals("usd", &[l], Rounding::HalfUp), Err(FeeError::InvalidAmount(m)) if m.starts_with("line 1"))
        );
        // An amount discount larger than the line empties it, never below zero.
        let l = Line {
            discount: Some(Discount::Amount(500)),
            ..line(1, 100)
        };
        assert_eq!(totals("usd", &[l], Rounding::HalfUp).unwrap().total, 0);
    }
}
