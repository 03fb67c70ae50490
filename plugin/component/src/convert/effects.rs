//! Core effects -> the WIT `effect` variant, field for field.

use super::wit_money;
use crate::bindings::exports::psa::billing::webhooks::{self as w, Effect};
use psa_billing_core::effects as fx;

fn wit_update(u: fx::PaymentUpdate) -> w::PaymentUpdate {
    w::PaymentUpdate {
        payment_intent: u.payment_intent,
        amount: wit_money(u.amount),
        tenant: u.tenant,
        account: u.account,
        reference: u.reference,
        cancellation_reason: u.cancellation_reason,
    }
}

fn wit_dispute(d: fx::DisputeUpdate) -> w::DisputeUpdate {
    w::DisputeUpdate {
        dispute: d.dispute,
        charge: d.charge,
        payment_intent: d.payment_intent,
        amount: wit_money(d.amount),
        reason: d.reason,
        status: d.status,
        evidence_due_by: d.evidence_due_by,
        tenant: d.tenant,
        account: d.account,
    }
}

fn wit_funds(f: fx::DisputeFunds) -> w::DisputeFunds {
    w::DisputeFunds {
        dispute: f.dispute,
        charge: f.charge,
        amount: wit_money(f.amount),
        fee: f.fee.map(wit_money),
        tenant: f.tenant,
        account: f.account,
    }
}

pub(crate) fn wit_effect(e: fx::Effect) -> Effect {
    match e {
        fx::Effect::PaymentSucceeded(p) => Effect::PaymentSucceeded(w::PaymentSucceeded {
            payment_intent: p.payment_intent,
            amount: wit_money(p.amount),
            tenant: p.tenant,
            account: p.account,
            customer: p.customer,
            reference: p.reference,
            application_fee: p.application_fee.map(wit_money),
        }),
        fx::Effect::PaymentFailed(p) => Effect::PaymentFailed(w::PaymentFailed {
            payment_intent: p.payment_intent,
            amount: wit_money(p.amount),
            tenant: p.tenant,
            account: p.account,
            reference: p.reference,
            code: p.code,
            decline_code: p.decline_code,
            message: p.message,
        }),
        fx::Effect::PaymentProcessing(u) => Effect::PaymentProcessing(wit_update(u)),
        fx::Effect::PaymentRequiresAction(u) => Effect::PaymentRequiresAction(wit_update(u)),
        fx::Effect::PaymentCanceled(u) => Effect::PaymentCanceled(wit_update(u)),
        fx::Effect::InvoiceStatusChanged(i) => {
            Effect::InvoiceStatusChanged(w::InvoiceStatusChanged {
                invoice: i.invoice,
                status: i.status,
                amount_paid: wit_money(i.amount_paid),
                amount_due: wit_money(i.amount_due),
                tenant: i.tenant,
                account: i.account,
                customer: i.customer,
                subscription: i.subscription,
                hosted_invoice_url: i.hosted_invoice_url,
                invoice_pdf: i.invoice_pdf,
            })
        }
        fx::Effect::RefundRecorded(r) => Effect::RefundRecorded(w::RefundRecorded {
            charge: r.charge,
            payment_intent: r.payment_intent,
            amount: wit_money(r.amount),
            total_refunded: wit_money(r.total_refunded),
            full: r.full,
            tenant: r.tenant,
            account: r.account,
            reference: r.reference,
        }),
        fx::Effect::SubscriptionChanged(c) => Effect::SubscriptionChanged(w::SubscriptionChanged {
            subscription: c.subscription,
            status: c.status,
            quantity: c.quantity,
            price: c.price,
            current_period_start: c.current_period_start,
            current_period_end: c.current_period_end,
            trial_end: c.trial_end,
            metadata: c.metadata,
            cancel_at_period_end: c.cancel_at_period_end,
            tenant: c.tenant,
            account: c.account,
            customer: c.customer,
        }),
        fx::Effect::AccountStatusChanged(a) => {
            Effect::AccountStatusChanged(w::AccountStatusChanged {
                account: a.account,
                charges_enabled: a.charges_enabled,
                payouts_enabled: a.payouts_enabled,
                details_submitted: a.details_submitted,
                requirements_due: a.requirements_due,
                disabled_reason: a.disabled_reason,
                tenant: a.tenant,
            })
        }
        fx::Effect::AccountAuthorized(a) => Effect::AccountAuthorized(wit_application(a)),
        fx::Effect::AccountDeauthorized(a) => Effect::AccountDeauthorized(wit_application(a)),
        fx::Effect::PaymentCapturable(u) => Effect::PaymentCapturable(wit_update(u)),
        fx::Effect::PaymentPartiallyFunded(u) => Effect::PaymentPartiallyFunded(wit_update(u)),
        fx::Effect::CheckoutCompleted(c) => Effect::CheckoutCompleted(wit_checkout(c)),
        fx::Effect::CheckoutPaymentFailed(c) => Effect::CheckoutPaymentFailed(wit_checkout(c)),
        fx::Effect::CheckoutExpired(c) => Effect::CheckoutExpired(wit_checkout(c)),
        fx::Effect::RefundUpdated(r) => Effect::RefundUpdated(wit_refund(r)),
        fx::Effect::RefundFailed(r) => Effect::RefundFailed(wit_refund(r)),
        fx::Effect::PayoutChanged(p) => Effect::PayoutChanged(w::Payout {
            payout: p.payout,
            amount: wit_money(p.amount),
            status: p.status,
            arrival_date: p.arrival_date,
            destination: p.destination,
            failure_code: p.failure_code,
            failure_message: p.failure_message,
            tenant: p.tenant,
            account: p.account,
        }),
        fx::Effect::TransferChanged(t) => Effect::TransferChanged(w::Transfer {
            transfer: t.transfer,
            amount: wit_money(t.amount),
            amount_reversed: wit_money(t.amount_reversed),
            reversed: t.reversed,
            destination: t.destination,
            transfer_group: t.transfer_group,
            tenant: t.tenant,
            reference: t.reference,
        }),
        fx::Effect::FraudWarning(f) => Effect::FraudWarning(w::FraudWarning {
            warning: f.warning,
            charge: f.charge,
            payment_intent: f.payment_intent,
            fraud_type: f.fraud_type,
            actionable: f.actionable,
            tenant: f.tenant,
            account: f.account,
        }),
        fx::Effect::ReviewOpened(r) => Effect::ReviewOpened(wit_review(r)),
        fx::Effect::ReviewClosed(r) => Effect::ReviewClosed(wit_review(r)),
        fx::Effect::CustomerChanged(c) => Effect::CustomerChanged(w::Customer {
            customer: c.customer,
            email: c.email,
            name: c.name,
            deleted: c.deleted,
            tenant: c.tenant,
            account: c.account,
        }),
        fx::Effect::PaymentMethodChanged(p) => Effect::PaymentMethodChanged(w::PaymentMethod {
            payment_method: p.payment_method,
            customer: p.customer,
            change: p.change,
            method_type: p.method_type,
            brand: p.brand,
            last4: p.last4,
            exp_month: p.exp_month,
            exp_year: p.exp_year,
            tenant: p.tenant,
            account: p.account,
        }),
        fx::Effect::WalletDepositConfirmed(d) => Effect::WalletDepositConfirmed(w::WalletDeposit {
            wallet: d.wallet,
            payment_intent: d.payment_intent,
            amount: wit_money(d.amount),
            tenant: d.tenant,
            reference: d.reference,
        }),
        fx::Effect::ApplicationFeeRefunded(f) => {
            Effect::ApplicationFeeRefunded(w::ApplicationFeeRefund {
                application_fee: f.application_fee,
                charge: f.charge,
                amount: wit_money(f.amount),
                total_refunded: wit_money(f.total_refunded),
                tenant: f.tenant,
                account: f.account,
            })
        }
        fx::Effect::AccountRerouted(r) => Effect::AccountRerouted(w::AccountRerouted {
            account: r.account,
            tenant: r.tenant,
            transactions: r.transactions,
        }),
        fx::Effect::PaymentSettled(p) => Effect::PaymentSettled(w::PaymentSettled {
            payment_intent: p.payment_intent,
            charge: p.charge,
            balance_transaction: p.balance_transaction,
            gross: wit_money(p.gross),
            processor_fee: wit_money(p.processor_fee),
            net: wit_money(p.net),
            available_on: p.available_on,
            paid_by: p.paid_by,
            tenant: p.tenant,
            account: p.account,
        }),
        fx::Effect::DisputeOpened(d) => Effect::DisputeOpened(wit_dispute(d)),
        fx::Effect::DisputeUpdated(d) => Effect::DisputeUpdated(wit_dispute(d)),
        fx::Effect::DisputeClosed(d) => Effect::DisputeClosed(wit_dispute(d)),
        fx::Effect::DisputeFundsWithdrawn(f) => Effect::DisputeFundsWithdrawn(wit_funds(f)),
        fx::Effect::DisputeFundsReinstated(f) => Effect::DisputeFundsReinstated(wit_funds(f)),
        fx::Effect::LicenseCountSet(l) => Effect::LicenseCountSet(w::LicenseCountSet {
            subscription: l.subscription,
            tenant: l.tenant,
            count: l.count,
        }),
        fx::Effect::EventIgnored(i) => Effect::EventIgnored(w::EventIgnored {
            event_type: i.event_type,
            reason: i.reason,
        }),
    }
}

fn wit_application(a: fx::AccountApplication) -> w::AccountApplication {
    w::AccountApplication {
        account: a.account,
        application: a.application,
        tenant: a.tenant,
    }
}

fn wit_checkout(c: fx::CheckoutSession) -> w::CheckoutSession {
    w::CheckoutSession {
        session: c.session,
        mode: c.mode,
        status: c.status,
        payment_status: c.payment_status,
        amount_total: c.amount_total.map(wit_money),
        customer: c.customer,
        payment_intent: c.payment_intent,
        subscription: c.subscription,
        invoice: c.invoice,
        tenant: c.tenant,
        account: c.account,
        reference: c.reference,
    }
}

fn wit_refund(r: fx::RefundUpdate) -> w::RefundUpdate {
    w::RefundUpdate {
        refund: r.refund,
        charge: r.charge,
        payment_intent: r.payment_intent,
        amount: wit_money(r.amount),
        status: r.status,
        reason: r.reason,
        failure_reason: r.failure_reason,
        tenant: r.tenant,
        account: r.account,
        reference: r.reference,
    }
}

fn wit_review(r: fx::Review) -> w::Review {
    w::Review {
        review: r.review,
        charge: r.charge,
        payment_intent: r.payment_intent,
        reason: r.reason,
        tenant: r.tenant,
        account: r.account,
    }
}
