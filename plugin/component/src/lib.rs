//! The default billing plugin as a WebAssembly component. A thin layer: it
//! converts between the WIT types and `psa-billing-core`, and adapts the
//! host's `storage`, `log` and `clock` imports. All logic is in the core crate.
//!
//! Built by the host's build script with `cargo build --target wasm32-wasip2`;
//! on any other target this crate is empty.

#[cfg(target_arch = "wasm32")]
mod effect_glue;
#[cfg(target_arch = "wasm32")]
mod glue;
#[cfg(target_arch = "wasm32")]
mod operations;
