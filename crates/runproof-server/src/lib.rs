//! runproof's HTTP layer.
//!
//! It serves the routes of the HTTP contract over a [`Service`]: it reads credentials and
//! headers, streams upload bodies into the service without buffering them whole, answers
//! the App's read API, its explanations of tokens and its repositories' trust rules, the
//! webhook receiver and the
//! operations endpoints, and turns the
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
mod console;
mod error;
mod events_api;
mod explain_api;
mod github_webhooks;
mod limits;
mod listener;
mod ops;
mod pushes_api;
mod read_api;
mod repository_rules_api;
mod sessions;
mod state;
mod upload;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, status_of};
pub use limits::{ForwardedHeader, ForwardedHeaderError, IpBlock, IpBlockError, LimitsConfig};
pub use runproof_service::Service;
pub use state::{AppState, ServerConfig, UiConfig, metrics_handle};

/// The service's routes.
pub fn router(state: Arc<AppState>) -> Router {
    let limiter = limits::Limiter::new(&state.config.limits, classify);
    let routes = Router::new()
        .route(
            upload::ROUTE,
            post(upload::create_upload).get(read_api::list_uploads),
        )
        .route("/v1/uploads/{id}", get(read_api::get_upload))
        .route("/v1/uploads/{id}/content", get(read_api::get_content))
        .route("/v1/uploads/{id}/status", get(read_api::upload_status))
        .route(github_webhooks::ROUTE, post(github_webhooks::receive))
        .route("/v1/sessions", post(sessions::open))
        .route(
            "/v1/sessions/current",
            axum::routing::delete(sessions::revoke),
        )
        .route(explain_api::ROUTE, post(explain_api::explain_token))
        .route(
            repository_rules_api::ROUTE,
            get(repository_rules_api::get_rules)
                .put(repository_rules_api::put_rules)
                .delete(repository_rules_api::delete_rules),
        )
        .route(events_api::ROUTE, get(events_api::list))
        .route("/v1/deliveries", get(pushes_api::list))
        .route("/v1/deliveries/{id}/retry", post(pushes_api::retry))
        .route("/.well-known/runproof", get(ops::well_known))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz));
    let routes = if state.config.metrics_listen.is_none() {
        routes.route("/metrics", get(ops::metrics_for_api_keys))
    } else {
        routes
    };
    let routes = if state.config.ui.enabled {
        routes.merge(console::routes(&state))
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

/// What the limits need to know of a request: a webhook delivery that claims a signature
/// is limited by its own budgets, and an upload without credentials by its repository.
fn classify(request: &axum::extract::Request) -> limits::RequestClass {
    if github_webhooks::claims_signature(request) {
        limits::RequestClass::SignedWebhook
    } else if let Some(repository) = upload::claimed_repository(request) {
        limits::RequestClass::UploadFor(repository)
    } else {
        limits::RequestClass::Other
    }
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
/// (uploads included) finish. The service's background work is the caller's to start
/// ([`runproof_service::Background`]) and to stop once this returns.
///
/// # Errors
/// An I/O error from the listener.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = listener::ConnectionLimits {
        max_connections: state.config.limits.max_connections,
        max_connections_per_address: state.config.limits.max_connections_per_address,
        trusted_proxies: state.config.limits.trusted_proxies.clone(),
        header_timeout: Duration::from_secs(state.config.limits.header_timeout_seconds),
    };
    listener::serve(listener, router(state), limits, shutdown).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::extract::Request;
    use axum::http::Method;
    use runproof_core::RepositoryId;

    use super::classify;
    use crate::limits::RequestClass;

    #[test]
    fn rule_only_uploads_name_a_repository() {
        let request = |method: Method, path: &str, value: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .header("x-runproof-run", value)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(
            classify(&request(Method::POST, "/v1/uploads", "123/456/1")),
            RequestClass::UploadFor(RepositoryId(123))
        );
        assert_eq!(
            classify(&request(Method::POST, "/v1/uploads", "not a run")),
            RequestClass::Other
        );
        for (method, path) in [
            (Method::GET, "/.well-known/runproof"),
            (Method::GET, "/v1/uploads"),
            (Method::POST, "/v1/sessions"),
            (Method::PUT, "/v1/repositories/123/rules"),
        ] {
            assert_eq!(
                classify(&request(method, path, "123/456/1")),
                RequestClass::Other
            );
        }
    }

    #[test]
    fn rule_only_signed_webhook_deliveries_take_the_webhook_budgets() {
        let request = |method: Method, path: &str, signed: bool| {
            let builder = Request::builder().method(method).uri(path);
            let builder = if signed {
                builder.header("x-hub-signature-256", "sha256=00")
            } else {
                builder
            };
            builder.body(axum::body::Body::empty()).unwrap()
        };
        assert_eq!(
            classify(&request(Method::POST, "/v1/github/webhooks", true)),
            RequestClass::SignedWebhook
        );
        assert_eq!(
            classify(&request(Method::POST, "/v1/github/webhooks", false)),
            RequestClass::Other
        );
        assert_eq!(
            classify(&request(Method::GET, "/v1/github/webhooks", true)),
            RequestClass::Other
        );
        assert_eq!(
            classify(&request(Method::POST, "/v1/uploads", true)),
            RequestClass::Other
        );
    }
}
