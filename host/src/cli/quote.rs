//! `psa-billing quote`: a fee breakdown, or one of the flows (escrow,
//! wallet move, invoice, seats, refund) from a JSON input.

use super::*;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct QuoteArgs {
    /// A flow other than a single payment, with its input as JSON.
    #[command(subcommand)]
    flow: Option<Flow>,
    /// Amount in major units, e.g. 100.00 (USD) or 10000 (JPY).
    #[arg(long, allow_hyphen_values = true, required = true)]
    amount: Option<String>,
    /// Currency code, e.g. usd.
    #[arg(long, default_value = "usd")]
    currency: String,
    /// Stripe payment method type.
    #[arg(long, default_value = "card")]
    payment_method: String,
    /// Tenant whose overrides in the rules apply.
    #[arg(long)]
    tenant: Option<String>,
    /// The card is from another country than the account.
    #[arg(long)]
    international: bool,
    /// The charge is converted to another currency.
    #[arg(long)]
    converted: bool,
    /// Platform (application) fee percent, e.g. 2.5 (overrides the rules).
    #[arg(long)]
    application_fee_percent: Option<String>,
    /// Platform fee fixed part in major units, e.g. 0.50 (overrides the rules).
    #[arg(long)]
    application_fee_fixed: Option<String>,
    /// The tenant's volume so far this month in major units (for custom fee rules).
    #[arg(long)]
    monthly_volume: Option<String>,
    /// Fee rules file (TOML); see examples/rules/default.toml.
    #[arg(long, env = "PSA_BILLING_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

#[derive(Subcommand)]
pub(super) enum Flow {
    /// Marketplace escrow plan for an offer (seed 002). Input: {"amount": "100.00", "currency": "usd", "wallet": "w-1", "contractor": "c-9"} (wallet and contractor optional)
    Escrow(FlowArgs),
    /// Check a deposit or withdrawal against the limits. Input: {"kind": "withdrawal", "amount": "80.00", "currency": "usd", "available": "95.00"}
    Wallet(FlowArgs),
    /// Invoice totals (seed 001). Input: {"currency": "usd", "lines": [{"quantity": 3, "unit_amount": "19.99", "discount": {"percent": "10"}, "tax_rates": [{"percent": "8.25"}]}]}
    Invoice(FlowArgs),
    /// Seat change proration (seed 004). Input: {"unit_amount": "50.00", "currency": "usd", "old_quantity": 10, "new_quantity": 12, "period_start": 0, "period_end": 2592000, "change_at": 864000}
    Seats(FlowArgs),
    /// Refund split. Input: {"currency": "usd", "gross": "100.00", "application_fee": "2.50", "amount": "30.00", "refund_application_fee": true}
    Refund(FlowArgs),
}

#[derive(Args)]
pub(super) struct FlowArgs {
    /// JSON input file, or - for standard input.
    input: PathBuf,
    /// Fee rules file (TOML); see examples/rules/default.toml.
    #[arg(long, env = "PSA_BILLING_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

pub(super) async fn quote(a: QuoteArgs) -> Result<()> {
    if let Some(flow) = a.flow {
        return quote_flow(flow).await;
    }
    let billing = quoting(&a.plugin, &a.rules).await?;
    let input = QuoteInput {
        amount: a.amount.expect("clap requires --amount without a flow"),
        currency: a.currency,
        payment_method: a.payment_method,
        tenant: a.tenant,
        international: a.international,
        converted: a.converted,
        application_fee_percent: a.application_fee_percent,
        application_fee_fixed: a.application_fee_fixed,
        monthly_volume: a.monthly_volume,
    };
    let out = billing.quote(input).await?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub(super) async fn quote_flow(flow: Flow) -> Result<()> {
    let (name, args) = match flow {
        Flow::Escrow(a) => ("escrow", a),
        Flow::Wallet(a) => ("wallet", a),
        Flow::Invoice(a) => ("invoice", a),
        Flow::Seats(a) => ("seats", a),
        Flow::Refund(a) => ("refund", a),
    };
    let text = read_input(&args.input)?;
    let input: Value = serde_json::from_str(&text).context("the input is not JSON")?;
    let billing = quoting(&args.plugin, &args.rules).await?;
    let out = billing.quote_flow(name, input).await?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The embedding's assembly for a quote: offline, on a database in memory
/// (a quote reads and writes no state), with the rules file checked.
async fn quoting(plugin: &PluginArgs, rules: &Option<PathBuf>) -> Result<Billing> {
    let mut builder = plugin.configure(Billing::builder().offline().database("sqlite::memory:"));
    if let Some(path) = rules {
        builder = builder.rules_file(path);
    }
    builder.build().await
}
