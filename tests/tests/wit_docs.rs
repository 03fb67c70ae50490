//! The WIT contract is documented: every interface, world, type, field,
//! case and function has a `///` comment above it; and the names the
//! Stripe allow-list takes are the `stripe` interface's functions.

#[test]
fn every_wit_item_has_a_doc_comment() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wit"))
        .collect();
    files.sort();
    assert!(files.len() > 1, "the package is one file per interface");
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        missing.extend(
            undocumented(&text)
                .into_iter()
                .map(|m| format!("{name}:{m}")),
        );
    }
    assert!(
        missing.is_empty(),
        "undocumented in wit/:\n{}",
        missing.join("\n")
    );
}

/// The items of one WIT file without a `///` comment above them.
fn undocumented(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let starts_item = [
            "record ",
            "variant ",
            "enum ",
            "interface ",
            "world ",
            "resource ",
            "flags ",
        ]
        .iter()
        .any(|k| t.starts_with(k));
        // A field (`name: type,`), a function (`name: func(...)`), or a case.
        let named = t.split([':', '(', ',']).next().is_some_and(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
        let field_or_case =
            named && (t.ends_with(',') || t.ends_with(';')) && !t.starts_with("use ");
        let is_import = t.starts_with("import ") || t.starts_with("export ");
        if (starts_item || field_or_case) && !is_import {
            let documented = i > 0 && lines[i - 1].trim().starts_with("///");
            if !documented {
                missing.push(format!("{}: {t}", i + 1));
            }
        }
    }
    missing
}

/// `PSA_BILLING_STRIPE_ALLOW` takes `psa_billing::stripe::OPERATIONS`: every
/// function of `wit/stripe.wit`, and the host's own
/// `list-balance-transactions` (reconciliation), nothing else.
#[test]
fn the_stripe_allow_list_names_every_stripe_import() {
    let wit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/stripe.wit"),
    )
    .unwrap();
    let imports: std::collections::BTreeSet<&str> = wit
        .lines()
        .filter_map(|l| l.trim().split_once(": func(").map(|(name, _)| name))
        .collect();
    assert!(imports.contains("advance-invoice"), "{imports:?}");
    let listed: std::collections::BTreeSet<&str> = psa_billing::stripe::OPERATIONS
        .iter()
        .copied()
        .filter(|name| *name != "list-balance-transactions")
        .collect();
    assert_eq!(listed, imports);
}
