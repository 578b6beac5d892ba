use serde_json::{Map, Value, json};

/// Description of the workflow run that minted tokens vouch for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// `owner/name` of the repository the workflow runs in.
    pub repository: String,
    /// Numeric id of that repository.
    pub repository_id: u64,
    /// Login of the repository owner.
    pub repository_owner: String,
    /// Numeric id of the repository owner.
    pub repository_owner_id: u64,
    /// Workflow run id.
    pub run_id: u64,
    /// Attempt number of the run, starting at 1.
    pub run_attempt: u32,
    /// Commit the run is for (40 hex digits).
    pub sha: String,
    /// Full git ref, e.g. `refs/heads/main` (the `ref` claim).
    pub git_ref: String,
    /// Triggering event, e.g. `push`.
    pub event_name: String,
    /// Login of the user that triggered the run.
    pub actor: String,
    /// `github-hosted` or `self-hosted`.
    pub runner_environment: String,
    /// Workflow file name under `.github/workflows/` (e.g. `ci.yml`), or a path
    /// containing `/` used as is.
    pub workflow: String,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            repository: "octo-org/octo-repo".to_owned(),
            repository_id: 1_296_269,
            repository_owner: "octo-org".to_owned(),
            repository_owner_id: 9919,
            run_id: 4_242_424_242,
            run_attempt: 1,
            sha: "6dcb09b5b57875f334f61aebed695e2e4193db5e".to_owned(),
            git_ref: "refs/heads/main".to_owned(),
            event_name: "push".to_owned(),
            actor: "octocat".to_owned(),
            runner_environment: "github-hosted".to_owned(),
            workflow: "ci.yml".to_owned(),
        }
    }
}

/// Fixed values for claims [`RunSpec`] has no field for.
pub(crate) const RUN_NUMBER: &str = "7";
pub(crate) const ACTOR_ID: &str = "583231";

impl RunSpec {
    /// The `workflow_ref` claim: `owner/repo/.github/workflows/FILE@REF`.
    pub fn workflow_ref(&self) -> String {
        format!(
            "{}/{}@{}",
            self.repository,
            self.workflow_path(),
            self.git_ref
        )
    }

    /// The workflow file's path in the repository: `.github/workflows/FILE`, or
    /// [`RunSpec::workflow`] as is when it contains `/`.
    pub(crate) fn workflow_path(&self) -> String {
        if self.workflow.contains('/') {
            self.workflow.clone()
        } else {
            format!(".github/workflows/{}", self.workflow)
        }
    }

    /// The `sub` claim as GitHub builds it by default: `repo:OWNER/REPO:pull_request` for
    /// `pull_request` events, `repo:OWNER/REPO:ref:REF` otherwise.
    pub fn subject(&self) -> String {
        if self.event_name == "pull_request" {
            format!("repo:{}:pull_request", self.repository)
        } else {
            format!("repo:{}:ref:{}", self.repository, self.git_ref)
        }
    }

    /// GitHub-shaped claims for this run, issued by `issuer` for `audience` at unix time
    /// `now` (`nbf = now - 5`, `exp = now + 300`), with a fresh uuid v4 `jti`.
    pub(crate) fn claims(&self, issuer: &str, audience: &str, now: i64) -> Map<String, Value> {
        let ref_type = if self.git_ref.starts_with("refs/heads/") {
            "branch"
        } else if self.git_ref.starts_with("refs/tags/") {
            "tag"
        } else {
            ""
        };
        let workflow_ref = self.workflow_ref();
        let claims = json!({
            "iss": issuer,
            "aud": audience,
            "sub": self.subject(),
            "ref": self.git_ref,
            "ref_type": ref_type,
            "ref_protected": "false",
            "sha": self.sha,
            "repository": self.repository,
            "repository_id": self.repository_id.to_string(),
            "repository_owner": self.repository_owner,
            "repository_owner_id": self.repository_owner_id.to_string(),
            "repository_visibility": "public",
            "run_id": self.run_id.to_string(),
            "run_number": RUN_NUMBER,
            "run_attempt": self.run_attempt.to_string(),
            "actor": self.actor,
            "actor_id": ACTOR_ID,
            "workflow": self.workflow,
            "workflow_ref": workflow_ref,
            "workflow_sha": self.sha,
            "job_workflow_ref": workflow_ref,
            "job_workflow_sha": self.sha,
            "event_name": self.event_name,
            "runner_environment": self.runner_environment,
            "head_ref": "",
            "base_ref": "",
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "nbf": now.saturating_sub(5),
            "exp": now.saturating_add(300),
        });
        match claims {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_refs() {
        let mut run = RunSpec::default();
        assert_eq!(run.subject(), "repo:octo-org/octo-repo:ref:refs/heads/main");
        assert_eq!(
            run.workflow_ref(),
            "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main"
        );
        run.event_name = "pull_request".to_owned();
        assert_eq!(run.subject(), "repo:octo-org/octo-repo:pull_request");
        run.git_ref = "refs/tags/v1".to_owned();
        let claims = run.claims("iss", "aud", 1000);
        assert_eq!(claims["ref_type"], "tag");
        assert_eq!(claims["nbf"], 995);
        assert_eq!(claims["exp"], 1300);
    }
}
