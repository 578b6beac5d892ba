//! GitHub REST and webhook payload types, as far as runproof reads them.
//!
//! Unknown fields are ignored; ids are integer newtypes. Parsing is pure: these types
//! are also used on webhook bodies after their signature has been checked.

use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId};
use serde::Deserialize;

/// A user or organization.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    /// The account's id.
    pub id: OwnerId,
    /// The login, for display.
    pub login: String,
}

/// A repository as the REST API and webhooks describe it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    /// The repository's id.
    pub id: RepositoryId,
    /// `owner/name`.
    pub full_name: String,
    /// The owner.
    pub owner: Account,
}

/// `GET /repos/{owner}/{repo}/installation` and the `installation` object of webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Installation {
    /// The installation's id.
    pub id: InstallationId,
    /// The account the App is installed on (absent in some abbreviated payloads).
    pub account: Option<Account>,
    /// `all` or `selected`.
    pub repository_selection: Option<String>,
    /// When it was suspended, if it is.
    pub suspended_at: Option<String>,
    /// When it was created, in Unix seconds (GitHub sends RFC 3339, older payloads a
    /// number); `None` when absent or unreadable.
    #[serde(default, deserialize_with = "lenient_time")]
    pub created_at: Option<i64>,
    /// When GitHub last changed it, as `created_at`.
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_at: Option<i64>,
}

impl Installation {
    /// The latest time the object carries (`updated_at`, `created_at`, `suspended_at`), by
    /// GitHub's clock: the time of the state it describes, to order deliveries by. `None`
    /// when it carries none.
    #[must_use]
    pub fn as_of(&self) -> Option<i64> {
        let suspended = self.suspended_at.as_deref().and_then(parse_timestamp);
        [self.updated_at, self.created_at, suspended]
            .into_iter()
            .flatten()
            .max()
    }
}

/// A time as RFC 3339 text or Unix seconds; anything else reads as `None`, so that an odd
/// time never makes a whole payload unreadable.
fn lenient_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => parse_timestamp(&s),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    })
}

/// `GET /installation/repositories`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstallationRepositories {
    /// How many repositories the token can see.
    pub total_count: u64,
    /// The repositories on this page.
    pub repositories: Vec<Repository>,
}

/// `POST /app/installations/{id}/access_tokens`.
#[derive(Deserialize)]
pub struct AccessToken {
    /// The token.
    pub token: String,
    /// RFC 3339 expiry.
    pub expires_at: String,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// GitHub's error body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub message: String,
    /// Where GitHub documents it.
    pub documentation_url: Option<String>,
}

/// A repository reference in installation payloads (`id`, `full_name`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepositoryRef {
    /// The repository's id.
    pub id: RepositoryId,
    /// `owner/name`.
    pub full_name: String,
}

/// A repository reference that may carry only an id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepositoryIdRef {
    /// The repository's id.
    pub id: RepositoryId,
}

/// An installation reference (`{"id": …}`) in other events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstallationRef {
    /// The installation's id.
    pub id: InstallationId,
}

/// The `installation` event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstallationEvent {
    /// `created`, `deleted`, `suspend`, `unsuspend`, `new_permissions_accepted`.
    pub action: String,
    /// The installation.
    pub installation: Installation,
    /// The repositories it covers, when listed.
    #[serde(default)]
    pub repositories: Option<Vec<RepositoryRef>>,
}

/// The `installation_repositories` event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InstallationRepositoriesEvent {
    /// `added` or `removed`.
    pub action: String,
    /// The installation.
    pub installation: Installation,
    /// `all` or `selected`, after the change.
    pub repository_selection: Option<String>,
    /// Repositories added.
    #[serde(default)]
    pub repositories_added: Vec<RepositoryRef>,
    /// Repositories removed.
    #[serde(default)]
    pub repositories_removed: Vec<RepositoryRef>,
}

/// The `workflow_run` object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkflowRun {
    /// The run's id.
    pub id: RunId,
    /// The attempt (1 when absent, as in older payloads).
    #[serde(default)]
    pub run_attempt: Option<u32>,
    /// The commit.
    pub head_sha: String,
    /// The workflow file, such as `.github/workflows/ci.yml` (absent in older payloads).
    #[serde(default)]
    pub path: Option<String>,
    /// The triggering event.
    pub event: String,
    /// `requested`, `queued`, `in_progress`, `completed`, …
    pub status: Option<String>,
    /// The conclusion once completed.
    pub conclusion: Option<String>,
    /// RFC 3339.
    pub created_at: Option<String>,
    /// RFC 3339.
    pub updated_at: Option<String>,
    /// RFC 3339.
    pub run_started_at: Option<String>,
    /// The repository the head commit lives in (differs for forks).
    pub head_repository: Option<RepositoryIdRef>,
    /// The repository the run belongs to.
    pub repository: Option<RepositoryIdRef>,
}

/// `GET /repos/{owner}/{repo}/contents/{path}` for a file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContentFile {
    /// `file`, `dir`, `symlink` or `submodule`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `base64`, or `none` for files over 1 MB.
    pub encoding: Option<String>,
    /// The content, base64 with line breaks.
    pub content: Option<String>,
}

/// The `workflow_run` event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkflowRunEvent {
    /// `requested`, `in_progress`, `completed`.
    pub action: String,
    /// The run.
    pub workflow_run: WorkflowRun,
    /// The repository.
    pub repository: Repository,
    /// The App installation the delivery is for (absent on repository webhooks).
    pub installation: Option<InstallationRef>,
}

/// Parses an RFC 3339 timestamp into Unix seconds.
#[must_use]
pub fn parse_timestamp(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn installation_times_read_as_github_sends_them() {
        // Shapes of octokit's recorded examples: RFC 3339 with an offset, and Unix seconds.
        let suspend: Installation = serde_json::from_str(
            r#"{"id": 1, "created_at": "2021-04-28T22:32:21.000-04:00",
                "updated_at": "2021-04-28T22:32:50.000-04:00",
                "suspended_at": "2021-04-29T02:32:50Z"}"#,
        )
        .unwrap();
        assert_eq!(suspend.as_of(), Some(1_619_663_570));
        let unsuspend: Installation = serde_json::from_str(
            r#"{"id": 1, "updated_at": "2021-04-28T22:32:50.000-04:00", "suspended_at": null}"#,
        )
        .unwrap();
        assert_eq!(unsuspend.as_of(), suspend.as_of(), "the same second");
        let old: Installation = serde_json::from_str(
            r#"{"id": 2, "created_at": 1525109898, "updated_at": 1525109899}"#,
        )
        .unwrap();
        assert_eq!(old.as_of(), Some(1_525_109_899));
        let odd: Installation =
            serde_json::from_str(r#"{"id": 3, "updated_at": true, "created_at": "yesterday"}"#)
                .unwrap();
        assert_eq!(odd.as_of(), None, "an odd time is no time, not an error");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        #[test]
        fn webhook_payload_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = serde_json::from_slice::<InstallationEvent>(&bytes);
            let _ = serde_json::from_slice::<InstallationRepositoriesEvent>(&bytes);
            let _ = serde_json::from_slice::<WorkflowRunEvent>(&bytes);
        }

        #[test]
        fn webhook_payload_shapes_never_panic(id in any::<i64>(), action in "\\PC{0,12}", sha in "\\PC{0,44}", attempt in any::<i64>()) {
            let body = serde_json::json!({
                "action": action,
                "workflow_run": {"id": id, "run_attempt": attempt, "head_sha": sha, "path": sha, "event": action},
                "repository": {"id": id, "full_name": action, "owner": {"id": id, "login": action}},
                "installation": {"id": id, "account": {"id": id, "login": action}},
                "repositories_added": [{"id": id, "full_name": sha}],
            });
            let bytes = body.to_string();
            let _ = serde_json::from_str::<InstallationEvent>(&bytes);
            let _ = serde_json::from_str::<InstallationRepositoriesEvent>(&bytes);
            let _ = serde_json::from_str::<WorkflowRunEvent>(&bytes);
            let _ = parse_timestamp(&sha);
        }
    }
}
