//! The `stripe` import: each typed Stripe call, refused unless the call
//! was given Stripe access, capped per call, and carried out by the
//! host's client (`crate::stripe`). The secret key never enters the guest.
//!
//! Knows nothing about HTTP or retries: the client owns those.

use super::{CallState, MAX_STRIPE_CALLS, StripeAccess};
use crate::bindings::psa::billing::stripe;
use crate::stripe::StripeApi;

impl CallState {
    /// Runs one Stripe call, crediting its duration to the guest's deadline.
    async fn stripe_call<T>(
        &mut self,
        call: impl AsyncFnOnce(StripeApi) -> Result<T, stripe::StripeError>,
    ) -> wasmtime::Result<Result<T, stripe::StripeError>> {
        let api = match &self.stripe {
            StripeAccess::Api(api) => api.clone(),
            StripeAccess::Unconfigured => {
                return Ok(Err(stripe::StripeError::Denied(
                    "no Stripe key is configured (STRIPE_SECRET_KEY)".into(),
                )));
            }
            StripeAccess::NotHere => {
                return Ok(Err(stripe::StripeError::Denied(
                    "Stripe is not available while a webhook is handled".into(),
                )));
            }
        };
        if self.stripe_calls >= MAX_STRIPE_CALLS {
            return Ok(Err(stripe::StripeError::Denied(format!(
                "a plugin call may make at most {MAX_STRIPE_CALLS} Stripe calls"
            ))));
        }
        self.stripe_calls += 1;
        let started = std::time::Instant::now();
        let r = call(api).await;
        self.host_ticks += crate::clock::ticks(started.elapsed());
        Ok(r)
    }
}

impl stripe::Host for CallState {
    async fn retrieve_event(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<String, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_event(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_thin_event(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<String, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_thin_event(&id).await)
            .await
    }

    async fn retrieve_payment_intent(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::PaymentIntent, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_payment_intent(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_charge(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::Charge, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_charge(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_balance_transaction(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::BalanceTransaction, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.retrieve_balance_transaction(&id, account.as_deref())
                .await
        })
        .await
    }

    async fn retrieve_invoice(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::Invoice, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_invoice(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_subscription(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::Subscription, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_subscription(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_account(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<stripe::Account, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_account(&id).await)
            .await
    }

    async fn create_payment_intent(
        &mut self,
        params: stripe::PaymentIntentParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::PaymentIntent, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_payment_intent(params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn create_refund(
        &mut self,
        params: stripe::RefundParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Refund, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_refund(params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn create_transfer(
        &mut self,
        params: stripe::TransferParams,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Transfer, stripe::StripeError>> {
        self.stripe_call(async |s| s.create_transfer(params, &idempotency_key).await)
            .await
    }

    async fn update_subscription_quantity(
        &mut self,
        subscription: String,
        item: String,
        quantity: u64,
        proration_behavior: Option<String>,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Subscription, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.update_subscription_quantity(
                &subscription,
                &item,
                quantity,
                proration_behavior.as_deref(),
                account.as_deref(),
                &idempotency_key,
            )
            .await
        })
        .await
    }

    async fn create_account(
        &mut self,
        params: stripe::AccountParams,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Account, stripe::StripeError>> {
        self.stripe_call(async |s| s.create_account(params, &idempotency_key).await)
            .await
    }

    async fn create_account_link(
        &mut self,
        account: String,
        refresh_url: String,
        return_url: String,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::AccountLink, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_account_link(&account, &refresh_url, &return_url, &idempotency_key)
                .await
        })
        .await
    }

    async fn create_customer(
        &mut self,
        params: stripe::CustomerParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Customer, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_customer(params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn update_customer(
        &mut self,
        id: String,
        params: stripe::CustomerParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Customer, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.update_customer(&id, params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn retrieve_customer(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::Customer, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_customer(&id, account.as_deref()).await)
            .await
    }

    async fn retrieve_payment_method(
        &mut self,
        id: String,
        account: Option<String>,
    ) -> wasmtime::Result<Result<stripe::PaymentMethod, stripe::StripeError>> {
        self.stripe_call(async |s| s.retrieve_payment_method(&id, account.as_deref()).await)
            .await
    }

    async fn search_customers(
        &mut self,
        metadata: Vec<(String, String)>,
        account: Option<String>,
    ) -> wasmtime::Result<Result<Vec<stripe::Customer>, stripe::StripeError>> {
        self.stripe_call(async |s| s.search_customers(metadata, account.as_deref()).await)
            .await
    }

    async fn attach_payment_method(
        &mut self,
        payment_method: String,
        customer: String,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<(), stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.attach_payment_method(
                &payment_method,
                &customer,
                account.as_deref(),
                &idempotency_key,
            )
            .await
        })
        .await
    }

    async fn create_subscription(
        &mut self,
        params: stripe::SubscriptionParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Subscription, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_subscription(params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn update_subscription(
        &mut self,
        id: String,
        update: stripe::SubscriptionUpdate,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Subscription, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.update_subscription(&id, update, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn cancel_subscription(
        &mut self,
        id: String,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Subscription, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.cancel_subscription(&id, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn create_checkout_session(
        &mut self,
        params: stripe::CheckoutParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::CheckoutSession, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_checkout_session(params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn create_portal_session(
        &mut self,
        customer: String,
        return_url: String,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::PortalSession, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_portal_session(&customer, &return_url, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn create_invoice(
        &mut self,
        params: stripe::InvoiceParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Invoice, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_invoice(params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn create_invoice_item(
        &mut self,
        params: stripe::InvoiceItemParams,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<String, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.create_invoice_item(params, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }

    async fn advance_invoice(
        &mut self,
        id: String,
        step: stripe::InvoiceStep,
        account: Option<String>,
        idempotency_key: String,
    ) -> wasmtime::Result<Result<stripe::Invoice, stripe::StripeError>> {
        self.stripe_call(async |s| {
            s.advance_invoice(&id, step, account.as_deref(), &idempotency_key)
                .await
        })
        .await
    }
}
