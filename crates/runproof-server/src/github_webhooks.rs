//! `POST /v1/github/webhooks`: GitHub's signed deliveries.
//!
//! The raw body (at most 25 MiB, within `[limits] webhook_body_timeout_seconds`) is checked
//! against `X-Hub-Signature-256` with every configured secret before a byte of it is parsed.
//! The service then applies it ([`github_webhooks::apply`]): the delivery id and its
//! effects are written in one transaction, so a redelivery answers 200 and changes
//! nothing. Everything a delivery does is a few rows, so the answer comes well within
//! GitHub's 10 seconds.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt as _;
use runproof_core::ErrorCode;
use runproof_core::webhook::{SignatureError, verify_signature};
use runproof_service::{Trail, github_webhooks};
use runproof_store::{EventKind, EventOutcome};
use serde_json::json;

use crate::error::ApiError;
use crate::limits::{WebhookBuffer, WebhookGuard};
use crate::state::AppState;

/// The route of GitHub's webhook deliveries.
pub(crate) const ROUTE: &str = "/v1/github/webhooks";

/// The header that carries a delivery's signature.
const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Whether a request is a webhook delivery that claims a signature: it is limited by the
/// budgets of unverified deliveries, not by the per-address limit of requests without
/// credentials.
pub(crate) fn claims_signature(request: &axum::extract::Request) -> bool {
    request.method() == axum::http::Method::POST
        && request.uri().path() == ROUTE
        && request.headers().contains_key(SIGNATURE_HEADER)
}

/// The largest delivery accepted; GitHub caps payloads at 25 MiB.
pub(crate) const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

/// What the event log says of a delivery once its signature verified: its event, its id
/// and whether it was new.
#[derive(Default)]
struct Received {
    what: Option<String>,
    fresh: bool,
}

/// `POST /v1/github/webhooks`: answers, then records the delivery in the event log
/// (received, duplicate or refused), once for every outcome.
pub(crate) async fn receive(
    State(state): State<Arc<AppState>>,
    guard: Option<axum::Extension<WebhookGuard>>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let mut received = Received::default();
    let answer = deliver(&state, guard, &parts.headers, body, &mut received).await;
    let outcome = match &answer {
        Ok(_) if received.fresh => EventOutcome::Received,
        Ok(_) => EventOutcome::Duplicate,
        Err(e) if e.status().is_server_error() => EventOutcome::Failed,
        Err(_) => EventOutcome::Refused,
    };
    let trail = Trail {
        detail: received.what,
        ..Trail::default()
    };
    crate::events_api::record_as(
        state.service(),
        trail.event(state.service(), EventKind::Webhook, outcome),
        "POST /v1/github/webhooks",
        crate::events_api::source_of(&parts.extensions),
        &answer,
    );
    answer
}

async fn deliver(
    state: &AppState,
    guard: Option<axum::Extension<WebhookGuard>>,
    headers: &HeaderMap,
    body: Body,
    received: &mut Received,
) -> Result<Response, ApiError> {
    if state.config.webhook_secrets.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ModeDisabled,
            "no webhook secret is configured on this server",
        ));
    }
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_WEBHOOK_BYTES) {
        return Err(too_large());
    }
    let Some(signature) = headers.get(SIGNATURE_HEADER).map(|v| v.as_bytes()) else {
        return Err(refused(&SignatureError::Missing));
    };
    let guard = guard.map(|axum::Extension(guard)| guard);
    // GitHub sends a delivery's body at once: one that trickles is not GitHub's.
    let deadline = Duration::from_secs(state.config.limits.webhook_body_timeout_seconds.max(1));
    let (body, buffer) = tokio::time::timeout(deadline, read_delivery(body, guard.as_ref()))
        .await
        .unwrap_or_else(|_| {
            metrics::counter!("runproof_webhooks_total", "event" => "unknown", "outcome" => "body_timeout")
                .increment(1);
            Err(ApiError::invalid("the delivery's body was not received in time")
                .with_status(StatusCode::REQUEST_TIMEOUT))
        })?;

    // Checked even when the address is over its limit: a genuine delivery is never
    // refused for what forged ones from the same address did.
    if let Err(e) = verify_signature(&body, Some(signature), &state.config.webhook_secrets) {
        let refusal = refused(&e);
        return Err(match guard.as_ref().and_then(WebhookGuard::strike) {
            Some(wait) => ApiError::new(
                ErrorCode::RateLimited,
                "too many deliveries with bad signatures from this address",
            )
            .retry_after(wait),
            None => refusal,
        });
    }
    if let Some(guard) = &guard {
        guard.verified();
    }
    drop(buffer);

    let event = header(headers, "x-github-event")?;
    let delivery_id = header(headers, "x-github-delivery")?;
    received.what = Some(format!("{event} {delivery_id}"));
    let applied = github_webhooks::apply(state.service(), &event, delivery_id, &body).await?;
    received.fresh = applied.fresh;
    let outcome = if applied.fresh {
        "processed"
    } else {
        "duplicate"
    };
    Ok((StatusCode::OK, Json(json!({ "status": outcome }))).into_response())
}

/// Reads a delivery's body, at most [`MAX_WEBHOOK_BYTES`], holding room for each chunk in
/// the budgets of unverified deliveries as it arrives; the room is given back when the
/// returned buffer drops.
async fn read_delivery(
    mut body: Body,
    guard: Option<&WebhookGuard>,
) -> Result<(Bytes, Option<WebhookBuffer>), ApiError> {
    let mut buffer = guard.map(WebhookGuard::buffer);
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|_| ApiError::invalid("the delivery's body could not be read"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let total = bytes.len().saturating_add(data.len());
        if total > MAX_WEBHOOK_BYTES {
            return Err(too_large());
        }
        if let Some(buffer) = &mut buffer
            && !buffer.grow_to(total)
        {
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many webhook bytes are being received; retry",
            )
            .retry_after(1));
        }
        bytes.extend_from_slice(&data);
    }
    Ok((bytes.freeze(), buffer))
}

/// A delivery refused for its signature, counted as such.
fn refused(e: &SignatureError) -> ApiError {
    metrics::counter!("runproof_webhooks_total", "event" => "unknown", "outcome" => "bad_signature")
        .increment(1);
    let code = match e {
        SignatureError::Missing => ErrorCode::MissingCredentials,
        _ => ErrorCode::BadSignature,
    };
    ApiError::new(code, e.to_string())
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("a delivery is at most {MAX_WEBHOOK_BYTES} bytes"),
    )
}

fn header(headers: &HeaderMap, name: &str) -> Result<String, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && !v.chars().any(char::is_control))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid(format!("the {name} header is missing or malformed")))
}
