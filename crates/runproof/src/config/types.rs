//! The configuration's types: one per table of `runproof.toml`, with their defaults.
//! What they deserialize is what the file and the environment may set; the checks that
//! span several tables are [`super::resolve`]'s.

use std::net::SocketAddr;
use std::path::PathBuf;

use runproof_core::policy::Policy;
use runproof_core::rules::TrustRule;
use runproof_core::{OwnerId, RepositoryId, Secret, verifier::DEFAULT_LEEWAY_SECONDS};
use serde::Deserialize;

/// GitHub's OIDC issuer for github.com.
pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The whole configuration. Every key has a safe default except `oidc.audience`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where `/metrics` is served, without a key, instead of on `listen` (where it takes
    /// an API key).
    pub metrics_listen: Option<SocketAddr>,
    /// Where the SQLite database and blobs live by default.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://…`, `postgres://…` or `postgresql://…`; defaults to
    /// `<data_dir>/runproof.db`. A secret: it may hold a password.
    pub database_url: Option<Secret>,
    /// `file://…` or `s3://bucket/prefix`; defaults to `<data_dir>`.
    pub blob_store: Option<String>,
    /// Pool size, timeouts and schema of the database.
    #[serde(default)]
    pub database: crate::storage::DatabaseConfig,
    /// How to reach the S3-compatible store of `blob_store = "s3://…"`.
    pub s3: Option<crate::storage::S3Config>,
    /// The largest upload accepted, in bytes.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: u64,
    /// API keys of the App's read API.
    #[serde(default)]
    pub api_keys: Vec<Secret>,
    /// A file with one API key per line, added to `api_keys`.
    pub api_keys_file: Option<PathBuf>,
    /// The longest a client may take to send a body, in seconds.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_seconds: u64,
    /// How old a blob without a record (left by a crash between the blob's commit and the
    /// record's insert) must be before it is deleted, in seconds.
    #[serde(default = "default_orphan_blob_grace")]
    pub orphan_blob_grace_seconds: u64,
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// OIDC verification.
    pub oidc: Option<OidcConfig>,
    /// Policy applied to every verified run, and the App's trust rules.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// Key fetching and caching.
    #[serde(default)]
    pub jwks: JwksConfig,
    /// The App's own credentials.
    pub github: Option<GithubConfig>,
    /// The `GITHUB_TOKEN` mode.
    #[serde(default)]
    pub github_token: GithubTokenConfig,
    /// The webhook mode.
    #[serde(default)]
    pub webhook_mode: crate::webhook_config::WebhookModeConfig,
    /// Signed pushes to the App.
    pub delivery: Option<DeliveryConfig>,
    /// Upload sessions: `[sessions]`, with its `ttl_seconds` read as `ttl`.
    #[serde(default, deserialize_with = "SessionsTable::deserialize_config")]
    pub sessions: runproof_service::SessionConfig,
    /// The server's self-defence limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[storage]`: where upload bodies live.
    #[serde(default)]
    pub storage: StorageConfig,
    /// `[events]`: how long the event log keeps events.
    #[serde(default)]
    pub events: EventsConfig,
    /// `[ui]`: the operator console at `/ui/`.
    #[serde(default)]
    pub ui: UiConfig,
    /// `RUNPROOF_…` variables that set no key, by name only (a value may be a secret):
    /// [`super::resolve`] warns about each.
    #[serde(skip)]
    pub unknown_environment: Vec<String>,
}

/// `[events]`: the event log's retention, in days and in rows (each at least 1, checked
/// by [`EventsConfig::service`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events older than this many days are purged.
    pub retention_days: u32,
    /// At most this many events are kept; the oldest go first.
    pub max_rows: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let d = runproof_service::EventLogConfig::default();
        Self {
            retention_days: d.retention_days,
            max_rows: d.max_rows,
        }
    }
}

impl EventsConfig {
    /// The service's retention, once checked.
    ///
    /// # Errors
    /// A bound below 1.
    pub fn service(&self) -> anyhow::Result<runproof_service::EventLogConfig> {
        if self.retention_days == 0 {
            anyhow::bail!("`events.retention_days` must be at least 1");
        }
        if self.max_rows == 0 {
            anyhow::bail!("`events.max_rows` must be at least 1");
        }
        Ok(runproof_service::EventLogConfig {
            retention_days: self.retention_days,
            max_rows: self.max_rows,
        })
    }
}

impl Config {
    /// The console's settings (`[ui]`), with the addresses it falls back on from
    /// `[delivery]` and `[github]`.
    ///
    /// # Errors
    /// See [`UiConfig::server`].
    pub fn ui_settings(&self) -> anyhow::Result<runproof_server::UiConfig> {
        self.ui.server(
            self.delivery.as_ref().and_then(|d| d.public_url.as_deref()),
            self.github.as_ref().map(|g| g.api_url.as_str()),
        )
    }
}

/// `[ui]`: the operator console at `/ui/` (on by default).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Whether `/ui/` is served.
    pub enabled: bool,
    /// The address people reach the console at, such as `https://runproof.example.com`:
    /// with `https`, the session cookie is `Secure`. Absent: `[delivery] public_url`.
    pub public_url: Option<String>,
    /// How long a console session lasts, in seconds (at least 60).
    pub session_ttl_seconds: u64,
    /// Sign-in attempts one address may make per minute (at least 1).
    pub sign_in_per_minute: u32,
    /// GitHub's web address for links to runs and jobs. Absent: derived from
    /// `[github] api_url` (`https://github.com` for `https://api.github.com`).
    pub github_url: Option<String>,
}

impl Default for UiConfig {
    fn default() -> Self {
        let d = runproof_server::UiConfig::default();
        Self {
            enabled: d.enabled,
            public_url: None,
            session_ttl_seconds: d.session_ttl.as_secs(),
            sign_in_per_minute: d.sign_in_per_minute,
            github_url: None,
        }
    }
}

impl UiConfig {
    /// The HTTP layer's console settings, once checked. `delivery_public_url` stands in for
    /// `public_url` when that is absent; `github_api_url` gives the web address when
    /// `github_url` is absent.
    ///
    /// # Errors
    /// A bound out of range, or an address that is not http(s).
    pub fn server(
        &self,
        delivery_public_url: Option<&str>,
        github_api_url: Option<&str>,
    ) -> anyhow::Result<runproof_server::UiConfig> {
        if self.session_ttl_seconds < 60 {
            anyhow::bail!("`ui.session_ttl_seconds` must be at least 60");
        }
        if self.sign_in_per_minute == 0 {
            anyhow::bail!("`ui.sign_in_per_minute` must be at least 1");
        }
        let public_url = self.public_url.as_deref().or(delivery_public_url);
        if let Some(u) = public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            anyhow::bail!("`ui.public_url` must start with https:// or http://");
        }
        let github_url = match (&self.github_url, github_api_url) {
            (Some(u), _) => {
                if !(u.starts_with("https://") || u.starts_with("http://")) {
                    anyhow::bail!("`ui.github_url` must start with https:// or http://");
                }
                u.trim_end_matches('/').to_owned()
            }
            (None, Some(api)) => github_web_url(api),
            (None, None) => runproof_server::UiConfig::default().github_url,
        };
        Ok(runproof_server::UiConfig {
            enabled: self.enabled,
            secure_cookies: public_url.is_some_and(|u| u.starts_with("https://")),
            session_ttl: std::time::Duration::from_secs(self.session_ttl_seconds),
            github_url,
            sign_in_per_minute: self.sign_in_per_minute,
        })
    }
}

/// GitHub's web address for an API address: `https://api.github.com` is
/// `https://github.com`; GitHub Enterprise Server's `https://host/api/v3` is `https://host`.
fn github_web_url(api: &str) -> String {
    let api = api.trim_end_matches('/');
    if let Some(rest) = api.strip_prefix("https://api.") {
        return format!("https://{rest}");
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_owned()
}

/// `[policy]`: the checks of `runproof_core::policy::Policy` ([`PolicyConfig::checks`]),
/// and the App's trust rules (`[[policy.rules]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Events whose runs are refused.
    pub denied_events: Vec<String>,
    /// Refuse runs that did not run on a GitHub-hosted runner.
    pub require_github_hosted_runner: bool,
    /// When non-empty, only these repository owners are accepted.
    pub allowed_repository_owner_ids: Vec<OwnerId>,
    /// When non-empty, only these repositories are accepted.
    pub allowed_repository_ids: Vec<RepositoryId>,
    /// The App's layer of trust rules: a run must match one of them. Empty: no constraint.
    pub rules: Vec<TrustRule>,
    /// The path of a file on each repository's default branch, such as
    /// `.github/runproof.yml`, whose `rules:` are the repository's layer when it has the
    /// file. Empty: off.
    pub repository_file: String,
    /// `owner/name` of an Action the calling workflow of every OIDC upload and session
    /// must use (`workflow_ref` at `workflow_sha`). Empty: off.
    pub require_action: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let Policy {
            denied_events,
            require_github_hosted_runner,
            allowed_repository_owner_ids,
            allowed_repository_ids,
        } = Policy::default();
        Self {
            denied_events,
            require_github_hosted_runner,
            allowed_repository_owner_ids,
            allowed_repository_ids,
            rules: Vec::new(),
            repository_file: String::new(),
            require_action: String::new(),
        }
    }
}

impl PolicyConfig {
    /// The checks the verifier applies to every run (everything but the rules).
    #[must_use]
    pub fn checks(&self) -> Policy {
        Policy {
            denied_events: self.denied_events.clone(),
            require_github_hosted_runner: self.require_github_hosted_runner,
            allowed_repository_owner_ids: self.allowed_repository_owner_ids.clone(),
            allowed_repository_ids: self.allowed_repository_ids.clone(),
        }
    }
}

/// `[storage]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Bodies up to this many bytes are stored in the database, in the transaction of
    /// their record; 0 stores every body in the blob store. At most 1 MiB.
    pub inline_max_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            inline_max_bytes: runproof_service::DEFAULT_INLINE_MAX_BYTES,
        }
    }
}

/// `[oidc]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The audience clients must request. Required, and never GitHub's default.
    pub audience: Option<String>,
    /// Clock leeway in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: i64,
    /// Accept each `jti` once.
    #[serde(default = "default_true")]
    pub replay_protection: bool,
    /// Issuers accepted; github.com's when absent.
    #[serde(default = "default_issuers")]
    pub issuers: Vec<OidcIssuerConfig>,
}

/// `[[oidc.issuers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuerConfig {
    /// The issuer, exactly as in `iss`.
    pub issuer: String,
    /// The JWKS URL; discovered when absent.
    pub jwks_url: Option<String>,
}

/// `[jwks]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwksConfig {
    /// Background refresh interval, in seconds.
    pub refresh_interval_seconds: u64,
    /// Least time between refreshes triggered by unknown `kid`s, in seconds.
    pub unknown_kid_cooldown_seconds: u64,
    /// Timeout of each request to an issuer, in seconds.
    pub timeout_seconds: u64,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            refresh_interval_seconds: 600,
            unknown_kid_cooldown_seconds: 10,
            timeout_seconds: 5,
        }
    }
}

/// `[github]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// GitHub's REST API.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The App's id.
    #[serde(default)]
    pub app_id: u64,
    /// The App's private key (PEM).
    pub private_key_file: Option<PathBuf>,
    /// Webhook secrets, several for rotation.
    #[serde(default)]
    pub webhook_secrets: Vec<Secret>,
    /// A file with one webhook secret per line, added to `webhook_secrets`.
    pub webhook_secrets_file: Option<PathBuf>,
    /// Timeout of each request to GitHub's API, in seconds.
    #[serde(default = "default_github_timeout")]
    pub timeout_seconds: u64,
}

/// `[github_token]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubTokenConfig {
    /// Whether the mode is on.
    #[serde(default)]
    pub enabled: bool,
}

/// `[delivery]`: signed pushes to the App (the table's name is older than the word
/// "push"; [`super::resolve`] turns it into the service's `PushConfig`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Where verified uploads are pushed.
    pub url: Option<String>,
    /// Signing secrets; the first signs.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// A file with one secret per line, added to `secrets`.
    pub secrets_file: Option<PathBuf>,
    /// Events to push.
    #[serde(default = "default_delivery_events")]
    pub events: Vec<String>,
    /// The most attempts before a delivery is `failed`.
    #[serde(default = "default_delivery_attempts")]
    pub max_attempts: u32,
    /// Timeout of each attempt, in seconds.
    #[serde(default = "default_delivery_timeout")]
    pub timeout_seconds: u64,
    /// The first retry delay, in seconds; it doubles up to `max_backoff_seconds`.
    #[serde(default = "default_backoff")]
    pub backoff_seconds: u64,
    /// The longest retry delay, in seconds.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: u64,
    /// The URL the App reaches this server at, for `content_url`.
    pub public_url: Option<String>,
}

/// `[sessions]` as written, read straight into the service's `SessionConfig`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct SessionsTable {
    /// How long a session lives, in seconds.
    ttl_seconds: u64,
    /// The most uploads one session may make (at least 1).
    max_uploads: u64,
    /// The most bytes one session may upload in all (at least 1).
    max_bytes: u64,
}

impl Default for SessionsTable {
    fn default() -> Self {
        let d = runproof_service::SessionConfig::default();
        Self {
            ttl_seconds: d.ttl.as_secs(),
            max_uploads: d.max_uploads,
            max_bytes: d.max_bytes,
        }
    }
}

impl SessionsTable {
    fn deserialize_config<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<runproof_service::SessionConfig, D::Error> {
        let table = Self::deserialize(deserializer)?;
        Ok(runproof_service::SessionConfig {
            ttl: std::time::Duration::from_secs(table.ttl_seconds),
            max_uploads: table.max_uploads.max(1),
            max_bytes: table.max_bytes.max(1),
        })
    }
}

fn default_orphan_blob_grace() -> u64 {
    runproof_service::DEFAULT_ORPHAN_BLOB_GRACE.as_secs()
}

fn default_delivery_events() -> Vec<String> {
    vec!["upload.verified".into()]
}
fn default_delivery_attempts() -> u32 {
    12
}
fn default_delivery_timeout() -> u64 {
    10
}
fn default_backoff() -> u64 {
    5
}
fn default_max_backoff() -> u64 {
    3600
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./runproof-data")
}
fn default_max_upload_bytes() -> u64 {
    104_857_600
}
fn default_body_timeout() -> u64 {
    600
}
fn default_log_format() -> String {
    "text".into()
}
fn default_leeway() -> i64 {
    DEFAULT_LEEWAY_SECONDS
}
fn default_true() -> bool {
    true
}
pub(super) fn default_github_timeout() -> u64 {
    10
}
pub(super) fn default_api_url() -> String {
    "https://api.github.com".into()
}
fn default_issuers() -> Vec<OidcIssuerConfig> {
    vec![OidcIssuerConfig {
        issuer: GITHUB_ISSUER.into(),
        jwks_url: None,
    }]
}

/// `[limits]`: the server's self-defence.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most open connections; at the cap, new ones wait in the listen backlog. 0: no cap.
    pub max_connections: usize,
    /// Most open connections from one client address (IPv6: one /64); more are closed at
    /// once. Trusted proxies are exempt. 0: no cap.
    pub max_connections_per_address: usize,
    /// The longest a client may take, from connecting, to send its first request's head
    /// (and a connection may stay with no request in progress), in seconds. 0: no deadline.
    pub header_timeout_seconds: u64,
    /// The longest a webhook delivery may take to send its body, in seconds (at least 1).
    pub webhook_body_timeout_seconds: u64,
    /// Most webhook deliveries from one address whose signatures are not checked yet.
    /// 0: no cap.
    pub max_unverified_deliveries_per_address: usize,
    /// Most requests served at once; more answer `429 rate_limited`. 0: no cap.
    pub max_requests_in_flight: usize,
    /// Requests without credentials, and failed credentials, accepted per client address
    /// per minute. 0: no limit.
    pub unauthenticated_per_ip_per_minute: u32,
    /// Uploads without credentials accepted per minute that name one repository in
    /// `X-Runproof-Run`, from all addresses together. 0: no limit.
    pub unauthenticated_per_repository_per_minute: u32,
    /// Proxies (addresses or blocks such as `10.0.0.0/8`) whose forwarded client address
    /// is believed. Empty: the peer is the client.
    pub trusted_proxies: Vec<runproof_server::IpBlock>,
    /// The header those proxies write the client's address into: `x-forwarded-for` or
    /// `forwarded`.
    pub forwarded_header: runproof_server::ForwardedHeader,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = runproof_server::LimitsConfig::default();
        Self {
            max_connections: d.max_connections,
            max_connections_per_address: d.max_connections_per_address,
            header_timeout_seconds: d.header_timeout_seconds,
            webhook_body_timeout_seconds: d.webhook_body_timeout_seconds,
            max_unverified_deliveries_per_address: d.max_unverified_deliveries_per_address,
            max_requests_in_flight: d.max_requests_in_flight,
            unauthenticated_per_ip_per_minute: d.unauthenticated_per_ip_per_minute,
            unauthenticated_per_repository_per_minute: d.unauthenticated_per_repository_per_minute,
            trusted_proxies: d.trusted_proxies,
            forwarded_header: d.forwarded_header,
        }
    }
}

impl LimitsConfig {
    /// The server's limits.
    #[must_use]
    pub fn server(&self) -> runproof_server::LimitsConfig {
        runproof_server::LimitsConfig {
            max_connections: self.max_connections,
            max_connections_per_address: self.max_connections_per_address,
            header_timeout_seconds: self.header_timeout_seconds,
            webhook_body_timeout_seconds: self.webhook_body_timeout_seconds.max(1),
            max_unverified_deliveries_per_address: self.max_unverified_deliveries_per_address,
            max_requests_in_flight: self.max_requests_in_flight,
            unauthenticated_per_ip_per_minute: self.unauthenticated_per_ip_per_minute,
            unauthenticated_per_repository_per_minute: self
                .unauthenticated_per_repository_per_minute,
            trusted_proxies: self.trusted_proxies.clone(),
            forwarded_header: self.forwarded_header,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EventsConfig;

    #[test]
    fn rule_event_retention_bounds_are_at_least_one() {
        let d = EventsConfig::default();
        assert_eq!((d.retention_days, d.max_rows), (30, 1_000_000));
        assert!(d.service().is_ok());
        let no_days = EventsConfig {
            retention_days: 0,
            ..d
        };
        assert!(no_days.service().is_err());
        let no_rows = EventsConfig { max_rows: 0, ..d };
        assert!(no_rows.service().is_err());
    }
}

#[cfg(test)]
mod ui_tests {
    use super::*;

    #[test]
    fn github_web_addresses_follow_the_api_address() {
        assert_eq!(
            github_web_url("https://api.github.com"),
            "https://github.com"
        );
        assert_eq!(
            github_web_url("https://api.github.com/"),
            "https://github.com"
        );
        assert_eq!(
            github_web_url("https://ghe.example/api/v3"),
            "https://ghe.example"
        );
        assert_eq!(
            github_web_url("http://127.0.0.1:9000"),
            "http://127.0.0.1:9000"
        );
    }

    #[test]
    fn rule_console_cookies_are_secure_behind_https() {
        let ui = UiConfig::default();
        assert!(
            ui.server(Some("https://rp.example"), None)
                .unwrap()
                .secure_cookies
        );
        assert!(
            !ui.server(Some("http://127.0.0.1:8080"), None)
                .unwrap()
                .secure_cookies
        );
        assert!(!ui.server(None, None).unwrap().secure_cookies);
        let own = UiConfig {
            public_url: Some("https://console.example".into()),
            ..UiConfig::default()
        };
        assert!(own.server(Some("http://x"), None).unwrap().secure_cookies);
        let short = UiConfig {
            session_ttl_seconds: 5,
            ..UiConfig::default()
        };
        assert!(short.server(None, None).is_err());
    }
}
