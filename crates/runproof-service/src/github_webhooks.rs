//! GitHub's webhook deliveries, once their signature verified: what each changes
//! (installations, their repositories, workflow runs), written with the delivery id in
//! one transaction, so that a redelivery changes nothing; then the uploads waiting for a
//! run are settled in the background.

use std::sync::Arc;

use runproof_github::types::{
    InstallationEvent, InstallationRepositoriesEvent, RepositoryRef, WorkflowRunEvent,
    parse_timestamp,
};
use runproof_store::{
    Installation, InstalledRepository, RepositorySelection, WebhookDelivery, WebhookEffect,
    WorkflowRunRecord,
};
use serde::de::DeserializeOwned;

use crate::error::ServiceError;
use crate::service::Service;
use crate::webhook_mode;

/// What applying a webhook delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Applied {
    /// Whether the delivery was new; `false`: a redelivery, which changed nothing.
    pub fresh: bool,
    /// How many changes it made.
    pub effects: usize,
}

/// Applies a webhook delivery whose signature verified: `event` (`X-GitHub-Event`),
/// `delivery_id` (`X-GitHub-Delivery`) and its raw body.
///
/// # Errors
/// `invalid_request` for a payload that is not as expected; storage.
pub async fn apply(
    service: &Arc<Service>,
    event: &str,
    delivery_id: String,
    body: &[u8],
) -> Result<Applied, ServiceError> {
    let now = service.clock.now();
    if event == "push" {
        // The repository file may have changed on the default branch: read it again.
        crate::repository_file::after_push(service, body);
    }
    let effects = effects_of(event, body, now)?;
    let delivery = WebhookDelivery {
        id: delivery_id,
        event: event.to_owned(),
        received_at: now,
    };
    let fresh = service.store.apply_webhook(&delivery, &effects).await?;
    if fresh {
        // Webhook mode: settle the uploads waiting for this run (in the background).
        webhook_mode::after_webhook_delivery(service, &effects);
    }
    let outcome = if fresh { "processed" } else { "duplicate" };
    let label: &'static str = match event {
        "ping" => "ping",
        "installation" => "installation",
        "installation_repositories" => "installation_repositories",
        "workflow_run" => "workflow_run",
        _ => "other",
    };
    metrics::counter!("runproof_webhooks_total", "event" => label, "outcome" => outcome)
        .increment(1);
    tracing::info!(event = %event, delivery = %delivery.id, outcome, effects = effects.len(), "webhook");
    Ok(Applied {
        fresh,
        effects: effects.len(),
    })
}

fn parse<T: DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(body).map_err(|e| {
        tracing::warn!(event, error = %e, "unreadable webhook payload");
        ServiceError::invalid(format!("the {event} payload is not as expected"))
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
) -> Result<Installation, ServiceError> {
    let account = inst
        .account
        .as_ref()
        .ok_or_else(|| ServiceError::invalid("the installation has no account"))?;
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
) -> Result<Vec<WebhookEffect>, ServiceError> {
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
