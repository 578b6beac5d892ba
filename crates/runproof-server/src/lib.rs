//! runproof's HTTP layer.
//!
//! It serves the routes of the HTTP contract over a [`Service`]: it reads credentials and
//! headers, streams upload bodies into the service without buffering them whole, answers
//! the App's read API, the webhook receiver and the operations endpoints, and turns the
//! service's [`runproof_service::ServiceError`]s into `application/problem+json` with a
//! stable `code` ([`ApiError`]). It owns what only HTTP has: the listener (connection
//! caps, header deadlines, trusted proxies), per-address limits for requests without
//! credentials, and the webhook receiver's buffer budget.
//!
//! What it does not do: decide. Whether a token, session, `GITHUB_TOKEN` or pending run is
//! accepted, what is stored and what is pushed to the App is the service's. It does not
//! parse configuration files or flags either (the binary does).
//!
//! Dependency direction: `runproof-core` ← `runproof-github`, `runproof-store` ←
//! `runproof-service` ← this crate ← `runproof`.
//!
//! Threat model in brief: every request is hostile until its credentials verify. Errors
//! carry a stable code and a detail the client can act on, never secret material; the
//! `Authorization` header is marked sensitive and never logged.
#![forbid(unsafe_code)]

mod auth;
mod deliveries_api;
mod error;
mod limits;
mod listener;
mod ops;
mod read_api;
mod sessions;
mod upload;
mod webhooks;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use runproof_core::Secret;
use tokio::net::TcpListener;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, status_of};
pub use limits::{ForwardedHeader, ForwardedHeaderError, IpBlock, IpBlockError, LimitsConfig};
pub use runproof_service::Service;

/// Settings of the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// Keys that may use the read API. Empty: the read API refuses everyone.
    pub api_keys: Vec<Secret>,
    /// Secrets that sign GitHub's webhook deliveries (several, for rotation). Empty: the
    /// webhook receiver refuses everything.
    pub webhook_secrets: Vec<Secret>,
    /// The in-flight cap and the per-IP limit for requests without credentials.
    pub limits: LimitsConfig,
    /// Where `/metrics` is served. `None`: on the main listener, to the read API's keys
    /// only. `Some`: not on the main listener, but on this address, without a key (the
    /// binary binds it and runs [`serve_metrics`]).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Everything a request handler needs: the service that decides, and the HTTP layer's
/// own settings.
#[derive(Debug)]
pub struct AppState {
    service: Arc<Service>,
    config: ServerConfig,
    metrics: PrometheusHandle,
}

impl AppState {
    /// The HTTP layer over `service`, with the process-wide metrics recorder.
    #[must_use]
    pub fn new(service: Arc<Service>, config: ServerConfig) -> Self {
        Self {
            service,
            config,
            metrics: metrics_handle(),
        }
    }

    /// The service that decides.
    #[must_use]
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// The HTTP layer's settings.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.config
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
        .route("/v1/uploads/{id}/status", get(read_api::upload_status))
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
        .layer(axum::middleware::from_fn(limits::remember_client))
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
    let background = runproof_service::Background::start(&state.service);
    let limits = listener::ConnectionLimits {
        max_connections: state.config.limits.max_connections,
        max_connections_per_address: state.config.limits.max_connections_per_address,
        trusted_proxies: state.config.limits.trusted_proxies.clone(),
        header_timeout: Duration::from_secs(state.config.limits.header_timeout_seconds),
    };
    let result = listener::serve(listener, router(state), limits, shutdown).await;
    drop(background);
    result
}
