//! Persistence for runproof.
//!
//! Two concerns live here, each behind a trait so that other backends can follow
//! without changing callers:
//! - [`Store`]: upload records and the replay guard (used `jti`s), in SQLite by default.
//! - [`BlobStore`]: upload bodies, streamed in and out, on the local filesystem by
//!   default. A blob becomes visible only when complete: bytes go to a temporary file,
//!   which is fsynced and renamed into place on commit.
//!
//! What it does not do: verify anything. Callers hand it values the core has verified.
//!
//! Threat model in brief: uniqueness that guards security (a `jti` used once, an
//! idempotency key) is enforced by the database, atomically, so it holds under
//! concurrency and across processes sharing the database.
#![forbid(unsafe_code)]

mod blob;
mod local;
mod model;
mod row;
mod sqlite;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use blob::{BlobError, BlobStore, BlobWriter, LocalBlobStore, ReadStream};
pub use model::{
    Cursor, ListFilter, Mode, NewUpload, StoreError, UploadId, UploadRecord, UploadStatus,
};
pub use sqlite::{SqliteOptions, SqliteStore};

use async_trait::async_trait;
use runproof_core::UnixTime;

/// The most records one [`Store::list_uploads`] call returns; larger limits are clamped.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Upload records and the replay guard.
///
/// Implementations must make [`Store::consume_jti`] and [`Store::insert_upload`] atomic
/// with respect to concurrent callers, including callers in other processes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records `jti` of `issuer` as used until `expires_at`.
    ///
    /// Returns `true` when it was unused (the caller may proceed), `false` when it was
    /// already recorded (a replay). Atomic: of two concurrent calls with the same pair,
    /// exactly one gets `true`.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn consume_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Deletes replay-guard entries whose `expires_at` is before `now`. Returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn purge_expired_jtis(&self, now: UnixTime) -> Result<u64, StoreError>;

    /// Inserts an upload record whose blob is already committed.
    ///
    /// When `upload.idempotency_key` is set and a record with the same repository id and
    /// key exists, nothing is inserted and `Err(StoreError::Conflict(existing))` is returned.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] as above, or [`StoreError`] when the database fails.
    async fn insert_upload(&self, upload: &NewUpload) -> Result<UploadRecord, StoreError>;

    /// The record with this id, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError>;

    /// A record by repository id and idempotency key, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn find_by_idempotency_key(
        &self,
        repository_id: runproof_core::RepositoryId,
        key: &str,
    ) -> Result<Option<UploadRecord>, StoreError>;

    /// Records matching `filter`, newest first, at most `limit`, after `cursor`.
    /// Returns the page and the cursor of the next page, if there is one.
    ///
    /// `limit` is clamped to `1..=`[`MAX_PAGE_SIZE`].
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn list_uploads(
        &self,
        filter: &ListFilter,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<UploadRecord>, Option<Cursor>), StoreError>;

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`StoreError`] when it does not.
    async fn ping(&self) -> Result<(), StoreError>;
}
