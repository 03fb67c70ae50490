//! The `tenants` export: the registry of connected accounts.

use crate::bindings::Plugin;
use crate::imports::HostState;
use psa_billing_core::mapping;

impl crate::bindings::exports::psa::billing::tenants::Guest for Plugin {
    fn register(account: String, tenant: String) -> Result<(), String> {
        mapping::register_tenant(&mut HostState, &account, &tenant)?;
        mapping::reroute(&mut HostState, &account, &tenant).map(drop)
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
