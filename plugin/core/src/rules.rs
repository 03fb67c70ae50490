//! Declarative fee rules: what most plugin authors change. A TOML file the
//! host hands to the plugin; see `examples/rules/default.toml` for every key.
//!
//! Percents are decimals of 0–100 written as strings or numbers ("2.9" or
//! 2.9); fixed amounts, minimums and maximums are integers in the minor unit
//! of the payment's currency. An invalid file is refused at load with the
//! line and the reason (TOML's own span, also for range errors).

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::str::FromStr;

/// How a fee line is rounded to the minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// Half away from zero: Stripe's rule for its own fees.
    #[default]
    HalfUp,
    /// Banker's rounding.
    HalfEven,
    /// Toward zero (the payer never pays a fraction more).
    Down,
    /// Away from zero.
    Up,
}

impl Rounding {
    /// Rounds to a whole number of minor units.
    pub fn apply(self, value: Decimal) -> Decimal {
        let strategy = match self {
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::Down => RoundingStrategy::ToZero,
            Rounding::Up => RoundingStrategy::AwayFromZero,
        };
        value.round_dp_with_strategy(0, strategy)
    }
}

/// Who pays the processor fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bearer {
    /// The tenant: it comes out of the gross (the default).
    #[default]
    Tenant,
    /// The customer: the charge is grossed up so the tenant still nets the price.
    Customer,
}

/// A percent between 0 and 100, exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Percent(pub Decimal);

impl Percent {
    /// Parses "2.9" (percent, not a fraction); refuses values outside 0..=100.
    pub fn parse(text: &str) -> Result<Percent, String> {
        let d = Decimal::from_str(text.trim())
            .map_err(|_| format!("percent {text:?} is not a decimal number"))?;
        if d.is_sign_negative() || d > Decimal::ONE_HUNDRED {
            return Err(format!("percent {text} must be between 0 and 100"));
        }
        Ok(Percent(d.normalize()))
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(i64),
            // A TOML float prints back as the shortest text that reads the
            // same, i.e. what the author wrote: parse that text, exactly.
            Float(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
        };
        Percent::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A non-negative amount in minor units.
fn non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = i64::deserialize(d)?;
    if v < 0 {
        return Err(serde::de::Error::custom(format!(
            "{v} must not be negative"
        )));
    }
    Ok(v)
}

fn opt_non_negative<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    non_negative(d).map(Some)
}

/// One processor fee schedule; the first entry whose filters match is used.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorRate {
    /// Stripe payment method type ("card", "us_bank_account"...); any when absent.
    pub payment_method: Option<String>,
    /// Currency code; any when absent.
    pub currency: Option<String>,
    /// Percentage of the amount.
    #[serde(default)]
    pub percent: Percent,
    /// Fixed fee per charge, minor units.
    #[serde(default, deserialize_with = "non_negative")]
    pub fixed: i64,
    /// Added when the card's country differs from the account's.
    #[serde(default)]
    pub international_percent: Percent,
    /// Added when the charge is converted to another currency.
    #[serde(default)]
    pub conversion_percent: Percent,
    /// Floor of the fee, minor units.
    #[serde(default, deserialize_with = "opt_non_negative")]
    pub min: Option<i64>,
    /// A cap, e.g. ACH's 0.8% up to $5.00.
    #[serde(default, deserialize_with = "opt_non_negative")]
    pub max: Option<i64>,
}

/// How tiers apply to an amount (the two charge models of Lago and Stripe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TierMode {
    /// Each slice of the amount pays its own tier's rate (marginal).
    #[default]
    Graduated,
    /// The whole amount pays the rate of the tier it falls in (has cliffs).
    Volume,
}

/// One tier of a platform fee.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Upper bound of the tier in minor units, inclusive; the last tier has none.
    #[serde(default, deserialize_with = "opt_non_negative")]
    pub up_to: Option<i64>,
    /// Percentage of the amount in (graduated) or at (volume) this tier.
    #[serde(default)]
    pub percent: Percent,
    /// Charged once when the amount reaches this tier.
    #[serde(default, deserialize_with = "non_negative")]
    pub fixed: i64,
}

/// The platform's (Connect application) fee.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawPlatform")]
pub struct PlatformFee {
    /// Percentage of the amount (when there are no tiers).
    pub percent: Percent,
    /// Fixed fee per charge, minor units.
    pub fixed: i64,
    /// Floor of the fee, minor units.
    pub min: Option<i64>,
    /// Cap of the fee, minor units.
    pub max: Option<i64>,
    /// Tiers by amount; empty for a flat fee.
    pub tiers: Vec<Tier>,
    /// How the tiers apply.
    pub tier_mode: TierMode,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlatform {
    #[serde(default)]
    percent: Percent,
    #[serde(default, deserialize_with = "non_negative")]
    fixed: i64,
    #[serde(default, deserialize_with = "opt_non_negative")]
    min: Option<i64>,
    #[serde(default, deserialize_with = "opt_non_negative")]
    max: Option<i64>,
    #[serde(default)]
    tiers: Vec<Tier>,
    #[serde(default)]
    tier_mode: TierMode,
}

impl TryFrom<RawPlatform> for PlatformFee {
    type Error = String;
    fn try_from(r: RawPlatform) -> Result<Self, String> {
        if let (Some(min), Some(max)) = (r.min, r.max)
            && min > max
        {
            return Err(format!("min {min} is above max {max}"));
        }
        if !r.tiers.is_empty() && (r.percent.0 != Decimal::ZERO || r.fixed != 0) {
            return Err("give either percent/fixed or tiers, not both".into());
        }
        let mut last = -1i64;
        for (i, t) in r.tiers.iter().enumerate() {
            match t.up_to {
                Some(b) if b <= last => {
                    return Err(format!("tier {} bound {b} does not increase", i + 1));
                }
                Some(b) => last = b,
                None if i + 1 != r.tiers.len() => {
                    return Err(format!("tier {} has no up_to but is not the last", i + 1));
                }
                None => {}
            }
        }
        if r.tiers.last().is_some_and(|t| t.up_to.is_some()) {
            return Err("the last tier must have no up_to (it takes the rest)".into());
        }
        Ok(PlatformFee {
            percent: r.percent,
            fixed: r.fixed,
            min: r.min,
            max: r.max,
            tiers: r.tiers,
            tier_mode: r.tier_mode,
        })
    }
}

/// Minimum and maximum deposit and withdrawal for one currency (seed 002).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Lowercase ISO currency code the limits are for.
    pub currency: String,
    /// Smallest deposit, minor units.
    #[serde(default, deserialize_with = "opt_non_negative")]
    pub deposit_min: Option<i64>,
    /// Largest deposit, minor units.
    #[serde(default, deserialize_with = "opt_non_negative")]
    pub deposit_max: Option<i64>,
    /// Smallest withdrawal, minor units.
    #[serde(default, deserialize_with = "opt_non_negative")]
    pub withdrawal_min: Option<i64>,
    /// Largest withdrawal, minor units.
    #[serde(default, deserialize_with = "opt_non_negative")]
    pub withdrawal_max: Option<i64>,
}

/// Marketplace escrow terms (seed 002): the platform fee is paid on top of
/// the price into escrow and taken at acceptance; the service fee comes out
/// of the price at completion.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowTerms {
    /// Paid by the customer on top of the price, taken by the platform at acceptance.
    #[serde(default)]
    pub platform_percent: Percent,
    /// Taken out of the price at completion, for the platform.
    #[serde(default)]
    pub service_percent: Percent,
}

/// What one tenant gets instead of the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantOverride {
    /// The tenant's platform fee instead of the default one.
    pub platform: Option<PlatformFee>,
    /// Who pays the processor fee for this tenant.
    pub fee_bearer: Option<Bearer>,
}

/// A rules file: the processor's schedules, the platform fee, escrow terms,
/// limits, and per-tenant overrides. Read with [`FeeRules::from_toml`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRules {
    /// How fees are rounded to minor units.
    #[serde(default)]
    pub rounding: Rounding,
    /// Who pays the processor fee by default.
    #[serde(default)]
    pub fee_bearer: Bearer,
    /// Processor schedules, most specific first. When none matches, the US
    /// card default (2.9% + 30¢) applies to USD cards and anything else is an error.
    #[serde(default)]
    pub processor: Vec<ProcessorRate>,
    /// The platform fee by default; none: no application fee.
    pub platform: Option<PlatformFee>,
    /// Escrow terms, for marketplaces that hold money.
    pub escrow: Option<EscrowTerms>,
    /// Deposit and withdrawal limits, per currency.
    #[serde(default)]
    pub limits: Vec<Limits>,
    /// Per-tenant overrides, by tenant id.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantOverride>,
}

impl FeeRules {
    /// Parses a rules file; the error names the line and the reason.
    pub fn from_toml(text: &str) -> Result<FeeRules, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// The processor schedule for a payment method and currency.
    pub fn processor_for(&self, method: &str, currency: &str) -> Option<ProcessorRate> {
        let matches =
            |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f.eq_ignore_ascii_case(v));
        self.processor
            .iter()
            .find(|r| matches(&r.payment_method, method) && matches(&r.currency, currency))
            .cloned()
            .or_else(|| (method == "card" && currency == "usd").then(us_card_default))
    }

    /// The platform fee for a tenant: its override, else the default.
    pub fn platform_for(&self, tenant: Option<&str>) -> Option<&PlatformFee> {
        tenant
            .and_then(|t| self.tenants.get(t))
            .and_then(|o| o.platform.as_ref())
            .or(self.platform.as_ref())
    }

    /// Who pays the processor fee for a tenant: its override, else the default.
    pub fn bearer_for(&self, tenant: Option<&str>) -> Bearer {
        tenant
            .and_then(|t| self.tenants.get(t))
            .and_then(|o| o.fee_bearer)
            .unwrap_or(self.fee_bearer)
    }

    /// Deposit and withdrawal limits for a currency, if any are set.
    pub fn limits_for(&self, currency: &str) -> Option<&Limits> {
        self.limits
            .iter()
            .find(|l| l.currency.eq_ignore_ascii_case(currency))
    }
}

/// Stripe's standard US card pricing: 2.9% + 30¢.
pub fn us_card_default() -> ProcessorRate {
    ProcessorRate {
        payment_method: Some("card".into()),
        currency: Some("usd".into()),
        percent: Percent(Decimal::new(29, 1)),
        fixed: 30,
        international_percent: Percent::default(),
        conversion_percent: Percent::default(),
        min: None,
        max: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_rules_file() {
        let rules = FeeRules::from_toml(
            r#"
            rounding = "half_even"
            fee_bearer = "customer"

            [[processor]]
            payment_method = "us_bank_account"
            percent = 0.8
            max = 500

            [[processor]]
            payment_method = "card"
            percent = "2.9"
            fixed = 30
            international_percent = "1.5"
            conversion_percent = 1

            [platform]
            tier_mode = "graduated"
            tiers = [ { up_to = 100000, percent = "3" }, { percent = "2" } ]

            [[limits]]
            currency = "usd"
            deposit_min = 500
            withdrawal_max = 1000000

            [tenants.acme.platform]
            percent = "1.5"
            min = 50
            "#,
        )
        .unwrap();
        assert_eq!(rules.rounding, Rounding::HalfEven);
        assert_eq!(rules.processor[0].percent, Percent(Decimal::new(8, 1)));
        assert_eq!(rules.processor[1].conversion_percent, Percent(Decimal::ONE));
        assert_eq!(rules.platform_for(Some("acme")).unwrap().min, Some(50));
        assert_eq!(rules.platform_for(Some("other")).unwrap().tiers.len(), 2);
        assert_eq!(rules.limits_for("USD").unwrap().deposit_min, Some(500));
        assert_eq!(rules.bearer_for(Some("acme")), Bearer::Customer);
    }

    #[test]
    fn refuses_bad_files_with_the_line() {
        for (text, says) in [
            ("[platform]\npercent = \"150\"\n", "line 2"),
            ("[platform]\npercent = \"abc\"\n", "line 2"),
            ("[[processor]]\nfixed = -5\n", "line 2"),
            ("rounding = \"sideways\"\n", "line 1"),
            ("[platform]\nmin = 10\nmax = 5\n", "min 10 is above max 5"),
            (
                "[platform]\ntiers = [{ up_to = 10 }, { up_to = 5 }, {}]\n",
                "does not increase",
            ),
            ("[platform]\ntiers = [{ up_to = 10 }]\n", "last tier"),
            ("unknown_key = 1\n", "unknown field"),
            ("[platform\n", "line 1"),
        ] {
            let err = FeeRules::from_toml(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn float_percents_are_read_exactly() {
        let r = FeeRules::from_toml("[platform]\npercent = 2.9\n").unwrap();
        assert_eq!(r.platform.unwrap().percent.0.to_string(), "2.9");
    }

    #[test]
    fn the_us_card_default_applies_only_to_usd_cards() {
        let r = FeeRules::default();
        assert!(r.processor_for("card", "usd").is_some());
        assert!(r.processor_for("card", "eur").is_none());
        assert!(r.processor_for("sepa_debit", "usd").is_none());
    }
}
