//! The `webhooks` export: signature verification (HMAC through the
//! `crypto` import), envelope parsing, thin events, and `handle`, the
//! mapping of an event to effects over the host's staged storage.

use crate::bindings::Plugin;
use crate::bindings::exports::psa::billing::webhooks::{
    self, Delivery, Effect, Envelope, HandleError, VerifyError,
};
use crate::bindings::psa::billing::{clock, crypto, log};
use crate::convert::{parse_error, wit_envelope};
use crate::imports::HostState;
use psa_billing_core::{event, mapping, signature, thin};

impl webhooks::Guest for Plugin {
    fn verify(d: Delivery) -> Result<Envelope, VerifyError> {
        verify_signature(&d)?;
        Self::parse(d.body)
    }

    fn parse(body: Vec<u8>) -> Result<Envelope, VerifyError> {
        event::parse_envelope(&body)
            .map(wit_envelope)
            .map_err(parse_error)
    }

    fn verify_thin(d: Delivery) -> Result<webhooks::ThinEnvelope, VerifyError> {
        verify_signature(&d)?;
        thin::parse_thin(&d.body)
            .map(|t| webhooks::ThinEnvelope {
                id: t.id,
                event_type: t.event_type,
                context: t.context,
                related_url: t.related_url,
            })
            .map_err(parse_error)
    }

    fn snapshot_from_thin(
        event: Vec<u8>,
        related: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, VerifyError> {
        thin::snapshot_from_thin(&event, related.as_deref()).map_err(parse_error)
    }

    fn handle(body: Vec<u8>, routing: webhooks::Routing) -> Result<Vec<Effect>, HandleError> {
        let routing = {
            let webhooks::Routing {
                tenant_keys,
                reference_keys,
                license_prices,
            } = routing;
            let mut r = mapping::Routing::or_defaults(tenant_keys, reference_keys);
            r.license_prices = license_prices;
            r
        };
        let effects = mapping::handle_with(&body, &routing, &mut HostState).map_err(|e| {
            log::log(log::Level::Warn, &e.to_string());
            match e {
                mapping::HandleError::Malformed(m) => HandleError::MalformedPayload(m),
                mapping::HandleError::MissingField(f) => HandleError::MissingField(f),
                mapping::HandleError::Storage(m) => HandleError::Storage(m),
                mapping::HandleError::NotReady(m) => HandleError::NotReady(m),
            }
        })?;
        Ok(effects
            .into_iter()
            .map(crate::convert::effects::wit_effect)
            .collect())
    }
}

fn verify_signature(d: &Delivery) -> Result<(), VerifyError> {
    use signature::SignatureError as S;
    signature::verify_with(
        &d.body,
        d.signature_header.as_deref(),
        &d.secrets,
        d.tolerance_seconds,
        clock::now(),
        |secret, timestamp, body| {
            let tag = crypto::hmac_sha256(secret, &signature::signed_payload(timestamp, body));
            // A broken host traps the call (a made-up tag could match).
            tag.try_into()
                .expect("the host's hmac-sha256 answers 32 bytes")
        },
    )
    .map_err(|e| match e {
        S::Missing => VerifyError::MissingSignature,
        S::Malformed(m) => VerifyError::MalformedHeader(m),
        S::NoMatch => VerifyError::NoMatchingSignature,
        S::TooOld(s) => VerifyError::TimestampTooOld(s),
        S::InFuture(s) => VerifyError::TimestampInFuture(s),
        S::NoSecret => VerifyError::NoSecretConfigured,
    })?;
    Ok(())
}
