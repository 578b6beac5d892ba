//! `POST /v1/sessions` and `DELETE /v1/sessions/current`: the token exchange PyPI and
//! crates.io use.
//!
//! An OIDC token (every OIDC check applies, and its `jti` is used up, so one token opens
//! at most one session) is exchanged for an `rpst_` token scoped to that run identity,
//! with a short life and limits on uploads and bytes ([`runproof_service::sessions`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use runproof_core::ErrorCode;
use runproof_service::{Trail, sessions};
use runproof_store::EventKind;
use serde_json::json;

use crate::auth::{Credentials, credentials};
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/sessions`.
pub(crate) async fn open(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _) = request.into_parts();
    let mut trail = Trail::default();
    let answer = open_session(&state, &parts.headers, &mut trail).await;
    crate::events_api::record(
        &state.service,
        EventKind::Session,
        "POST /v1/sessions",
        &trail,
        crate::events_api::source_of(&parts.extensions),
        &answer,
    );
    answer
}

async fn open_session(
    state: &AppState,
    headers: &HeaderMap,
    trail: &mut Trail,
) -> Result<Response, ApiError> {
    let Credentials::Bearer(token) = credentials(headers)? else {
        return Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "send the job's OIDC token as `Authorization: Bearer <token>`",
        ));
    };
    let opened = sessions::open_traced(&state.service, token, trail).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "token": opened.token.expose(),
            "expires_at": opened.expires_at_rfc3339(),
            "identity": opened.identity,
            "limits": {
                "max_uploads": opened.limits.max_uploads,
                "max_bytes": opened.limits.max_bytes,
                "max_upload_bytes": state.service.settings().max_upload_bytes,
            },
        })),
    )
        .into_response())
}

/// `DELETE /v1/sessions/current`.
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Credentials::Bearer(token) = credentials(&headers)? else {
        return Err(ApiError::new(
            ErrorCode::MissingCredentials,
            "send the session token as `Authorization: Bearer <token>`",
        ));
    };
    sessions::revoke(&state.service, token).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
