//! The default billing plugin as a WebAssembly component. A thin layer: it
//! converts between the WIT types and `psa-billing-core` (`convert`),
//! implements each exported interface (`exports/`, one file each), and
//! adapts the host's imports (`imports`). The logic is in the core crate,
//! except the operations' orchestration of Stripe calls
//! (`exports/operations.rs`).
//!
//! Built by the host's build script with `cargo build --target wasm32-wasip2`;
//! on any other target this crate is empty.

#[cfg(target_arch = "wasm32")]
mod bindings;
#[cfg(target_arch = "wasm32")]
mod convert;
#[cfg(target_arch = "wasm32")]
mod exports;
#[cfg(target_arch = "wasm32")]
mod imports;
