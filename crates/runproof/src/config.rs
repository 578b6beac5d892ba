//! The configuration file (`runproof.toml`) and its `RUNPROOF_…` environment overrides.
//!
//! Each table of the file has a type, in `config/types.rs`, named after it and ending in
//! `Config` (`[oidc]` is [`OidcConfig`], `[[oidc.issuers]]` is [`OidcIssuerConfig`]);
//! [`resolve`] checks them together and turns them into what the service runs with.
//! `[sessions]` is a library type's settings as they stand and deserializes straight into
//! it (the service's `SessionConfig`); `[policy]` ([`PolicyConfig`]) holds the fields of
//! `runproof_core::policy::Policy` and the App's trust rules (`[[policy.rules]]`, each a
//! `runproof_core::rules::TrustRule`). Where a library type has the same name as a table's type here
//! (`LimitsConfig`, `WebhookModeConfig`, `S3Config`), the library's is always written with
//! its crate's path.
//!
//! Every key can also be set as `RUNPROOF_<SECTION>__<KEY>`: `config/env.rs` has the
//! rule, and finds the keys in those types.

mod env;
mod types;

pub use types::{
    Config, DeliveryConfig, GITHUB_ISSUER, GithubConfig, GithubTokenConfig, JwksConfig,
    LimitsConfig, OidcConfig, OidcIssuerConfig, PolicyConfig, StorageConfig,
};

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Format, Toml};
use runproof_core::Secret;

use types::{default_api_url, default_github_timeout};

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
    pub push: Option<runproof_service::PushConfig>,
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
    let mut config: Config = figment
        .admerge(overrides)
        .extract()
        .map_err(invalid_configuration)?;
    config.unknown_environment = unknown;
    Ok(config)
}

/// Figment's errors as a person reads them: each names its key as written in the file
/// (`oidc.leeway_seconds`, not `default.oidc.leeway_seconds`) and where it was set.
fn invalid_configuration(errors: figment::Error) -> anyhow::Error {
    let messages: Vec<String> = errors.into_iter().map(|e| describe(&e)).collect();
    anyhow::anyhow!("invalid configuration: {}", messages.join("; "))
}

fn describe(e: &figment::Error) -> String {
    use figment::error::Kind;
    let key = e.path.join(".");
    let listed = |names: &[&str]| names.join(", ");
    let what = match &e.kind {
        Kind::UnknownField(_, expected) => {
            format!("unknown key; the keys here are {}", listed(expected))
        }
        Kind::UnknownVariant(found, expected) => {
            format!(
                "unknown value {found:?}; expected one of {}",
                listed(expected)
            )
        }
        Kind::MissingField(field) => format!("`{field}` is required"),
        Kind::Message(m) if m.contains("socket address") => format!(
            "{m}: an IP address and a port are needed, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\" (a host name such as localhost is not resolved)"
        ),
        other => other.to_string(),
    };
    let place = match &e.metadata {
        Some(md) => match (&md.source, &e.profile) {
            (Some(source), _) => format!(" (in {source})"),
            // Only the environment's provider names its keys as variables.
            (None, Some(profile))
                if !e.path.is_empty()
                    && md.interpolate(profile, &e.path).starts_with("RUNPROOF_") =>
            {
                format!(" (set by {})", md.interpolate(profile, &e.path))
            }
            (None, _) => format!(" (in {})", md.name),
        },
        None => String::new(),
    };
    if key.is_empty() {
        format!("{what}{place}")
    } else {
        format!("`{key}`: {what}{place}")
    }
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
        .map_err(invalid_configuration)?;
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
    let push = match config.delivery.as_mut() {
        Some(delivery) => delivery.resolve(config.listen)?,
        None => None,
    };
    let webhook_mode = config.webhook_mode.resolve(
        &config.policy.checks(),
        app.is_some(),
        !webhook_secrets.is_empty(),
    )?;
    check_rules(&config.policy.rules)?;
    config.events.service()?;
    config.ui_settings()?;
    repository_file(&config.policy.repository_file, app.is_some())?;
    crate::webhook_config::check_action(
        "policy.require_action",
        Some(&config.policy.require_action),
        app.is_some(),
    )?;
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
        push,
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

/// `[policy] repository_file`, checked: `None` when empty (off).
///
/// # Errors
/// When the path is not relative, holds other than plain characters or a `..` segment, or
/// when the App's credentials, which read the file, are not set.
pub fn repository_file(path: &str, has_app: bool) -> anyhow::Result<Option<String>> {
    let path = path.trim();
    if path.is_empty() {
        return Ok(None);
    }
    if !runproof_github::workflow::is_safe_path(path) {
        bail!(
            "`policy.repository_file` is a relative path of letters, digits, `-`, `_`, `.` and `/`, with no `..`, such as `.github/runproof.yml`"
        );
    }
    if !has_app {
        bail!(
            "`policy.repository_file` needs the App's credentials (`github.app_id`, `github.private_key_file`) to read the file"
        );
    }
    Ok(Some(path.to_owned()))
}

/// Checks the App's layer of trust rules, naming the rule and its field at fault.
fn check_rules(rules: &[runproof_core::rules::TrustRule]) -> anyhow::Result<()> {
    use runproof_core::rules::{RuleError, validate_layer};
    match validate_layer(rules) {
        Ok(()) => Ok(()),
        Err(RuleError::InRule { index, name, error }) => {
            let named = if name.is_empty() {
                String::new()
            } else {
                format!(" ({name:?})")
            };
            bail!(
                "`policy.rules[{index}]`{named}: `{}`: {}",
                error.field,
                error.problem
            )
        }
        Err(e) => bail!("`policy.rules`: {e}"),
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

#[cfg(test)]
mod tests {
    use runproof_core::policy::Policy;

    use super::*;

    fn parse(toml: &str) -> anyhow::Result<Resolved> {
        from_toml_str(toml)
    }

    #[test]
    fn config_errors_name_the_key_as_written_and_say_what_listen_needs() {
        for (toml, expected) in [
            (
                "listen = \"localhost:8080\"\n",
                "`listen`: invalid socket address syntax: an IP address and a port are needed",
            ),
            (
                "[oidc]\nleway_seconds = 3\n",
                "`oidc.leway_seconds`: unknown key; the keys here are audience, leeway_seconds,",
            ),
            (
                "max_upload_bytes = \"lots\"\n",
                "`max_upload_bytes`: invalid type",
            ),
        ] {
            let err = parse(toml).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains("default."), "{err}");
            assert!(!err.contains("``"), "no nested backticks: {err}");
        }
    }

    #[test]
    fn minimal_config_resolves_with_defaults() {
        let r = parse("[oidc]\naudience = \"https://runproof.example.com\"\n").unwrap();
        assert_eq!(r.audience, "https://runproof.example.com");
        assert_eq!(r.oidc.issuers[0].issuer, GITHUB_ISSUER);
        assert_eq!(r.oidc.leeway_seconds, 60);
        assert!(r.oidc.replay_protection);
        assert_eq!(r.config.policy.checks(), Policy::default());
        assert!(r.config.policy.rules.is_empty());
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
    fn trust_rules_are_read_from_policy_rules() {
        let r = parse(
            "[oidc]\naudience = \"x\"\n[[policy.rules]]\nname = \"release uploads\"\n\
             repository_owner_ids = [650001]\nrepository_ids = [740001]\n\
             workflows = [\".github/workflows/release.yml\"]\n\
             job_workflows = [\"app-org/upload/.github/workflows/upload.yml@refs/tags/v*\"]\n\
             refs = [\"refs/heads/main\", \"refs/tags/v*\"]\nref_protected = true\n\
             environments = [\"production\"]\nevents = [\"push\", \"release\"]\n\
             runner_environments = [\"github-hosted\"]\n\
             claims = { repo_property_team = \"infra\" }\n\
             [[policy.rules]]\nrefs = [\"refs/heads/main\"]\n",
        )
        .unwrap();
        let rules = &r.config.policy.rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].name, "release uploads");
        assert_eq!(rules[0].ref_protected, Some(true));
        assert_eq!(
            rules[0].repository_owner_ids,
            Some(vec![runproof_core::OwnerId(650_001)])
        );
        assert_eq!(
            rules[0]
                .claims
                .as_ref()
                .and_then(|c| c.get("repo_property_team")),
            Some(&"infra".to_owned())
        );
        assert_eq!(r.config.policy.checks(), Policy::default());
    }

    #[test]
    fn rule_an_invalid_trust_rule_is_refused_at_load_naming_rule_and_field() {
        let base = "[oidc]\naudience = \"x\"\n[[policy.rules]]\nname = \"ok\"\n\
                    refs = [\"refs/heads/main\"]\n[[policy.rules]]\nname = \"release\"\n";
        for (bad, field) in [
            ("refs = [\"main\"]", "refs"),
            ("refs = []", "refs"),
            ("workflows = [\"release.yml@refs/heads/main\"]", "workflows"),
            ("job_workflows = [\"upload.yml\"]", "job_workflows"),
            ("environments = [\"prod*\"]", "environments"),
            (
                "claims = { sub = \"repo:o/r:ref:refs/heads/main\" }",
                "claims",
            ),
        ] {
            let err = parse(&format!("{base}{bad}\n")).unwrap_err().to_string();
            assert!(
                err.contains("policy.rules[1]") && err.contains("release"),
                "{bad}: {err}"
            );
            assert!(err.contains(&format!("`{field}`")), "{bad}: {err}");
        }
        let err = parse(&format!("{base}branches = [\"main\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("branches"), "an unknown field is named: {err}");
    }

    #[test]
    fn short_api_keys_are_refused() {
        let err = parse("api_keys = [\"short\"]\n[oidc]\naudience = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("16"));
    }

    #[test]
    fn rule_repository_file_is_a_plain_relative_path_read_with_the_apps_credentials() {
        assert_eq!(repository_file("", false).unwrap(), None, "off");
        assert_eq!(
            repository_file(".github/runproof.yml", true).unwrap(),
            Some(".github/runproof.yml".to_owned())
        );
        for bad in [
            "/etc/runproof.yml",
            "../runproof.yml",
            ".github/../x",
            "a b",
            "a?ref=x",
            "a//b",
        ] {
            let err = repository_file(bad, true).unwrap_err().to_string();
            assert!(err.contains("policy.repository_file"), "{bad}: {err}");
        }
        let err = repository_file(".github/runproof.yml", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("github.app_id"), "{err}");
        let err = parse(
            "[oidc]\naudience = \"x\"\n[policy]\nrepository_file = \".github/runproof.yml\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("credentials"), "refused at startup: {err}");
    }
}
