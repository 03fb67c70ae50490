//! The OpenAPI 3.1 document of the HTTP API, finished from the operations
//! the router registers with each route (`#[utoipa::path]` on every
//! handler): the document's info and tags, the bearer scheme on every `/v1`
//! path with the answers the token layer gives, and one path per operation
//! and per quote flow, each with its own input and result schema, where the
//! router has one route for all of them.
//!
//! Knows nothing about serving: the router hands it the route list's
//! operations and serves what it returns. Schemas come from the types the
//! handlers and the application calls serialise (derived with `ToSchema`),
//! the WIT records included (derived on the generated bindings).

use crate::api::quotes as q;
use utoipa::ToSchema;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    Components, Content, InfoBuilder, LicenseBuilder, OpenApi, Ref, RefOr, Required, Response,
    ResponseBuilder,
};

/// The name of the bearer scheme in `components.securitySchemes`.
pub const BEARER: &str = "bearer";

/// The route template the router serves every operation on.
const OPERATION_TEMPLATE: &str = "/v1/operations/{operation}";
/// The route template the router serves every quote flow on.
const FLOW_TEMPLATE: &str = "/v1/quote/{flow}";

/// One path of the document behind a template route.
struct Expansion {
    /// The path segment (`charge-invoice`).
    name: &'static str,
    /// The operation's one-line summary.
    summary: &'static str,
    /// Registers the input and result schemas; answers their names.
    schemas: fn(&mut Components) -> (String, String),
}

/// Registers `I` and `O` (and what they refer to) as component schemas.
fn pair<I: ToSchema, O: ToSchema>(components: &mut Components) -> (String, String) {
    (register::<I>(components), register::<O>(components))
}

fn register<T: ToSchema>(components: &mut Components) -> String {
    let mut all = Vec::new();
    T::schemas(&mut all);
    let name = T::name().to_string();
    all.push((name.clone(), T::schema()));
    for (name, schema) in all {
        // Two types with one name (a WIT record and an API type, say)
        // would silently share a schema.
        if let Some(known) = components.schemas.get(&name) {
            assert!(*known == schema, "two different types are named {name}");
        } else {
            components.schemas.insert(name, schema);
        }
    }
    name
}

/// One path per operation of the table (`crate::api::table`), in its
/// order, with its input and result types.
macro_rules! expansions {
    ($($method:ident $name:literal in $module:ident: $input:ident => $output:ident,
        $summary:literal, owns $owns:tt;)*) => {
        const OPERATIONS: &[Expansion] = &[$(Expansion {
            name: $name,
            summary: $summary,
            schemas: pair::<crate::api::$module::$input, crate::runtime::$output>,
        }),*];
    };
}

crate::api::table::operations_table!(expansions);

/// Every flow of [`q::FLOWS`], in its order.
const FLOWS: &[Expansion] = &[
    Expansion {
        name: "escrow",
        summary: "An escrow offer's movements at each stage",
        schemas: pair::<q::EscrowQuoteInput, q::QuotedEscrow>,
    },
    Expansion {
        name: "wallet",
        summary: "Check a wallet deposit or withdrawal against the rules' limits",
        schemas: pair::<q::WalletQuoteInput, q::QuotedWalletMove>,
    },
    Expansion {
        name: "invoice",
        summary: "An invoice's totals (discounts, exclusive and inclusive taxes)",
        schemas: pair::<q::InvoiceQuoteInput, q::QuotedInvoice>,
    },
    Expansion {
        name: "seats",
        summary: "The proration of a seat-count change",
        schemas: pair::<q::SeatsQuoteInput, q::QuotedSeats>,
    },
    Expansion {
        name: "refund",
        summary: "A refund's split between the tenant and the platform",
        schemas: pair::<q::RefundQuoteInput, q::QuotedRefund>,
    },
];

/// The finished document: `open` (webhooks, health, metrics) and `v1`
/// (behind the bearer token) as the router registered them.
pub fn document(open: OpenApi, v1: OpenApi) -> OpenApi {
    let names: Vec<&str> = OPERATIONS.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        crate::api::dispatch::NAMES,
        "every operation is documented, in order"
    );
    let flows: Vec<&str> = FLOWS.iter().map(|e| e.name).collect();
    assert_eq!(flows, q::FLOWS, "every quote flow is documented, in order");

    let mut v1 = v1;
    expand(
        &mut v1,
        OPERATION_TEMPLATE,
        "/v1/operations/",
        "",
        OPERATIONS,
    );
    expand(&mut v1, FLOW_TEMPLATE, "/v1/quote/", "quote_", FLOWS);
    for (path, item) in v1.paths.paths.iter_mut() {
        assert!(path.starts_with("/v1/"), "{path} is under /v1");
        for operation in operations(item) {
            behind_token(operation);
        }
    }
    let mut api = open;
    api.merge(v1);
    api.info = InfoBuilder::new()
        .title("psa-billing")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(
            LicenseBuilder::new()
                .name(env!("CARGO_PKG_LICENSE"))
                .build(),
        ))
        .build();
    let components = api.components.get_or_insert_with(Components::new);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The API token the service was started with (`PSA_BILLING_API_TOKEN`). \
                     Without one configured, every `/v1` route answers 403 `api_closed`.",
                ))
                .build(),
        ),
    );
    api.tags = Some(
        TAGS.iter()
            .map(|(name, description)| {
                TagBuilder::new()
                    .name(*name)
                    .description(Some(*description))
                    .build()
            })
            .collect(),
    );
    api
}

/// The document as served and committed: pretty JSON, with a final newline.
pub fn to_json(api: &OpenApi) -> String {
    let mut text = serde_json::to_string_pretty(api).expect("the document serializes");
    text.push('\n');
    text
}

const DESCRIPTION: &str = "Stripe billing for PSA and marketplace applications: \
webhook deliveries verified, de-duplicated and mapped to effects in an ordered outbox; \
fee quotes, a double-entry ledger per tenant, the Stripe operations the application asks \
for, and reconciliation with Stripe's balance transactions. Amounts on the way in are \
decimal text in major units (\"120.50\"); on the way out, minor units with display text. \
Every error answer is an `ErrorBody`: a stable `error` code and a `reason`; a permanent \
error is never answered with a status that invites a retry.";

const TAGS: &[(&str, &str)] = &[
    (
        "webhooks",
        "Stripe's deliveries: signed, recorded once, mapped to effects.",
    ),
    (
        "effects",
        "The ordered outbox of what happened, polled or streamed.",
    ),
    ("quotes", "Fee math without side effects."),
    ("ledger", "Each tenant's double-entry ledger."),
    (
        "operations",
        "Stripe operations the application asks for; each is idempotent by its `request_id`.",
    ),
    (
        "tenants",
        "Which connected account belongs to which tenant, and where contractors are paid.",
    ),
    (
        "reconciliation",
        "The ledger against Stripe's balance transactions.",
    ),
    ("service", "Health, metrics and this document."),
];

/// The operations of a path item.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Replaces the `template` path (one route serving many names) by one
/// path per expansion, each a copy of the template's operation with its
/// own summary, input and result; the template's path parameter and its
/// 404 for an unknown name go.
fn expand(
    api: &mut OpenApi,
    template: &str,
    prefix: &str,
    id_prefix: &str,
    expansions: &[Expansion],
) {
    let item = api
        .paths
        .paths
        .remove(template)
        .unwrap_or_else(|| panic!("the router registers {template}"));
    let base = item.post.unwrap_or_else(|| panic!("{template} is a POST"));
    let components = api.components.get_or_insert_with(Components::new);
    for e in expansions {
        let (input, output) = (e.schemas)(components);
        let mut operation = base.clone();
        operation.parameters = None;
        operation.summary = Some(e.summary.to_string());
        operation.operation_id = Some(format!("{id_prefix}{}", e.name.replace('-', "_")));
        operation.request_body = Some(
            RequestBodyBuilder::new()
                .content("application/json", json_content(&input))
                .required(Some(Required::True))
                .build(),
        );
        let responses = &mut operation.responses.responses;
        responses.remove("404");
        responses.insert(
            "200".into(),
            RefOr::T(
                ResponseBuilder::new()
                    .description("Done.")
                    .content("application/json", json_content(&output))
                    .build(),
            ),
        );
        api.paths.paths.insert(
            format!("{prefix}{}", e.name),
            PathItem::new(utoipa::openapi::HttpMethod::Post, operation),
        );
    }
}

fn json_content(schema: &str) -> Content {
    Content::new(Some(Ref::from_schema_name(schema)))
}

/// A `/v1` operation: the bearer scheme, and the token layer's answers.
fn behind_token(operation: &mut Operation) {
    operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    let responses = &mut operation.responses.responses;
    for (status, text) in [
        ("401", "`unauthorized`: a missing or wrong bearer token."),
        (
            "403",
            "`api_closed`: the service was started without an API token.",
        ),
        ("503", "`database`: the database did not answer; try again."),
    ] {
        match responses.get_mut(status) {
            Some(RefOr::T(response)) => {
                response.description = format!("{} {text}", response.description);
            }
            _ => {
                responses.insert(status.into(), RefOr::T(error_response(text)));
            }
        }
    }
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", json_content("ErrorBody"))
        .build()
}
