//! The statements and checks of pending reservations (see [`crate::reservation`]),
//! written once, with `$n` parameters, which both backends accept.

use crate::error::{Invalid, StoreError};
use crate::reservation::{PendingReservation, Reserved};

use super::row::{sql_id, stored_count, workflow_run_columns};

/// The sums a reservation is checked against, in one statement (so one snapshot):
/// countable uploads of the attempt, pending uploads overall, pending bytes of the
/// repository, pending bytes overall, each with the live reservations added.
///
/// Parameters: `$1` repository id, `$2` run id, `$3` attempt, `$4` the commit counted
/// (or NULL: any), `$5` received since (or NULL: any time).
pub(crate) const SUMS_SQL: &str = "SELECT \
    (SELECT COUNT(*) FROM uploads WHERE pending_repository_id = $1 AND pending_run_id = $2 \
     AND pending_run_attempt = $3 AND status IN ('pending', 'verified') \
     AND ($4 IS NULL OR pending_head_sha = $4) AND ($5 IS NULL OR created_at >= $5)) \
    + (SELECT COUNT(*) FROM pending_reservations WHERE repository_id = $1 AND run_id = $2 \
     AND run_attempt = $3 AND ($4 IS NULL OR head_sha = $4) \
     AND ($5 IS NULL OR created_at >= $5)), \
    (SELECT COUNT(*) FROM uploads WHERE status = 'pending') \
    + (SELECT COUNT(*) FROM pending_reservations), \
    (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM uploads \
     WHERE pending_repository_id = $1 AND status = 'pending') \
    + (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM pending_reservations \
     WHERE repository_id = $1), \
    (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM uploads WHERE status = 'pending') \
    + (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM pending_reservations)";

/// Forgets reservations that expired (`$1`: now).
pub(crate) const PURGE_SQL: &str = "DELETE FROM pending_reservations WHERE expires_at <= $1";

/// Records a reservation.
pub(crate) const INSERT_SQL: &str = "INSERT INTO pending_reservations \
    (id, repository_id, run_id, run_attempt, head_sha, bytes, created_at, expires_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// Deletes a reservation by id (consumed or refunded).
pub(crate) const RELEASE_SQL: &str = "DELETE FROM pending_reservations WHERE id = $1";

/// A reservation's values as the database stores them.
pub(crate) struct ReservationParams {
    pub(crate) repository_id: i64,
    pub(crate) run_id: i64,
    pub(crate) run_attempt: i64,
    /// The commit counted, if narrowed.
    pub(crate) counted_sha: Option<String>,
    /// Received since, if narrowed.
    pub(crate) counted_since: Option<i64>,
}

impl ReservationParams {
    /// # Errors
    /// [`StoreError::Invalid`] when an id is beyond the database's integers.
    pub(crate) fn new(r: &PendingReservation) -> Result<Self, StoreError> {
        Ok(Self {
            repository_id: sql_id(r.claim.repository_id.get())?,
            run_id: sql_id(r.claim.run_id.get())?,
            run_attempt: i64::from(r.claim.run_attempt),
            counted_sha: r.countable.as_ref().map(|c| c.head_sha.clone()),
            counted_since: r.countable.as_ref().and_then(|c| c.not_before).map(|t| t.0),
        })
    }
}

/// Checks the sums (as [`SUMS_SQL`] returns them) against the request: the room to
/// reserve, or why there is none.
///
/// # Errors
/// [`StoreError::Corrupt`] when a sum is negative.
pub(crate) fn decide(
    r: &PendingReservation,
    sums: (i64, i64, i64, i64),
) -> Result<Reserved, StoreError> {
    let (run_count, uploads, repo_bytes, bytes) = (
        stored_count(sums.0, "count")?,
        stored_count(sums.1, "count")?,
        stored_count(sums.2, "size")?,
        stored_count(sums.3, "size")?,
    );
    let limits = &r.limits;
    if run_count >= limits.max_uploads_per_run {
        return Ok(Reserved::RunFull { count: run_count });
    }
    if uploads >= limits.max_pending_uploads {
        return Ok(Reserved::TooManyUploads);
    }
    let room_repo = limits
        .max_pending_bytes_per_repository
        .saturating_sub(repo_bytes);
    let room_total = limits.max_pending_bytes.saturating_sub(bytes);
    if room_repo == 0 || r.declared_bytes.is_some_and(|len| len > room_repo) {
        return Ok(Reserved::RepositoryFull {
            pending_bytes: repo_bytes,
        });
    }
    if room_total == 0 || r.declared_bytes.is_some_and(|len| len > room_total) {
        return Ok(Reserved::TooManyBytes);
    }
    let bytes = r
        .declared_bytes
        .unwrap_or_else(|| r.max_bytes.min(room_repo).min(room_total));
    Ok(Reserved::Granted { bytes })
}

/// The bytes granted, as the database stores them.
///
/// # Errors
/// [`StoreError::Invalid`] when beyond the database's integers.
pub(crate) fn sql_bytes(bytes: u64) -> Result<i64, StoreError> {
    i64::try_from(bytes).map_err(|_| {
        StoreError::Invalid(Invalid::OutOfRange {
            what: "bytes",
            value: bytes,
        })
    })
}

/// The recorded attempts of a run, highest first (`$1` repository id, `$2` run id, `$3`
/// the most rows).
pub(crate) const ATTEMPTS_SQL: &str = concat!(
    "SELECT ",
    workflow_run_columns!(),
    " FROM workflow_runs WHERE repository_id = $1 AND run_id = $2 \
     ORDER BY run_attempt DESC LIMIT $3"
);
