//! Between async-stripe's typed objects and the WIT records the plugin
//! sees; the form bodies of requests async-stripe has no builder for; the
//! checks an id, a currency or a request must pass before it is sent.
//!
//! Knows nothing about sending: the object families call it.

use super::*;

pub(super) fn customer_form(p: wit::CustomerParams) -> Form {
    let mut form = Form::default()
        .opt("email", p.email)
        .opt("name", p.name)
        .map("metadata", p.metadata);
    if let Some(pm) = p.default_payment_method {
        form = form.set(
            "invoice_settings",
            serde_json::json!({ "default_payment_method": pm }),
        );
    }
    form
}

/// A 2xx answer of Stripe's that is not what was asked for.
pub(super) fn unreadable(why: impl std::fmt::Display) -> WitError {
    WitError::Api(wit::ApiFailure {
        status: 200,
        message: format!("Stripe's answer could not be read: {why}"),
    })
}

/// An answer read without async-stripe's types, as serde_json's value.
pub(super) fn untyped(v: &miniserde::json::Value) -> Result<serde_json::Value, WitError> {
    serde_json::from_str(&miniserde::json::to_string(v)).map_err(unreadable)
}

pub(super) fn invalid(message: String, param: Option<String>) -> WitError {
    WitError::InvalidRequest(wit::InvalidRequest { message, param })
}

/// Ids go into URL paths: only Stripe's id alphabet is let through.
pub(super) fn check_id(id: &str, prefix: &str) -> Result<(), WitError> {
    let ok = id.starts_with(prefix)
        && id.len() <= 255
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("{id:?} is not a {prefix}... id"),
            Some("id".into()),
        ))
    }
}

pub(super) fn currency(code: &str) -> Result<stripe_types::Currency, WitError> {
    let c: stripe_types::Currency = code.to_ascii_lowercase().parse().expect("infallible");
    if let stripe_types::Currency::Unknown(_) = c {
        return Err(invalid(
            format!("unknown currency {code:?}"),
            Some("currency".into()),
        ));
    }
    Ok(c)
}

pub(super) fn balance_transaction(t: stripe_shared::BalanceTransaction) -> wit::BalanceTransaction {
    wit::BalanceTransaction {
        id: t.id.to_string(),
        amount: money(t.amount, &t.currency),
        fee: t.fee,
        net: t.net,
        fee_details: t
            .fee_details
            .into_iter()
            .map(|f| wit::FeeDetail {
                kind: f.type_,
                amount: f.amount,
            })
            .collect(),
        available_on: t.available_on,
        created: t.created,
        kind: t.type_.as_str().to_string(),
        source: t.source.map(|s| s.id().to_string()),
        status: t.status,
    }
}

pub(super) fn money(amount: i64, currency: &stripe_types::Currency) -> Money {
    Money {
        amount,
        currency: currency.to_string(),
    }
}

pub(super) fn metadata(pairs: Vec<(String, String)>) -> HashMap<String, String> {
    pairs.into_iter().collect()
}

pub(super) fn sorted(m: HashMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}

pub(super) fn payment_intent(pi: stripe_shared::PaymentIntent) -> wit::PaymentIntent {
    wit::PaymentIntent {
        id: pi.id.to_string(),
        amount: money(pi.amount, &pi.currency),
        status: pi.status.as_str().to_string(),
        application_fee_amount: pi.application_fee_amount,
        transfer_destination: pi.transfer_data.map(|t| t.destination.id().to_string()),
        latest_charge: pi.latest_charge.map(|c| c.id().to_string()),
        customer: pi.customer.map(|c| c.id().to_string()),
        client_secret: pi.client_secret,
        metadata: sorted(pi.metadata),
    }
}

pub(super) fn subscription(s: stripe_shared::Subscription) -> wit::Subscription {
    let items = &s.items.data;
    wit::Subscription {
        id: s.id.to_string(),
        status: s.status.as_str().to_string(),
        customer: s.customer.id().to_string(),
        metadata: sorted(s.metadata),
        cancel_at_period_end: s.cancel_at_period_end,
        current_period_start: items.iter().map(|i| i.current_period_start).min(),
        current_period_end: items.iter().map(|i| i.current_period_end).max(),
        trial_end: s.trial_end,
        canceled_at: s.canceled_at,
        items: s
            .items
            .data
            .into_iter()
            .map(|i| wit::SubscriptionItem {
                id: i.id.to_string(),
                price: i.price.id.to_string(),
                quantity: i.quantity,
            })
            .collect(),
    }
}

pub(super) fn invoice(i: stripe_shared::Invoice) -> wit::Invoice {
    wit::Invoice {
        id: i.id.map(|i| i.to_string()).unwrap_or_default(),
        status: i.status.map(|s| s.as_str().to_string()),
        amount_due: money(i.amount_due, &i.currency),
        amount_paid: i.amount_paid,
        amount_remaining: i.amount_remaining,
        customer: i.customer.map(|c| c.id().to_string()),
        subtotal: i.subtotal,
        tax: i.total_taxes.iter().flatten().map(|t| t.amount).sum(),
        total: i.total,
        collection_method: i.collection_method.as_str().to_string(),
        number: i.number,
        hosted_invoice_url: i.hosted_invoice_url,
        invoice_pdf: i.invoice_pdf,
        metadata: sorted(i.metadata.unwrap_or_default()),
    }
}

pub(super) fn customer(c: stripe_shared::Customer) -> wit::Customer {
    wit::Customer {
        id: c.id.to_string(),
        email: c.email,
        name: c.name,
        default_payment_method: c
            .invoice_settings
            .and_then(|s| s.default_payment_method)
            .map(|p| p.id().to_string()),
        metadata: sorted(c.metadata.unwrap_or_default()),
    }
}

/// A form body of the fields given (none is left out, never sent empty).
#[derive(Default, serde::Serialize)]
#[serde(transparent)]
pub(super) struct Form(pub(super) serde_json::Map<String, serde_json::Value>);

impl Form {
    pub(super) fn set(mut self, key: &str, value: impl Into<serde_json::Value>) -> Form {
        self.0.insert(key.to_string(), value.into());
        self
    }

    pub(super) fn opt(self, key: &str, value: Option<impl Into<serde_json::Value>>) -> Form {
        match value {
            Some(v) => self.set(key, v),
            None => self,
        }
    }

    /// `key[k]=v` for each pair; nothing when there are none.
    pub(super) fn map(self, key: &str, pairs: Vec<(String, String)>) -> Form {
        if pairs.is_empty() {
            return self;
        }
        let m: serde_json::Map<_, _> = pairs.into_iter().map(|(k, v)| (k, v.into())).collect();
        self.set(key, m)
    }
}

pub(super) fn account(a: stripe_shared::Account) -> wit::Account {
    wit::Account {
        id: a.id.to_string(),
        charges_enabled: a.charges_enabled.unwrap_or(false),
        payouts_enabled: a.payouts_enabled.unwrap_or(false),
        details_submitted: a.details_submitted.unwrap_or(false),
        country: a.country,
        email: a.email,
        requirements_due: a
            .requirements
            .as_ref()
            .and_then(|r| r.currently_due.clone())
            .unwrap_or_default(),
        disabled_reason: a
            .requirements
            .and_then(|r| r.disabled_reason)
            .map(|d| d.as_str().to_string()),
    }
}
