//! The `webhook` mode: uploads without credentials, held `pending` until GitHub vouches
//! for the run they claim.
//!
//! An upload with no `Authorization` but `X-Runproof-Run` and `X-Runproof-Sha` is admitted
//! after the quotas (before a byte of the body is read), stored `pending` with an
//! unverified identity, and then settled by whichever comes first:
//! - a signed `workflow_run` webhook for the same repository id, run id and attempt
//!   (stored by the webhook receiver; runs seen recently are kept, so the order of upload
//!   and webhook does not matter);
//! - active confirmation: with the App's credentials, GitHub's REST API is asked for the
//!   run with an installation token.
//!
//! The decision itself is [`runproof_core::correlation::decide`]; then the repository's
//! allow-lists, installation binding and, when configured, the workflow check apply.
//! GitHub being unavailable never decides anything: the upload stays pending and is looked
//! at again by the sweeper, which also expires uploads after `pending_ttl` and deletes the
//! blobs of rejected and expired uploads. Everything it needs is in the database, so it is
//! restart-safe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use runproof_core::correlation::{
    Decision, RejectReason, Rules, RunClaim, RunFacts, Screening, decide, screen,
};
use runproof_core::run_header::{RunHeader, parse_sha};
use runproof_core::{
    ErrorCode, InstallationId, OwnerId, RepositoryId, RunId, RunIdentity, UnixTime,
};
use runproof_github::GithubError;
use runproof_github::types::parse_timestamp;
use runproof_github::workflow::{WorkflowCheck, check_workflow};
use runproof_store::{
    CountableClaims, ListFilter, PENDING_EXPIRED_REASON, PendingLimits, PendingReservation,
    PendingRun, ReservationId, Reserved, Store, UploadId, UploadRecord, UploadStatus,
    WebhookEffect, WorkflowRunRecord,
};

use crate::binding::bind;
use crate::github_token::API_ISSUER;
use crate::{ClaimedRun, Service, ServiceError};

/// The issuer recorded in the identity of an upload that is still pending.
pub const UNVERIFIED_ISSUER: &str = "unverified";

/// How long a workflow check result is kept (the file at a commit never changes).
const CHECK_TTL: Duration = Duration::from_secs(3600);
/// How long a run found by active confirmation is reused for further uploads.
const API_RUN_TTL: Duration = Duration::from_secs(60);
/// Entries kept in each in-memory cache before expired ones are pruned.
const CACHE_BOUND: usize = 10_000;
/// The longest active confirmation may hold an upload's answer.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Runs asked of GitHub per sweep, at most (rate limits).
const SWEEP_API_BUDGET: usize = 50;
/// How long after the body deadline an unconsumed reservation still counts, in seconds.
const RESERVATION_GRACE_SECONDS: i64 = 60;

/// The `[webhook_mode]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookModeConfig {
    /// How long after its run completed an upload may still arrive, in seconds.
    pub grace_period_seconds: i64,
    /// How long an upload may stay pending before it expires, in seconds.
    pub pending_ttl_seconds: i64,
    /// Accept runs of forks (head repository ≠ repository).
    pub allow_forks: bool,
    /// `owner/name` of an action the run's workflow must use (the workflow check).
    pub require_action: Option<String>,
    /// The most uploads in this mode, per run attempt, that may still be approved:
    /// pending or verified (rejected and expired ones do not count), and, once the run is
    /// known, naming its commit and received since the attempt started.
    pub max_uploads_per_run: u64,
    /// The most bytes pending at once for one repository.
    pub max_pending_bytes_per_repository: u64,
    /// The most uploads pending at once, in all.
    pub max_pending_uploads: u64,
    /// The most bytes pending at once, in all.
    pub max_pending_bytes: u64,
}

impl Default for WebhookModeConfig {
    fn default() -> Self {
        Self {
            grace_period_seconds: 600,
            pending_ttl_seconds: 24 * 3600,
            allow_forks: false,
            require_action: None,
            max_uploads_per_run: 100,
            max_pending_bytes_per_repository: 1024 * 1024 * 1024,
            max_pending_uploads: 10_000,
            max_pending_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

/// A workflow check's cache key: (repository id, workflow path, commit).
type CheckKey = (RepositoryId, String, String);

/// The webhook mode: its settings and caches.
#[derive(Debug)]
pub struct WebhookMode {
    /// The settings.
    pub config: WebhookModeConfig,
    /// Workflow check results by (repository id, path, sha).
    checks: Mutex<HashMap<CheckKey, (WorkflowCheck, Instant)>>,
    /// Runs found by active confirmation, by (repository id, run id).
    runs: Mutex<HashMap<(RepositoryId, RunId), (Vouched, Instant)>>,
}

impl WebhookMode {
    /// The mode with these settings.
    #[must_use]
    pub fn new(config: WebhookModeConfig) -> Self {
        Self {
            config,
            checks: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// The rules of the pure decision, with the policy of `state`.
    fn rules<'a>(&self, state: &'a Service) -> Rules<'a> {
        Rules {
            policy: &state.verifier.config().policy,
            allow_forks: self.config.allow_forks,
            grace_period_seconds: self.config.grace_period_seconds,
        }
    }

    fn cached_check(&self, key: &CheckKey) -> Option<WorkflowCheck> {
        let checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        checks
            .get(key)
            .filter(|(_, at)| at.elapsed() < CHECK_TTL)
            .map(|(c, _)| c.clone())
    }

    fn remember_check(&self, key: CheckKey, check: WorkflowCheck) {
        let mut checks = self.checks.lock().unwrap_or_else(PoisonError::into_inner);
        if checks.len() >= CACHE_BOUND {
            checks.retain(|_, (_, at)| at.elapsed() < CHECK_TTL);
        }
        if checks.len() < CACHE_BOUND {
            checks.insert(key, (check, Instant::now()));
        }
    }

    fn cached_run(&self, key: (RepositoryId, RunId)) -> Option<Vouched> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.get(&key)
            .filter(|(_, at)| at.elapsed() < API_RUN_TTL)
            .map(|(r, _)| r.clone())
    }

    fn remember_run(&self, run: &Vouched) {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if runs.len() >= CACHE_BOUND {
            runs.retain(|_, (_, at)| at.elapsed() < API_RUN_TTL);
        }
        if runs.len() < CACHE_BOUND {
            runs.insert(
                (run.facts.repository_id, run.facts.run_id),
                (run.clone(), Instant::now()),
            );
        }
    }
}

/// A run GitHub vouched for, with what the identity needs.
#[derive(Debug, Clone)]
struct Vouched {
    facts: RunFacts,
    full_name: String,
    owner_id: OwnerId,
    installation_id: Option<InstallationId>,
    path: String,
    /// `webhook` or `api`, for logs and metrics.
    via: &'static str,
}

impl Vouched {
    fn from_record(r: &WorkflowRunRecord) -> Self {
        Self {
            facts: RunFacts {
                repository_id: r.repository_id,
                run_id: r.run_id,
                run_attempt: r.run_attempt,
                head_sha: r.head_sha.clone(),
                head_repository_id: r.head_repository_id,
                event: r.event.clone(),
                completed_at: r.completed_at,
                run_started_at: r.run_started_at,
            },
            full_name: r.repository_full_name.clone(),
            owner_id: r.owner_id,
            installation_id: r.installation_id,
            path: r.path.clone(),
            via: "webhook",
        }
    }

    fn identity(&self, installation_id: Option<InstallationId>) -> RunIdentity {
        RunIdentity {
            issuer: API_ISSUER.to_owned(),
            repository: self.full_name.clone(),
            repository_id: self.facts.repository_id,
            repository_owner: self
                .full_name
                .split_once('/')
                .map(|(owner, _)| owner.to_owned()),
            repository_owner_id: self.owner_id,
            run_id: self.facts.run_id,
            run_attempt: Some(self.facts.run_attempt),
            sha: self.facts.head_sha.clone(),
            git_ref: None,
            workflow_ref: None,
            job_workflow_ref: None,
            event_name: Some(self.facts.event.clone()),
            actor: None,
            runner_environment: None,
            environment: None,
            installation_id,
            unverified: Vec::new(),
        }
    }
}

/// What an upload without credentials may do, decided before the body is read.
pub struct PendingAdmission {
    /// The unverified identity the record carries until approval.
    pub identity: RunIdentity,
    /// The run claimed.
    pub claim: PendingRun,
    /// The most bytes the body may take: what is reserved for it.
    pub cap: u64,
    /// The room held in the pending quotas while the body is read.
    pub reservation: Reservation,
}

/// Room held in the pending quotas for one upload. The insert of the upload consumes it
/// ([`Reservation::consumed`] then disarms it); otherwise it is refunded
/// ([`Reservation::refund`]), or, when dropped unsettled (the request was cancelled), in
/// the background.
pub struct Reservation {
    /// The reservation, as the insert names it.
    id: ReservationId,
    /// When the request's head arrived: the upload's time of receipt, which the run
    /// attempt's start is compared with (so that a slow body cannot carry a claim made
    /// before the attempt existed past its start).
    admitted_at: UnixTime,
    /// Where to refund it.
    store: Arc<dyn Store>,
    /// Refund on drop.
    armed: bool,
}

impl Reservation {
    /// The reservation's id, for [`runproof_store::NewUpload::pending_reservation`].
    pub fn id(&self) -> &ReservationId {
        &self.id
    }

    /// When the upload was received (its request's head), for its record.
    pub fn admitted_at(&self) -> UnixTime {
        self.admitted_at
    }

    /// The upload that consumed it is stored: nothing to refund.
    pub fn consumed(mut self) {
        self.armed = false;
    }

    /// Refunds it now (no upload consumed it). Should that fail, it expires.
    pub async fn refund(mut self) {
        self.armed = false;
        if let Err(e) = self.store.release_pending(&self.id).await {
            tracing::warn!(error = %e, "cannot refund a pending-quota reservation; it expires");
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Without a runtime (shutting down) the reservation expires on its own.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, id) = (Arc::clone(&self.store), self.id.clone());
            runtime.spawn(async move {
                if let Err(e) = store.release_pending(&id).await {
                    tracing::warn!(error = %e, "cannot refund a pending-quota reservation; it expires");
                }
            });
        }
    }
}

/// The identity of an upload that is still pending: the claim, every field unverified.
#[must_use]
pub fn pending_identity(claim: &PendingRun) -> RunIdentity {
    RunIdentity {
        issuer: UNVERIFIED_ISSUER.to_owned(),
        repository: String::new(),
        repository_id: claim.repository_id,
        repository_owner: None,
        repository_owner_id: OwnerId(0),
        run_id: claim.run_id,
        run_attempt: Some(claim.run_attempt),
        sha: claim.head_sha.clone(),
        git_ref: None,
        workflow_ref: None,
        job_workflow_ref: None,
        event_name: None,
        actor: None,
        runner_environment: None,
        environment: None,
        installation_id: None,
        unverified: ["repository_id", "run_id", "run_attempt", "sha"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}

fn rate_limited(detail: impl Into<String>, retry_after: u64) -> ServiceError {
    ServiceError::rate_limited(detail, retry_after)
}

/// Admits an upload without credentials whose body declares `declared` bytes (`None`:
/// unknown until read): the run headers, installation (when known to be absent), what is
/// known of the run ([`screen`]), and room reserved in the quotas. Nothing of the body is
/// read.
pub async fn admit(
    state: &Service,
    mode: &WebhookMode,
    claimed: ClaimedRun<'_>,
    declared: Option<u64>,
) -> Result<PendingAdmission, ServiceError> {
    let (Some(run), Some(sha)) = (claimed.run, claimed.sha) else {
        return Err(ServiceError::refused(
            ErrorCode::MissingCredentials,
            "send an OIDC token as `Authorization: Bearer <token>`, or, for the webhook mode, \
             X-Runproof-Run and X-Runproof-Sha",
        ));
    };
    let run = RunHeader::parse(run).map_err(|e| ServiceError::invalid(e.to_string()))?;
    let sha = parse_sha(sha).map_err(|e| ServiceError::invalid(e.to_string()))?;
    let claim = PendingRun {
        repository_id: run.repository_id,
        run_id: run.run_id,
        run_attempt: run.run_attempt,
        head_sha: sha,
    };
    let storage = ServiceError::Storage;
    let store = &state.store;
    if state.binding.is_some()
        && let Some(b) = store
            .repository_binding(claim.repository_id)
            .await
            .map_err(storage)?
        && b.is_refused()
    {
        return Err(ServiceError::refused(
            ErrorCode::NotInstalled,
            format!(
                "the App is not installed on repository {}",
                claim.repository_id
            ),
        ));
    }
    let now = state.clock.now();
    let countable = match screen(
        &claim_of_pending(&claim),
        &known_facts(state, mode, &claim).await?,
        mode.rules(state),
        now,
    ) {
        Screening::Admit(countable) => countable,
        Screening::Refuse(reason) => {
            metrics::counter!("runproof_webhook_mode_total", "outcome" => "refused", "via" => "admission")
                .increment(1);
            return Err(ServiceError::refused(
                ErrorCode::PolicyDenied,
                reason.to_string(),
            ));
        }
    };
    let max_bytes = state.settings.max_upload_bytes;
    if declared.is_some_and(|len| len > max_bytes) {
        return Err(ServiceError::refused(
            ErrorCode::PayloadTooLarge,
            format!("the body exceeds the limit of {max_bytes} bytes"),
        ));
    }
    let config = &mode.config;
    let request = PendingReservation {
        id: ReservationId::generate(),
        claim: claim.clone(),
        declared_bytes: declared,
        max_bytes,
        limits: PendingLimits {
            max_uploads_per_run: config.max_uploads_per_run,
            max_pending_bytes_per_repository: config.max_pending_bytes_per_repository,
            max_pending_uploads: config.max_pending_uploads,
            max_pending_bytes: config.max_pending_bytes,
        },
        countable: countable.map(|c| CountableClaims {
            head_sha: c.head_sha,
            not_before: c.not_before,
        }),
        created_at: now,
        expires_at: now.plus(reservation_lifetime(state.settings.body_timeout)),
    };
    let bytes = match store.reserve_pending(&request).await.map_err(storage)? {
        Reserved::Granted { bytes } => bytes,
        Reserved::RunFull { count } => {
            return Err(rate_limited(
                format!(
                    "attempt {} of run {} has {count} uploads in the webhook mode that may still \
                     be approved (the most is {})",
                    claim.run_attempt, claim.run_id, config.max_uploads_per_run
                ),
                60,
            ));
        }
        Reserved::RepositoryFull { pending_bytes } => {
            return Err(ServiceError::refused(
                ErrorCode::PayloadTooLarge,
                format!(
                    "repository {} has {pending_bytes} bytes pending approval; the most is {}",
                    claim.repository_id, config.max_pending_bytes_per_repository
                ),
            ));
        }
        Reserved::TooManyUploads => {
            return Err(rate_limited(
                "too many uploads are pending approval; retry later",
                60,
            ));
        }
        _ => {
            return Err(rate_limited(
                "too many bytes are pending approval; retry later",
                60,
            ));
        }
    };
    Ok(PendingAdmission {
        identity: pending_identity(&claim),
        cap: bytes,
        claim,
        reservation: Reservation {
            id: request.id,
            admitted_at: now,
            store: Arc::clone(&state.store),
            armed: true,
        },
    })
}

/// How long a reservation counts when nothing consumes or refunds it (the process died
/// while reading the body): the body deadline, and a minute to store the upload.
fn reservation_lifetime(body_timeout: Duration) -> i64 {
    i64::try_from(body_timeout.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_add(RESERVATION_GRACE_SECONDS)
}

/// What is known of the claimed run before the body is read: its attempts stored from
/// signed webhooks, and a recent answer of GitHub's API (not asked here).
async fn known_facts(
    state: &Service,
    mode: &WebhookMode,
    claim: &PendingRun,
) -> Result<Vec<RunFacts>, ServiceError> {
    let mut known: Vec<RunFacts> = state
        .store
        .workflow_run_attempts(claim.repository_id, claim.run_id)
        .await?
        .iter()
        .map(|r| Vouched::from_record(r).facts)
        .collect();
    known.extend(
        mode.cached_run((claim.repository_id, claim.run_id))
            .map(|run| run.facts),
    );
    Ok(known)
}

fn claim_of_pending(claim: &PendingRun) -> RunClaim {
    RunClaim {
        repository_id: claim.repository_id,
        run_id: claim.run_id,
        run_attempt: claim.run_attempt,
        head_sha: claim.head_sha.clone(),
    }
}

fn claim_of(upload: &UploadRecord) -> RunClaim {
    let id = &upload.identity;
    RunClaim {
        repository_id: id.repository_id,
        run_id: id.run_id,
        run_attempt: id.run_attempt.unwrap_or(1),
        head_sha: id.sha.clone(),
    }
}

fn unix(t: time::OffsetDateTime) -> UnixTime {
    UnixTime(t.unix_timestamp())
}

/// Why an upload could not be settled now (it stays pending, and is tried again).
#[derive(Debug, thiserror::Error)]
enum Transient {
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
}

/// Settles a pending upload against a run GitHub vouched for. Returns the new status, or
/// `None` when the run does not settle it.
async fn settle(
    state: &Service,
    mode: &WebhookMode,
    upload: &UploadRecord,
    run: &Vouched,
) -> Result<Option<UploadStatus>, Transient> {
    match decide(
        &claim_of(upload),
        &run.facts,
        mode.rules(state),
        unix(upload.created_at),
    ) {
        Decision::Wait => Ok(None),
        Decision::Reject(reason) => reject(state, upload, &reason, run.via).await,
        Decision::Approve => approve(state, mode, upload, run).await,
    }
}

async fn approve(
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
        if let Err(e) = bind(state, &mut identity).await {
            if e.code() == ErrorCode::NotInstalled {
                let reason = RejectReason::NotInstalled(run.facts.repository_id);
                return reject(state, upload, &reason, run.via).await;
            }
            return Err(Transient::Binding(e));
        }
    }
    if let Some(action) = &mode.config.require_action {
        match workflow_check(state, mode, run, identity.installation_id, action).await? {
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

async fn workflow_check(
    state: &Service,
    mode: &WebhookMode,
    run: &Vouched,
    installation: Option<InstallationId>,
    action: &str,
) -> Result<WorkflowCheck, Transient> {
    if run.path.is_empty() {
        return Ok(WorkflowCheck::Unreadable(
            "GitHub did not name the workflow file".into(),
        ));
    }
    let key = (
        run.facts.repository_id,
        run.path.clone(),
        run.facts.head_sha.clone(),
    );
    if let Some(found) = mode.cached_check(&key) {
        return Ok(found);
    }
    let Some(binding) = state.binding.as_ref() else {
        return Err(Transient::NoCredentials);
    };
    let installation = match installation.or(run.installation_id) {
        Some(i) => i,
        None => return Err(Transient::NoInstallation),
    };
    let app = &binding.app;
    let (full_name, sha) = (run.full_name.clone(), run.facts.head_sha.clone());
    let checked = check_workflow(&run.path, action, |path| {
        let (full_name, sha) = (full_name.clone(), sha.clone());
        async move { app.file_at(&full_name, &path, &sha, installation).await }
    })
    .await;
    // A file too large to read stays too large: the check fails for good, so that the
    // sweeper does not fetch it again until the upload expires.
    let outcome = match checked {
        Ok(outcome) => outcome,
        Err(e @ GithubError::TooLarge { .. }) => {
            WorkflowCheck::Unreadable(format!("a workflow file of {}: {e}", run.path))
        }
        Err(e) => return Err(Transient::WorkflowCheck(e)),
    };
    mode.remember_check(key, outcome.clone());
    Ok(outcome)
}

async fn reject(
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

/// Resolves the upload once, with the deliveries its new status announces.
async fn resolve(
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
async fn confirm_with_api(
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
async fn try_settle(
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
pub fn after_delivery(state: &Arc<Service>, effects: &[WebhookEffect]) {
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
async fn settle_run(state: &Service, repo: RepositoryId, run_id: RunId, attempt: u32) {
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

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Pending uploads approved or rejected.
    pub settled: u64,
    /// Pending uploads expired.
    pub expired: u64,
    /// Blobs of rejected and expired uploads deleted.
    pub blobs_deleted: u64,
    /// Stored workflow runs forgotten.
    pub runs_purged: u64,
}

/// One pass of the sweeper: settles pending uploads whose run is now known (a webhook
/// processed before a crash, or GitHub back after an outage), expires those older than
/// `pending_ttl`, deletes the blobs of rejected and expired uploads, and forgets old runs.
/// Safe to run at any time, concurrently with requests and on several replicas.
pub async fn sweep(state: &Service) -> SweepReport {
    let mut report = SweepReport::default();
    let Some(mode) = state.webhook_mode.as_ref() else {
        return report;
    };
    let now = state.clock.now();
    let expire_before = now.minus(mode.config.pending_ttl_seconds);
    let filter = ListFilter {
        status: Some(UploadStatus::Pending),
        repository_id: None,
    };
    let mut cursor = None;
    let mut api_budget = SWEEP_API_BUDGET;
    loop {
        let page = match state
            .store
            .list_uploads(&filter, 1000, cursor.as_ref())
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "sweep: cannot list pending uploads");
                break;
            }
        };
        for upload in &page.0 {
            if unix(upload.created_at) < expire_before {
                match resolve(
                    state,
                    upload,
                    UploadStatus::Expired,
                    None,
                    Some(PENDING_EXPIRED_REASON),
                    "sweeper",
                )
                .await
                {
                    Ok(Some(_)) => report.expired += 1,
                    Ok(None) => {}
                    Err(why) => tracing::warn!(id = %upload.id, %why, "sweep: cannot expire"),
                }
                continue;
            }
            let ask_api = api_budget > 0 && state.binding.is_some();
            if ask_api {
                api_budget -= 1;
            }
            match try_settle(state, mode, upload, ask_api).await {
                Ok(Some(_)) => report.settled += 1,
                Ok(None) => {}
                Err(why) => tracing::info!(id = %upload.id, %why, "sweep: not settled yet"),
            }
        }
        match page.1 {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    report.blobs_deleted = delete_blobs(state).await;
    let keep = mode.config.pending_ttl_seconds + mode.config.grace_period_seconds;
    match state.store.purge_workflow_runs(now.minus(keep)).await {
        Ok(n) => report.runs_purged = n,
        Err(e) => tracing::warn!(error = %e, "sweep: cannot purge workflow runs"),
    }
    if report != SweepReport::default() {
        tracing::info!(?report, "webhook-mode sweep");
    }
    report
}

/// Deletes the blobs of rejected and expired uploads, marking each done once deleted
/// (a crash in between deletes it again next time, which is harmless).
async fn delete_blobs(state: &Service) -> u64 {
    let mut deleted = 0;
    for _ in 0..100 {
        let ids: Vec<UploadId> = match state.store.blobs_to_delete(100).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "sweep: cannot list blobs to delete");
                break;
            }
        };
        if ids.is_empty() {
            break;
        }
        let mut progressed = false;
        for id in ids {
            match state.blobs.delete(&id).await {
                Ok(()) | Err(runproof_store::BlobError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(error = %e, %id, "sweep: cannot delete a blob");
                    continue;
                }
            }
            match state.store.mark_blob_deleted(&id).await {
                Ok(()) => {
                    deleted += 1;
                    progressed = true;
                }
                Err(e) => tracing::warn!(error = %e, %id, "sweep: cannot mark a blob deleted"),
            }
        }
        if !progressed {
            break;
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_identity_lists_every_claimed_field_as_unverified() {
        let claim = PendingRun {
            repository_id: RepositoryId(1),
            run_id: RunId(2),
            run_attempt: 3,
            head_sha: "a".repeat(40),
        };
        let id = pending_identity(&claim);
        assert_eq!(id.issuer, UNVERIFIED_ISSUER);
        assert_eq!(
            id.unverified,
            ["repository_id", "run_id", "run_attempt", "sha"]
        );
        let back = RunClaim {
            repository_id: id.repository_id,
            run_id: id.run_id,
            run_attempt: id.run_attempt.unwrap_or(0),
            head_sha: id.sha.clone(),
        };
        assert_eq!(back.run_attempt, 3);
    }
}
