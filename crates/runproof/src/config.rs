//! The configuration file (`runproof.toml`) and its `RUNPROOF_…` environment overrides.
//!
//! Each table of the file has a type here named after it and ending in `Config`
//! (`[oidc]` is [`OidcConfig`], `[[oidc.issuers]]` is [`OidcIssuerConfig`]); [`resolve`]
//! checks them together and turns them into what the service runs with. Two tables are
//! a library type's settings as they stand and deserialize straight into it: `[policy]`
//! ([`Policy`]) and `[sessions]` (the service's `SessionConfig`). Where a library type has
//! the same name as a table's type here (`LimitsConfig`, `WebhookModeConfig`,
//! `S3Config`), the library's is always written with its crate's path.
//!
//! Every key can also be set as `RUNPROOF_<SECTION>__<KEY>`: `config/env.rs` has the
//! rule, and finds the keys in these types.

mod env;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Toml};
use runproof_core::policy::Policy;
use runproof_core::{Secret, verifier::DEFAULT_LEEWAY_SECONDS};
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
    /// Policy applied to every verified run.
    #[serde(default)]
    pub policy: Policy,
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
    /// `RUNPROOF_…` variables that set no key, by name only (a value may be a secret):
    /// [`resolve`] warns about each.
    #[serde(skip)]
    pub unknown_environment: Vec<String>,
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
/// "push"; [`resolve`] turns it into the service's `PushConfig`).
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
fn default_github_timeout() -> u64 {
    10
}
fn default_api_url() -> String {
    "https://api.github.com".into()
}
fn default_issuers() -> Vec<OidcIssuerConfig> {
    vec![OidcIssuerConfig {
        issuer: GITHUB_ISSUER.into(),
        jwks_url: None,
    }]
}

/// A configuration that passed every check, with defaults resolved.
#[derive(Debug)]
pub struct Resolved {
    /// The parsed file.
    pub config: Config,
    /// The audience.
    pub audience: String,
    /// The OIDC section.
    pub oidc: OidcConfig,
    /// All API keys (inline and from the file).
    pub api_keys: Vec<Secret>,
    /// The database and the blob store.
    pub storage: crate::storage::Storage,
    /// GitHub's REST API.
    pub api_url: String,
    /// The App's id and private key, when installation binding is on.
    pub app: Option<(u64, Secret)>,
    /// Webhook secrets (inline and from the file).
    pub webhook_secrets: Vec<Secret>,
    /// Timeout of each request to GitHub's API.
    pub github_timeout: std::time::Duration,
    /// Signed pushes, when `[delivery] url` is set.
    pub delivery: Option<runproof_service::PushConfig>,
    /// The webhook mode, when `[webhook_mode] enabled = true`.
    pub webhook_mode: Option<runproof_service::WebhookModeConfig>,
}

/// Reads the file (if any) and the environment overrides; the names of `RUNPROOF_…`
/// variables that set no key are kept in [`Config::unknown_environment`].
///
/// # Errors
/// When the file cannot be read, a key is unknown or has the wrong type.
pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    let mut figment = Figment::new();
    if let Some(path) = path {
        if !path.exists() {
            bail!("config file {} does not exist", path.display());
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    let (overrides, unknown) = env::read(std::env::vars_os());
    // Lists from the environment add to the file's: `admerge` concatenates arrays.
    let mut config: Config = figment.admerge(overrides).extract().map_err(|e| {
        let messages: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("invalid configuration: {}", messages.join("; "))
    })?;
    config.unknown_environment = unknown;
    Ok(config)
}

fn read_lines(path: &Path, key: &str) -> anyhow::Result<Vec<Secret>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("`{key}`: cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| Secret::new(l.to_owned()))
        .collect())
}

/// Parses a configuration from TOML text alone (no environment), then checks it.
///
/// # Errors
/// As [`load`] and [`resolve`].
pub fn from_toml_str(text: &str) -> anyhow::Result<Resolved> {
    let config: Config = Figment::new()
        .merge(Toml::string(text))
        .extract()
        .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    resolve(config)
}

/// Checks a loaded configuration and resolves its defaults.
///
/// # Errors
/// A message naming the key at fault.
pub fn resolve(mut config: Config) -> anyhow::Result<Resolved> {
    for name in &config.unknown_environment {
        tracing::warn!(
            "{name} sets no configuration key and is ignored (a key `section.key` is RUNPROOF_SECTION__KEY)"
        );
    }
    let oidc = config
        .oidc
        .take()
        .context("`oidc.audience` is required: set it to this server's own URL, e.g. \"https://runproof.example.com\"")?;
    let audience = oidc
        .audience
        .clone()
        .filter(|a| !a.trim().is_empty())
        .context("`oidc.audience` is required: set it to this server's own URL")?;
    if audience.starts_with("https://github.com/") {
        bail!(
            "`oidc.audience` must be this server's own audience, not GitHub's default `{audience}`, which every service shares"
        );
    }
    if oidc.issuers.is_empty() {
        bail!("`oidc.issuers` is empty: name at least one issuer");
    }
    if !(0..=600).contains(&oidc.leeway_seconds) {
        bail!("`oidc.leeway_seconds` must be 0 to 600");
    }
    if config.max_upload_bytes == 0 {
        bail!("`max_upload_bytes` must be positive");
    }
    if config.storage.inline_max_bytes > runproof_service::MAX_INLINE_MAX_BYTES {
        bail!(
            "`storage.inline_max_bytes` must be at most {} (1 MiB); larger bodies belong in the blob store",
            runproof_service::MAX_INLINE_MAX_BYTES
        );
    }
    if !matches!(config.log_format.as_str(), "text" | "json") {
        bail!("`log_format` is `text` or `json`");
    }
    let mut api_keys = std::mem::take(&mut config.api_keys);
    if let Some(file) = &config.api_keys_file {
        api_keys.extend(read_lines(file, "api_keys_file")?);
    }
    let (api_url, app, webhook_secrets, github_timeout) = resolve_github(config.github.as_mut())?;
    let delivery = match config.delivery.as_mut() {
        Some(delivery) => delivery.resolve(config.listen)?,
        None => None,
    };
    let webhook_mode =
        config
            .webhook_mode
            .resolve(&config.policy, app.is_some(), !webhook_secrets.is_empty())?;
    if !(1..=24 * 3600).contains(&config.sessions.ttl.as_secs()) {
        bail!("`sessions.ttl_seconds` must be 1 to 86400");
    }
    if api_keys.iter().any(|k| k.expose().len() < 16) {
        bail!("`api_keys`: every API key must be at least 16 characters");
    }
    let storage = crate::storage::resolve(
        &config.data_dir,
        config.database_url.as_ref().map(Secret::expose),
        config.blob_store.as_deref(),
        &config.database,
        config.s3.as_ref(),
    )?;
    Ok(Resolved {
        delivery,
        webhook_mode,
        api_url,
        app,
        webhook_secrets,
        github_timeout,
        audience,
        oidc,
        api_keys,
        storage,
        config,
    })
}

impl DeliveryConfig {
    /// Checks the table and turns it into the service's push settings, taking the secrets
    /// out of it. `None` without a `url`.
    ///
    /// # Errors
    /// A message naming the key at fault.
    pub fn resolve(
        &mut self,
        listen: SocketAddr,
    ) -> anyhow::Result<Option<runproof_service::PushConfig>> {
        let Some(url) = self.url.clone() else {
            return Ok(None);
        };
        runproof_github::check_issuer_url(&url)
            .map_err(|e| anyhow::anyhow!("`delivery.url`: {e}"))?;
        let mut secrets = std::mem::take(&mut self.secrets);
        if let Some(file) = &self.secrets_file {
            secrets.extend(read_lines(file, "delivery.secrets_file")?);
        }
        if secrets.is_empty() {
            bail!(
                "`delivery.secrets`: at least one signing secret is required with `delivery.url`"
            );
        }
        if secrets.iter().any(|s| s.expose().len() < 16) {
            bail!("`delivery.secrets`: every secret must be at least 16 characters");
        }
        const EVENTS: [&str; 3] = ["upload.verified", "upload.rejected", "upload.expired"];
        if let Some(bad) = self.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            bail!(
                "`delivery.events`: unknown event `{bad}` (known: {})",
                EVENTS.join(", ")
            );
        }
        if self.max_attempts == 0 {
            bail!("`delivery.max_attempts` must be at least 1");
        }
        Ok(Some(runproof_service::PushConfig {
            url,
            secrets,
            events: self.events.clone(),
            max_attempts: self.max_attempts,
            timeout: std::time::Duration::from_secs(self.timeout_seconds.max(1)),
            base_backoff: std::time::Duration::from_secs(self.backoff_seconds.max(1)),
            max_backoff: std::time::Duration::from_secs(self.max_backoff_seconds.max(1)),
            public_url: self
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{listen}")),
        }))
    }
}

type GithubParts = (
    String,
    Option<(u64, Secret)>,
    Vec<Secret>,
    std::time::Duration,
);

fn resolve_github(github: Option<&mut GithubConfig>) -> anyhow::Result<GithubParts> {
    let Some(github) = github else {
        return Ok((
            default_api_url(),
            None,
            Vec::new(),
            std::time::Duration::from_secs(default_github_timeout()),
        ));
    };
    runproof_github::check_issuer_url(&github.api_url)
        .map_err(|e| anyhow::anyhow!("`github.api_url`: {e}"))?;
    let app = match (github.app_id, &github.private_key_file) {
        (0, None) => None,
        (0, Some(_)) => bail!("`github.private_key_file` is set but `github.app_id` is not"),
        (_, None) => bail!("`github.app_id` is set but `github.private_key_file` is not"),
        (id, Some(path)) => {
            let pem = std::fs::read_to_string(path).with_context(|| {
                format!("`github.private_key_file`: cannot read {}", path.display())
            })?;
            Some((id, Secret::new(pem)))
        }
    };
    let mut secrets = std::mem::take(&mut github.webhook_secrets);
    if let Some(file) = &github.webhook_secrets_file {
        secrets.extend(read_lines(file, "github.webhook_secrets_file")?);
    }
    if secrets.iter().any(|s| s.expose().len() < 16) {
        bail!("`github.webhook_secrets`: every secret must be at least 16 characters");
    }
    Ok((
        github.api_url.clone(),
        app,
        secrets,
        std::time::Duration::from_secs(github.timeout_seconds.max(1)),
    ))
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
    use super::*;

    fn parse(toml: &str) -> anyhow::Result<Resolved> {
        from_toml_str(toml)
    }

    #[test]
    fn minimal_config_resolves_with_defaults() {
        let r = parse("[oidc]\naudience = \"https://runproof.example.com\"\n").unwrap();
        assert_eq!(r.audience, "https://runproof.example.com");
        assert_eq!(r.oidc.issuers[0].issuer, GITHUB_ISSUER);
        assert_eq!(r.oidc.leeway_seconds, 60);
        assert!(r.oidc.replay_protection);
        assert_eq!(r.config.policy, Policy::default());
        assert!(
            r.storage
                .database
                .url()
                .ends_with("runproof-data/runproof.db")
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[oidc]\naudience = \"x\"\naudiences = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("audiences"), "{err}");
        let err = parse("lisen = \"1.2.3.4:5\"\n[oidc]\naudience = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_address_blocks() {
        let r = parse(
            "[oidc]\naudience = \"x\"\n[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::1\"]\n\
             forwarded_header = \"forwarded\"\n",
        )
        .unwrap();
        let limits = r.config.limits.server();
        assert_eq!(limits.trusted_proxies.len(), 2);
        assert!(limits.trusted_proxies[0].contains([10, 1, 2, 3].into()));
        assert_eq!(
            limits.forwarded_header,
            runproof_server::ForwardedHeader::Forwarded
        );
        for bad in [
            "trusted_proxies = [\"10.0.0.0/33\"]",
            "trusted_proxies = [\"proxy.internal\"]",
            "forwarded_header = \"x-real-ip\"",
        ] {
            let err = parse(&format!("[oidc]\naudience = \"x\"\n[limits]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("limits."), "{bad}: {err}");
        }
        let defaults = parse("[oidc]\naudience = \"x\"\n")
            .unwrap()
            .config
            .limits
            .server();
        assert!(defaults.trusted_proxies.is_empty());
        assert_eq!(defaults, runproof_server::LimitsConfig::default());
    }

    #[test]
    fn rule_custom_audience_required() {
        assert!(parse("").unwrap_err().to_string().contains("oidc.audience"));
        assert!(parse("[oidc]\naudience = \"\"\n").is_err());
        let err = parse("[oidc]\naudience = \"https://github.com/octo-org\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("GitHub's default"), "{err}");
    }

    #[test]
    fn github_section_needs_id_and_key_together() {
        let base = "[oidc]\naudience = \"x\"\n[github]\n";
        let err = parse(&format!("{base}app_id = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("private_key_file"), "{err}");
        let err = parse(&format!("{base}private_key_file = \"/k.pem\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("app_id"), "{err}");
        let err = parse(&format!(
            "{base}app_id = 5\nprivate_key_file = \"/nonexistent.pem\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot read"), "{err}");
        let err = parse(&format!("{base}webhook_secrets = [\"short\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("16"), "{err}");
        let err = parse(&format!("{base}api_url = \"http://api.example.com\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_url"), "{err}");
        let ok = parse(&format!("{base}webhook_secrets = [\"0123456789abcdef\"]\n")).unwrap();
        assert!(ok.app.is_none());
        assert_eq!(ok.webhook_secrets.len(), 1);
        assert_eq!(ok.api_url, "https://api.github.com");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
        #[test]
        fn config_parsing_never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn config_parsing_of_toml_shapes_never_panics(
            key in "[a-z_]{1,24}", value in "(\"[^\"\\\\]{0,20}\"|[0-9]{1,20}|true|-1|\\[\\])",
            section in "(oidc|policy|github|jwks|github_token|)",
        ) {
            let text = if section.is_empty() {
                format!("{key} = {value}\n[oidc]\naudience = \"a\"\n")
            } else {
                format!("[{section}]\n{key} = {value}\n")
            };
            let _ = parse(&text);
        }
    }

    #[test]
    fn short_api_keys_are_refused() {
        let err = parse("api_keys = [\"short\"]\n[oidc]\naudience = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("16"));
    }
}
