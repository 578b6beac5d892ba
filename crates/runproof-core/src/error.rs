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
    #[error("issuer `{issuer}` is not trusted")]
    UntrustedIssuer {
        /// The token's `iss`, bounded and escaped.
        issuer: ShownText,
    },
    /// `aud` is not exactly the configured audience, or is a list.
    #[error("{}", wrong_audience(.found.as_ref(), .required))]
    WrongAudience {
        /// The token's `aud`, bounded and escaped; `None` when it is not a single string.
        found: Option<ShownText>,
        /// The audience this server requires (public: `/.well-known/runproof` names it).
        required: ShownText,
    },
    /// `exp` has passed.
    #[error("token expired at {}", .exp.rfc3339())]
    Expired {
        /// The token's `exp`.
        exp: UnixTime,
        /// The time it was checked at.
        now: UnixTime,
    },
    /// `nbf` or `iat` is in the future.
    #[error("token not valid before {}", .not_before.rfc3339())]
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

fn wrong_audience(found: Option<&ShownText>, required: &ShownText) -> String {
    match found {
        Some(found) => format!("audience `{found}` is not the required `{required}`"),
        None => format!("audience is not a single string; `{required}` is required"),
    }
}

/// The most characters of a token's text echoed in an error.
pub const MAX_SHOWN_CHARS: usize = 128;

/// Text taken from a token (or elsewhere) made safe to echo in a problem `detail` or a log
/// line: at most [`MAX_SHOWN_CHARS`] characters, with control characters, Unicode line
/// separators and bidirectional controls written as `\u{…}`, and a backtick as `\u{60}` so
/// that the text cannot close the quoting around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownText(String);

impl ShownText {
    /// `text`, bounded and escaped.
    #[must_use]
    pub fn new(text: &str) -> Self {
        let risky = |c: char| {
            c.is_control()
                || c == '`'
                || matches!(
                    c,
                    '\u{200b}'..='\u{200f}'
                        | '\u{2028}'..='\u{202e}'
                        | '\u{2060}'..='\u{2069}'
                        | '\u{feff}'
                )
        };
        let mut out = String::with_capacity(text.len().min(MAX_SHOWN_CHARS * 4));
        for (i, c) in text.chars().enumerate() {
            if i >= MAX_SHOWN_CHARS {
                out.push('…');
                break;
            }
            if risky(c) {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            } else {
                out.push(c);
            }
        }
        Self(out)
    }

    /// The escaped text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ShownText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl VerifyError {
    /// [`VerifyError::UntrustedIssuer`] naming `issuer` (bounded and escaped).
    #[must_use]
    pub fn untrusted_issuer(issuer: &str) -> Self {
        Self::UntrustedIssuer {
            issuer: ShownText::new(issuer),
        }
    }

    /// [`VerifyError::WrongAudience`] naming the token's audience (`None` when it is not a
    /// single string) and the one `required`.
    #[must_use]
    pub fn wrong_audience(found: Option<&str>, required: &str) -> Self {
        Self::WrongAudience {
            found: found.map(ShownText::new),
            required: ShownText::new(required),
        }
    }

    /// The stable code of this error.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed { .. } | Self::MissingClaim { .. } => ErrorCode::MalformedToken,
            Self::UnsupportedAlgorithm { .. } => ErrorCode::UnsupportedAlgorithm,
            Self::UnknownKey { .. } => ErrorCode::UnknownKey,
            Self::BadSignature => ErrorCode::BadSignature,
            Self::UntrustedIssuer { .. } => ErrorCode::UntrustedIssuer,
            Self::WrongAudience { .. } => ErrorCode::WrongAudience,
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
    fn rule_echoed_token_text_is_bounded_and_escaped() {
        let hostile = format!("a\nb\u{1b}[31m`\u{202e}{}", "x".repeat(1000));
        let shown = ShownText::new(&hostile);
        assert!(
            shown
                .as_str()
                .starts_with("a\\u{a}b\\u{1b}[31m\\u{60}\\u{202e}x")
        );
        assert!(shown.as_str().ends_with('…'));
        assert!(shown.as_str().chars().count() <= MAX_SHOWN_CHARS * 8);
        assert!(!shown.as_str().chars().any(char::is_control));
        let e = VerifyError::wrong_audience(Some(&hostile), "https://runproof.example");
        let text = e.to_string();
        assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");
        assert!(
            text.ends_with("is not the required `https://runproof.example`"),
            "{text}"
        );
        assert_eq!(e.code(), ErrorCode::WrongAudience);
    }

    #[test]
    fn refusals_name_what_was_expected() {
        assert_eq!(
            VerifyError::wrong_audience(Some("https://github.com/octo"), "https://rp.example")
                .to_string(),
            "audience `https://github.com/octo` is not the required `https://rp.example`"
        );
        assert_eq!(
            VerifyError::wrong_audience(None, "https://rp.example").to_string(),
            "audience is not a single string; `https://rp.example` is required"
        );
        let e = VerifyError::untrusted_issuer("https://evil.example");
        assert_eq!(
            e.to_string(),
            "issuer `https://evil.example` is not trusted"
        );
        assert_eq!(e.code(), ErrorCode::UntrustedIssuer);
    }

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
