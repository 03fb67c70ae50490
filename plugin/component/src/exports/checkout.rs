//! Stripe-hosted pages for a tenant's customers: Checkout Sessions (seed
//! 004's license purchase, seed 002's wallet deposit) and billing portal
//! sessions (seed 000). Sessions and what they create carry metadata
//! `tenant_id` (and a deposit's `type`/`walletId`), so their webhooks route
//! back to the tenant and credit the wallet.
//!
//! Knows nothing about how those webhooks are mapped: the metadata is the
//! whole contract.

use super::boundary::{TENANT_KEY, is_id};
use super::customers::owned_customer;
use super::requests::{
    check_account, check_deposit, check_request, idempotency_key, invalid, stripe_failed,
};
use crate::bindings::exports::psa::billing::operations::{
    CheckoutRequest, OperationError, PortalRequest, Purchase,
};
use crate::bindings::psa::billing::stripe::{
    self, CheckoutLine, CheckoutParams, CheckoutSession, PortalSession,
};

/// Creates a Checkout Session for a license purchase or a wallet deposit.
pub(super) fn create(
    rules: Option<String>,
    req: CheckoutRequest,
) -> Result<CheckoutSession, OperationError> {
    check_request(&req.request_id, &req.tenant)?;
    if let Some(a) = &req.account {
        check_account("account", a)?;
    }
    check_url("success-url", &req.success_url)?;
    check_url("cancel-url", &req.cancel_url)?;
    let account = req.account.as_deref();
    if let Some(c) = &req.customer {
        owned_customer(&req.tenant, c, account)?;
    }
    let tenant = (TENANT_KEY.to_string(), req.tenant.clone());
    let (mode, lines, created_metadata) = match &req.purchase {
        Purchase::Subscription(items) => {
            if items.is_empty() || items.len() > 20 {
                return Err(invalid("a license purchase takes 1 to 20 items"));
            }
            let mut lines = Vec::with_capacity(items.len());
            for item in items {
                if !is_id(&item.price, "price_") || item.quantity == 0 {
                    return Err(invalid(format!(
                        "each item needs a price_... id and a quantity of at least 1 (got {:?} × {})",
                        item.price, item.quantity
                    )));
                }
                lines.push(CheckoutLine {
                    price: Some(item.price.clone()),
                    amount: None,
                    name: None,
                    quantity: item.quantity,
                });
            }
            ("subscription", lines, vec![tenant.clone()])
        }
        Purchase::Deposit(deposit) => {
            if account.is_some() {
                return Err(invalid(
                    "a wallet deposit is paid to the platform: give no account",
                ));
            }
            check_deposit(rules.as_deref(), &deposit.wallet, &deposit.amount)?;
            let line = CheckoutLine {
                price: None,
                amount: Some(deposit.amount.clone()),
                name: Some(format!("Deposit into wallet {}", deposit.wallet)),
                quantity: 1,
            };
            let metadata = vec![
                tenant.clone(),
                ("type".to_string(), "deposit".to_string()),
                ("walletId".to_string(), deposit.wallet.clone()),
            ];
            ("payment", vec![line], metadata)
        }
    };
    let params = CheckoutParams {
        mode: mode.to_string(),
        customer: req.customer.clone(),
        lines,
        success_url: req.success_url.clone(),
        cancel_url: req.cancel_url.clone(),
        client_reference_id: req.client_reference_id.clone(),
        metadata: vec![
            tenant,
            ("psa_billing_request".to_string(), req.request_id.clone()),
        ],
        created_metadata,
    };
    // A repeat within Stripe's 24 hours gets the same session; a session
    // lives 24 hours, so a later repeat rightly gets a fresh one.
    let key = idempotency_key("checkout", &req.tenant, &req.request_id, "session");
    stripe::create_checkout_session(&params, account, &key).map_err(stripe_failed)
}

/// Creates a billing portal session for one of the tenant's customers.
pub(super) fn portal(req: PortalRequest) -> Result<PortalSession, OperationError> {
    check_request(&req.request_id, &req.tenant)?;
    if let Some(a) = &req.account {
        check_account("account", a)?;
    }
    check_url("return-url", &req.return_url)?;
    let account = req.account.as_deref();
    owned_customer(&req.tenant, &req.customer, account)?;
    let key = idempotency_key("portal", &req.tenant, &req.request_id, "session");
    stripe::create_portal_session(&req.customer, &req.return_url, account, &key)
        .map_err(stripe_failed)
}

fn check_url(field: &str, url: &str) -> Result<(), OperationError> {
    if (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2048 {
        Ok(())
    } else {
        Err(invalid(format!("{field} must be an http(s) URL")))
    }
}
