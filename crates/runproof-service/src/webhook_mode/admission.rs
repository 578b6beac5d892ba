//! Admission: an upload without credentials is screened against what is known of its
//! run and given room in the pending quotas, before a byte of its body is read.

use std::sync::Arc;
use std::time::Duration;

use runproof_core::correlation::{RunFacts, Screening, screen};
use runproof_core::run_header::{RunHeader, parse_sha};
use runproof_core::{ErrorCode, RunIdentity, UnixTime};
use runproof_store::{
    CountableClaims, PendingLimits, PendingReservation, PendingRun, ReservationId, Reserved, Store,
};

use crate::error::ServiceError;
use crate::service::ClaimedRun;
use crate::service::Service;
use crate::webhook_state::*;

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

pub(crate) fn rate_limited(detail: impl Into<String>, retry_after: u64) -> ServiceError {
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
        return Err(ServiceError::NotInstalled {
            repository_id: claim.repository_id,
            detail: format!(
                "the App is not installed on repository {}",
                claim.repository_id
            ),
        });
    }
    let now = state.clock.now();
    let countable = match screen(
        &claim_of_pending(&claim),
        &known_facts(state, mode, &claim).await?,
        mode.rules(&state.verifier.config().policy),
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
pub(crate) fn reservation_lifetime(body_timeout: Duration) -> i64 {
    i64::try_from(body_timeout.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_add(RESERVATION_GRACE_SECONDS)
}

/// What is known of the claimed run before the body is read: its attempts stored from
/// signed webhooks, and a recent answer of GitHub's API (not asked here).
pub(crate) async fn known_facts(
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
