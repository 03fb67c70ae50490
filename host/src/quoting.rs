//! Quotes as the CLI and `POST /v1/quote` take and give them: amounts in
//! major units as text ("100.00"), results with minor units and display text.

use crate::runtime::{CallError, FeeError, Money, QuoteRequest, Runtime};
use serde::Deserialize;
use serde_json::{Value, json};

/// A quote request in human terms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteInput {
    /// Major units as text: "100.00" USD, "10000" JPY.
    pub amount: String,
    pub currency: String,
    #[serde(default = "card")]
    pub payment_method: String,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub international: bool,
    #[serde(default)]
    pub converted: bool,
    /// Overrides the rules' platform percent ("2.5").
    #[serde(default)]
    pub application_fee_percent: Option<String>,
    /// Overrides the rules' platform fixed fee, in major units ("0.50").
    #[serde(default)]
    pub application_fee_fixed: Option<String>,
}

fn card() -> String {
    "card".into()
}

#[derive(Debug, thiserror::Error)]
pub enum QuoteFailure {
    /// The request or the rules are wrong: the caller's to fix.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Plugin(#[from] CallError),
}

fn invalid(e: FeeError) -> QuoteFailure {
    QuoteFailure::Invalid(match e {
        FeeError::UnknownCurrency(c) => format!("unknown currency {c:?}"),
        FeeError::InvalidAmount(m) | FeeError::InvalidRate(m) | FeeError::FeesExceedAmount(m) => m,
        FeeError::InvalidRules(m) => format!("invalid rules: {m}"),
    })
}

fn money_json(m: &Money) -> Value {
    let display = psa_billing_core::money::format_amount(m.amount, &m.currency).unwrap_or_default();
    json!({ "amount": m.amount, "currency": m.currency, "display": display })
}

/// Computes a quote through the plugin.
pub async fn quote(
    runtime: &Runtime,
    rules: Option<&str>,
    input: QuoteInput,
) -> Result<Value, QuoteFailure> {
    let amount = runtime
        .parse_amount(&input.amount, &input.currency)
        .await?
        .map_err(invalid)?;
    let fixed = match &input.application_fee_fixed {
        Some(f) => Some(
            runtime
                .parse_amount(f, &input.currency)
                .await?
                .map_err(invalid)?
                .amount,
        ),
        None => None,
    };
    let request = QuoteRequest {
        amount,
        payment_method: input.payment_method,
        tenant: input.tenant,
        international: input.international,
        converted: input.converted,
        application_fee_percent: input.application_fee_percent,
        application_fee_fixed: fixed,
    };
    let q = runtime
        .quote(rules.map(str::to_string), request)
        .await?
        .map_err(invalid)?;
    Ok(json!({
        "gross": money_json(&q.gross),
        "processor_fee": money_json(&q.processor_fee),
        "application_fee": money_json(&q.application_fee),
        "net": money_json(&q.net),
        "lines": q.lines.iter().map(|l| json!({
            "label": l.label, "payer": l.payer, "payee": l.payee, "amount": money_json(&l.amount),
        })).collect::<Vec<_>>(),
    }))
}

/// Reads and checks a rules file through the plugin.
pub async fn load_rules(runtime: &Runtime, path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading rules {}: {e}", path.display()))?;
    match runtime.check_rules(text.clone()).await? {
        Ok(()) => Ok(text),
        Err(e) => Err(anyhow::anyhow!("{}: {}", path.display(), invalid(e))),
    }
}
