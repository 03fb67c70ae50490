//! The `tenants` export: the registry of connected accounts, where
//! contractors are paid, and re-routing on registration.

use crate::bindings::Plugin;
use crate::bindings::exports::psa::billing::tenants::Effect;
use crate::convert::effects::wit_effect;
use crate::imports::HostState;
use psa_billing_core::{effects, mapping};

impl crate::bindings::exports::psa::billing::tenants::Guest for Plugin {
    fn register(account: String, tenant: String) -> Result<Vec<Effect>, String> {
        mapping::register_tenant(&mut HostState, &account, &tenant)?;
        let moved = mapping::reroute(&mut HostState, &account, &tenant)?;
        if moved.is_empty() {
            return Ok(vec![]);
        }
        Ok(vec![wit_effect(effects::Effect::AccountRerouted(
            effects::AccountRerouted {
                account,
                tenant,
                transactions: moved,
            },
        ))])
    }
    fn unregister(account: String) -> Result<(), String> {
        mapping::unregister_tenant(&mut HostState, &account)
    }
    fn lookup(account: String) -> Result<Option<String>, String> {
        mapping::lookup_tenant(&mut HostState, &account)
    }
    fn register_contractor(
        tenant: String,
        contractor: String,
        account: String,
    ) -> Result<(), String> {
        mapping::register_contractor(&mut HostState, &tenant, &contractor, &account)
    }
    fn contractor_account(tenant: String, contractor: String) -> Result<Option<String>, String> {
        mapping::contractor_account(&mut HostState, &tenant, &contractor)
    }
}
