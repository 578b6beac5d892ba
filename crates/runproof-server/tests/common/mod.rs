//! A real server on 127.0.0.1:0 against the fake GitHub, for integration tests.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod browser;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use runproof_core::{Policy, Secret, Verifier, VerifierConfig};
use runproof_github::{IssuerConfig, KeyCache, KeyCacheConfig};
use runproof_server::{AppState, ServerConfig};
use runproof_service::{Service, ServiceSettings};
use runproof_store::{ListFilter, LocalBlobStore, SqliteStore};
use runproof_testkit::FakeGithub;
use serde_json::Value;
use tokio::sync::oneshot;

pub const AUDIENCE: &str = "https://runproof.test";
pub const API_KEY: &str = "test-api-key-0123456789";

pub struct Options {
    pub policy: Policy,
    pub max_upload_bytes: u64,
    pub replay_protection: bool,
    pub cooldown: Duration,
    pub prefetch_keys: bool,
    pub webhook_secrets: Vec<Secret>,
    /// App id and private key PEM: installation binding on.
    pub app: Option<(u64, Secret)>,
    pub github_token: bool,
    pub sessions: runproof_service::SessionConfig,
    pub push: Option<runproof_service::PushConfig>,
    /// Reuse this directory (a restart); a fresh one otherwise.
    pub dir: Option<std::path::PathBuf>,
    /// The webhook mode (pending uploads); off when `None`.
    pub webhook_mode: Option<runproof_service::WebhookModeConfig>,
    /// The in-flight cap and unauthenticated per-IP limit.
    pub limits: runproof_server::LimitsConfig,
    /// The longest a client may take to send an upload body.
    pub body_timeout: Duration,
    /// `/metrics` off the main listener (served by `serve_metrics` there) when set.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Wraps the store the server uses (fault injection).
    pub wrap_store: Option<WrapStore>,
    /// `[storage] inline_max_bytes`: bodies up to this size live in the database.
    pub inline_max_bytes: u64,
    /// `[[policy.rules]]`: the App's trust rules (none: no constraint).
    pub trust_rules: Vec<runproof_core::rules::TrustRule>,
    /// `[policy] repository_file`: the repository's rules from this file on its default
    /// branch (needs `app`); off when `None`.
    pub repository_file: Option<String>,
    /// `[policy] require_action`: the Action an OIDC run's calling workflow must use.
    pub require_action: Option<String>,
    /// `[ui]`: the operator console.
    pub ui: runproof_server::UiConfig,
}

/// Wraps a store in another (fault injection).
pub type WrapStore =
    Box<dyn FnOnce(Arc<dyn runproof_store::Store>) -> Arc<dyn runproof_store::Store> + Send>;

impl Default for Options {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            max_upload_bytes: 1024 * 1024,
            replay_protection: true,
            inline_max_bytes: runproof_service::DEFAULT_INLINE_MAX_BYTES,
            cooldown: Duration::ZERO,
            prefetch_keys: true,
            webhook_secrets: Vec::new(),
            app: None,
            github_token: false,
            sessions: runproof_service::SessionConfig::default(),
            push: None,
            dir: None,
            webhook_mode: None,
            limits: runproof_server::LimitsConfig::default(),
            body_timeout: Duration::from_secs(30),
            metrics_listen: None,
            wrap_store: None,
            trust_rules: Vec::new(),
            repository_file: None,
            require_action: None,
            ui: runproof_server::UiConfig::default(),
        }
    }
}

pub struct Harness {
    pub gh: FakeGithub,
    pub url: String,
    pub state: Arc<AppState>,
    /// The service behind the server.
    pub service: Arc<Service>,
    /// Where the database and blobs live.
    pub root: std::path::PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    background: Option<runproof_service::Background>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let gh = FakeGithub::start().await.unwrap();
        Self::start_against(gh, opts).await
    }

    pub async fn start_against(gh: FakeGithub, opts: Options) -> Self {
        let (tmp, root) = match &opts.dir {
            Some(root) => (None, root.clone()),
            None => {
                let tmp = tempfile::tempdir().unwrap();
                let root = tmp.path().to_path_buf();
                (Some(tmp), root)
            }
        };
        let store = SqliteStore::open(&format!("sqlite://{}", root.join("db.sqlite").display()))
            .await
            .unwrap();
        let blobs = LocalBlobStore::open(&root).await.unwrap();
        let keys = KeyCache::new(
            &[IssuerConfig {
                issuer: gh.issuer(),
                jwks_url: None,
            }],
            KeyCacheConfig {
                refresh_interval: Duration::from_secs(600),
                unknown_kid_cooldown: opts.cooldown,
                timeout: Duration::from_secs(2),
            },
        )
        .unwrap();
        if opts.prefetch_keys {
            keys.refresh_all().await;
        }
        let store: Arc<dyn runproof_store::Store> = Arc::new(store);
        let store = match opts.wrap_store {
            Some(wrap) => wrap(store),
            None => store,
        };
        let verifier = Verifier::new(VerifierConfig {
            issuers: vec![gh.issuer()],
            audience: AUDIENCE.into(),
            leeway_seconds: 60,
            policy: opts.policy,
        });
        let service = Service::builder(verifier, Arc::new(keys), store, Arc::new(blobs))
            .settings(ServiceSettings {
                max_upload_bytes: opts.max_upload_bytes,
                replay_protection: opts.replay_protection,
                body_timeout: opts.body_timeout,
                orphan_blob_grace: runproof_service::DEFAULT_ORPHAN_BLOB_GRACE,
                inline_max_bytes: opts.inline_max_bytes,
            })
            .binding(opts.app.as_ref().map(|(id, pem)| {
                runproof_service::Binding::new(
                    runproof_github::GithubApp::new(
                        &gh.base_url(),
                        *id,
                        pem,
                        Duration::from_secs(3),
                    )
                    .unwrap(),
                )
            }))
            .github_token(opts.github_token.then(|| {
                runproof_github::RestClient::new(&gh.base_url(), Duration::from_secs(3)).unwrap()
            }))
            .sessions(opts.sessions)
            .push(opts.push.clone())
            .webhook_mode(opts.webhook_mode.clone())
            .trust_rules(opts.trust_rules.clone())
            .repository_file(opts.repository_file.clone())
            .require_action(opts.require_action.clone())
            .build()
            .await
            .unwrap();
        let service = Arc::new(service);
        let state = Arc::new(AppState::new(
            Arc::clone(&service),
            ServerConfig {
                api_keys: vec![Secret::new(API_KEY.into())],
                webhook_secrets: opts.webhook_secrets.clone(),
                limits: opts.limits.clone(),
                metrics_listen: opts.metrics_listen,
                ui: opts.ui.clone(),
            },
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let background = runproof_service::Background::start(&service);
        // The first housekeeping pass runs at start; tests begin after it, so that it
        // never meets their uploads half-way.
        tokio::time::timeout(Duration::from_secs(20), background.passes_done(1))
            .await
            .unwrap();
        let task = tokio::spawn(runproof_server::serve(
            listener,
            state.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            gh,
            url,
            state,
            service,
            root,
            _tmp: tmp,
            http,
            stop: Some(tx),
            task: Some(task),
            background: Some(background),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
        self.background.take();
    }

    pub fn token(&self) -> String {
        self.gh.token(AUDIENCE).unwrap()
    }

    pub fn claims(&self) -> serde_json::Map<String, Value> {
        self.gh.claims(AUDIENCE)
    }

    /// POSTs an upload; returns status, the JSON body, and the headers.
    pub async fn upload(
        &self,
        auth: Option<&str>,
        name: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value) {
        self.upload_with(auth, &format!("name={name}"), body, &[])
            .await
    }

    pub async fn upload_with(
        &self,
        auth: Option<&str>,
        query: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/uploads?{query}", self.url))
            .body(body);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let json: Value = resp.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            assert_eq!(ct.as_deref(), Some("application/problem+json"), "{json}");
        }
        (status, json)
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.unwrap()
    }

    pub async fn record_count(&self) -> usize {
        self.service
            .store()
            .list_uploads(&ListFilter::default(), 1000, None)
            .await
            .unwrap()
            .0
            .len()
    }

    /// Files under blobs/ and tmp/.
    pub fn blob_files(&self) -> (usize, usize) {
        (
            count_files(&self.root.join("blobs")),
            count_files(&self.root.join("tmp")),
        )
    }

    /// Asserts that nothing was stored: no record, no blob, no temporary file.
    pub async fn assert_nothing_stored(&self, why: &str) {
        assert_eq!(self.record_count().await, 0, "{why}: a record was stored");
        assert_eq!(
            self.blob_files(),
            (0, 0),
            "{why}: a blob or temp file remains"
        );
    }
}

pub fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
