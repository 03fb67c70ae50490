//! Builds the default plugin component (`plugin/component`) for
//! `wasm32-wasip2` so that the host can embed it: building or testing the
//! workspace needs no manual step. It also builds the hostile test components
//! (`tests/hostile-plugin`, `tests/hostile-fee-rules`) and the example custom fee rules
//! (`examples/volume-discount-rules`), which tests load by path; they are
//! never embedded.
//!
//! The nested cargo gets its own target directory (sharing ours would
//! deadlock on the build lock) and a scrubbed environment (the outer build's
//! flags and wrappers are for the host target, not wasm).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    for p in [
        "plugin/component",
        "plugin/core",
        "tests/hostile-plugin",
        "tests/hostile-fee-rules",
        "examples/volume-discount-rules",
        "examples/fee-rules-template",
        "wit",
        "Cargo.lock",
        // sqlx::migrate! embeds these when db.rs compiles: a new file must
        // recompile it.
        "host/migrations",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }
    ensure_target();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target_dir = out_dir.join("plugin-target");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--locked"])
        .args([
            "-p",
            "psa-billing-plugin",
            "-p",
            "psa-billing-hostile-plugin",
            "-p",
            "psa-billing-hostile-fee-rules",
            "-p",
            "volume-discount-rules",
            "-p",
            "fee-rules-template",
        ])
        .args(["--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // Whole-program optimisation for the components only (the host's
        // release build stays as it is): inlining across the core crate and
        // serde_json is worth more in wasm, where every call is a real one.
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || matches!(
                key.as_str(),
                "CARGO_ENCODED_RUSTFLAGS"
                    | "RUSTFLAGS"
                    | "CARGO_TARGET_DIR"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTC_WRAPPER"
                    | "CARGO_BUILD_TARGET"
                    | "CARGO_MAKEFLAGS"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "CARGO_LLVM_COV"
            )
        {
            cmd.env_remove(&key);
        }
    }
    let status = cmd
        .status()
        .expect("could not run cargo to build the plugin component");
    if !status.success() {
        panic!("building the plugin component for {TARGET} failed (see the output above)");
    }
    for name in [
        "psa_billing_plugin.wasm",
        "psa_billing_hostile_plugin.wasm",
        "psa_billing_hostile_fee_rules.wasm",
        "volume_discount_rules.wasm",
        "fee_rules_template.wasm",
    ] {
        let built = target_dir.join(TARGET).join("release").join(name);
        std::fs::copy(&built, out_dir.join(name))
            .unwrap_or_else(|e| panic!("component missing at {}: {e}", built.display()));
    }
}

/// `RUSTUP_AUTO_INSTALL=0` means rust-toolchain.toml alone does not install
/// a missing target: add it here, and fail clearly when that is impossible.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = |root: &Path| root.join("lib/rustlib").join(TARGET).join("lib").is_dir();
    if sysroot.as_deref().is_some_and(installed) {
        return;
    }
    println!("cargo:warning=installing the {TARGET} target with rustup");
    let mut add = Command::new("rustup");
    add.args(["target", "add", TARGET]);
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        add.args(["--toolchain", &toolchain]);
    }
    match add.status() {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`rustup target add {TARGET}` failed ({s}); install the target by hand and build again"
        ),
        Err(e) => panic!(
            "the {TARGET} target is missing and rustup could not be run ({e}); \
             install the target (rustup target add {TARGET}) and build again"
        ),
    }
}
