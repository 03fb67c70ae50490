//! Fee math for one payment: processor fee, platform (Connect application)
//! fee, net to the tenant, under a set of [`FeeRules`].
//!
//! Amounts are integer minor units; rates are `Decimal`; each fee line is
//! rounded on its own with the rules' rounding mode (half-up by default,
//! Stripe's rule for its fees). The net is the remainder, so the lines
//! always add up to the gross.

use crate::money::{self, Money, MoneyError};
use crate::rules::{Bearer, FeeRules, PlatformFee, ProcessorRate, Rounding, TierMode};
use rust_decimal::Decimal;

/// What a quote is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteRequest {
    /// The price: what the customer pays when the tenant bears the processor
    /// fee, or what the tenant must net before platform fees when the customer does.
    pub amount: Money,
    /// Stripe payment method type, e.g. "card", "us_bank_account".
    pub payment_method: String,
    /// Selects per-tenant overrides in the rules.
    pub tenant: Option<String>,
    /// The card is from another country than the account (international surcharge).
    pub international: bool,
    /// The charge is converted to another currency (conversion surcharge).
    pub converted: bool,
}

/// One movement of money: `payer` pays `payee` `amount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeLine {
    /// What the line is: "processor_fee", "application_fee" or "net".
    pub label: &'static str,
    /// Who pays ("customer", "tenant").
    pub payer: &'static str,
    /// Who receives ("processor", "platform", "tenant").
    pub payee: &'static str,
    /// The amount, in minor units.
    pub amount: i64,
}

/// A fee breakdown. Invariant: processor-fee + application-fee + net = gross.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Lowercase ISO currency code of every amount.
    pub currency: String,
    /// What the customer is charged.
    pub gross: i64,
    /// Stripe's fee.
    pub processor_fee: i64,
    /// The platform's (Connect application) fee.
    pub application_fee: i64,
    /// What the tenant keeps: the gross minus every fee.
    pub net: i64,
    /// The same breakdown as labelled lines (from, to, amount).
    pub lines: Vec<FeeLine>,
}

/// Why a fee computation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeError {
    /// The currency is not one Stripe charges in.
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    /// The amount is zero, negative, or beyond what the currency allows.
    #[error("{0}")]
    InvalidAmount(String),
    /// A rate or a fixed fee is out of range.
    #[error("{0}")]
    InvalidRate(String),
    /// The fees add up to more than the amount they come out of.
    #[error("{0}")]
    FeesExceedAmount(String),
    /// The rules (file or component) are inconsistent.
    #[error("invalid rules: {0}")]
    InvalidRules(String),
}

impl From<MoneyError> for FeeError {
    fn from(e: MoneyError) -> Self {
        match e {
            MoneyError::UnknownCurrency(c) => FeeError::UnknownCurrency(c),
            MoneyError::InvalidAmount(m) => FeeError::InvalidAmount(m),
        }
    }
}

fn overflow() -> FeeError {
    FeeError::InvalidAmount("amount too large for fee math".into())
}

fn to_i64(d: Decimal) -> Result<i64, FeeError> {
    d.try_into().map_err(|_| overflow())
}

/// `percent`% of `amount`, exact.
fn share(amount: i64, percent: Decimal) -> Decimal {
    Decimal::from(amount) * percent / Decimal::ONE_HUNDRED
}

fn clamp(fee: i64, min: Option<i64>, max: Option<i64>) -> i64 {
    let fee = min.map_or(fee, |m| fee.max(m));
    max.map_or(fee, |m| fee.min(m))
}

/// The processor's fee on a charge of `gross`.
pub fn processor_fee(
    rate: &ProcessorRate,
    gross: i64,
    international: bool,
    converted: bool,
    rounding: Rounding,
) -> Result<i64, FeeError> {
    let mut percent = rate.percent.0;
    if international {
        percent += rate.international_percent.0;
    }
    if converted {
        percent += rate.conversion_percent.0;
    }
    let variable = to_i64(rounding.apply(share(gross, percent)))?;
    let fee = variable.checked_add(rate.fixed).ok_or_else(overflow)?;
    Ok(clamp(fee, rate.min, rate.max))
}

/// The platform's fee on `amount`, never more than the amount itself.
pub fn platform_fee(fee: &PlatformFee, amount: i64, rounding: Rounding) -> Result<i64, FeeError> {
    let (exact, fixed) = if fee.tiers.is_empty() {
        (share(amount, fee.percent.0), fee.fixed)
    } else {
        match fee.tier_mode {
            TierMode::Graduated => {
                let (mut exact, mut fixed, mut floor) = (Decimal::ZERO, 0i64, 0i64);
                for t in &fee.tiers {
                    if amount <= floor && floor > 0 {
                        break;
                    }
                    let top = t.up_to.map_or(amount, |b| b.min(amount));
                    exact += share(top - floor, t.percent.0);
                    fixed += t.fixed;
                    floor = t.up_to.unwrap_or(i64::MAX);
                }
                (exact, fixed)
            }
            TierMode::Volume => {
                let t = fee
                    .tiers
                    .iter()
                    .find(|t| t.up_to.is_none_or(|b| amount <= b))
                    .expect("the last tier has no bound");
                (share(amount, t.percent.0), t.fixed)
            }
        }
    };
    let total = to_i64(rounding.apply(exact))?
        .checked_add(fixed)
        .ok_or_else(overflow)?;
    Ok(clamp(total, fee.min, fee.max).min(amount))
}

/// The smallest charge whose net after the processor fee is at least
/// `target`: `(target + fixed) / (1 - percent)`, found exactly by bisection
/// (the net after fees never decreases as the charge grows).
pub fn gross_up(
    target: i64,
    net_of: impl Fn(i64) -> Result<i64, FeeError>,
) -> Result<i64, FeeError> {
    let (mut lo, mut hi) = (target, target.max(1));
    while net_of(hi)? < target {
        if hi > i64::MAX / 4 {
            return Err(FeeError::FeesExceedAmount(
                "the processor fee leaves nothing to gross up".into(),
            ));
        }
        hi *= 2;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if net_of(mid)? >= target {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// Computes the breakdown of one payment.
pub fn quote(rules: &FeeRules, req: &QuoteRequest) -> Result<Quote, FeeError> {
    let cur = money::currency(&req.amount.currency)?;
    let price = req.amount.amount;
    if price < 0 {
        return Err(FeeError::InvalidAmount(format!(
            "amount {price} must not be negative"
        )));
    }
    let rate = rules
        .processor_for(&req.payment_method, cur.code)
        .ok_or_else(|| {
            FeeError::InvalidRate(format!(
                "no processor fee schedule for {} in {}: add a [[processor]] entry to the rules",
                req.payment_method, cur.code
            ))
        })?;
    let tenant = req.tenant.as_deref();
    let proc = |gross| {
        processor_fee(
            &rate,
            gross,
            req.international,
            req.converted,
            rules.rounding,
        )
    };
    let step = crate::currency::charge_step(cur.code);
    let gross = match rules.bearer_for(tenant) {
        Bearer::Tenant => price,
        // Grossed up to the next amount Stripe accepts in this currency.
        Bearer::Customer => {
            let g = gross_up(price, |g| Ok(g - proc(g)?))?;
            g.checked_add(step - 1).ok_or_else(overflow)? / step * step
        }
    };
    money::check_charge(gross, cur.code)?;
    let processor_fee = proc(gross)?;
    let application_fee = match rules.platform_for(tenant) {
        Some(p) => platform_fee(p, price, rules.rounding)?,
        None => 0,
    };
    let net = gross - processor_fee - application_fee;
    if net < 0 {
        return Err(FeeError::FeesExceedAmount(format!(
            "fees {} exceed the amount {gross}",
            processor_fee + application_fee
        )));
    }
    let mut lines = vec![
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
    ];
    if gross > price {
        // The customer's surcharge covers the processor fee.
        lines[0].payer = "customer";
    }
    // The split is the whole: every minor unit of the gross is in one line.
    debug_assert_eq!(processor_fee + application_fee + net, gross);
    debug_assert_eq!(lines.iter().map(|l| l.amount).sum::<i64>(), gross);
    Ok(Quote {
        currency: cur.code.to_string(),
        gross,
        processor_fee,
        application_fee,
        net,
        lines,
    })
}

/// A line as a custom fee-rules component returns it (untrusted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposedLine {
    /// What the line is, e.g. "platform_fee".
    pub label: String,
    /// The line's amount; its currency must be the quote's.
    pub amount: Money,
}

/// Checks a breakdown from a custom fee-rules component and turns it into a
/// quote. It must name each of `processor_fee`, `application_fee` and `net`
/// exactly once, in the request's currency, non-negative, adding up exactly
/// to the gross.
pub fn check_breakdown(req: &QuoteRequest, lines: &[ProposedLine]) -> Result<Quote, FeeError> {
    let cur = money::currency(&req.amount.currency)?;
    let gross = req.amount.amount;
    if gross < 0 {
        return Err(FeeError::InvalidAmount(format!(
            "amount {gross} must not be negative"
        )));
    }
    let refuse = |why: String| FeeError::InvalidRules(format!("custom fee rules: {why}"));
    let mut found: [Option<(&ProposedLine, &'static str, &'static str)>; 3] = [None; 3];
    const LABELS: [(&str, &str, &str); 3] = [
        ("processor_fee", "tenant", "processor"),
        ("application_fee", "tenant", "platform"),
        ("net", "customer", "tenant"),
    ];
    for l in lines {
        if !l.amount.currency.eq_ignore_ascii_case(cur.code) {
            return Err(refuse(format!(
                "line {} is in {:?}, the payment in {}",
                l.label, l.amount.currency, cur.code
            )));
        }
        if l.amount.amount < 0 {
            return Err(refuse(format!(
                "line {} is negative ({})",
                l.label, l.amount.amount
            )));
        }
        let Some(i) = LABELS.iter().position(|(name, ..)| *name == l.label) else {
            return Err(refuse(format!(
                "unknown line {:?} (expected processor_fee, application_fee, net)",
                l.label
            )));
        };
        if found[i].is_some() {
            return Err(refuse(format!("line {} appears twice", l.label)));
        }
        found[i] = Some((l, LABELS[i].1, LABELS[i].2));
    }
    let amount = |i: usize| -> Result<i64, FeeError> {
        found[i]
            .map(|(l, ..)| l.amount.amount)
            .ok_or_else(|| refuse(format!("line {} is missing", LABELS[i].0)))
    };
    let (processor_fee, application_fee, net) = (amount(0)?, amount(1)?, amount(2)?);
    let total = processor_fee
        .checked_add(application_fee)
        .and_then(|t| t.checked_add(net))
        .ok_or_else(overflow)?;
    if total != gross {
        return Err(refuse(format!(
            "the lines add up to {total}, not to the gross {gross}: money would be created or lost"
        )));
    }
    let lines = found
        .iter()
        .zip(LABELS)
        .map(|(f, (label, _, _))| {
            let (l, payer, payee) = f.expect("all three lines are present");
            // Who pays whom follows from the label, whatever the component said.
            FeeLine {
                label,
                payer,
                payee,
                amount: l.amount.amount,
            }
        })
        .collect();
    Ok(Quote {
        currency: cur.code.to_string(),
        gross,
        processor_fee,
        application_fee,
        net,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Percent;
    use proptest::prelude::*;

    fn rules(text: &str) -> FeeRules {
        FeeRules::from_toml(text).unwrap()
    }

    fn req(amount: i64, currency: &str) -> QuoteRequest {
        QuoteRequest {
            amount: Money::new(amount, currency),
            payment_method: "card".into(),
            tenant: None,
            international: false,
            converted: false,
        }
    }

    const SEED_000: &str = "[platform]\npercent = \"2.5\"\n";

    #[test]
    fn seed_000_connect_payment() {
        // $100.00 at 2.9% + 30¢ with a 2.5% application fee.
        let q = quote(&rules(SEED_000), &req(10_000, "usd")).unwrap();
        assert_eq!(
            (q.gross, q.processor_fee, q.application_fee, q.net),
            (10_000, 320, 250, 9_430)
        );
        assert_eq!(q.lines.iter().map(|l| l.amount).sum::<i64>(), q.gross);
    }

    #[test]
    fn rounds_each_line_with_the_chosen_mode() {
        // 2.9% of $10.05 = 29.145¢; 2.5% = 25.125¢.
        let q = quote(&rules(SEED_000), &req(1_005, "usd")).unwrap();
        assert_eq!((q.processor_fee, q.application_fee), (59, 25));
        // 2.5% of 60¢ = 1.5¢: half-up 2, half-even 2, down 1; of 100¢ = 2.5: half-even 2.
        let fee = |mode: &str, amount| {
            let r = rules(&format!("rounding = \"{mode}\"\n{SEED_000}"));
            quote(&r, &req(amount, "usd")).unwrap().application_fee
        };
        assert_eq!(fee("half_up", 60), 2);
        assert_eq!(fee("down", 60), 1);
        assert_eq!(fee("half_even", 100), 2);
        assert_eq!(fee("half_up", 100), 3);
        assert_eq!(fee("up", 41), 2);
    }

    #[test]
    fn surcharges_caps_and_minimums() {
        let r = rules(
            r#"
            [[processor]]
            payment_method = "us_bank_account"
            percent = "0.8"
            max = 500
            [[processor]]
            payment_method = "card"
            currency = "usd"
            percent = "2.9"
            fixed = 30
            international_percent = "1.5"
            conversion_percent = "1"
            [platform]
            percent = "1"
            min = 50
            max = 1000
            "#,
        );
        let mut ach = req(100_000, "usd");
        ach.payment_method = "us_bank_account".into();
        assert_eq!(quote(&r, &ach).unwrap().processor_fee, 500); // 0.8% = $8 capped at $5
        let mut intl = req(10_000, "usd");
        intl.international = true;
        intl.converted = true;
        assert_eq!(quote(&r, &intl).unwrap().processor_fee, 570); // 5.4% + 30¢
        assert_eq!(quote(&r, &req(1_000, "usd")).unwrap().application_fee, 50); // min
        assert_eq!(
            quote(&r, &req(1_000_000, "usd")).unwrap().application_fee,
            1_000
        ); // max
    }

    #[test]
    fn graduated_and_volume_tiers() {
        let tiers = "tiers = [ { up_to = 10000, percent = \"5\" }, { up_to = 100000, percent = \"3\", fixed = 100 }, { percent = \"1\" } ]";
        let g = rules(&format!("[platform]\ntier_mode = \"graduated\"\n{tiers}\n"));
        let v = rules(&format!("[platform]\ntier_mode = \"volume\"\n{tiers}\n"));
        // $1,500 graduated: 5% of $100 + (3% of $900 + $1) + 1% of $500.
        assert_eq!(
            quote(&g, &req(150_000, "usd")).unwrap().application_fee,
            500 + 2_700 + 100 + 500
        );
        // Volume: 1% of the whole $1,500.
        assert_eq!(
            quote(&v, &req(150_000, "usd")).unwrap().application_fee,
            1_500
        );
        // $50: first tier only either way.
        assert_eq!(quote(&g, &req(5_000, "usd")).unwrap().application_fee, 250);
        assert_eq!(quote(&v, &req(5_000, "usd")).unwrap().application_fee, 250);
    }

    #[test]
    fn customer_bears_the_processor_fee() {
        let r = rules("fee_bearer = \"customer\"\n");
        let q = quote(&r, &req(10_000, "usd")).unwrap();
        // (100 + 0.30) / (1 - 0.029) = 103.295... -> $103.30; 2.9% of it = 3.00 (2.9957 half-up) + 0.30.
        assert_eq!(q.gross, 10_330);
        assert_eq!(q.net, 10_000);
        assert_eq!(q.lines[0].payer, "customer");
    }

    #[test]
    fn tenant_overrides_win() {
        let r = rules("[platform]\npercent = \"2.5\"\n[tenants.vip.platform]\npercent = \"1\"\n");
        let mut vip = req(10_000, "usd");
        vip.tenant = Some("vip".into());
        assert_eq!(quote(&r, &vip).unwrap().application_fee, 100);
        assert_eq!(quote(&r, &req(10_000, "usd")).unwrap().application_fee, 250);
    }

    #[test]
    fn zero_and_three_decimal_currencies() {
        let r = rules(
            "[[processor]]\ncurrency = \"jpy\"\npercent = \"3.6\"\n[[processor]]\ncurrency = \"kwd\"\npercent = \"2.9\"\nfixed = 100\n[platform]\npercent = \"2.5\"\n",
        );
        // ¥10,000: 3.6% = ¥360, platform ¥250.
        let q = quote(&r, &req(10_000, "jpy")).unwrap();
        assert_eq!(
            (q.processor_fee, q.application_fee, q.net),
            (360, 250, 9_390)
        );
        // 10.000 KWD: 2.9% = 0.290 + 0.100; 2.5% = 0.250.
        let q = quote(&r, &req(10_000, "kwd")).unwrap();
        assert_eq!(
            (q.processor_fee, q.application_fee, q.net),
            (390, 250, 9_360)
        );
    }

    #[test]
    fn refuses_what_cannot_be_paid() {
        let r = rules(SEED_000);
        assert!(matches!(
            quote(&r, &req(10, "usd")),
            Err(FeeError::FeesExceedAmount(_))
        ));
        assert!(matches!(
            quote(&r, &req(-1, "usd")),
            Err(FeeError::InvalidAmount(_))
        ));
        assert!(matches!(
            quote(&r, &req(1_000, "eur")),
            Err(FeeError::InvalidRate(_))
        ));
        assert!(matches!(
            quote(&r, &req(1_000, "zzz")),
            Err(FeeError::UnknownCurrency(_))
        ));
        let all = rules("fee_bearer = \"customer\"\n[[processor]]\npercent = \"100\"\n");
        assert!(matches!(
            quote(&all, &req(1_000, "usd")),
            Err(FeeError::FeesExceedAmount(_))
        ));
    }

    fn proposed(label: &str, amount: i64, currency: &str) -> ProposedLine {
        ProposedLine {
            label: label.into(),
            amount: Money::new(amount, currency),
        }
    }

    #[test]
    fn custom_breakdowns_are_checked() {
        let r = req(10_000, "usd");
        let good = vec![
            proposed("processor_fee", 320, "usd"),
            proposed("application_fee", 100, "usd"),
            proposed("net", 9_580, "usd"),
        ];
        let q = check_breakdown(&r, &good).unwrap();
        assert_eq!(
            (q.processor_fee, q.application_fee, q.net),
            (320, 100, 9_580)
        );
        assert_eq!(q.lines[1].payee, "platform");
        let mut leaks = good.clone();
        leaks[2].amount.amount = 9_000;
        let mut negative = good.clone();
        negative[1].amount.amount = -1;
        let mut other_currency = good.clone();
        other_currency[0].amount.currency = "eur".into();
        let mut unknown = good.clone();
        unknown.push(proposed("bonus", 0, "usd"));
        let mut twice = good.clone();
        twice.push(proposed("net", 0, "usd"));
        for (bad, says) in [
            (leaks, "add up to"),
            (negative, "negative"),
            (other_currency, "eur"),
            (unknown, "unknown line"),
            (twice, "twice"),
            (good[..2].to_vec(), "missing"),
        ] {
            let err = check_breakdown(&r, &bad).unwrap_err();
            assert!(
                matches!(&err, FeeError::InvalidRules(m) if m.contains(says)),
                "{err}"
            );
        }
    }

    fn arb_rules() -> impl Strategy<Value = FeeRules> {
        (
            0u32..=1_500,
            0i64..=100,
            0u32..=3_000,
            prop::bool::ANY,
            prop::option::of(0i64..=2_000),
        )
            .prop_map(|(proc_bp, fixed, plat_bp, customer, max)| {
                let mut r = FeeRules::default();
                r.processor.push(crate::rules::ProcessorRate {
                    payment_method: None,
                    currency: None,
                    percent: Percent(Decimal::new(proc_bp.into(), 2)),
                    fixed,
                    international_percent: Percent::default(),
                    conversion_percent: Percent::default(),
                    min: None,
                    max,
                });
                r.platform = Some(PlatformFee {
                    percent: Percent(Decimal::new(plat_bp.into(), 2)),
                    fixed: 0,
                    min: None,
                    max: None,
                    tiers: vec![],
                    tier_mode: TierMode::Graduated,
                });
                if customer {
                    r.fee_bearer = Bearer::Customer;
                }
                r
            })
    }

    proptest! {
        #[test]
        fn splits_conserve_and_never_go_negative(
            amount in 0i64..10_000_000_000, r in arb_rules(), cur in prop::sample::select(vec!["usd", "jpy", "kwd"]),
        ) {
            if let Ok(q) = quote(&r, &req(amount, cur)) {
                prop_assert_eq!(q.processor_fee + q.application_fee + q.net, q.gross);
                prop_assert_eq!(q.lines.iter().map(|l| l.amount).sum::<i64>(), q.gross);
                prop_assert!(q.net >= 0 && q.processor_fee >= 0 && q.application_fee >= 0);
            }
        }

        #[test]
        fn fees_never_decrease_as_the_amount_grows(amount in 0i64..1_000_000_000, step in 1i64..10_000, r in arb_rules()) {
            if let (Ok(a), Ok(b)) = (quote(&r, &req(amount, "usd")), quote(&r, &req(amount + step, "usd"))) {
                prop_assert!(b.processor_fee >= a.processor_fee);
                prop_assert!(b.application_fee >= a.application_fee);
                prop_assert!(b.gross >= a.gross);
            }
        }

        #[test]
        fn gross_up_never_leaves_the_tenant_short_and_is_minimal(amount in 0i64..1_000_000_000, mut r in arb_rules()) {
            r.fee_bearer = Bearer::Customer;
            r.platform = None;
            if let Ok(q) = quote(&r, &req(amount, "usd")) {
                prop_assert!(q.net >= amount, "net {} < target {}", q.net, amount);
                let rate = r.processor_for("card", "usd").unwrap();
                if q.gross > amount {
                    let fee_below = processor_fee(&rate, q.gross - 1, false, false, r.rounding).unwrap();
                    prop_assert!(q.gross - 1 - fee_below < amount, "gross {} is not minimal", q.gross);
                }
            }
        }
    }
}
