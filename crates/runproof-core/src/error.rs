//! Errors of the verification stage and the stable codes they map to.

use crate::time::UnixTime;

/// The stable, machine-readable error codes of runproof's HTTP contract.
///
/// Each failure anywhere in runproof maps to exactly one of these. The string form
/// ([`ErrorCode::as_str`]) is part of the public contract and never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No credentials were sent where they are required.
    MissingCredentials,
    /// The token could not be decoded, is too large, or lacks a required claim.
    MalformedToken,
    /// The token's `alg` is not `RS256`.
    UnsupportedAlgorithm,
    /// No key of the issuer has the token's `kid`.
    UnknownKey,
    /// The signature does not verify with the issuer's key.
    BadSignature,
    /// The token's `iss` is not a configured issuer.
    UntrustedIssuer,
    /// The token's `aud` is not exactly the configured audience.
    WrongAudience,
    /// The token's `exp` has passed (beyond the leeway).
    TokenExpired,
    /// The token's `nbf` or `iat` lies in the future (beyond the leeway).
    TokenNotYetValid,
    /// The token's `jti` was already used.
    TokenReplayed,
    /// A session token is unknown or revoked.
    InvalidSession,
    /// A `GITHUB_TOKEN` was refused by GitHub or sees the wrong repositories.
    InvalidGithubToken,
    /// The run identity is refused by policy.
    PolicyDenied,
    /// The repository does not belong to an installation of the App.
    NotInstalled,
    /// The requested verification mode is switched off.
    ModeDisabled,
    /// The request is malformed (bad name, bad header, bad query).
    InvalidRequest,
    /// The body does not match its `Content-Digest`.
    DigestMismatch,
    /// The body exceeds the configured size cap.
    PayloadTooLarge,
    /// Too many requests; retry after the indicated delay.
    RateLimited,
    /// An upstream dependency (JWKS, GitHub API) is unavailable and nothing is cached.
    UpstreamUnavailable,
    /// The database or blob storage is unavailable.
    StorageUnavailable,
    /// The read API was called without a valid API key.
    InvalidApiKey,
    /// The requested resource does not exist.
    NotFound,
}

impl ErrorCode {
    /// The contract string of this code, as sent in the `code` member of a problem.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::MalformedToken => "malformed_token",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::UntrustedIssuer => "untrusted_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenReplayed => "token_replayed",
            Self::InvalidSession => "invalid_session",
            Self::InvalidGithubToken => "invalid_github_token",
            Self::PolicyDenied => "policy_denied",
            Self::NotInstalled => "not_installed",
            Self::ModeDisabled => "mode_disabled",
            Self::InvalidRequest => "invalid_request",
            Self::DigestMismatch => "digest_mismatch",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::StorageUnavailable => "storage_unavailable",
            Self::InvalidApiKey => "invalid_api_key",
            Self::NotFound => "not_found",
        }
    }

    /// Every code, for exhaustive tests and documentation.
    pub const ALL: [ErrorCode; 23] = [
        Self::MissingCredentials,
        Self::MalformedToken,
        Self::UnsupportedAlgorithm,
        Self::UnknownKey,
        Self::BadSignature,
        Self::UntrustedIssuer,
        Self::WrongAudience,
        Self::TokenExpired,
        Self::TokenNotYetValid,
        Self::TokenReplayed,
        Self::InvalidSession,
        Self::InvalidGithubToken,
        Self::PolicyDenied,
        Self::NotInstalled,
        Self::ModeDisabled,
        Self::InvalidRequest,
        Self::DigestMismatch,
        Self::PayloadTooLarge,
        Self::RateLimited,
        Self::UpstreamUnavailable,
        Self::StorageUnavailable,
        Self::InvalidApiKey,
        Self::NotFound,
    ];
}

/// Which policy rule refused a run identity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyRule {
    /// The run's `event_name` is in `denied_events`.
    DeniedEvent {
        /// The refused event.
        event: String,
    },
    /// The token carries no `event_name`, so the event policy cannot be applied.
    MissingEvent,
    /// `require_github_hosted_runner` is on and the run used another runner.
    RunnerNotGithubHosted,
    /// The owner id is not in a non-empty `allowed_repository_owner_ids`.
    OwnerNotAllowed {
        /// The refused owner id.
        owner_id: u64,
    },
    /// The repository id is not in a non-empty `allowed_repository_ids`.
    RepositoryNotAllowed {
        /// The refused repository id.
        repository_id: u64,
    },
}

impl std::fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DeniedEvent { event } => write!(f, "event `{event}` is denied by policy"),
            Self::MissingEvent => f.write_str("the token has no event_name claim"),
            Self::RunnerNotGithubHosted => f.write_str("a GitHub-hosted runner is required"),
            Self::OwnerNotAllowed { owner_id } => {
                write!(f, "repository owner {owner_id} is not allowed")
            }
            Self::RepositoryNotAllowed { repository_id } => {
                write!(f, "repository {repository_id} is not allowed")
            }
        }
    }
}

/// Why a token was refused by the verification core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is not a well-formed compact JWS with JSON header and claims.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What was wrong, for logs and the problem detail.
        reason: &'static str,
    },
    /// A required claim is absent or has the wrong type.
    #[error("malformed token: claim `{claim}` is missing or invalid")]
    MissingClaim {
        /// The claim's name.
        claim: &'static str,
    },
    /// The header's `alg` is not `RS256`.
    #[error("unsupported algorithm `{alg}`")]
    UnsupportedAlgorithm {
        /// The algorithm the token named.
        alg: String,
    },
    /// The issuer has no key with this `kid` (or the token has no `kid`).
    #[error("no key with kid `{kid}`")]
    UnknownKey {
        /// The key id the token named (empty when absent).
        kid: String,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `iss` is not a configured issuer.
    #[error("issuer is not trusted")]
    UntrustedIssuer,
    /// `aud` is not exactly the configured audience, or is a list.
    #[error("audience is not the configured one")]
    WrongAudience,
    /// `exp` has passed.
    #[error("token expired at {exp}")]
    Expired {
        /// The token's `exp`.
        exp: UnixTime,
        /// The time it was checked at.
        now: UnixTime,
    },
    /// `nbf` or `iat` is in the future.
    #[error("token not valid before {not_before}")]
    NotYetValid {
        /// The earliest time the token would be accepted, before leeway.
        not_before: UnixTime,
        /// The time it was checked at.
        now: UnixTime,
    },
    /// Policy refused the run identity.
    #[error("denied by policy: {0}")]
    Policy(PolicyRule),
}

impl VerifyError {
    /// The stable code of this error.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed { .. } | Self::MissingClaim { .. } => ErrorCode::MalformedToken,
            Self::UnsupportedAlgorithm { .. } => ErrorCode::UnsupportedAlgorithm,
            Self::UnknownKey { .. } => ErrorCode::UnknownKey,
            Self::BadSignature => ErrorCode::BadSignature,
            Self::UntrustedIssuer => ErrorCode::UntrustedIssuer,
            Self::WrongAudience => ErrorCode::WrongAudience,
            Self::Expired { .. } => ErrorCode::TokenExpired,
            Self::NotYetValid { .. } => ErrorCode::TokenNotYetValid,
            Self::Policy(_) => ErrorCode::PolicyDenied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let set: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(set.len(), ErrorCode::ALL.len());
        for code in set {
            assert!(
                code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
        }
    }
}
