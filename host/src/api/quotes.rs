//! Quotes as the CLI and `POST /v1/quote` take and give them: amounts in
//! major units as text ("100.00"), results with minor units and display text.

use crate::api::{ApiFailure, answer_json};
use crate::runtime::{
    Charged, Discount, EscrowParties, FeeError, InvoiceLine, Money, QuoteRequest, Runtime,
    SeatChange, TaxRate, WalletMove,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A quote request in human terms.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteInput {
    /// Major units as text: "100.00" USD, "10000" JPY.
    pub amount: String,
    /// ISO currency code (`usd`).
    pub currency: String,
    /// The payment method type the processor schedule is chosen by (`card`).
    #[serde(default = "card")]
    pub payment_method: String,
    /// The tenant whose overrides apply, if any.
    #[serde(default)]
    pub tenant: Option<String>,
    /// A card issued outside the account's country (international surcharge).
    #[serde(default)]
    pub international: bool,
    /// A payment in another currency than the settlement one (conversion fee).
    #[serde(default)]
    pub converted: bool,
    /// Overrides the rules' platform percent ("2.5").
    #[serde(default)]
    pub application_fee_percent: Option<String>,
    /// Overrides the rules' platform fixed fee, in major units ("0.50").
    #[serde(default)]
    pub application_fee_fixed: Option<String>,
    /// The tenant's volume so far this month in major units, for custom
    /// fee rules that price by volume.
    #[serde(default)]
    pub monthly_volume: Option<String>,
}

fn card() -> String {
    "card".into()
}

impl QuoteInput {
    /// A card payment of `amount` (major units as text) in `currency`, with
    /// everything else as the rules say; set the public fields to change it.
    pub fn new(amount: impl Into<String>, currency: impl Into<String>) -> QuoteInput {
        QuoteInput {
            amount: amount.into(),
            currency: currency.into(),
            payment_method: card(),
            tenant: None,
            international: false,
            converted: false,
            application_fee_percent: None,
            application_fee_fixed: None,
            monthly_volume: None,
        }
    }
}

fn invalid(e: FeeError) -> ApiFailure {
    ApiFailure::Invalid(fee_error_text(e))
}

/// A fee error as the user reads it.
pub(crate) fn fee_error_text(e: FeeError) -> String {
    match e {
        FeeError::UnknownCurrency(c) => format!("unknown currency {c:?}"),
        FeeError::InvalidAmount(m) | FeeError::InvalidRate(m) | FeeError::FeesExceedAmount(m) => m,
        FeeError::InvalidRules(m) => format!("invalid rules: {m}"),
    }
}

/// An amount as the API answers it: minor units, currency and display text.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Amount {
    /// Minor units (cents; yen for JPY).
    pub amount: i64,
    /// Lowercase ISO currency code.
    pub currency: String,
    /// Major units as text, as the currency writes them ("94.30", "1000").
    pub display: String,
}

/// An amount with its display text ("94.30").
pub(crate) fn amount_of(m: &Money) -> Amount {
    let display = psa_billing_core::money::format_amount(m.amount, &m.currency).unwrap_or_default();
    Amount {
        amount: m.amount,
        currency: m.currency.clone(),
        display,
    }
}

/// A payment's fees (`POST /v1/quote`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedFees {
    /// What the customer pays.
    pub gross: Amount,
    /// Stripe's processing fee.
    pub processor_fee: Amount,
    /// The platform's application fee.
    pub application_fee: Amount,
    /// What the tenant keeps: gross minus both fees.
    pub net: Amount,
    /// Each fee as a line: who pays whom, and why.
    pub lines: Vec<QuotedFeeLine>,
}

/// One fee of a quote.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedFeeLine {
    /// What the line is.
    pub label: String,
    /// Who pays it.
    pub payer: String,
    /// Who receives it.
    pub payee: String,
    /// How much.
    pub amount: Amount,
}

/// A movement between ledger accounts in a planned flow.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedMovement {
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// Why.
    pub label: String,
    /// How much.
    pub amount: Amount,
}

/// An escrow's movements at each step (`POST /v1/quote/escrow`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedEscrow {
    /// The offer's price.
    pub price: Amount,
    /// Price plus the platform fee: what the customer pays into escrow.
    pub hold: Amount,
    /// Movements when the customer pays into escrow.
    pub on_hold: Vec<QuotedMovement>,
    /// Movements when the contractor accepts the offer.
    pub on_accept: Vec<QuotedMovement>,
    /// Movements when the work is done and escrow is released.
    pub on_complete: Vec<QuotedMovement>,
    /// Movements when the offer is cancelled before acceptance.
    pub on_cancel: Vec<QuotedMovement>,
}

/// A wallet move the rules allow (`POST /v1/quote/wallet`); one they
/// refuse is answered 422.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedWalletMove {
    /// Always true: a refused move is an error.
    pub allowed: bool,
    /// The amount checked.
    pub amount: Amount,
}

/// An invoice's totals (`POST /v1/quote/invoice`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedInvoice {
    /// Each line's figures, in the order given.
    pub lines: Vec<QuotedInvoiceLine>,
    /// Σ quantity × unit amount.
    pub subtotal: Amount,
    /// Σ discounts.
    pub discount: Amount,
    /// Σ tax added on top (inclusive tax is part of the prices).
    pub tax: Amount,
    /// What the customer pays.
    pub total: Amount,
}

/// One line of [`QuotedInvoice`].
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedInvoiceLine {
    /// The line's text.
    pub description: String,
    /// Quantity × unit amount.
    pub subtotal: Amount,
    /// Its discount.
    pub discount: Amount,
    /// Tax added on top.
    pub tax_exclusive: Amount,
    /// Tax contained in the price.
    pub tax_inclusive: Amount,
    /// What the line costs.
    pub total: Amount,
}

/// A seat-count change's proration (`POST /v1/quote/seats`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedSeats {
    /// The license count after the change: the subscription quantity.
    pub license_count: i64,
    /// Unused time on the old quantity (negative).
    pub credit: Amount,
    /// Remaining time on the new quantity.
    pub charge: Amount,
    /// Charge plus credit: what the change costs.
    pub net: Amount,
}

/// A refund's split between the platform and the tenant
/// (`POST /v1/quote/refund`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QuotedRefund {
    /// Refunded to the customer.
    pub amount: Amount,
    /// Application fee returned to the tenant with this refund.
    pub application_fee_refunded: Amount,
    /// What the tenant's balance loses.
    pub tenant_debit: Amount,
    /// Refunded so far on the payment, this refund included.
    pub total_refunded: Amount,
    /// Nothing is left to refund.
    pub full: bool,
}

/// Computes a quote through the plugin.
pub async fn quote(
    runtime: &Runtime,
    rules: Option<&str>,
    input: QuoteInput,
) -> Result<QuotedFees, ApiFailure> {
    let amount = runtime
        .parse_amount(&input.amount, &input.currency)
        .await?
        .map_err(invalid)?;
    let fixed = minor_units(
        runtime,
        input.application_fee_fixed.as_deref(),
        &input.currency,
    )
    .await?;
    let monthly_volume =
        minor_units(runtime, input.monthly_volume.as_deref(), &input.currency).await?;
    let request = QuoteRequest {
        amount,
        payment_method: input.payment_method,
        tenant: input.tenant,
        international: input.international,
        converted: input.converted,
        application_fee_percent: input.application_fee_percent,
        application_fee_fixed: fixed,
        monthly_volume,
    };
    let q = runtime
        .quote(rules.map(str::to_string), request)
        .await?
        .map_err(invalid)?;
    Ok(QuotedFees {
        gross: amount_of(&q.gross),
        processor_fee: amount_of(&q.processor_fee),
        application_fee: amount_of(&q.application_fee),
        net: amount_of(&q.net),
        lines: q
            .lines
            .iter()
            .map(|l| QuotedFeeLine {
                label: l.label.clone(),
                payer: l.payer.clone(),
                payee: l.payee.clone(),
                amount: amount_of(&l.amount),
            })
            .collect(),
    })
}

/// Parses an optional major-unit amount into minor units.
async fn minor_units(
    runtime: &Runtime,
    amount: Option<&str>,
    currency: &str,
) -> Result<Option<i64>, ApiFailure> {
    match amount {
        Some(a) => Ok(Some(
            runtime
                .parse_amount(a, currency)
                .await?
                .map_err(invalid)?
                .amount,
        )),
        None => Ok(None),
    }
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

/// The flows beyond a single payment, by name (`POST /v1/quote/{flow}`,
/// `psa-billing quote <flow>`).
pub const FLOWS: &[&str] = &["escrow", "wallet", "invoice", "seats", "refund"];

/// `POST /v1/quote/escrow`: an offer's price.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EscrowQuoteInput {
    /// Decimal, in `currency` ("250.00").
    amount: String,
    /// ISO currency code.
    currency: String,
    /// The wallet the customer pays from; none: `customer`.
    #[serde(default)]
    wallet: Option<String>,
    /// The contractor paid; none: the tenant's one `contractor`.
    #[serde(default)]
    contractor: Option<String>,
}

/// Which way money moves through a wallet.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub(crate) enum WalletKind {
    /// Money into the wallet.
    Deposit,
    /// Money out of the wallet.
    Withdrawal,
}

/// `POST /v1/quote/wallet`: a wallet move, checked against the rules' limits.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WalletQuoteInput {
    /// Deposit or withdrawal.
    kind: WalletKind,
    /// Decimal, in `currency`.
    amount: String,
    /// ISO currency code.
    currency: String,
    /// Available balance, for a withdrawal.
    #[serde(default)]
    available: Option<String>,
}

/// A discount on an invoice line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum DiscountInput {
    /// Decimal percent off ("10").
    Percent(String),
    /// Decimal amount off, in the invoice's currency ("5.00").
    Amount(String),
}

/// A tax of an invoice line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaxInput {
    /// Decimal percent ("8.25").
    pub percent: String,
    /// Contained in the price (VAT-style) rather than added on top.
    #[serde(default)]
    pub inclusive: bool,
    /// The Stripe tax rate (`txr_...`) with this percentage, for
    /// `create-invoice` (a quote ignores it).
    #[serde(default)]
    pub stripe_id: Option<String>,
}

/// One invoice line, as `POST /v1/quote/invoice` and `create-invoice` take it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineInput {
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Units on the line.
    pub quantity: i64,
    /// Decimal, in the invoice's currency.
    pub unit_amount: String,
    /// `{"percent": "10"}` or `{"amount": "5.00"}`.
    #[serde(default)]
    pub discount: Option<DiscountInput>,
    /// Taxes applied after the discount.
    #[serde(default)]
    pub tax_rates: Vec<TaxInput>,
}

/// Invoice lines in minor units, each with the Stripe tax rate ids its
/// taxes name.
pub(crate) async fn invoice_lines(
    rt: &Runtime,
    currency: &str,
    input: Vec<LineInput>,
) -> Result<Vec<(InvoiceLine, Vec<String>)>, ApiFailure> {
    let mut lines = Vec::with_capacity(input.len());
    for l in input {
        let ids = l
            .tax_rates
            .iter()
            .filter_map(|t| t.stripe_id.clone())
            .collect();
        let line = InvoiceLine {
            description: l.description,
            quantity: l.quantity,
            unit_amount: minor(rt, &l.unit_amount, currency).await?,
            discount: match l.discount {
                None => None,
                Some(DiscountInput::Percent(p)) => Some(Discount::Percent(p)),
                Some(DiscountInput::Amount(a)) => {
                    Some(Discount::Amount(minor(rt, &a, currency).await?))
                }
            },
            tax_rates: l
                .tax_rates
                .into_iter()
                .map(|t| TaxRate {
                    percent: t.percent,
                    inclusive: t.inclusive,
                })
                .collect(),
        };
        lines.push((line, ids));
    }
    Ok(lines)
}

/// `POST /v1/quote/invoice`: lines to total.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvoiceQuoteInput {
    /// ISO currency code of every amount.
    currency: String,
    /// The invoice's lines.
    lines: Vec<LineInput>,
}

/// `POST /v1/quote/seats`: a seat-count change in a billing period.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeatsQuoteInput {
    /// Price of one seat for the whole period, decimal.
    unit_amount: String,
    /// ISO currency code.
    currency: String,
    /// Seats before the change.
    old_quantity: i64,
    /// Seats after the change.
    new_quantity: i64,
    /// Unix seconds at which the billing period starts.
    period_start: i64,
    /// Unix seconds at which the billing period ends.
    period_end: i64,
    /// Unix seconds at which the seat count changes.
    change_at: i64,
}

/// `POST /v1/quote/refund`: a refund of a payment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefundQuoteInput {
    /// ISO currency code of every amount.
    currency: String,
    /// What the customer paid, decimal.
    gross: String,
    /// The application fee collected on the payment.
    #[serde(default)]
    application_fee: Option<String>,
    /// Refunded on the payment before this refund.
    #[serde(default)]
    refunded: Option<String>,
    /// Application fee already given back.
    #[serde(default)]
    application_fee_refunded: Option<String>,
    /// The amount to refund now, decimal.
    amount: String,
    /// Give back the application fee in proportion.
    #[serde(default)]
    refund_application_fee: bool,
}

fn parse_input<T: serde::de::DeserializeOwned>(input: Value) -> Result<T, ApiFailure> {
    serde_json::from_value(input).map_err(|e| ApiFailure::Invalid(format!("bad input: {e}")))
}

/// Minor units of a major-unit text, through the plugin's currency rules.
async fn minor(rt: &Runtime, text: &str, currency: &str) -> Result<i64, ApiFailure> {
    Ok(rt
        .parse_amount(text, currency)
        .await?
        .map_err(invalid)?
        .amount)
}

async fn minor_or_zero(
    rt: &Runtime,
    text: &Option<String>,
    currency: &str,
) -> Result<i64, ApiFailure> {
    match text {
        Some(t) => minor(rt, t, currency).await,
        None => Ok(0),
    }
}

fn money(amount: i64, currency: &str) -> Money {
    Money {
        amount,
        currency: currency.to_ascii_lowercase(),
    }
}

fn movements(list: &[crate::runtime::Movement]) -> Vec<QuotedMovement> {
    list.iter()
        .map(|m| QuotedMovement {
            from: m.from.clone(),
            to: m.to.clone(),
            label: m.label.clone(),
            amount: amount_of(&m.amount),
        })
        .collect()
}

/// Computes one flow from its JSON input.
pub async fn flow(
    rt: &Runtime,
    rules: Option<&str>,
    name: &str,
    input: Value,
) -> Result<Value, ApiFailure> {
    let rules = rules.map(str::to_string);
    match name {
        "escrow" => Ok(answer_json(
            &escrow_flow(rt, rules, parse_input(input)?).await?,
        )),
        "wallet" => Ok(answer_json(
            &wallet_flow(rt, rules, parse_input(input)?).await?,
        )),
        "invoice" => Ok(answer_json(
            &invoice_flow(rt, rules, parse_input(input)?).await?,
        )),
        "seats" => Ok(answer_json(
            &seats_flow(rt, rules, parse_input(input)?).await?,
        )),
        "refund" => Ok(answer_json(
            &refund_flow(rt, rules, parse_input(input)?).await?,
        )),
        other => Err(ApiFailure::Invalid(format!(
            "unknown flow {other:?}; one of {}",
            FLOWS.join(", ")
        ))),
    }
}

/// An escrow offer's movements at each stage.
async fn escrow_flow(
    rt: &Runtime,
    rules: Option<String>,
    i: EscrowQuoteInput,
) -> Result<QuotedEscrow, ApiFailure> {
    let price = money(minor(rt, &i.amount, &i.currency).await?, &i.currency);
    let parties = EscrowParties {
        wallet: i.wallet,
        contractor: i.contractor,
    };
    let p = rt
        .plan_escrow(rules, price, parties)
        .await?
        .map_err(invalid)?;
    Ok(QuotedEscrow {
        price: amount_of(&p.price),
        hold: amount_of(&p.hold),
        on_hold: movements(&p.on_hold),
        on_accept: movements(&p.on_accept),
        on_complete: movements(&p.on_complete),
        on_cancel: movements(&p.on_cancel),
    })
}

/// A wallet deposit or withdrawal checked against the rules' limits.
async fn wallet_flow(
    rt: &Runtime,
    rules: Option<String>,
    i: WalletQuoteInput,
) -> Result<QuotedWalletMove, ApiFailure> {
    let amount = money(minor(rt, &i.amount, &i.currency).await?, &i.currency);
    let available = minor_or_zero(rt, &i.available, &i.currency).await?;
    let kind = match i.kind {
        WalletKind::Deposit => WalletMove::Deposit,
        WalletKind::Withdrawal => WalletMove::Withdrawal,
    };
    rt.check_wallet_move(rules, kind, amount.clone(), available)
        .await?
        .map_err(invalid)?;
    Ok(QuotedWalletMove {
        allowed: true,
        amount: amount_of(&amount),
    })
}

/// An invoice's totals: discounts, exclusive and inclusive taxes.
async fn invoice_flow(
    rt: &Runtime,
    rules: Option<String>,
    i: InvoiceQuoteInput,
) -> Result<QuotedInvoice, ApiFailure> {
    let lines = invoice_lines(rt, &i.currency, i.lines)
        .await?
        .into_iter()
        .map(|(line, _)| line)
        .collect();
    let t = rt
        .total_invoice(rules, i.currency, lines)
        .await?
        .map_err(invalid)?;
    let m = |a| amount_of(&money(a, &t.currency));
    Ok(QuotedInvoice {
        lines: t
            .lines
            .iter()
            .map(|l| QuotedInvoiceLine {
                description: l.description.clone(),
                subtotal: m(l.subtotal),
                discount: m(l.discount),
                tax_exclusive: m(l.tax_exclusive),
                tax_inclusive: m(l.tax_inclusive),
                total: m(l.total),
            })
            .collect(),
        subtotal: m(t.subtotal),
        discount: m(t.discount),
        tax: m(t.tax),
        total: m(t.total),
    })
}

/// The proration of a seat-count change.
async fn seats_flow(
    rt: &Runtime,
    rules: Option<String>,
    i: SeatsQuoteInput,
) -> Result<QuotedSeats, ApiFailure> {
    let change = SeatChange {
        unit_amount: money(minor(rt, &i.unit_amount, &i.currency).await?, &i.currency),
        old_quantity: i.old_quantity,
        new_quantity: i.new_quantity,
        period_start: i.period_start,
        period_end: i.period_end,
        change_at: i.change_at,
    };
    let p = rt.prorate_seats(rules, change).await?.map_err(invalid)?;
    Ok(QuotedSeats {
        license_count: p.license_count,
        credit: amount_of(&p.credit),
        charge: amount_of(&p.charge),
        net: amount_of(&p.net),
    })
}

/// A refund's split between the tenant and the platform.
async fn refund_flow(
    rt: &Runtime,
    rules: Option<String>,
    i: RefundQuoteInput,
) -> Result<QuotedRefund, ApiFailure> {
    let c = &i.currency;
    let original = Charged {
        gross: money(minor(rt, &i.gross, c).await?, c),
        application_fee: minor_or_zero(rt, &i.application_fee, c).await?,
        refunded: minor_or_zero(rt, &i.refunded, c).await?,
        application_fee_refunded: minor_or_zero(rt, &i.application_fee_refunded, c).await?,
    };
    let amount = minor(rt, &i.amount, c).await?;
    let r = rt
        .split_refund(rules, original, amount, i.refund_application_fee)
        .await?
        .map_err(invalid)?;
    let m = |a| amount_of(&money(a, c));
    Ok(QuotedRefund {
        amount: amount_of(&r.amount),
        application_fee_refunded: m(r.application_fee_refunded),
        tenant_debit: m(r.tenant_debit),
        total_refunded: m(r.total_refunded),
        full: r.full,
    })
}
