//! `PUT|GET|DELETE /v1/repositories/{repository_id}/rules`: a repository's trust rules,
//! set by the App (API key required) on its users' behalf.
//!
//! - `PUT` takes `{"rules": [...]}` (the fields of `[[policy.rules]]`; an unknown one is
//!   refused), replaces the repository's rules whole and answers `200` with them as
//!   stored. The body is at most [`MAX_BODY_BYTES`]: a larger declared length is refused
//!   before any byte is read, and reading stops at the bound.
//! - `GET` answers `{"rules": [...]}`, empty when the repository has none.
//! - `DELETE` answers `204`, whether or not there were rules.
//!
//! The id is a positive decimal integer; anything else is `400 invalid_request`, as are a
//! body that is not JSON, an unknown field and a layer that breaks a bound
//! ([`runproof_service::repository_rules`] checks and stores them).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use runproof_core::rules::TrustRule;
use runproof_core::{ErrorCode, RepositoryId};
use runproof_service::repository_rules;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::read_api::require_api_key;
use crate::state::AppState;

/// The route.
pub(crate) const ROUTE: &str = "/v1/repositories/{repository_id}/rules";

/// The largest request body read, in bytes.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The body of `PUT`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesRequest {
    rules: Vec<TrustRule>,
}

/// What `PUT` and `GET` answer.
#[derive(Debug, Serialize)]
struct RulesResponse {
    rules: Vec<TrustRule>,
}

/// The repository id of the path: a positive decimal integer.
fn repository_id(raw: &str) -> Result<RepositoryId, ApiError> {
    match raw.parse::<RepositoryId>() {
        Ok(id) if id.get() > 0 => Ok(id),
        _ => Err(ApiError::invalid(
            "the repository id is a positive decimal integer",
        )),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is limited to {MAX_BODY_BYTES} bytes"),
    )
}

/// Reads the body within [`MAX_BODY_BYTES`], refusing a larger declared length first.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())
}

/// `PUT /v1/repositories/{repository_id}/rules`.
pub(crate) async fn put_rules(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    let id = repository_id(&raw_id)?;
    let bytes = read_body(&headers, body).await?;
    let request: RulesRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(format!(
            "the body must be {{\"rules\": [...]}} with the fields of a trust rule: {e}"
        ))
    })?;
    let rules = repository_rules::put(
        &state.service,
        id,
        request.rules,
        crate::events_api::source_of(&extensions),
    )
    .await?;
    Ok(Json(RulesResponse { rules }).into_response())
}

/// `GET /v1/repositories/{repository_id}/rules`.
pub(crate) async fn get_rules(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    let id = repository_id(&raw_id)?;
    let rules = repository_rules::get(&state.service, id).await?;
    Ok(Json(RulesResponse { rules }).into_response())
}

/// `DELETE /v1/repositories/{repository_id}/rules`.
pub(crate) async fn delete_rules(
    State(state): State<Arc<AppState>>,
    Path(raw_id): Path<String>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    let id = repository_id(&raw_id)?;
    repository_rules::delete(
        &state.service,
        id,
        crate::events_api::source_of(&extensions),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rule_a_repository_id_is_a_positive_decimal() {
        assert_eq!(repository_id("740001").unwrap(), RepositoryId(740_001));
        for bad in [
            "0",
            "-1",
            "abc",
            "",
            "1.5",
            "+1",
            " 1",
            "99999999999999999999",
        ] {
            assert!(repository_id(bad).is_err(), "{bad:?}");
        }
    }
}
