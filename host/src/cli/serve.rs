//! `psa-billing serve`: the webhook endpoint and the `/v1` API on the
//! embedding builder ([`crate::Billing`]), with the listener's limits.

use super::*;

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PSA_BILLING_LISTEN", default_value = "127.0.0.1:8787")]
    listen: String,
    /// Database URL.
    #[arg(
        long,
        env = "PSA_BILLING_DATABASE_URL",
        default_value = "sqlite://psa-billing.db"
    )]
    database_url: String,
    /// Publish every committed effect to this NATS server (JetStream), at
    /// least once, with `Nats-Msg-Id` = its outbox sequence number
    /// (nats://127.0.0.1:4222).
    #[arg(long, env = "PSA_BILLING_PUBLISH")]
    publish: Option<String>,
    /// Serve the operator console at /console (sign in with the API token).
    #[arg(long, env = "PSA_BILLING_CONSOLE")]
    console: bool,
    /// Subjects of published effects: `<prefix>.<kind>`.
    #[arg(long, env = "PSA_BILLING_SUBJECT_PREFIX", default_value = crate::relay::DEFAULT_SUBJECT_PREFIX)]
    subject_prefix: String,
    /// Webhook endpoint secrets (whsec_...), comma-separated during rotation.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Attempts at a failed event (Stripe's redeliveries and the host's own
    /// retries together) before it goes to the dead-letter list.
    #[arg(long, env = "PSA_BILLING_MAX_ATTEMPTS", default_value_t = 8)]
    max_attempts: i64,
    /// First delay of the host's retries, in seconds; doubled each time, at most an hour.
    #[arg(long, env = "PSA_BILLING_RETRY_BASE_SECONDS", default_value_t = 30)]
    retry_base_seconds: u64,
    /// Secrets of the thin-event destination (/webhooks/stripe/thin).
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET_THIN", hide_env_values = true)]
    thin_webhook_secret: Option<String>,
    /// Accepted distance between a signature's timestamp and now, both ways.
    #[arg(long, env = "PSA_BILLING_TOLERANCE_SECONDS", default_value_t = psa_billing_core::signature::DEFAULT_TOLERANCE_SECONDS)]
    tolerance_seconds: u32,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, env = "PSA_BILLING_MAX_BODY_BYTES", default_value_t = http::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Bearer token for the /v1 API; without it /v1 is closed.
    #[arg(long, env = "PSA_BILLING_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Fee rules file (TOML) for /v1/quote; checked at start.
    #[arg(long, env = "PSA_BILLING_RULES")]
    rules: Option<PathBuf>,
    #[command(flatten)]
    routing: RoutingArgs,
    #[command(flatten)]
    plugin: PluginArgs,
    #[command(flatten)]
    stripe: StripeArgs,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Args)]
pub(super) struct HttpArgs {
    /// Connections open at once; when all are taken, a new one closes the
    /// connection idle longest, or waits in the listen backlog if none is idle.
    #[arg(long, env = "PSA_BILLING_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Bytes of a request's line and headers (at least 8192).
    #[arg(long, env = "PSA_BILLING_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// Seconds to answer one request; then 408.
    #[arg(
        long,
        env = "PSA_BILLING_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 60
    )]
    request_timeout_seconds: u64,
    /// Seconds from a connection's opening to its first complete request
    /// header, and to send each later request's headers; then it is closed.
    #[arg(
        long,
        env = "PSA_BILLING_HEADER_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    header_timeout_seconds: u64,
    /// Seconds an answered connection may stay open with nothing in flight.
    #[arg(
        long,
        env = "PSA_BILLING_IDLE_TIMEOUT_SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    idle_timeout_seconds: u64,
    /// Seconds to receive a whole request body; then the request fails and
    /// the connection is closed.
    #[arg(
        long,
        env = "PSA_BILLING_BODY_TIMEOUT_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    body_timeout_seconds: u64,
    /// Effects streams (`/v1/effects/stream`) open at once; more are
    /// answered 503 with Retry-After.
    #[arg(long, env = "PSA_BILLING_MAX_STREAMS", default_value_t = 256)]
    max_streams: usize,
    /// Seconds one effects stream stays open; the client reconnects with
    /// Last-Event-ID and misses nothing.
    #[arg(
        long,
        env = "PSA_BILLING_STREAM_LIFETIME_SECONDS",
        default_value_t = 900,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    stream_lifetime_seconds: u64,
    /// Bytes a second a request body must average after its first 5
    /// seconds; slower, the request fails and the connection is closed.
    #[arg(long, env = "PSA_BILLING_MIN_BODY_RATE", default_value_t = 1024)]
    min_body_rate: u64,
}

impl HttpArgs {
    fn limits(&self) -> crate::http::listener::HttpLimits {
        crate::http::listener::HttpLimits {
            max_connections: self.max_connections,
            max_header_bytes: self.max_header_bytes,
            request_timeout: Duration::from_secs(self.request_timeout_seconds),
            header_timeout: Duration::from_secs(self.header_timeout_seconds),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            body_timeout: Duration::from_secs(self.body_timeout_seconds),
            min_body_rate: self.min_body_rate,
            ..Default::default()
        }
    }
}

/// The shortest API token `serve` takes.
const MIN_TOKEN_CHARS: usize = 16;

pub(super) async fn serve(a: ServeArgs) -> Result<()> {
    let thin_secrets = match a.thin_webhook_secret.as_deref() {
        Some(s) if !s.is_empty() => parse_secrets(Some(s))?,
        _ => vec![],
    };
    let mut builder = Billing::builder()
        .webhook_secrets(parse_secrets(a.webhook_secret.as_deref())?)
        .thin_webhook_secrets(thin_secrets)
        .tolerance_seconds(a.tolerance_seconds)
        .database(a.database_url.clone())
        .max_body_bytes(a.max_body_bytes)
        .retry_policy(RetryPolicy {
            max_attempts: a.max_attempts.max(1),
            base: Duration::from_secs(a.retry_base_seconds),
            ..RetryPolicy::default()
        });
    builder = a.routing.configure(a.plugin.configure(builder));
    if let Some(config) = a.stripe.config()? {
        builder = builder.stripe(config);
    }
    if let Some(path) = &a.rules {
        builder = builder.rules_file(path);
    }
    if let Some(token) = a.api_token.filter(|t| !t.is_empty()) {
        // One token reaches every tenant's money: a short one is guessed.
        // Refused where others can reach the service; on loopback alone
        // (a developer's machine, a benchmark) it is only warned about.
        if token.chars().count() < MIN_TOKEN_CHARS {
            let loopback = a
                .listen
                .parse::<std::net::SocketAddr>()
                .is_ok_and(|addr| addr.ip().is_loopback());
            let why = format!(
                "PSA_BILLING_API_TOKEN (--api-token) is shorter than {MIN_TOKEN_CHARS} characters; \
                 `openssl rand -hex 32` makes a good one"
            );
            anyhow::ensure!(
                loopback,
                "{why} (refused on {}, which is not loopback)",
                a.listen
            );
            tracing::warn!("{why}: accepted on loopback only");
        }
        builder = builder.api_token(token);
    }
    builder = builder.console(a.console).effects_streams(
        a.http.max_streams,
        Duration::from_secs(a.http.stream_lifetime_seconds),
    );
    if let Some(url) = a.publish.filter(|u| !u.is_empty()) {
        builder = builder.publish_to_nats(crate::relay::NatsRelay {
            url,
            subject_prefix: a.subject_prefix,
        });
    }
    let billing = builder.build().await?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    tracing::info!(addr = %listener.local_addr()?, database = %a.database_url, "psa-billing serving");
    billing
        .serve(listener, a.http.limits(), shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
