//! The OpenAPI document: the one served is the one committed as
//! `docs/openapi.json` (`BLESS=1` rewrites it), it is a valid OpenAPI 3.1
//! document (the OpenAPI Initiative's schema) whose schemas are valid JSON
//! Schema 2020-12, and it covers the bearer scheme and the error bodies.
//! That answers match it is checked on every request the end-to-end tests
//! make (`psa_billing_tests::openapi_check`); the last test here shows that
//! check refusing what the document does not say.

use psa_billing_tests::openapi_check::{check, document, template_of};
use psa_billing_tests::{API_TOKEN, Options, TestServer};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let server = TestServer::start(Options::default()).await;
    let r = server
        .client
        .get(server.url("/v1/openapi.json"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served = r.text().await.unwrap();
    let committed_path = repo("docs/openapi.json");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&committed_path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        served == committed,
        "docs/openapi.json is not what GET /v1/openapi.json serves: \
         run `BLESS=1 cargo test -p psa-billing-tests --test openapi` and commit it"
    );

    // Behind the token like every /v1 route.
    let anonymous = server.get("/v1/openapi.json", None).await;
    assert_eq!(anonymous.status, 401, "{:?}", anonymous.body);
}

#[test]
fn the_document_is_valid_openapi_3_1() {
    let oas: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/openapi/oas-3.1-schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&oas)
        .expect("the OpenAPI 3.1 schema compiles");
    let doc = document();
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not OpenAPI 3.1:\n{}", errors.join("\n"));
    assert_eq!(doc["openapi"], "3.1.0");
    // The schema does refuse a broken document.
    let mut broken = doc.clone();
    broken["paths"]["/v1/tenants"]["get"]["responses"]["200"] = json!({"content": {}});
    assert!(
        !validator.is_valid(&broken),
        "a response without a description"
    );

    // Each schema is a JSON Schema 2020-12 schema.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for (name, schema) in schemas {
        let mut schema = schema.clone();
        schema["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("components.schemas.{name} is not a valid JSON Schema: {e}");
        }
    }

    // Every $ref points at a schema the document has.
    let mut refs = BTreeSet::new();
    collect_refs(doc, &mut refs);
    for r in &refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r} is not a component schema"));
        assert!(schemas.contains_key(name), "{r} is not in the document");
    }
}

fn collect_refs(v: &Value, into: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                into.insert(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

#[test]
fn every_route_operation_and_error_is_in_the_document() {
    let doc = document();
    let paths = doc["paths"].as_object().unwrap();
    // Each operation and quote flow has its own path, with its own input.
    for name in psa_billing::api::dispatch::NAMES {
        let post = &paths[&format!("/v1/operations/{name}")]["post"];
        let input = &post["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        assert!(input.is_string(), "{name} has an input schema");
        assert!(
            post["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].is_string()
        );
    }
    for flow in psa_billing::api::quotes::FLOWS {
        assert!(paths.contains_key(&format!("/v1/quote/{flow}")), "{flow}");
    }
    for template in ["/v1/operations/{operation}", "/v1/quote/{flow}"] {
        assert!(!paths.contains_key(template), "{template} is expanded");
    }
    assert!(paths.contains_key("/webhooks/stripe"));
    assert!(paths.contains_key("/v1/effects/stream"));

    // The bearer scheme on every /v1 operation, none on the webhooks.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({"type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearer"]["description"]})
    );
    let mut ids = BTreeSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            let responses = op["responses"].as_object().unwrap();
            if path.starts_with("/v1/") {
                assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
                for status in ["401", "403", "503"] {
                    assert!(responses.contains_key(status), "{method} {path} {status}");
                }
            } else {
                assert!(op.get("security").is_none(), "{method} {path} is open");
            }
            // Every error answer is an ErrorBody.
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_check_refuses_what_the_document_does_not_say() {
    let json_type = Some("application/json");
    assert_eq!(
        template_of("/v1/tenants/acct_1"),
        Some("/v1/tenants/{account}")
    );
    assert_eq!(template_of("/v1/tenants"), Some("/v1/tenants"));
    assert_eq!(
        template_of("/v1/operations/refund"),
        Some("/v1/operations/refund")
    );
    assert_eq!(template_of("/nowhere"), None);

    // What the document says passes.
    check(
        "GET",
        "/v1/tenants/acct_1",
        200,
        json_type,
        &json!({"account": "acct_1", "tenant": "t1"}),
    );
    check(
        "GET",
        "/v1/tenants/acct_1",
        404,
        json_type,
        &json!({"error": "not_registered", "reason": "acct_1 is not registered to a tenant"}),
    );
    let refused = |f: fn()| std::panic::catch_unwind(f).is_err();
    // A wrong type, a missing field, a status or a media type not listed.
    assert!(refused(|| check(
        "GET",
        "/v1/tenants/acct_1",
        200,
        Some("application/json"),
        &json!({"account": 7, "tenant": "t1"}),
    )));
    assert!(refused(|| check(
        "GET",
        "/v1/tenants/acct_1",
        404,
        Some("application/json"),
        &json!({"reason": "no error code"}),
    )));
    assert!(refused(|| check(
        "GET",
        "/v1/tenants/acct_1",
        418,
        Some("application/json"),
        &json!({"error": "teapot", "reason": ""}),
    )));
    assert!(refused(|| check(
        "GET",
        "/v1/tenants/acct_1",
        200,
        Some("text/html"),
        &json!("<p>acct_1</p>"),
    )));
    // An operation's result is checked against its own schema.
    assert!(refused(|| check(
        "POST",
        "/v1/quote",
        200,
        Some("application/json"),
        &json!({"gross": {"amount": "ten"}}),
    )));
}
