//! `POST /v1/uploads`: credentials first, then the body, streamed and hashed, then commit.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use runproof_core::digest::parse_content_digest;
use runproof_core::name::UploadName;
use runproof_core::{ErrorCode, RunIdentity};
use runproof_store::{
    BlobError, BlobWriter, Mode, NewUpload, PendingRun, StoreError, UploadId, UploadStatus,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::{Credentials, credentials, verify_oidc};
use crate::binding::bind;
use crate::github_token;
use crate::sessions::use_session;
use crate::{ApiError, AppState};
use runproof_core::session::looks_like_session_token;

/// The longest `Content-Type` or `Idempotency-Key` kept, in bytes.
const MAX_HEADER_VALUE: usize = 255;

#[derive(Deserialize)]
struct UploadParams {
    name: Option<String>,
}

/// What a verified request is allowed to upload, decided before the body is read.
struct Admitted {
    mode: Mode,
    identity: RunIdentity,
    /// The most bytes this upload may take.
    cap: u64,
    /// The session the upload counts against, by token hash.
    session: Option<String>,
    /// The run claimed, for an upload held pending (webhook mode).
    pending: Option<PendingRun>,
}

/// The body's facts once it is fully received and its blob committed.
struct Received {
    id: UploadId,
    size: u64,
    sha256: [u8; 32],
}

pub(crate) async fn create_upload(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let params: Query<UploadParams> = Query::try_from_uri(&uri)
        .map_err(|_| ApiError::invalid("the query string is malformed"))?;
    let name = params
        .name
        .as_deref()
        .ok_or_else(|| ApiError::invalid("the `name` query parameter is required"))?;
    let name = UploadName::parse(name).map_err(|e| ApiError::invalid(e.to_string()))?;

    let admitted = admit(&state, &headers).await?;

    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|len| len > admitted.cap) {
        return Err(too_large(admitted.cap));
    }
    let expected_digest = match headers.get("content-digest") {
        Some(v) => {
            parse_content_digest(v.as_bytes()).map_err(|e| ApiError::invalid(e.to_string()))?
        }
        None => None,
    };
    let content_type = optional_header(&headers, header::CONTENT_TYPE.as_str())?;
    let idempotency_key = optional_header(&headers, "idempotency-key")?;

    if let Some(key) = &idempotency_key {
        let existing = state
            .store
            .find_by_idempotency_key(admitted.identity.repository_id, key)
            .await
            .map_err(|e| ApiError::storage(&e))?;
        if let Some(existing) = existing {
            return Ok(replayed(existing));
        }
    }

    let received = receive_body(&state, body, expected_digest, admitted.cap).await?;

    let now = state.clock.now();
    let status = if admitted.pending.is_some() {
        UploadStatus::Pending
    } else {
        UploadStatus::Verified
    };
    let mut new = NewUpload {
        id: received.id.clone(),
        status,
        mode: admitted.mode,
        name: name.as_str().to_owned(),
        size: received.size,
        sha256: received.sha256,
        content_type,
        created_at: now,
        verified_at: (status == UploadStatus::Verified).then_some(now),
        identity: admitted.identity,
        reason: None,
        idempotency_key,
        deliveries: Vec::new(),
        pending_run: admitted.pending,
    };
    if let Some(delivery) = state
        .delivery
        .as_ref()
        .filter(|_| status == UploadStatus::Verified)
    {
        new.deliveries
            .extend(delivery.delivery_for("upload.verified", &crate::delivery::record_of(&new)));
    }
    match state.store.insert_upload(&new).await {
        Ok(record) => {
            if let Some(hash) = &admitted.session
                && let Err(e) = state.store.add_session_bytes(hash, record.size).await
            {
                tracing::warn!(error = %e, "cannot count the session's bytes");
            }
            if !new.deliveries.is_empty() {
                state.delivery_wake.notify_one();
            }
            metrics::counter!("runproof_uploads_total", "mode" => new.mode.as_str(), "status" => status.as_str())
                .increment(1);
            metrics::counter!("runproof_upload_bytes_total").increment(received.size);
            tracing::info!(
                id = %record.id,
                repository_id = %record.identity.repository_id,
                run_id = %record.identity.run_id,
                size = record.size,
                status = status.as_str(),
                "upload stored"
            );
            if status == UploadStatus::Pending {
                return Ok(pending_response(
                    crate::webhook_mode::after_insert(&state, record).await,
                ));
            }
            let location = HeaderValue::from_str(&format!("/v1/uploads/{}", record.id)).ok();
            let mut resp = (StatusCode::CREATED, Json(record)).into_response();
            if let Some(location) = location {
                resp.headers_mut().insert(header::LOCATION, location);
            }
            Ok(resp)
        }
        Err(err) => {
            if let Err(e) = state.blobs.delete(&received.id).await {
                tracing::warn!(error = %e, id = %received.id, "could not delete blob of a failed insert");
            }
            match err {
                StoreError::Conflict(existing) => Ok(replayed(*existing)),
                other => Err(ApiError::storage(&other)),
            }
        }
    }
}

/// Checks credentials and decides the mode, before any byte of the body is read.
async fn admit(state: &AppState, headers: &HeaderMap) -> Result<Admitted, ApiError> {
    match credentials(headers)? {
        Credentials::Bearer(token) if looks_like_session_token(token) => {
            let grant = use_session(state, token).await?;
            Ok(Admitted {
                mode: Mode::Session,
                identity: grant.identity,
                cap: state.config.max_upload_bytes.min(grant.bytes_left),
                session: Some(grant.token_hash),
                pending: None,
            })
        }
        Credentials::Bearer(token) => {
            let mut identity = verify_oidc(state, token).await?.identity;
            bind(state, &mut identity).await?;
            Ok(Admitted {
                mode: Mode::Oidc,
                identity,
                cap: state.config.max_upload_bytes,
                session: None,
                pending: None,
            })
        }
        Credentials::GithubToken(token) => {
            let mut identity = github_token::verify(state, token, headers).await?;
            bind(state, &mut identity).await?;
            Ok(Admitted {
                mode: Mode::GithubToken,
                identity,
                cap: state.config.max_upload_bytes,
                session: None,
                pending: None,
            })
        }
        Credentials::None => match state.webhook_mode.as_ref() {
            Some(mode) => {
                let admission = crate::webhook_mode::admit(state, mode, headers).await?;
                Ok(Admitted {
                    mode: Mode::Webhook,
                    identity: admission.identity,
                    cap: admission.cap,
                    session: None,
                    pending: Some(admission.claim),
                })
            }
            None => Err(ApiError::new(
                ErrorCode::MissingCredentials,
                "send an OIDC token as `Authorization: Bearer <token>`",
            )),
        },
    }
}

/// Streams the body into a new blob, hashing and counting as it goes, and commits it.
async fn receive_body(
    state: &AppState,
    body: Body,
    expected: Option<[u8; 32]>,
    cap: u64,
) -> Result<Received, ApiError> {
    let mut writer = state.blobs.begin().await.map_err(|e| blob_error(&e))?;
    let streamed = tokio::time::timeout(
        state.config.body_timeout,
        stream_into(&mut *writer, body, cap),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::invalid("the body was not received in time")
            .with_status(StatusCode::REQUEST_TIMEOUT))
    });
    let (size, sha256) = match streamed {
        Ok(v) => v,
        Err(e) => {
            writer.abort().await;
            return Err(e);
        }
    };
    if expected.is_some_and(|expected| expected != sha256) {
        writer.abort().await;
        return Err(ApiError::new(
            ErrorCode::DigestMismatch,
            "the body does not match its Content-Digest",
        ));
    }
    let id = UploadId::generate();
    writer.commit(&id).await.map_err(|e| blob_error(&e))?;
    Ok(Received { id, size, sha256 })
}

async fn stream_into(
    writer: &mut dyn BlobWriter,
    body: Body,
    max: u64,
) -> Result<(u64, [u8; 32]), ApiError> {
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::invalid("the body could not be read to its end"))?;
        size = size.saturating_add(chunk.len() as u64);
        if size > max {
            return Err(too_large(max));
        }
        hasher.update(&chunk);
        writer.write(&chunk).await.map_err(|e| blob_error(&e))?;
    }
    Ok((size, hasher.finalize().into()))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the body exceeds the limit of {max} bytes"),
    )
}

fn blob_error(e: &BlobError) -> ApiError {
    match e {
        BlobError::Full => ApiError::storage(e).with_status(StatusCode::INSUFFICIENT_STORAGE),
        _ => ApiError::storage(e),
    }
}

fn optional_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .ok()
        .filter(|v| {
            !v.is_empty() && v.len() <= MAX_HEADER_VALUE && !v.chars().any(char::is_control)
        })
        .ok_or_else(|| ApiError::invalid(format!("the {name} header is malformed")))?;
    Ok(Some(value.to_owned()))
}

/// `201` when a pending upload was approved at once, else `202` with the record as it
/// stands and `Location` of its public status.
fn pending_response(record: runproof_store::UploadRecord) -> Response {
    let (status, location) = if record.status == UploadStatus::Verified {
        (StatusCode::CREATED, format!("/v1/uploads/{}", record.id))
    } else {
        (
            StatusCode::ACCEPTED,
            format!("/v1/uploads/{}/status", record.id),
        )
    };
    let location = HeaderValue::from_str(&location).ok();
    let mut resp = (status, Json(record)).into_response();
    if let Some(location) = location {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp
}

fn replayed(record: runproof_store::UploadRecord) -> Response {
    let mut resp = (StatusCode::OK, Json(record)).into_response();
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}
