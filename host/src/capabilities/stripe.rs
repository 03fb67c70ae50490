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

/// `stripe::Host`, one method per row: each takes the WIT arguments and
/// hands them to the client's method of the same name, by reference
/// (`ref`), as `Option<&str>` (`opt`) or by value (`own`), through
/// [`CallState::stripe_call`].
macro_rules! stripe_calls {
    ($($name:ident($($arg:ident: $ty:ty as $pass:ident),*) -> $out:ty;)*) => {
        impl stripe::Host for CallState {
            $(async fn $name(
                &mut self,
                $($arg: $ty),*
            ) -> wasmtime::Result<Result<$out, stripe::StripeError>> {
                self.stripe_call(async |s| s.$name($(pass!($pass $arg)),*).await)
                    .await
            })*
        }
    };
}

/// How [`stripe_calls!`] hands one argument to the client.
macro_rules! pass {
    (ref $arg:ident) => {
        &$arg
    };
    (opt $arg:ident) => {
        $arg.as_deref()
    };
    (own $arg:ident) => {
        $arg
    };
}

use stripe::{
    Account, AccountLink, AccountParams, BalanceTransaction, Charge, CheckoutParams,
    CheckoutSession, Customer, CustomerParams, Invoice, InvoiceItemParams, InvoiceParams,
    InvoiceStep, PaymentIntent, PaymentIntentParams, PaymentMethod, PortalSession, Refund,
    RefundParams, Subscription, SubscriptionParams, SubscriptionUpdate, Transfer, TransferParams,
};

// Every import of the WIT `stripe` interface, in its order.
stripe_calls! {
    retrieve_event(id: String as ref, account: Option<String> as opt) -> String;
    retrieve_thin_event(id: String as ref) -> String;
    retrieve_payment_intent(id: String as ref, account: Option<String> as opt) -> PaymentIntent;
    retrieve_charge(id: String as ref, account: Option<String> as opt) -> Charge;
    retrieve_balance_transaction(
        id: String as ref,
        account: Option<String> as opt
    ) -> BalanceTransaction;
    retrieve_invoice(id: String as ref, account: Option<String> as opt) -> Invoice;
    retrieve_subscription(id: String as ref, account: Option<String> as opt) -> Subscription;
    retrieve_account(id: String as ref) -> Account;
    create_payment_intent(
        params: PaymentIntentParams as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> PaymentIntent;
    create_refund(
        params: RefundParams as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> Refund;
    create_transfer(params: TransferParams as own, idempotency_key: String as ref) -> Transfer;
    update_subscription_quantity(
        subscription: String as ref,
        item: String as ref,
        quantity: u64 as own,
        proration_behavior: Option<String> as opt,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> Subscription;
    create_account(params: AccountParams as own, idempotency_key: String as ref) -> Account;
    create_account_link(
        account: String as ref,
        refresh_url: String as ref,
        return_url: String as ref,
        idempotency_key: String as ref
    ) -> AccountLink;
    create_customer(
        params: CustomerParams as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> Customer;
    update_customer(
        id: String as ref,
        params: CustomerParams as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> Customer;
    retrieve_customer(id: String as ref, account: Option<String> as opt) -> Customer;
    retrieve_payment_method(id: String as ref, account: Option<String> as opt) -> PaymentMethod;
    search_customers(
        metadata: Vec<(String, String)> as own,
        account: Option<String> as opt
    ) -> Vec<Customer>;
    attach_payment_method(
        payment_method: String as ref,
        customer: String as ref,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> ();
    create_subscription(
        params: SubscriptionParams as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> Subscription;
    update_subscription(
        id: String as ref,
        update: SubscriptionUpdate as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> Subscription;
    cancel_subscription(
        id: String as ref,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> Subscription;
    create_checkout_session(
        params: CheckoutParams as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> CheckoutSession;
    create_portal_session(
        customer: String as ref,
        return_url: String as ref,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> PortalSession;
    create_invoice(
        params: InvoiceParams as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> Invoice;
    create_invoice_item(
        params: InvoiceItemParams as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> String;
    advance_invoice(
        id: String as ref,
        step: InvoiceStep as own,
        account: Option<String> as opt,
        idempotency_key: String as ref
    ) -> Invoice;
}
