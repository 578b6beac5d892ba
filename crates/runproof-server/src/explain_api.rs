//! `POST /v1/policy/explain`: what an upload with a token would meet, for the App (API
//! key required). It reads `{"token", "at"}` (at most [`MAX_BODY_BYTES`]) and answers the
//! service's [`runproof_service::explain::Explanation`]: a token that fails a check is a
//! `200` saying which; only a missing or wrong API key and a malformed body are refused.
//! Nothing is consumed or stored ([`runproof_service::explain`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use runproof_core::{ErrorCode, UnixTime};
use runproof_service::explain::explain;
use serde::Deserialize;

use crate::error::ApiError;
use crate::read_api::require_api_key;
use crate::state::AppState;

/// The route.
pub(crate) const ROUTE: &str = "/v1/policy/explain";

/// The largest request body read, in bytes.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The request: the token, and the time to check it at (Unix seconds; default: now).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainRequest {
    token: String,
    #[serde(default)]
    at: Option<i64>,
}

/// `POST /v1/policy/explain`.
pub(crate) async fn explain_token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body is limited to {MAX_BODY_BYTES} bytes"),
            )
        })?;
    let request: ExplainRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::invalid(format!(
            "the body must be {{\"token\": \"<jwt>\", \"at\": <unix seconds, optional>}}: {e}"
        ))
    })?;
    let explanation = explain(&state.service, &request.token, request.at.map(UnixTime)).await?;
    Ok(Json(explanation).into_response())
}
