//! The engine: component detection, compilation with its on-disk cache, the
//! profiler choice and the epoch ticker that drives deadlines.
//!
//! Knows nothing about the plugin's world or the host's capabilities.

use super::*;

/// Compiles a component, or loads its native code from `cache` where an
/// earlier start left it. The file name is the SHA-256 of the component's
/// bytes and of this engine's compatibility hash (wasmtime version, target,
/// settings), so a changed component or engine never loads stale code.
pub(super) fn compile(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&std::path::Path>,
) -> Result<Component> {
    use sha2::Digest;
    use std::hash::{Hash, Hasher};
    let Some(dir) = cache else {
        return Component::new(engine, wasm).map_err(anyhow::Error::from);
    };
    struct Sha(sha2::Sha256);
    impl Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // unused: the digest is read directly
        }
    }
    let mut h = Sha(sha2::Sha256::new());
    h.write(wasm);
    engine.precompile_compatibility_hash().hash(&mut h);
    let name: String = h.0.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(format!("{name}.cwasm"));
    // Read into memory rather than mapped: a file replaced while mapped
    // would crash the process (SIGBUS).
    if let Ok(bytes) = std::fs::read(&path) {
        // SAFETY: loading compiled code trusts the file. It is in the
        // operator's cache directory (documented: writable by the service
        // alone), named by the component's hash, and wasmtime checks its
        // header against this engine.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a cached component")
            }
        }
    }
    let component = Component::new(engine, wasm).map_err(anyhow::Error::from)?;
    let write = || -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, component.serialize().map_err(anyhow::Error::from)?)?;
        std::fs::rename(&tmp, &path)?; // atomic: a reader never sees half a file
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"), "could not cache the compiled component");
    }
    Ok(component)
}

/// What a binary is, by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A WebAssembly component: what the host loads.
    Component,
    /// A core WebAssembly module (built without the component model).
    CoreModule,
    /// Not WebAssembly at all.
    NotWasm,
}

impl WasmKind {
    /// `wasm`'s kind, read by wasmparser from its header: the one place the
    /// host tells a component from a core module.
    pub fn of(wasm: &[u8]) -> WasmKind {
        if wasmparser::Parser::is_component(wasm) {
            WasmKind::Component
        } else if wasmparser::Parser::is_core_wasm(wasm) {
            WasmKind::CoreModule
        } else {
            WasmKind::NotWasm
        }
    }

    /// How a report names it: "component", "core module", "not WebAssembly".
    pub fn name(self) -> &'static str {
        match self {
            WasmKind::Component => "component",
            WasmKind::CoreModule => "core module",
            WasmKind::NotWasm => "not WebAssembly",
        }
    }
}

/// `PSA_BILLING_PERFMAP=1` has wasmtime write `/tmp/perf-<pid>.map`, so
/// that `perf report` names the plugin's own functions instead of showing
/// bare addresses (profiling a plugin; off otherwise).
pub(super) fn profiler() -> wasmtime::ProfilingStrategy {
    match std::env::var_os("PSA_BILLING_PERFMAP") {
        Some(v) if v == "1" => wasmtime::ProfilingStrategy::PerfMap,
        _ => wasmtime::ProfilingStrategy::None,
    }
}

/// Advances the engine's epoch every tick while the engine lives.
pub(super) fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("psa-billing-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch thread");
}
