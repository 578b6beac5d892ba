//! Claims of a verified token and the run identity they vouch for.

use serde::{Deserialize, Serialize};

use crate::error::VerifyError;
use crate::ids::{InstallationId, OwnerId, RepositoryId, RunId};
use crate::time::UnixTime;

/// The verified identity of a GitHub Actions run.
///
/// Every verification mode ends in this value. Names (`repository`, `repository_owner`,
/// `actor`) are for display only; decisions use the ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The issuer that vouched for the run (the OIDC issuer, or `https://api.github.com`
    /// for modes that ask GitHub's API).
    pub issuer: String,
    /// `owner/name`, for display.
    pub repository: String,
    /// The repository's id: what decisions compare.
    pub repository_id: RepositoryId,
    /// The owner's login, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_owner: Option<String>,
    /// The owner's id.
    pub repository_owner_id: OwnerId,
    /// The workflow run's id.
    pub run_id: RunId,
    /// The attempt number of the run (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_attempt: Option<u32>,
    /// The commit the run is for.
    pub sha: String,
    /// The git ref, such as `refs/heads/main`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The workflow file and ref, such as `o/r/.github/workflows/ci.yml@refs/heads/main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_ref: Option<String>,
    /// The reusable workflow the job ran, if any (else the same as `workflow_ref`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_workflow_ref: Option<String>,
    /// The event that triggered the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The login of the user who triggered the run, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `github-hosted` or `self-hosted`, when the issuer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_environment: Option<String>,
    /// The deployment environment of the job, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The App installation the repository belongs to, once bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<InstallationId>,
    /// Fields that the mode could not verify and took from the client as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unverified: Vec<String>,
}

/// A token whose signature, issuer, audience, lifetime and policy have all checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The run identity the token vouches for.
    pub identity: RunIdentity,
    /// The token's unique id, for replay protection.
    pub jti: String,
    /// The token's `exp`.
    pub expires_at: UnixTime,
    /// The token's `iat`.
    pub issued_at: UnixTime,
}

/// The GitHub Actions claims runproof reads. Unknown claims are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct GithubClaims {
    pub(crate) iss: Option<String>,
    pub(crate) aud: Option<Audience>,
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) jti: Option<String>,
    pub(crate) repository: Option<String>,
    pub(crate) repository_id: Option<RepositoryId>,
    pub(crate) repository_owner: Option<String>,
    pub(crate) repository_owner_id: Option<OwnerId>,
    pub(crate) run_id: Option<RunId>,
    #[serde(default, deserialize_with = "opt_u32")]
    pub(crate) run_attempt: Option<u32>,
    pub(crate) sha: Option<String>,
    #[serde(rename = "ref")]
    pub(crate) git_ref: Option<String>,
    pub(crate) workflow_ref: Option<String>,
    pub(crate) job_workflow_ref: Option<String>,
    pub(crate) event_name: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) runner_environment: Option<String>,
    pub(crate) environment: Option<String>,
}

/// `aud` as sent: one string, or anything else (a list, a number), which is refused.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Other(serde::de::IgnoredAny),
}

fn opt_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    struct W(#[serde(deserialize_with = "crate::ids::deserialize_u32_lenient")] u32);
    Option::<W>::deserialize(d).map(|o| o.map(|w| w.0))
}

/// Whether `sha` is a full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
#[must_use]
pub fn is_commit_sha(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn required<T>(value: Option<T>, claim: &'static str) -> Result<T, VerifyError> {
    value.ok_or(VerifyError::MissingClaim { claim })
}

/// Claims with every required one present, but not yet checked against configuration.
pub(crate) struct CheckedClaims {
    pub(crate) iss: String,
    pub(crate) aud: Audience,
    pub(crate) exp: i64,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: i64,
    pub(crate) jti: String,
    pub(crate) identity: RunIdentity,
}

impl GithubClaims {
    /// Checks that every required claim is present and well-formed.
    pub(crate) fn require(self) -> Result<CheckedClaims, VerifyError> {
        let iss = required(self.iss, "iss")?;
        let aud = required(self.aud, "aud")?;
        let exp = required(self.exp, "exp")?;
        let iat = required(self.iat, "iat")?;
        let jti = required(self.jti.filter(|j| !j.is_empty() && j.len() <= 256), "jti")?;
        let repository = required(self.repository.filter(|r| r.contains('/')), "repository")?;
        let repository_id = required(self.repository_id, "repository_id")?;
        let repository_owner_id = required(self.repository_owner_id, "repository_owner_id")?;
        let run_id = required(self.run_id, "run_id")?;
        let sha = required(self.sha.filter(|s| is_commit_sha(s)), "sha")?;
        Ok(CheckedClaims {
            identity: RunIdentity {
                issuer: iss.clone(),
                repository,
                repository_id,
                repository_owner: self.repository_owner,
                repository_owner_id,
                run_id,
                run_attempt: self.run_attempt,
                sha,
                git_ref: self.git_ref,
                workflow_ref: self.workflow_ref,
                job_workflow_ref: self.job_workflow_ref,
                event_name: self.event_name,
                actor: self.actor,
                runner_environment: self.runner_environment,
                environment: self.environment,
                installation_id: None,
                unverified: Vec::new(),
            },
            iss,
            aud,
            exp,
            nbf: self.nbf,
            iat,
            jti,
        })
    }
}
