//! `psa-billing check-plugin`: what a component file is, whether this host
//! can load it, and what it answers to a fixed set of quotes, for plugin
//! authors before they deploy.

use crate::api::ApiFailure;
use crate::api::quotes::{self, QuoteInput};
use crate::runtime::{CUSTOM_RULES_DECLINED, DEFAULT_PLUGIN, Limits, Runtime, WasmKind};
use anyhow::Result;
use serde_json::{Value, json};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

/// Which world a component implements, as far as this host can load it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// The billing plugin's world (`billing-plugin`).
    BillingPlugin,
    /// A custom fee-rules component's world (`fee-rules-plugin`).
    FeeRulesPlugin,
}

impl World {
    /// The world's WIT name.
    pub fn name(self) -> &'static str {
        match self {
            World::BillingPlugin => "psa:billing/billing-plugin",
            World::FeeRulesPlugin => "psa:billing/fee-rules-plugin",
        }
    }
}

/// The quotes every checked component is run against: each currency class,
/// the smallest and a large amount, and the surcharge flags.
pub fn sample_quotes(tenant: Option<&str>) -> Vec<QuoteInput> {
    let q = |amount: &str, currency: &str, international: bool, converted: bool| QuoteInput {
        tenant: tenant.map(str::to_string),
        international,
        converted,
        // In the quote's currency; volume-priced rules see a busy month.
        monthly_volume: (currency == "usd").then(|| "12000.00".into()),
        ..QuoteInput::new(amount, currency)
    };
    vec![
        q("100.00", "usd", false, false),
        q("0.50", "usd", false, false),
        q("999999.99", "usd", false, false),
        q("100.00", "eur", true, true),
        q("10000", "jpy", false, false),
        q("10.000", "kwd", false, false),
    ]
}

/// Checks `wasm`, running the sample quotes as `tenant`, and returns the
/// report (also when it is unusable: the report then says why, under
/// `error`). A violation is a quote whose lines do not add up to the gross
/// or go negative, a custom breakdown the billing plugin refuses, or a
/// trap or timeout; the rules declining a currency is not one.
pub async fn check(wasm: &[u8], tenant: Option<&str>) -> Value {
    let mut report = json!({ "size_bytes": wasm.len() });
    let kind = WasmKind::of(wasm).name();
    report["binary"] = json!(kind);
    if kind != "component" {
        report["error"] = json!(format!(
            "this is a {kind}; build a component with `cargo build --target wasm32-wasip2` (wit-bindgen)"
        ));
        return report;
    }
    match interface(wasm) {
        Ok((imports, exports)) => {
            report["imports"] = json!(imports);
            report["exports"] = json!(exports);
        }
        Err(e) => {
            report["error"] = json!(format!("{e:#}"));
            return report;
        }
    }
    let (world, runtime) = match load(wasm) {
        Ok(loaded) => loaded,
        Err(e) => {
            report["error"] = json!(e);
            return report;
        }
    };
    report["world"] = json!(world.name());
    let mut quotes = Vec::new();
    let mut violations = 0;
    for input in sample_quotes(tenant) {
        let asked = format!("{} {}", input.amount, input.currency);
        let answer = match quotes::quote(&runtime, None, input).await {
            Ok(q) => match conservation_error(&crate::api::answer_json(&q)) {
                None => json!({ "quote": asked, "result": q }),
                Some(why) => {
                    violations += 1;
                    json!({ "quote": asked, "result": q, "violation": why })
                }
            },
            // The component's own "I do not price this" is its right.
            Err(ApiFailure::Invalid(m))
                if m.contains(CUSTOM_RULES_DECLINED) || world == World::BillingPlugin =>
            {
                json!({ "quote": asked, "declined": m })
            }
            Err(ApiFailure::Invalid(m)) => {
                violations += 1;
                json!({ "quote": asked, "refused": m })
            }
            Err(e) => {
                violations += 1;
                json!({ "quote": asked, "failed": e.to_string() })
            }
        };
        quotes.push(answer);
    }
    report["quotes"] = json!(quotes);
    report["violations"] = json!(violations);
    report
}

/// The names of the component's imports and exports.
fn interface(wasm: &[u8]) -> Result<(Vec<String>, Vec<String>)> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config)?;
    let component = Component::new(&engine, wasm)?;
    let ty = component.component_type();
    let imports = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
    let exports = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
    Ok((imports, exports))
}

/// Loads `wasm` as a billing plugin, else as fee rules beside the built-in
/// billing plugin; the error names what each attempt lacked.
fn load(wasm: &[u8]) -> Result<(World, Runtime), String> {
    let as_plugin = match Runtime::new(wasm, Limits::default()) {
        Ok(rt) => return Ok((World::BillingPlugin, rt)),
        Err(e) => format!("{e:#}"),
    };
    match Runtime::with_fee_rules(DEFAULT_PLUGIN, Some(wasm), Limits::default()) {
        Ok(rt) => Ok((World::FeeRulesPlugin, rt)),
        Err(e) => Err(format!(
            "implements neither world this host loads. As {}: {as_plugin}. As {}: {e:#}",
            World::BillingPlugin.name(),
            World::FeeRulesPlugin.name()
        )),
    }
}

/// Why a quote's lines break the money rules, if they do.
fn conservation_error(q: &Value) -> Option<String> {
    let amount = |line: &str| q[line]["amount"].as_i64();
    let (Some(gross), Some(processor), Some(application), Some(net)) = (
        amount("gross"),
        amount("processor_fee"),
        amount("application_fee"),
        amount("net"),
    ) else {
        return Some("a line is missing".into());
    };
    if processor < 0 || application < 0 || net < 0 {
        return Some("a line is negative".into());
    }
    if processor + application + net != gross {
        return Some(format!(
            "{processor} + {application} + {net} does not add up to {gross}"
        ));
    }
    None
}
