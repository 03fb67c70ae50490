//! The fake Stripe's billing resources: customers (create, update with
//! Stripe's metadata merge, search by metadata), payment methods attached
//! to them, subscriptions (create with items and trials, item price and
//! quantity changes, `proration_behavior`, cancel at period end or now),
//! Checkout Sessions, billing portal sessions, and invoices (drafts, items
//! with tax rates, finalize, send, void, mark uncollectible, pay with the
//! invoice's or the customer's default payment method).
//!
//! Built from Stripe's sample objects, answering what Stripe answers for
//! the cases psa-billing meets, and refusing what Stripe refuses there:
//! an unknown customer, price-less items, an unknown `proration_behavior`,
//! `subscription_data` in payment mode (and `payment_intent_data` in
//! subscription mode), `days_until_due` without `send_invoice`, an item on
//! a finalized invoice or in another currency, an unknown tax rate, and a
//! step an invoice's status does not allow.
//!
//! Invoice taxes: an exclusive rate adds `amount × rate` (rounded half up)
//! on top; an inclusive rate's tax is `amount − amount / (1 + rate)` inside
//! the amount. What it does not model: prices (any `price_...` is accepted,
//! at no amount: a subscription's invoices are not made), proration
//! invoices, a payment's charge, payment intent and balance transactions
//! (paying an invoice only marks it paid), paying a draft (refused here),
//! discounts and coupons on Stripe's side,
//! Stripe Tax, several tax rates on one line, search syntax beyond
//! `metadata['k']:'v'` clauses joined by AND, and the eventual consistency
//! of Stripe's search (a new customer is found at once).

use crate::fake_state::{FakeState, Recorded, int, metadata, missing, new_id, required, store};
use serde_json::{Value, json};
use std::collections::BTreeMap;

type Answer = (u16, Value);

fn refused(message: &str, param: &str) -> Answer {
    crate::fake_state::stripe_error(
        400,
        "invalid_request_error",
        message,
        json!({ "param": param }),
    )
}

fn get(s: &FakeState, r: &Recorded, id: &str) -> Option<Value> {
    s.objects.get(&(r.account.clone(), id.to_string())).cloned()
}

/// `metadata[k]=v` merged into `into` as Stripe does (an empty value deletes).
fn merge_metadata(into: &mut Value, form: &BTreeMap<String, String>) {
    if !into.is_object() {
        *into = json!({});
    }
    if let Value::Object(given) = metadata(form) {
        let m = into.as_object_mut().unwrap();
        for (k, v) in given {
            if v == json!("") {
                m.remove(&k);
            } else {
                m.insert(k, v);
            }
        }
    }
}

/// Indexed form arrays (`items[0][price]`...): index → field → value.
fn indexed(
    form: &BTreeMap<String, String>,
    name: &str,
) -> BTreeMap<usize, BTreeMap<String, String>> {
    let mut out: BTreeMap<usize, BTreeMap<String, String>> = BTreeMap::new();
    for (k, v) in form {
        let Some(rest) = k.strip_prefix(&format!("{name}[")) else {
            continue;
        };
        let Some((n, field)) = rest.split_once(']') else {
            continue;
        };
        let Ok(n) = n.parse() else { continue };
        let field = field
            .trim_start_matches('[')
            .trim_end_matches(']')
            .replace("][", ".");
        out.entry(n).or_default().insert(field, v.clone());
    }
    out
}

fn now(s: &FakeState) -> i64 {
    s.now
}

pub(crate) fn create_customer(s: &mut FakeState, r: &Recorded) -> Answer {
    let mut c = crate::stripe_object("customer");
    c["id"] = json!(new_id(s, "cus"));
    c["email"] = json!(r.form.get("email"));
    c["name"] = json!(r.form.get("name"));
    c["metadata"] = json!({});
    merge_metadata(&mut c["metadata"], &r.form);
    c["invoice_settings"]["default_payment_method"] =
        json!(r.form.get("invoice_settings[default_payment_method]"));
    c["created"] = json!(now(s));
    store(s, &r.account, c)
}

pub(crate) fn update_customer(s: &mut FakeState, r: &Recorded, id: &str) -> Answer {
    let Some(mut c) = get(s, r, id) else {
        return missing(id);
    };
    for field in ["email", "name"] {
        if let Some(v) = r.form.get(field) {
            c[field] = json!(v);
        }
    }
    if let Some(pm) = r.form.get("invoice_settings[default_payment_method]") {
        let attached = get(s, r, pm).is_some_and(|p| p["customer"] == json!(id));
        if !attached {
            return refused(
                &format!("The customer does not have a payment method with the ID {pm}."),
                "invoice_settings[default_payment_method]",
            );
        }
        c["invoice_settings"]["default_payment_method"] = json!(pm);
    }
    merge_metadata(&mut c["metadata"], &r.form);
    store(s, &r.account, c)
}

pub(crate) fn search_customers(s: &FakeState, r: &Recorded) -> Answer {
    let Some(query) = r.form.get("query") else {
        return refused("Missing required param: query.", "query");
    };
    let mut clauses = Vec::new();
    for clause in query.split(" AND ") {
        let parsed = clause
            .strip_prefix("metadata['")
            .and_then(|c| c.split_once("']:'"))
            .and_then(|(k, v)| {
                v.strip_suffix('\'')
                    .map(|v| (k.to_string(), v.replace("\\'", "'")))
            });
        match parsed {
            Some(kv) => clauses.push(kv),
            None => {
                return refused(
                    &format!("the fake understands metadata['k']:'v' clauses only, not {clause:?}"),
                    "query",
                );
            }
        }
    }
    let mut data: Vec<Value> = s
        .objects
        .iter()
        .filter(|((account, _), o)| {
            *account == r.account
                && o["object"] == json!("customer")
                && clauses.iter().all(|(k, v)| o["metadata"][k] == json!(v))
        })
        .map(|(_, o)| o.clone())
        .collect();
    data.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    (
        200,
        json!({
            "object": "search_result", "url": "/v1/customers/search", "has_more": false,
            "next_page": null, "total_count": data.len(), "data": data,
        }),
    )
}

pub(crate) fn attach_payment_method(s: &mut FakeState, r: &Recorded, pm: &str) -> Answer {
    let customer = match required(&r.form, "customer") {
        Ok(c) => c,
        Err(e) => return e,
    };
    if get(s, r, &customer).is_none() {
        return missing(&customer);
    }
    let Some(mut p) = get(s, r, pm) else {
        return missing(pm);
    };
    match p["customer"].as_str() {
        Some(other) if other != customer => {
            return refused(
                "The payment method you provided has already been attached to a customer.",
                "payment_method",
            );
        }
        _ => {}
    }
    p["customer"] = json!(customer);
    store(s, &r.account, p)
}

fn subscription_item(
    template: &Value,
    s: &mut FakeState,
    sub: &str,
    price: &str,
    quantity: i64,
) -> Value {
    let mut item = template.clone();
    item["id"] = json!(new_id(s, "si"));
    item["price"] = json!(dict_with(&item["price"], "id", json!(price)));
    item["quantity"] = json!(quantity);
    item["subscription"] = json!(sub);
    item["current_period_start"] = json!(s.now);
    item["current_period_end"] = json!(s.now + 30 * 86_400);
    item
}

fn dict_with(v: &Value, key: &str, value: Value) -> Value {
    let mut v = v.clone();
    v[key] = value;
    v
}

fn check_proration(r: &Recorded) -> Option<Answer> {
    match r.form.get("proration_behavior").map(String::as_str) {
        None | Some("create_prorations" | "always_invoice" | "none") => None,
        Some(other) => Some(refused(
            &format!(
                "Invalid proration_behavior: must be one of create_prorations, always_invoice, or none (got {other})"
            ),
            "proration_behavior",
        )),
    }
}

pub(crate) fn create_subscription(s: &mut FakeState, r: &Recorded) -> Answer {
    let customer = match required(&r.form, "customer") {
        Ok(c) => c,
        Err(e) => return e,
    };
    let Some(cus) = get(s, r, &customer) else {
        return missing(&customer);
    };
    if let Some(refusal) = check_proration(r) {
        return refusal;
    }
    let items = indexed(&r.form, "items");
    if items.is_empty() || items.values().any(|i| !i.contains_key("price")) {
        return refused("Each item needs a price.", "items");
    }
    let mut sub = crate::stripe_object("subscription");
    let id = new_id(s, "sub");
    sub["id"] = json!(id);
    sub["customer"] = json!(customer);
    sub["created"] = json!(s.now);
    sub["start_date"] = json!(s.now);
    sub["cancel_at_period_end"] = json!(false);
    sub["cancel_at"] = json!(null);
    sub["canceled_at"] = json!(null);
    sub["ended_at"] = json!(null);
    sub["metadata"] = json!({});
    merge_metadata(&mut sub["metadata"], &r.form);
    let template = sub["items"]["data"][0].clone();
    let mut data = Vec::new();
    for item in items.values() {
        let quantity = item
            .get("quantity")
            .and_then(|q| q.parse().ok())
            .unwrap_or(1);
        data.push(subscription_item(
            &template,
            s,
            &id,
            &item["price"],
            quantity,
        ));
    }
    sub["items"]["data"] = json!(data);
    let trial_days = int(&r.form, "trial_period_days");
    let pays = r.form.contains_key("default_payment_method")
        || cus["invoice_settings"]["default_payment_method"].is_string();
    sub["default_payment_method"] = json!(r.form.get("default_payment_method"));
    match trial_days {
        Some(days) if days > 0 => {
            sub["status"] = json!("trialing");
            sub["trial_start"] = json!(s.now);
            sub["trial_end"] = json!(s.now + days * 86_400);
        }
        _ => {
            // No payment method and no trial: the first invoice cannot be
            // paid, so Stripe leaves the subscription incomplete.
            sub["status"] = json!(if pays { "active" } else { "incomplete" });
            sub["trial_start"] = json!(null);
            sub["trial_end"] = json!(null);
        }
    }
    store(s, &r.account, sub)
}

pub(crate) fn update_subscription(s: &mut FakeState, r: &Recorded, id: &str) -> Answer {
    let Some(mut sub) = get(s, r, id) else {
        return missing(id);
    };
    if sub["status"] == json!("canceled") {
        return refused(
            "A canceled subscription can only update its cancellation_details and metadata.",
            "items",
        );
    }
    if let Some(refusal) = check_proration(r) {
        return refusal;
    }
    for (n, change) in indexed(&r.form, "items") {
        let Some(item_id) = change.get("id") else {
            return refused("items[n][id] is required here", &format!("items[{n}][id]"));
        };
        let items = sub["items"]["data"].as_array_mut().unwrap();
        let Some(line) = items.iter_mut().find(|i| i["id"] == json!(item_id)) else {
            return refused(
                &format!("No such subscription item: '{item_id}'"),
                &format!("items[{n}][id]"),
            );
        };
        if let Some(q) = change.get("quantity").and_then(|q| q.parse::<i64>().ok()) {
            line["quantity"] = json!(q);
        }
        if let Some(price) = change.get("price") {
            line["price"] = dict_with(&line["price"], "id", json!(price));
        }
    }
    match r.form.get("cancel_at_period_end").map(String::as_str) {
        Some("true") => {
            sub["cancel_at_period_end"] = json!(true);
            sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"].clone();
        }
        Some("false") => {
            sub["cancel_at_period_end"] = json!(false);
            sub["cancel_at"] = json!(null);
        }
        Some(other) => {
            return refused(&format!("Invalid boolean: {other}"), "cancel_at_period_end");
        }
        None => {}
    }
    merge_metadata(&mut sub["metadata"], &r.form);
    store(s, &r.account, sub)
}

pub(crate) fn cancel_subscription(s: &mut FakeState, r: &Recorded, id: &str) -> Answer {
    let Some(mut sub) = get(s, r, id) else {
        return missing(id);
    };
    if sub["status"] == json!("canceled") {
        return refused(&format!("No such subscription: '{id}' is canceled"), "id");
    }
    sub["status"] = json!("canceled");
    sub["canceled_at"] = json!(s.now);
    sub["ended_at"] = json!(s.now);
    store(s, &r.account, sub)
}

pub(crate) fn create_checkout_session(s: &mut FakeState, r: &Recorded) -> Answer {
    let mode = match required(&r.form, "mode") {
        Ok(m) => m,
        Err(e) => return e,
    };
    if !["payment", "subscription", "setup"].contains(&mode.as_str()) {
        return refused(&format!("Invalid mode: {mode}"), "mode");
    }
    if let Err(e) = required(&r.form, "success_url") {
        return e;
    }
    let has = |prefix: &str| r.form.keys().any(|k| k.starts_with(prefix));
    if mode == "payment" && has("subscription_data[") {
        return refused(
            "You can not pass `subscription_data` in `payment` mode.",
            "subscription_data",
        );
    }
    if mode == "subscription" && has("payment_intent_data[") {
        return refused(
            "You can not pass `payment_intent_data` in `subscription` mode.",
            "payment_intent_data",
        );
    }
    let lines = indexed(&r.form, "line_items");
    if lines.is_empty() {
        return refused(
            "line_items is required in payment and subscription mode.",
            "line_items",
        );
    }
    let mut amount_total = 0i64;
    let mut currency = None;
    for (n, line) in &lines {
        if !line.contains_key("quantity") {
            return refused(
                "Quantity is required.",
                &format!("line_items[{n}][quantity]"),
            );
        }
        match (line.get("price"), line.get("price_data.unit_amount")) {
            (Some(_), None) => {}
            (None, Some(amount)) => {
                if !line.contains_key("price_data.product_data.name")
                    || !line.contains_key("price_data.currency")
                {
                    return refused(
                        "price_data needs currency and product_data[name].",
                        &format!("line_items[{n}][price_data]"),
                    );
                }
                let q: i64 = line["quantity"].parse().unwrap_or(1);
                amount_total += amount.parse::<i64>().unwrap_or(0) * q;
                currency = line.get("price_data.currency").cloned();
            }
            _ => {
                return refused(
                    "You must specify either `price` or `price_data` in each line item.",
                    &format!("line_items[{n}]"),
                );
            }
        }
    }
    if let Some(c) = r.form.get("customer")
        && get(s, r, c).is_none()
    {
        return missing(c);
    }
    let mut c = crate::stripe_object("checkout.session");
    let id = new_id(s, "cs_test");
    c["id"] = json!(id);
    c["object"] = json!("checkout.session");
    c["mode"] = json!(mode);
    c["status"] = json!("open");
    c["payment_status"] = json!("unpaid");
    c["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}"));
    c["customer"] = json!(r.form.get("customer"));
    c["client_reference_id"] = json!(r.form.get("client_reference_id"));
    c["success_url"] = json!(r.form.get("success_url"));
    c["cancel_url"] = json!(r.form.get("cancel_url"));
    c["created"] = json!(s.now);
    c["expires_at"] = json!(s.now + 86_400);
    c["payment_intent"] = json!(null);
    c["subscription"] = json!(null);
    c["invoice"] = json!(null);
    if currency.is_some() {
        c["amount_total"] = json!(amount_total);
        c["amount_subtotal"] = json!(amount_total);
        c["currency"] = json!(currency);
    }
    c["metadata"] = json!({});
    merge_metadata(&mut c["metadata"], &r.form);
    store(s, &r.account, c)
}

pub(crate) fn create_portal_session(s: &mut FakeState, r: &Recorded) -> Answer {
    let customer = match required(&r.form, "customer") {
        Ok(c) => c,
        Err(e) => return e,
    };
    if get(s, r, &customer).is_none() {
        return missing(&customer);
    }
    let mut p = crate::stripe_object("billing_portal.session");
    let id = new_id(s, "bps");
    p["id"] = json!(id);
    p["customer"] = json!(customer);
    p["return_url"] = json!(r.form.get("return_url"));
    p["url"] = json!(format!("https://billing.stripe.com/p/session/{id}"));
    p["created"] = json!(s.now);
    (200, p)
}

pub(crate) fn create_invoice(s: &mut FakeState, r: &Recorded) -> Answer {
    let customer = match required(&r.form, "customer") {
        Ok(c) => c,
        Err(e) => return e,
    };
    if get(s, r, &customer).is_none() {
        return missing(&customer);
    }
    let method = r
        .form
        .get("collection_method")
        .cloned()
        .unwrap_or_else(|| "charge_automatically".into());
    let days = int(&r.form, "days_until_due");
    match (method.as_str(), days) {
        ("send_invoice", Some(_)) | ("charge_automatically", None) => {}
        ("send_invoice", None) => {
            return refused(
                "Invoices with collection_method send_invoice need days_until_due or due_date.",
                "days_until_due",
            );
        }
        ("charge_automatically", Some(_)) => {
            return refused(
                "You can only set days_until_due when collection_method is send_invoice.",
                "days_until_due",
            );
        }
        _ => {
            return refused(
                &format!("Invalid collection_method: {method}"),
                "collection_method",
            );
        }
    }
    let fee = int(&r.form, "application_fee_amount");
    if fee.is_some() && r.account.is_none() {
        return refused(
            "Can only apply an application_fee_amount when the request is made on behalf of another account (using an OAuth key, the Stripe-Account header, or the on_behalf_of parameter).",
            "application_fee_amount",
        );
    }
    let mut i = crate::stripe_object("invoice");
    i["id"] = json!(new_id(s, "in"));
    i["application_fee_amount"] = json!(fee);
    i["customer"] = json!(customer);
    i["status"] = json!("draft");
    i["collection_method"] = json!(method);
    i["days_until_due"] = json!(days);
    i["currency"] = json!(
        r.form
            .get("currency")
            .cloned()
            .unwrap_or_else(|| "usd".into())
    );
    i["auto_advance"] = json!(r.form.get("auto_advance").map(|v| v == "true"));
    i["number"] = json!(null);
    i["hosted_invoice_url"] = json!(null);
    i["invoice_pdf"] = json!(null);
    i["created"] = json!(s.now);
    i["metadata"] = json!({});
    merge_metadata(&mut i["metadata"], &r.form);
    i["lines"] =
        json!({ "object": "list", "data": [], "has_more": false, "url": "/v1/invoices/lines" });
    totals(&mut i, &[]);
    store(s, &r.account, i)
}

/// A tax rate's percentage in millionths (8.25 % → 82_500), from the JSON
/// number's own digits: no floating point anywhere near money.
fn millionths(percentage: &Value) -> Option<i64> {
    let text = percentage.to_string();
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    if frac.len() > 4 {
        return None;
    }
    let frac = format!("{frac:0<4}");
    Some(whole.parse::<i64>().ok()? * 10_000 + frac.parse::<i64>().ok()?)
}

/// `n / d` rounded half up, for non-negative `n` and positive `d`.
fn div_half_up(n: i64, d: i64) -> i64 {
    (2 * n + d) / (2 * d)
}

/// Sets an invoice's subtotal, taxes and totals from its lines (each line:
/// amount and its tax rates).
fn totals(invoice: &mut Value, lines: &[(i64, Vec<Value>)]) {
    let (mut subtotal, mut exclusive, mut taxes) = (0, 0, Vec::new());
    for (amount, rates) in lines {
        subtotal += amount;
        for rate in rates {
            let m = millionths(&rate["percentage"]).expect("a tax rate with at most 4 decimals");
            let inclusive = rate["inclusive"] == json!(true);
            let (tax, behavior, taxable) = if inclusive {
                let net = div_half_up(amount * 1_000_000, 1_000_000 + m);
                (amount - net, "inclusive", net)
            } else {
                (div_half_up(amount * m, 1_000_000), "exclusive", *amount)
            };
            if !inclusive {
                exclusive += tax;
            }
            taxes.push(json!({
                "amount": tax, "tax_behavior": behavior, "taxable_amount": taxable,
                "taxability_reason": "standard_rated", "type": "tax_rate_details",
                "tax_rate_details": { "tax_rate": rate["id"] },
            }));
        }
    }
    let total = subtotal + exclusive;
    let inclusive: i64 = taxes
        .iter()
        .filter(|t| t["tax_behavior"] == json!("inclusive"))
        .map(|t| t["amount"].as_i64().unwrap())
        .sum();
    invoice["subtotal"] = json!(subtotal);
    invoice["subtotal_excluding_tax"] = json!(subtotal - inclusive);
    invoice["total"] = json!(total);
    invoice["total_excluding_tax"] = json!(total - exclusive - inclusive);
    invoice["total_taxes"] = json!(taxes);
    invoice["amount_due"] = json!(total);
    invoice["amount_remaining"] = json!(total - invoice["amount_paid"].as_i64().unwrap_or(0));
}

pub(crate) fn create_invoice_item(s: &mut FakeState, r: &Recorded) -> Answer {
    let (customer, invoice_id) = match (required(&r.form, "customer"), required(&r.form, "invoice"))
    {
        (Ok(c), Ok(i)) => (c, i),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let Some(amount) = int(&r.form, "amount") else {
        return refused("Missing required param: amount.", "amount");
    };
    let Some(mut invoice) = get(s, r, &invoice_id) else {
        return missing(&invoice_id);
    };
    if invoice["status"] != json!("draft") {
        return refused(
            "You can only add invoice items to draft invoices.",
            "invoice",
        );
    }
    if invoice["customer"] != json!(customer) {
        return refused("The invoice belongs to another customer.", "invoice");
    }
    if r.form.get("currency") != invoice["currency"].as_str().map(str::to_string).as_ref() {
        return refused("The item's currency must be the invoice's.", "currency");
    }
    let mut rates = Vec::new();
    for (n, id) in indexed_values(&r.form, "tax_rates") {
        match get(s, r, &id) {
            Some(rate) => rates.push(rate),
            None => {
                return refused(
                    &format!("No such tax rate: '{id}'"),
                    &format!("tax_rates[{n}]"),
                );
            }
        }
    }
    let mut item = crate::stripe_object("invoiceitem");
    item["id"] = json!(new_id(s, "ii"));
    item["customer"] = json!(customer);
    item["invoice"] = json!(invoice_id);
    item["amount"] = json!(amount);
    item["currency"] = json!(r.form.get("currency"));
    item["description"] = json!(r.form.get("description"));
    item["tax_rates"] = json!(rates);
    // The line as Stripe shows it, from its sample; the amount and rates
    // the totals are computed from are kept beside it (`_fake_lines`).
    let mut line = crate::stripe_object("invoice")["lines"]["data"][0].clone();
    line["id"] = json!(new_id(s, "il"));
    line["invoice"] = json!(invoice_id);
    line["amount"] = json!(amount);
    line["currency"] = item["currency"].clone();
    line["description"] = json!(r.form.get("description"));
    invoice["lines"]["data"].as_array_mut().unwrap().push(line);
    if !invoice["_fake_lines"].is_array() {
        invoice["_fake_lines"] = json!([]);
    }
    invoice["_fake_lines"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "amount": amount, "tax_rates": rates }));
    let lines: Vec<(i64, Vec<Value>)> = invoice["_fake_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["amount"].as_i64().unwrap(),
                l["tax_rates"].as_array().cloned().unwrap_or_default(),
            )
        })
        .collect();
    totals(&mut invoice, &lines);
    store(s, &r.account, invoice);
    store(s, &r.account, item)
}

/// `name[0]=a&name[1]=b` (or `name[]=`) in order.
fn indexed_values(form: &BTreeMap<String, String>, name: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = form
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix(&format!("{name}["))?.strip_suffix(']')?;
            Some((n.parse().unwrap_or(0), v.clone()))
        })
        .collect();
    out.sort();
    out
}

pub(crate) fn invoice_step(s: &mut FakeState, r: &Recorded, id: &str, verb: &str) -> Answer {
    let Some(mut i) = get(s, r, id) else {
        return missing(id);
    };
    let status = i["status"].as_str().unwrap_or("").to_string();
    match verb {
        "finalize" => {
            if status != "draft" {
                return refused("This invoice is already finalized.", "invoice");
            }
            let n = new_id(s, "num");
            i["number"] = json!(format!("FAKE-{}", &n[n.len() - 4..]));
            i["hosted_invoice_url"] = json!(format!("https://invoice.stripe.com/i/{id}"));
            i["invoice_pdf"] = json!(format!("https://pay.stripe.com/invoice/{id}/pdf"));
            i["status"] = json!(if i["total"] == json!(0) {
                "paid"
            } else {
                "open"
            });
            if let Some(a) = r.form.get("auto_advance") {
                i["auto_advance"] = json!(a == "true");
            }
        }
        "send" => {
            if i["collection_method"] != json!("send_invoice") {
                return refused(
                    "You can only manually send an invoice if its collection method is 'send_invoice'.",
                    "invoice",
                );
            }
            if status != "open" {
                return refused("You can only send open invoices.", "invoice");
            }
        }
        "void" => {
            if status != "open" && status != "uncollectible" {
                return refused(
                    "You can only void open or uncollectible invoices.",
                    "invoice",
                );
            }
            i["status"] = json!("void");
        }
        "mark_uncollectible" => {
            if status != "open" {
                return refused(
                    "You can only mark open invoices as uncollectible.",
                    "invoice",
                );
            }
            i["status"] = json!("uncollectible");
        }
        "pay" => {
            if status == "paid" {
                return refused("Invoice is already paid", "invoice");
            }
            if status != "open" && status != "uncollectible" {
                return refused("You can only pay an open invoice.", "invoice");
            }
            // The invoice's default payment method, else the customer's.
            let customer = i["customer"].as_str().and_then(|c| get(s, r, c));
            let method = r.form.get("payment_method").cloned().or_else(|| {
                [
                    &i["default_payment_method"],
                    &customer.unwrap_or_default()["invoice_settings"]["default_payment_method"],
                ]
                .into_iter()
                .find_map(|m| m.as_str().map(str::to_string))
            });
            if method.is_none() {
                return refused(
                    "This customer has no attached payment source or default payment method.",
                    "payment_method",
                );
            }
            i["status"] = json!("paid");
            i["amount_paid"] = i["amount_due"].clone();
            i["amount_remaining"] = json!(0);
        }
        _ => return missing(verb),
    }
    store(s, &r.account, i)
}
