//! Persistence for runproof.
//!
//! Two concerns live here, each behind a trait so that other backends can follow
//! without changing callers:
//! - [`Store`]: upload records, the replay guard (used `jti`s), and the GitHub App state
//!   learnt from webhooks (installations, delivery ids, workflow runs), in SQLite by
//!   default.
//! - [`BlobStore`]: upload bodies, streamed in and out, on the local filesystem by
//!   default. A blob becomes visible only when complete: bytes go to a temporary file,
//!   which is fsynced and renamed into place on commit.
//!
//! What it does not do: verify anything. Callers hand it values the core has verified.
//!
//! Threat model in brief: uniqueness that guards security (a `jti` used once, an
//! idempotency key, a webhook delivery id) is enforced by the database, atomically, so it
//! holds under concurrency and across processes sharing the database.
#![forbid(unsafe_code)]

mod blob;
mod github;
mod local;
mod model;
mod row;
mod sqlite;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use blob::{BlobError, BlobStore, BlobWriter, LocalBlobStore, ReadStream};
pub use github::{
    Delivery, Installation, InstalledRepository, MAX_DELIVERY_ID_LEN, RepositoryBinding,
    RepositorySelection, WebhookEffect, WorkflowRunRecord,
};
pub use model::{
    Cursor, ListFilter, Mode, NewUpload, StoreError, UploadId, UploadRecord, UploadStatus,
};
pub use sqlite::{SqliteOptions, SqliteStore};

use async_trait::async_trait;
use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, UnixTime};

/// The most records one [`Store::list_uploads`] call returns; larger limits are clamped.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Upload records, the replay guard and GitHub App state.
///
/// Implementations must make [`Store::consume_jti`], [`Store::insert_upload`] and
/// [`Store::apply_webhook`] atomic with respect to concurrent callers, including callers
/// in other processes.
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
        repository_id: RepositoryId,
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

    /// Applies a webhook delivery's effects once, in one transaction.
    ///
    /// Records `delivery.id`; when it was already recorded (a redelivery), applies
    /// nothing and returns `false`. Otherwise applies `effects` in order, commits and
    /// returns `true`. Atomic: of concurrent calls with the same delivery id exactly one
    /// returns `true`, and when any effect fails nothing is recorded, so the delivery
    /// may be retried. Rows the effects touch get `delivery.received_at` as their
    /// update time.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the delivery id is empty or longer than
    /// [`MAX_DELIVERY_ID_LEN`] or an id is beyond the database's range, or
    /// [`StoreError`] when the database fails.
    async fn apply_webhook(
        &self,
        delivery: &Delivery,
        effects: &[WebhookEffect],
    ) -> Result<bool, StoreError>;

    /// The installation listing `repository_id`, as webhooks described it, if any
    /// (including removed repositories and deleted installations, so that callers can
    /// tell "gone" from "never seen"). When several installations list it, an active
    /// binding is preferred, then the most recently updated.
    ///
    /// A repository of an installation with [`RepositorySelection::All`] may have no
    /// binding; see [`Store::installation_for_account`].
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn repository_binding(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<RepositoryBinding>, StoreError>;

    /// The installation with this id and whether it was deleted, if known.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_installation(
        &self,
        id: InstallationId,
    ) -> Result<Option<(Installation, bool)>, StoreError>;

    /// The most recently updated installation on the account `account_id` and whether it
    /// was deleted, if any (at the same update time, one that is not deleted).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn installation_for_account(
        &self,
        account_id: OwnerId,
    ) -> Result<Option<(Installation, bool)>, StoreError>;

    /// The workflow run attempt, as the latest webhook described it, if known.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_workflow_run(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
        run_attempt: u32,
    ) -> Result<Option<WorkflowRunRecord>, StoreError>;

    /// Forgets delivery ids received before `before` (so a redelivery after that is
    /// applied again). Returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn purge_deliveries(&self, before: UnixTime) -> Result<u64, StoreError>;

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`StoreError`] when it does not.
    async fn ping(&self) -> Result<(), StoreError>;
}
