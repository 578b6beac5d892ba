//! Credentials: reading them from a request. The service verifies them.

use axum::http::{HeaderMap, header};
use runproof_core::ErrorCode;
use runproof_service::uploads::UploadCredentials;

use crate::error::ApiError;

/// What the `Authorization` header carries.
#[derive(Debug)]
pub(crate) enum Credentials<'a> {
    /// `Bearer <token>`: an OIDC token (or, later, a session token).
    Bearer(&'a str),
    /// `token <GITHUB_TOKEN>`.
    GithubToken(&'a str),
    /// No `Authorization` header.
    None,
}

impl<'a> From<Credentials<'a>> for UploadCredentials<'a> {
    fn from(c: Credentials<'a>) -> Self {
        match c {
            Credentials::Bearer(token) => Self::Bearer(token),
            Credentials::GithubToken(token) => Self::GithubToken(token),
            Credentials::None => Self::None,
        }
    }
}

/// Reads the `Authorization` header.
pub(crate) fn credentials(headers: &HeaderMap) -> Result<Credentials<'_>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Credentials::None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::MalformedToken, "Authorization is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if rest.is_empty() {
        return Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "Authorization has no credentials",
        ));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials::Bearer(rest))
    } else if scheme.eq_ignore_ascii_case("token") {
        Ok(Credentials::GithubToken(rest))
    } else {
        Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "Authorization must use the Bearer scheme",
        ))
    }
}
