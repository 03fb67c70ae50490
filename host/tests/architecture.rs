//! The host's module structure, as ARCHITECTURE.md states it: each
//! top-level module of `host/src` uses only the modules of the layers
//! below its own (so there is no import cycle between them), and each file
//! opens with a comment saying what it owns; each top-level module's also
//! says what it knows nothing about.
//!
//! The layers are read from ARCHITECTURE.md's "Dependency rule" block, so
//! the document and the code cannot drift apart without this test failing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layers, lowest first, from the fenced block that follows the
/// "## Dependency rule" heading: one line per layer, modules separated by
/// commas, layers by lines holding `←`.
fn layers() -> Vec<BTreeSet<String>> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md beside host/");
    let section = doc
        .split("## Dependency rule")
        .nth(1)
        .expect("ARCHITECTURE.md has a \"## Dependency rule\" section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the rule is a fenced block");
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "←")
        .map(|l| l.split(',').map(|m| m.trim().to_string()).collect())
        .collect()
}

/// Every `.rs` file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The top-level module a file of `host/src` belongs to (`None`: the crate
/// root and the binary, which wire modules together).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The top-level modules named by `crate::` paths in `code`, grouped
/// imports (`crate::{a, b::c}`) included. Comments are skipped.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let name: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != "self" {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // `crate::Billing`: a re-export at the root, not a module.
                if name.chars().next().is_some_and(char::is_lowercase) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let layers = layers();
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (m.as_str(), i)))
        .collect();
    let mut modules = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in files(&src()) {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let Some(&own) = layer_of.get(module.as_str()) else {
            panic!(
                "{} belongs to module `{module}`, which the dependency rule in ARCHITECTURE.md does not place",
                file.display()
            );
        };
        modules.insert(module.clone());
        let code = std::fs::read_to_string(&file).unwrap();
        for used in crate_refs(&code) {
            if used == module {
                continue;
            }
            match layer_of.get(used.as_str()) {
                Some(&layer) if layer < own => {}
                Some(_) => wrong.push(format!(
                    "{}: `{module}` uses `{used}`, which is not in a layer below it",
                    file.display()
                )),
                None => wrong.push(format!(
                    "{}: `{module}` uses `crate::{used}`, which the rule does not place",
                    file.display()
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the dependency rule is broken:\n{}",
        wrong.join("\n")
    );
    let placed: BTreeSet<String> = layers.into_iter().flatten().collect();
    let gone: Vec<_> = placed.difference(&modules).collect();
    assert!(
        gone.is_empty(),
        "ARCHITECTURE.md places modules that do not exist: {gone:?}"
    );
}

#[test]
fn every_file_says_what_it_owns_and_each_module_what_it_knows_nothing_about() {
    let mut missing = Vec::new();
    for file in files(&src()) {
        let code = std::fs::read_to_string(&file).unwrap();
        let opening: String = code
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        if opening.is_empty() {
            missing.push(format!("{}: no opening `//!` comment", file.display()));
            continue;
        }
        let rel = file.strip_prefix(src()).unwrap();
        let is_module_root = rel.components().count() == 1
            && !matches!(rel.to_str(), Some("lib.rs" | "main.rs"))
            || rel.ends_with("mod.rs") && rel.components().count() == 2;
        if is_module_root && !opening.to_lowercase().contains("knows nothing") {
            missing.push(format!(
                "{}: the opening comment does not say what the module knows nothing about",
                file.display()
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_reference_scanner_sees_plain_and_grouped_paths() {
    let refs = crate_refs(
        "use crate::storage::Db;\nuse crate::{api::ApiFailure, clock};\n// crate::http in a comment\nlet x = crate::Billing::builder();",
    );
    assert_eq!(
        refs,
        ["api", "clock", "storage"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}
