//! Room held in the pending quotas (webhook mode) while an upload's body is read.
//!
//! The quotas are checked and the room taken in one transaction that no other
//! reservation can interleave with (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction
//! advisory lock), so that concurrent uploads, on any replica, never take more than the
//! quotas allow. A live reservation counts in every sum until the upload is inserted (in
//! the insert's transaction, so that the upload's real size then counts instead), it is
//! refunded, or it expires (the process died while reading the body).
//!
//! The statements are written once, with `$n` parameters, which both backends accept.

use runproof_core::UnixTime;

use crate::model::{PendingRun, StoreError};
use crate::row::{sql_id, stored_count, workflow_run_columns};

/// A reservation's id: a random UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReservationId(pub String);

impl ReservationId {
    /// A fresh id.
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `[webhook_mode]` quotas a reservation is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingLimits {
    /// The most uploads that could still be approved per run attempt (see
    /// [`PendingReservation::countable`]).
    pub max_uploads_per_run: u64,
    /// The most bytes pending (and reserved) at once for one repository.
    pub max_pending_bytes_per_repository: u64,
    /// The most uploads pending (and reserved) at once, in all.
    pub max_pending_uploads: u64,
    /// The most bytes pending (and reserved) at once, in all.
    pub max_pending_bytes: u64,
}

/// Which uploads claiming the same attempt count against its quota, when the run is
/// known: those that could still be approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountableClaims {
    /// Only uploads (and reservations) naming this commit.
    pub head_sha: String,
    /// Only uploads (and reservations) received at or after this time, if given.
    pub not_before: Option<UnixTime>,
}

/// A request for room in the pending quotas, before an upload's body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingReservation {
    /// The reservation's id, named again by the insert that consumes it.
    pub id: ReservationId,
    /// The run the upload claims.
    pub claim: PendingRun,
    /// The body's declared length; `None` for a body of unknown length.
    pub declared_bytes: Option<u64>,
    /// The most one body may take: what is reserved for a body of unknown length, at
    /// most (then less when less room is left).
    pub max_bytes: u64,
    /// The quotas.
    pub limits: PendingLimits,
    /// Which of the attempt's uploads count against `max_uploads_per_run`: every
    /// pending or verified one when `None` (the run is unknown), else only those that
    /// could still be approved.
    pub countable: Option<CountableClaims>,
    /// When the reservation is taken (also what `not_before` is compared with).
    pub created_at: UnixTime,
    /// When it stops counting if nothing consumed or refunded it: after the body
    /// deadline.
    pub expires_at: UnixTime,
}

/// The answer to a [`PendingReservation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reserved {
    /// Room is held: the body may take at most `bytes`.
    Granted {
        /// Bytes reserved: the declared length, or the room left (at most
        /// `max_bytes`) for a body of unknown length.
        bytes: u64,
    },
    /// The attempt has `count` uploads (and reservations) that count against
    /// `max_uploads_per_run` already.
    RunFull {
        /// How many count.
        count: u64,
    },
    /// `max_pending_uploads` are pending or reserved already.
    TooManyUploads,
    /// The repository's pending (and reserved) bytes leave no room for the body.
    RepositoryFull {
        /// Bytes pending and reserved for the repository.
        pending_bytes: u64,
    },
    /// The pending (and reserved) bytes overall leave no room for the body.
    TooManyBytes,
}

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
    i64::try_from(bytes).map_err(|_| StoreError::Invalid(format!("{bytes} bytes")))
}

/// The recorded attempts of a run, highest first (`$1` repository id, `$2` run id, `$3`
/// the most rows).
pub(crate) const ATTEMPTS_SQL: &str = concat!(
    "SELECT ",
    workflow_run_columns!(),
    " FROM workflow_runs WHERE repository_id = $1 AND run_id = $2 \
     ORDER BY run_attempt DESC LIMIT $3"
);
