//! The WIT contract is documented: every interface, world, type, field,
//! case and function has a `///` comment above it.

#[test]
fn every_wit_item_has_a_doc_comment() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/billing.wit");
    let text = std::fs::read_to_string(path).unwrap();
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
    assert!(
        missing.is_empty(),
        "undocumented in wit/billing.wit:\n{}",
        missing.join("\n")
    );
}
