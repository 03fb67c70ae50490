//! Connect: connected accounts (read and create) and their onboarding links.
//!
//! Knows nothing about the money that moves on them (`payments.rs`).

use super::convert::*;
use super::*;

impl StripeApi {
    /// `GET /v1/accounts/{id}`.
    pub async fn retrieve_account(&self, id: &str) -> Result<wit::Account, WitError> {
        check_id(id, "acct_")?;
        let req = stripe_connect::account::RetrieveAccount::new(id);
        let a = self
            .send("retrieve-account", None, None, || req.customize())
            .await?;
        Ok(account(a))
    }

    /// `POST /v1/accounts`: an Express account.
    pub async fn create_account(
        &self,
        p: wit::AccountParams,
        key: &str,
    ) -> Result<wit::Account, WitError> {
        let mut req = stripe_connect::account::CreateAccount::new()
            .type_(stripe_connect::account::CreateAccountType::Express)
            .country(p.country)
            .metadata(metadata(p.metadata));
        if let Some(e) = p.email {
            req = req.email(e);
        }
        let a = self
            .send("create-account", None, Some(key), || req.customize())
            .await?;
        Ok(account(a))
    }

    /// `POST /v1/account_links`: an onboarding link.
    pub async fn create_account_link(
        &self,
        account: &str,
        refresh_url: &str,
        return_url: &str,
        key: &str,
    ) -> Result<wit::AccountLink, WitError> {
        check_id(account, "acct_")?;
        let req = stripe_connect::account_link::CreateAccountLink::new(
            account,
            stripe_connect::account_link::CreateAccountLinkType::AccountOnboarding,
        )
        .refresh_url(refresh_url)
        .return_url(return_url);
        let l = self
            .send("create-account-link", None, Some(key), || req.customize())
            .await?;
        Ok(wit::AccountLink {
            url: l.url,
            expires_at: l.expires_at,
        })
    }
}
