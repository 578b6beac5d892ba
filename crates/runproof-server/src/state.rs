//! What every handler shares: the service that decides, the HTTP layer's settings, and
//! the metrics recorder.

use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use runproof_core::Secret;
use runproof_service::Service;

use crate::limits::LimitsConfig;

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
    /// The operator console at `/ui/`.
    pub ui: UiConfig,
}

/// Settings of the operator console at `/ui/` (`[ui]`).
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// Whether `/ui/` is served at all. Off: every `/ui/` path is a `404`.
    pub enabled: bool,
    /// Whether the session cookie is `Secure` (the console is reached over https).
    pub secure_cookies: bool,
    /// How long a console session lasts after sign-in.
    pub session_ttl: std::time::Duration,
    /// GitHub's web address, for links to runs and jobs (`https://github.com`).
    pub github_url: String,
    /// Sign-in attempts one address may make per minute.
    pub sign_in_per_minute: u32,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secure_cookies: false,
            session_ttl: std::time::Duration::from_secs(12 * 3600),
            github_url: "https://github.com".to_owned(),
            sign_in_per_minute: 10,
        }
    }
}

/// Everything a request handler needs: the service that decides, and the HTTP layer's
/// own settings.
#[derive(Debug)]
pub struct AppState {
    pub(crate) service: Arc<Service>,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: PrometheusHandle,
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
