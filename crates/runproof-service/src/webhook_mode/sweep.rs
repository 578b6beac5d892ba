//! The sweeper: settles what it can, expires uploads past `pending_ttl`, and deletes the
//! blobs of rejected and expired uploads.

use runproof_store::{ListFilter, PENDING_EXPIRED_REASON, UploadId, UploadStatus};

use super::settle::{resolve, try_settle};
use crate::service::Service;
use crate::webhook_state::*;

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
        ..ListFilter::default()
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
pub(crate) async fn delete_blobs(state: &Service) -> u64 {
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
