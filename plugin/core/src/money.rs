//! Amounts in minor units, and parsing of human-written amounts.

use crate::currency::{self, Currency};
use rust_decimal::Decimal;

/// An amount in the minor unit of its currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// Minor units; negative only where a flow says so (never in a quote).
    pub amount: i64,
    /// Lower-case ISO 4217 code, e.g. "usd", "jpy", "kwd".
    pub currency: String,
}

impl Money {
    /// An amount of `currency` in minor units.
    pub fn new(amount: i64, currency: impl Into<String>) -> Self {
        Money {
            amount,
            currency: currency.into(),
        }
    }
}

/// Why an amount cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The currency is not one Stripe charges in.
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    /// The amount is negative, or beyond what the currency allows.
    #[error("{0}")]
    InvalidAmount(String),
}

/// Resolves a currency code or fails with [`MoneyError::UnknownCurrency`].
pub fn currency(code: &str) -> Result<Currency, MoneyError> {
    currency::lookup(code).ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))
}

/// Parses a non-negative amount written in major units ("100.00" USD,
/// "10000" JPY, "5.125" KWD) into minor units. Refuses more decimals than the
/// currency has, signs, exponents, separators and overflow.
pub fn parse_amount(text: &str, code: &str) -> Result<Money, MoneyError> {
    let cur = currency(code)?;
    let bad = |why: &str| MoneyError::InvalidAmount(format!("amount {text:?}: {why}"));
    let t = text.trim();
    if t.is_empty() {
        return Err(bad("empty"));
    }
    if t.starts_with('-') {
        return Err(bad("must not be negative"));
    }
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, f),
        None => (t, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "expected digits, optionally followed by '.' and decimals",
        ));
    }
    if t.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad("expected digits after '.'"));
    }
    if frac.len() > cur.decimals as usize {
        return Err(bad(&format!(
            "{} allows {} decimal place(s)",
            cur.code.to_uppercase(),
            cur.decimals
        )));
    }
    let mut digits = String::with_capacity(whole.len() + cur.decimals as usize);
    digits.push_str(whole);
    digits.push_str(frac);
    for _ in frac.len()..cur.decimals as usize {
        digits.push('0');
    }
    let amount: i64 = digits.parse().map_err(|_| bad("too large"))?;
    Ok(Money::new(amount, cur.code))
}

/// Checks that a charge amount is one Stripe accepts in its currency
/// (see [`currency::charge_step`]).
pub fn check_charge(amount: i64, code: &str) -> Result<(), MoneyError> {
    let step = currency::charge_step(code);
    if amount % step != 0 {
        return Err(MoneyError::InvalidAmount(format!(
            "{} charges must be a multiple of {step} minor units, got {amount}",
            code.to_uppercase()
        )));
    }
    Ok(())
}

/// Checks that a payout amount is one Stripe accepts in its currency
/// (see [`currency::payout_step`]).
pub fn check_payout(amount: i64, code: &str) -> Result<(), MoneyError> {
    let step = currency::payout_step(code);
    if amount % step != 0 {
        return Err(MoneyError::InvalidAmount(format!(
            "{} payouts must be a multiple of {step} minor units, got {amount}",
            code.to_uppercase()
        )));
    }
    Ok(())
}

/// Writes minor units in major units with the currency's decimals ("94.30").
pub fn format_amount(amount: i64, code: &str) -> Result<String, MoneyError> {
    let cur = currency(code)?;
    Ok(Decimal::new(amount, cur.decimals).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_currency_decimals() {
        assert_eq!(parse_amount("100.00", "usd").unwrap().amount, 10_000);
        assert_eq!(parse_amount("100", "usd").unwrap().amount, 10_000);
        assert_eq!(parse_amount("0.5", "usd").unwrap().amount, 50);
        assert_eq!(parse_amount("10000", "jpy").unwrap().amount, 10_000);
        assert_eq!(parse_amount("5.125", "kwd").unwrap().amount, 5_125);
        assert_eq!(parse_amount("5.125", "KWD").unwrap().currency, "kwd");
    }

    #[test]
    fn refuses_bad_amounts() {
        for (text, code) in [
            ("1.001", "usd"),
            ("1.5", "jpy"),
            ("-1", "usd"),
            ("", "usd"),
            ("1e3", "usd"),
            ("1,000", "usd"),
            ("1.", "usd"),
            (".5", "usd"),
            ("99999999999999999999", "usd"),
        ] {
            assert!(
                matches!(parse_amount(text, code), Err(MoneyError::InvalidAmount(_))),
                "{text} {code}"
            );
        }
        assert_eq!(
            parse_amount("1", "zzz"),
            Err(MoneyError::UnknownCurrency("zzz".into()))
        );
    }

    #[test]
    fn formats_with_currency_decimals() {
        assert_eq!(format_amount(9430, "usd").unwrap(), "94.30");
        assert_eq!(format_amount(10000, "jpy").unwrap(), "10000");
        assert_eq!(format_amount(5120, "kwd").unwrap(), "5.120");
    }
}
