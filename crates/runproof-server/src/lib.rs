//! The runproof HTTP service.
//!
//! It receives uploads, checks their credentials before reading a byte of the body,
//! streams the body to blob storage while hashing it, and commits the upload with the
//! verified run identity. It serves the App's read API and the operations endpoints.
//!
//! What it does not do: parse configuration files or flags (the binary does), or make
//! verification decisions (the core does). It takes plain values ([`ServerConfig`],
//! stores, a key cache) and a listener.
//!
//! Threat model in brief: every request is hostile until its credentials verify. Errors
//! carry a stable code and a detail the client can act on, never secret material; the
//! `Authorization` header is marked sensitive and never logged.
#![forbid(unsafe_code)]

mod auth;
mod binding;
mod collector;
mod commits;
mod deliveries_api;
mod delivery;
mod error;
mod github_token;
mod limits;
mod listener;
mod ops;
mod read_api;
mod replay;
mod sessions;
mod upload;
mod webhook_mode;
mod webhooks;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use runproof_core::{Secret, UnixTime, Verifier};
use runproof_github::{KeyCache, RestClient};
use runproof_store::{BlobStore, Store};
use tokio::net::TcpListener;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub use binding::Binding;
pub use collector::{
    CollectReport, CollectorConfig, DEFAULT_MAX_BLOBS_PER_RUN, DEFAULT_ORPHAN_BLOB_GRACE,
    collect_unreferenced_blobs,
};
pub use commits::{Commits, DEFAULT_INLINE_MAX_BYTES, MAX_INLINE_MAX_BYTES};
pub use delivery::{DeliveryConfig, record_of, spawn_delivery_worker};
pub use error::{ApiError, status_of};
pub use limits::{ForwardedHeader, ForwardedHeaderError, IpBlock, IpBlockError, LimitsConfig};
pub use sessions::SessionConfig;
pub use webhook_mode::{
    SweepReport, UNVERIFIED_ISSUER, WebhookMode, WebhookModeConfig, pending_identity, sweep,
};

/// A source of the current time, so tests can move it.
pub trait Clock: Send + Sync + 'static {
    /// Now, in whole seconds since the Unix epoch.
    fn now(&self) -> UnixTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        UnixTime(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// Settings of the service that are not the verifier's.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The largest upload body accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Keys that may use the read API. Empty: the read API refuses everyone.
    pub api_keys: Vec<Secret>,
    /// Whether each `jti` is accepted only once.
    pub replay_protection: bool,
    /// Secrets that sign GitHub's webhook deliveries (several, for rotation). Empty: the
    /// webhook receiver refuses everything.
    pub webhook_secrets: Vec<Secret>,
    /// The longest a client may take to send an upload body.
    pub body_timeout: Duration,
    /// The in-flight cap and the per-IP limit for requests without credentials.
    pub limits: LimitsConfig,
    /// How old an unreferenced blob must be before the collector deletes it. It must
    /// exceed the longest time between a blob's commit and its record's insert.
    pub orphan_blob_grace: Duration,
    /// Where `/metrics` is served. `None`: on the main listener, to the read API's keys
    /// only. `Some`: not on the main listener, but on this address, without a key (the
    /// binary binds it and runs [`serve_metrics`]).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 100 * 1024 * 1024,
            api_keys: Vec::new(),
            replay_protection: true,
            webhook_secrets: Vec::new(),
            body_timeout: Duration::from_secs(600),
            limits: LimitsConfig::default(),
            orphan_blob_grace: DEFAULT_ORPHAN_BLOB_GRACE,
            metrics_listen: None,
        }
    }
}

/// Everything a request handler needs.
pub struct AppState {
    /// Verifies OIDC tokens.
    pub verifier: Verifier,
    /// Keys of the configured issuers.
    pub keys: Arc<KeyCache>,
    /// Upload records and the replay guard.
    pub store: Arc<dyn Store>,
    /// Upload bodies: small ones in the database, the rest in a blob store
    /// ([`runproof_store::InlineBodies`]).
    pub blobs: Arc<dyn BlobStore>,
    /// The commit pipeline and the replay guard.
    pub commits: Commits,
    /// Service settings.
    pub config: ServerConfig,
    /// The current time.
    pub clock: Arc<dyn Clock>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Installation binding through the App's credentials; `None` when they are not set.
    pub binding: Option<Binding>,
    /// GitHub's REST API for the `github_token` mode; `None` while the mode is off.
    pub github_token: Option<RestClient>,
    /// Limits of upload sessions.
    pub sessions: SessionConfig,
    /// Signed pushes to the App; `None` when `[delivery]` is not configured.
    pub delivery: Option<DeliveryConfig>,
    /// Wakes the delivery worker when this process enqueues a delivery.
    pub delivery_wake: tokio::sync::Notify,
    /// The webhook mode (pending uploads); `None` while it is off.
    pub webhook_mode: Option<WebhookMode>,
}

impl AppState {
    /// The modes this server accepts, for `/.well-known/runproof`.
    #[must_use]
    pub fn modes(&self) -> Vec<&'static str> {
        let mut modes = vec!["oidc", "session"];
        if self.github_token.is_some() {
            modes.push("github_token");
        }
        if self.webhook_mode.is_some() {
            modes.push("webhook");
        }
        modes
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The process-wide Prometheus recorder, installed on first use.
///
/// A process has one global `metrics` recorder; several servers in one process (tests)
/// share it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = builder
                .set_buckets_for_metric(
                    Matcher::Full("runproof_verification_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The service's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let limiter = limits::Limiter::new(&state.config.limits);
    let routes = Router::new()
        .route(
            "/v1/uploads",
            post(upload::create_upload).get(read_api::list_uploads),
        )
        .route("/v1/uploads/{id}", get(read_api::get_upload))
        .route("/v1/uploads/{id}/content", get(read_api::get_content))
        .route("/v1/uploads/{id}/status", get(webhook_mode::upload_status))
        .route("/v1/github/webhooks", post(webhooks::receive))
        .route("/v1/sessions", post(sessions::open))
        .route(
            "/v1/sessions/current",
            axum::routing::delete(sessions::revoke),
        )
        .route("/v1/deliveries", get(deliveries_api::list))
        .route("/v1/deliveries/{id}/retry", post(deliveries_api::retry))
        .route("/.well-known/runproof", get(ops::well_known))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    let routes = if state.config.metrics_listen.is_none() {
        routes.route("/metrics", get(ops::metrics_for_api_keys))
    } else {
        routes
    };
    routes
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn(binding::remember_client))
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            axum::http::header::COOKIE,
        ]))
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            limits::enforce,
        ))
        .with_state(state)
}

/// The routes of the metrics listener ([`ServerConfig::metrics_listen`]): `GET /metrics`,
/// without a key.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .with_state(state)
}

/// Connections the metrics listener keeps open at once: scrapers are few.
const METRICS_MAX_CONNECTIONS: usize = 16;

/// Serves [`metrics_router`] on `listener` until `shutdown` resolves, with the main
/// listener's header deadline and a small cap on connections.
///
/// # Errors
/// An I/O error from the listener.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = listener::ConnectionLimits {
        max_connections: METRICS_MAX_CONNECTIONS,
        max_connections_per_address: 0,
        trusted_proxies: Vec::new(),
        header_timeout: Duration::from_secs(state.config.limits.header_timeout_seconds),
    };
    listener::serve(listener, metrics_router(state), limits, shutdown).await
}

/// Housekeeping ticks between two passes of the blob collector: an hour.
const COLLECT_EVERY_TICKS: u64 = 12;

/// Spawns the housekeeping tasks: purges of used `jti`s, sessions and delivery ids, the
/// webhook-mode sweep, and the collector of unreferenced blobs (at start, then hourly;
/// a pass that stopped at its bound goes on at the next tick).
pub fn spawn_housekeeping(state: &Arc<AppState>) -> tokio::task::JoinHandle<()> {
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        let collector = CollectorConfig {
            grace: state.config.orphan_blob_grace,
            ..CollectorConfig::default()
        };
        let mut collect_resume: Option<runproof_store::UploadId> = None;
        let mut ticks: u64 = 0;
        loop {
            tick.tick().await;
            let now = state.clock.now();
            match state.store.purge_expired_jtis(now).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "purged expired jtis"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "jti purge failed"),
            }
            if let Err(e) = state.store.purge_sessions(now.minus(3600)).await {
                tracing::warn!(error = %e, "session purge failed");
            }
            // GitHub redelivers within days; a week of delivery ids covers it.
            if let Err(e) = state.store.purge_deliveries(now.minus(7 * 24 * 3600)).await {
                tracing::warn!(error = %e, "delivery purge failed");
            }
            // Webhook mode: settle, expire, delete rejected and expired blobs.
            webhook_mode::sweep(&state).await;
            if ticks.is_multiple_of(COLLECT_EVERY_TICKS) || collect_resume.is_some() {
                collect_resume =
                    collect_unreferenced_blobs(&state, &collector, collect_resume.as_ref())
                        .await
                        .resume_after;
            }
            ticks = ticks.wrapping_add(1);
        }
    })
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
/// (uploads included) finish.
///
/// # Errors
/// An I/O error from the listener.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let housekeeping = spawn_housekeeping(&state);
    let worker = spawn_delivery_worker(Arc::clone(&state));
    let limits = listener::ConnectionLimits {
        max_connections: state.config.limits.max_connections,
        max_connections_per_address: state.config.limits.max_connections_per_address,
        trusted_proxies: state.config.limits.trusted_proxies.clone(),
        header_timeout: Duration::from_secs(state.config.limits.header_timeout_seconds),
    };
    let result = listener::serve(listener, router(state), limits, shutdown).await;
    housekeeping.abort();
    if let Some(worker) = worker {
        worker.abort();
    }
    result
}
