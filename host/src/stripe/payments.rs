//! Stripe's money objects: payment intents, charges, balance transactions
//! (one or a period's list), refunds and transfers.
//!
//! Knows nothing about customers or subscriptions (`billing.rs`) or
//! connected accounts (`connect.rs`).

use super::convert::*;
use super::*;

impl StripeApi {
    /// `GET /v1/payment_intents/{id}`.
    pub async fn retrieve_payment_intent(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::PaymentIntent, WitError> {
        check_id(id, "pi_")?;
        let req = stripe_core::payment_intent::RetrievePaymentIntent::new(id);
        let pi = self
            .send("retrieve-payment-intent", account, None, || req.customize())
            .await?;
        Ok(payment_intent(pi))
    }

    /// `GET /v1/charges/{id}`.
    pub async fn retrieve_charge(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::Charge, WitError> {
        check_id(id, "ch_")?;
        let req = stripe_core::charge::RetrieveCharge::new(id);
        let c = self
            .send("retrieve-charge", account, None, || req.customize())
            .await?;
        Ok(wit::Charge {
            id: c.id.to_string(),
            amount: money(c.amount, &c.currency),
            amount_refunded: c.amount_refunded,
            status: c.status.as_str().to_string(),
            payment_intent: c.payment_intent.map(|p| p.id().to_string()),
            application_fee_amount: c.application_fee_amount,
            balance_transaction: c.balance_transaction.map(|b| b.id().to_string()),
        })
    }

    /// `GET /v1/balance_transactions/{id}`.
    pub async fn retrieve_balance_transaction(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::BalanceTransaction, WitError> {
        check_id(id, "txn_")?;
        let req = stripe_core::balance_transaction::RetrieveBalanceTransaction::new(id);
        let t = self
            .send("retrieve-balance-transaction", account, None, || {
                req.customize()
            })
            .await?;
        Ok(balance_transaction(t))
    }

    /// Every balance transaction created in [`from`, `to`) (Unix seconds) on
    /// `account`'s balance (the platform's when `None`), with its source
    /// expanded (`expand[]=data.source`), as Stripe's JSON. Pages through
    /// the list, 100 at a time, by `starting_after` while `has_more`.
    pub async fn list_balance_transactions(
        &self,
        account: Option<&str>,
        from: i64,
        to: i64,
    ) -> Result<Vec<serde_json::Value>, WitError> {
        #[derive(serde::Serialize)]
        struct Created {
            gte: i64,
            lt: i64,
        }
        #[derive(serde::Serialize)]
        struct Page<'a> {
            limit: u32,
            created: Created,
            expand: [&'a str; 1],
            #[serde(skip_serializing_if = "Option::is_none")]
            starting_after: Option<&'a str>,
        }
        /// More than this many in one period is refused rather than held
        /// in memory: reconcile a shorter period.
        const MAX_ROWS: usize = 500_000;
        let broken = |m: String| {
            WitError::Api(wit::ApiFailure {
                status: 200,
                message: format!("the balance transaction list: {m}"),
            })
        };
        let mut all: Vec<serde_json::Value> = Vec::new();
        loop {
            let last = all
                .last()
                .and_then(|t| t["id"].as_str())
                .map(str::to_string);
            let page = Page {
                limit: 100,
                created: Created { gte: from, lt: to },
                expand: ["data.source"],
                starting_after: last.as_deref(),
            };
            let body: miniserde::json::Value = self
                .send("list-balance-transactions", account, None, || {
                    RequestBuilder::new(StripeMethod::Get, "/balance_transactions")
                        .query(&page)
                        .customize()
                })
                .await?;
            let mut body = untyped(&body)?;
            let has_more = body["has_more"].as_bool().unwrap_or(false);
            let serde_json::Value::Array(data) = body["data"].take() else {
                return Err(broken("no data array".into()));
            };
            let empty = data.is_empty();
            all.extend(data);
            if all.len() > MAX_ROWS {
                return Err(broken(format!("more than {MAX_ROWS} rows in the period")));
            }
            if !has_more || empty {
                return Ok(all);
            }
        }
    }

    /// `POST /v1/payment_intents`, confirmed at once.
    pub async fn create_payment_intent(
        &self,
        p: wit::PaymentIntentParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::PaymentIntent, WitError> {
        let currency = currency(&p.amount.currency)?;
        let mut req =
            stripe_core::payment_intent::CreatePaymentIntent::new(p.amount.amount, currency)
                .metadata(metadata(p.metadata));
        if let Some(c) = p.customer {
            req = req.customer(c);
        }
        if let Some(pm) = p.payment_method {
            req = req.payment_method(pm);
        }
        if p.confirm {
            req = req.confirm(true).off_session(
                stripe_core::payment_intent::CreatePaymentIntentOffSession::Bool(true),
            );
        }
        if let Some(d) = p.description {
            req = req.description(d);
        }
        if let Some(fee) = p.application_fee_amount {
            req = req.application_fee_amount(fee);
        }
        if let Some(dest) = p.transfer_destination {
            req = req.transfer_data(
                stripe_core::payment_intent::CreatePaymentIntentTransferData::new(dest),
            );
        }
        match self
            .send_or_raw("create-payment-intent", account, Some(key), || {
                req.customize()
            })
            .await?
        {
            Ok(pi) => Ok(payment_intent(pi)),
            Err(unread) => unread.lenient("create-payment-intent", lenient::payment_intent),
        }
    }

    /// `POST /v1/refunds`.
    pub async fn create_refund(
        &self,
        p: wit::RefundParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Refund, WitError> {
        let mut req = stripe_core::refund::CreateRefund::new()
            .payment_intent(p.payment_intent)
            .metadata(metadata(p.metadata));
        if let Some(a) = p.amount {
            req = req.amount(a);
        }
        if p.refund_application_fee {
            req = req.refund_application_fee(true);
        }
        if p.reverse_transfer {
            req = req.reverse_transfer(true);
        }
        match self
            .send_or_raw("create-refund", account, Some(key), || req.customize())
            .await?
        {
            Ok(r) => Ok(wit::Refund {
                id: r.id.to_string(),
                amount: money(r.amount, &r.currency),
                status: r.status,
                payment_intent: r.payment_intent.map(|p| p.id().to_string()),
            }),
            Err(unread) => unread.lenient("create-refund", lenient::refund),
        }
    }

    /// `POST /v1/transfers` to a connected account.
    pub async fn create_transfer(
        &self,
        p: wit::TransferParams,
        key: &str,
    ) -> Result<wit::Transfer, WitError> {
        let mut req = stripe_connect::transfer::CreateTransfer::new(
            currency(&p.amount.currency)?,
            p.destination,
        )
        .amount(p.amount.amount)
        .metadata(metadata(p.metadata));
        if let Some(g) = p.transfer_group {
            req = req.transfer_group(g);
        }
        match self
            .send_or_raw("create-transfer", None, Some(key), || req.customize())
            .await?
        {
            Ok(t) => Ok(wit::Transfer {
                id: t.id.to_string(),
                amount: money(t.amount, &t.currency),
                destination: t.destination.map(|d| d.id().to_string()),
                amount_reversed: t.amount_reversed,
            }),
            Err(unread) => unread.lenient("create-transfer", lenient::transfer),
        }
    }
}
