//! The [`Store`] of both SQL backends: every statement written once.
//!
//! How the guarantees of [`Store`] are met, on either backend:
//! - Uniqueness (`jti`, push id, idempotency key, webhook delivery id) is enforced by
//!   unique indexes and `INSERT … ON CONFLICT DO NOTHING`. On PostgreSQL, under READ
//!   COMMITTED, such an insert waits for a concurrent insert of the same key to commit or
//!   roll back before deciding, so it holds across connections, pools and processes.
//! - A transaction that writes begins with [`Pool::begin_write`]: on SQLite it holds the
//!   database's only write lock from the start, so what it reads cannot change before it
//!   writes; on PostgreSQL, row locks ([`Dialect::lock_row`]), `SKIP LOCKED`
//!   claims and an advisory lock for pending reservations order concurrent writers.
//! - Enqueued pushes are announced at commit ([`announce_pushes`]), so
//!   that PostgreSQL listeners wake at once instead of at their next poll.

use std::fmt::Write as _;

use async_trait::async_trait;
use runproof_core::rules::TrustRule;
use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, RunIdentity, UnixTime};
use tokio::sync::mpsc;

use super::dialect::Dialect;
use super::exec::{Pool, Tx, db_error, is_unique_violation, query, query_built};
use super::github;
use super::idempotency::upload_by_idempotency_key;
use super::notify::{announce_pushes, outbox_wakeups};
use super::reservation::{self, ReservationParams};
use super::row::{
    BindingRow, GrantRow, InstallationRow, PendingUploadRow, PushRow, RELEASE_SESSION_SQL,
    RESERVE_SESSION_SQL, Resolution, SessionParams, SessionRow, UploadParams, UploadRow,
    WorkflowRunRow, clamp_limit, installation_columns, into_pushes, into_upload_ids, payload_json,
    push_columns, session_columns, sql_id, stored_count, truncate_error, upload_columns,
    upload_insert_columns, workflow_run_columns,
};
use crate::error::{Invalid, StoreError};
use crate::github::{
    KnownInstallation, RepositoryBinding, WebhookDelivery, WebhookEffect, WorkflowRunRecord,
};
use crate::limits::{ID_BATCH, MAX_RUN_ATTEMPTS_LISTED};
use crate::model::{
    Cursor, IdempotencyScope, ListFilter, NamespaceRecord, NewUpload, PendingRun, ReservationId,
    UploadId, UploadRecord, UploadStatus,
};
use crate::namespace;
use crate::outbox::{NewPush, PushRecord, PushStatus};
use crate::repository_rules::RepositoryRules;
use crate::reservation::{PendingReservation, Reserved};
use crate::session::{NewSession, SessionAsk, SessionRecord, SessionUse, refusal};
use crate::store::Store;
use crate::write::{Committed, UploadWrite};

/// The columns of a push, qualified for `UPDATE … FROM` (same order as
/// `push_columns!`).
macro_rules! qualified_push_columns {
    () => {
        "outbox.id, outbox.event, outbox.upload_id, outbox.payload_json, outbox.status, \
         outbox.attempts, outbox.last_error, outbox.created_at, outbox.next_attempt_at"
    };
}

/// A [`Store`] in SQLite ([`crate::SqliteStore::open`]: one file in WAL mode, or an
/// in-memory database for tests) or PostgreSQL ([`crate::PostgresStore::connect`]: one
/// database, or one schema of it, shared by every replica).
///
/// Durability: on SQLite, WAL with `synchronous = FULL`, so an upload acknowledged after
/// [`Store::insert_upload`] returns survives a crash or power loss; on PostgreSQL, the
/// server's: a statement returns once its transaction is committed.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct SqlStore {
    /// The connections, of either backend.
    pub(crate) pool: Pool,
}

impl SqlStore {
    /// A store over `pool`, whose database is migrated.
    pub(crate) fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// Closes the pool, waiting for connections in use to be returned (PostgreSQL's
    /// outbox listeners stop and return theirs).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `sql`, a `DELETE` of rows older than `$1`, with `before`; returns how many
    /// rows went.
    async fn delete_before(&self, sql: &'static str, before: UnixTime) -> Result<u64, StoreError> {
        query(sql)
            .bind(before.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)
    }
}

/// Each push's payload as stored, encoded before any transaction starts.
fn push_payloads(pushes: &[NewPush]) -> Result<Vec<String>, StoreError> {
    pushes.iter().map(payload_json).collect()
}

/// Enqueues `pushes` (with their encoded `payloads`) as pending and due at
/// `created_at`, inside the caller's transaction, and announces them.
async fn insert_pushes(
    tx: &mut Tx,
    pushes: &[NewPush],
    payloads: &[String],
    created_at: UnixTime,
) -> Result<(), StoreError> {
    if pushes.is_empty() {
        return Ok(());
    }
    for (push, payload) in pushes.iter().zip(payloads) {
        let done = query(
            "INSERT INTO outbox (id, event, upload_id, payload_json, status, attempts, \
             last_error, created_at, next_attempt_at, locked_until, updated_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, NULL, $5, $5, NULL, $5)",
        )
        .bind(&push.id)
        .bind(&push.event)
        .bind(&push.upload_id)
        .bind(payload)
        .bind(created_at.0)
        .execute(&mut *tx)
        .await;
        match done {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Invalid(Invalid::Exists {
                    what: "delivery",
                    key: push.id.clone(),
                }));
            }
            Err(e) => return Err(db_error(e)),
        }
    }
    announce_pushes(tx).await
}

/// Builds the listing statement from fixed fragments; every value is bound. Each filter
/// alone reads an index leading with its column and then the id (`uploads_status_id`,
/// `uploads_repository_id`, `uploads_mode_id`, `uploads_created_at`), the others being
/// checked on the rows it finds.
fn list_sql(filter: &ListFilter, with_cursor: bool) -> String {
    let mut sql = String::from(concat!(
        "SELECT ",
        upload_columns!(),
        " FROM uploads WHERE TRUE"
    ));
    let mut param = 0;
    let mut next = || {
        param += 1;
        param
    };
    if filter.status.is_some() {
        let _ = write!(sql, " AND status = ${}", next());
    }
    if filter.repository_id.is_some() {
        let _ = write!(sql, " AND repository_id = ${}", next());
    }
    if filter.mode.is_some() {
        let _ = write!(sql, " AND mode = ${}", next());
    }
    if filter.since.is_some() {
        let _ = write!(sql, " AND created_at >= ${}", next());
    }
    if filter.until.is_some() {
        let _ = write!(sql, " AND created_at < ${}", next());
    }
    if with_cursor {
        let _ = write!(sql, " AND id < ${}", next());
    }
    let _ = write!(sql, " ORDER BY id DESC LIMIT ${}", next());
    sql
}

/// The uploads whose blob is still to delete (`$1`: the most), spelt as the partial index
/// `uploads_blobs_to_delete` is, so that it serves the query.
fn blobs_to_delete_sql(dialect: &Dialect) -> String {
    format!(
        "SELECT id FROM uploads WHERE blob_deleted = {} \
         AND status IN ('rejected', 'expired') ORDER BY id LIMIT $1",
        dialect.false_literal
    )
}

/// A count or a byte total as a SQL integer (beyond `i64::MAX`: `i64::MAX`, which no
/// count reaches).
fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqlStore {
    async fn consume_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let inserted = query(
            "INSERT INTO used_jtis (issuer, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer, jti) DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at.0)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(inserted == 1)
    }

    async fn purge_expired_jtis(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.delete_before("DELETE FROM used_jtis WHERE expires_at < $1", now)
            .await
    }

    async fn insert_upload(&self, upload: &NewUpload) -> Result<UploadRecord, StoreError> {
        let params = UploadParams::new(upload)?;
        let payloads = push_payloads(&upload.pushes)?;
        let mut tx = self.pool.begin_write().await?;
        let insert = query(concat!(
            "INSERT INTO uploads (",
            upload_insert_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, $18) RETURNING ",
            upload_columns!()
        ));
        let inserted = params
            .bind(insert, upload)
            .fetch_one::<UploadRow>(&mut tx)
            .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await?;
                // A concurrent insert with the same key has committed by now (PostgreSQL
                // raises the violation only once it has), so the lookup finds it.
                if let Some(key) = &upload.idempotency_key {
                    let scope = IdempotencyScope::new(upload.mode, &upload.identity);
                    if let Some(existing) = self.find_by_idempotency_key(&scope, key).await? {
                        return Err(StoreError::Conflict(Box::new(existing)));
                    }
                }
                // Not the idempotency key, so the id itself: a caller bug, not an outage.
                return Err(StoreError::Invalid(Invalid::Exists {
                    what: "upload",
                    key: upload.id.to_string(),
                }));
            }
            Err(e) => return Err(db_error(e)),
        };
        let record = row.into_record()?;
        insert_pushes(&mut tx, &upload.pushes, &payloads, upload.created_at).await?;
        if let Some(id) = &upload.pending_reservation {
            // In the insert's transaction, so that a reservation's sums see either the
            // reservation or the upload, never neither.
            query(reservation::RELEASE_SQL)
                .bind(id.as_str())
                .execute(&mut tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await?;
        Ok(record)
    }

    async fn commit_uploads(
        &self,
        writes: &[UploadWrite],
    ) -> Result<Vec<Result<Committed, StoreError>>, StoreError> {
        super::commit::commit_uploads(&self.pool, writes).await
    }

    async fn inline_body(&self, id: &UploadId) -> Result<Option<Vec<u8>>, StoreError> {
        super::commit::inline_body(&self.pool, id).await
    }

    async fn delete_inline_body(&self, id: &UploadId) -> Result<bool, StoreError> {
        super::commit::delete_inline_body(&self.pool, id).await
    }

    async fn jti_is_spent(&self, issuer: &str, jti: &str) -> Result<bool, StoreError> {
        super::commit::jti_is_spent(&self.pool, issuer, jti).await
    }

    async fn latest_jti_expiry(&self) -> Result<Option<UnixTime>, StoreError> {
        Ok(super::commit::latest_jti_expiry(&self.pool)
            .await?
            .map(UnixTime))
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError> {
        query(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(UploadRow::into_record)
        .transpose()
    }

    async fn find_by_idempotency_key(
        &self,
        scope: &IdempotencyScope,
        key: &str,
    ) -> Result<Option<UploadRecord>, StoreError> {
        upload_by_idempotency_key(&self.pool, scope, key).await
    }

    async fn list_uploads(
        &self,
        filter: &ListFilter,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<UploadRecord>, Option<Cursor>), StoreError> {
        let limit = clamp_limit(limit);
        let mut q = query_built(list_sql(filter, cursor.is_some()));
        if let Some(status) = filter.status {
            q = q.bind(status.as_str());
        }
        if let Some(repo) = filter.repository_id {
            q = q.bind(sql_id(repo.get())?);
        }
        if let Some(mode) = filter.mode {
            q = q.bind(mode.as_str());
        }
        if let Some(since) = filter.since {
            q = q.bind(since.0);
        }
        if let Some(until) = filter.until {
            q = q.bind(until.0);
        }
        if let Some(cursor) = cursor {
            q = q.bind(cursor.0.as_str());
        }
        // One extra row tells whether another page exists without a COUNT.
        let rows: Vec<UploadRow> = q
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let more = rows.len() > limit as usize;
        let records = rows
            .into_iter()
            .take(limit as usize)
            .map(UploadRow::into_record)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if more {
            records.last().map(|r| Cursor(r.id.clone()))
        } else {
            None
        };
        Ok((records, next))
    }

    async fn list_verified_after(
        &self,
        repository_id: Option<RepositoryId>,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<UploadRecord>, u64), StoreError> {
        super::sequence::list_after(&self.pool, repository_id, after, limit).await
    }

    async fn apply_webhook(
        &self,
        delivery: &WebhookDelivery,
        effects: &[WebhookEffect],
    ) -> Result<bool, StoreError> {
        delivery.validate()?;
        // The transaction starts with the delivery's insert: a concurrent application of
        // the same delivery waits for it (SQLite: for the write lock; PostgreSQL, READ
        // COMMITTED: for this insert to end), then sees the conflict and applies nothing.
        let mut tx = self.pool.begin_write().await?;
        let recorded = query(
            "INSERT INTO webhook_deliveries (id, event, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&delivery.id)
        .bind(&delivery.event)
        .bind(delivery.received_at.0)
        .execute(&mut tx)
        .await
        .map_err(db_error)?;
        if recorded == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        for effect in effects {
            // On error the transaction is dropped, which rolls it back: the delivery id
            // is not recorded and a retry applies everything.
            github::apply_effect(&mut tx, effect, delivery.received_at).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn repository_binding(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<RepositoryBinding>, StoreError> {
        query(
            "SELECT i.id AS installation_id, i.account_id, i.suspended, i.deleted, r.removed, \
             r.unsettled AS repository_unsettled, i.unsettled AS installation_unsettled \
             FROM installation_repositories r JOIN installations i ON i.id = r.installation_id \
             WHERE r.repository_id = $1 \
             ORDER BY CASE WHEN NOT r.removed AND NOT i.deleted THEN 0 ELSE 1 END, \
             i.suspended, r.state_at DESC, r.updated_at DESC, i.updated_at DESC, i.id DESC \
             LIMIT 1",
        )
        .bind(sql_id(repository_id.get())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(BindingRow::into_binding)
        .transpose()
    }

    async fn get_installation(
        &self,
        id: InstallationId,
    ) -> Result<Option<KnownInstallation>, StoreError> {
        query(concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE id = $1"
        ))
        .bind(sql_id(id.get())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(InstallationRow::into_installation)
        .transpose()
    }

    async fn installation_for_account(
        &self,
        account_id: OwnerId,
    ) -> Result<Option<KnownInstallation>, StoreError> {
        query(concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE account_id = $1 \
             ORDER BY deleted, state_at DESC, updated_at DESC, id DESC LIMIT 1"
        ))
        .bind(sql_id(account_id.get())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(InstallationRow::into_installation)
        .transpose()
    }

    async fn list_installations(
        &self,
        after: Option<InstallationId>,
        limit: u32,
    ) -> Result<Vec<KnownInstallation>, StoreError> {
        super::console::installations(&self.pool, after, limit).await
    }

    async fn installation_repositories(
        &self,
        installation: InstallationId,
        after: Option<RepositoryId>,
        limit: u32,
    ) -> Result<Vec<crate::InstalledRepository>, StoreError> {
        super::console::repositories(&self.pool, installation, after, limit).await
    }

    async fn repositories_with_rules(
        &self,
        ids: &[RepositoryId],
    ) -> Result<Vec<RepositoryId>, StoreError> {
        super::console::repositories_with_rules(&self.pool, ids).await
    }

    async fn console_counts(&self) -> Result<crate::ConsoleCounts, StoreError> {
        super::console::counts(&self.pool).await
    }

    async fn get_workflow_run(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
        run_attempt: u32,
    ) -> Result<Option<WorkflowRunRecord>, StoreError> {
        query(concat!(
            "SELECT ",
            workflow_run_columns!(),
            " FROM workflow_runs WHERE repository_id = $1 AND run_id = $2 AND run_attempt = $3"
        ))
        .bind(sql_id(repository_id.get())?)
        .bind(sql_id(run_id.get())?)
        .bind(i64::from(run_attempt))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(WorkflowRunRow::into_record)
        .transpose()
    }

    async fn purge_workflow_runs(&self, before: UnixTime) -> Result<u64, StoreError> {
        self.delete_before("DELETE FROM workflow_runs WHERE received_at < $1", before)
            .await
    }

    async fn purge_webhook_deliveries(&self, before: UnixTime) -> Result<u64, StoreError> {
        self.delete_before(
            "DELETE FROM webhook_deliveries WHERE received_at < $1",
            before,
        )
        .await
    }

    async fn pending_uploads_for_run(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
        run_attempt: u32,
    ) -> Result<Vec<(UploadRecord, PendingRun)>, StoreError> {
        query(concat!(
            "SELECT ",
            upload_columns!(),
            ", pending_repository_id, pending_run_id, pending_run_attempt, pending_head_sha \
             FROM uploads WHERE pending_repository_id = $1 AND pending_run_id = $2 \
             AND pending_run_attempt = $3 AND status = 'pending' ORDER BY id"
        ))
        .bind(sql_id(repository_id.get())?)
        .bind(sql_id(run_id.get())?)
        .bind(i64::from(run_attempt))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(PendingUploadRow::into_pair)
        .collect()
    }

    async fn resolve_pending(
        &self,
        id: &UploadId,
        status: UploadStatus,
        identity: Option<&RunIdentity>,
        reason: Option<&str>,
        now: UnixTime,
        pushes: &[NewPush],
    ) -> Result<bool, StoreError> {
        let resolution = Resolution::new(status, identity, now)?;
        let payloads = push_payloads(pushes)?;
        // A concurrent resolution waits (SQLite: for the write lock; PostgreSQL: for the
        // row lock), then finds the upload no longer pending and changes nothing.
        let mut tx = self.pool.begin_write().await?;
        let changed = query(
            "UPDATE uploads SET status = $1, identity_json = COALESCE($2, identity_json), \
             repository_id = COALESCE($3, repository_id), reason = $4, verified_at = $5 \
             WHERE id = $6 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(&resolution.identity_json)
        .bind(resolution.repository_id)
        .bind(reason)
        .bind(resolution.verified_at)
        .bind(id.as_str())
        .execute(&mut tx)
        .await
        .map_err(db_error)?;
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_pushes(&mut tx, pushes, &payloads, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn blobs_to_delete(&self, limit: u32) -> Result<Vec<UploadId>, StoreError> {
        let ids: Vec<(String,)> = query_built(blobs_to_delete_sql(self.pool.dialect()))
            .bind(i64::from(clamp_limit(limit)))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        into_upload_ids(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn mark_blob_deleted(&self, id: &UploadId) -> Result<(), StoreError> {
        query("UPDATE uploads SET blob_deleted = TRUE WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn ids_without_upload(&self, ids: &[UploadId]) -> Result<Vec<UploadId>, StoreError> {
        let sql = format!(
            "SELECT t.item FROM {} \
             WHERE NOT EXISTS (SELECT 1 FROM uploads AS u WHERE u.id = t.item) \
             ORDER BY t.ord",
            self.pool.dialect().text_list("$1", "t")
        );
        let mut missing = Vec::new();
        for chunk in ids.chunks(ID_BATCH) {
            let chunk: Vec<String> = chunk.iter().map(|id| id.as_str().to_owned()).collect();
            let batch: Vec<(String,)> = query_built(sql.clone())
                .bind(chunk.as_slice())
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
            missing.extend(batch.into_iter().map(|(id,)| UploadId(id)));
        }
        Ok(missing)
    }

    async fn pending_usage(&self, repository_id: RepositoryId) -> Result<(u64, u64), StoreError> {
        let (count, bytes): (i64, i64) = query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM uploads \
             WHERE pending_repository_id = $1 AND status = 'pending'",
        )
        .bind(sql_id(repository_id.get())?)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok((stored_count(count, "count")?, stored_count(bytes, "size")?))
    }

    async fn pending_total(&self) -> Result<(u64, u64), StoreError> {
        let (count, bytes): (i64, i64) = query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM uploads \
             WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok((stored_count(count, "count")?, stored_count(bytes, "size")?))
    }

    async fn run_upload_count(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
    ) -> Result<u64, StoreError> {
        let (count,): (i64,) = query(
            "SELECT COUNT(*) FROM uploads WHERE pending_repository_id = $1 \
             AND pending_run_id = $2",
        )
        .bind(sql_id(repository_id.get())?)
        .bind(sql_id(run_id.get())?)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        stored_count(count, "count")
    }

    async fn reserve_pending(&self, r: &PendingReservation) -> Result<Reserved, StoreError> {
        let params = ReservationParams::new(r)?;
        // No other reservation runs between the sums and the reservation that relies on
        // them. Inserts need not wait: one that consumes a reservation only lowers the
        // sums, and one statement sees it whole or not at all.
        let mut tx = self.pool.begin_write().await?;
        if let Some(lock) = tx.dialect().reservation_lock {
            query(lock).execute(&mut tx).await.map_err(db_error)?;
        }
        query(reservation::PURGE_SQL)
            .bind(r.created_at.0)
            .execute(&mut tx)
            .await
            .map_err(db_error)?;
        let sums: (i64, i64, i64, i64) = query(reservation::SUMS_SQL)
            .bind(params.repository_id)
            .bind(params.run_id)
            .bind(params.run_attempt)
            .bind(&params.counted_sha)
            .bind(params.counted_since)
            .fetch_one(&mut tx)
            .await
            .map_err(db_error)?;
        let outcome = reservation::decide(r, sums)?;
        if let Reserved::Granted { bytes } = outcome {
            let done = query(reservation::INSERT_SQL)
                .bind(r.id.as_str())
                .bind(params.repository_id)
                .bind(params.run_id)
                .bind(params.run_attempt)
                .bind(&r.claim.head_sha)
                .bind(reservation::sql_bytes(bytes)?)
                .bind(r.created_at.0)
                .bind(r.expires_at.0)
                .execute(&mut tx)
                .await;
            match done {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Invalid(Invalid::Exists {
                        what: "reservation",
                        key: r.id.as_str().to_owned(),
                    }));
                }
                Err(e) => return Err(db_error(e)),
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    async fn release_pending(&self, id: &ReservationId) -> Result<(), StoreError> {
        query(reservation::RELEASE_SQL)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn workflow_run_attempts(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        query(reservation::ATTEMPTS_SQL)
            .bind(sql_id(repository_id.get())?)
            .bind(sql_id(run_id.get())?)
            .bind(i64::from(MAX_RUN_ATTEMPTS_LISTED))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(WorkflowRunRow::into_record)
            .collect()
    }

    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        let params = SessionParams::new(session)?;
        let done = query(
            "INSERT INTO sessions (token_hash, identity_json, repository_id, created_at, \
             expires_at, revoked, max_uploads, max_bytes, uploads_used, bytes_used) \
             VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, 0, 0)",
        )
        .bind(&session.token_hash)
        .bind(&params.identity_json)
        .bind(params.repository_id)
        .bind(session.created_at.0)
        .bind(session.expires_at.0)
        .bind(params.max_uploads)
        .bind(params.max_bytes)
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Invalid(Invalid::SessionExists)),
            Err(e) => Err(db_error(e)),
        }
    }

    async fn reserve_session(
        &self,
        token_hash: &str,
        now: UnixTime,
        ask: SessionAsk,
    ) -> Result<SessionUse, StoreError> {
        let (wanted, fewest) = ask.bounds();
        let granted: Option<GrantRow> = query(RESERVE_SESSION_SQL)
            .bind(wanted)
            .bind(fewest)
            .bind(token_hash)
            .bind(now.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        if let Some(row) = granted {
            return row.into_grant();
        }
        let record = self.get_session(token_hash).await?;
        Ok(refusal(record.as_ref(), now))
    }

    async fn release_session(
        &self,
        token_hash: &str,
        uploads: u64,
        bytes: u64,
    ) -> Result<(), StoreError> {
        query(RELEASE_SESSION_SQL)
            .bind(sql_count(uploads))
            .bind(sql_count(bytes))
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn revoke_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let revoked =
            query("UPDATE sessions SET revoked = TRUE WHERE token_hash = $1 AND NOT revoked")
                .bind(token_hash)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(revoked == 1)
    }

    async fn get_session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(SessionRow::into_record)
        .transpose()
    }

    async fn purge_sessions(&self, before: UnixTime) -> Result<u64, StoreError> {
        self.delete_before("DELETE FROM sessions WHERE expires_at < $1", before)
            .await
    }

    async fn create_console_session(
        &self,
        token_hash: &str,
        created_at: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        super::console::create_session(&self.pool, token_hash, created_at, expires_at).await
    }

    async fn console_session_valid(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        super::console::session_valid(&self.pool, token_hash, now).await
    }

    async fn delete_console_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        super::console::delete_session(&self.pool, token_hash).await
    }

    async fn purge_console_sessions(&self, now: UnixTime) -> Result<u64, StoreError> {
        super::console::purge_sessions(&self.pool, now).await
    }

    async fn claim_pushes(
        &self,
        now: UnixTime,
        lease_seconds: i64,
        limit: u32,
    ) -> Result<Vec<PushRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // PostgreSQL: SKIP LOCKED, so that concurrent claimers pass over each other's
        // rows instead of waiting (a row committed meanwhile is re-checked and, leased,
        // left out); and a materialized CTE rather than `id IN (subquery)`, since a
        // semi-join may rescan its subquery, which then skips the rows this statement
        // already updated and picks more than the limit. SQLite: one writer at a time.
        let mut tx = self.pool.begin_write().await?;
        let dialect = tx.dialect();
        let sql = format!(
            concat!(
                "WITH picked AS {} (SELECT id FROM outbox \
                 WHERE status = 'pending' AND next_attempt_at <= $2 \
                 AND (locked_until IS NULL OR locked_until < $2) \
                 ORDER BY next_attempt_at, id LIMIT $3{}) \
                 UPDATE outbox SET locked_until = $1, updated_at = $2 FROM picked \
                 WHERE outbox.id = picked.id RETURNING ",
                qualified_push_columns!()
            ),
            dialect.materialized, dialect.skip_locked
        );
        let rows: Vec<PushRow> = query_built(sql)
            .bind(now.plus(lease_seconds.max(0)).0)
            .bind(now.0)
            .bind(i64::from(clamp_limit(limit)))
            .fetch_all(&mut tx)
            .await
            .map_err(db_error)?;
        tx.commit().await?;
        into_pushes(rows)
    }

    async fn complete_push(&self, id: &str, now: UnixTime) -> Result<(), StoreError> {
        query(
            "UPDATE outbox SET status = 'delivered', locked_until = NULL, last_error = NULL, \
             attempts = attempts + 1, updated_at = $1 WHERE id = $2",
        )
        .bind(now.0)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn fail_push(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let status = if next_attempt_at.is_some() {
            PushStatus::Pending
        } else {
            PushStatus::Failed
        };
        query(
            "UPDATE outbox SET status = $1, attempts = attempts + 1, last_error = $2, \
             locked_until = NULL, next_attempt_at = COALESCE($3, next_attempt_at), \
             updated_at = $4 WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(truncate_error(error))
        .bind(next_attempt_at.map(|t| t.0))
        .bind(now.0)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn list_pushes(
        &self,
        status: Option<PushStatus>,
        limit: u32,
    ) -> Result<Vec<PushRecord>, StoreError> {
        let limit = i64::from(clamp_limit(limit));
        // Two statements rather than `$1 IS NULL OR status = $1`, whose type PostgreSQL
        // cannot infer and whose plan could not use the status.
        let listed = match status {
            Some(status) => query(concat!(
                "SELECT ",
                push_columns!(),
                " FROM outbox WHERE status = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(status.as_str()),
            None => query(concat!(
                "SELECT ",
                push_columns!(),
                " FROM outbox ORDER BY created_at DESC, id DESC LIMIT $1"
            )),
        };
        listed
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(PushRow::into_record)
            .collect()
    }

    async fn list_pushes_page(
        &self,
        filter: &crate::PushFilter,
        limit: u32,
        before: Option<&str>,
    ) -> Result<(Vec<PushRecord>, Option<String>), StoreError> {
        super::console::pushes_page(&self.pool, filter, limit, before).await
    }

    async fn retry_push(&self, id: &str, now: UnixTime) -> Result<Option<PushRecord>, StoreError> {
        let mut tx = self.pool.begin_write().await?;
        query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $1, updated_at = $1 \
             WHERE id = $2 AND status IN ('pending', 'failed')",
        )
        .bind(now.0)
        .bind(id)
        .execute(&mut tx)
        .await
        .map_err(db_error)?;
        let row: Option<PushRow> = query(concat!(
            "SELECT ",
            push_columns!(),
            " FROM outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut tx)
        .await
        .map_err(db_error)?;
        tx.commit().await?;
        row.map(PushRow::into_record).transpose()
    }

    async fn outbox_notifications(&self) -> Option<mpsc::Receiver<()>> {
        outbox_wakeups(&self.pool)
    }

    async fn namespace(&self) -> Result<Option<NamespaceRecord>, StoreError> {
        query(namespace::NAMESPACE_SQL)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn bind_namespace(
        &self,
        id: &str,
        blob_store: &str,
        now: UnixTime,
    ) -> Result<NamespaceRecord, StoreError> {
        query(namespace::BIND_NAMESPACE_SQL)
            .bind(id)
            .bind(blob_store)
            .bind(now.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        query(namespace::NAMESPACE_SQL)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn repository_rules(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<RepositoryRules>, StoreError> {
        super::rules::get(&self.pool, repository_id).await
    }

    async fn put_repository_rules(
        &self,
        repository_id: RepositoryId,
        rules: &[TrustRule],
        now: UnixTime,
    ) -> Result<RepositoryRules, StoreError> {
        super::rules::put(&self.pool, repository_id, rules, now).await
    }

    async fn delete_repository_rules(
        &self,
        repository_id: RepositoryId,
    ) -> Result<bool, StoreError> {
        super::rules::delete(&self.pool, repository_id).await
    }

    async fn insert_events(&self, events: &[crate::NewEvent]) -> Result<u64, StoreError> {
        super::events::insert(&self.pool, events).await
    }

    async fn list_events(
        &self,
        filter: &crate::EventFilter,
        limit: u32,
        cursor: Option<crate::EventCursor>,
    ) -> Result<(Vec<crate::EventRecord>, Option<crate::EventCursor>), StoreError> {
        super::events::list(&self.pool, filter, limit, cursor).await
    }

    async fn purge_events(&self, before: UnixTime, max_rows: u64) -> Result<u64, StoreError> {
        super::events::purge(&self.pool, before, max_rows).await
    }

    async fn event_hours(
        &self,
        since: UnixTime,
        kind: crate::EventKind,
        outcome: crate::EventOutcome,
    ) -> Result<Vec<crate::EventHour>, StoreError> {
        super::events::hours(&self.pool, since, kind, outcome).await
    }

    async fn event_counts(
        &self,
        since: UnixTime,
        kind: crate::EventKind,
        outcome: crate::EventOutcome,
        split: crate::EventSplit,
        bucket_seconds: u32,
    ) -> Result<Vec<crate::EventHour>, StoreError> {
        super::events::counts(&self.pool, since, kind, outcome, split, bucket_seconds).await
    }

    fn parallel_writes(&self) -> usize {
        self.pool.dialect().parallel_writes
    }

    async fn ping(&self) -> Result<(), StoreError> {
        query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    /// On SQLite, a partial index can serve only a query whose `WHERE` spells its terms
    /// alike (`INDEXED BY` fails when the index cannot be used).
    #[tokio::test]
    async fn blobs_to_delete_can_use_its_index_on_sqlite() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let sql = blobs_to_delete_sql(store.pool.dialect()).replacen(
            "FROM uploads",
            "FROM uploads INDEXED BY uploads_blobs_to_delete",
            1,
        );
        let rows: Vec<(String,)> = query_built(sql)
            .bind(5i64)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert!(rows.is_empty());
    }

    #[test]
    fn listing_numbers_its_parameters() {
        assert_eq!(
            list_sql(&ListFilter::default(), false),
            concat!(
                "SELECT ",
                upload_columns!(),
                " FROM uploads WHERE TRUE ORDER BY id DESC LIMIT $1"
            )
        );
        let both = ListFilter {
            status: Some(UploadStatus::Pending),
            repository_id: Some(RepositoryId(1)),
            ..ListFilter::default()
        };
        assert!(list_sql(&both, true).ends_with(
            " AND status = $1 AND repository_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
        ));
        let all = ListFilter {
            status: Some(UploadStatus::Pending),
            repository_id: Some(RepositoryId(1)),
            mode: Some(crate::Mode::Webhook),
            since: Some(UnixTime(1)),
            until: Some(UnixTime(2)),
        };
        assert!(list_sql(&all, true).ends_with(
            " AND status = $1 AND repository_id = $2 AND mode = $3 AND created_at >= $4 \
             AND created_at < $5 AND id < $6 ORDER BY id DESC LIMIT $7"
        ));
    }

    /// The plan of a listing on SQLite, one line per step; placeholders become literals.
    async fn listing_plan(store: &SqliteStore, filter: &ListFilter) -> Vec<String> {
        let mut sql = list_sql(filter, true);
        for n in (1..=7).rev() {
            sql = sql.replace(&format!("${n}"), &format!("'{n}'"));
        }
        let Pool::Sqlite(pool) = &store.pool else {
            panic!("a SQLite store")
        };
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(pool)
                .await
                .unwrap();
        plan.into_iter().map(|step| step.3).collect()
    }

    /// Each filter reads the index that leads with its column (the time bounds: a range
    /// of it), so that no listing scans the whole table, and listings by a column and the
    /// id need no sort.
    #[tokio::test]
    async fn listings_read_an_index_per_filter_on_sqlite() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let none = ListFilter::default();
        let status = ListFilter {
            status: Some(UploadStatus::Pending),
            ..ListFilter::default()
        };
        let repository = ListFilter {
            repository_id: Some(RepositoryId(1)),
            ..ListFilter::default()
        };
        let mode = ListFilter {
            mode: Some(crate::Mode::Webhook),
            ..ListFilter::default()
        };
        let since = ListFilter {
            since: Some(UnixTime(1)),
            ..ListFilter::default()
        };
        let until = ListFilter {
            until: Some(UnixTime(2)),
            ..ListFilter::default()
        };
        let window = ListFilter {
            since: Some(UnixTime(1)),
            until: Some(UnixTime(2)),
            ..ListFilter::default()
        };
        let mode_and_window = ListFilter {
            mode: Some(crate::Mode::Webhook),
            since: Some(UnixTime(1)),
            until: Some(UnixTime(2)),
            ..ListFilter::default()
        };
        let cases = [
            (&none, "sqlite_autoindex_uploads_1", true),
            (&status, "uploads_status_id (status=? AND id<?)", true),
            (
                &repository,
                "uploads_repository_id (repository_id=? AND id<?)",
                true,
            ),
            (&mode, "uploads_mode_id (mode=? AND id<?)", true),
            (&since, "uploads_", false),
            (&until, "uploads_", false),
            (&window, "uploads_", false),
            (&mode_and_window, "uploads_", false),
        ];
        for (filter, index, sorted) in cases {
            let plan = listing_plan(&store, filter).await;
            assert!(
                plan.iter()
                    .all(|step| !step.starts_with("SCAN") || step.contains("INDEX")),
                "{filter:?}: {plan:?}"
            );
            assert!(
                plan.iter()
                    .any(|step| step.contains("INDEX") && step.contains(index)),
                "{filter:?}: {plan:?}"
            );
            if sorted {
                assert!(
                    !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                    "{filter:?}: {plan:?}"
                );
            }
        }
    }
}
