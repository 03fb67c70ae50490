//! Helpers for the end-to-end tests: a real `psa-billing` server on an
//! ephemeral loopback port over a temporary SQLite file, and signed
//! deliveries built from Stripe's sample objects.

use psa_billing::http::{self, ServerOptions};
use psa_billing::{Db, Limits, Pipeline, Runtime};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

mod fake_billing;
mod fake_state;
pub mod fake_stripe;
pub mod openapi_check;

pub const SECRET: &str = "whsec_test_primary";
pub const API_TOKEN: &str = "test-token";
/// The thin-event endpoint's secret in the test servers.
pub const THIN_SECRET: &str = "whsec_test_thin";

/// The default component, compiled once per test binary.
pub fn default_runtime() -> Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| Runtime::new(psa_billing::DEFAULT_PLUGIN, Limits::default()).unwrap())
        .clone()
}

pub struct Options {
    pub secrets: Vec<String>,
    pub max_body_bytes: usize,
    pub runtime: Option<Runtime>,
    /// Fee rules (TOML) for `/v1/quote`.
    pub rules: Option<String>,
    /// Metadata keys naming the tenant (empty: the plugin's default).
    pub tenant_keys: Vec<String>,
    /// Expected Stripe API version, and whether a mismatch is refused.
    pub api_version: Option<(String, bool)>,
    /// A fresh PostgreSQL schema instead of a temporary SQLite file.
    pub postgres: bool,
    /// The Stripe API the operations use (a [`fake_stripe::FakeStripe`]).
    pub stripe: Option<psa_billing::stripe::StripeConfig>,
    /// The listener's limits (the server runs behind `serve`'s listener).
    pub http: psa_billing::http::HttpLimits,
    /// The only mode taken (`Some(true)`: live); `None`: both.
    pub livemode: Option<bool>,
    /// The application's own routes, served behind the API token.
    pub extra_routes: Option<axum::Router>,
    /// Effects streams open at once.
    pub max_streams: usize,
    /// How long one effects stream stays open.
    pub stream_lifetime: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secrets: vec![SECRET.into()],
            max_body_bytes: http::DEFAULT_MAX_BODY_BYTES,
            runtime: None,
            rules: None,
            tenant_keys: vec![],
            api_version: None,
            postgres: false,
            stripe: None,
            http: psa_billing::http::HttpLimits::default(),
            livemode: None,
            extra_routes: None,
            max_streams: ServerOptions::default().max_streams,
            stream_lifetime: ServerOptions::default().stream_lifetime,
        }
    }
}

/// A running server; dropped with the test.
pub struct TestServer {
    pub addr: SocketAddr,
    pub db: Db,
    /// The server's pipeline, for what `serve` runs in the background
    /// (queueing and running follow-up jobs, retries).
    pub pipeline: Pipeline,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP answer: status and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl TestServer {
    pub async fn start(opts: Options) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let url = if opts.postgres {
            psa_billing::testing::fresh_postgres_url("server").await
        } else {
            format!("sqlite://{}", dir.path().join("billing.db").display())
        };
        let db = Db::open(&url).await.unwrap();
        let runtime = opts.runtime.unwrap_or_else(default_runtime);
        let runtime = match opts.stripe {
            Some(config) => {
                runtime.with_stripe(Some(psa_billing::stripe::StripeApi::new(config).unwrap()))
            }
            None => runtime,
        };
        let mut pipeline = Pipeline::new(runtime, db.clone(), opts.secrets, 300)
            .with_routing(opts.tenant_keys, vec![])
            .with_thin_secrets(vec![THIN_SECRET.into()])
            .with_livemode(opts.livemode);
        if let Some((version, strict)) = opts.api_version {
            pipeline = pipeline.with_api_version(version, strict);
        }
        let app = http::router_with(
            pipeline.clone(),
            ServerOptions {
                max_body_bytes: opts.max_body_bytes,
                api_token: Some(API_TOKEN.into()),
                rules: opts.rules,
                console: false,
                max_streams: opts.max_streams,
                stream_lifetime: opts.stream_lifetime,
            },
            opts.extra_routes.unwrap_or_default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = opts.http;
        let task = tokio::spawn(async move {
            psa_billing::http::serve(listener, app, limits, std::future::pending())
                .await
                .unwrap();
        });
        TestServer {
            addr,
            db,
            pipeline,
            client: reqwest::Client::new(),
            _dir: dir,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a body to the webhook endpoint with an optional signature header.
    pub async fn deliver(&self, body: &[u8], signature: Option<&str>) -> Answer {
        self.deliver_to("/webhooks/stripe", body, signature).await
    }

    /// POSTs a body to a webhook endpoint with an optional signature header.
    pub async fn deliver_to(&self, path: &str, body: &[u8], signature: Option<&str>) -> Answer {
        let mut req = self.client.post(self.url(path)).body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("Stripe-Signature", s);
        }
        checked("POST", req.send().await.unwrap()).await
    }

    /// Signs with [`SECRET`] now and delivers.
    pub async fn deliver_signed(&self, body: &[u8]) -> Answer {
        self.deliver(body, Some(&sign_now(body, SECRET, 0))).await
    }

    /// POSTs JSON to a `/v1` path with the test token.
    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        let req = self
            .client
            .post(self.url(path))
            .bearer_auth(API_TOKEN)
            .json(body);
        checked("POST", req.send().await.unwrap()).await
    }

    /// PUTs JSON to a `/v1` path with the test token.
    pub async fn put_json(&self, path: &str, body: &Value) -> Answer {
        let req = self
            .client
            .put(self.url(path))
            .bearer_auth(API_TOKEN)
            .json(body);
        checked("PUT", req.send().await.unwrap()).await
    }

    /// DELETEs a `/v1` path with the test token.
    pub async fn delete(&self, path: &str) -> Answer {
        let req = self.client.delete(self.url(path)).bearer_auth(API_TOKEN);
        checked("DELETE", req.send().await.unwrap()).await
    }

    /// The effects stored so far, oldest first.
    pub async fn effects(&self) -> Vec<Value> {
        let a = self
            .get("/v1/effects?after=0&limit=1000", Some(API_TOKEN))
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        a.body["effects"].as_array().unwrap().clone()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        checked("GET", req.send().await.unwrap()).await
    }
}

/// Reads a response as status and JSON body (a string when not JSON).
pub async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer { status, body }
}

/// [`answer`], checked against the OpenAPI document
/// ([`openapi_check::check`]): what the test servers answer must be what
/// the document says.
pub async fn checked(method: &str, resp: reqwest::Response) -> Answer {
    let path = resp.url().path().to_string();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let a = answer(resp).await;
    openapi_check::check(method, &path, a.status, content_type.as_deref(), &a.body);
    a
}

/// A `Stripe-Signature` header for `body`, `offset` seconds from now.
pub fn sign_now(body: &[u8], secret: &str, offset: i64) -> String {
    psa_billing_core::signature::sign(body, secret, psa_billing::clock::unix_now() + offset)
}

/// Stripe's sample object for a resource, from `tests/fixtures/stripe/fixtures3.json`.
pub fn stripe_object(resource: &str) -> Value {
    static FIXTURES: OnceLock<Value> = OnceLock::new();
    let all = FIXTURES.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/stripe/fixtures3.json"
        );
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("reading Stripe's sample objects from {path}: {e}"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path} is not Stripe's fixtures JSON: {e}"))
    });
    all["resources"][resource].clone()
}

/// An event of `kind` around `object`, as Stripe sends it.
pub fn event(id: &str, kind: &str, object: Value) -> Vec<u8> {
    json!({
        "id": id, "object": "event", "api_version": "2025-08-27.basil",
        "created": psa_billing::clock::unix_now(), "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind, "data": {"object": object},
    })
    .to_string()
    .into_bytes()
}

/// A succeeded payment intent from Stripe's sample, for a tenant.
pub fn succeeded_payment(id: &str) -> Value {
    let mut pi = stripe_object("payment_intent");
    pi["id"] = json!(id);
    pi["status"] = json!("succeeded");
    pi["amount"] = json!(10000);
    pi["amount_received"] = json!(10000);
    pi["application_fee_amount"] = json!(250);
    pi["metadata"] = json!({"tenant_id": "tenant-1", "invoice_id": "INV-1"});
    pi
}
