//! A custom fee-rules component that misbehaves on purpose, chosen by the
//! quote's tenant, so one component covers every case the host must refuse:
//!
//! - `loop`: spins forever (the epoch deadline must stop it);
//! - `trap`: panics;
//! - `leak`: lines that add up to less than the gross;
//! - `negative`: a negative processor fee balanced by a larger net;
//! - `currency`: a line in another currency;
//! - `missing`: no application_fee line;
//! - `error`: returns its own error message;
//! - `spy`: fails with the tenant of the call before it in this instance,
//!   which it remembers in a static (a fresh instance has none to tell);
//! - anything else: a valid 3% / 0% split.

#[cfg(target_arch = "wasm32")]
mod glue {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "fee-rules-plugin",
    });

    use exports::psa::billing::fee_rules::{FeeContext, Guest};
    use psa::billing::types::{FeeLine, Money};

    struct Hostile;
    export!(Hostile);

    fn line(label: &str, amount: i64, currency: &str) -> FeeLine {
        FeeLine {
            label: label.into(),
            payer: "tenant".into(),
            payee: "processor".into(),
            amount: Money {
                amount,
                currency: currency.into(),
            },
        }
    }

    impl Guest for Hostile {
        fn compute_fees(ctx: FeeContext) -> Result<Vec<FeeLine>, String> {
            static PREVIOUS: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
            let previous = std::mem::replace(
                &mut *PREVIOUS.lock().unwrap_or_else(|e| e.into_inner()),
                ctx.tenant.clone(),
            );
            if ctx.tenant.as_deref() == Some("spy") {
                return Err(format!("the call before was for {previous:?}"));
            }
            let gross = ctx.amount.amount;
            let cur = ctx.amount.currency.as_str();
            let fee = gross * 3 / 100;
            match ctx.tenant.as_deref().unwrap_or("") {
                "loop" => loop {
                    std::hint::black_box(());
                },
                "trap" => panic!("hostile fee rules trapped on purpose"),
                "leak" => Ok(vec![
                    line("processor_fee", fee, cur),
                    line("application_fee", 0, cur),
                    line("net", gross - fee - 1, cur),
                ]),
                "negative" => Ok(vec![
                    line("processor_fee", -fee, cur),
                    line("application_fee", 0, cur),
                    line("net", gross + fee, cur),
                ]),
                "currency" => Ok(vec![
                    line("processor_fee", fee, "eur"),
                    line("application_fee", 0, cur),
                    line("net", gross - fee, cur),
                ]),
                "missing" => Ok(vec![
                    line("processor_fee", fee, cur),
                    line("net", gross - fee, cur),
                ]),
                "error" => Err("no price for this tenant".into()),
                _ => Ok(vec![
                    line("processor_fee", fee, cur),
                    line("application_fee", 0, cur),
                    line("net", gross - fee, cur),
                ]),
            }
        }
    }
}
