//! JSON shapes shared by the fake REST API and the webhook payload builders, modelled on
//! recorded GitHub responses and payloads (URL fields trimmed to the common ones).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The public API root GitHub names in payloads delivered by github.com.
pub(crate) const GITHUB_API: &str = "https://api.github.com";

/// What an installation's tokens may do, as the fake reports it everywhere.
pub(crate) fn installation_permissions() -> Value {
    json!({"actions": "read", "contents": "read", "metadata": "read"})
}

/// The events an installation subscribes to, as the fake reports it everywhere.
pub(crate) const INSTALLATION_EVENTS: &[&str] =
    &["installation", "installation_repositories", "workflow_run"];

/// The user that acts in payloads (sender, actor, suspender): GitHub's octocat.
pub(crate) const ACTING_USER: (&str, u64) = ("octocat", 583_231);

/// Real unix time in seconds.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a unix time (the epoch if out of range).
pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// GitHub's legacy global node id: base64 of `"0{len(Kind)}:{Kind}{id}"`.
pub(crate) fn node_id(kind: &str, id: u64) -> String {
    STANDARD.encode(format!("0{}:{kind}{id}", kind.len()))
}

/// A user or organization object (`type` is `User` or `Organization`).
pub(crate) fn account_json(api: &str, login: &str, id: u64, kind: &str) -> Value {
    json!({
        "login": login,
        "id": id,
        "node_id": node_id(kind, id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": format!("{api}/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "repos_url": format!("{api}/users/{login}/repos"),
        "type": kind,
        "site_admin": false,
    })
}

/// The acting user (see [`ACTING_USER`]).
pub(crate) fn acting_user_json(api: &str) -> Value {
    account_json(api, ACTING_USER.0, ACTING_USER.1, "User")
}

/// Splits `owner/name`; a name without `/` has an empty owner.
pub(crate) fn split_full_name(full_name: &str) -> (&str, &str) {
    full_name.split_once('/').unwrap_or(("", full_name))
}

/// The abbreviated repository object of installation payloads.
pub(crate) fn repository_ref_json(id: u64, full_name: &str) -> Value {
    let (_, name) = split_full_name(full_name);
    json!({
        "id": id,
        "node_id": node_id("Repository", id),
        "name": name,
        "full_name": full_name,
        "private": false,
    })
}

/// A public repository object as `GET /repos/{owner}/{repo}` and
/// `GET /installation/repositories` return it, owned by an organization.
pub(crate) fn repository_json(api: &str, id: u64, full_name: &str, owner_id: u64) -> Value {
    let (owner, name) = split_full_name(full_name);
    let url = format!("{api}/repos/{full_name}");
    json!({
        "id": id,
        "node_id": node_id("Repository", id),
        "name": name,
        "full_name": full_name,
        "private": false,
        "owner": account_json(api, owner, owner_id, "Organization"),
        "html_url": format!("https://github.com/{full_name}"),
        "description": null,
        "fork": false,
        "url": url,
        "hooks_url": format!("{url}/hooks"),
        "contents_url": format!("{url}/contents/{{+path}}"),
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
        "pushed_at": "2020-01-01T00:00:00Z",
        "git_url": format!("git://github.com/{full_name}.git"),
        "clone_url": format!("https://github.com/{full_name}.git"),
        "homepage": null,
        "size": 0,
        "language": "Rust",
        "archived": false,
        "disabled": false,
        "visibility": "public",
        "default_branch": "main",
        "permissions": {
            "admin": false, "maintain": false, "push": false, "triage": false, "pull": true
        },
    })
}

/// An App installation on an organization account, as `GET
/// /repos/{owner}/{repo}/installation` and installation webhooks carry it.
pub(crate) struct InstallationShape<'a> {
    pub(crate) api: &'a str,
    pub(crate) id: u64,
    pub(crate) account_login: &'a str,
    pub(crate) account_id: u64,
    pub(crate) app_id: u64,
    pub(crate) created_at: i64,
    pub(crate) suspended_at: Option<i64>,
}

impl InstallationShape<'_> {
    pub(crate) fn to_json(&self) -> Value {
        let api = self.api;
        let id = self.id;
        let created = rfc3339(self.created_at);
        let updated = rfc3339(self.suspended_at.unwrap_or(self.created_at));
        json!({
            "id": id,
            "account": account_json(api, self.account_login, self.account_id, "Organization"),
            "repository_selection": "selected",
            "access_tokens_url": format!("{api}/app/installations/{id}/access_tokens"),
            "repositories_url": format!("{api}/installation/repositories"),
            "html_url": format!(
                "https://github.com/organizations/{}/settings/installations/{id}",
                self.account_login
            ),
            "app_id": self.app_id,
            "app_slug": "runproof-test",
            "target_id": self.account_id,
            "target_type": "Organization",
            "permissions": installation_permissions(),
            "events": INSTALLATION_EVENTS,
            "created_at": created,
            "updated_at": updated,
            "single_file_name": null,
            "has_multiple_single_files": false,
            "single_file_paths": [],
            "suspended_by": self.suspended_at.map(|_| acting_user_json(api)),
            "suspended_at": self.suspended_at.map(rfc3339),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_match_github() {
        // Values from recorded payloads.
        assert_eq!(node_id("User", 21_031_067), "MDQ6VXNlcjIxMDMxMDY3");
        assert_eq!(
            node_id("Repository", 186_853_002),
            "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI="
        );
        assert_eq!(
            node_id("Organization", 41_548_062),
            "MDEyOk9yZ2FuaXphdGlvbjQxNTQ4MDYy"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_601_915_604), "2020-10-05T16:33:24Z");
        assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00Z");
    }
}
