//! Fee math for a Connect payment: processor fee, platform (application) fee,
//! net to the tenant. Rates are `Decimal`, amounts integer minor units, and
//! each fee line is rounded half-up to the minor unit on its own (Stripe's rule
//! for its own fees). The net is what is left, so the split always conserves
//! the gross.

use crate::money::{self, Money, MoneyError};
use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;

/// A percent plus a fixed amount, e.g. 2.9% + 30¢.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub percent: Decimal,
    pub fixed: i64,
}

impl Rate {
    /// Parses a percent written as a decimal string ("2.9"), 0 to 100.
    pub fn parse(percent: &str, fixed: i64) -> Result<Rate, FeeError> {
        let p = Decimal::from_str(percent.trim())
            .map_err(|_| FeeError::InvalidRate(format!("percent {percent:?} is not a number")))?;
        if p.is_sign_negative() || p > Decimal::ONE_HUNDRED {
            return Err(FeeError::InvalidRate(format!(
                "percent {percent:?} must be between 0 and 100"
            )));
        }
        if fixed < 0 {
            return Err(FeeError::InvalidRate(format!(
                "fixed fee {fixed} must not be negative"
            )));
        }
        Ok(Rate { percent: p, fixed })
    }

    /// The fee on `gross`: percent rounded half-up to the minor unit, plus fixed.
    pub fn fee_on(&self, gross: i64) -> Result<i64, FeeError> {
        let share = (Decimal::from(gross) * self.percent / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
        let share: i64 = share
            .try_into()
            .map_err(|_| FeeError::InvalidAmount("fee overflows".into()))?;
        share
            .checked_add(self.fixed)
            .ok_or_else(|| FeeError::InvalidAmount("fee overflows".into()))
    }
}

/// The US card default: 2.9% + 30¢.
pub fn default_card_rate_usd() -> Rate {
    Rate {
        percent: Decimal::new(29, 1),
        fixed: 30,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteRequest {
    pub amount: Money,
    pub payment_method: String,
    /// Processor schedule; `None` takes the default for the currency and method.
    pub processor: Option<Rate>,
    /// Platform (application) fee; `None` means no platform fee.
    pub application: Option<Rate>,
}

/// One movement of money: `payer` pays `payee` `amount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeLine {
    pub label: &'static str,
    pub payer: &'static str,
    pub payee: &'static str,
    pub amount: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub currency: String,
    pub gross: i64,
    pub processor_fee: i64,
    pub application_fee: i64,
    pub net: i64,
    pub lines: Vec<FeeLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    #[error("{0}")]
    InvalidAmount(String),
    #[error("{0}")]
    InvalidRate(String),
    #[error("{0}")]
    FeesExceedAmount(String),
}

impl From<MoneyError> for FeeError {
    fn from(e: MoneyError) -> Self {
        match e {
            MoneyError::UnknownCurrency(c) => FeeError::UnknownCurrency(c),
            MoneyError::InvalidAmount(m) => FeeError::InvalidAmount(m),
        }
    }
}

/// Computes the breakdown of one payment.
pub fn quote(req: &QuoteRequest) -> Result<Quote, FeeError> {
    let cur = money::currency(&req.amount.currency)?;
    let gross = req.amount.amount;
    if gross < 0 {
        return Err(FeeError::InvalidAmount(format!(
            "amount {gross} must not be negative"
        )));
    }
    let processor = match &req.processor {
        Some(r) => r.clone(),
        None if cur.code == "usd" && req.payment_method == "card" => default_card_rate_usd(),
        None => {
            return Err(FeeError::InvalidRate(format!(
                "no default processor fee for {} {}: give the processor percent and fixed fee",
                req.payment_method, cur.code
            )));
        }
    };
    let processor_fee = processor.fee_on(gross)?;
    let application_fee = match &req.application {
        Some(r) => r.fee_on(gross)?,
        None => 0,
    };
    let net = gross - processor_fee - application_fee;
    if net < 0 {
        return Err(FeeError::FeesExceedAmount(format!(
            "fees {} exceed the amount {gross}",
            processor_fee + application_fee
        )));
    }
    Ok(Quote {
        currency: cur.code.to_string(),
        gross,
        processor_fee,
        application_fee,
        net,
        lines: vec![
            FeeLine {
                label: "processor_fee",
                payer: "tenant",
                payee: "processor",
                amount: processor_fee,
            },
            FeeLine {
                label: "application_fee",
                payer: "tenant",
                payee: "platform",
                amount: application_fee,
            },
            FeeLine {
                label: "net",
                payer: "customer",
                payee: "tenant",
                amount: net,
            },
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd_card(amount: i64, app_percent: &str) -> QuoteRequest {
        QuoteRequest {
            amount: Money::new(amount, "usd"),
            payment_method: "card".into(),
            processor: None,
            application: Some(Rate::parse(app_percent, 0).unwrap()),
        }
    }

    #[test]
    fn seed_000_connect_payment() {
        // $100.00 at 2.9% + 30¢ with a 2.5% application fee.
        let q = quote(&usd_card(10_000, "2.5")).unwrap();
        assert_eq!(
            (q.processor_fee, q.application_fee, q.net),
            (320, 250, 9_430)
        );
    }

    #[test]
    fn rounds_half_up_per_line() {
        // 2.9% of $10.05 = 29.145¢ -> 29¢; 2.5% = 25.125¢ -> 25¢.
        let q = quote(&usd_card(1_005, "2.5")).unwrap();
        assert_eq!((q.processor_fee, q.application_fee), (59, 25));
        // 2.5% of 50¢ = 1.25 -> 1; 2.5% of 60¢ = 1.5 -> 2 (half-up).
        assert_eq!(quote(&usd_card(60, "2.5")).unwrap().application_fee, 2);
    }

    #[test]
    fn refuses_what_cannot_be_paid() {
        assert!(matches!(
            quote(&usd_card(10, "0")),
            Err(FeeError::FeesExceedAmount(_))
        ));
        assert!(matches!(
            quote(&usd_card(-1, "0")),
            Err(FeeError::InvalidAmount(_))
        ));
        assert!(Rate::parse("101", 0).is_err());
        assert!(Rate::parse("-1", 0).is_err());
        assert!(Rate::parse("abc", 0).is_err());
        let jpy = QuoteRequest {
            amount: Money::new(1000, "jpy"),
            ..usd_card(0, "0")
        };
        assert!(matches!(quote(&jpy), Err(FeeError::InvalidRate(_))));
    }

    proptest! {
        #[test]
        fn split_conserves_the_gross(gross in 0i64..1_000_000_000_000, bp in 0u32..=2_000) {
            let pct = Decimal::new(bp as i64, 2).to_string();
            if let Ok(q) = quote(&usd_card(gross, &pct)) {
                prop_assert_eq!(q.processor_fee + q.application_fee + q.net, q.gross);
                prop_assert_eq!(q.lines.iter().map(|l| l.amount).sum::<i64>(), q.gross);
                prop_assert!(q.net >= 0);
            }
        }
    }
}
