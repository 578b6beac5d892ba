//! The workflow check: does a workflow file, at a commit, use the required Action,
//! directly or through a reusable workflow of the same repository?
//!
//! Two modes ask it. The webhook mode asks it of the run GitHub vouched for
//! (`[webhook_mode] require_action`, on the run's path at its head commit); the OIDC mode
//! asks it of the calling workflow a token names (`[policy] require_action`, on the path
//! of `workflow_ref` at `workflow_sha`), for an upload and for a session when it is opened.
//! Both fetch with an installation token and read with the bounded parser of
//! [`runproof_github::workflow`]; a definite answer is cached per (repository id, path,
//! commit, action), since a file at a commit never changes.
//!
//! What it shows, and what it does not: the workflow file at that commit names the
//! Action. It does not show that the step ran (an `if:` or an earlier failed step may
//! skip it); a `job_workflows` trust rule is the strong form.

use runproof_core::rules::Mismatch;
use runproof_core::{InstallationId, RepositoryId, RunIdentity};
use runproof_github::GithubError;
use runproof_github::workflow::{WorkflowCheck, check_workflow};

use crate::error::ServiceError;
use crate::service::Service;

/// The `mismatches` field of a refusal by this check.
pub(crate) const FIELD: &str = "require_action";

/// The workflow file to check: where it lives and at which commit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkflowAt<'a> {
    /// The repository, by id (the cache key).
    pub(crate) repository_id: RepositoryId,
    /// The repository's `owner/name`, for the contents API.
    pub(crate) full_name: &'a str,
    /// The workflow file's path, such as `.github/workflows/ci.yml`.
    pub(crate) path: &'a str,
    /// The commit.
    pub(crate) sha: &'a str,
}

/// Why the check gave no answer; nothing is decided on it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unanswered {
    /// The check needs the App's credentials, and they are not set.
    #[error("the workflow check needs the App's credentials")]
    NoCredentials,
    /// No installation can read the workflow file.
    #[error("no installation to read the workflow with")]
    NoInstallation,
    /// GitHub could not answer.
    #[error("workflow check: {0}")]
    Github(GithubError),
}

/// Whether the workflow at `at` uses `action`: from the cache, else fetched with
/// `installation`'s token and parsed within bounds. A file too large to read is a
/// definite answer ([`WorkflowCheck::Unreadable`]), cached like the others.
///
/// # Errors
/// [`Unanswered`]: no credentials, no installation, or GitHub unavailable.
pub(crate) async fn check(
    service: &Service,
    at: WorkflowAt<'_>,
    installation: Option<InstallationId>,
    action: &str,
) -> Result<WorkflowCheck, Unanswered> {
    let key = (
        at.repository_id,
        at.path.to_owned(),
        at.sha.to_owned(),
        action.to_ascii_lowercase(),
    );
    if let Some(found) = service.workflow_checks.cached(&key) {
        return Ok(found);
    }
    let Some(binding) = service.binding.as_ref() else {
        return Err(Unanswered::NoCredentials);
    };
    let Some(installation) = installation else {
        return Err(Unanswered::NoInstallation);
    };
    let app = &binding.app;
    let checked = check_workflow(at.path, action, |path| async move {
        app.file_at(at.full_name, &path, at.sha, installation).await
    })
    .await;
    let outcome = match checked {
        Ok(outcome) => outcome,
        Err(e @ GithubError::TooLarge { .. }) => {
            WorkflowCheck::Unreadable(format!("a workflow file of {}: {e}", at.path))
        }
        Err(e) => return Err(Unanswered::Github(e)),
    };
    service.workflow_checks.remember(key, outcome.clone());
    Ok(outcome)
}

/// What `[policy] require_action` says of a verified, bound OIDC identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActionVerdict {
    /// `require_action` is off.
    Off,
    /// The calling workflow uses the Action: a sentence saying where.
    Uses(String),
    /// It does not, or it cannot be read: a sentence, and the `mismatches` entry.
    Refused(String, Mismatch),
}

/// Checks that the calling workflow of `identity` (the path of its `workflow_ref`, in
/// its own repository, at `workflow_sha`) uses the required Action.
///
/// # Errors
/// `upstream_unavailable` when GitHub cannot answer; refusals are
/// [`ActionVerdict::Refused`], not errors.
pub(crate) async fn verdict(
    service: &Service,
    identity: &RunIdentity,
) -> Result<ActionVerdict, ServiceError> {
    let Some(action) = service.require_action.as_deref() else {
        return Ok(ActionVerdict::Off);
    };
    let refused = |actual: String, note: Option<String>| {
        let detail = match note {
            Some(note) => format!("the calling workflow must use {action}: {actual}; {note}"),
            None => format!("the calling workflow must use {action}: {actual}"),
        };
        let mismatch = Mismatch {
            field: FIELD.to_owned(),
            expected: vec![action.to_owned()],
            actual: Some(actual),
        };
        ActionVerdict::Refused(detail, mismatch)
    };
    let (path, sha) = match calling_workflow(identity) {
        Ok(found) => found,
        Err(why) => return Ok(refused(why, None)),
    };
    let at = WorkflowAt {
        repository_id: identity.repository_id,
        full_name: &identity.repository,
        path: &path,
        sha: &sha,
    };
    match check(service, at, identity.installation_id, action).await {
        Ok(WorkflowCheck::Uses) => Ok(ActionVerdict::Uses(format!("{path}@{sha} uses {action}"))),
        Ok(WorkflowCheck::NotUsed(what)) => {
            tracing::info!(repository_id = %identity.repository_id, %path, %sha, %what, "workflow check failed");
            Ok(refused(format!("{path}@{sha} does not use it"), Some(what)))
        }
        Ok(WorkflowCheck::Unreadable(why)) => {
            Ok(refused(format!("{path}@{sha} cannot be read: {why}"), None))
        }
        Err(Unanswered::Github(e)) => Err(ServiceError::from(&e)),
        Err(why) => Ok(refused(format!("{path}@{sha} cannot be read: {why}"), None)),
    }
}

/// Refuses `identity` unless its calling workflow uses the required Action (when one is
/// required).
///
/// # Errors
/// [`ServiceError::PolicyCheck`] (`policy_denied`, with a `mismatches` entry) when it
/// does not or cannot be read; `upstream_unavailable` when GitHub cannot answer.
pub(crate) async fn require_action(
    service: &Service,
    identity: &RunIdentity,
) -> Result<(), ServiceError> {
    match verdict(service, identity).await? {
        ActionVerdict::Off | ActionVerdict::Uses(_) => Ok(()),
        ActionVerdict::Refused(detail, mismatch) => Err(ServiceError::PolicyCheck {
            detail,
            mismatches: vec![mismatch],
        }),
    }
}

/// Refuses every upload of a mode that names no workflow (the `github_token` mode, whose
/// token says nothing of the workflow that runs) while an Action is required: nothing would
/// show the Action is used, and the setting must not be dodged by choosing the mode.
///
/// # Errors
/// [`ServiceError::PolicyCheck`] when an Action is required.
pub(crate) fn require_action_without_workflow(
    service: &Service,
    mode: &str,
) -> Result<(), ServiceError> {
    let Some(action) = service.require_action.as_deref() else {
        return Ok(());
    };
    Err(ServiceError::PolicyCheck {
        detail: format!(
            "the calling workflow must use {action}, and the {mode} mode cannot show which workflow runs; upload with the run's OIDC token"
        ),
        mismatches: vec![Mismatch {
            field: FIELD.to_owned(),
            expected: vec![action.to_owned()],
            actual: None,
        }],
    })
}

/// The calling workflow's path and commit: the path part of `workflow_ref`, which must
/// name the identity's own repository, and `workflow_sha`. A sentence saying why not.
fn calling_workflow(identity: &RunIdentity) -> Result<(String, String), String> {
    let Some(workflow_ref) = identity.workflow_ref.as_deref() else {
        return Err("the token has no workflow_ref".into());
    };
    let path = workflow_ref
        .get(..identity.repository.len())
        .filter(|repo| repo.eq_ignore_ascii_case(&identity.repository))
        .and_then(|_| workflow_ref.get(identity.repository.len()..))
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.split_once('@'))
        .map(|(path, _)| path);
    let Some(path) = path else {
        return Err(format!(
            "workflow_ref {workflow_ref} is not a workflow of {}",
            identity.repository
        ));
    };
    let Some(sha) = identity.workflow_sha.as_deref() else {
        return Err("the token has no workflow_sha".into());
    };
    Ok((path.to_owned(), sha.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use runproof_core::{OwnerId, RunId};

    fn identity(workflow_ref: Option<&str>, sha: Option<&str>) -> RunIdentity {
        RunIdentity {
            workflow_ref: workflow_ref.map(str::to_owned),
            workflow_sha: sha.map(str::to_owned),
            ..RunIdentity::new(
                "https://issuer".into(),
                RepositoryId(1),
                OwnerId(2),
                RunId(3),
                "a".repeat(40),
            )
        }
    }

    #[test]
    fn rule_require_action_reads_the_calling_workflow_of_the_tokens_own_repository() {
        let sha = "b".repeat(40);
        let mut id = identity(
            Some("Octo/Repo/.github/workflows/ci.yml@refs/heads/feat@x"),
            Some(&sha),
        );
        id.repository = "octo/repo".into();
        assert_eq!(
            calling_workflow(&id),
            Ok((".github/workflows/ci.yml".to_owned(), sha.clone()))
        );
        for (rule, workflow_ref, sha) in [
            (
                "another repository",
                Some("octo/other/.github/workflows/ci.yml@refs/heads/main"),
                Some(sha.as_str()),
            ),
            (
                "a repository whose name starts alike",
                Some("octo/repo2/.github/workflows/ci.yml@refs/heads/main"),
                Some(sha.as_str()),
            ),
            ("no workflow_ref", None, Some(sha.as_str())),
            (
                "no ref",
                Some("octo/repo/.github/workflows/ci.yml"),
                Some(sha.as_str()),
            ),
            (
                "no workflow_sha",
                Some("octo/repo/.github/workflows/ci.yml@refs/heads/main"),
                None,
            ),
        ] {
            let mut id = identity(workflow_ref, sha);
            id.repository = "octo/repo".into();
            assert!(calling_workflow(&id).is_err(), "{rule}");
        }
    }
}
