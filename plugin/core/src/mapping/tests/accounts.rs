//! Connected accounts: onboarding in event order, tenants from the
//! registry or metadata, postings moved when an account is registered.

use super::*;

#[test]
fn account_onboarding_applies_in_event_order() {
    let mut s = MemoryState::default();
    let account = |charges: bool| {
        json!({"id": "acct_1", "object": "account", "charges_enabled": charges,
               "payouts_enabled": charges, "details_submitted": true,
               "requirements": {"currently_due": if charges { json!([]) } else { json!(["external_account"]) },
                                "disabled_reason": if charges { Value::Null } else { json!("requirements.past_due") }},
               "metadata": {"tenant_id": "t_1"}})
    };
    let enabled = event("a2", "account.updated", 20, account(true));
    let pending = event("a1", "account.updated", 10, account(false));
    let fx = handle(&enabled, &mut s).unwrap();
    assert!(matches!(&fx[0], Effect::AccountStatusChanged(a)
        if a.charges_enabled && a.requirements_due.is_empty() && a.tenant.as_deref() == Some("t_1")));
    // The older "still pending" state arrives late: stale.
    assert!(matches!(
        &handle(&pending, &mut s).unwrap()[0],
        Effect::EventIgnored(_)
    ));
    let mut fresh = MemoryState::default();
    let fx = handle(&pending, &mut fresh).unwrap();
    assert!(matches!(&fx[0], Effect::AccountStatusChanged(a)
        if a.requirements_due == ["external_account"] && a.disabled_reason.is_some()));
    let mut deauth = json!({"id": "evt_d", "object": "event", "type": "account.application.deauthorized",
                            "created": 30, "account": "acct_1",
                            "data": {"object": {"id": "ca_1", "object": "application", "name": "PSA"}}});
    let fx = handle(deauth.to_string().as_bytes(), &mut s).unwrap();
    assert!(
        matches!(&fx[0], Effect::AccountDeauthorized(d) if d.account == "acct_1" && d.application.as_deref() == Some("ca_1"))
    );
    deauth.as_object_mut().unwrap().remove("account");
    assert!(matches!(
        handle(deauth.to_string().as_bytes(), &mut s),
        Err(HandleError::MissingField(_))
    ));
}

#[test]
fn tenants_come_from_the_registry_then_the_configured_metadata_keys() {
    let mut s = MemoryState::default();
    let mut object = pi("succeeded");
    object["metadata"] = json!({"orgId": "org-7", "reservationId": "res-9"});
    let body = |id: &str| {
        let mut e: Value =
            serde_json::from_slice(&event(id, "payment_intent.succeeded", 1, object.clone()))
                .unwrap();
        e["account"] = json!("acct_1");
        e.to_string().into_bytes()
    };
    let tenant_of = |fx: &[Effect]| match &fx[0] {
        Effect::PaymentSucceeded(p) => (p.tenant.clone(), p.reference.clone()),
        other => panic!("{other:?}"),
    };
    // Default keys: neither orgId nor reservationId is known.
    let fx = handle(&body("e1"), &mut s).unwrap();
    assert_eq!(tenant_of(&fx), (None, None));
    let aliases = Routing::or_defaults(
        vec!["tenant_id".into(), "orgId".into()],
        vec!["reservationId".into()],
    );
    let fx = handle_with(&body("e2"), &aliases, &mut MemoryState::default()).unwrap();
    assert_eq!(tenant_of(&fx), (Some("org-7".into()), Some("res-9".into())));
    // A registered account wins over metadata.
    let mut registered = MemoryState::default();
    register_tenant(&mut registered, "acct_1", "t_registered").unwrap();
    let fx = handle_with(&body("e3"), &aliases, &mut registered).unwrap();
    assert_eq!(tenant_of(&fx).0.as_deref(), Some("t_registered"));
    assert!(register_tenant(&mut registered, "cus_1", "t").is_err());
    assert!(register_tenant(&mut registered, "acct_1", " ").is_err());
}

/// A payment that arrived before its account was registered is posted
/// under the account's id; registering moves it, with new postings
/// only, and its later refund follows the tenant.
#[test]
fn registering_an_account_moves_what_was_posted_under_its_id() {
    let mut s = MemoryState::default();
    let mut body: Value = serde_json::from_slice(&event(
        "evt_1",
        "payment_intent.succeeded",
        10,
        pi("succeeded"),
    ))
    .unwrap();
    body["account"] = json!("acct_1Late");
    body["data"]["object"]["metadata"] = json!({});
    handle(body.to_string().as_bytes(), &mut s).unwrap();
    let before = ledger::book(&mut s, "acct_1Late").unwrap().balances;
    assert_eq!(before["usd"]["tenant"], 9_750);

    register_tenant(&mut s, "acct_1Late", "t_late").unwrap();
    assert_eq!(
        reroute(&mut s, "acct_1Late", "t_late").unwrap(),
        ["pi_1:payment"]
    );
    assert!(
        reroute(&mut s, "acct_1Late", "t_late").unwrap().is_empty(),
        "once"
    );
    assert_eq!(ledger::book(&mut s, "t_late").unwrap().balances, before);
    let left = &ledger::book(&mut s, "acct_1Late").unwrap().balances["usd"];
    assert!(left.values().all(|b| *b == 0), "{left:?}");
    let moved = ledger::transaction_by_id(&mut s, "t_late", "pi_1:payment")
        .unwrap()
        .unwrap();
    assert_eq!(moved.source.as_deref(), Some("pi_1"));
    // The history under the account's id is still there, given back.
    assert_eq!(
        ledger::transactions(&mut s, "acct_1Late", 0, 10)
            .unwrap()
            .len(),
        2
    );

    let refund = json!({"id": "re_1", "object": "refund", "amount": 1000, "currency": "usd",
        "charge": "ch_1", "payment_intent": "pi_1", "status": "succeeded", "metadata": {}});
    let mut body: Value =
        serde_json::from_slice(&event("evt_2", "refund.created", 20, refund)).unwrap();
    body["account"] = json!("acct_1Late");
    handle(body.to_string().as_bytes(), &mut s).unwrap();
    assert_eq!(
        ledger::book(&mut s, "t_late").unwrap().balances["usd"]["tenant"],
        8_750
    );
}
