//! Connected accounts: status changes and (de)authorisation.

use super::*;

/// A connected account's capabilities changed (seed 000's onboarding).
pub(super) fn account_updated(ctx: &Ctx, store: &mut dyn StateStore) -> Mapped {
    let id = ctx.req_str("id")?;
    let (charges, payouts, details) = (
        ctx.flag("charges_enabled"),
        ctx.flag("payouts_enabled"),
        ctx.flag("details_submitted"),
    );
    let status = format!("charges={charges},payouts={payouts},details={details}");
    if let Err(stale) = advance_in_time(store, "account", &id, &status, ctx.created, None)? {
        return Ok(Err(stale));
    }
    let due = at(ctx.object, &["requirements", "currently_due"])
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(Ok(vec![Effect::AccountStatusChanged(
        AccountStatusChanged {
            account: id,
            charges_enabled: charges,
            payouts_enabled: payouts,
            details_submitted: details,
            requirements_due: due,
            disabled_reason: ctx.opt_str(&["requirements", "disabled_reason"]),
            tenant: ctx.tenant(),
        },
    )]))
}

/// The connected account connected or disconnected the platform's
/// application; the later of the two (by event time) stands.
pub(super) fn account_application(
    ctx: &Ctx,
    store: &mut dyn StateStore,
    authorized: bool,
) -> Mapped {
    let account = ctx
        .account
        .clone()
        .ok_or_else(|| HandleError::MissingField("account".into()))?;
    let status = if authorized {
        "authorized"
    } else {
        "deauthorized"
    };
    if let Err(stale) = advance_in_time(store, "application", &account, status, ctx.created, None)?
    {
        return Ok(Err(stale));
    }
    let link = AccountApplication {
        account,
        application: ctx.opt_str(&["id"]),
        tenant: ctx.tenant(),
    };
    Ok(Ok(vec![if authorized {
        Effect::AccountAuthorized(link)
    } else {
        Effect::AccountDeauthorized(link)
    }]))
}
