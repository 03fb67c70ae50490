//! A custom fee-rules component (world `psa:billing/fee-rules-plugin`): the
//! platform takes 2.5% of a payment, but only 1.5% once the tenant's volume
//! this month (this payment included) is above $10,000. The processor fee is
//! Stripe's US card price, 2.9% + 30¢.
//!
//! The logic is plain Rust, tested natively; the glue at the bottom exists
//! only when built for `wasm32-wasip2`:
//!
//!   cargo build --release -p volume-discount-rules --target wasm32-wasip2
//!   psa-billing quote --amount 100.00 --monthly-volume 12000.00 \
//!     --fee-rules target/wasm32-wasip2/release/volume_discount_rules.wasm

use psa_billing_core::fees::processor_fee;
use psa_billing_core::rules::{Rounding, us_card_default};
use rust_decimal::Decimal;

/// Above this monthly volume (minor units), the lower rate applies.
pub const THRESHOLD: i64 = 1_000_000;

/// Computes (processor fee, application fee, net) for a USD card payment.
pub fn fees(gross: i64, currency: &str, monthly_volume: Option<i64>) -> Result<[i64; 3], String> {
    if currency != "usd" {
        return Err(format!("these rules price USD only, not {currency}"));
    }
    let processor = processor_fee(&us_card_default(), gross, false, false, Rounding::HalfUp)
        .map_err(|e| e.to_string())?;
    let volume = monthly_volume.unwrap_or(0).saturating_add(gross);
    let percent = if volume > THRESHOLD {
        Decimal::new(15, 1)
    } else {
        Decimal::new(25, 1)
    };
    let platform: i64 = Rounding::HalfUp
        .apply(Decimal::from(gross) * percent / Decimal::ONE_HUNDRED)
        .try_into()
        .map_err(|_| "amount too large".to_string())?;
    let net = gross - processor - platform;
    if net < 0 {
        return Err(format!("fees exceed the amount {gross}"));
    }
    Ok([processor, platform, net])
}

#[cfg(target_arch = "wasm32")]
mod glue {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "fee-rules-plugin",
    });

    use exports::psa::billing::fee_rules::{FeeContext, Guest};
    use psa::billing::types::{FeeLine, Money};

    struct VolumeDiscount;
    export!(VolumeDiscount);

    impl Guest for VolumeDiscount {
        fn compute_fees(ctx: FeeContext) -> Result<Vec<FeeLine>, String> {
            let cur = ctx.amount.currency.clone();
            let [processor, platform, net] =
                super::fees(ctx.amount.amount, &cur, ctx.monthly_volume)?;
            let line = |label: &str, payer: &str, payee: &str, amount| FeeLine {
                label: label.into(),
                payer: payer.into(),
                payee: payee.into(),
                amount: Money {
                    amount,
                    currency: cur.clone(),
                },
            };
            Ok(vec![
                line("processor_fee", "tenant", "processor", processor),
                line("application_fee", "tenant", "platform", platform),
                line("net", "customer", "tenant", net),
            ])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_rate_above_the_threshold() {
        assert_eq!(fees(10_000, "usd", None).unwrap(), [320, 250, 9_430]);
        assert_eq!(
            fees(10_000, "usd", Some(995_000)).unwrap(),
            [320, 150, 9_530]
        );
        assert!(fees(10_000, "eur", None).is_err());
        assert!(fees(10, "usd", None).is_err());
    }
}
