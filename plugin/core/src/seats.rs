//! License seats (seed 004): the license count is the subscription's
//! quantity, never a sum; changing it mid-period is prorated the way Stripe
//! does by default: a credit for the unused time on the old quantity and a
//! charge for the remaining time on the new one, by the second.

use crate::fees::FeeError;
use crate::money;
use crate::rules::Rounding;
use rust_decimal::Decimal;

/// A change of seat count within a billing period (seed 004).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatChange {
    /// Lowercase ISO currency code.
    pub currency: String,
    /// Price of one seat for a whole period, minor units.
    pub unit_amount: i64,
    /// Seats before the change.
    pub old_quantity: i64,
    /// Seats after the change.
    pub new_quantity: i64,
    /// Unix seconds.
    pub period_start: i64,
    /// Unix seconds at which the billing period ends.
    pub period_end: i64,
    /// Unix seconds at which the seat count changes.
    pub change_at: i64,
}

/// What a seat change costs or credits for the rest of the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proration {
    /// Lowercase ISO currency code.
    pub currency: String,
    /// The license count after the change: the new quantity.
    pub license_count: i64,
    /// Negative: unused time on the old quantity.
    pub credit: i64,
    /// Remaining time on the new quantity.
    pub charge: i64,
    /// credit + charge: what the next invoice carries for the change.
    pub net: i64,
    /// Share of the period left, in millionths (for display).
    pub remaining_ppm: i64,
}

/// Prorates a seat change to the second, as Stripe does: a credit for the
/// unused time on the old quantity and a charge for the new one.
pub fn prorate(c: &SeatChange, rounding: Rounding) -> Result<Proration, FeeError> {
    let cur = money::currency(&c.currency)?;
    let bad = |m: &str| FeeError::InvalidAmount(m.to_string());
    if c.unit_amount < 0 || c.old_quantity < 0 || c.new_quantity < 0 {
        return Err(bad("unit amount and quantities must not be negative"));
    }
    if c.period_end <= c.period_start {
        return Err(bad("the period must end after it starts"));
    }
    if c.change_at < c.period_start || c.change_at > c.period_end {
        return Err(bad("the change must fall within the period"));
    }
    let remaining =
        Decimal::from(c.period_end - c.change_at) / Decimal::from(c.period_end - c.period_start);
    let part = |qty: i64| -> Result<i64, FeeError> {
        let whole = Decimal::from(c.unit_amount) * Decimal::from(qty);
        rounding
            .apply(whole * remaining)
            .try_into()
            .map_err(|_| bad("amounts too large"))
    };
    let credit = -part(c.old_quantity)?;
    let charge = part(c.new_quantity)?;
    Ok(Proration {
        currency: cur.code.to_string(),
        license_count: c.new_quantity,
        credit,
        charge,
        net: credit + charge,
        remaining_ppm: (remaining * Decimal::from(1_000_000))
            .round()
            .try_into()
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn change(old: i64, new: i64, at_day: i64) -> SeatChange {
        SeatChange {
            currency: "usd".into(),
            unit_amount: 5_000,
            old_quantity: old,
            new_quantity: new,
            period_start: 0,
            period_end: 30 * DAY,
            change_at: at_day * DAY,
        }
    }

    #[test]
    fn seed_004_adding_seats_mid_period() {
        // $50 seats, 10 → 12 with 20 of 30 days left.
        let p = prorate(&change(10, 12, 10), Rounding::HalfUp).unwrap();
        assert_eq!(p.license_count, 12);
        assert_eq!((p.credit, p.charge, p.net), (-33_333, 40_000, 6_667));
    }

    #[test]
    fn removing_seats_gives_a_credit_and_the_ends_are_exact() {
        let p = prorate(&change(12, 10, 15), Rounding::HalfUp).unwrap();
        assert_eq!(p.net, -5_000);
        assert_eq!(
            prorate(&change(10, 12, 30), Rounding::HalfUp).unwrap().net,
            0
        );
        assert_eq!(
            prorate(&change(10, 12, 0), Rounding::HalfUp).unwrap().net,
            10_000
        );
    }

    #[test]
    fn refuses_impossible_changes() {
        assert!(prorate(&change(10, -1, 1), Rounding::HalfUp).is_err());
        assert!(prorate(&change(10, 12, 31), Rounding::HalfUp).is_err());
        let mut c = change(1, 2, 0);
        c.period_end = c.period_start;
        assert!(prorate(&c, Rounding::HalfUp).is_err());
    }
}
