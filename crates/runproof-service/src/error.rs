//! The service's errors: what was refused, and why, with no HTTP in them.

use runproof_core::rules::{Layer, Mismatch, RuleError};
use runproof_core::{ErrorCode, RepositoryId, VerifyError};
use runproof_github::GithubError;
use runproof_store::{BlobError, StoreError};

/// Why the service did not do what was asked.
///
/// Each variant maps to one stable [`ErrorCode`] ([`ServiceError::code`]); the HTTP layer
/// turns that code into a status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The token failed a verification rule.
    #[error(transparent)]
    Token(#[from] VerifyError),
    /// A decision refused the request: the code, and a sentence the caller can act on.
    #[error("{detail}")]
    Refused {
        /// The stable code.
        code: ErrorCode,
        /// What the caller can fix. Never secret material.
        detail: String,
    },
    /// The App is not installed on the repository (or its installation is suspended, or
    /// the repository is not the one the identity names): `not_installed`.
    #[error("{detail}")]
    NotInstalled {
        /// The repository.
        repository_id: RepositoryId,
        /// What the caller can check.
        detail: String,
    },
    /// No rule of a non-empty layer of trust rules matches the run: `policy_denied`, with
    /// the rule that came nearest and what of it does not match (the caller's own claims,
    /// so they may be shown to it).
    #[error("{}", policy_rule_sentence(*.layer, *.index, .rule.as_deref(), .mismatches))]
    PolicyRule {
        /// The layer that refuses.
        layer: Layer,
        /// The nearest rule's position in its layer, from 0.
        index: usize,
        /// The nearest rule's name, when it has one.
        rule: Option<String>,
        /// Each field of that rule the run does not match.
        mismatches: Vec<Mismatch>,
    },
    /// A policy check other than the trust rules refused the run (the calling workflow
    /// does not use the required Action, or cannot be read): `policy_denied`, with what
    /// was expected and found.
    #[error("{detail}")]
    PolicyCheck {
        /// What the caller can fix.
        detail: String,
        /// The check's field, what it expects and what the run has.
        mismatches: Vec<Mismatch>,
    },
    /// A layer of trust rules offered to be stored breaks a bound: `invalid_request`.
    #[error("the rules break a bound: {0}")]
    InvalidRules(#[source] RuleError),
    /// Too many requests of this kind: retry after the given seconds.
    #[error("{detail}")]
    RateLimited {
        /// What is limited.
        detail: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// GitHub (or an issuer's keys) cannot answer now.
    #[error("{detail}")]
    Upstream {
        /// What could not be reached.
        detail: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The store failed or is saturated.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// A blob could not be written or committed.
    #[error("blob storage: {0}")]
    Blob(#[from] BlobError),
    /// The system's random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// A task the work ran in ended without an answer.
    #[error("a background task failed")]
    TaskFailed,
    /// The commit pipeline answered what an upload's write cannot cause.
    #[error("unexpected commit outcome {0}")]
    UnexpectedCommit(String),
}

impl ServiceError {
    /// A refusal with this code and detail.
    pub fn refused(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::Refused {
            code,
            detail: detail.into(),
        }
    }

    /// `invalid_request` with this detail.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::refused(ErrorCode::InvalidRequest, detail)
    }

    /// `rate_limited`, to retry after `retry_after` seconds.
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::RateLimited {
            detail: detail.into(),
            retry_after,
        }
    }

    /// `upstream_unavailable`, to retry after `retry_after` seconds.
    pub fn upstream(detail: impl Into<String>, retry_after: u64) -> Self {
        Self::Upstream {
            detail: detail.into(),
            retry_after,
        }
    }

    /// The stable code.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Token(e) => e.code(),
            Self::Refused { code, .. } => *code,
            Self::NotInstalled { .. } => ErrorCode::NotInstalled,
            Self::PolicyRule { .. } | Self::PolicyCheck { .. } => ErrorCode::PolicyDenied,
            Self::InvalidRules(_) => ErrorCode::InvalidRequest,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Upstream { .. } => ErrorCode::UpstreamUnavailable,
            Self::Storage(_)
            | Self::Blob(_)
            | Self::Random
            | Self::TaskFailed
            | Self::UnexpectedCommit(_) => ErrorCode::StorageUnavailable,
        }
    }

    /// Whether the failure is transient: asking again later may succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Upstream { .. }
                | Self::Storage(_)
                | Self::Blob(_)
                | Self::Random
                | Self::TaskFailed
                | Self::UnexpectedCommit(_)
        )
    }
}

/// "No app rule allows this run; the nearest, rule \"release\", differs in ref,
/// environment." A rule without a name is named by its position, from 1.
fn policy_rule_sentence(
    layer: Layer,
    index: usize,
    rule: Option<&str>,
    mismatches: &[Mismatch],
) -> String {
    let nearest = match rule {
        Some(name) => format!("rule {name:?}"),
        None => format!("rule {} of that layer", index + 1),
    };
    let fields: Vec<&str> = mismatches.iter().map(|m| m.field.as_str()).collect();
    format!(
        "no {layer} trust rule allows this run; the nearest, {nearest}, differs in {}",
        fields.join(", ")
    )
}

impl From<&GithubError> for ServiceError {
    /// GitHub could not answer: `upstream_unavailable`, logged with its cause.
    fn from(e: &GithubError) -> Self {
        tracing::warn!(error = %e, "GitHub API unavailable");
        Self::upstream(
            "GitHub cannot be asked right now; retry later",
            e.retry_after().unwrap_or(5),
        )
    }
}
