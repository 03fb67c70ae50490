//! `psa-billing sign`: a `Stripe-Signature` header for a body, to try the
//! endpoint with curl.

use super::*;

#[derive(Args)]
pub(super) struct SignArgs {
    /// The endpoint secret (whsec_...).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// Unix timestamp to sign at; now by default.
    #[arg(long)]
    timestamp: Option<i64>,
}

pub(super) fn sign(a: SignArgs) -> Result<()> {
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    let t = a.timestamp.unwrap_or_else(crate::clock::unix_now);
    println!("{}", psa_billing_core::signature::sign(&body, &a.secret, t));
    Ok(())
}
