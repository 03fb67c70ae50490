//! The operations the application asks for (charge an invoice, refund,
//! deposit, set a license count, onboard a tenant, account status; the
//! withdrawal's steps in `withdrawals.rs`): fee math from the core crate,
//! Stripe calls through the host's `stripe` import.
//!
//! This file is the dispatcher: the `operations` export, whose customer,
//! subscription, Checkout, invoice and withdrawal calls go to their own
//! files; what every operation does with its request (checks, idempotency
//! keys, records) is in `requests.rs`, which none of them reaches back from.

use super::requests::{
    check_account, check_deposit, check_request, idempotency_key, invalid, record, recorded,
    recorded_id, storage, stripe_failed,
};
use crate::bindings::Plugin;
use crate::bindings::exports::psa::billing::operations::{
    self as ops, AccountStatusRequest, ChargeInvoiceRequest, ChargedInvoice, DepositRequest,
    LicenseCountRequest, OnboardRequest, Onboarded, OperationError, RefundRequest, Refunded,
    WithdrawRequest, Withdrawal,
};
use crate::bindings::psa::billing::clock;
use crate::bindings::psa::billing::stripe::{
    self, AccountParams, PaymentIntentParams, RefundParams, Subscription,
};
use crate::convert::core_money;
use crate::convert::effects::wit_effect;
use crate::exports::load_rules;
use crate::imports::HostState;
use psa_billing_core::{mapping, money, refunds, settlement};
use serde_json::{Value, json};

impl ops::Guest for Plugin {
    fn prove_owned(claim: ops::OwnershipClaim) -> Result<(), OperationError> {
        super::boundary::prove(&claim)
    }

    fn charge_invoice(
        req: ChargeInvoiceRequest,
        fees: ops::Quote,
    ) -> Result<ChargedInvoice, OperationError> {
        check_request(&req.request_id, &req.tenant)?;
        if let Some(a) = &req.account {
            check_account("account", a)?;
        }
        if req.destination && req.account.is_none() {
            return Err(invalid(
                "a destination charge needs the tenant's account to send the funds to",
            ));
        }
        if req.invoice_id.is_empty() {
            return Err(invalid("invoice-id must not be empty"));
        }
        if req.amount.amount <= 0 {
            return Err(invalid(format!(
                "an invoice of {} cannot be charged",
                req.amount.amount
            )));
        }
        let quote = priced(&req.amount, fees)?;
        // Direct charge: on the tenant's account. Destination or platform-only:
        // on the platform.
        let on = req.account.as_deref().filter(|_| !req.destination);
        if let Some(first) = recorded("charge-invoice", &req.tenant, &req.request_id)? {
            let id = recorded_id(&first, "payment_intent")?;
            let intent = stripe::retrieve_payment_intent(&id, on).map_err(stripe_failed)?;
            return Ok(ChargedInvoice {
                payment_intent: intent,
                fees: quote,
            });
        }
        let metadata = vec![
            ("tenant_id".to_string(), req.tenant.clone()),
            ("invoice_id".to_string(), req.invoice_id.clone()),
            ("psa_billing_request".to_string(), req.request_id.clone()),
        ];
        let params = PaymentIntentParams {
            amount: quote.gross.clone(),
            customer: req.customer.clone(),
            payment_method: req.payment_method.clone(),
            confirm: req.payment_method.is_some(),
            description: Some(format!("Invoice {}", req.invoice_id)),
            // Only a charge for a connected account carries an application fee.
            application_fee_amount: (quote.application_fee.amount > 0 && req.account.is_some())
                .then_some(quote.application_fee.amount),
            transfer_destination: req.account.clone().filter(|_| req.destination),
            metadata,
        };
        let key = idempotency_key(
            "charge-invoice",
            &req.tenant,
            &req.request_id,
            "payment_intent",
        );
        let intent = stripe::create_payment_intent(&params, on, &key).map_err(stripe_failed)?;
        super::boundary::record_owner(&intent.id, &req.tenant)?;
        record(
            "charge-invoice",
            &req.tenant,
            &req.request_id,
            json!({ "payment_intent": intent.id }),
        )?;
        Ok(ChargedInvoice {
            payment_intent: intent,
            fees: quote,
        })
    }

    fn refund(rules: Option<String>, req: RefundRequest) -> Result<Refunded, OperationError> {
        check_request(&req.request_id, &req.tenant)?;
        if let Some(a) = &req.account {
            check_account("account", a)?;
        }
        let rules = load_rules(rules.as_deref()).map_err(OperationError::Fees)?;
        // Done before: the recorded refund, without asking Stripe again
        // (its idempotency replay lasts 24 hours; the record does not expire).
        if let Some(first) = recorded("refund", &req.tenant, &req.request_id)? {
            return refunded_from_record(&first);
        }
        let account = req.account.as_deref();
        let intent =
            stripe::retrieve_payment_intent(&req.payment_intent, account).map_err(stripe_failed)?;
        if intent.status != "succeeded" {
            return Err(OperationError::Refused(format!(
                "payment {} is {}, not succeeded: nothing to refund",
                intent.id, intent.status
            )));
        }
        let charge_id = intent.latest_charge.clone().ok_or_else(|| {
            OperationError::Refused(format!("payment {} has no charge", intent.id))
        })?;
        let charge = stripe::retrieve_charge(&charge_id, account).map_err(stripe_failed)?;
        let application_fee = intent.application_fee_amount.unwrap_or(0);
        let gross = intent.amount.amount;
        let before = charge.amount_refunded;
        // Stripe returns the fee per refund; earlier refunds are assumed to
        // have returned their proportional share, as this operation does.
        let fee_back_before = if req.refund_application_fee && before > 0 {
            let whole = refunds::Charged {
                gross,
                application_fee,
                refunded: 0,
                application_fee_refunded: 0,
            };
            refunds::refund(&whole, before, true, rules.rounding)
                .map(|r| r.application_fee_refunded)
                .unwrap_or(0)
        } else {
            0
        };
        let amount = req.amount.unwrap_or(gross - before);
        let split = refunds::refund(
            &refunds::Charged {
                gross,
                application_fee,
                refunded: before,
                application_fee_refunded: fee_back_before,
            },
            amount,
            req.refund_application_fee,
            rules.rounding,
        )
        .map_err(|e| OperationError::Refused(e.to_string()))?;
        let params = RefundParams {
            payment_intent: req.payment_intent.clone(),
            amount: Some(amount),
            refund_application_fee: req.refund_application_fee,
            reverse_transfer: intent.transfer_destination.is_some(),
            metadata: vec![
                ("tenant_id".to_string(), req.tenant.clone()),
                ("psa_billing_request".to_string(), req.request_id.clone()),
            ],
        };
        let key = idempotency_key("refund", &req.tenant, &req.request_id, "refund");
        let refund = stripe::create_refund(&params, account, &key).map_err(stripe_failed)?;
        let done = Refunded {
            refund,
            split: crate::convert::wit_refund_split(split, &intent.amount.currency),
        };
        record(
            "refund",
            &req.tenant,
            &req.request_id,
            refunded_record(&done),
        )?;
        Ok(done)
    }

    fn deposit(
        rules: Option<String>,
        req: DepositRequest,
    ) -> Result<stripe::PaymentIntent, OperationError> {
        check_request(&req.request_id, &req.tenant)?;
        check_deposit(rules.as_deref(), &req.wallet, &req.amount)?;
        if let Some(first) = recorded("deposit", &req.tenant, &req.request_id)? {
            let id = recorded_id(&first, "payment_intent")?;
            return stripe::retrieve_payment_intent(&id, None).map_err(stripe_failed);
        }
        let params = PaymentIntentParams {
            amount: req.amount.clone(),
            customer: req.customer.clone(),
            payment_method: req.payment_method.clone(),
            confirm: req.payment_method.is_some(),
            description: Some(format!("Deposit into wallet {}", req.wallet)),
            application_fee_amount: None,
            transfer_destination: None,
            metadata: vec![
                ("tenant_id".to_string(), req.tenant.clone()),
                ("type".to_string(), "deposit".to_string()),
                ("walletId".to_string(), req.wallet.clone()),
                ("psa_billing_request".to_string(), req.request_id.clone()),
            ],
        };
        let key = idempotency_key("deposit", &req.tenant, &req.request_id, "payment_intent");
        let intent = stripe::create_payment_intent(&params, None, &key).map_err(stripe_failed)?;
        super::boundary::record_owner(&intent.id, &req.tenant)?;
        record(
            "deposit",
            &req.tenant,
            &req.request_id,
            json!({ "payment_intent": intent.id }),
        )?;
        Ok(intent)
    }

    fn withdraw(rules: Option<String>, req: WithdrawRequest) -> Result<Withdrawal, OperationError> {
        super::withdrawals::withdraw(rules, req)
    }

    fn set_license_count(req: LicenseCountRequest) -> Result<Subscription, OperationError> {
        check_request(&req.request_id, &req.tenant)?;
        if let Some(a) = &req.account {
            check_account("account", a)?;
        }
        if req.count == 0 {
            return Err(invalid(
                "a license count of 0 would leave a paid subscription empty; cancel it instead",
            ));
        }
        let account = req.account.as_deref();
        let sub =
            stripe::retrieve_subscription(&req.subscription, account).map_err(stripe_failed)?;
        let item = super::subscriptions::item_of(&sub, req.price.as_deref())?
            .id
            .clone();
        let key = idempotency_key(
            "set-license-count",
            &req.tenant,
            &req.request_id,
            "quantity",
        );
        let proration = super::subscriptions::proration(req.proration_behavior.as_deref())?;
        let updated = stripe::update_subscription_quantity(
            &sub.id, &item, req.count, proration, account, &key,
        )
        .map_err(stripe_failed)?;
        Ok(updated)
    }

    fn settle_payment(req: ops::SettleRequest) -> Result<Vec<ops::Effect>, OperationError> {
        if let Some(a) = &req.account {
            check_account("account", a)?;
        }
        let on = req.account.as_deref();
        let intent =
            stripe::retrieve_payment_intent(&req.payment_intent, on).map_err(stripe_failed)?;
        if intent.status != "succeeded" {
            return Err(invalid(format!(
                "payment {} is {}, not succeeded: nothing to settle",
                intent.id, intent.status
            )));
        }
        let not_yet = |what: &str| {
            OperationError::Refused(format!(
                "payment {} has no {what} yet; settled on a later attempt",
                intent.id
            ))
        };
        let charge_id = intent
            .latest_charge
            .clone()
            .ok_or_else(|| not_yet("charge"))?;
        let charge = stripe::retrieve_charge(&charge_id, on).map_err(stripe_failed)?;
        let bt_id = charge
            .balance_transaction
            .clone()
            .ok_or_else(|| not_yet("balance transaction"))?;
        let bt = stripe::retrieve_balance_transaction(&bt_id, on).map_err(stripe_failed)?;
        let bt_created = bt.created;
        let bt = settlement::BalanceTransaction {
            id: bt.id,
            amount: core_money(bt.amount),
            fee: bt.fee,
            net: bt.net,
            fee_details: bt
                .fee_details
                .into_iter()
                .map(|f| (f.kind, f.amount))
                .collect(),
            available_on: bt.available_on,
        };
        // Stripe took its fee when it created the balance transaction.
        let at = bt_created;
        let payment = settlement::Payment {
            payment_intent: intent.id.clone(),
            charge: charge.id,
            currency: charge.amount.currency,
            account: req.account.clone(),
            destination: intent.transfer_destination.is_some(),
            at,
        };
        match settlement::settle(&mut HostState, &payment, &bt) {
            Ok(settled) => Ok(vec![wit_effect(
                psa_billing_core::effects::Effect::PaymentSettled(settled),
            )]),
            Err(e @ settlement::SettleError::NotPosted(_)) => {
                Err(OperationError::Refused(e.to_string()))
            }
            Err(e @ settlement::SettleError::Invalid(_)) => Err(invalid(e.to_string())),
            Err(settlement::SettleError::Storage(e)) => Err(storage(e)),
        }
    }

    fn onboard_tenant(req: OnboardRequest) -> Result<Onboarded, OperationError> {
        check_request(&req.request_id, &req.tenant)?;
        if req.country.len() != 2 || !req.country.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(invalid(format!(
                "country must be a two-letter code, not {:?}",
                req.country
            )));
        }
        for (field, url) in [
            ("refresh-url", &req.refresh_url),
            ("return-url", &req.return_url),
        ] {
            if !url.starts_with("https://") && !url.starts_with("http://") {
                return Err(invalid(format!("{field} must be an http(s) URL")));
            }
        }
        // One account per tenant, whatever the request id: the tenant's
        // record (under the reserved request id `account`) names it.
        let earlier = match recorded("onboard-tenant", &req.tenant, &req.request_id)? {
            Some(first) => Some(first),
            None => recorded("onboard-tenant", &req.tenant, TENANT_ACCOUNT)?,
        };
        let account = match earlier {
            Some(first) => {
                stripe::retrieve_account(&recorded_id(&first, "account")?).map_err(stripe_failed)?
            }
            None => {
                let params = AccountParams {
                    country: req.country.to_ascii_uppercase(),
                    email: req.email.clone(),
                    metadata: vec![("tenant_id".to_string(), req.tenant.clone())],
                };
                // Keyed by the tenant alone: two first requests racing with
                // different ids still make one account at Stripe.
                let key = idempotency_key("onboard-tenant", &req.tenant, TENANT_ACCOUNT, "account");
                stripe::create_account(&params, &key).map_err(stripe_failed)?
            }
        };
        for id in [TENANT_ACCOUNT, req.request_id.as_str()] {
            if recorded("onboard-tenant", &req.tenant, id)?.is_none() {
                record(
                    "onboard-tenant",
                    &req.tenant,
                    id,
                    json!({ "account": account.id }),
                )?;
            }
        }
        // Its events route to the tenant from now on.
        mapping::register_tenant(&mut HostState, &account.id, &req.tenant).map_err(storage)?;
        // A link expires within minutes: each request gets a fresh one.
        let key = idempotency_key(
            "onboard-tenant",
            &req.tenant,
            &req.request_id,
            &format!("link:{}", clock::now()),
        );
        let link =
            stripe::create_account_link(&account.id, &req.refresh_url, &req.return_url, &key)
                .map_err(stripe_failed)?;
        Ok(Onboarded { account, link })
    }

    fn account_status(req: AccountStatusRequest) -> Result<stripe::Account, OperationError> {
        let account = status_account(&req)?;
        stripe::retrieve_account(&account).map_err(stripe_failed)
    }

    fn manage_customer(req: ops::CustomerRequest) -> Result<stripe::Customer, OperationError> {
        super::customers::manage(req)
    }

    fn manage_subscription(req: ops::SubscriptionRequest) -> Result<Subscription, OperationError> {
        super::subscriptions::manage(req)
    }

    fn create_checkout(
        rules: Option<String>,
        req: ops::CheckoutRequest,
    ) -> Result<stripe::CheckoutSession, OperationError> {
        super::checkout::create(rules, req)
    }

    fn create_portal(req: ops::PortalRequest) -> Result<stripe::PortalSession, OperationError> {
        super::checkout::portal(req)
    }

    fn manage_invoice(
        rules: Option<String>,
        req: ops::InvoiceRequest,
    ) -> Result<Option<ops::Invoiced>, OperationError> {
        super::invoices::manage(rules, req)
    }
}

/// The account `account-status` reads: the one given, or the tenant's
/// onboarded account; registered to the tenant either way.
fn status_account(req: &AccountStatusRequest) -> Result<String, OperationError> {
    mapping::check_tenant(&req.tenant).map_err(invalid)?;
    let account = match &req.account {
        Some(a) => {
            check_account("account", a)?;
            a.clone()
        }
        None => {
            let first =
                recorded("onboard-tenant", &req.tenant, TENANT_ACCOUNT)?.ok_or_else(|| {
                    OperationError::Refused(format!(
                        "tenant {} has no onboarded account; name one with `account`",
                        req.tenant
                    ))
                })?;
            recorded_id(&first, "account")?
        }
    };
    match mapping::lookup_tenant(&mut HostState, &account).map_err(storage)? {
        Some(t) if t == req.tenant => Ok(account),
        _ => Err(OperationError::Refused(format!(
            "{account} is not registered to tenant {}",
            req.tenant
        ))),
    }
}

/// The onboarding record naming a tenant's one Express account.
const TENANT_ACCOUNT: &str = "account";

fn refunded_record(r: &Refunded) -> Value {
    json!({
        "id": r.refund.id, "amount": r.refund.amount.amount, "currency": r.refund.amount.currency,
        "status": r.refund.status, "payment_intent": r.refund.payment_intent,
        "fee_back": r.split.application_fee_refunded, "tenant_debit": r.split.tenant_debit,
        "total_refunded": r.split.total_refunded, "full": r.split.full,
    })
}

fn refunded_from_record(v: &Value) -> Result<Refunded, OperationError> {
    let int = |k: &str| {
        v[k].as_i64()
            .ok_or_else(|| storage(format!("refund record without {k}")))
    };
    let currency = v["currency"].as_str().unwrap_or_default().to_string();
    let amount = crate::convert::wit_money(money::Money::new(int("amount")?, currency.clone()));
    Ok(Refunded {
        refund: stripe::Refund {
            id: recorded_id(v, "id")?,
            amount: amount.clone(),
            status: v["status"].as_str().map(str::to_string),
            payment_intent: v["payment_intent"].as_str().map(str::to_string),
        },
        split: crate::bindings::exports::psa::billing::fees::RefundSplit {
            amount,
            application_fee_refunded: int("fee_back")?,
            tenant_debit: int("tenant_debit")?,
            total_refunded: int("total_refunded")?,
            full: v["full"].as_bool().unwrap_or(false),
        },
    })
}

/// The quote an invoice is charged at, checked against the invoice: one
/// currency, a gross of at least the invoice (more only when the customer
/// bears the processor fee), and parts that add up to the gross.
fn priced(amount: &ops::Money, fees: ops::Quote) -> Result<ops::Quote, OperationError> {
    let parts = [&fees.processor_fee, &fees.application_fee, &fees.net];
    let sum = parts
        .iter()
        .try_fold(0i64, |acc, p| acc.checked_add(p.amount));
    let one_currency = parts
        .iter()
        .all(|p| p.currency.eq_ignore_ascii_case(&fees.gross.currency));
    if !one_currency
        || !fees.gross.currency.eq_ignore_ascii_case(&amount.currency)
        || fees.gross.amount < amount.amount
        || parts.iter().any(|p| p.amount < 0)
        || sum != Some(fees.gross.amount)
    {
        return Err(invalid(format!(
            "the fees given are not a quote for {} {}: gross {} {}, processor fee {}, \
             application fee {}, net {}",
            amount.amount,
            amount.currency,
            fees.gross.amount,
            fees.gross.currency,
            fees.processor_fee.amount,
            fees.application_fee.amount,
            fees.net.amount
        )));
    }
    Ok(fees)
}
