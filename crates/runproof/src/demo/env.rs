//! The dev environment: a fake GitHub and a server that trusts it, both on loopback, as
//! `runproof serve --dev`, the demo and the tests start it; and the demo's table row.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use runproof_server::AppState;
use runproof_testkit::FakeGithub;

use crate::config::{self, Resolved};
use crate::serve::{RunningServer, build_state};

/// The audience the demo server asks for.
pub const DEMO_AUDIENCE: &str = "https://runproof.demo.invalid";

/// The fake GitHub and a server trusting it, both on loopback.
pub struct DevEnvironment {
    /// The fake GitHub.
    pub github: FakeGithub,
    /// The server.
    pub server: RunningServer,
    /// The server's state (for inspection).
    pub state: Arc<AppState>,
    /// The read API key.
    pub api_key: String,
    /// The secret the fake GitHub signs webhook deliveries with.
    pub webhook_secret: String,
}

/// The App id the dev environment registers with the fake GitHub.
pub const DEV_APP_ID: u64 = 1001;
/// The installation the dev environment creates for the default run's repository.
pub const DEV_INSTALLATION: u64 = 3_100_001;

/// Starts a fake GitHub and a server that trusts it, with data under `data_dir`.
///
/// # Errors
/// When either cannot start.
pub async fn start_dev(
    data_dir: PathBuf,
    listen: std::net::SocketAddr,
    base: Option<config::Config>,
) -> anyhow::Result<DevEnvironment> {
    let github = FakeGithub::start()
        .await
        .context("cannot start the fake GitHub")?;
    let api_key = format!("rpk_{}", uuid::Uuid::new_v4().simple());
    let mut cfg: config::Config = match base {
        Some(c) => c,
        None => config::load(None)?,
    };
    cfg.listen = listen;
    if cfg.database_url.is_none() && cfg.blob_store.is_none() {
        cfg.data_dir = data_dir;
    }
    let audience = cfg
        .oidc
        .as_ref()
        .and_then(|o| o.audience.clone())
        .unwrap_or_else(|| DEMO_AUDIENCE.to_owned());
    cfg.oidc = Some(config::OidcConfig {
        audience: Some(audience),
        leeway_seconds: 60,
        replay_protection: true,
        issuers: vec![config::OidcIssuerConfig {
            issuer: github.issuer(),
            jwks_url: None,
        }],
    });
    cfg.api_keys
        .push(runproof_core::Secret::new(api_key.clone()));

    // The fake GitHub plays the App's side too: an App, one installation, webhooks.
    let app = github.register_app(DEV_APP_ID)?;
    let run = github.run();
    github.add_installation(
        DEV_INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[(run.repository_id, &run.repository)],
    );
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    let key_file = cfg.data_dir.join("dev-app-key.pem");
    std::fs::write(&key_file, &app.private_key_pem)
        .with_context(|| format!("cannot write {}", key_file.display()))?;
    let webhook_secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    cfg.github = Some(config::GithubConfig {
        api_url: github.base_url(),
        app_id: DEV_APP_ID,
        private_key_file: Some(key_file),
        webhook_secrets: vec![runproof_core::Secret::new(webhook_secret.clone())],
        webhook_secrets_file: None,
        timeout_seconds: 5,
    });
    cfg.github_token.enabled = true;
    cfg.webhook_mode.enabled = true;

    let resolved: Resolved = config::resolve(cfg)?;
    let state = build_state(&resolved).await?;
    let server = RunningServer::start(state.clone(), listen).await?;
    Ok(DevEnvironment {
        github,
        server,
        state,
        api_key,
        webhook_secret,
    })
}

/// One line of the demo's table: a request, the outcome it must have, the one it had.
pub(crate) struct Row {
    pub(crate) request: String,
    pub(crate) expected: String,
    pub(crate) got: String,
}

impl Row {
    pub(crate) fn ok(&self) -> bool {
        self.expected == self.got
    }
}

/// An error and its sources, `: `-separated, as the binary prints an error.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
