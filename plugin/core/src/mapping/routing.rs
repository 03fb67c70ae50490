//! Which tenant an event belongs to: the registry of connected accounts
//! (checked ids and tenants), metadata keys, and the owner recorded for a
//! payment so that its later events find it.
//!
//! Knows nothing about what the mappers emit.

use super::*;

/// The registry of connected accounts: `acct_...` → the application's tenant.
pub const TENANTS: &str = "tenants";

/// Where the application keeps its tenant and references in `metadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    /// First present wins.
    pub tenant_keys: Vec<String>,
    /// First present wins.
    pub reference_keys: Vec<String>,
    /// The prices (`price_...`) whose items are licenses (seed 004's
    /// license price): a subscription's license count adds up those items
    /// alone. Empty: every item counts.
    pub license_prices: Vec<String>,
}

impl Default for Routing {
    fn default() -> Self {
        Routing {
            tenant_keys: vec!["tenant_id".into()],
            reference_keys: vec!["reference".into(), "invoice_id".into()],
            license_prices: vec![],
        }
    }
}

impl Routing {
    /// Empty lists fall back to the defaults, so a host may leave them out.
    pub fn or_defaults(tenant_keys: Vec<String>, reference_keys: Vec<String>) -> Routing {
        let d = Routing::default();
        Routing {
            tenant_keys: if tenant_keys.is_empty() {
                d.tenant_keys
            } else {
                tenant_keys
            },
            reference_keys: if reference_keys.is_empty() {
                d.reference_keys
            } else {
                reference_keys
            },
            license_prices: d.license_prices,
        }
    }
}

/// Longest tenant name: Stripe's limit on a metadata value, so that every
/// tenant an event can name can also be registered, and no longer.
pub const MAX_TENANT_CHARS: usize = 500;

/// Longest connected account id (Stripe's ids are far shorter).
pub const MAX_ACCOUNT_BYTES: usize = 255;

/// A connected account id: `acct_` and letters or digits, as Stripe mints them.
pub fn check_account_id(account: &str) -> Result<(), String> {
    let rest = account.strip_prefix("acct_").unwrap_or_default();
    if rest.is_empty()
        || account.len() > MAX_ACCOUNT_BYTES
        || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(format!(
            "expected a connected account id (acct_ and up to {} letters or digits), got {:?}",
            MAX_ACCOUNT_BYTES - 5,
            shorten(account)
        ));
    }
    Ok(())
}

/// A tenant name: 1 to [`MAX_TENANT_CHARS`] characters, not blank, no
/// control characters.
pub fn check_tenant(tenant: &str) -> Result<(), String> {
    let chars = tenant.chars().count();
    if tenant.trim().is_empty() || chars > MAX_TENANT_CHARS {
        return Err(format!(
            "a tenant is 1 to {MAX_TENANT_CHARS} characters, not blank (got {chars})"
        ));
    }
    if tenant.chars().any(char::is_control) {
        return Err("a tenant must not contain control characters".into());
    }
    Ok(())
}

/// The start of a long text, for an error message.
pub(super) fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Registers (or moves) a connected account to a tenant.
pub fn register_tenant(
    store: &mut dyn StateStore,
    account: &str,
    tenant: &str,
) -> Result<(), String> {
    check_account_id(account)?;
    check_tenant(tenant)?;
    store.put(TENANTS, &key(&[account]), tenant)
}

/// Moves what was posted under `account`'s own id (its events came before
/// it was registered, with no tenant to route by) to `tenant`'s ledger:
/// each transaction is posted again in `tenant`'s ledger (same id,
/// movements, source and time) and given back in the account's with a
/// new transaction `<id>:rerouted`, so history is never edited. The
/// payments among them are owned by `tenant` from then on (their refunds
/// and disputes follow). Returns the ids moved; a repeat moves nothing.
pub fn reroute(
    store: &mut dyn StateStore,
    account: &str,
    tenant: &str,
) -> Result<Vec<String>, String> {
    let from = ledger_tenant(None, Some(account));
    if from == tenant {
        return Ok(vec![]);
    }
    let mut moved = Vec::new();
    let mut after = 0;
    loop {
        let page = ledger::transactions(store, &from, after, 200).map_err(|e| e.to_string())?;
        let Some(last) = page.last() else {
            return Ok(moved);
        };
        after = last.seq;
        for tx in page {
            let back = format!("{}:rerouted", tx.id);
            if tx.id.ends_with(":rerouted")
                || ledger::transaction_by_id(store, &from, &back)
                    .map_err(|e| e.to_string())?
                    .is_some()
            {
                continue;
            }
            let transfers = ledger::transfers_of(&tx);
            let mut here = ledger::Posting {
                id: tx.id.clone(),
                tenant: tenant.to_string(),
                currency: tx.currency.clone(),
                description: tx.description.clone(),
                at: tx.at,
                source: tx.source.clone(),
                transfers: transfers.clone(),
            };
            match ledger::post(store, here.clone()) {
                Ok(_) => {}
                // The tenant's ledger has this id for something else: keep
                // both, under a name of its own.
                Err(ledger::LedgerError::Conflict(_)) => {
                    here.id = format!("rerouted:{account}:{}", tx.id);
                    ledger::post(store, here).map_err(|e| e.to_string())?;
                }
                Err(e) => return Err(e.to_string()),
            }
            let given_back = ledger::Posting {
                id: back,
                tenant: from.clone(),
                currency: tx.currency.clone(),
                description: format!("moved to {tenant}: {}", tx.description),
                at: tx.at,
                source: tx.source.clone(),
                transfers: transfers
                    .iter()
                    .map(|t| ledger::Transfer::new(&t.to, &t.from, t.amount))
                    .collect(),
            };
            ledger::post(store, given_back).map_err(|e| e.to_string())?;
            if let Some(pi) = tx.source.as_deref().filter(|s| s.starts_with("pi_")) {
                let owner = serde_json::json!({ "tenant": tenant, "ledger": tenant });
                store.put(LEDGER_OWNERS, &key(&[pi]), &owner.to_string())?;
            }
            moved.push(tx.id);
        }
    }
}

/// Forgets a connected account: its later events are routed by metadata.
pub fn unregister_tenant(store: &mut dyn StateStore, account: &str) -> Result<(), String> {
    store.delete(TENANTS, &key(&[account]))
}

/// The tenant a connected account is registered to.
pub fn lookup_tenant(store: &mut dyn StateStore, account: &str) -> Result<Option<String>, String> {
    store.get(TENANTS, &key(&[account]))
}

/// Where each marketplace contractor of a tenant is paid: `<tenant>/<id>` →
/// its connected account. A withdrawal for a contractor goes only there.
pub const CONTRACTORS: &str = "contractors";

/// A contractor's id: what its ledger account `contractor:<id>` allows.
pub fn check_contractor(contractor: &str) -> Result<(), String> {
    if crate::ledger::is_account(&format!("contractor:{contractor}")) {
        Ok(())
    } else {
        Err(format!(
            "a contractor id is 1 to 64 of A-Z a-z 0-9 _ - . (got {:?})",
            shorten(contractor)
        ))
    }
}

/// Registers (or moves) the connected account a tenant's contractor is
/// paid to.
pub fn register_contractor(
    store: &mut dyn StateStore,
    tenant: &str,
    contractor: &str,
    account: &str,
) -> Result<(), String> {
    check_tenant(tenant)?;
    check_contractor(contractor)?;
    check_account_id(account)?;
    // The account it was paid to before is no longer the tenant's payee.
    if let Some(before) = store.get(CONTRACTORS, &key(&[tenant, contractor]))?
        && before != account
    {
        store.delete(CONTRACTOR_PAYEES, &key(&[tenant, &before]))?;
    }
    store.put(CONTRACTOR_PAYEES, &key(&[tenant, account]), contractor)?;
    store.put(CONTRACTORS, &key(&[tenant, contractor]), account)
}

/// A tenant's payout accounts: `<tenant>/<account>` → the contractor paid there.
pub const CONTRACTOR_PAYEES: &str = "contractor_payees";

/// The contractor of `tenant` paid to `account`, if one is registered there.
pub fn contractor_of(
    store: &mut dyn StateStore,
    tenant: &str,
    account: &str,
) -> Result<Option<String>, String> {
    store.get(CONTRACTOR_PAYEES, &key(&[tenant, account]))
}

/// The connected account a tenant's contractor is paid to, if registered.
pub fn contractor_account(
    store: &mut dyn StateStore,
    tenant: &str,
    contractor: &str,
) -> Result<Option<String>, String> {
    check_contractor(contractor)?;
    store.get(CONTRACTORS, &key(&[tenant, contractor]))
}

/// Who a payment-related object belongs to: the tenant and ledger its
/// payment intent was posted under, else its own `metadata.tenant_id`,
/// else the connected account or the platform. Returns (tenant, ledger
/// tenant). The recorded owner comes first: metadata (which whoever made
/// the refund or transfer chose) never moves money of a payment away from
/// the ledger the payment was posted in.
pub(super) fn owner_of(
    ctx: &Ctx,
    store: &mut dyn StateStore,
    payment_intent: Option<&str>,
) -> Result<(Option<String>, String), HandleError> {
    if let Some(pi) = payment_intent
        && let Some(owner) = recorded_owner(store, pi)?
    {
        let tenant = owner["tenant"].as_str().map(str::to_string);
        let ledger = owner["ledger"].as_str().unwrap_or(ledger::PLATFORM_TENANT);
        return Ok((tenant, ledger.to_string()));
    }
    if let Some(t) = ctx.tenant() {
        return Ok((Some(t.clone()), t));
    }
    let Some(pi) = payment_intent else {
        return Ok((None, ledger_tenant(None, ctx.account.as_deref())));
    };
    // Posting under a guess would split one payment over two ledgers.
    Err(HandleError::NotReady(format!(
        "payment {pi} not seen yet and no metadata.tenant_id to route by; Stripe's retry will apply this after it"
    )))
}

/// The tenant of an object about a payment, for effects that post nothing:
/// its own routing, else its payment's, else unknown (never not-ready).
pub(super) fn soft_tenant(
    ctx: &Ctx,
    store: &mut dyn StateStore,
    payment_intent: Option<&str>,
) -> Result<Option<String>, HandleError> {
    if ctx.tenant.is_some() {
        return Ok(ctx.tenant());
    }
    let Some(pi) = payment_intent else {
        return Ok(None);
    };
    Ok(recorded_owner(store, pi)?.and_then(|owner| owner["tenant"].as_str().map(str::to_string)))
}

/// Whose tenant and ledger a payment intent was posted under, if it was.
pub(super) fn recorded_owner(
    store: &mut dyn StateStore,
    pi: &str,
) -> Result<Option<Value>, HandleError> {
    let Some(raw) = store
        .get(LEDGER_OWNERS, &key(&[pi]))
        .map_err(HandleError::Storage)?
    else {
        return Ok(None);
    };
    serde_json::from_str(&raw)
        .map(Some)
        .map_err(|e| HandleError::Storage(format!("owner of {pi} is corrupt: {e}")))
}

/// The tenant and the ledger a payment intent's payment was posted under,
/// if it was posted.
pub fn payment_owner(
    store: &mut dyn StateStore,
    pi: &str,
) -> Result<Option<(Option<String>, String)>, HandleError> {
    Ok(recorded_owner(store, pi)?.map(|owner| {
        let tenant = owner["tenant"].as_str().map(str::to_string);
        let ledger = owner["ledger"].as_str().unwrap_or(ledger::PLATFORM_TENANT);
        (tenant, ledger.to_string())
    }))
}

/// The tenant a connected account is registered to, if any.
pub(super) fn registered_tenant(
    store: &mut dyn StateStore,
    account: Option<&str>,
) -> Result<Option<String>, HandleError> {
    match account {
        Some(acct) => store
            .get(TENANTS, &key(&[acct]))
            .map_err(HandleError::Storage),
        None => Ok(None),
    }
}

/// Payment intent → the ledger tenant its payment was posted to.
pub(super) const LEDGER_OWNERS: &str = "ledger_owners";

/// Whose ledger a payment belongs to: the application's tenant, else the
/// connected account, else the platform's own.
pub fn ledger_tenant(tenant: Option<&str>, account: Option<&str>) -> String {
    tenant
        .or(account)
        .unwrap_or(ledger::PLATFORM_TENANT)
        .to_string()
}
