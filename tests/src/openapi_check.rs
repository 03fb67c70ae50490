//! Holds the HTTP API to its OpenAPI document: every answer a
//! [`crate::TestServer`] receives is looked up in the document (path
//! template, method, status) and its JSON body validated against the
//! schema the document gives, so each end-to-end test also checks that the
//! document tells the truth about what it saw. A status the document does
//! not list, or a body its schema refuses, fails the test.
//!
//! Knows nothing about the tests that make the requests. Paths the
//! document does not have (an application's own extra routes, a path that
//! does not exist) are left alone.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The document the server serves, as JSON.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        serde_json::to_value(psa_billing::http::openapi_document()).expect("the document is JSON")
    })
}

/// The document's path template that `path` (without its query) is an
/// instance of; a literal segment beats a `{parameter}`.
pub fn template_of(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    let paths = document()["paths"].as_object()?;
    paths
        .keys()
        .filter_map(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut parameters = 0;
            for (part, segment) in parts.iter().zip(&segments) {
                if part.starts_with('{') && part.ends_with('}') {
                    if segment.is_empty() {
                        return None;
                    }
                    parameters += 1;
                } else if part != segment {
                    return None;
                }
            }
            Some((parameters, template.as_str()))
        })
        .min()
        .map(|(_, template)| template)
}

type Validators = Mutex<HashMap<String, Arc<jsonschema::Validator>>>;

/// A validator of the schema at `pointer` in the document, whose `$ref`s
/// resolve against the document's components.
fn validator(pointer: &str) -> Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Validators> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap().get(pointer) {
        return v.clone();
    }
    let doc = document();
    let schema = doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("the document has {pointer}"));
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let compiled = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap_or_else(|e| panic!("the schema at {pointer} compiles: {e}"));
    let compiled = Arc::new(compiled);
    cache
        .lock()
        .unwrap()
        .insert(pointer.to_string(), compiled.clone());
    compiled
}

/// Checks one answer against the document; panics, saying why, when the
/// document does not describe it.
pub fn check(method: &str, path: &str, status: u16, content_type: Option<&str>, body: &Value) {
    let Some(template) = template_of(path) else {
        return;
    };
    let method = method.to_ascii_lowercase();
    let Some(operation) = document()["paths"][template].get(&method) else {
        return; // 405: axum's answer, not an operation's
    };
    let status_key = status.to_string();
    let Some(response) = operation["responses"].get(&status_key) else {
        panic!(
            "{} {path} answered {status}, which the OpenAPI document does not list for {template} (it lists {:?}): {body}",
            method.to_uppercase(),
            operation["responses"]
                .as_object()
                .map(|r| r.keys().collect::<Vec<_>>())
                .unwrap_or_default()
        );
    };
    let media = content_type
        .and_then(|c| c.split(';').next())
        .unwrap_or("")
        .trim()
        .to_string();
    let Some(content) = response["content"].get(&media) else {
        panic!(
            "{} {path} answered {status} as {media:?}, which the document does not give for it: {body}",
            method.to_uppercase()
        );
    };
    if media != "application/json" || content.get("schema").is_none() {
        return;
    }
    let pointer = format!(
        "/paths/{}/{method}/responses/{status_key}/content/application~1json/schema",
        template.replace('~', "~0").replace('/', "~1")
    );
    let errors: Vec<String> = validator(&pointer)
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} {path} answered {status} with a body the OpenAPI document's schema refuses:\n  {}\nbody: {body}",
        method.to_uppercase(),
        errors.join("\n  ")
    );
}
