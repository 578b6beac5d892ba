//! Room held in the pending quotas (webhook mode) while an upload's body is read.
//!
//! The quotas are checked and the room taken in one transaction that no other
//! reservation can interleave with (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a transaction
//! advisory lock), so that concurrent uploads, on any replica, never take more than the
//! quotas allow. A live reservation counts in every sum until the upload is inserted (in
//! the insert's transaction, so that the upload's real size then counts instead), it is
//! refunded, or it expires (the process died while reading the body).
//!
//! The statements are in `sql/reservation.rs`.

use runproof_core::UnixTime;

use crate::model::{PendingRun, ReservationId};

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
