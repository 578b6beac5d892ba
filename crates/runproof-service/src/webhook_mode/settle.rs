//! Settling: a pending upload is approved or rejected against a run GitHub vouched for
//! (from a signed `workflow_run` webhook, or by asking GitHub's API); GitHub being
//! unavailable decides nothing.

use std::sync::Arc;

use runproof_core::correlation::{Decision, RejectReason, RunClaim, RunFacts, decide};
use runproof_core::{InstallationId, RepositoryId, RunId, RunIdentity, UnixTime};
use runproof_github::GithubError;
use runproof_github::types::parse_timestamp;
use runproof_github::workflow::WorkflowCheck;
use runproof_store::{UploadRecord, UploadStatus, WebhookEffect};

use crate::binding::bind;
use crate::error::ServiceError;
use crate::service::Service;
use crate::trust;
use crate::webhook_state::*;
use crate::workflow_check::{self, Unanswered, WorkflowAt};

/// Why an upload could not be settled now (it stays pending, and is tried again).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Transient {
    /// The installation binding could not be decided.
    #[error("installation binding: {0}")]
    Binding(ServiceError),
    /// The workflow file could not be fetched.
    #[error("workflow check: {0}")]
    WorkflowCheck(GithubError),
    /// GitHub could not be asked.
    #[error("GitHub: {0}")]
    Github(GithubError),
    /// The workflow check needs the App's credentials, and they are not set.
    #[error("the workflow check needs the App's credentials")]
    NoCredentials,
    /// No installation can read the workflow file.
    #[error("no installation to read the workflow with")]
    NoInstallation,
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] runproof_store::StoreError),
    /// The repository's trust rules could not be read.
    #[error("repository rules: {0}")]
    Rules(ServiceError),
}

/// Settles a pending upload against a run GitHub vouched for. Returns the new status, or
/// `None` when the run does not settle it.
pub(crate) async fn settle(
    state: &Service,
    mode: &WebhookMode,
    upload: &UploadRecord,
    run: &Vouched,
) -> Result<Option<UploadStatus>, Transient> {
    match decide(
        &claim_of(upload),
        &run.facts,
        mode.rules(&state.verifier.config().policy),
        unix(upload.created_at),
    ) {
        Decision::Wait => Ok(None),
        Decision::Reject(reason) => reject(state, upload, &reason, run.via).await,
        Decision::Approve => approve(state, mode, upload, run).await,
    }
}

pub(crate) async fn approve(
    state: &Service,
    mode: &WebhookMode,
    upload: &UploadRecord,
    run: &Vouched,
) -> Result<Option<UploadStatus>, Transient> {
    let policy = &state.verifier.config().policy;
    if policy.require_github_hosted_runner {
        let reason = RejectReason::Policy(
            "require_github_hosted_runner cannot be checked in the webhook mode".into(),
        );
        return reject(state, upload, &reason, run.via).await;
    }
    if let Err(rule) = policy.check_repository(run.owner_id, run.facts.repository_id) {
        return reject(
            state,
            upload,
            &RejectReason::Policy(rule.to_string()),
            run.via,
        )
        .await;
    }
    let mut identity = run.identity(run.installation_id);
    if state.binding.is_some() {
        identity.installation_id = None;
        match bind(state.binding.as_ref(), &*state.store, &mut identity).await {
            Ok(()) => {}
            Err(ServiceError::NotInstalled { .. }) => {
                let reason = RejectReason::NotInstalled(run.facts.repository_id);
                return reject(state, upload, &reason, run.via).await;
            }
            Err(e) => return Err(Transient::Binding(e)),
        }
    }
    // The App's and the repository's trust rules, on what GitHub vouched for: a rule naming
    // a claim the webhook mode does not know (a ref, a workflow, an environment) refuses, as
    // for any run. Rules that cannot be read now decide nothing: the upload stays pending.
    match trust::check(state, &identity).await {
        Ok(()) => {}
        Err(e) if e.is_transient() => return Err(Transient::Rules(e)),
        Err(refusal) => {
            let reason = RejectReason::Policy(refusal.to_string());
            return reject(state, upload, &reason, run.via).await;
        }
    }
    // `[webhook_mode] require_action`, and `[policy] require_action`, which holds for every
    // mode: the run's workflow at its head commit must use each.
    let required = mode.config.require_action.iter().chain(
        state
            .require_action
            .iter()
            .filter(|a| mode.config.require_action.as_ref() != Some(*a)),
    );
    for action in required {
        match workflow_check(state, run, identity.installation_id, action).await? {
            WorkflowCheck::Uses => {}
            WorkflowCheck::NotUsed(what) => {
                tracing::info!(upload = %upload.id, %what, "workflow check failed");
                let reason = RejectReason::ActionNotUsed {
                    path: run.path.clone(),
                    sha: run.facts.head_sha.clone(),
                    action: action.clone(),
                };
                return reject(state, upload, &reason, run.via).await;
            }
            WorkflowCheck::Unreadable(why) => {
                let reason = RejectReason::WorkflowUnreadable(why);
                return reject(state, upload, &reason, run.via).await;
            }
        }
    }
    resolve(
        state,
        upload,
        UploadStatus::Verified,
        Some(&identity),
        None,
        run.via,
    )
    .await
}

/// The shared workflow check ([`crate::workflow_check`]) on the run's workflow file at
/// its head commit.
pub(crate) async fn workflow_check(
    state: &Service,
    run: &Vouched,
    installation: Option<InstallationId>,
    action: &str,
) -> Result<WorkflowCheck, Transient> {
    if run.path.is_empty() {
        return Ok(WorkflowCheck::Unreadable(
            "GitHub did not name the workflow file".into(),
        ));
    }
    let at = WorkflowAt {
        repository_id: run.facts.repository_id,
        full_name: &run.full_name,
        path: &run.path,
        sha: &run.facts.head_sha,
    };
    workflow_check::check(state, at, installation.or(run.installation_id), action)
        .await
        .map_err(|e| match e {
            Unanswered::NoCredentials => Transient::NoCredentials,
            Unanswered::NoInstallation => Transient::NoInstallation,
            Unanswered::Github(e) => Transient::WorkflowCheck(e),
        })
}

pub(crate) async fn reject(
    state: &Service,
    upload: &UploadRecord,
    reason: &RejectReason,
    via: &'static str,
) -> Result<Option<UploadStatus>, Transient> {
    resolve(
        state,
        upload,
        UploadStatus::Rejected,
        None,
        Some(&reason.to_string()),
        via,
    )
    .await
}

/// Resolves the upload once, with the pushes its new status announces.
pub(crate) async fn resolve(
    state: &Service,
    upload: &UploadRecord,
    status: UploadStatus,
    identity: Option<&RunIdentity>,
    reason: Option<&str>,
    via: &'static str,
) -> Result<Option<UploadStatus>, Transient> {
    let now = state.clock.now();
    let mut record = upload.clone();
    record.status = status;
    record.reason = reason.map(str::to_owned);
    if let Some(identity) = identity {
        record.identity = identity.clone();
    }
    if status == UploadStatus::Verified {
        record.verified_at = time::OffsetDateTime::from_unix_timestamp(now.0).ok();
    }
    let event = match status {
        UploadStatus::Verified => "upload.verified",
        UploadStatus::Rejected => "upload.rejected",
        UploadStatus::Expired => "upload.expired",
        UploadStatus::Pending => return Ok(None),
    };
    let pushes: Vec<_> = state
        .push
        .as_ref()
        .and_then(|d| d.push_for(event, &record))
        .into_iter()
        .collect();
    let changed = state
        .store
        .resolve_pending(&upload.id, status, identity, reason, now, &pushes)
        .await?;
    if !changed {
        return Ok(None);
    }
    if !pushes.is_empty() {
        state.push_wake.notify_one();
    }
    metrics::counter!("runproof_uploads_total", "mode" => "webhook", "status" => status.as_str())
        .increment(1);
    metrics::counter!("runproof_webhook_mode_total", "outcome" => status.as_str(), "via" => via)
        .increment(1);
    let mut settled = runproof_store::NewEvent::new(
        now,
        runproof_store::EventKind::Pending,
        runproof_store::EventOutcome::Settled,
    );
    settled.mode = Some(runproof_store::Mode::Webhook.as_str().to_owned());
    // The repository and run the upload is listed under; the workflow only once verified.
    settled.repository_id = Some(upload.identity.repository_id);
    settled.run_id = Some(upload.identity.run_id);
    settled.workflow = identity.and_then(|i| i.workflow_ref.clone());
    settled.upload_id = Some(upload.id.clone());
    settled.detail = Some(match reason {
        Some(reason) => format!(
            "{} {} via {via}: {reason}",
            status.as_str(),
            upload.id.as_str()
        ),
        None => format!("{} {} via {via}", status.as_str(), upload.id.as_str()),
    });
    state.record(settled);
    tracing::info!(
        id = %upload.id,
        status = status.as_str(),
        via,
        reason = reason.unwrap_or(""),
        repository_id = %upload.identity.repository_id,
        run_id = %upload.identity.run_id,
        "pending upload resolved"
    );
    Ok(Some(status))
}

/// Asks GitHub for the claimed run with an installation token. `Ok(None)` when GitHub
/// does not know it (or the App is not installed there): the upload waits for a webhook.
pub(crate) async fn confirm_with_api(
    state: &Service,
    mode: &WebhookMode,
    claim: &RunClaim,
) -> Result<Option<Vouched>, Transient> {
    let Some(binding) = state.binding.as_ref() else {
        return Ok(None);
    };
    if let Some(run) = mode.cached_run((claim.repository_id, claim.run_id)) {
        return Ok(Some(run));
    }
    let app = binding.lookups(claim.repository_id);
    let gh = Transient::Github;
    let installation = match state.store.repository_binding(claim.repository_id).await? {
        Some(b) if b.is_active() => b.installation_id,
        Some(b) if b.is_refused() => return Ok(None),
        _ => match app
            .repository_installation_by_id(claim.repository_id)
            .await
            .map_err(gh)?
        {
            Some(inst) if inst.suspended_at.is_none() => inst.id,
            _ => return Ok(None),
        },
    };
    let Some(repo) = app
        .repository_by_id(claim.repository_id, installation)
        .await
        .map_err(gh)?
    else {
        return Ok(None);
    };
    if repo.id != claim.repository_id {
        return Ok(None);
    }
    let Some(run) = app
        .workflow_run(&repo.full_name, claim.run_id, installation)
        .await
        .map_err(gh)?
    else {
        return Ok(None);
    };
    let status = run.status.clone().unwrap_or_default();
    let updated_at = run
        .updated_at
        .as_deref()
        .and_then(parse_timestamp)
        .map(UnixTime);
    let vouched = Vouched {
        facts: RunFacts {
            repository_id: run.repository.as_ref().map_or(repo.id, |r| r.id),
            run_id: run.id,
            run_attempt: run.run_attempt.unwrap_or(1),
            head_sha: run.head_sha.clone(),
            head_repository_id: run.head_repository.as_ref().map(|r| r.id),
            event: run.event.clone(),
            // A completed run without a time counts as completed long ago (fail closed).
            completed_at: (status == "completed").then(|| updated_at.unwrap_or(UnixTime(0))),
            run_started_at: run
                .run_started_at
                .as_deref()
                .and_then(parse_timestamp)
                .map(UnixTime),
        },
        full_name: repo.full_name.clone(),
        owner_id: repo.owner.id,
        installation_id: Some(installation),
        path: run.path.clone().unwrap_or_default(),
        via: "api",
    };
    mode.remember_run(&vouched);
    Ok(Some(vouched))
}

/// Tries to settle one pending upload now: from a stored run, else by asking GitHub.
pub(crate) async fn try_settle(
    state: &Service,
    mode: &WebhookMode,
    upload: &UploadRecord,
    ask_api: bool,
) -> Result<Option<UploadStatus>, Transient> {
    let claim = claim_of(upload);
    let stored = state
        .store
        .get_workflow_run(claim.repository_id, claim.run_id, claim.run_attempt)
        .await?;
    if let Some(record) = stored {
        let settled = settle(state, mode, upload, &Vouched::from_record(&record)).await?;
        if settled.is_some() {
            return Ok(settled);
        }
    }
    if !ask_api {
        return Ok(None);
    }
    match confirm_with_api(state, mode, &claim).await? {
        Some(run) => settle(state, mode, upload, &run).await,
        None => Ok(None),
    }
}

/// Right after a pending upload is stored: settles it at once when its run is known
/// (stored from a webhook, or found by active confirmation). Returns the record as it
/// now stands.
pub async fn after_insert(state: &Service, record: UploadRecord) -> UploadRecord {
    let Some(mode) = state.webhook_mode.as_ref() else {
        return record;
    };
    let settled =
        tokio::time::timeout(CONFIRM_TIMEOUT, try_settle(state, mode, &record, true)).await;
    match settled {
        Ok(Ok(_)) => {}
        Ok(Err(why)) => {
            tracing::info!(id = %record.id, %why, "pending upload not settled yet");
        }
        Err(_) => {
            tracing::info!(id = %record.id, "active confirmation timed out; the upload stays pending");
        }
    }
    // Read it again whatever happened here: a webhook or the sweeper may have settled it
    // meanwhile.
    match state.store.get_upload(&record.id).await {
        Ok(Some(fresh)) => fresh,
        _ => record,
    }
}

/// After a fresh webhook delivery: settles the pending uploads of each workflow run it
/// recorded, in the background (the delivery's answer does not wait for GitHub).
pub fn after_webhook_delivery(state: &Arc<Service>, effects: &[WebhookEffect]) {
    if state.webhook_mode.is_none() {
        return;
    }
    for effect in effects {
        if let WebhookEffect::UpsertWorkflowRun(run) = effect {
            let state = Arc::clone(state);
            let key = (run.repository_id, run.run_id, run.run_attempt);
            tokio::spawn(async move {
                settle_run(&state, key.0, key.1, key.2).await;
            });
        }
    }
}

/// Settles the pending uploads that claim a run attempt, against the run as stored.
pub(crate) async fn settle_run(state: &Service, repo: RepositoryId, run_id: RunId, attempt: u32) {
    let Some(mode) = state.webhook_mode.as_ref() else {
        return;
    };
    let stored = match state.store.get_workflow_run(repo, run_id, attempt).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a workflow run");
            return;
        }
    };
    let pending = match state
        .store
        .pending_uploads_for_run(repo, run_id, attempt)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list pending uploads");
            return;
        }
    };
    let run = Vouched::from_record(&stored);
    for (upload, _) in pending {
        if let Err(why) = settle(state, mode, &upload, &run).await {
            tracing::info!(id = %upload.id, %why, "pending upload not settled yet");
        }
    }
}
