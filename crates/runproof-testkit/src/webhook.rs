//! Webhook deliveries as GitHub makes them: HMAC-SHA256 signing, a sender that POSTs
//! with GitHub's headers, and payload builders shaped like real deliveries.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::run::{ACTOR_ID, RUN_NUMBER};
use crate::shapes::{
    GITHUB_API, InstallationShape, account_json, acting_user_json, node_id, repository_json,
    repository_ref_json, rfc3339, split_full_name, unix_now,
};
use crate::{RunSpec, TestkitError};

/// The `X-GitHub-Hook-ID` a [`WebhookSender`] sends unless told otherwise.
pub const DEFAULT_HOOK_ID: u64 = 424_242_424;

/// How long a delivery may take, as GitHub's own 10-second limit.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `User-Agent` of GitHub's webhook deliveries.
const USER_AGENT: &str = "GitHub-Hookshot/abc123";

/// The `X-Hub-Signature-256` value for `body` under `secret`:
/// `sha256=` followed by the lowercase hex HMAC-SHA256.
pub fn sign_webhook(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty tag is never
    // produced in practice.
    let tag = Hmac::<Sha256>::new_from_slice(secret)
        .map(|mut mac| {
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        })
        .unwrap_or_default();
    format!("sha256={}", hex::encode(tag))
}

/// Delivers webhooks to a URL as GitHub does: `POST` with the exact body bytes and the
/// `X-GitHub-Event`, `X-GitHub-Delivery` (uuid v4), `X-GitHub-Hook-ID`,
/// `X-Hub-Signature-256`, `User-Agent: GitHub-Hookshot/…` and
/// `Content-Type: application/json` headers. The legacy SHA-1 `X-Hub-Signature` is
/// not sent.
///
/// The HTTP client ignores proxy environment variables and gives up after 10 seconds.
/// `Debug` redacts the secret.
pub struct WebhookSender {
    url: String,
    secret: Vec<u8>,
    hook_id: u64,
    /// The client, or why it could not be built (reported by every send).
    client: Result<reqwest::Client, String>,
}

impl WebhookSender {
    /// A sender delivering to `url` (such as runproof's `/v1/github/webhooks`), signing
    /// with `secret`, under hook id [`DEFAULT_HOOK_ID`].
    pub fn new(url: impl Into<String>, secret: &[u8]) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(DELIVERY_TIMEOUT)
            .connect_timeout(DELIVERY_TIMEOUT)
            .build()
            .map_err(|e| e.to_string());
        WebhookSender {
            url: url.into(),
            secret: secret.to_vec(),
            hook_id: DEFAULT_HOOK_ID,
            client,
        }
    }

    /// The same sender with another `X-GitHub-Hook-ID`.
    #[must_use]
    pub fn with_hook_id(mut self, hook_id: u64) -> Self {
        self.hook_id = hook_id;
        self
    }

    /// The URL deliveries go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serializes `payload`, signs the bytes and delivers them as event `event` under
    /// a fresh delivery id. Returns the response status, the response body (lossy
    /// UTF-8) and the delivery id used.
    ///
    /// # Errors
    /// [`TestkitError::Json`] if the payload cannot be serialized,
    /// [`TestkitError::HttpClient`] / [`TestkitError::Http`] if no response arrives.
    pub async fn send(
        &self,
        event: &str,
        payload: &Value,
    ) -> Result<(u16, String, String), TestkitError> {
        let body = serde_json::to_vec(payload)?;
        let delivery_id = uuid::Uuid::new_v4().to_string();
        let signature = sign_webhook(&self.secret, &body);
        let (status, text) = self
            .send_raw(event, &delivery_id, &body, Some(&signature))
            .await?;
        Ok((status, text, delivery_id))
    }

    /// Delivers `body` as is, with the given delivery id and `X-Hub-Signature-256`
    /// value (none at all with `None`), for hostile tests: forged or missing
    /// signatures, redeliveries under the same id, bodies that are not JSON. Returns
    /// the response status and body.
    ///
    /// # Errors
    /// [`TestkitError::HttpClient`] / [`TestkitError::Http`] if no response arrives.
    pub async fn send_raw(
        &self,
        event: &str,
        delivery_id: &str,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<(u16, String), TestkitError> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| TestkitError::HttpClient(e.clone()))?;
        let mut request = client
            .post(&self.url)
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery_id)
            .header("X-GitHub-Hook-ID", self.hook_id.to_string())
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("X-Hub-Signature-256", signature);
        }
        let response = request.send().await.map_err(TestkitError::Http)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(TestkitError::Http)?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

impl fmt::Debug for WebhookSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSender")
            .field("url", &self.url)
            .field("hook_id", &self.hook_id)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn installation_object(
    installation_id: u64,
    account_login: &str,
    account_id: u64,
    suspended: bool,
) -> Value {
    let now = unix_now();
    InstallationShape {
        api: GITHUB_API,
        id: installation_id,
        account_login,
        account_id,
        app_id: 0,
        created_at: now,
        suspended_at: suspended.then_some(now),
    }
    .to_json()
}

fn repository_refs(repositories: &[(u64, &str)]) -> Vec<Value> {
    repositories
        .iter()
        .map(|&(id, name)| repository_ref_json(id, name))
        .collect()
}

/// An `installation` event payload (`action`: `created`, `deleted`, `suspend`,
/// `unsuspend`, `new_permissions_accepted`) for an installation on organization
/// `account_login` covering `repositories` (`(id, "owner/name")`).
///
/// `installation.app_id` is 0 (set it if a test cares); `suspended_at`/`suspended_by`
/// are set for `suspend`; timestamps are now; the sender is octocat.
pub fn installation_payload(
    action: &str,
    installation_id: u64,
    account_login: &str,
    account_id: u64,
    repositories: &[(u64, &str)],
) -> Value {
    json!({
        "action": action,
        "installation": installation_object(
            installation_id, account_login, account_id, action == "suspend"
        ),
        "repositories": repository_refs(repositories),
        "sender": acting_user_json(GITHUB_API),
    })
}

/// An `installation_repositories` event payload (`action`: `added` or `removed`) with
/// the given `repositories_added` and `repositories_removed` (`(id, "owner/name")`).
///
/// `installation.app_id` is 0, as in [`installation_payload`].
pub fn installation_repositories_payload(
    action: &str,
    installation_id: u64,
    account_login: &str,
    account_id: u64,
    added: &[(u64, &str)],
    removed: &[(u64, &str)],
) -> Value {
    json!({
        "action": action,
        "installation": installation_object(installation_id, account_login, account_id, false),
        "repository_selection": "selected",
        "repositories_added": repository_refs(added),
        "repositories_removed": repository_refs(removed),
        "requester": null,
        "sender": acting_user_json(GITHUB_API),
    })
}

/// The abbreviated repository object inside `workflow_run`.
fn run_repository(run: &RunSpec, owner: &Value) -> Value {
    let (_, name) = split_full_name(&run.repository);
    json!({
        "id": run.repository_id,
        "node_id": node_id("Repository", run.repository_id),
        "name": name,
        "full_name": run.repository,
        "private": false,
        "owner": owner,
        "html_url": format!("https://github.com/{}", run.repository),
        "description": null,
        "fork": false,
        "url": format!("{GITHUB_API}/repos/{}", run.repository),
    })
}

/// A `workflow_run` event payload (`action`: `requested`, `in_progress`, `completed`)
/// for `run`: `workflow_run.id` = `run_id`, `run_attempt`, `head_sha` = `sha`,
/// `event` = `event_name`, `path` = `.github/workflows/WORKFLOW`, the given `status`
/// and `conclusion`, timestamps now, `repository`/`head_repository` with the run's
/// repository and owner ids. Top level: `repository`, `organization`, `sender` (the
/// run's actor) and `installation: {"id"}` when `installation_id` is given.
pub fn workflow_run_payload(
    action: &str,
    run: &RunSpec,
    installation_id: Option<u64>,
    status: &str,
    conclusion: Option<&str>,
) -> Value {
    let now = rfc3339(unix_now());
    let owner = account_json(
        GITHUB_API,
        &run.repository_owner,
        run.repository_owner_id,
        "Organization",
    );
    let actor_id: u64 = ACTOR_ID.parse().unwrap_or(0);
    let run_number: u64 = RUN_NUMBER.parse().unwrap_or(1);
    let actor = account_json(GITHUB_API, &run.actor, actor_id, "User");
    let path = run.workflow_path();
    let workflow_name = path
        .rsplit('/')
        .next()
        .unwrap_or(&path)
        .trim_end_matches(".yaml")
        .trim_end_matches(".yml")
        .to_owned();
    let head_branch = run
        .git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| run.git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(&run.git_ref);
    let workflow_id: u64 = 161_335;
    let run_url = format!(
        "{GITHUB_API}/repos/{}/actions/runs/{}",
        run.repository, run.run_id
    );
    let repo_short = run_repository(run, &owner);
    let mut repository = repository_json(
        GITHUB_API,
        run.repository_id,
        &run.repository,
        run.repository_owner_id,
    );
    if let Value::Object(map) = &mut repository {
        map.insert("owner".to_owned(), owner.clone());
        // The caller's permissions are a REST notion; webhooks do not carry them.
        map.remove("permissions");
    }
    let mut payload = json!({
        "action": action,
        "workflow_run": {
            "id": run.run_id,
            "name": workflow_name,
            "node_id": node_id("WorkflowRun", run.run_id),
            "head_branch": head_branch,
            "head_sha": run.sha,
            "path": path,
            "display_title": format!("{workflow_name} on {head_branch}"),
            "run_number": run_number,
            "event": run.event_name,
            "status": status,
            "conclusion": conclusion,
            "workflow_id": workflow_id,
            "check_suite_id": run.run_id.wrapping_add(1),
            "url": run_url,
            "html_url": format!("https://github.com/{}/actions/runs/{}", run.repository, run.run_id),
            "pull_requests": [],
            "created_at": now,
            "updated_at": now,
            "actor": actor,
            "run_attempt": run.run_attempt,
            "run_started_at": now,
            "triggering_actor": actor,
            "jobs_url": format!("{run_url}/jobs"),
            "logs_url": format!("{run_url}/logs"),
            "workflow_url": format!("{GITHUB_API}/repos/{}/actions/workflows/{workflow_id}", run.repository),
            "head_commit": {
                "id": run.sha,
                "tree_id": run.sha,
                "message": "test commit",
                "timestamp": now,
                "author": {"name": run.actor, "email": format!("{}@users.noreply.github.com", run.actor)},
                "committer": {"name": "GitHub", "email": "noreply@github.com"},
            },
            "repository": repo_short,
            "head_repository": repo_short,
        },
        "workflow": {
            "id": workflow_id,
            "node_id": node_id("Workflow", workflow_id),
            "name": workflow_name,
            "path": path,
            "state": "active",
            "created_at": now,
            "updated_at": now,
            "url": format!("{GITHUB_API}/repos/{}/actions/workflows/{workflow_id}", run.repository),
            "html_url": format!("https://github.com/{}/blob/main/{path}", run.repository),
        },
        "repository": repository,
        "organization": {
            "login": run.repository_owner,
            "id": run.repository_owner_id,
            "node_id": node_id("Organization", run.repository_owner_id),
            "url": format!("{GITHUB_API}/orgs/{}", run.repository_owner),
            "description": "",
        },
        "sender": actor,
    });
    if let (Some(id), Value::Object(map)) = (installation_id, &mut payload) {
        map.insert(
            "installation".to_owned(),
            json!({"id": id, "node_id": node_id("IntegrationInstallation", id)}),
        );
    }
    payload
}

/// The `workflow_run` object of [`workflow_run_payload`] alone: what
/// `GET /repos/{owner}/{repo}/actions/runs/{run_id}` returns.
pub fn workflow_run_object(run: &RunSpec, status: &str, conclusion: Option<&str>) -> Value {
    workflow_run_payload("requested", run, None, status, conclusion)
        .get("workflow_run")
        .cloned()
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_docs_vector() {
        assert_eq!(
            sign_webhook(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn debug_redacts_secret() {
        let sender = WebhookSender::new("http://127.0.0.1:1/hook", b"hunter2");
        let debug = format!("{sender:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn workflow_run_shape() {
        let run = RunSpec::default();
        let payload =
            workflow_run_payload("completed", &run, Some(7), "completed", Some("success"));
        let wr = &payload["workflow_run"];
        assert_eq!(wr["id"], run.run_id);
        assert_eq!(wr["run_attempt"], 1);
        assert_eq!(wr["head_sha"], run.sha);
        assert_eq!(wr["event"], "push");
        assert_eq!(wr["path"], ".github/workflows/ci.yml");
        assert_eq!(wr["name"], "ci");
        assert_eq!(wr["head_branch"], "main");
        assert_eq!(wr["conclusion"], "success");
        assert_eq!(wr["head_repository"]["id"], run.repository_id);
        assert_eq!(wr["repository"]["owner"]["id"], run.repository_owner_id);
        assert_eq!(payload["repository"]["full_name"], run.repository);
        assert_eq!(
            payload["repository"]["owner"]["login"],
            run.repository_owner
        );
        assert_eq!(payload["installation"]["id"], 7);
        assert_eq!(payload["sender"]["login"], run.actor);
        let none = workflow_run_payload("requested", &run, None, "requested", None);
        assert!(none.get("installation").is_none());
        assert!(none["workflow_run"]["conclusion"].is_null());
    }
}
