//! `POST /v1/uploads`: credentials first, then the body, streamed and hashed, then commit.
//!
//! The HTTP side of an upload: it reads the request's head, asks the service to admit it
//! ([`uploads::admit`]), streams the body into the service's [`BodySink`] within the body
//! deadline, has it stored ([`uploads::store`]), and answers.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, HttpBody as _};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use runproof_core::RepositoryId;
use runproof_core::digest::parse_content_digest;
use runproof_core::name::UploadName;
use runproof_core::run_header::RunHeader;
use runproof_service::uploads::{self, Admission, BodySink, Described, ReceivedBody, Stored};
use runproof_service::{ClaimedRun, Trail};
use runproof_store::{EventKind, UploadStatus};
use serde::Deserialize;

use crate::auth::credentials;
use crate::error::ApiError;
use crate::state::AppState;

/// The route of uploads.
pub(crate) const ROUTE: &str = "/v1/uploads";

/// The repository an upload without credentials names in `X-Runproof-Run`, for the
/// per-repository limit; `None` for any other request.
pub(crate) fn claimed_repository(request: &axum::extract::Request) -> Option<RepositoryId> {
    if request.method() != axum::http::Method::POST || request.uri().path() != ROUTE {
        return None;
    }
    let value = request.headers().get("x-runproof-run")?.to_str().ok()?;
    RunHeader::parse(value).ok().map(|run| run.repository_id)
}

/// The longest `Content-Type` or `Idempotency-Key` kept, in bytes.
const MAX_HEADER_VALUE: usize = 255;

#[derive(Deserialize)]
struct UploadParams {
    name: Option<String>,
}

/// `POST /v1/uploads`: answers, then records the answer in the event log, once for
/// every outcome.
pub(crate) async fn create_upload(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let mut trail = Trail::default();
    let answer = upload(&state, parts.uri, parts.headers, body, &mut trail).await;
    crate::events_api::record(
        state.service(),
        EventKind::Upload,
        "POST /v1/uploads",
        &trail,
        crate::events_api::source_of(&parts.extensions),
        &answer,
    );
    answer
}

async fn upload(
    state: &AppState,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
    trail: &mut Trail,
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
    let service = state.service();
    let admission = uploads::admit_traced(
        service,
        credentials(&headers)?.into(),
        claimed_run(&headers),
        declared_len,
        trail,
    )
    .await?;
    match receive(state, &headers, body, name, declared_len, &admission).await {
        Ok(Received::Body(body, described)) => {
            match uploads::store(service, admission, body, described).await? {
                Stored::Replayed(existing) => {
                    trail.stored("replayed", &existing);
                    Ok(replayed(existing))
                }
                Stored::Pending(record) => {
                    trail.stored("pending", &record);
                    Ok(pending_response(record))
                }
                Stored::Verified(record) => {
                    trail.stored("verified", &record);
                    Ok(created(record))
                }
                _ => Err(ApiError::storage(&"an upload ended in no known state")),
            }
        }
        Ok(Received::Replayed(existing)) => {
            admission.give_back().await;
            trail.stored("replayed", &existing);
            Ok(replayed(*existing))
        }
        Err(e) => {
            // Given back before the answer goes out, so that a client's next request
            // finds the room again. A request cancelled midway gives it back when the
            // admission is dropped.
            admission.give_back().await;
            Err(e)
        }
    }
}

/// The run an upload without an OIDC token claims, from its headers. A value that is not
/// visible ASCII is absent for the `github_token` mode and invalid for the webhook mode.
fn claimed_run(headers: &HeaderMap) -> ClaimedRun<'_> {
    let webhook_mode = !headers.contains_key(header::AUTHORIZATION);
    let value = |name: &str| {
        headers.get(name).and_then(|v| match v.to_str() {
            Ok(v) => Some(v),
            Err(_) if webhook_mode => Some("\u{0}"),
            Err(_) => None,
        })
    };
    ClaimedRun {
        repository: value("x-runproof-repository"),
        run: value("x-runproof-run"),
        sha: value("x-runproof-sha"),
    }
}

/// What came of reading an admitted request.
enum Received {
    /// The whole body, checked, and what to store with it.
    Body(ReceivedBody, Described),
    /// An upload with the same idempotency key exists: the body was not read.
    Replayed(Box<runproof_store::UploadRecord>),
}

async fn receive(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    name: UploadName,
    declared_len: Option<u64>,
    admission: &Admission,
) -> Result<Received, ApiError> {
    if declared_len.is_some_and(|len| len > admission.cap()) {
        return Err(uploads::too_large(admission.cap()).into());
    }
    let expected_digest = match headers.get("content-digest") {
        Some(v) => {
            parse_content_digest(v.as_bytes()).map_err(|e| ApiError::invalid(e.to_string()))?
        }
        None => None,
    };
    let content_type = optional_header(headers, header::CONTENT_TYPE.as_str())?;
    let idempotency_key = optional_header(headers, "idempotency-key")?;
    if let Some(key) = &idempotency_key
        && let Some(existing) =
            uploads::find_by_idempotency_key(state.service(), admission, key).await?
    {
        return Ok(Received::Replayed(Box::new(existing)));
    }
    let mut sink = BodySink::begin(state.service(), admission, declared_len).await?;
    let streamed = tokio::time::timeout(
        state.service().settings().body_timeout,
        stream_into(&mut sink, body),
    )
    .await
    .unwrap_or_else(|_| {
        Err(ApiError::invalid("the body was not received in time")
            .with_status(StatusCode::REQUEST_TIMEOUT))
    });
    if let Err(e) = streamed {
        sink.abort().await;
        return Err(e);
    }
    let received = sink.finish(expected_digest).await?;
    Ok(Received::Body(
        received,
        Described {
            name: name.as_str().to_owned(),
            content_type,
            idempotency_key,
        },
    ))
}

async fn stream_into(sink: &mut BodySink, body: Body) -> Result<(), ApiError> {
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::invalid("the body could not be read to its end"))?;
        sink.write(&chunk).await?;
    }
    Ok(())
}

fn created(record: runproof_store::UploadRecord) -> Response {
    let location = HeaderValue::from_str(&format!("/v1/uploads/{}", record.id)).ok();
    let mut resp = (StatusCode::CREATED, Json(record)).into_response();
    if let Some(location) = location {
        resp.headers_mut().insert(header::LOCATION, location);
    }
    resp
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
