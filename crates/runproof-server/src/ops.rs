//! Operations endpoints: discovery for clients, health, readiness, metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use runproof_core::ErrorCode;
use serde_json::json;

use crate::error::ApiError;
use crate::read_api::require_api_key;
use crate::state::AppState;

/// `GET /.well-known/runproof`: what a client needs to know to upload.
pub(crate) async fn well_known(State(state): State<Arc<AppState>>) -> Response {
    let config = state.service.verifier().config();
    Json(json!({
        "audience": config.audience,
        "modes": state.service.modes(),
        "installation_binding": state.service.binding().is_some(),
        "issuers": config.issuers,
        "max_upload_bytes": state.service.settings().max_upload_bytes,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database and blob storage answer.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = state.service.store().ping().await {
        return ApiError::storage(&e).into_response();
    }
    if let Err(e) = state.service.blobs().ping().await {
        return ApiError::storage(&e).into_response();
    }
    (StatusCode::OK, "ready").into_response()
}

/// `GET /metrics` on the main listener: Prometheus text format, for the read API's keys
/// only (the counts tell outsiders what traffic and failures there are).
pub(crate) async fn metrics_for_api_keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = require_api_key(&state, &headers) {
        return e.into_response();
    }
    metrics(State(state)).await
}

/// `GET /metrics` on the metrics listener: Prometheus text format.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Any other route.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}
