//! A custom fee-rules component (world `psa:billing/fee-rules-plugin`) in
//! its smallest form. Change [`fees`]; the glue below turns it into the
//! three lines the host expects. See README.md.

/// Platform (application) fee, in basis points of the gross: 2%.
pub const PLATFORM_BPS: i64 = 200;
/// Stripe's US card price: 2.9% + 30¢.
pub const PROCESSOR_BPS: i64 = 290;
pub const PROCESSOR_FIXED: i64 = 30;

/// `bps` of `amount`, rounded half up, in integer minor units.
fn share(amount: i64, bps: i64) -> Option<i64> {
    let exact = i128::from(amount) * i128::from(bps);
    i64::try_from((exact + 5_000) / 10_000).ok()
}

/// (processor fee, application fee, net) of a `gross` in minor units. The
/// three must add up to `gross` and none may be negative: the host checks,
/// and refuses the quote otherwise. An `Err` declines the quote with a reason.
pub fn fees(gross: i64, currency: &str) -> Result<[i64; 3], String> {
    if currency != "usd" {
        return Err(format!("this template prices usd only, not {currency}"));
    }
    if gross <= 0 {
        return Err("the amount must be positive".into());
    }
    let too_large = || "amount too large".to_string();
    let processor = share(gross, PROCESSOR_BPS)
        .and_then(|p| p.checked_add(PROCESSOR_FIXED))
        .ok_or_else(too_large)?;
    let platform = share(gross, PLATFORM_BPS).ok_or_else(too_large)?;
    // The net is the remainder, so the lines always add up.
    let net = gross - processor - platform;
    if net < 0 {
        return Err(format!("the fees exceed the amount {gross}"));
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

    struct Rules;
    export!(Rules);

    impl Guest for Rules {
        fn compute_fees(ctx: FeeContext) -> Result<Vec<FeeLine>, String> {
            let currency = ctx.amount.currency.clone();
            let [processor, platform, net] = super::fees(ctx.amount.amount, &currency)?;
            let line = |label: &str, payer: &str, payee: &str, amount| FeeLine {
                label: label.into(),
                payer: payer.into(),
                payee: payee.into(),
                amount: Money {
                    amount,
                    currency: currency.clone(),
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
    fn a_hundred_dollars() {
        // 2.9% + 30¢ = 3.20; 2% = 2.00; the rest is the tenant's.
        assert_eq!(fees(10_000, "usd"), Ok([320, 200, 9_480]));
    }

    #[test]
    fn the_lines_always_add_up_and_never_go_negative() {
        for gross in [31, 32, 99, 101, 12_345, 99_999_999, i64::MAX] {
            if let Ok([p, a, n]) = fees(gross, "usd") {
                assert_eq!(p + a + n, gross);
                assert!(p >= 0 && a >= 0 && n >= 0);
            }
        }
        assert!(
            fees(30, "usd").is_err(),
            "fees above the amount are declined"
        );
        assert!(fees(10_000, "eur").is_err());
    }
}
