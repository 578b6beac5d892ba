//! The App's view of the pushes runproof sends it (called deliveries in the HTTP
//! contract): `GET /v1/deliveries?status=failed` and `POST /v1/deliveries/{id}/retry`.
//! API key required.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use runproof_core::{ErrorCode, UnixTime};
use runproof_store::{PushRecord, PushStatus};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ApiError;
use crate::read_api::require_api_key;
use crate::state::AppState;

#[derive(Deserialize)]
struct ListParams {
    status: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/deliveries`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    let Query(params): Query<ListParams> = Query::try_from_uri(&uri)
        .map_err(|_| ApiError::invalid("the query string is malformed"))?;
    let status = params
        .status
        .as_deref()
        .map(|s| {
            PushStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status is one of pending, delivered, failed"))
        })
        .transpose()?;
    let pushes = state
        .service
        .store()
        .list_pushes(status, params.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    let pushes: Vec<PushView> = pushes.into_iter().map(PushView::from).collect();
    Ok(Json(json!({ "deliveries": pushes })).into_response())
}

/// A push as the API shows it: times in RFC 3339, as in upload records.
#[derive(Serialize)]
struct PushView {
    id: String,
    event: String,
    upload_id: String,
    status: PushStatus,
    attempts: u32,
    last_error: Option<String>,
    created_at: String,
    next_attempt_at: String,
    payload: serde_json::Value,
}

impl From<PushRecord> for PushView {
    fn from(p: PushRecord) -> Self {
        Self {
            id: p.id,
            event: p.event,
            upload_id: p.upload_id,
            status: p.status,
            attempts: p.attempts,
            last_error: p.last_error,
            created_at: rfc3339(p.created_at),
            next_attempt_at: rfc3339(p.next_attempt_at),
            payload: p.payload,
        }
    }
}

fn rfc3339(t: UnixTime) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `POST /v1/deliveries/{id}/retry`.
pub(crate) async fn retry(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_api_key(&state, &headers)?;
    if uuid::Uuid::try_parse(&id).is_err() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "no delivery with this id",
        ));
    }
    let record = state
        .service
        .store()
        .retry_push(&id, state.service.clock().now())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no delivery with this id"))?;
    state.service.wake_pushes();
    Ok(Json(PushView::from(record)).into_response())
}
