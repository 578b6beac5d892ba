//! `POST /v1/uploads`: credentials first, then the body, streamed and hashed, then commit.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, HttpBody as _};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt;
use runproof_core::digest::parse_content_digest;
use runproof_core::name::UploadName;
use runproof_core::{ErrorCode, RunIdentity};
use runproof_store::{
    BlobError, BlobWriter, Committed, IdempotencyScope, InlinePermit, Mode, NewUpload, PendingRun,
    SessionAsk, StoreError, UploadId, UploadRecord, UploadStatus, UploadWrite, UsedJti,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::{Credentials, credentials, token_replayed, verify_oidc_for_upload};
use crate::binding::bind;
use crate::github_token;
use crate::sessions::{SessionReservation, use_session};
use crate::webhook_mode::Reservation;
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
    /// The run claimed, for an upload held pending (webhook mode).
    pending: Option<PendingRun>,
    /// The token's `jti`, spent in the upload's transaction.
    jti: Option<UsedJti>,
}

/// Where a body goes while it is received.
enum Sink {
    /// Into memory, to be stored in the database with its record, while it stays within
    /// `limit` bytes (the room `permit` holds).
    Inline {
        buf: BytesMut,
        limit: usize,
        permit: InlinePermit,
    },
    /// Into a new blob, committed before the record.
    Blob(Box<dyn BlobWriter>),
}

/// The body once it is fully received and checked, not yet stored.
struct Received {
    sink: Sink,
    size: u64,
    sha256: [u8; 32],
}

/// What the client asked to store with the body.
struct Described {
    name: String,
    content_type: Option<String>,
    idempotency_key: Option<String>,
}

/// What became of a received upload.
enum Stored {
    /// Inserted with this status (or found inserted after a lost commit answer).
    New(UploadRecord, UploadStatus),
    /// An upload of the same scope and idempotency key was there first.
    Replayed(UploadRecord),
}

pub(crate) async fn create_upload(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut reservation = None;
    let mut session = None;
    let answer = receive_upload(state, uri, headers, body, &mut reservation, &mut session).await;
    // Refunded before the answer goes out unless the insert consumed it, so that a
    // client's next request finds the room again. A request cancelled midway refunds it
    // when the reservation is dropped.
    if let Some(unused) = reservation {
        unused.refund().await;
    }
    if let Some(unused) = session {
        unused.release().await;
    }
    answer
}

async fn receive_upload(
    state: Arc<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    reservation: &mut Option<Reservation>,
    session: &mut Option<SessionReservation>,
) -> Result<Response, ApiError> {
    let params: Query<UploadParams> = Query::try_from_uri(&uri)
        .map_err(|_| ApiError::invalid("the query string is malformed"))?;
    let name = params
        .name
        .as_deref()
        .ok_or_else(|| ApiError::invalid("the `name` query parameter is required"))?;
    let name = UploadName::parse(name).map_err(|e| ApiError::invalid(e.to_string()))?;

    // A request with neither Content-Length nor chunked encoding has an empty body: the
    // body's size hint knows that when the header is absent.
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| body.size_hint().exact());
    let admitted = admit(&state, &headers, declared_len, reservation, session).await?;
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
        let scope = IdempotencyScope::new(admitted.mode, &admitted.identity);
        let existing = state
            .store
            .find_by_idempotency_key(&scope, key)
            .await
            .map_err(|e| ApiError::storage(&e))?;
        if let Some(existing) = existing {
            return Ok(replayed(existing));
        }
    }

    let received = receive_body(&state, body, expected_digest, admitted.cap, declared_len).await?;
    let described = Described {
        name: name.as_str().to_owned(),
        content_type,
        idempotency_key,
    };
    // Every byte is in: from here the client is not needed. Commit and insert run to
    // their end in a task of their own, so that a client gone now (its request's future
    // dropped) leaves no blob without a record, and no reservation behind.
    let task = tokio::spawn(store_upload(
        Arc::clone(&state),
        received,
        described,
        admitted,
        reservation.take(),
        session.take(),
    ));
    let stored = task.await.map_err(|e| ApiError::storage(&e))??;
    match stored {
        Stored::Replayed(existing) => Ok(replayed(existing)),
        Stored::New(record, UploadStatus::Pending) => Ok(pending_response(
            crate::webhook_mode::after_insert(&state, record).await,
        )),
        Stored::New(record, _) => {
            let location = HeaderValue::from_str(&format!("/v1/uploads/{}", record.id)).ok();
            let mut resp = (StatusCode::CREATED, Json(record)).into_response();
            if let Some(location) = location {
                resp.headers_mut().insert(header::LOCATION, location);
            }
            Ok(resp)
        }
    }
}

/// Commits the blob and inserts its record, then settles what was reserved for it: on
/// success the reservations are used (a session's unused bytes go back), otherwise they
/// are given back before the answer goes out.
async fn store_upload(
    state: Arc<AppState>,
    received: Received,
    described: Described,
    admitted: Admitted,
    reservation: Option<Reservation>,
    session: Option<SessionReservation>,
) -> Result<Stored, ApiError> {
    let result =
        commit_and_insert(&state, received, described, admitted, reservation.as_ref()).await;
    match &result {
        Ok(Stored::New(record, _)) => {
            if let Some(consumed) = reservation {
                consumed.consumed();
            }
            if let Some(session) = session {
                session.settle(record.size).await;
            }
        }
        Ok(Stored::Replayed(_)) | Err(_) => {
            if let Some(unused) = reservation {
                unused.refund().await;
            }
            if let Some(unused) = session {
                unused.release().await;
            }
        }
    }
    result
}

async fn commit_and_insert(
    state: &AppState,
    received: Received,
    described: Described,
    admitted: Admitted,
    reservation: Option<&Reservation>,
) -> Result<Stored, ApiError> {
    let id = UploadId::generate();
    let (inline, _permit, in_blob) = match received.sink {
        Sink::Inline { buf, permit, .. } => (Some(buf.freeze()), Some(permit), false),
        Sink::Blob(writer) => {
            writer.commit(&id).await.map_err(|e| blob_error(&e))?;
            (None, None, true)
        }
    };
    let now = state.clock.now();
    let status = if admitted.pending.is_some() {
        UploadStatus::Pending
    } else {
        UploadStatus::Verified
    };
    let mut new = NewUpload {
        id: id.clone(),
        status,
        mode: admitted.mode,
        name: described.name,
        size: received.size,
        sha256: received.sha256,
        content_type: described.content_type,
        // A pending upload is received when its request's head was, not its last byte.
        created_at: reservation.map_or(now, Reservation::admitted_at),
        verified_at: (status == UploadStatus::Verified).then_some(now),
        identity: admitted.identity,
        reason: None,
        idempotency_key: described.idempotency_key,
        deliveries: Vec::new(),
        pending_run: admitted.pending,
        pending_reservation: reservation.map(|r| r.id().clone()),
    };
    if let Some(delivery) = state
        .delivery
        .as_ref()
        .filter(|_| status == UploadStatus::Verified)
    {
        new.deliveries
            .extend(delivery.delivery_for("upload.verified", &crate::delivery::record_of(&new)));
    }
    let announces = !new.deliveries.is_empty();
    let mode = new.mode;
    // Given back when the write is definitely not stored for a fault of ours.
    let claimed = admitted.jti.clone();
    let release = || {
        if let Some(used) = &claimed {
            state.commits.replay.release(&used.issuer, &used.jti);
        }
    };
    let write = UploadWrite {
        upload: new,
        jti: admitted.jti,
        body: inline,
    };
    let record = match state.commits.pipeline.commit(write).await {
        Ok(Committed::Inserted(record)) => record,
        Ok(Committed::Existing(existing)) => {
            // Our record was not inserted: the blob is ours alone.
            if in_blob {
                delete_blob(state, &id).await;
            }
            return Ok(Stored::Replayed(existing));
        }
        Ok(Committed::Replayed) => {
            // Spent on another replica, or before a restart: the database judged.
            if in_blob {
                delete_blob(state, &id).await;
            }
            return Err(token_replayed());
        }
        Ok(other) => {
            if in_blob {
                delete_blob(state, &id).await;
            }
            return Err(ApiError::storage(&format!(
                "unexpected commit outcome {other:?}"
            )));
        }
        Err(StoreError::CommitUnknown(cause)) => {
            // Deleting the blob of a record that did commit would leave an idempotent
            // retry a record without content: look first, and when even that cannot
            // tell, keep the blob (the collector deletes it later if no record names it).
            match state.store.get_upload(&id).await {
                Ok(Some(record)) => {
                    tracing::warn!(%id, %cause, "the insert committed though its answer was lost");
                    record
                }
                Ok(None) => {
                    if in_blob {
                        delete_blob(state, &id).await;
                    }
                    release();
                    return Err(ApiError::storage(&cause));
                }
                Err(e) => {
                    tracing::warn!(%id, error = %e, "cannot tell whether the insert committed; the blob is kept");
                    return Err(ApiError::storage(&cause));
                }
            }
        }
        Err(other) => {
            if in_blob {
                delete_blob(state, &id).await;
            }
            // Nothing was stored, the jti included: a retry with this token is no replay.
            release();
            return Err(ApiError::storage(&other));
        }
    };
    if announces {
        state.delivery_wake.notify_one();
    }
    metrics::counter!("runproof_uploads_total", "mode" => mode.as_str(), "status" => status.as_str())
        .increment(1);
    metrics::counter!("runproof_upload_bytes_total").increment(received.size);
    tracing::debug!(
        id = %record.id,
        repository_id = %record.identity.repository_id,
        run_id = %record.identity.run_id,
        size = record.size,
        status = status.as_str(),
        "upload stored"
    );
    Ok(Stored::New(record, status))
}

async fn delete_blob(state: &AppState, id: &UploadId) {
    if let Err(e) = state.blobs.delete(id).await {
        tracing::warn!(error = %e, %id, "could not delete blob of a failed insert");
    }
}

/// Checks credentials and decides the mode, before any byte of the body is read. Room
/// reserved in the pending quotas (webhook mode) is left in `reservation`, and what a
/// session reserved for the body (`declared_len` bytes, or up to the cap) in `session`.
async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    declared_len: Option<u64>,
    reservation: &mut Option<Reservation>,
    session: &mut Option<SessionReservation>,
) -> Result<Admitted, ApiError> {
    match credentials(headers)? {
        Credentials::Bearer(token) if looks_like_session_token(token) => {
            let max = state.config.max_upload_bytes;
            let ask = match declared_len {
                Some(len) if len > max => return Err(too_large(max)),
                Some(len) => SessionAsk::Exactly(len),
                None => SessionAsk::UpTo(max),
            };
            let grant = use_session(state, token, ask).await?;
            let cap = grant.reservation.bytes();
            *session = Some(grant.reservation);
            Ok(Admitted {
                mode: Mode::Session,
                identity: grant.identity,
                cap,
                pending: None,
                jti: None,
            })
        }
        Credentials::Bearer(token) => {
            let (verified, jti) = verify_oidc_for_upload(state, token).await?;
            let mut identity = verified.identity;
            bind(state, &mut identity).await?;
            Ok(Admitted {
                mode: Mode::Oidc,
                identity,
                cap: state.config.max_upload_bytes,
                pending: None,
                jti,
            })
        }
        Credentials::GithubToken(token) => {
            let mut identity = github_token::verify(state, token, headers).await?;
            bind(state, &mut identity).await?;
            Ok(Admitted {
                mode: Mode::GithubToken,
                identity,
                cap: state.config.max_upload_bytes,
                pending: None,
                jti: None,
            })
        }
        Credentials::None => match state.webhook_mode.as_ref() {
            Some(mode) => {
                let admission =
                    crate::webhook_mode::admit(state, mode, headers, declared_len).await?;
                *reservation = Some(admission.reservation);
                Ok(Admitted {
                    mode: Mode::Webhook,
                    identity: admission.identity,
                    cap: admission.cap,
                    pending: Some(admission.claim),
                    jti: None,
                })
            }
            None => Err(ApiError::new(
                ErrorCode::MissingCredentials,
                "send an OIDC token as `Authorization: Bearer <token>`",
            )),
        },
    }
}

/// Streams the body, hashing and counting as it goes, and checks its digest; the body
/// is left to store. A body that may be small (`declared_len` within
/// `[storage] inline_max_bytes`, or unknown) is kept in memory when the pipeline has
/// room for it, and moves to a new blob if it grows past the limit; any other goes to a
/// new blob from its first byte.
async fn receive_body(
    state: &AppState,
    body: Body,
    expected: Option<[u8; 32]>,
    cap: u64,
    declared_len: Option<u64>,
) -> Result<Received, ApiError> {
    let inline_max = state.commits.inline_max_bytes.min(cap);
    let room = match declared_len {
        _ if inline_max == 0 => None,
        Some(len) if len <= inline_max => Some(len),
        Some(_) => None,
        None => Some(inline_max),
    };
    let inline = room
        .and_then(|room| usize::try_from(room).ok())
        .and_then(|room| {
            let permit = state.commits.pipeline.reserve_inline(room)?;
            Some(Sink::Inline {
                buf: BytesMut::with_capacity(room),
                limit: room,
                permit,
            })
        });
    let mut sink = match inline {
        Some(sink) => sink,
        None => Sink::Blob(begin_blob(state).await?),
    };
    let streamed = tokio::time::timeout(
        state.config.body_timeout,
        stream_into(state, &mut sink, body, cap),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::invalid("the body was not received in time")
            .with_status(StatusCode::REQUEST_TIMEOUT))
    });
    let (size, sha256) = match streamed {
        Ok(v) => v,
        Err(e) => {
            sink.abort().await;
            return Err(e);
        }
    };
    if expected.is_some_and(|expected| expected != sha256) {
        sink.abort().await;
        return Err(ApiError::new(
            ErrorCode::DigestMismatch,
            "the body does not match its Content-Digest",
        ));
    }
    Ok(Received { sink, size, sha256 })
}

/// A new blob writer.
async fn begin_blob(state: &AppState) -> Result<Box<dyn BlobWriter>, ApiError> {
    // Begun in a task of its own: a local blob's file is created on a blocking thread,
    // so a request dropped meanwhile (its client gone) would leave the file behind. The
    // task hands the writer over, or drops it, discarding the file, once nobody waits.
    let blobs = Arc::clone(&state.blobs);
    tokio::spawn(async move { blobs.begin().await })
        .await
        .map_err(|e| ApiError::storage(&e))?
        .map_err(|e| blob_error(&e))
}

impl Sink {
    async fn write(&mut self, state: &AppState, chunk: &[u8]) -> Result<(), ApiError> {
        match self {
            Sink::Inline { buf, limit, .. } if buf.len() + chunk.len() <= *limit => {
                buf.extend_from_slice(chunk);
                Ok(())
            }
            Sink::Inline { buf, .. } => {
                // Larger than an inline body may be: on to a blob, and the room goes back.
                let mut writer = begin_blob(state).await?;
                let moved = async {
                    writer.write(buf).await?;
                    writer.write(chunk).await
                }
                .await;
                if let Err(e) = moved {
                    writer.abort().await;
                    return Err(blob_error(&e));
                }
                *self = Sink::Blob(writer);
                Ok(())
            }
            Sink::Blob(writer) => writer.write(chunk).await.map_err(|e| blob_error(&e)),
        }
    }

    async fn abort(self) {
        if let Sink::Blob(writer) = self {
            writer.abort().await;
        }
    }
}

async fn stream_into(
    state: &AppState,
    sink: &mut Sink,
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
        sink.write(state, &chunk).await?;
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
