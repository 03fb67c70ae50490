//! The one table of operations. Each row names an operation, the function
//! that runs it, its input and result types, a one-line summary, and the
//! input fields that name objects the tenant must own. Everything else an
//! operation needs is generated from this table by the consumers that call
//! [`operations_table!`] with their own generator macro:
//! - [`super::dispatch`]: the [`super::dispatch::OPERATIONS`] list (the
//!   names `POST /v1/operations/{name}` accepts), the JSON dispatch, and one
//!   typed call per operation behind the tenant boundary;
//! - `crate::embed`: one `Billing` method per operation, typed;
//! - `crate::http::openapi`: one documented path per operation, with its
//!   input and result schemas.
//!
//! A row reads `method "name" in module: Input => Output, "summary", owns
//! [field: Owned, ...];` where `module` is the `api` module holding
//! `method` and `Input`, `Output` is a `runtime` (WIT) record, and each
//! `Owned` is a [`super::dispatch::Owned`] kind. Every function has the
//! shape `async fn(&Runtime, &Db, rules: Option<&str>, Input) -> Result<Output, ApiFailure>`.
//!
//! Knows nothing about what an operation does: the rows only name it.

/// Calls `$then!` with every row of the table (see the module's comment).
macro_rules! operations_table {
    ($then:ident) => {
        $then! {
            charge_invoice "charge-invoice" in operations: ChargeInvoiceInput => ChargedInvoice,
                "Charge an invoice (direct or destination charge, application fee from the rules)",
                owns [account: Account, customer: Customer, payment_method: PaymentMethod];
            refund "refund" in operations: RefundInput => Refunded,
                "Refund a payment, in full or in part, with the fee split the rules give",
                owns [account: Account, payment_intent: PaymentIntent];
            deposit "deposit" in operations: DepositInput => PaymentIntent,
                "Take a deposit into an application wallet (a payment intent)",
                owns [customer: Customer, payment_method: PaymentMethod];
            withdraw "withdraw" in operations: WithdrawInput => PaidWithdrawal,
                "Pay a wallet's or contractor's money out to a connected account (hold, transfer, settle)",
                owns [contractor: Contractor, destination: Payee];
            set_license_count "set-license-count" in operations: LicenseCountInput => Subscription,
                "Set a subscription's seat count",
                owns [account: Account, subscription: Subscription];
            onboard_tenant "onboard-tenant" in operations: OnboardInput => Onboarded,
                "Create a tenant's connected account and its onboarding link",
                owns [];
            account_status "account-status" in operations: AccountStatusInput => Account,
                "A connected account's onboarding and payout status",
                owns [account: Account];
            upsert_customer "upsert-customer" in billing: UpsertCustomerInput => Customer,
                "Create a tenant's Stripe customer, or update the recorded one",
                owns [account: Account, adopt: AdoptedCustomer];
            find_customer "find-customer" in billing: FindCustomerInput => Customer,
                "The Stripe customer recorded for a tenant's customer",
                owns [account: Account];
            attach_payment_method "attach-payment-method" in billing: AttachPaymentMethodInput => Customer,
                "Attach a payment method to a customer, optionally as the default",
                owns [account: Account, payment_method: AttachablePaymentMethod];
            create_subscription "create-subscription" in billing: CreateSubscriptionInput => Subscription,
                "Subscribe a customer to prices",
                owns [account: Account, customer: Customer, default_payment_method: PaymentMethod];
            change_subscription_plan "change-subscription-plan" in billing: ChangePlanInput => Subscription,
                "Move a subscription to other prices, with proration",
                owns [account: Account, subscription: Subscription];
            cancel_subscription "cancel-subscription" in billing: CancelSubscriptionInput => Subscription,
                "Cancel a subscription now or at the period's end",
                owns [account: Account, subscription: Subscription];
            resume_subscription "resume-subscription" in billing: CancelSubscriptionInput => Subscription,
                "Undo a cancellation scheduled for the period's end",
                owns [account: Account, subscription: Subscription];
            create_checkout_session "create-checkout-session" in billing: CheckoutInput => CheckoutSession,
                "A Stripe Checkout session (payment, subscription or wallet deposit)",
                owns [account: Account, customer: Customer];
            create_portal_session "create-portal-session" in billing: PortalInput => PortalSession,
                "A billing portal session for a customer",
                owns [account: Account, customer: Customer];
            create_invoice "create-invoice" in billing: CreateInvoiceInput => Invoiced,
                "Create a draft invoice from lines (discounts and taxes as the quote gives them)",
                owns [account: Account, customer: Customer];
            finalize_invoice "finalize-invoice" in billing: InvoiceStepInput => Invoiced,
                "Finalize a draft invoice",
                owns [account: Account, invoice: Invoice];
            send_invoice "send-invoice" in billing: InvoiceStepInput => Invoiced,
                "Send a finalized invoice to the customer",
                owns [account: Account, invoice: Invoice];
            void_invoice "void-invoice" in billing: InvoiceStepInput => Invoiced,
                "Void a finalized invoice",
                owns [account: Account, invoice: Invoice];
            mark_invoice_uncollectible "mark-invoice-uncollectible" in billing: InvoiceStepInput => Invoiced,
                "Mark a finalized invoice uncollectible",
                owns [account: Account, invoice: Invoice];
            pay_invoice "pay-invoice" in billing: InvoiceStepInput => Invoiced,
                "Collect an open invoice now with the customer's default payment method",
                owns [account: Account, invoice: Invoice];
        }
    };
}

pub(crate) use operations_table;
