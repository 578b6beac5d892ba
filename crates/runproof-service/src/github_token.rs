//! The `github_token` mode: the run's `GITHUB_TOKEN`, checked with GitHub while the run
//! is alive.
//!
//! GitHub is asked, synchronously, which repositories the token can see
//! (`GET /installation/repositories`). Only a token that sees exactly one repository, the
//! claimed one, is accepted; the repository and owner ids come from GitHub's answer. The
//! run id, attempt and commit are the client's word and are marked unverified. The token
//! is held in a [`Secret`] (zeroized on drop) and never stored, logged or echoed.

use std::time::Instant;

use runproof_core::run_header::{RunHeader, parse_sha};
use runproof_core::{ErrorCode, RunIdentity, Secret};
use runproof_github::{GithubError, installation_repositories};

use crate::binding::upstream;
use crate::error::ServiceError;
use crate::oidc::record_outcome;
use crate::service::ClaimedRun;
use crate::service::Service;

pub use crate::issuers::API_ISSUER;

fn header<'a>(value: Option<&'a str>, name: &str) -> Result<&'a str, ServiceError> {
    value.ok_or_else(|| {
        ServiceError::invalid(format!("the github_token mode needs the {name} header"))
    })
}

/// Verifies a `GITHUB_TOKEN` and builds the identity it vouches for.
pub async fn verify(
    state: &Service,
    token: &str,
    claimed: ClaimedRun<'_>,
) -> Result<RunIdentity, ServiceError> {
    let started = Instant::now();
    let result = verify_inner(state, token, claimed).await;
    record_outcome(
        "github_token",
        started,
        result.as_ref().err().map(ServiceError::code),
    );
    result
}

async fn verify_inner(
    state: &Service,
    token: &str,
    claimed: ClaimedRun<'_>,
) -> Result<RunIdentity, ServiceError> {
    let Some(rest) = state.github_token.as_ref() else {
        return Err(ServiceError::refused(
            ErrorCode::ModeDisabled,
            "the github_token mode is not enabled on this server",
        ));
    };
    let repository = header(claimed.repository, "x-runproof-repository")?;
    let run = RunHeader::parse(header(claimed.run, "x-runproof-run")?)
        .map_err(|e| ServiceError::invalid(e.to_string()))?;
    let sha = parse_sha(header(claimed.sha, "x-runproof-sha")?)
        .map_err(|e| ServiceError::invalid(e.to_string()))?;

    let token = Secret::new(token.to_owned());
    let seen = match installation_repositories(rest, &token).await {
        Ok(seen) => seen,
        Err(GithubError::Unauthorized | GithubError::Forbidden(_) | GithubError::NotFound) => {
            return Err(ServiceError::refused(
                ErrorCode::InvalidGithubToken,
                "GitHub does not accept this token (is the run still in progress?)",
            ));
        }
        Err(e) => return Err(upstream(&e)),
    };
    drop(token);

    let [repo] = seen.repositories.as_slice() else {
        return Err(ServiceError::refused(
            ErrorCode::PolicyDenied,
            format!(
                "the token sees {} repositories; a run's GITHUB_TOKEN sees exactly one",
                seen.total_count
            ),
        ));
    };
    if seen.total_count != 1 || !repo.full_name.eq_ignore_ascii_case(repository) {
        return Err(ServiceError::refused(
            ErrorCode::PolicyDenied,
            "the token does not belong to the claimed repository",
        ));
    }
    if run.repository_id != repo.id {
        return Err(ServiceError::refused(
            ErrorCode::PolicyDenied,
            "X-Runproof-Run names another repository than the token's",
        ));
    }
    state
        .verifier
        .config()
        .policy
        .check_repository(repo.owner.id, repo.id)
        .map_err(|rule| ServiceError::refused(ErrorCode::PolicyDenied, rule.to_string()))?;
    Ok(RunIdentity {
        repository: repo.full_name.clone(),
        repository_owner: Some(repo.owner.login.clone()),
        run_attempt: Some(run.run_attempt),
        unverified: vec!["run_id".into(), "run_attempt".into(), "sha".into()],
        ..RunIdentity::new(
            API_ISSUER.to_owned(),
            repo.id,
            repo.owner.id,
            run.run_id,
            sha,
        )
    })
}
