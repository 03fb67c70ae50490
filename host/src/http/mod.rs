//! HTTP: the router of the webhook endpoints and the `/v1` API, the
//! bodies it answers with, its OpenAPI document, the operator console, and
//! the listener that serves it with limits on connections, headers and idle
//! time.
//!
//! Knows nothing about how a delivery is handled or stored: it calls the
//! pipeline and the application calls in `api`, and maps their answers to
//! statuses.

pub mod bodies;
pub mod console;
pub mod listener;
pub mod openapi;
pub mod router;
pub mod throttle;

pub use listener::{HttpLimits, serve};
pub use router::{DEFAULT_MAX_BODY_BYTES, ServerOptions, openapi_document, router, router_with};
