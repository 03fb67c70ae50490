//! Refunds of a Connect payment: partial or full, accumulated against the
//! original, never beyond it. Stripe keeps its processing fee on a refund;
//! the application fee is returned in proportion when asked
//! (`refund_application_fee`), with the last refund taking the remainder so
//! that a full refund returns exactly the whole fee.

use crate::fees::FeeError;
use crate::rules::Rounding;
use rust_decimal::Decimal;

/// A refund (`re_...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The amount refunded.
    pub amount: i64,
    /// Application fee returned to the tenant with this refund.
    pub application_fee_refunded: i64,
    /// What the tenant's balance loses: amount − application fee returned.
    pub tenant_debit: i64,
    /// Refunded on the charge so far, this refund included.
    pub total_refunded: i64,
    /// The whole charge is refunded.
    pub full: bool,
}

/// The original charge and what was already refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charged {
    /// What the customer pays.
    pub gross: i64,
    /// The application fee collected on the payment, minor units.
    pub application_fee: i64,
    /// Refunded on the payment before this refund, minor units.
    pub refunded: i64,
    /// Application fee already given back, minor units.
    pub application_fee_refunded: i64,
}

/// Splits a refund of `amount` on `original`: what the tenant loses and,
/// when `refund_application_fee`, the application fee returned in
/// proportion (the last refund takes the remainder). Refuses a refund
/// beyond what is left on the charge.
pub fn refund(
    original: &Charged,
    amount: i64,
    refund_application_fee: bool,
    rounding: Rounding,
) -> Result<Refund, FeeError> {
    if amount <= 0 {
        return Err(FeeError::InvalidAmount(format!(
            "refund {amount} must be positive"
        )));
    }
    let left = original.gross - original.refunded;
    if amount > left {
        return Err(FeeError::FeesExceedAmount(format!(
            "refund of {amount} exceeds the {left} left to refund"
        )));
    }
    let total = original.refunded + amount;
    let fee_back = if !refund_application_fee {
        0
    } else if total == original.gross {
        original.application_fee - original.application_fee_refunded
    } else {
        // Cumulative share, so that rounding never drifts over many partial refunds.
        let share = Decimal::from(original.application_fee) * Decimal::from(total)
            / Decimal::from(original.gross);
        let due: i64 = rounding.apply(share).try_into().unwrap_or(i64::MAX);
        (due - original.application_fee_refunded).clamp(
            0,
            original.application_fee - original.application_fee_refunded,
        )
    };
    Ok(Refund {
        amount,
        application_fee_refunded: fee_back,
        tenant_debit: amount - fee_back,
        total_refunded: total,
        full: total == original.gross,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn paid() -> Charged {
        Charged {
            gross: 10_000,
            application_fee: 250,
            refunded: 0,
            application_fee_refunded: 0,
        }
    }

    #[test]
    fn partial_then_full() {
        let r1 = refund(&paid(), 3_000, true, Rounding::HalfUp).unwrap();
        assert_eq!(
            (r1.application_fee_refunded, r1.tenant_debit, r1.full),
            (75, 2_925, false)
        );
        let after = Charged {
            refunded: 3_000,
            application_fee_refunded: 75,
            ..paid()
        };
        let r2 = refund(&after, 7_000, true, Rounding::HalfUp).unwrap();
        assert_eq!(
            (r2.application_fee_refunded, r2.total_refunded, r2.full),
            (175, 10_000, true)
        );
        assert!(
            refund(
                &Charged {
                    refunded: 10_000,
                    ..paid()
                },
                1,
                true,
                Rounding::HalfUp
            )
            .is_err()
        );
        assert_eq!(
            refund(&paid(), 5_000, false, Rounding::HalfUp)
                .unwrap()
                .application_fee_refunded,
            0
        );
    }

    proptest! {
        #[test]
        fn refunds_never_exceed_the_original(gross in 1i64..10_000_000, fee_bp in 0i64..=3_000, cuts in prop::collection::vec(1i64..1_000_000, 1..8)) {
            let fee = gross * fee_bp / 10_000;
            let mut c = Charged { gross, application_fee: fee, refunded: 0, application_fee_refunded: 0 };
            for cut in cuts {
                match refund(&c, cut, true, Rounding::HalfUp) {
                    Ok(r) => {
                        c.refunded += r.amount;
                        c.application_fee_refunded += r.application_fee_refunded;
                        prop_assert!(r.application_fee_refunded >= 0);
                    }
                    Err(_) => prop_assert!(cut > c.gross - c.refunded),
                }
                prop_assert!(c.refunded <= c.gross);
                prop_assert!(c.application_fee_refunded <= c.application_fee);
            }
            // Refunding the rest returns exactly the rest of the fee.
            if c.refunded < c.gross {
                let r = refund(&c, c.gross - c.refunded, true, Rounding::HalfUp).unwrap();
                prop_assert_eq!(c.application_fee_refunded + r.application_fee_refunded, fee);
            }
        }
    }
}
