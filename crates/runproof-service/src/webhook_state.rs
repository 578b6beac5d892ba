//! The webhook mode's settings and what it keeps in memory (runs found by active
//! confirmation; recent workflow checks are the service's, shared with the OIDC mode), a
//! run GitHub vouched for, and the identity of a pending upload. The decisions that use
//! them are in [`crate::webhook_mode`].

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use runproof_core::correlation::{Rules, RunClaim, RunFacts};
use runproof_core::{InstallationId, OwnerId, Policy, RepositoryId, RunId, RunIdentity, UnixTime};
use runproof_store::{PendingRun, UploadRecord, WorkflowRunRecord};

use crate::issuers::{API_ISSUER, UNVERIFIED_ISSUER};

/// How long a run found by active confirmation is reused for further uploads.
pub(crate) const API_RUN_TTL: Duration = Duration::from_secs(60);
/// Entries kept in each in-memory cache before expired ones are pruned.
pub(crate) const CACHE_BOUND: usize = 10_000;
/// The longest active confirmation may hold an upload's answer.
pub(crate) const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Runs asked of GitHub per sweep, at most (rate limits).
pub(crate) const SWEEP_API_BUDGET: usize = 50;
/// How long after the body deadline an unconsumed reservation still counts, in seconds.
pub(crate) const RESERVATION_GRACE_SECONDS: i64 = 60;

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

/// The webhook mode: its settings and caches.
#[derive(Debug)]
pub struct WebhookMode {
    /// The settings.
    pub config: WebhookModeConfig,
    /// Runs found by active confirmation, by (repository id, run id).
    runs: Mutex<HashMap<(RepositoryId, RunId), (Vouched, Instant)>>,
}

impl WebhookMode {
    /// The mode with these settings.
    #[must_use]
    pub fn new(config: WebhookModeConfig) -> Self {
        Self {
            config,
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// The rules of the pure decision, with this policy.
    pub(crate) fn rules<'a>(&self, policy: &'a Policy) -> Rules<'a> {
        Rules {
            policy,
            allow_forks: self.config.allow_forks,
            grace_period_seconds: self.config.grace_period_seconds,
        }
    }

    pub(crate) fn cached_run(&self, key: (RepositoryId, RunId)) -> Option<Vouched> {
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.get(&key)
            .filter(|(_, at)| at.elapsed() < API_RUN_TTL)
            .map(|(r, _)| r.clone())
    }

    pub(crate) fn remember_run(&self, run: &Vouched) {
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
pub(crate) struct Vouched {
    pub(crate) facts: RunFacts,
    pub(crate) full_name: String,
    pub(crate) owner_id: OwnerId,
    pub(crate) installation_id: Option<InstallationId>,
    pub(crate) path: String,
    /// `webhook` or `api`, for logs and metrics.
    pub(crate) via: &'static str,
}

impl Vouched {
    pub(crate) fn from_record(r: &WorkflowRunRecord) -> Self {
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

    pub(crate) fn identity(&self, installation_id: Option<InstallationId>) -> RunIdentity {
        RunIdentity {
            repository: self.full_name.clone(),
            repository_owner: self
                .full_name
                .split_once('/')
                .map(|(owner, _)| owner.to_owned()),
            run_attempt: Some(self.facts.run_attempt),
            event_name: Some(self.facts.event.clone()),
            installation_id,
            ..RunIdentity::new(
                API_ISSUER.to_owned(),
                self.facts.repository_id,
                self.owner_id,
                self.facts.run_id,
                self.facts.head_sha.clone(),
            )
        }
    }
}

/// The identity of an upload that is still pending: the claim, every field unverified.
#[must_use]
pub fn pending_identity(claim: &PendingRun) -> RunIdentity {
    RunIdentity {
        run_attempt: Some(claim.run_attempt),
        unverified: ["repository_id", "run_id", "run_attempt", "sha"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        ..RunIdentity::new(
            UNVERIFIED_ISSUER.to_owned(),
            claim.repository_id,
            OwnerId(0),
            claim.run_id,
            claim.head_sha.clone(),
        )
    }
}

pub(crate) fn claim_of_pending(claim: &PendingRun) -> RunClaim {
    RunClaim {
        repository_id: claim.repository_id,
        run_id: claim.run_id,
        run_attempt: claim.run_attempt,
        head_sha: claim.head_sha.clone(),
    }
}

pub(crate) fn claim_of(upload: &UploadRecord) -> RunClaim {
    let id = &upload.identity;
    RunClaim {
        repository_id: id.repository_id,
        run_id: id.run_id,
        run_attempt: id.run_attempt.unwrap_or(1),
        head_sha: id.sha.clone(),
    }
}

pub(crate) fn unix(t: time::OffsetDateTime) -> UnixTime {
    UnixTime(t.unix_timestamp())
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
