//! Marketplace escrow (seed 002): a customer's offer is held in escrow with
//! the platform fee on top; the platform takes its fee when the contractor
//! accepts, and its service fee from the price at completion; the contractor
//! is owed the rest. Cancelling before acceptance returns the whole hold.
//! Deposits and withdrawals are checked against the rules' limits.

use crate::fees::FeeError;
use crate::money::{self, Money};
use crate::rules::{FeeRules, Percent, Rounding};
use rust_decimal::Decimal;

/// One transfer of a plan: `from` pays `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    /// The account debited.
    pub from: String,
    /// The account credited.
    pub to: String,
    /// What the transfer is for, e.g. "platform_fee".
    pub label: &'static str,
    /// The amount, in minor units.
    pub amount: i64,
}

/// Marketplace escrow for one offer (seed 002). Invariant: what
/// `on-accept` and `on-complete` pay out equals `hold`; `on-cancel` returns `hold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscrowPlan {
    /// Lowercase ISO currency code of every amount in the plan.
    pub currency: String,
    /// The offer's price.
    pub price: i64,
    /// What the customer pays into escrow: price + platform fee.
    pub hold: i64,
    /// Movements when the customer pays into escrow.
    pub on_hold: Vec<Movement>,
    /// Movements when the contractor accepts the offer.
    pub on_accept: Vec<Movement>,
    /// Movements when the work is done and escrow is released.
    pub on_complete: Vec<Movement>,
    /// Cancelled before acceptance: the hold goes back in full.
    pub on_cancel: Vec<Movement>,
}

fn pct(amount: i64, p: Percent, rounding: Rounding) -> Result<i64, FeeError> {
    rounding
        .apply(Decimal::from(amount) * p.0 / Decimal::ONE_HUNDRED)
        .try_into()
        .map_err(|_| FeeError::InvalidAmount("amount too large".into()))
}

/// Who an offer's money belongs to: the wallet it is paid from
/// (`wallet:<id>`; none: `customer`, paid by card) and the contractor it
/// goes to (`contractor:<id>`; none: the tenant's one `contractor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parties {
    /// The paying customer's wallet id.
    pub wallet: Option<String>,
    /// The contractor's id.
    pub contractor: Option<String>,
}

impl Parties {
    fn account(kind: &str, party: &Option<String>, default: &str) -> Result<String, FeeError> {
        let Some(p) = party else {
            return Ok(default.to_string());
        };
        let name = format!("{kind}:{p}");
        if crate::ledger::is_account(&name) {
            Ok(name)
        } else {
            Err(FeeError::InvalidAmount(format!(
                "a {kind} id is 1 to 64 of A-Z a-z 0-9 _ - . (got {p:?})"
            )))
        }
    }
}

/// The plan for an offer of `price` between `parties`.
pub fn plan(rules: &FeeRules, price: &Money, parties: &Parties) -> Result<EscrowPlan, FeeError> {
    let payer = Parties::account("wallet", &parties.wallet, "customer")?;
    let payee = Parties::account("contractor", &parties.contractor, "contractor")?;
    let cur = money::currency(&price.currency)?;
    if price.amount <= 0 {
        return Err(FeeError::InvalidAmount(format!(
            "offer amount {} must be positive",
            price.amount
        )));
    }
    let terms = rules.escrow.clone().unwrap_or_default();
    let platform_fee = pct(price.amount, terms.platform_percent, rules.rounding)?;
    let service_fee = pct(price.amount, terms.service_percent, rules.rounding)?;
    let hold = price
        .amount
        .checked_add(platform_fee)
        .ok_or_else(|| FeeError::InvalidAmount("amount too large".into()))?;
    money::check_charge(hold, cur.code)?;
    let mv = |from: &str, to: &str, label, amount| Movement {
        from: from.to_string(),
        to: to.to_string(),
        label,
        amount,
    };
    Ok(EscrowPlan {
        currency: cur.code.to_string(),
        price: price.amount,
        hold,
        on_hold: vec![mv(&payer, "escrow", "escrow_hold", hold)],
        on_accept: vec![mv("escrow", "platform", "platform_fee", platform_fee)],
        on_complete: vec![
            mv("escrow", "platform", "service_fee", service_fee),
            mv(
                "escrow",
                &payee,
                "contractor_payout",
                price.amount - service_fee,
            ),
        ],
        on_cancel: vec![mv("escrow", &payer, "refund", hold)],
    })
}

/// Which way money moves through a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalletMove {
    /// Money coming in: checked against the deposit limits.
    Deposit,
    /// Money going out: checked against the withdrawal limits and the balance.
    Withdrawal,
}

/// Checks a deposit or withdrawal against the rules' limits and, for a
/// withdrawal, the available balance and the currency's payout rule.
pub fn check_wallet_move(
    rules: &FeeRules,
    kind: WalletMove,
    amount: &Money,
    available: i64,
) -> Result<(), FeeError> {
    let cur = money::currency(&amount.currency)?;
    let a = amount.amount;
    if a <= 0 {
        return Err(FeeError::InvalidAmount(format!(
            "amount {a} must be positive"
        )));
    }
    let show = |v: i64| money::format_amount(v, cur.code).unwrap_or_default();
    let limits = rules.limits_for(cur.code);
    let (min, max, what) = match kind {
        WalletMove::Deposit => (
            limits.and_then(|l| l.deposit_min),
            limits.and_then(|l| l.deposit_max),
            "deposit",
        ),
        WalletMove::Withdrawal => (
            limits.and_then(|l| l.withdrawal_min),
            limits.and_then(|l| l.withdrawal_max),
            "withdrawal",
        ),
    };
    if let Some(m) = min.filter(|m| a < *m) {
        return Err(FeeError::InvalidAmount(format!(
            "minimum {what} is {} {}",
            show(m),
            cur.code
        )));
    }
    if let Some(m) = max.filter(|m| a > *m) {
        return Err(FeeError::InvalidAmount(format!(
            "maximum {what} is {} {}",
            show(m),
            cur.code
        )));
    }
    match kind {
        WalletMove::Deposit => money::check_charge(a, cur.code)?,
        WalletMove::Withdrawal => {
            if a > available {
                return Err(FeeError::FeesExceedAmount(format!(
                    "withdrawal of {} exceeds the available balance of {}",
                    show(a),
                    show(available)
                )));
            }
            money::check_payout(a, cur.code)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> FeeRules {
        FeeRules::from_toml(
            "[escrow]\nplatform_percent = \"5\"\nservice_percent = \"20\"\n\
             [[limits]]\ncurrency = \"usd\"\ndeposit_min = 1000\nwithdrawal_min = 1000\nwithdrawal_max = 1000000\n",
        )
        .unwrap()
    }

    fn sum(m: &[Movement]) -> i64 {
        m.iter().map(|m| m.amount).sum()
    }

    #[test]
    fn seed_002_offer_of_100() {
        let p = plan(&rules(), &Money::new(10_000, "usd"), &Parties::default()).unwrap();
        assert_eq!(p.hold, 10_500);
        assert_eq!(p.on_accept[0].amount, 500);
        assert_eq!(
            (p.on_complete[0].amount, p.on_complete[1].amount),
            (2_000, 8_000)
        );
        assert_eq!(p.on_cancel[0].amount, 10_500);
        // What goes into escrow all comes out again, on either path.
        assert_eq!(sum(&p.on_accept) + sum(&p.on_complete), p.hold);
    }

    #[test]
    fn seed_002_limits_and_balance() {
        let r = rules();
        let usd = |a| Money::new(a, "usd");
        assert!(check_wallet_move(&r, WalletMove::Deposit, &usd(999), 0).is_err());
        assert!(check_wallet_move(&r, WalletMove::Deposit, &usd(1_000), 0).is_ok());
        let err = check_wallet_move(&r, WalletMove::Withdrawal, &usd(1_000_001), 2_000_000);
        assert!(matches!(err, Err(FeeError::InvalidAmount(m)) if m.contains("10000.00")));
        let err = check_wallet_move(&r, WalletMove::Withdrawal, &usd(8_001), 8_000);
        assert!(matches!(err, Err(FeeError::FeesExceedAmount(_))));
        assert!(check_wallet_move(&r, WalletMove::Withdrawal, &usd(8_000), 8_000).is_ok());
        // HUF pays out in whole forints only.
        let huf = Money::new(150_050, "huf");
        assert!(check_wallet_move(&r, WalletMove::Withdrawal, &huf, 1_000_000).is_err());
    }

    proptest::proptest! {
        #[test]
        fn escrow_conserves(price in 1i64..1_000_000_000_000, p in 0u32..=2_000, s in 0u32..=10_000) {
            let r = FeeRules {
                escrow: Some(crate::rules::EscrowTerms {
                    platform_percent: Percent(Decimal::new(p.into(), 2)),
                    service_percent: Percent(Decimal::new(s.into(), 2)),
                }),
                ..FeeRules::default()
            };
            let plan = plan(&r, &Money::new(price, "usd"), &Parties::default()).unwrap();
            proptest::prop_assert_eq!(sum(&plan.on_accept) + sum(&plan.on_complete), plan.hold);
            proptest::prop_assert_eq!(sum(&plan.on_cancel), plan.hold);
            proptest::prop_assert!(plan.on_complete.iter().all(|m| m.amount >= 0));
        }
    }
}
