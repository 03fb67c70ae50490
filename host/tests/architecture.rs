//! The host's module structure, as ARCHITECTURE.md states it: each
//! top-level module of `host/src` uses only the modules of the layers
//! below its own (so there is no import cycle between them), and each file
//! opens with a comment saying what it owns; each top-level module's also
//! says what it knows nothing about.
//!
//! The layers are read from ARCHITECTURE.md's "Dependency rule" block, so
//! the document and the code cannot drift apart without this test failing.
//!
//! Sizes: no file over 700 lines before its test module, and no function
//! over 100 lines outside tests, in any crate but the test crates (each
//! exception listed below with its reason).
//!
//! Below the layers, no circle between files in any crate of the
//! workspace: every `crate::`, `super::` and `self::` path (grouped and
//! multi-line imports included) is resolved to the file of the module it
//! names, and the files must form no circle. A module using its own
//! submodules is containment, not a dependency (they are its parts); every
//! other use is an edge. A re-export (`pub use child::Item` in a parent)
//! is seen as the parent's, so a circle through one is not caught.

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

/// The top-level modules named by `crate::` paths in `code` (test modules
/// included), grouped imports (`crate::{a, b::c}`) included, read by
/// [`paths_in`]. `crate::Billing`, a re-export at the root, is no module.
fn crate_refs(code: &str) -> BTreeSet<String> {
    paths_in(&without_comments(code))
        .into_iter()
        .filter(|p| p[0] == "crate")
        .filter_map(|p| p.get(1).cloned())
        .filter(|name| name.chars().next().is_some_and(char::is_lowercase))
        .collect()
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

/// The crates whose files must form no circle: every workspace member with
/// a `src/` directory.
const CRATES: &[&str] = &[
    "host",
    "plugin/core",
    "plugin/component",
    "tests",
    "tests/hostile-plugin",
    "tests/hostile-fee-rules",
    "examples/embed-axum",
    "examples/volume-discount-rules",
    "examples/fee-rules-template",
    "bench",
];

/// A module's path from its crate's root (`["api", "billing"]`).
type ModPath = Vec<String>;

/// The module a file of `src` holds; `None` for a binary's root
/// (`main.rs`, `bin/*`), which is a crate of its own.
fn module_path(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_str().unwrap().to_string())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") || parts == ["main.rs"] {
        return None;
    }
    let last = parts.pop().unwrap();
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        f => parts.push(f.trim_end_matches(".rs").to_string()),
    }
    Some(parts)
}

/// `code` without comments and string literals.
fn without_comments(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut chars = code.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            // A char literal holding a quote would open a string.
            '\'' if chars.peek() == Some(&'"') => {
                chars.next();
            }
            c => out.push(c),
        }
    }
    out
}

/// Every module path written in `code`, each from its start (`crate`,
/// `super`, `self`): `use crate::{a::{b, c}, d}` gives `crate::a::b`,
/// `crate::a::c` and `crate::d`.
fn paths(code: &str) -> Vec<Vec<String>> {
    // The test module at a file's end: its `super::` is the file itself.
    let code = code.split("#[cfg(test)]\nmod tests").next().unwrap();
    paths_in(&without_comments(code))
}

/// [`paths`] in code already without comments and strings.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if at > 0 && (ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue; // `psa_billing::self::` or the middle of a path
            }
            let head = start.trim_end_matches("::").to_string();
            expand(&code[from..], vec![head], &mut found);
        }
    }
    found
}

/// Reads one path after `prefix` from `rest`, groups expanded.
fn expand(rest: &str, prefix: Vec<String>, found: &mut Vec<Vec<String>>) {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&item, prefix.clone(), found);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        expand(&item, prefix, found);
        return;
    }
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() || name == "self" {
        found.push(prefix);
        return;
    }
    let mut path = prefix;
    path.push(name.clone());
    match rest[name.len()..].trim_start().strip_prefix("::") {
        Some(more) => expand(more, path, found),
        None => found.push(path),
    }
}

/// The module of `modules` a path written in module `at` names: the
/// longest prefix of it that is a module.
fn resolve(at: &ModPath, path: &[String], modules: &BTreeSet<ModPath>) -> ModPath {
    let (mut base, mut rest): (ModPath, &[String]) = match path[0].as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (at.clone(), &path[1..]),
        _ => (at.clone(), path), // super: popped below
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    for segment in rest {
        let mut next = base.clone();
        next.push(segment.clone());
        if !modules.contains(&next) {
            break;
        }
        base = next;
    }
    base
}

/// The circles between the files of the crate whose sources are in `src`:
/// each a list of modules (`crate::a`, `crate::b`) that reach each other.
fn circles(src: &Path) -> Vec<Vec<String>> {
    let files: Vec<(ModPath, PathBuf)> = files(src)
        .into_iter()
        .filter_map(|f| Some((module_path(src, &f)?, f)))
        .collect();
    let modules: BTreeSet<ModPath> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, file) in &files {
        let code = std::fs::read_to_string(file).unwrap();
        for path in paths(&code) {
            let used = resolve(module, &path, &modules);
            // Itself, or one of its own parts: not a dependency.
            if used.starts_with(module) {
                continue;
            }
            edges.entry(module.clone()).or_default().insert(used);
        }
    }
    strongly_connected(&modules, &edges)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|scc| {
            scc.iter()
                .map(|m| format!("crate::{}", m.join("::")))
                .collect()
        })
        .collect()
}

/// The strongly connected components of the graph (Tarjan's algorithm).
fn strongly_connected(
    nodes: &BTreeSet<ModPath>,
    edges: &BTreeMap<ModPath, BTreeSet<ModPath>>,
) -> Vec<Vec<ModPath>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on_stack: BTreeSet<ModPath>,
        out: Vec<Vec<ModPath>>,
    }
    fn visit(w: &mut Walk, v: &ModPath) {
        let i = w.index.len();
        w.index.insert(v.clone(), i);
        w.low.insert(v.clone(), i);
        w.stack.push(v.clone());
        w.on_stack.insert(v.clone());
        for u in w.edges.get(v).into_iter().flatten() {
            if !w.index.contains_key(u) {
                visit(w, u);
                let low = w.low[v].min(w.low[u]);
                w.low.insert(v.clone(), low);
            } else if w.on_stack.contains(u) {
                let low = w.low[v].min(w.index[u]);
                w.low.insert(v.clone(), low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut scc = Vec::new();
            loop {
                let u = w.stack.pop().unwrap();
                w.on_stack.remove(&u);
                let done = &u == v;
                scc.push(u);
                if done {
                    break;
                }
            }
            scc.sort();
            w.out.push(scc);
        }
    }
    let mut w = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !w.index.contains_key(v) {
            visit(&mut w, v);
        }
    }
    w.out
}

#[test]
fn no_crate_has_a_circle_between_its_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for krate in CRATES {
        let src = root.join(krate).join("src");
        assert!(src.is_dir(), "{krate}/src is a workspace crate's sources");
        for circle in circles(&src) {
            found.push(format!("{krate}: {}", circle.join(" ⇄ ")));
        }
    }
    assert!(
        found.is_empty(),
        "circles between files:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_circle_between_files_is_found() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/circle/src");
    assert_eq!(
        circles(&fixture),
        [vec![
            "crate::shop::orders".to_string(),
            "crate::shop::stock".to_string(),
            "crate::shop::stock::count".to_string(),
        ]],
        "orders → stock::count (a multi-line group) → stock (super) → orders (self::super)"
    );
}

#[test]
fn the_path_reader_expands_groups_and_skips_comments_and_strings() {
    let code = "use crate::{a::{b, c::D}, e};\nuse super::super::f::G;\n\
                // crate::hidden\nlet s = \"crate::in_string\"; let _ = self::h::i();";
    let got: Vec<String> = paths(code).into_iter().map(|p| p.join("::")).collect();
    assert_eq!(
        got,
        [
            "crate::a::b",
            "crate::a::c::D",
            "crate::e",
            "super::super::f::G",
            "self::h::i"
        ]
    );
}

/// The most lines a file may have before its test module.
const MAX_FILE_LINES: usize = 700;
/// The most lines a function may have, its signature and braces included.
const MAX_FN_LINES: usize = 100;
/// Files and functions allowed past the limits, and why.
const SIZE_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "bench/src/main.rs",
        "the benchmark tool: one program of phases, measured as a whole",
    ),
    (
        "bench/src/main.rs::main",
        "the benchmark's phases in the order they run, each printed as it ends",
    ),
    (
        "host/src/storage/committer.rs::commit_group",
        "one body instantiated for both databases by `on_pool!`: its steps \
         as functions would need sqlx's generic executor bounds",
    ),
];

/// The non-test lines of `code`: up to its `#[cfg(test)]` module.
fn non_test_lines(code: &str) -> Vec<&str> {
    code.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .collect()
}

/// Each function of `lines` (by its name) and how many lines it spans.
fn function_lengths(lines: &[&str]) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = line.len() - code.len();
        let mut words = code.split_whitespace().peekable();
        while words
            .peek()
            .is_some_and(|w| w.starts_with("pub") || ["async", "const", "unsafe"].contains(w))
        {
            words.next();
        }
        if words.next() != Some("fn") {
            continue;
        }
        let name: String = words
            .next()
            .unwrap_or_default()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body closes on the first later line at the same indentation
        // that starts with `}`; a declaration without a body has none
        // before the next item.
        let close = lines[at + 1..].iter().position(|l| {
            let t = l.trim_start();
            l.len() - t.len() == indent && t.starts_with('}')
        });
        let bodyless = code.trim_end().ends_with(';');
        if let (Some(close), false) = (close, bodyless) {
            found.push((name, close + 2));
        }
    }
    found
}

#[test]
fn no_file_or_function_is_past_its_size() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut over = Vec::new();
    for krate in CRATES.iter().filter(|k| !k.starts_with("tests")) {
        // A module's tests in files of their own (`mod tests;`: `tests.rs`
        // or a `tests/` folder) are tests.
        let src = root.join(krate).join("src");
        let sources = files(&src).into_iter().filter(|f| {
            !f.ends_with("tests.rs")
                && !f
                    .strip_prefix(&src)
                    .unwrap()
                    .components()
                    .any(|c| c.as_os_str() == "tests")
        });
        for file in sources {
            let rel = file
                .strip_prefix(&root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let code = std::fs::read_to_string(&file).unwrap();
            let lines = non_test_lines(&code);
            let excepted = |what: &str| SIZE_EXCEPTIONS.iter().any(|(e, _)| *e == what);
            if lines.len() > MAX_FILE_LINES && !excepted(&rel) {
                over.push(format!("{rel}: {} lines", lines.len()));
            }
            for (name, length) in function_lengths(&lines) {
                let what = format!("{rel}::{name}");
                if length > MAX_FN_LINES && !excepted(&what) {
                    over.push(format!("{what}: {length} lines"));
                }
            }
        }
    }
    assert!(
        over.is_empty(),
        "past {MAX_FILE_LINES} lines a file or {MAX_FN_LINES} a function:\n{}",
        over.join("\n")
    );
}

#[test]
fn function_lengths_count_from_signature_to_closing_brace() {
    let code = "fn a() {\n    let x = 1;\n}\n\npub(crate) async fn b(\n    y: u8,\n) -> u8 {\n    y\n}\n    fn c();\n";
    let lines: Vec<&str> = code.lines().collect();
    assert_eq!(
        function_lengths(&lines),
        [("a".to_string(), 3), ("b".to_string(), 5)]
    );
}
