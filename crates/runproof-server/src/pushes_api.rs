//! The App's view of the pushes runproof sends it (called deliveries in the HTTP
//! contract): `GET /v1/deliveries?status=failed` and `POST /v1/deliveries/{id}/retry`.
//! API key required.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use runproof_core::ErrorCode;
use runproof_store::PushStatus;
use serde::Deserialize;
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
    Ok(Json(json!({ "deliveries": pushes })).into_response())
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
    Ok(Json(record).into_response())
}
