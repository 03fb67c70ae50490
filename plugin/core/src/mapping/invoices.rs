//! Invoices: status changes.

use super::*;

/// An invoice moving to `status`, or to the status the object states.
pub(super) fn invoice_status(
    ctx: &Ctx,
    store: &mut dyn StateStore,
    status: Option<&str>,
) -> Mapped {
    let status = match status {
        Some(s) => s.to_string(),
        None => ctx.req_str("status")?,
    };
    let status = status.as_str();
    let id = ctx.req_str("id")?;
    let amount_paid = ctx.money("amount_paid")?;
    let amount_due = ctx.money("amount_due")?;
    if let Err(stale) = advance(store, &INVOICE, &id, status, ctx.created)? {
        return Ok(Err(stale));
    }
    // Newer API versions moved the subscription under `parent`.
    let subscription = id_at(ctx.object, &["subscription"]).or_else(|| {
        id_at(
            ctx.object,
            &["parent", "subscription_details", "subscription"],
        )
    });
    // Subscription invoices carry the subscription's metadata, not their own.
    let keys = &ctx.routing.tenant_keys;
    let tenant = ctx.tenant().or_else(|| {
        ctx.metadata(&["subscription_details", "metadata"], keys)
            .or_else(|| ctx.metadata(&["parent", "subscription_details", "metadata"], keys))
    });
    Ok(Ok(vec![Effect::InvoiceStatusChanged(
        InvoiceStatusChanged {
            invoice: id,
            status: status.to_string(),
            amount_paid,
            amount_due,
            tenant,
            account: ctx.account.clone(),
            customer: id_at(ctx.object, &["customer"]),
            subscription,
            hosted_invoice_url: ctx.opt_str(&["hosted_invoice_url"]),
            invoice_pdf: ctx.opt_str(&["invoice_pdf"]),
        },
    )]))
}

/// The statuses of a invoice, in order.
pub(super) const INVOICE: Lifecycle = Lifecycle {
    kind: "invoice",
    rank: |status| match status {
        "paid" | "void" => FINAL,
        "uncollectible" => 2,
        "open" => 1,
        _ => 0,
    },
};
