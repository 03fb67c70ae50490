//! Stripe Billing's objects: customers and their payment methods,
//! subscriptions, Checkout and portal sessions, invoices and their items.
//!
//! Knows nothing about payments and refunds (`payments.rs`).

use super::convert::*;
use super::*;

impl StripeApi {
    /// `GET /v1/invoices/{id}`.
    pub async fn retrieve_invoice(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::Invoice, WitError> {
        check_id(id, "in_")?;
        let req = stripe_billing::invoice::RetrieveInvoice::new(id);
        let i = self
            .send("retrieve-invoice", account, None, || req.customize())
            .await?;
        Ok(invoice(i))
    }

    /// `GET /v1/subscriptions/{id}`.
    pub async fn retrieve_subscription(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::Subscription, WitError> {
        check_id(id, "sub_")?;
        let req = stripe_billing::subscription::RetrieveSubscription::new(id);
        let s = self
            .send("retrieve-subscription", account, None, || req.customize())
            .await?;
        Ok(subscription(s))
    }

    /// Sets the quantity of one subscription item.
    pub async fn update_subscription_quantity(
        &self,
        id: &str,
        item: &str,
        quantity: u64,
        proration: Option<&str>,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Subscription, WitError> {
        use stripe_billing::subscription::UpdateSubscriptionProrationBehavior as Proration;
        check_id(id, "sub_")?;
        let mut line = stripe_billing::subscription::UpdateSubscriptionItems::new();
        line.id = Some(item.to_string());
        line.quantity = Some(quantity);
        let mut req = stripe_billing::subscription::UpdateSubscription::new(id).items(vec![line]);
        if let Some(p) = proration {
            let p: Proration = p.parse().expect("infallible");
            if let Proration::Unknown(p) = p {
                return Err(invalid(
                    format!("unknown proration behavior {p:?}"),
                    Some("proration_behavior".into()),
                ));
            }
            req = req.proration_behavior(p);
        }
        let s = self
            .send("update-subscription-quantity", account, Some(key), || {
                req.customize()
            })
            .await?;
        Ok(subscription(s))
    }

    /// `POST /v1/customers`.
    pub async fn create_customer(
        &self,
        p: wit::CustomerParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Customer, WitError> {
        let form = customer_form(p);
        let c = self
            .write(
                "create-customer",
                StripeMethod::Post,
                "/customers".into(),
                form,
                account,
                key,
            )
            .await?;
        Ok(customer(c))
    }

    /// `POST /v1/customers/{id}`.
    pub async fn update_customer(
        &self,
        id: &str,
        p: wit::CustomerParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Customer, WitError> {
        check_id(id, "cus_")?;
        let form = customer_form(p);
        let path = format!("/customers/{id}");
        let c = self
            .write(
                "update-customer",
                StripeMethod::Post,
                path,
                form,
                account,
                key,
            )
            .await?;
        Ok(customer(c))
    }

    /// `GET /v1/customers/{id}`.
    pub async fn retrieve_customer(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::Customer, WitError> {
        check_id(id, "cus_")?;
        let path = format!("/customers/{id}");
        // Read untyped first: Stripe answers a deleted customer with
        // `{"id", "object", "deleted": true}`, which is not a customer.
        let v: miniserde::json::Value = self
            .send("retrieve-customer", account, None, || {
                RequestBuilder::new(StripeMethod::Get, path.clone()).customize()
            })
            .await?;
        let text = miniserde::json::to_string(&v);
        if untyped(&v)?["deleted"] == serde_json::Value::Bool(true) {
            return Err(invalid(
                format!("No such customer: '{id}' (deleted at Stripe)"),
                Some("id".into()),
            ));
        }
        let c: stripe_shared::Customer = miniserde::json::from_str(&text).map_err(unreadable)?;
        Ok(customer(c))
    }

    /// `GET /v1/payment_methods/{id}`: its id and the customer it is
    /// attached to (read untyped: the tenant boundary needs nothing else,
    /// and a method type async-stripe does not know must not fail it).
    pub async fn retrieve_payment_method(
        &self,
        id: &str,
        account: Option<&str>,
    ) -> Result<wit::PaymentMethod, WitError> {
        check_id(id, "pm_")?;
        let path = format!("/payment_methods/{id}");
        let v: miniserde::json::Value = self
            .send("retrieve-payment-method", account, None, || {
                RequestBuilder::new(StripeMethod::Get, path.clone()).customize()
            })
            .await?;
        let v = untyped(&v)?;
        let customer = match &v["customer"] {
            serde_json::Value::String(c) => Some(c.clone()),
            serde_json::Value::Object(c) => {
                c.get("id").and_then(|i| i.as_str()).map(str::to_string)
            }
            _ => None,
        };
        match v["id"].as_str() {
            Some(id) => Ok(wit::PaymentMethod {
                id: id.to_string(),
                customer,
            }),
            None => Err(unreadable("a payment method without an id")),
        }
    }

    /// `GET /v1/customers/search`: customers whose metadata has each pair.
    pub async fn search_customers(
        &self,
        metadata: Vec<(String, String)>,
        account: Option<&str>,
    ) -> Result<Vec<wit::Customer>, WitError> {
        let mut clauses = Vec::with_capacity(metadata.len());
        for (k, v) in &metadata {
            // Stripe's query language quotes with ' and escapes a quote
            // inside with a backslash; a backslash itself has no escape.
            let plain_key = !k.is_empty() && !k.contains(['\'', '"', '\\']);
            if !plain_key || v.contains('\\') {
                return Err(invalid(
                    format!("metadata {k:?}: {v:?} cannot be searched for"),
                    Some("query".into()),
                ));
            }
            let v = v.replace('\'', "\\'");
            clauses.push(format!("metadata['{k}']:'{v}'"));
        }
        if clauses.is_empty() {
            return Err(invalid(
                "a search needs a clause".into(),
                Some("query".into()),
            ));
        }
        let query = Form::default()
            .set("query", clauses.join(" AND "))
            .set("limit", 10);
        let found: stripe_types::SearchList<stripe_shared::Customer> = self
            .send("search-customers", account, None, || {
                RequestBuilder::new(StripeMethod::Get, "/customers/search")
                    .query(&query)
                    .customize()
            })
            .await?;
        Ok(found.data.into_iter().map(customer).collect())
    }

    /// `POST /v1/payment_methods/{id}/attach`.
    pub async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
        account: Option<&str>,
        key: &str,
    ) -> Result<(), WitError> {
        check_id(payment_method, "pm_")?;
        check_id(customer, "cus_")?;
        let path = format!("/payment_methods/{payment_method}/attach");
        let form = Form::default().set("customer", customer);
        let _: stripe_shared::PaymentMethod = self
            .write(
                "attach-payment-method",
                StripeMethod::Post,
                path,
                form,
                account,
                key,
            )
            .await?;
        Ok(())
    }

    /// `POST /v1/subscriptions`.
    pub async fn create_subscription(
        &self,
        p: wit::SubscriptionParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Subscription, WitError> {
        check_id(&p.customer, "cus_")?;
        let items: Vec<serde_json::Value> = p
            .items
            .iter()
            .map(|i| serde_json::json!({ "price": i.price, "quantity": i.quantity }))
            .collect();
        let form = Form::default()
            .set("customer", p.customer)
            .set("items", items)
            .opt("trial_period_days", p.trial_period_days)
            .opt("default_payment_method", p.default_payment_method)
            .map("metadata", p.metadata);
        let s = self
            .write(
                "create-subscription",
                StripeMethod::Post,
                "/subscriptions".into(),
                form,
                account,
                key,
            )
            .await?;
        Ok(subscription(s))
    }

    /// `POST /v1/subscriptions/{id}`.
    pub async fn update_subscription(
        &self,
        id: &str,
        u: wit::SubscriptionUpdate,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Subscription, WitError> {
        check_id(id, "sub_")?;
        let items: Vec<serde_json::Value> = u
            .items
            .iter()
            .map(|i| {
                let mut item = serde_json::json!({ "id": i.id });
                if let Some(p) = &i.price {
                    item["price"] = p.as_str().into();
                }
                if let Some(q) = i.quantity {
                    item["quantity"] = q.into();
                }
                item
            })
            .collect();
        let mut form = Form::default()
            .opt("proration_behavior", u.proration_behavior)
            .opt("cancel_at_period_end", u.cancel_at_period_end)
            .map("metadata", u.metadata);
        if !items.is_empty() {
            form = form.set("items", items);
        }
        let path = format!("/subscriptions/{id}");
        let s = self
            .write(
                "update-subscription",
                StripeMethod::Post,
                path,
                form,
                account,
                key,
            )
            .await?;
        Ok(subscription(s))
    }

    /// `DELETE /v1/subscriptions/{id}`: cancelled now.
    pub async fn cancel_subscription(
        &self,
        id: &str,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Subscription, WitError> {
        check_id(id, "sub_")?;
        let path = format!("/subscriptions/{id}");
        let s = self
            .write(
                "cancel-subscription",
                StripeMethod::Delete,
                path,
                Form::default(),
                account,
                key,
            )
            .await?;
        Ok(subscription(s))
    }

    /// `POST /v1/checkout/sessions`.
    pub async fn create_checkout_session(
        &self,
        p: wit::CheckoutParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::CheckoutSession, WitError> {
        let mut lines = Vec::with_capacity(p.lines.len());
        for l in &p.lines {
            let line = match (&l.price, &l.amount) {
                (Some(price), None) => {
                    serde_json::json!({ "price": price, "quantity": l.quantity })
                }
                (None, Some(amount)) => serde_json::json!({
                    "price_data": {
                        "currency": currency(&amount.currency)?.to_string(),
                        "unit_amount": amount.amount,
                        "product_data": { "name": l.name.clone().unwrap_or_default() },
                    },
                    "quantity": l.quantity,
                }),
                _ => {
                    return Err(invalid(
                        "a Checkout line has a price or an amount".into(),
                        Some("line_items".into()),
                    ));
                }
            };
            lines.push(line);
        }
        let created = match p.mode.as_str() {
            "payment" => "payment_intent_data",
            "subscription" => "subscription_data",
            other => {
                return Err(invalid(
                    format!("unknown Checkout mode {other:?}"),
                    Some("mode".into()),
                ));
            }
        };
        let created_metadata: serde_json::Map<_, _> = p
            .created_metadata
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        let mut form = Form::default()
            .set("mode", p.mode)
            .set("line_items", lines)
            .set("success_url", p.success_url)
            .set("cancel_url", p.cancel_url)
            .opt("customer", p.customer)
            .opt("client_reference_id", p.client_reference_id)
            .map("metadata", p.metadata);
        if !created_metadata.is_empty() {
            form = form.set(created, serde_json::json!({ "metadata": created_metadata }));
        }
        let c: stripe_shared::CheckoutSession = self
            .write(
                "create-checkout-session",
                StripeMethod::Post,
                "/checkout/sessions".into(),
                form,
                account,
                key,
            )
            .await?;
        Ok(wit::CheckoutSession {
            id: c.id.to_string(),
            mode: c.mode.as_str().to_string(),
            status: c.status.map(|s| s.as_str().to_string()),
            url: c.url,
            customer: c.customer.map(|c| c.id().to_string()),
            expires_at: c.expires_at,
            metadata: sorted(c.metadata.unwrap_or_default()),
        })
    }

    /// `POST /v1/billing_portal/sessions`.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::PortalSession, WitError> {
        check_id(customer, "cus_")?;
        let form = Form::default()
            .set("customer", customer)
            .set("return_url", return_url);
        // Read untyped: async-stripe types the session only with the portal
        // configuration's types, which psa-billing does not otherwise need.
        let v: miniserde::json::Value = self
            .write(
                "create-portal-session",
                StripeMethod::Post,
                "/billing_portal/sessions".into(),
                form,
                account,
                key,
            )
            .await?;
        let v = untyped(&v)?;
        let text = |k: &str| v[k].as_str().map(str::to_string);
        match (text("id"), text("url"), text("customer")) {
            (Some(id), Some(url), Some(customer)) => Ok(wit::PortalSession {
                id,
                url,
                customer,
                return_url: text("return_url"),
            }),
            _ => Err(unreadable(
                "a billing portal session without id, url or customer",
            )),
        }
    }

    /// `POST /v1/invoices`: a draft, leaving the customer's pending items out.
    pub async fn create_invoice(
        &self,
        p: wit::InvoiceParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Invoice, WitError> {
        check_id(&p.customer, "cus_")?;
        let form = Form::default()
            .set("customer", p.customer)
            .set("currency", currency(&p.currency)?.to_string())
            .set("collection_method", p.collection_method)
            .opt("days_until_due", p.days_until_due)
            .opt("description", p.description)
            .set("auto_advance", false)
            .set("pending_invoice_items_behavior", "exclude")
            .opt("application_fee_amount", p.application_fee_amount)
            .map("metadata", p.metadata);
        let i = self
            .write(
                "create-invoice",
                StripeMethod::Post,
                "/invoices".into(),
                form,
                account,
                key,
            )
            .await?;
        Ok(invoice(i))
    }

    /// `POST /v1/invoiceitems` on a draft invoice.
    pub async fn create_invoice_item(
        &self,
        p: wit::InvoiceItemParams,
        account: Option<&str>,
        key: &str,
    ) -> Result<String, WitError> {
        check_id(&p.customer, "cus_")?;
        check_id(&p.invoice, "in_")?;
        for t in &p.tax_rates {
            check_id(t, "txr_")?;
        }
        let mut form = Form::default()
            .set("customer", p.customer)
            .set("invoice", p.invoice)
            .set("amount", p.amount.amount)
            .set("currency", currency(&p.amount.currency)?.to_string())
            .set("description", p.description);
        if !p.tax_rates.is_empty() {
            form = form.set("tax_rates", p.tax_rates);
        }
        let item: miniserde::json::Value = self
            .write(
                "create-invoice-item",
                StripeMethod::Post,
                "/invoiceitems".into(),
                form,
                account,
                key,
            )
            .await?;
        untyped(&item)?["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| unreadable("an invoice item without an id"))
    }

    /// `POST /v1/invoices/{id}/{finalize|send|void|mark_uncollectible|pay}`.
    pub async fn advance_invoice(
        &self,
        id: &str,
        step: wit::InvoiceStep,
        account: Option<&str>,
        key: &str,
    ) -> Result<wit::Invoice, WitError> {
        check_id(id, "in_")?;
        let verb = match step {
            wit::InvoiceStep::Finalize => "finalize",
            wit::InvoiceStep::Send => "send",
            wit::InvoiceStep::Void => "void",
            wit::InvoiceStep::MarkUncollectible => "mark_uncollectible",
            wit::InvoiceStep::Pay => "pay",
        };
        let mut form = Form::default();
        if let wit::InvoiceStep::Finalize = step {
            // Finalized on request, not advanced by Stripe's automation.
            form = form.set("auto_advance", false);
        }
        let path = format!("/invoices/{id}/{verb}");
        let i = self
            .write(
                "advance-invoice",
                StripeMethod::Post,
                path,
                form,
                account,
                key,
            )
            .await?;
        Ok(invoice(i))
    }
}
