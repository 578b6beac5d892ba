//! Errors as HTTP responses: `application/problem+json` (RFC 9457) with a stable `code`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use runproof_core::rules::Mismatch;
use runproof_core::{ErrorCode, VerifyError};
use runproof_service::ServiceError;
use runproof_store::{BlobError, StoreError};
use serde::Serialize;

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    /// The stable code.
    pub code: ErrorCode,
    /// What the client can fix, in a sentence. Never secret material.
    pub detail: String,
    /// Seconds for `Retry-After`, on 429 and 503.
    pub retry_after: Option<u64>,
    /// Overrides the status the code maps to (e.g. 507 for a full disk).
    pub status: Option<StatusCode>,
    /// What of the nearest trust rule the run does not match, on `403 policy_denied`
    /// from a rule: the problem's `mismatches` member, absent otherwise.
    pub mismatches: Option<Vec<Mismatch>>,
}

impl ApiError {
    /// An error with this code and detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            retry_after: None,
            status: None,
            mismatches: None,
        }
    }

    /// `invalid_request` with this detail.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, detail)
    }

    /// `storage_unavailable`, logged at `warn` with its cause.
    pub fn storage(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(%cause, "storage failure");
        Self::new(
            ErrorCode::StorageUnavailable,
            "storage is unavailable; retry later",
        )
        .retry_after(5)
    }

    /// Sets `Retry-After`.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Overrides the status.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| status_of(self.code))
    }
}

/// The HTTP status each code maps to.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::MissingCredentials
        | C::MalformedToken
        | C::UnsupportedAlgorithm
        | C::UnknownKey
        | C::BadSignature
        | C::UntrustedIssuer
        | C::WrongAudience
        | C::TokenExpired
        | C::TokenNotYetValid
        | C::TokenReplayed
        | C::InvalidSession
        | C::InvalidGithubToken
        | C::InvalidApiKey => StatusCode::UNAUTHORIZED,
        C::PolicyDenied | C::NotInstalled | C::ModeDisabled => StatusCode::FORBIDDEN,
        C::InvalidRequest | C::DigestMismatch => StatusCode::BAD_REQUEST,
        C::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        C::UpstreamUnavailable | C::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::storage(&e)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Token(e) => Self::from(e),
            ServiceError::Refused { code, detail } => Self::new(code, detail),
            ServiceError::NotInstalled { detail, .. } => Self::new(ErrorCode::NotInstalled, detail),
            ServiceError::PolicyRule { ref mismatches, .. } => Self {
                mismatches: Some(mismatches.clone()),
                ..Self::new(ErrorCode::PolicyDenied, e.to_string())
            },
            ServiceError::PolicyCheck { detail, mismatches } => Self {
                mismatches: Some(mismatches),
                ..Self::new(ErrorCode::PolicyDenied, detail)
            },
            ServiceError::InvalidRules(_) => Self::new(ErrorCode::InvalidRequest, e.to_string()),
            ServiceError::RateLimited {
                detail,
                retry_after,
            } => Self::new(ErrorCode::RateLimited, detail).retry_after(retry_after),
            ServiceError::Upstream {
                detail,
                retry_after,
            } => Self::new(ErrorCode::UpstreamUnavailable, detail).retry_after(retry_after),
            ServiceError::Blob(e @ BlobError::Full) => {
                Self::storage(&e).with_status(StatusCode::INSUFFICIENT_STORAGE)
            }
            other => Self::storage(&other),
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    mismatches: Option<&'a [Mismatch]>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Problem {
            kind: format!("urn:runproof:problem:{}", self.code.as_str()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: &self.detail,
            code: self.code.as_str(),
            mismatches: self.mismatches.as_deref(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (status, bytes).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
