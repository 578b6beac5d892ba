//! The [`Store`] trait: what every database backend provides.

use async_trait::async_trait;
use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, RunIdentity, UnixTime};

use crate::console::{ConsoleCounts, PushFilter};
use crate::error::StoreError;
use crate::event::{
    EventCursor, EventFilter, EventHour, EventKind, EventOutcome, EventRecord, NewEvent,
};
use crate::github::{
    InstalledRepository, KnownInstallation, RepositoryBinding, WebhookDelivery, WebhookEffect,
    WorkflowRunRecord,
};
use crate::model::{
    Cursor, IdempotencyScope, ListFilter, NamespaceRecord, NewUpload, PendingRun, ReservationId,
    UploadId, UploadRecord, UploadStatus,
};
use crate::outbox::{NewPush, PushRecord, PushStatus};
use crate::repository_rules::RepositoryRules;
use crate::reservation::{PendingReservation, Reserved};
use crate::session::{NewSession, SessionAsk, SessionRecord, SessionUse};
use crate::write::{Committed, UploadWrite};

/// Upload records, the replay guard and GitHub App state.
///
/// Implementations must make [`Store::consume_jti`], [`Store::insert_upload`],
/// [`Store::apply_webhook`], [`Store::reserve_session`], [`Store::claim_pushes`] and
/// [`Store::resolve_pending`] atomic with respect to concurrent callers, including
/// callers in other processes.
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

    /// Inserts an upload record whose blob is already committed, and enqueues
    /// `upload.pushes` (status pending, due at `upload.created_at`) in the same
    /// transaction.
    ///
    /// When `upload.idempotency_key` is set and a record with the same key exists in the
    /// same [`IdempotencyScope`] (`upload.mode` and `upload.identity`), nothing is inserted
    /// (no push either) and `Err(StoreError::Conflict(existing))` is returned. The
    /// scope is stored with the record and never changes.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] as above, [`StoreError::Invalid`] when the upload id or a
    /// push id exists already or a value cannot be stored,
    /// [`StoreError::CommitUnknown`] when the answer to the commit was lost (the record may
    /// exist: look it up before deleting its blob), or [`StoreError`] when the database
    /// fails (then nothing was stored).
    async fn insert_upload(&self, upload: &NewUpload) -> Result<UploadRecord, StoreError>;

    /// Stores a batch of uploads in one transaction with one durable commit, each with
    /// the `jti` it spends, its pushes, the pending reservation it consumes and its
    /// inline body; returns each write's outcome, in order. The writes of a batch never
    /// fail each other: a spent `jti` is that write's [`Committed::Replayed`], an
    /// idempotency key met is its [`Committed::Existing`], an existing upload or
    /// push id its [`StoreError::Invalid`]. Used through [`crate::CommitPipeline`].
    ///
    /// # Errors
    /// [`StoreError`] when the batch as a whole failed (then nothing was stored), or
    /// [`StoreError::CommitUnknown`] when the commit's answer was lost.
    async fn commit_uploads(
        &self,
        writes: &[UploadWrite],
    ) -> Result<Vec<Result<Committed, StoreError>>, StoreError>;

    /// The body of upload `id` when it lives in the database ([`UploadWrite::body`]).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn inline_body(&self, id: &UploadId) -> Result<Option<Vec<u8>>, StoreError>;

    /// Deletes the inline body of upload `id`. Returns `true` when there was one.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn delete_inline_body(&self, id: &UploadId) -> Result<bool, StoreError>;

    /// Whether `jti` of `issuer` is recorded as spent (read only; see
    /// [`Store::consume_jti`] to spend one).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn jti_is_spent(&self, issuer: &str, jti: &str) -> Result<bool, StoreError>;

    /// The latest expiry of a spent `jti`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn latest_jti_expiry(&self) -> Result<Option<UnixTime>, StoreError>;

    /// The record with this id, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError>;

    /// The record inserted with this idempotency key in this scope, if any. A record of
    /// another scope is never returned, whatever its key.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn find_by_idempotency_key(
        &self,
        scope: &IdempotencyScope,
        key: &str,
    ) -> Result<Option<UploadRecord>, StoreError>;

    /// Records matching `filter`, newest first, at most `limit`, after `cursor`.
    /// Returns the page and the cursor of the next page, if there is one.
    ///
    /// `limit` is clamped to `1..=`[`crate::MAX_PAGE_SIZE`].
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn list_uploads(
        &self,
        filter: &ListFilter,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<UploadRecord>, Option<Cursor>), StoreError>;

    /// Verified uploads in the order they became verified, after position `after` (`0`:
    /// from the first), only those of `repository_id` when given, at most `limit`
    /// (clamped to `1..=`[`crate::MAX_PAGE_SIZE`]). Returns the page and the position to
    /// list after next: the last record's, or `after` itself when the page is empty.
    ///
    /// The transactions that make uploads verified (an insert, a batch,
    /// [`Store::resolve_pending`]) give them no position: each call first numbers the
    /// committed verified uploads that have none (up to a bound; the next call numbers
    /// the rest), in the order they were verified, then lists. Positions become visible
    /// in increasing order, also across concurrent calls and processes: a caller that
    /// always lists after the position it was last given sees every verified upload
    /// exactly once.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `after` or the repository id is beyond the database's
    /// integers, or [`StoreError`] when the database fails.
    async fn list_verified_after(
        &self,
        repository_id: Option<RepositoryId>,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<UploadRecord>, u64), StoreError>;

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
    /// [`crate::MAX_WEBHOOK_DELIVERY_ID_LEN`] or an id is beyond the database's range, or
    /// [`StoreError`] when the database fails.
    async fn apply_webhook(
        &self,
        delivery: &WebhookDelivery,
        effects: &[WebhookEffect],
    ) -> Result<bool, StoreError>;

    /// The installation listing `repository_id`, as webhooks described it, if any
    /// (including removed repositories and deleted installations, so that callers can
    /// tell "gone" from "never seen"). When several installations list it, an active
    /// binding is preferred, then the most recently updated.
    ///
    /// A repository of an installation with [`crate::RepositorySelection::All`] may have no
    /// binding; see [`Store::installation_for_account`].
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn repository_binding(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<RepositoryBinding>, StoreError>;

    /// The installation with this id, if known.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_installation(
        &self,
        id: InstallationId,
    ) -> Result<Option<KnownInstallation>, StoreError>;

    /// The installation on the account `account_id`, if any: one that is not deleted
    /// first, then the one whose state is the latest by GitHub's clock, then the one most
    /// recently received.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn installation_for_account(
        &self,
        account_id: OwnerId,
    ) -> Result<Option<KnownInstallation>, StoreError>;

    /// Installations that are not deleted, in id order, those after `after` when given,
    /// at most `limit` (clamped to `1..=`[`crate::MAX_PAGE_SIZE`]). The next page is
    /// after the last id returned.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `after` is beyond the database's integers, or
    /// [`StoreError`] when the database fails.
    async fn list_installations(
        &self,
        after: Option<InstallationId>,
        limit: u32,
    ) -> Result<Vec<KnownInstallation>, StoreError>;

    /// The repositories `installation` lists (not removed), in id order, those after
    /// `after` when given, at most `limit` (clamped to `1..=`[`crate::MAX_PAGE_SIZE`]).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when an id is beyond the database's integers, or
    /// [`StoreError`] when the database fails.
    async fn installation_repositories(
        &self,
        installation: InstallationId,
        after: Option<RepositoryId>,
        limit: u32,
    ) -> Result<Vec<InstalledRepository>, StoreError>;

    /// Of `ids`, those that have trust rules stored (an empty layer included: see
    /// [`Store::repository_rules`]), in id order, each once. Meant for a page of at
    /// most [`crate::MAX_PAGE_SIZE`] ids; more are looked up in batches of that size.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn repositories_with_rules(
        &self,
        ids: &[RepositoryId],
    ) -> Result<Vec<RepositoryId>, StoreError>;

    /// The counts the console's overview shows: pending uploads, failed and pending
    /// pushes, installations not deleted, and the repositories they list (not removed).
    /// Each is read from an index.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn console_counts(&self) -> Result<ConsoleCounts, StoreError>;

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

    /// Forgets workflow runs last described by a webhook received before `before` (the
    /// webhook mode keeps recent runs only). Returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn purge_workflow_runs(&self, before: UnixTime) -> Result<u64, StoreError>;

    /// Forgets webhook delivery ids received before `before` (so a redelivery after that is
    /// applied again). Returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn purge_webhook_deliveries(&self, before: UnixTime) -> Result<u64, StoreError>;

    /// Pending uploads that claim this run attempt (webhook mode), oldest first, with the
    /// run each claims (any sha: the caller compares it with the webhook's).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn pending_uploads_for_run(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
        run_attempt: u32,
    ) -> Result<Vec<(UploadRecord, PendingRun)>, StoreError>;

    /// Resolves a pending upload, once: sets its status, its identity (when given, also
    /// its repository id), its reason, and its verification time (`now` when `status`
    /// is [`UploadStatus::Verified`]), and enqueues `pushes` (due at `now`), in one
    /// transaction.
    ///
    /// Returns `true` when it changed the upload; `false` when there is no such upload
    /// or it is no longer pending (already resolved: nothing changes, nothing is
    /// enqueued). Of concurrent calls for one upload, at most one returns `true`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `status` is [`UploadStatus::Pending`], a push id
    /// exists already or a value cannot be stored, or [`StoreError`] when the database
    /// fails (then nothing changed).
    async fn resolve_pending(
        &self,
        id: &UploadId,
        status: UploadStatus,
        identity: Option<&RunIdentity>,
        reason: Option<&str>,
        now: UnixTime,
        pushes: &[NewPush],
    ) -> Result<bool, StoreError>;

    /// At most `limit` uploads, rejected or expired, whose blob is not yet marked
    /// deleted ([`Store::mark_blob_deleted`]), oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn blobs_to_delete(&self, limit: u32) -> Result<Vec<UploadId>, StoreError>;

    /// Records that the blob of upload `id` is deleted (no effect when there is no such
    /// upload).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn mark_blob_deleted(&self, id: &UploadId) -> Result<(), StoreError>;

    /// Of `ids`, those that no upload record has, whatever its status, in the order
    /// given: the blobs among them belong to no upload. Any number of ids may be passed;
    /// they are looked up in bounded batches.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn ids_without_upload(&self, ids: &[UploadId]) -> Result<Vec<UploadId>, StoreError>;

    /// How many uploads are pending for `repository_id` (as their
    /// [`NewUpload::pending_run`] names it), and their total size in bytes.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn pending_usage(&self, repository_id: RepositoryId) -> Result<(u64, u64), StoreError>;

    /// How many uploads are pending in all, and their total size in bytes.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn pending_total(&self) -> Result<(u64, u64), StoreError>;

    /// How many uploads, whatever their status, claimed run `run_id` of
    /// `repository_id` (any attempt) through [`NewUpload::pending_run`].
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn run_upload_count(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
    ) -> Result<u64, StoreError>;

    /// Reserves room in the pending quotas for an upload (webhook mode) before its body
    /// is read, in one atomic step: of concurrent calls, on any replica, never more than
    /// the quotas allow are granted. Reservations that expired (before
    /// `reservation.created_at`) are forgotten first.
    ///
    /// The sums are those of pending uploads plus live reservations: uploads and bytes
    /// overall, bytes of the claimed repository, and, for the claimed attempt, uploads
    /// (pending or verified) and reservations that match
    /// [`PendingReservation::countable`]. A granted reservation counts until
    /// [`Store::insert_upload`] consumes it ([`NewUpload::pending_reservation`], in the
    /// insert's transaction), [`Store::release_pending`] refunds it, or it expires.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when an id or a size is beyond the database's integers,
    /// [`StoreError::Invalid`] when a reservation with this id exists, or [`StoreError`]
    /// when the database fails (then nothing is reserved).
    async fn reserve_pending(
        &self,
        reservation: &PendingReservation,
    ) -> Result<Reserved, StoreError>;

    /// Refunds a reservation no upload consumed (no effect when it is gone: consumed,
    /// refunded or expired).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn release_pending(&self, id: &ReservationId) -> Result<(), StoreError>;

    /// The attempts of a run as the latest webhooks described them, highest attempt
    /// first, at most [`crate::MAX_RUN_ATTEMPTS_LISTED`].
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn workflow_run_attempts(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError>;

    /// Stores a new session.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when a session with this token hash exists or a value
    /// cannot be stored, or [`StoreError`] when the database fails.
    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError>;

    /// Reserves one upload and `ask`'s bytes from the session's budget, in one atomic
    /// step: of concurrent calls, no more than `max_uploads` uploads and `max_bytes` bytes
    /// in all are ever reserved. What an upload does not use goes back with
    /// [`Store::release_session`].
    ///
    /// Granted when the session exists, is not revoked, expires after `now`, has an upload
    /// left and the bytes `ask` needs; otherwise says why not (absent or revoked:
    /// [`SessionUse::Unknown`]; then expired; then exhausted; then short of bytes).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn reserve_session(
        &self,
        token_hash: &str,
        now: UnixTime,
        ask: SessionAsk,
    ) -> Result<SessionUse, StoreError>;

    /// Gives back `uploads` uploads and `bytes` bytes reserved by
    /// [`Store::reserve_session`] and not used (no effect when there is no such session;
    /// the counts never go below zero).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn release_session(
        &self,
        token_hash: &str,
        uploads: u64,
        bytes: u64,
    ) -> Result<(), StoreError>;

    /// Revokes a session. Returns `true` when it existed and was not yet revoked.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn revoke_session(&self, token_hash: &str) -> Result<bool, StoreError>;

    /// The session with this token hash, if any (revoked and expired ones included).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn get_session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError>;

    /// Deletes sessions that expired before `before`. Returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn purge_sessions(&self, before: UnixTime) -> Result<u64, StoreError>;

    /// Stores a console sign-in session, keyed by the hash of its cookie (the cookie
    /// itself is never stored), valid from `created_at` until `expires_at`.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when a session with this hash exists, or [`StoreError`]
    /// when the database fails.
    async fn create_console_session(
        &self,
        token_hash: &str,
        created_at: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError>;

    /// Whether the console session with this hash exists and is live at `now`: `false`
    /// from its `expires_at` on, and once deleted.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn console_session_valid(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Deletes the console session with this hash (a sign-out). Returns `true` when
    /// there was one.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn delete_console_session(&self, token_hash: &str) -> Result<bool, StoreError>;

    /// Deletes the console sessions expired at `now` (those
    /// [`Store::console_session_valid`] no longer accepts). Returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn purge_console_sessions(&self, now: UnixTime) -> Result<u64, StoreError>;

    /// Claims at most `limit` due pushes (pending, `next_attempt_at <= now`, no lease
    /// running at `now`) for `lease_seconds`, oldest due first: until the lease ends no
    /// other caller claims them. Atomic: two concurrent callers never get the same
    /// push. A `limit` of 0 claims nothing; larger limits are clamped to
    /// [`crate::MAX_PAGE_SIZE`].
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn claim_pushes(
        &self,
        now: UnixTime,
        lease_seconds: i64,
        limit: u32,
    ) -> Result<Vec<PushRecord>, StoreError>;

    /// Records a successful attempt: the push becomes delivered, its lease ends and
    /// its attempts grow by one (no effect when there is no such push).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn complete_push(&self, id: &str, now: UnixTime) -> Result<(), StoreError>;

    /// Records a failed attempt: attempts grow by one, `error` (cut to
    /// [`crate::MAX_PUSH_ERROR_CHARS`]) is kept and the lease ends. With
    /// `Some(next_attempt_at)` the push stays pending until then; with `None` it
    /// becomes failed. No effect when there is no such push.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn fail_push(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<(), StoreError>;

    /// Pushes (with this status, if given), newest first, at most `limit` (clamped
    /// to `1..=`[`crate::MAX_PAGE_SIZE`]).
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn list_pushes(
        &self,
        status: Option<PushStatus>,
        limit: u32,
    ) -> Result<Vec<PushRecord>, StoreError>;

    /// Pushes matching `filter`, newest first (by enqueue time, then id), at most
    /// `limit` (clamped to `1..=`[`crate::MAX_PAGE_SIZE`]), those after the push whose id
    /// is `before` when given. Returns the page and the cursor of the next page, if there
    /// is one: the id of the page's last push, to pass as `before`. A cursor naming no
    /// push gives an empty page. Each filter reads an index, in the listing's order.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a stored push no longer decodes, or [`StoreError`]
    /// when the database fails.
    async fn list_pushes_page(
        &self,
        filter: &PushFilter,
        limit: u32,
        before: Option<&str>,
    ) -> Result<(Vec<PushRecord>, Option<String>), StoreError>;

    /// Makes a failed or pending push pending and due at `now`, its attempts
    /// unchanged (a running lease is kept, so an attempt in flight is not doubled).
    /// Returns the push as it then is (a delivered one unchanged), or `None` when
    /// there is no such id.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn retry_push(&self, id: &str, now: UnixTime) -> Result<Option<PushRecord>, StoreError>;

    /// A channel that receives `()` when pushes may have been enqueued by another
    /// process, so that a push worker can claim at once rather than at its next
    /// poll; `None` when the backend cannot tell (the worker polls). Wake-ups may be
    /// coalesced, spurious or (across reconnections) lost: they never replace polling.
    async fn outbox_notifications(&self) -> Option<tokio::sync::mpsc::Receiver<()>>;

    /// The namespace this database records (see [`crate::bind_namespace`]), if any.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn namespace(&self) -> Result<Option<NamespaceRecord>, StoreError>;

    /// Records the namespace `id`, bound to `blob_store`, unless another namespace is
    /// recorded; when namespace `id` is, records `blob_store` as its blob store. Returns
    /// the namespace recorded afterwards, whose id the caller compares with `id`: a
    /// recorded id never changes. Atomic.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn bind_namespace(
        &self,
        id: &str,
        blob_store: &str,
        now: UnixTime,
    ) -> Result<NamespaceRecord, StoreError>;

    /// The trust rules stored for `repository_id` (set through the API), if any. `None`
    /// means none were ever stored or they were deleted; `Some` with an empty list means an
    /// empty layer was stored. Neither constrains a run.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the stored rules no longer decode, or [`StoreError`]
    /// when the database fails.
    async fn repository_rules(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<RepositoryRules>, StoreError>;

    /// Replaces the trust rules of `repository_id` with `rules` (already validated by the
    /// caller), stamped `now`, in one atomic step; returns what is stored.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the id is beyond the database's integers or the rules
    /// cannot be encoded, or [`StoreError`] when the database fails (then nothing changed).
    async fn put_repository_rules(
        &self,
        repository_id: RepositoryId,
        rules: &[runproof_core::rules::TrustRule],
        now: UnixTime,
    ) -> Result<RepositoryRules, StoreError>;

    /// Deletes the trust rules of `repository_id`. Returns `true` when there were some.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn delete_repository_rules(
        &self,
        repository_id: RepositoryId,
    ) -> Result<bool, StoreError>;

    /// Records `events` in one transaction, in order (later ones get larger ids), and
    /// counts them in the hourly rollup [`Store::event_hours`] reads, in the same
    /// transaction. Text fields are cut to [`crate::MAX_EVENT_TEXT_CHARS`] characters,
    /// and mismatches larger than [`crate::MAX_EVENT_MISMATCHES_BYTES`] are dropped.
    /// Returns how many.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when an id is beyond the database's integers, or
    /// [`StoreError`] when the database fails (then none was recorded).
    async fn insert_events(&self, events: &[NewEvent]) -> Result<u64, StoreError>;

    /// Events matching `filter`, newest first, at most `limit` (clamped to
    /// `1..=`[`crate::MAX_PAGE_SIZE`]), after `cursor`. Returns the page and the cursor of
    /// the next page, if there is one.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a stored event no longer decodes, or [`StoreError`]
    /// when the database fails.
    async fn list_events(
        &self,
        filter: &EventFilter,
        limit: u32,
        cursor: Option<EventCursor>,
    ) -> Result<(Vec<EventRecord>, Option<EventCursor>), StoreError>;

    /// Deletes events that happened before `before`, then the oldest beyond the newest
    /// `max_rows`. Returns how many events.
    ///
    /// The hourly rollup loses the hours that ended by `before`, and only those: an
    /// event removed by the row bound is still counted by [`Store::event_hours`] until
    /// its hour ages out.
    ///
    /// # Errors
    /// [`StoreError`] when the database fails.
    async fn purge_events(&self, before: UnixTime, max_rows: u64) -> Result<u64, StoreError>;

    /// How many events of `kind` with `outcome` happened in each hour from the one
    /// `since` falls in, by mode and code: one row per hour, mode and code that had any,
    /// ordered by hour (then mode, then code). Read from the rollup
    /// [`Store::insert_events`] keeps, never by counting events.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a stored count is negative, or [`StoreError`] when
    /// the database fails.
    async fn event_hours(
        &self,
        since: UnixTime,
        kind: EventKind,
        outcome: EventOutcome,
    ) -> Result<Vec<EventHour>, StoreError>;

    /// What a chart draws: the counts of [`Store::event_hours`] summed by `split` (mode
    /// or code) into buckets of `bucket_seconds` (a multiple of 3600, at least 3600; each
    /// bucket starts at a multiple of it since the Unix epoch), from the hour `since`
    /// falls in, ordered by bucket then label. Each row's `hour` is its bucket's start.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when `bucket_seconds` is not a positive multiple of 3600,
    /// [`StoreError::Corrupt`] when a stored count is negative, or [`StoreError`] when the
    /// database fails.
    async fn event_counts(
        &self,
        since: UnixTime,
        kind: EventKind,
        outcome: EventOutcome,
        split: crate::EventSplit,
        bucket_seconds: u32,
    ) -> Result<Vec<EventHour>, StoreError>;

    /// How many transactions that write can usefully run at once: the commit
    /// pipeline's writers. 1 unless a backend overlaps its writers' commits.
    fn parallel_writes(&self) -> usize {
        1
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`StoreError`] when it does not.
    async fn ping(&self) -> Result<(), StoreError>;
}
