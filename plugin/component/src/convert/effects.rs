//! Core effects -> the WIT `effect` variant, field for field: each
//! record's conversion is a row of [`records!`] (fields moved as they are,
//! money through `wit_money`), and [`wit_effect`] maps variant to variant.
//!
//! Knows nothing about what an effect means: the core crate decides.

use super::wit_money;
use crate::bindings::exports::psa::billing::webhooks::{self as w, Effect};
use psa_billing_core::effects as fx;

/// `From<fx::Core> for w::Wit`, field for field: the fields before `;`
/// moved as they are, `money:` ones through `wit_money`, `maybe_money:`
/// ones through `Option::map(wit_money)`.
macro_rules! records {
    ($($from:ident => $to:ident {
        $($field:ident),*; money: $($money:ident),*; maybe_money: $($maybe:ident),*
    })*) => {
        $(impl From<fx::$from> for w::$to {
            fn from(v: fx::$from) -> w::$to {
                w::$to {
                    $($field: v.$field,)*
                    $($money: wit_money(v.$money),)*
                    $($maybe: v.$maybe.map(wit_money),)*
                }
            }
        })*
    };
}

records! {
    PaymentSucceeded => PaymentSucceeded { payment_intent, tenant, account, customer, reference; money: amount; maybe_money: application_fee }
    PaymentFailed => PaymentFailed { payment_intent, tenant, account, reference, code, decline_code, message; money: amount; maybe_money:  }
    InvoiceStatusChanged => InvoiceStatusChanged { invoice, status, tenant, account, customer, subscription, hosted_invoice_url, invoice_pdf; money: amount_paid, amount_due; maybe_money:  }
    RefundRecorded => RefundRecorded { charge, payment_intent, full, tenant, account, reference; money: amount, total_refunded; maybe_money:  }
    SubscriptionChanged => SubscriptionChanged { subscription, status, quantity, price, current_period_start, current_period_end, trial_end, metadata, cancel_at_period_end, tenant, account, customer; money: ; maybe_money:  }
    AccountStatusChanged => AccountStatusChanged { account, charges_enabled, payouts_enabled, details_submitted, requirements_due, disabled_reason, tenant; money: ; maybe_money:  }
    Payout => Payout { payout, status, arrival_date, destination, failure_code, failure_message, tenant, account; money: amount; maybe_money:  }
    Transfer => Transfer { transfer, reversed, destination, transfer_group, tenant, reference; money: amount, amount_reversed; maybe_money:  }
    FraudWarning => FraudWarning { warning, charge, payment_intent, fraud_type, actionable, tenant, account; money: ; maybe_money:  }
    Customer => Customer { customer, email, name, deleted, tenant, account; money: ; maybe_money:  }
    PaymentMethod => PaymentMethod { payment_method, customer, change, method_type, brand, last4, exp_month, exp_year, tenant, account; money: ; maybe_money:  }
    WalletDeposit => WalletDeposit { wallet, payment_intent, tenant, reference; money: amount; maybe_money:  }
    ApplicationFeeRefund => ApplicationFeeRefund { application_fee, charge, tenant, account; money: amount, total_refunded; maybe_money:  }
    AccountRerouted => AccountRerouted { account, tenant, transactions; money: ; maybe_money:  }
    PaymentSettled => PaymentSettled { payment_intent, charge, balance_transaction, available_on, paid_by, tenant, account; money: gross, processor_fee, net; maybe_money:  }
    LicenseCountSet => LicenseCountSet { subscription, tenant, count; money: ; maybe_money:  }
    EventIgnored => EventIgnored { event_type, reason; money: ; maybe_money:  }
    PaymentUpdate => PaymentUpdate { payment_intent, tenant, account, reference, cancellation_reason; money: amount; maybe_money:  }
    DisputeUpdate => DisputeUpdate { dispute, charge, payment_intent, reason, status, evidence_due_by, tenant, account; money: amount; maybe_money:  }
    DisputeFunds => DisputeFunds { dispute, charge, tenant, account; money: amount; maybe_money: fee }
    AccountApplication => AccountApplication { account, application, tenant; money: ; maybe_money:  }
    CheckoutSession => CheckoutSession { session, mode, status, payment_status, customer, payment_intent, subscription, invoice, tenant, account, reference; money: ; maybe_money: amount_total }
    RefundUpdate => RefundUpdate { refund, charge, payment_intent, status, reason, failure_reason, tenant, account, reference; money: amount; maybe_money:  }
    Review => Review { review, charge, payment_intent, reason, tenant, account; money: ; maybe_money:  }
}

/// The WIT effect of a core effect.
pub(crate) fn wit_effect(e: fx::Effect) -> Effect {
    match e {
        fx::Effect::PaymentSucceeded(v) => Effect::PaymentSucceeded(v.into()),
        fx::Effect::PaymentFailed(v) => Effect::PaymentFailed(v.into()),
        fx::Effect::PaymentProcessing(v) => Effect::PaymentProcessing(v.into()),
        fx::Effect::PaymentRequiresAction(v) => Effect::PaymentRequiresAction(v.into()),
        fx::Effect::PaymentCanceled(v) => Effect::PaymentCanceled(v.into()),
        fx::Effect::InvoiceStatusChanged(v) => Effect::InvoiceStatusChanged(v.into()),
        fx::Effect::RefundRecorded(v) => Effect::RefundRecorded(v.into()),
        fx::Effect::SubscriptionChanged(v) => Effect::SubscriptionChanged(v.into()),
        fx::Effect::AccountStatusChanged(v) => Effect::AccountStatusChanged(v.into()),
        fx::Effect::AccountAuthorized(v) => Effect::AccountAuthorized(v.into()),
        fx::Effect::AccountDeauthorized(v) => Effect::AccountDeauthorized(v.into()),
        fx::Effect::PaymentCapturable(v) => Effect::PaymentCapturable(v.into()),
        fx::Effect::PaymentPartiallyFunded(v) => Effect::PaymentPartiallyFunded(v.into()),
        fx::Effect::CheckoutCompleted(v) => Effect::CheckoutCompleted(v.into()),
        fx::Effect::CheckoutPaymentFailed(v) => Effect::CheckoutPaymentFailed(v.into()),
        fx::Effect::CheckoutExpired(v) => Effect::CheckoutExpired(v.into()),
        fx::Effect::RefundUpdated(v) => Effect::RefundUpdated(v.into()),
        fx::Effect::RefundFailed(v) => Effect::RefundFailed(v.into()),
        fx::Effect::PayoutChanged(v) => Effect::PayoutChanged(v.into()),
        fx::Effect::TransferChanged(v) => Effect::TransferChanged(v.into()),
        fx::Effect::FraudWarning(v) => Effect::FraudWarning(v.into()),
        fx::Effect::ReviewOpened(v) => Effect::ReviewOpened(v.into()),
        fx::Effect::ReviewClosed(v) => Effect::ReviewClosed(v.into()),
        fx::Effect::CustomerChanged(v) => Effect::CustomerChanged(v.into()),
        fx::Effect::PaymentMethodChanged(v) => Effect::PaymentMethodChanged(v.into()),
        fx::Effect::WalletDepositConfirmed(v) => Effect::WalletDepositConfirmed(v.into()),
        fx::Effect::ApplicationFeeRefunded(v) => Effect::ApplicationFeeRefunded(v.into()),
        fx::Effect::AccountRerouted(v) => Effect::AccountRerouted(v.into()),
        fx::Effect::PaymentSettled(v) => Effect::PaymentSettled(v.into()),
        fx::Effect::DisputeOpened(v) => Effect::DisputeOpened(v.into()),
        fx::Effect::DisputeUpdated(v) => Effect::DisputeUpdated(v.into()),
        fx::Effect::DisputeClosed(v) => Effect::DisputeClosed(v.into()),
        fx::Effect::DisputeFundsWithdrawn(v) => Effect::DisputeFundsWithdrawn(v.into()),
        fx::Effect::DisputeFundsReinstated(v) => Effect::DisputeFundsReinstated(v.into()),
        fx::Effect::LicenseCountSet(v) => Effect::LicenseCountSet(v.into()),
        fx::Effect::EventIgnored(v) => Effect::EventIgnored(v.into()),
    }
}
