//! Deletes committed blobs that no upload record references.
//!
//! An upload commits its blob, then inserts its record. A crash between the two leaves a
//! complete blob that is never served and that nothing else removes. The collector lists
//! committed blobs older than a grace period, asks the store which of them no record has
//! (whatever its status), and deletes those.
//!
//! Why that is safe: a record is inserted right after its blob's commit, within a time
//! bounded by the database's own timeouts. A blob older than the grace period that has no
//! record by then never gets one. A blob is old only when both its modification time and
//! the time in its id (a UUIDv7, generated just before the commit) are, so a store that
//! dates an object from the start of its upload, or whose clock runs ahead of ours, does
//! not make a fresh blob look old. Entries whose names are not upload ids are never
//! listed, so never deleted. Several replicas may run it at once: deleting a blob that is
//! already gone succeeds.
//!
//! Whose blobs: only a blob store bound to this database is collected
//! ([`runproof_store::bind_namespace`], run at start by `runproof serve`). Each run first
//! checks that the database records a namespace and that the blob store's marker names it;
//! otherwise it deletes nothing, since the blobs of a database that is not ours (another
//! deployment sharing the directory or S3 prefix) have no records here.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runproof_core::UnixTime;
use runproof_store::{BlobError, UploadId, check_namespace};

use crate::service::Service;

pub use crate::settings::DEFAULT_ORPHAN_BLOB_GRACE;

/// The most blobs one run examines, unless configured.
pub const DEFAULT_MAX_BLOBS_PER_RUN: usize = 10_000;

/// Settings of [`collect_unreferenced_blobs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorConfig {
    /// How old a blob must be, by its modification time and by the time in its id, before
    /// it is deleted for want of a record. It must exceed the longest time between a
    /// blob's commit and the insert of its record, which the database bounds (SQLite's
    /// busy timeout, PostgreSQL's statement and pool acquire timeouts: seconds); an hour
    /// leaves a wide margin, also for clocks that disagree. With PostgreSQL's statement
    /// timeout disabled nothing bounds it, so keep the grace above any insert you would
    /// let finish.
    pub grace: Duration,
    /// The most blobs one run lists and examines, so that a run's time and memory stay
    /// bounded however many blobs there are; the next run resumes where it stopped.
    pub max_blobs_per_run: usize,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            grace: DEFAULT_ORPHAN_BLOB_GRACE,
            max_blobs_per_run: DEFAULT_MAX_BLOBS_PER_RUN,
        }
    }
}

/// What one run of [`collect_unreferenced_blobs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectReport {
    /// Committed blobs listed as modified before the cutoff.
    pub listed: u64,
    /// Blobs without a record deleted (or found already gone, when another replica got
    /// there first).
    pub deleted: u64,
    /// Failed listings, lookups and deletions; the blobs concerned are kept.
    pub errors: u64,
    /// Where the next run resumes: the last id listed when this run stopped at
    /// [`CollectorConfig::max_blobs_per_run`], or `None` when the listing reached its end
    /// (the next run starts from the beginning).
    pub resume_after: Option<UploadId>,
}

/// Deletes committed blobs older than `config.grace` (by the state's clock) that no upload
/// record references, examining at most `config.max_blobs_per_run` blobs with ids
/// greater than `after`. Failures are logged and counted; a blob is deleted only once the
/// store has said that no record has its id.
pub async fn collect_unreferenced_blobs(
    state: &Service,
    config: &CollectorConfig,
    after: Option<&UploadId>,
) -> CollectReport {
    let mut report = CollectReport::default();
    let Some(cutoff) = cutoff(state.clock.now(), config.grace) else {
        return report;
    };
    if let Err(e) = check_namespace(&*state.store, &*state.blobs).await {
        tracing::warn!(
            error = %e,
            "blob collector: the blob store is not bound to this database; nothing is deleted"
        );
        metrics::counter!("runproof_collector_refused_total").increment(1);
        report.errors += 1;
        report.resume_after = after.cloned();
        return report;
    }
    let listed = match state
        .blobs
        .list_committed(cutoff, after, config.max_blobs_per_run)
        .await
    {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(error = %e, "blob collector: cannot list blobs");
            report.errors += 1;
            report.resume_after = after.cloned();
            return report;
        }
    };
    report.listed = u64::try_from(listed.len()).unwrap_or(u64::MAX);
    if listed.len() >= config.max_blobs_per_run {
        report.resume_after = listed.last().cloned();
    }
    let candidates: Vec<UploadId> = listed
        .into_iter()
        .filter(|id| id.generated_at().is_some_and(|at| at < cutoff))
        .collect();

    let missing = match state.store.ids_without_upload(&candidates).await {
        Ok(missing) => missing,
        Err(e) => {
            tracing::warn!(error = %e, "blob collector: cannot look up upload records");
            report.errors += 1;
            Vec::new()
        }
    };
    // Only ids that were asked about, whatever the store answers.
    let asked: HashSet<&UploadId> = candidates.iter().collect();
    let mut delete_failures = 0_u64;
    for id in missing.iter().filter(|id| asked.contains(id)) {
        match state.blobs.delete(id).await {
            Ok(()) | Err(BlobError::NotFound) => {
                report.deleted += 1;
                metrics::counter!("runproof_unreferenced_blobs_deleted_total").increment(1);
            }
            Err(e) => {
                if delete_failures == 0 {
                    tracing::warn!(error = %e, %id, "blob collector: cannot delete a blob");
                }
                delete_failures += 1;
            }
        }
    }
    report.errors += delete_failures;
    if report.deleted > 0 {
        tracing::info!(
            listed = report.listed,
            deleted = report.deleted,
            errors = report.errors,
            "deleted blobs that no upload references"
        );
    }
    if delete_failures > 1 {
        tracing::warn!(
            failures = delete_failures,
            "blob collector: blobs could not be deleted"
        );
    }
    report
}

/// `now - grace` as a system time; `None` when that is before 1970.
fn cutoff(now: UnixTime, grace: Duration) -> Option<SystemTime> {
    let now = UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(now.0).ok()?))?;
    now.checked_sub(grace).filter(|t| *t >= UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_is_now_minus_the_grace() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            cutoff(UnixTime(1_700_000_000), hour),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 - 3600))
        );
        assert_eq!(cutoff(UnixTime(3600), hour), Some(UNIX_EPOCH));
        assert_eq!(cutoff(UnixTime(3599), hour), None);
        assert_eq!(cutoff(UnixTime(-1), Duration::ZERO), None);
    }
}
