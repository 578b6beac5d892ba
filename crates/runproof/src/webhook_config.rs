//! The `[webhook_mode]` table of the configuration.

use anyhow::bail;
use runproof_core::policy::Policy;
use serde::Deserialize;

/// `[webhook_mode]`: unauthenticated uploads held `pending` until GitHub vouches for
/// their run. Off by default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookModeConfig {
    /// Whether the mode is on.
    pub enabled: bool,
    /// How long after its run completed an upload may still arrive, in seconds.
    pub grace_period_seconds: u64,
    /// How long an upload may stay pending before it expires, in seconds.
    pub pending_ttl_seconds: u64,
    /// Accept runs whose head commit is in another repository (forks).
    pub allow_forks: bool,
    /// `owner/name` of an action the run's workflow must use.
    pub require_action: Option<String>,
    /// The most uploads one run may make in this mode.
    pub max_uploads_per_run: u64,
    /// The most bytes pending at once for one repository.
    pub max_pending_bytes_per_repository: u64,
    /// The most uploads pending at once, in all.
    pub max_pending_uploads: u64,
    /// The most bytes pending at once, in all.
    pub max_pending_bytes: u64,
}

impl Default for WebhookModeConfig {
    fn default() -> Self {
        let d = runproof_service::WebhookModeConfig::default();
        Self {
            enabled: false,
            grace_period_seconds: u64::try_from(d.grace_period_seconds).unwrap_or(600),
            pending_ttl_seconds: u64::try_from(d.pending_ttl_seconds).unwrap_or(86_400),
            allow_forks: d.allow_forks,
            require_action: None,
            max_uploads_per_run: d.max_uploads_per_run,
            max_pending_bytes_per_repository: d.max_pending_bytes_per_repository,
            max_pending_uploads: d.max_pending_uploads,
            max_pending_bytes: d.max_pending_bytes,
        }
    }
}

fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Checks a `require_action` key (`webhook_mode.require_action`,
/// `policy.require_action`): `owner/name`, and the App's credentials to read workflow
/// files with. `None` when it is unset or empty (off).
///
/// # Errors
/// A message naming `key`.
pub fn check_action(
    key: &str,
    value: Option<&str>,
    has_app: bool,
) -> anyhow::Result<Option<String>> {
    let action = match value.map(str::trim) {
        None | Some("") => return Ok(None),
        Some(action) => action,
    };
    let ok = action
        .split_once('/')
        .is_some_and(|(o, n)| is_name_part(o) && is_name_part(n));
    if !ok {
        bail!("`{key}` is `owner/name`, such as `runproof/upload-action`");
    }
    if !has_app {
        bail!(
            "`{key}` needs the App's credentials (`github.app_id`, `github.private_key_file`) to read workflow files"
        );
    }
    Ok(Some(action.to_owned()))
}

impl WebhookModeConfig {
    /// Checks the table and turns it into the server's settings. `None` when the mode
    /// is off.
    ///
    /// # Errors
    /// A message naming the key at fault: the mode needs webhook secrets; the workflow
    /// check needs the App's credentials; `require_github_hosted_runner` cannot be
    /// checked in this mode; limits must be positive.
    pub fn resolve(
        &self,
        policy: &Policy,
        has_app: bool,
        has_webhook_secrets: bool,
    ) -> anyhow::Result<Option<runproof_service::WebhookModeConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        if !has_webhook_secrets {
            bail!(
                "`webhook_mode.enabled` needs `github.webhook_secrets`: pending uploads are approved by signed workflow_run webhooks"
            );
        }
        if policy.require_github_hosted_runner {
            bail!(
                "`webhook_mode.enabled` with `policy.require_github_hosted_runner`: webhooks do not say where a job ran, so every pending upload would be rejected"
            );
        }
        let secs = |v: u64, key: &str, max: u64| -> anyhow::Result<i64> {
            if v == 0 || v > max {
                bail!("`webhook_mode.{key}` must be 1 to {max}");
            }
            Ok(i64::try_from(v)?)
        };
        let grace = secs(
            self.grace_period_seconds,
            "grace_period_seconds",
            7 * 86_400,
        )?;
        let ttl = secs(self.pending_ttl_seconds, "pending_ttl_seconds", 30 * 86_400)?;
        for (key, v) in [
            ("max_uploads_per_run", self.max_uploads_per_run),
            (
                "max_pending_bytes_per_repository",
                self.max_pending_bytes_per_repository,
            ),
            ("max_pending_uploads", self.max_pending_uploads),
            ("max_pending_bytes", self.max_pending_bytes),
        ] {
            if v == 0 {
                bail!("`webhook_mode.{key}` must be positive");
            }
        }
        let require_action = check_action(
            "webhook_mode.require_action",
            self.require_action.as_deref(),
            has_app,
        )?;
        Ok(Some(runproof_service::WebhookModeConfig {
            grace_period_seconds: grace,
            pending_ttl_seconds: ttl,
            allow_forks: self.allow_forks,
            require_action,
            max_uploads_per_run: self.max_uploads_per_run,
            max_pending_bytes_per_repository: self.max_pending_bytes_per_repository,
            max_pending_uploads: self.max_pending_uploads,
            max_pending_bytes: self.max_pending_bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> WebhookModeConfig {
        WebhookModeConfig {
            enabled: true,
            ..WebhookModeConfig::default()
        }
    }

    #[test]
    fn off_by_default_and_defaults_when_on() {
        let p = Policy::default();
        assert_eq!(
            WebhookModeConfig::default()
                .resolve(&p, false, false)
                .unwrap(),
            None
        );
        let c = on().resolve(&p, false, true).unwrap().unwrap();
        assert_eq!(c.grace_period_seconds, 600);
        assert_eq!(c.pending_ttl_seconds, 86_400);
        assert!(!c.allow_forks);
        assert_eq!(c.require_action, None);
    }

    #[test]
    fn policy_require_action_is_owner_name_and_needs_the_app() {
        let key = "policy.require_action";
        assert_eq!(check_action(key, Some(""), false).unwrap(), None);
        assert_eq!(check_action(key, Some("  "), false).unwrap(), None);
        assert_eq!(
            check_action(key, Some(" your-org/upload-action "), true).unwrap(),
            Some("your-org/upload-action".to_owned())
        );
        for bad in ["upload-action", "a/b/c", "../x", "a/..", "o/n@v1", "/n"] {
            let err = check_action(key, Some(bad), true).unwrap_err().to_string();
            assert!(
                err.contains(key) && err.contains("owner/name"),
                "{bad}: {err}"
            );
        }
        let err = check_action(key, Some("o/n"), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains("app_id"), "{err}");
    }

    #[test]
    fn misconfigurations_name_the_key() {
        let p = Policy::default();
        let err = |s: &WebhookModeConfig, p: &Policy, app: bool, secrets: bool| {
            s.resolve(p, app, secrets).unwrap_err().to_string()
        };
        assert!(err(&on(), &p, true, false).contains("webhook_secrets"));
        let hosted = Policy {
            require_github_hosted_runner: true,
            ..Policy::default()
        };
        assert!(err(&on(), &hosted, true, true).contains("require_github_hosted_runner"));
        let s = WebhookModeConfig {
            require_action: Some("runproof/upload-action".into()),
            ..on()
        };
        assert!(err(&s, &p, false, true).contains("app_id"));
        assert_eq!(
            s.resolve(&p, true, true)
                .unwrap()
                .unwrap()
                .require_action
                .as_deref(),
            Some("runproof/upload-action")
        );
        let s = WebhookModeConfig {
            require_action: Some("not an action".into()),
            ..on()
        };
        assert!(err(&s, &p, true, true).contains("owner/name"));
        let s = WebhookModeConfig {
            max_pending_uploads: 0,
            ..on()
        };
        assert!(err(&s, &p, true, true).contains("max_pending_uploads"));
        let s = WebhookModeConfig {
            pending_ttl_seconds: 0,
            ..on()
        };
        assert!(err(&s, &p, true, true).contains("pending_ttl_seconds"));
    }
}
