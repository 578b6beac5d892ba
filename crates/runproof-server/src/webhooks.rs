//! `POST /v1/github/webhooks`: GitHub's signed deliveries.
//!
//! The raw body (at most 25 MiB, within `[limits] webhook_body_timeout_seconds`) is checked
//! against `X-Hub-Signature-256` with every configured secret before a byte of it is parsed.
//! The delivery id and its effects are then written in one transaction, so a redelivery answers 200 and changes nothing.
//! Everything a delivery does is a few rows, so the answer comes well within GitHub's
//! 10 seconds.

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
use runproof_github::types::{
    InstallationEvent, InstallationRepositoriesEvent, RepositoryRef, WorkflowRunEvent,
    parse_timestamp,
};
use runproof_store::{
    Delivery, Installation, InstalledRepository, RepositorySelection, WebhookEffect,
    WorkflowRunRecord,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::limits::{WebhookBuffer, WebhookGuard};
use crate::{ApiError, AppState};

/// The largest delivery accepted; GitHub caps payloads at 25 MiB.
pub(crate) const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

pub(crate) async fn receive(
    State(state): State<Arc<AppState>>,
    guard: Option<axum::Extension<WebhookGuard>>,
    headers: HeaderMap,
    body: Body,
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
    let Some(signature) = headers.get("x-hub-signature-256").map(|v| v.as_bytes()) else {
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

    let event = header(&headers, "x-github-event")?;
    let delivery_id = header(&headers, "x-github-delivery")?;
    let now = state.service.clock().now();
    let effects = effects_of(&event, &body, now)?;
    let delivery = Delivery {
        id: delivery_id,
        event: event.clone(),
        received_at: now,
    };
    let fresh = state
        .service
        .store()
        .apply_webhook(&delivery, &effects)
        .await?;
    if fresh {
        // Webhook mode: settle the uploads waiting for this run (in the background).
        runproof_service::webhook_mode::after_delivery(state.service(), &effects);
    }
    let outcome = if fresh { "processed" } else { "duplicate" };
    let label: &'static str = match event.as_str() {
        "ping" => "ping",
        "installation" => "installation",
        "installation_repositories" => "installation_repositories",
        "workflow_run" => "workflow_run",
        _ => "other",
    };
    metrics::counter!("runproof_webhooks_total", "event" => label, "outcome" => outcome)
        .increment(1);
    tracing::info!(event = %event, delivery = %delivery.id, outcome, effects = effects.len(), "webhook");
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

fn parse<T: DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        tracing::warn!(event, error = %e, "unreadable webhook payload");
        ApiError::invalid(format!("the {event} payload is not as expected"))
    })
}

fn repositories(refs: &[RepositoryRef]) -> Vec<InstalledRepository> {
    refs.iter()
        .map(|r| InstalledRepository {
            id: r.id,
            full_name: r.full_name.clone(),
        })
        .collect()
}

fn selection(s: Option<&str>) -> RepositorySelection {
    match s {
        Some("all") => RepositorySelection::All,
        _ => RepositorySelection::Selected,
    }
}

/// The installation a payload describes, as of the payload's own time (see
/// [`runproof_github::types::Installation::as_of`]), which orders deliveries that arrive
/// late. `suspended` is the action's word when it has one, else the payload's.
fn installation_of(
    inst: &runproof_github::types::Installation,
    selection_override: Option<&str>,
    suspended: Option<bool>,
) -> Result<Installation, ApiError> {
    let account = inst
        .account
        .as_ref()
        .ok_or_else(|| ApiError::invalid("the installation has no account"))?;
    Ok(Installation {
        id: inst.id,
        account_id: account.id,
        account_login: account.login.clone(),
        repository_selection: selection(
            selection_override.or(inst.repository_selection.as_deref()),
        ),
        suspended: suspended.unwrap_or(inst.suspended_at.is_some()),
        as_of: inst.as_of().map(runproof_core::UnixTime),
    })
}

/// What a delivery changes. Events runproof does not use change nothing.
///
/// Installation state is ordered by the time each payload carries, never by arrival:
/// `installation.updated_at`, `created_at` and `suspended_at`, whichever is latest. An
/// `installation_repositories` payload carries no time of its own change, only the
/// installation's (which may not move): its changes take that time, so that at an equal
/// time a removal always applies and an addition is left for GitHub to confirm.
fn effects_of(
    event: &str,
    body: &[u8],
    now: runproof_core::UnixTime,
) -> Result<Vec<WebhookEffect>, ApiError> {
    Ok(match event {
        "installation" => {
            let e: InstallationEvent = parse(event, body)?;
            let id = e.installation.id;
            if e.action == "deleted" {
                vec![WebhookEffect::DeleteInstallation(id)]
            } else {
                let suspended = match e.action.as_str() {
                    "suspend" => Some(true),
                    "unsuspend" => Some(false),
                    _ => None,
                };
                let installation = installation_of(&e.installation, None, suspended)?;
                let as_of = installation.as_of;
                let mut effects = vec![WebhookEffect::UpsertInstallation(installation)];
                if let Some(repos) = &e.repositories {
                    effects.push(WebhookEffect::AddRepositories {
                        installation_id: id,
                        repositories: repositories(repos),
                        as_of,
                    });
                }
                effects
            }
        }
        "installation_repositories" => {
            let e: InstallationRepositoriesEvent = parse(event, body)?;
            let id = e.installation.id;
            let installation =
                installation_of(&e.installation, e.repository_selection.as_deref(), None)?;
            let as_of = installation.as_of;
            vec![
                WebhookEffect::UpsertInstallation(installation),
                WebhookEffect::AddRepositories {
                    installation_id: id,
                    repositories: repositories(&e.repositories_added),
                    as_of,
                },
                WebhookEffect::RemoveRepositories {
                    installation_id: id,
                    repository_ids: e.repositories_removed.iter().map(|r| r.id).collect(),
                    as_of,
                },
            ]
        }
        "workflow_run" => {
            let e: WorkflowRunEvent = parse(event, body)?;
            let run = &e.workflow_run;
            let ts = |s: &Option<String>| {
                s.as_deref()
                    .and_then(parse_timestamp)
                    .map(runproof_core::UnixTime)
            };
            let status = run.status.clone().unwrap_or_else(|| e.action.clone());
            let updated_at = ts(&run.updated_at).unwrap_or(now);
            vec![WebhookEffect::UpsertWorkflowRun(WorkflowRunRecord {
                repository_id: e.repository.id,
                run_id: run.id,
                run_attempt: run.run_attempt.unwrap_or(1),
                head_sha: run.head_sha.clone(),
                head_repository_id: run.head_repository.as_ref().map(|r| r.id),
                event: run.event.clone(),
                completed_at: (status == "completed").then_some(updated_at),
                status,
                conclusion: run.conclusion.clone(),
                path: run.path.clone().unwrap_or_default(),
                installation_id: e.installation.as_ref().map(|i| i.id),
                repository_full_name: e.repository.full_name.clone(),
                owner_id: e.repository.owner.id,
                run_started_at: ts(&run.run_started_at),
                updated_at,
                received_at: now,
            })]
        }
        _ => Vec::new(),
    })
}
