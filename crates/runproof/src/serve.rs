//! `runproof serve`: builds the service from a resolved configuration and runs it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::FutureExt as _;
use runproof_core::{Verifier, VerifierConfig};
use runproof_github::{GithubApp, IssuerConfig, KeyCache, KeyCacheConfig, RestClient};
use runproof_server::{AppState, ServerConfig};
use runproof_service::{Background, Binding, Service, ServiceSettings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Resolved;

/// Builds the shared state: stores opened and migrated, key cache ready.
///
/// # Errors
/// When the database or blob storage cannot be opened (within bounded time: see
/// [`crate::storage`]), the blob store belongs to another database
/// ([`crate::storage::bind`]), or an issuer URL is refused.
pub async fn build_state(resolved: &Resolved) -> anyhow::Result<Arc<AppState>> {
    let config = &resolved.config;
    let store = crate::storage::open_database(&resolved.storage.database).await?;
    let blobs = crate::storage::open_blobs(&resolved.storage.blobs).await?;
    let namespace = crate::storage::bind(&resolved.storage, &*store, &*blobs).await?;
    tracing::info!(
        database = %resolved.storage.database.display_url(),
        schema = resolved
            .storage
            .database
            .pool
            .schema
            .as_deref()
            .unwrap_or("(default)"),
        blobs = %resolved.storage.blobs.display(),
        namespace = %namespace.id,
        "storage ready"
    );
    let issuers: Vec<IssuerConfig> = resolved
        .oidc
        .issuers
        .iter()
        .map(|i| IssuerConfig {
            issuer: i.issuer.clone(),
            jwks_url: i.jwks_url.clone(),
        })
        .collect();
    let keys = KeyCache::new(
        &issuers,
        KeyCacheConfig {
            refresh_interval: Duration::from_secs(config.jwks.refresh_interval_seconds.max(10)),
            unknown_kid_cooldown: Duration::from_secs(config.jwks.unknown_kid_cooldown_seconds),
            timeout: Duration::from_secs(config.jwks.timeout_seconds.max(1)),
        },
    )
    .context("`oidc.issuers`")?;
    let binding = match &resolved.app {
        Some((app_id, pem)) => Some(Binding::new(
            GithubApp::new(&resolved.api_url, *app_id, pem, resolved.github_timeout)
                .context("`[github]`")?,
        )),
        None => None,
    };
    let github_token = if config.github_token.enabled {
        Some(
            RestClient::new(&resolved.api_url, resolved.github_timeout)
                .context("`github.api_url`")?,
        )
    } else {
        None
    };
    let verifier = Verifier::new(VerifierConfig {
        issuers: issuers.iter().map(|i| i.issuer.clone()).collect(),
        audience: resolved.audience.clone(),
        leeway_seconds: resolved.oidc.leeway_seconds,
        policy: config.policy.checks(),
    });
    let service = Service::builder(verifier, Arc::new(keys), store, blobs)
        .settings(ServiceSettings {
            max_upload_bytes: config.max_upload_bytes,
            replay_protection: resolved.oidc.replay_protection,
            body_timeout: Duration::from_secs(config.body_timeout_seconds.max(1)),
            orphan_blob_grace: Duration::from_secs(config.orphan_blob_grace_seconds.max(1)),
            inline_max_bytes: config.storage.inline_max_bytes,
        })
        .binding(binding)
        .github_token(github_token)
        .sessions(config.sessions)
        .event_log(config.events.service()?)
        .push(resolved.push.clone())
        .webhook_mode(resolved.webhook_mode.clone())
        .trust_rules(config.policy.rules.clone())
        .repository_file(crate::config::repository_file(
            &config.policy.repository_file,
            resolved.app.is_some(),
        )?)
        .require_action(crate::webhook_config::check_action(
            "policy.require_action",
            Some(&config.policy.require_action),
            resolved.app.is_some(),
        )?)
        .build()
        .await
        .context("cannot start the commit pipeline")?;
    Ok(Arc::new(AppState::new(
        Arc::new(service),
        ServerConfig {
            api_keys: resolved.api_keys.clone(),
            webhook_secrets: resolved.webhook_secrets.clone(),
            limits: config.limits.server(),
            metrics_listen: config.metrics_listen,
            ui: config.ui_settings()?,
        },
    )))
}

/// A server running in this process, stopped on drop or by [`RunningServer::stop`].
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves `/metrics` without a key, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics_task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    background: Option<Background>,
}

impl RunningServer {
    /// Binds `listen` (and `metrics_listen`, when set) and serves `state` in the
    /// background.
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub async fn start(state: Arc<AppState>, listen: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let metrics_listener = match state.config().metrics_listen {
            Some(metrics_listen) => {
                Some(TcpListener::bind(metrics_listen).await.with_context(|| {
                    format!("`metrics_listen`: cannot listen on {metrics_listen}")
                })?)
            }
            None => None,
        };
        let background = Background::start(state.service()).refreshing_keys(state.service());
        let (tx, rx) = oneshot::channel();
        let stopped = rx.shared();
        let (metrics_addr, metrics_task) = match metrics_listener {
            Some(listener) => {
                let metrics_addr = listener.local_addr()?;
                tracing::info!(%metrics_addr, "serving /metrics, without a key");
                let stopped = stopped.clone();
                let task = tokio::spawn(runproof_server::serve_metrics(
                    listener,
                    Arc::clone(&state),
                    async move {
                        let _ = stopped.await;
                    },
                ));
                (Some(metrics_addr), Some(task))
            }
            None => (None, None),
        };
        let task = tokio::spawn(runproof_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            metrics_addr,
            stop: Some(tx),
            task,
            metrics_task,
            background: Some(background),
        })
    }

    /// The base URL, `http://ADDR`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and waits.
    ///
    /// # Errors
    /// When the server task failed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let served = (&mut self.task).await.context("server task");
        // Housekeeping, pushes and key refreshes stop once the last request is answered.
        self.background.take();
        served??;
        if let Some(task) = self.metrics_task.take() {
            task.await.context("metrics server task")??;
        }
        Ok(())
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.background.take();
    }
}

/// Resolves when the process gets SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `metrics_listen`: `/metrics` on its own listener, without a key, and not on the main
    /// one.
    #[tokio::test]
    async fn metrics_listen_serves_metrics_on_a_listener_of_its_own() {
        let dir = tempfile::TempDir::new().unwrap();
        let toml = format!(
            "data_dir = {:?}\nmetrics_listen = \"127.0.0.1:0\"\n\
             api_keys = [\"serve-test-api-key-0123\"]\n\
             [oidc]\naudience = \"https://runproof.test\"\n\
             [[oidc.issuers]]\nissuer = \"http://127.0.0.1:9\"\n",
            dir.path().display().to_string()
        );
        let resolved = crate::config::from_toml_str(&toml).unwrap();
        let state = build_state(&resolved).await.unwrap();
        let server = RunningServer::start(state, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let metrics_addr = server.metrics_addr.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let resp = http
            .get(format!("http://{metrics_addr}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let resp = http
            .get(format!("{}/metrics", server.url()))
            .bearer_auth("serve-test-api-key-0123")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
        tokio::time::timeout(Duration::from_secs(10), server.stop())
            .await
            .unwrap()
            .unwrap();
    }
}
