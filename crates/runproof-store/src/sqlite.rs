//! The SQLite [`Store`]: one file in WAL mode, or an in-memory database for tests.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, RunIdentity, UnixTime};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::ID_BATCH;
use crate::Store;
use crate::github::{
    Delivery, Installation, InstallationAccess, InstalledRepository, KnownInstallation, Removed,
    RepositoryBinding, WebhookEffect, WorkflowRunRecord,
};
use crate::model::{
    Cursor, IdempotencyScope, ListFilter, NewUpload, PendingRun, StoreError, UploadId,
    UploadRecord, UploadStatus,
};
use crate::namespace::{self, NamespaceRecord};
use crate::outbox::{DeliveryRecord, DeliveryStatus, NewDelivery};
use crate::reservation::{self, PendingReservation, ReservationId, ReservationParams, Reserved};
use crate::row::{
    BindingRow, DeliveryRow, GrantRow, InstallationRow, ListedRow, PendingUploadRow,
    RELEASE_SESSION_SQL, RESERVE_SESSION_SQL, Resolution, SessionParams, SessionRow, UploadParams,
    UploadRow, WorkflowRunParams, WorkflowRunRow, clamp_limit, delivery_columns,
    installation_columns, into_deliveries, into_upload_ids, payload_json, session_columns,
    sql_bool, sql_id, stored_count, truncate_error, upload_columns, workflow_run_columns,
    workflow_run_replaces,
};
use crate::session::{NewSession, SessionAsk, SessionRecord, SessionUse, refusal};

/// Tuning of [`SqliteStore::open_with`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Most connections the pool opens (at least 1). Ignored for in-memory databases,
    /// which always use exactly one connection so that every query sees the same data.
    pub max_connections: u32,
    /// How long a statement waits for another connection's write lock before failing.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A [`Store`] in SQLite.
///
/// Durability: WAL journal with `synchronous = FULL`, so an upload acknowledged after
/// [`Store::insert_upload`] returns survives a crash or power loss.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) and migrates the database at `url_or_path` with
    /// default [`SqliteOptions`].
    ///
    /// Accepts `sqlite://path`, `sqlite:path`, `sqlite::memory:` or a bare file path.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL is invalid or the database cannot be
    /// opened, [`StoreError::Migration`] when migrating fails.
    pub async fn open(url_or_path: &str) -> Result<Self, StoreError> {
        Self::open_with(url_or_path, SqliteOptions::default()).await
    }

    /// Like [`SqliteStore::open`] with explicit options.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub async fn open_with(url_or_path: &str, options: SqliteOptions) -> Result<Self, StoreError> {
        if url_or_path == ":memory:" || is_memory_url(url_or_path) {
            let connect = SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| {
                StoreError::Unavailable(format!("invalid in-memory SQLite URL: {e}"))
            })?;
            return Self::connect(connect, &options, true).await;
        }
        let connect = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path)
                .map_err(|e| StoreError::Unavailable(format!("invalid SQLite URL: {e}")))?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        };
        Self::connect(connect, &options, false).await
    }

    /// Opens (creating when missing) and migrates the database file at `path`. Unlike a
    /// URL, the path is taken literally (`?` and `%` are not special).
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub async fn open_file(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::new().filename(path);
        Self::connect(connect, &options, false).await
    }

    async fn connect(
        connect: SqliteConnectOptions,
        options: &SqliteOptions,
        in_memory: bool,
    ) -> Result<Self, StoreError> {
        let mut connect = connect
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout)
            .synchronous(SqliteSynchronous::Full);
        let mut pool = SqlitePoolOptions::new();
        if in_memory {
            // An in-memory database lives as long as its connection: exactly one, kept
            // open forever, or the data would vanish between queries.
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            connect = connect.journal_mode(SqliteJournalMode::Wal);
            pool = pool.max_connections(options.max_connections.max(1));
        }
        let pool = pool.connect_with(connect).await.map_err(db_error)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(Self { pool })
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Whether a `sqlite:` URL names an in-memory database.
fn is_memory_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return false;
    };
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || params.split('&').any(|p| p == "mode=memory")
}

/// Maps a database error to a message fit for logs and responses.
fn db_error(e: sqlx::Error) -> StoreError {
    let msg = match &e {
        sqlx::Error::Database(d) => format!("database error: {}", d.message()),
        sqlx::Error::Io(io) => format!("I/O error: {io}"),
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".into(),
        sqlx::Error::PoolClosed => "the database pool is closed".into(),
        // Configuration and TLS errors may echo connection strings; keep them out.
        sqlx::Error::Configuration(_) => "invalid database configuration".into(),
        sqlx::Error::Tls(_) => "database TLS error".into(),
        other => other.to_string(),
    };
    StoreError::Unavailable(msg)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// Each delivery's payload as stored, encoded before any transaction starts.
fn delivery_payloads(deliveries: &[NewDelivery]) -> Result<Vec<String>, StoreError> {
    deliveries.iter().map(payload_json).collect()
}

/// Enqueues `deliveries` (with their encoded `payloads`) as pending and due at
/// `created_at`, inside the caller's transaction.
async fn insert_deliveries(
    conn: &mut SqliteConnection,
    deliveries: &[NewDelivery],
    payloads: &[String],
    created_at: UnixTime,
) -> Result<(), StoreError> {
    for (delivery, payload) in deliveries.iter().zip(payloads) {
        let done = sqlx::query(
            "INSERT INTO outbox (id, event, upload_id, payload_json, status, attempts, \
             last_error, created_at, next_attempt_at, locked_until, updated_at) \
             VALUES (?, ?, ?, ?, 'pending', 0, NULL, ?, ?, NULL, ?)",
        )
        .bind(&delivery.id)
        .bind(&delivery.event)
        .bind(&delivery.upload_id)
        .bind(payload)
        .bind(created_at.0)
        .bind(created_at.0)
        .bind(created_at.0)
        .execute(&mut *conn)
        .await;
        match done {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Invalid(format!(
                    "delivery {} already exists",
                    delivery.id
                )));
            }
            Err(e) => return Err(db_error(e)),
        }
    }
    Ok(())
}

/// Deletes the reservation an inserted upload consumes, inside the insert's transaction.
async fn consume_reservation(
    conn: &mut SqliteConnection,
    id: Option<&ReservationId>,
) -> Result<(), StoreError> {
    if let Some(id) = id {
        sqlx::query(reservation::RELEASE_SQL)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Builds the listing statement from fixed fragments; every value is bound.
fn list_sql(filter: &ListFilter, with_cursor: bool) -> String {
    let mut sql = String::from(concat!(
        "SELECT ",
        upload_columns!(),
        " FROM uploads WHERE 1 = 1"
    ));
    if filter.status.is_some() {
        sql.push_str(" AND status = ?");
    }
    if filter.repository_id.is_some() {
        sql.push_str(" AND repository_id = ?");
    }
    if with_cursor {
        sql.push_str(" AND id < ?");
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    sql
}

/// Applies one webhook effect inside the delivery's transaction; `now` is the delivery's
/// receipt time.
async fn apply_effect(
    conn: &mut SqliteConnection,
    effect: &WebhookEffect,
    now: UnixTime,
) -> Result<(), StoreError> {
    match effect {
        WebhookEffect::UpsertInstallation(installation) => {
            upsert_installation(conn, installation, now).await
        }
        WebhookEffect::DeleteInstallation(installation_id) => {
            sqlx::query("UPDATE installations SET deleted = 1, updated_at = ? WHERE id = ?")
                .bind(now.0)
                .bind(sql_id(installation_id.get())?)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            Ok(())
        }
        WebhookEffect::AddRepositories {
            installation_id,
            repositories,
            as_of,
        } => {
            for repository in repositories {
                list_repository(conn, *installation_id, repository, false, *as_of, now).await?;
            }
            Ok(())
        }
        WebhookEffect::RemoveRepositories {
            installation_id,
            repository_ids,
            as_of,
        } => {
            for id in repository_ids {
                let repository = InstalledRepository {
                    id: *id,
                    full_name: String::new(),
                };
                list_repository(conn, *installation_id, &repository, true, *as_of, now).await?;
            }
            Ok(())
        }
        WebhookEffect::UpsertWorkflowRun(run) => upsert_workflow_run(conn, run).await,
    }
}

/// Inserts an installation, or merges its access state by event time (see
/// [`crate::github::Ordered`]); `deleted` is never cleared.
async fn upsert_installation(
    conn: &mut SqliteConnection,
    installation: &Installation,
    now: UnixTime,
) -> Result<(), StoreError> {
    let id = sql_id(installation.id.get())?;
    let inserted = sqlx::query(
        "INSERT INTO installations (id, account_id, account_login, repository_selection, \
         suspended, deleted, updated_at, state_at, unsettled) VALUES (?, ?, ?, ?, ?, 0, ?, ?, 0) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(sql_id(installation.account_id.get())?)
    .bind(&installation.account_login)
    .bind(installation.repository_selection.as_str())
    .bind(sql_bool(installation.suspended))
    .bind(now.0)
    .bind(installation.as_of.map_or(0, |t| t.0))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    if inserted.rows_affected() == 1 {
        return Ok(());
    }
    // The delivery's transaction holds the write lock (BEGIN IMMEDIATE): read and write
    // cannot interleave with another delivery.
    let row = sqlx::query_as::<_, InstallationRow>(concat!(
        "SELECT ",
        installation_columns!(),
        " FROM installations WHERE id = ?"
    ))
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    let kept = row
        .access()?
        .merge(InstallationAccess::of(installation), installation.as_of);
    sqlx::query(
        "UPDATE installations SET account_id = ?, account_login = ?, repository_selection = ?, \
         suspended = ?, state_at = ?, unsettled = ?, updated_at = ? WHERE id = ?",
    )
    .bind(sql_id(installation.account_id.get())?)
    .bind(&installation.account_login)
    .bind(kept.state.selection.as_str())
    .bind(sql_bool(kept.state.suspended))
    .bind(kept.as_of)
    .bind(sql_bool(kept.unsettled))
    .bind(now.0)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Lists (`removed` false) or removes a repository of an installation as of `as_of`,
/// merging with what is kept by event time. A removal of a repository never listed
/// leaves a tombstone: "removed" must not read as "unknown", which a caller might resolve
/// through the account's installation.
async fn list_repository(
    conn: &mut SqliteConnection,
    installation_id: InstallationId,
    repository: &InstalledRepository,
    removed: bool,
    as_of: Option<UnixTime>,
    now: UnixTime,
) -> Result<(), StoreError> {
    let installation_id = sql_id(installation_id.get())?;
    let repository_id = sql_id(repository.id.get())?;
    let inserted = sqlx::query(
        "INSERT INTO installation_repositories (installation_id, repository_id, full_name, \
         removed, updated_at, state_at, unsettled) VALUES (?, ?, ?, ?, ?, ?, 0) \
         ON CONFLICT (installation_id, repository_id) DO NOTHING",
    )
    .bind(installation_id)
    .bind(repository_id)
    .bind(&repository.full_name)
    .bind(sql_bool(removed))
    .bind(now.0)
    .bind(as_of.map_or(0, |t| t.0))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    if inserted.rows_affected() == 1 {
        return Ok(());
    }
    let row = sqlx::query_as::<_, ListedRow>(
        "SELECT removed, state_at, unsettled FROM installation_repositories \
         WHERE installation_id = ? AND repository_id = ?",
    )
    .bind(installation_id)
    .bind(repository_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_error)?;
    let kept = row.access()?.merge(Removed(removed), as_of);
    sqlx::query(
        "UPDATE installation_repositories SET \
         full_name = CASE WHEN ? = '' THEN full_name ELSE ? END, \
         removed = ?, state_at = ?, unsettled = ?, updated_at = ? \
         WHERE installation_id = ? AND repository_id = ?",
    )
    .bind(&repository.full_name)
    .bind(&repository.full_name)
    .bind(sql_bool(kept.state.0))
    .bind(kept.as_of)
    .bind(sql_bool(kept.unsettled))
    .bind(now.0)
    .bind(installation_id)
    .bind(repository_id)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn upsert_workflow_run(
    conn: &mut SqliteConnection,
    run: &WorkflowRunRecord,
) -> Result<(), StoreError> {
    let params = WorkflowRunParams::new(run)?;
    sqlx::query(concat!(
        "INSERT INTO workflow_runs (",
        workflow_run_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (repository_id, run_id, run_attempt) DO UPDATE SET \
         head_sha = excluded.head_sha, head_repository_id = excluded.head_repository_id, \
         event = excluded.event, status = excluded.status, \
         conclusion = excluded.conclusion, path = excluded.path, \
         installation_id = excluded.installation_id, \
         repository_full_name = excluded.repository_full_name, \
         owner_id = excluded.owner_id, run_started_at = excluded.run_started_at, \
         updated_at = excluded.updated_at, completed_at = excluded.completed_at, \
         received_at = excluded.received_at WHERE ",
        workflow_run_replaces!()
    ))
    .bind(params.repository_id)
    .bind(params.run_id)
    .bind(params.run_attempt)
    .bind(&run.head_sha)
    .bind(params.head_repository_id)
    .bind(&run.event)
    .bind(&run.status)
    .bind(run.conclusion.as_deref())
    .bind(&run.path)
    .bind(params.installation_id)
    .bind(&run.repository_full_name)
    .bind(params.owner_id)
    .bind(run.run_started_at.map(|t| t.0))
    .bind(run.updated_at.0)
    .bind(run.completed_at.map(|t| t.0))
    .bind(run.received_at.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn consume_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO used_jtis (issuer, jti, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (issuer, jti) DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at.0)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_expired_jtis(&self, now: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM used_jtis WHERE expires_at < ?")
            .bind(now.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn insert_upload(&self, upload: &NewUpload) -> Result<UploadRecord, StoreError> {
        let params = UploadParams::new(upload)?;
        let payloads = delivery_payloads(&upload.deliveries)?;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let inserted = sqlx::query_as::<_, UploadRow>(concat!(
            "INSERT INTO uploads (id, status, mode, name, size, sha256, content_type, \
             created_at, verified_at, identity_json, repository_id, reason, idempotency_key, \
             pending_repository_id, pending_run_id, pending_run_attempt, pending_head_sha, \
             idempotency_scope) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ",
            upload_columns!()
        ))
        .bind(upload.id.as_str())
        .bind(upload.status.as_str())
        .bind(upload.mode.as_str())
        .bind(&upload.name)
        .bind(params.size)
        .bind(&params.sha256)
        .bind(upload.content_type.as_deref())
        .bind(upload.created_at.0)
        .bind(upload.verified_at.map(|t| t.0))
        .bind(&params.identity_json)
        .bind(params.repository_id)
        .bind(upload.reason.as_deref())
        .bind(upload.idempotency_key.as_deref())
        .bind(params.pending_repository_id)
        .bind(params.pending_run_id)
        .bind(params.pending_run_attempt)
        .bind(upload.pending_run.as_ref().map(|p| p.head_sha.as_str()))
        .bind(params.idempotency_scope.as_deref())
        .fetch_one(&mut *tx)
        .await;
        let row = match inserted {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => {
                tx.rollback().await.map_err(db_error)?;
                if let Some(key) = &upload.idempotency_key {
                    let scope = IdempotencyScope::new(upload.mode, &upload.identity);
                    if let Some(existing) = self.find_by_idempotency_key(&scope, key).await? {
                        return Err(StoreError::Conflict(Box::new(existing)));
                    }
                }
                // Not the idempotency key, so the id itself: a caller bug, not an outage.
                return Err(StoreError::Invalid(format!(
                    "upload {} already exists",
                    upload.id
                )));
            }
            Err(e) => return Err(db_error(e)),
        };
        let record = row.into_record()?;
        insert_deliveries(&mut tx, &upload.deliveries, &payloads, upload.created_at).await?;
        consume_reservation(&mut tx, upload.pending_reservation.as_ref()).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(record)
    }

    async fn commit_uploads(
        &self,
        writes: &[crate::UploadWrite],
    ) -> Result<Vec<Result<crate::Committed, StoreError>>, StoreError> {
        crate::sql::commit::commit_uploads(&crate::sql::Pool::Sqlite(self.pool.clone()), writes)
            .await
    }

    async fn inline_body(&self, id: &UploadId) -> Result<Option<Vec<u8>>, StoreError> {
        crate::sql::commit::inline_body(&crate::sql::Pool::Sqlite(self.pool.clone()), id).await
    }

    async fn delete_inline_body(&self, id: &UploadId) -> Result<bool, StoreError> {
        crate::sql::commit::delete_inline_body(&crate::sql::Pool::Sqlite(self.pool.clone()), id)
            .await
    }

    async fn jti_is_spent(&self, issuer: &str, jti: &str) -> Result<bool, StoreError> {
        crate::sql::commit::jti_is_spent(&crate::sql::Pool::Sqlite(self.pool.clone()), issuer, jti)
            .await
    }

    async fn latest_jti_expiry(&self) -> Result<Option<UnixTime>, StoreError> {
        Ok(
            crate::sql::commit::latest_jti_expiry(&crate::sql::Pool::Sqlite(self.pool.clone()))
                .await?
                .map(UnixTime),
        )
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError> {
        sqlx::query_as::<_, UploadRow>(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE id = ?"
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
        sqlx::query_as::<_, UploadRow>(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE idempotency_scope = ? AND idempotency_key = ?"
        ))
        .bind(scope.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(UploadRow::into_record)
        .transpose()
    }

    async fn list_uploads(
        &self,
        filter: &ListFilter,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<UploadRecord>, Option<Cursor>), StoreError> {
        let limit = clamp_limit(limit);
        let sql = list_sql(filter, cursor.is_some());
        let mut query = sqlx::query_as::<_, UploadRow>(sqlx::AssertSqlSafe(sql));
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(repo) = filter.repository_id {
            query = query.bind(sql_id(repo.get())?);
        }
        if let Some(cursor) = cursor {
            query = query.bind(cursor.0.as_str());
        }
        // One extra row tells whether another page exists without a COUNT.
        let rows = query
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

    async fn apply_webhook(
        &self,
        delivery: &Delivery,
        effects: &[WebhookEffect],
    ) -> Result<bool, StoreError> {
        delivery.validate()?;
        // IMMEDIATE takes the write lock at BEGIN, waiting up to the busy timeout for
        // other writers. A deferred transaction would take it at its first write (the
        // INSERT below, so it would wait too), but should a read ever come first, the
        // upgrade from reader to writer fails at once with SQLITE_BUSY instead of waiting.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let recorded = sqlx::query(
            "INSERT INTO webhook_deliveries (id, event, received_at) VALUES (?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&delivery.id)
        .bind(&delivery.event)
        .bind(delivery.received_at.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if recorded.rows_affected() == 0 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        for effect in effects {
            // On error the transaction is dropped, which rolls it back: the delivery id
            // is not recorded and a retry applies everything.
            apply_effect(&mut tx, effect, delivery.received_at).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn repository_binding(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<RepositoryBinding>, StoreError> {
        sqlx::query_as::<_, BindingRow>(
            "SELECT i.id AS installation_id, i.account_id, i.suspended, i.deleted, r.removed, \
             r.unsettled AS repository_unsettled, i.unsettled AS installation_unsettled \
             FROM installation_repositories r JOIN installations i ON i.id = r.installation_id \
             WHERE r.repository_id = ? \
             ORDER BY CASE WHEN r.removed = 0 AND i.deleted = 0 THEN 0 ELSE 1 END, \
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
        sqlx::query_as::<_, InstallationRow>(concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE id = ?"
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
        sqlx::query_as::<_, InstallationRow>(concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE account_id = ? \
             ORDER BY deleted, state_at DESC, updated_at DESC, id DESC LIMIT 1"
        ))
        .bind(sql_id(account_id.get())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(InstallationRow::into_installation)
        .transpose()
    }

    async fn get_workflow_run(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
        run_attempt: u32,
    ) -> Result<Option<WorkflowRunRecord>, StoreError> {
        sqlx::query_as::<_, WorkflowRunRow>(concat!(
            "SELECT ",
            workflow_run_columns!(),
            " FROM workflow_runs WHERE repository_id = ? AND run_id = ? AND run_attempt = ?"
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

    async fn purge_deliveries(&self, before: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM webhook_deliveries WHERE received_at < ?")
            .bind(before.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn purge_workflow_runs(&self, before: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM workflow_runs WHERE received_at < ?")
            .bind(before.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn pending_uploads_for_run(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
        run_attempt: u32,
    ) -> Result<Vec<(UploadRecord, PendingRun)>, StoreError> {
        sqlx::query_as::<_, PendingUploadRow>(concat!(
            "SELECT ",
            upload_columns!(),
            ", pending_repository_id, pending_run_id, pending_run_attempt, pending_head_sha \
             FROM uploads WHERE pending_repository_id = ? AND pending_run_id = ? \
             AND pending_run_attempt = ? AND status = 'pending' ORDER BY id"
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
        deliveries: &[NewDelivery],
    ) -> Result<bool, StoreError> {
        let resolution = Resolution::new(status, identity, now)?;
        let payloads = delivery_payloads(deliveries)?;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE uploads SET status = ?, identity_json = COALESCE(?, identity_json), \
             repository_id = COALESCE(?, repository_id), reason = ?, verified_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(resolution.identity_json.as_deref())
        .bind(resolution.repository_id)
        .bind(reason)
        .bind(resolution.verified_at)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        insert_deliveries(&mut tx, deliveries, &payloads, now).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn blobs_to_delete(&self, limit: u32) -> Result<Vec<UploadId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM uploads WHERE blob_deleted = 0 \
             AND status IN ('rejected', 'expired') ORDER BY id LIMIT ?",
        )
        .bind(i64::from(clamp_limit(limit)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        into_upload_ids(ids)
    }

    async fn mark_blob_deleted(&self, id: &UploadId) -> Result<(), StoreError> {
        sqlx::query("UPDATE uploads SET blob_deleted = 1 WHERE id = ?")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn ids_without_upload(&self, ids: &[UploadId]) -> Result<Vec<UploadId>, StoreError> {
        let mut missing = Vec::new();
        for chunk in ids.chunks(ID_BATCH) {
            let ids: Vec<&str> = chunk.iter().map(UploadId::as_str).collect();
            let ids = serde_json::to_string(&ids)
                .map_err(|e| StoreError::Invalid(format!("upload ids: {e}")))?;
            let batch: Vec<String> = sqlx::query_scalar(
                "SELECT j.value FROM json_each(?) AS j \
                 WHERE NOT EXISTS (SELECT 1 FROM uploads AS u WHERE u.id = j.value) \
                 ORDER BY j.key",
            )
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
            missing.extend(batch.into_iter().map(UploadId));
        }
        Ok(missing)
    }

    async fn pending_usage(&self, repository_id: RepositoryId) -> Result<(u64, u64), StoreError> {
        let (count, bytes): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM uploads \
             WHERE pending_repository_id = ? AND status = 'pending'",
        )
        .bind(sql_id(repository_id.get())?)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok((stored_count(count, "count")?, stored_count(bytes, "size")?))
    }

    async fn pending_total(&self) -> Result<(u64, u64), StoreError> {
        let (count, bytes): (i64, i64) = sqlx::query_as(
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
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM uploads WHERE pending_repository_id = ? AND pending_run_id = ?",
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
        // IMMEDIATE takes the write lock first: no other reservation or insert runs
        // between the sums and the reservation that relies on them.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        sqlx::query(reservation::PURGE_SQL)
            .bind(r.created_at.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let sums: (i64, i64, i64, i64) = sqlx::query_as(reservation::SUMS_SQL)
            .bind(params.repository_id)
            .bind(params.run_id)
            .bind(params.run_attempt)
            .bind(params.counted_sha.as_deref())
            .bind(params.counted_since)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let outcome = reservation::decide(r, sums)?;
        if let Reserved::Granted { bytes } = outcome {
            let done = sqlx::query(reservation::INSERT_SQL)
                .bind(r.id.as_str())
                .bind(params.repository_id)
                .bind(params.run_id)
                .bind(params.run_attempt)
                .bind(&r.claim.head_sha)
                .bind(reservation::sql_bytes(bytes)?)
                .bind(r.created_at.0)
                .bind(r.expires_at.0)
                .execute(&mut *tx)
                .await;
            match done {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Invalid(format!(
                        "reservation {} already exists",
                        r.id.as_str()
                    )));
                }
                Err(e) => return Err(db_error(e)),
            }
        }
        tx.commit().await.map_err(db_error)?;
        Ok(outcome)
    }

    async fn release_pending(&self, id: &ReservationId) -> Result<(), StoreError> {
        sqlx::query(reservation::RELEASE_SQL)
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
        sqlx::query_as::<_, WorkflowRunRow>(reservation::ATTEMPTS_SQL)
            .bind(sql_id(repository_id.get())?)
            .bind(sql_id(run_id.get())?)
            .bind(i64::from(crate::MAX_RUN_ATTEMPTS_LISTED))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(WorkflowRunRow::into_record)
            .collect()
    }

    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        let params = SessionParams::new(session)?;
        let done = sqlx::query(
            "INSERT INTO sessions (token_hash, identity_json, repository_id, created_at, \
             expires_at, revoked, max_uploads, max_bytes, uploads_used, bytes_used) \
             VALUES (?, ?, ?, ?, ?, 0, ?, ?, 0, 0)",
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
            Err(e) if is_unique_violation(&e) => Err(StoreError::Invalid(
                "a session with this token exists".into(),
            )),
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
        let granted = sqlx::query_as::<_, GrantRow>(RESERVE_SESSION_SQL)
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
        let sql = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(RELEASE_SESSION_SQL)
            .bind(sql(uploads))
            .bind(sql(bytes))
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn revoke_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE sessions SET revoked = 1 WHERE token_hash = ? AND revoked = 0")
                .bind(token_hash)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE token_hash = ?"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .map(SessionRow::into_record)
        .transpose()
    }

    async fn purge_sessions(&self, before: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(before.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn claim_deliveries(
        &self,
        now: UnixTime,
        lease_seconds: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // One statement is atomic already; IMMEDIATE makes the wait for the write lock
        // explicit (busy timeout) rather than an upgrade that could fail at once.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        let rows = sqlx::query_as::<_, DeliveryRow>(concat!(
            "UPDATE outbox SET locked_until = ?, updated_at = ? WHERE id IN (\
             SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= ? \
             AND (locked_until IS NULL OR locked_until < ?) \
             ORDER BY next_attempt_at, id LIMIT ?) RETURNING ",
            delivery_columns!()
        ))
        .bind(now.plus(lease_seconds.max(0)).0)
        .bind(now.0)
        .bind(now.0)
        .bind(now.0)
        .bind(i64::from(clamp_limit(limit)))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        into_deliveries(rows)
    }

    async fn complete_delivery(&self, id: &str, now: UnixTime) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'delivered', locked_until = NULL, \
             attempts = attempts + 1, updated_at = ? WHERE id = ?",
        )
        .bind(now.0)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn fail_delivery(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let status = if next_attempt_at.is_some() {
            DeliveryStatus::Pending
        } else {
            DeliveryStatus::Failed
        };
        sqlx::query(
            "UPDATE outbox SET status = ?, attempts = attempts + 1, last_error = ?, \
             locked_until = NULL, next_attempt_at = COALESCE(?, next_attempt_at), \
             updated_at = ? WHERE id = ?",
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

    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        sqlx::query_as::<_, DeliveryRow>(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM outbox WHERE (? IS NULL OR status = ?) \
             ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(status.map(DeliveryStatus::as_str))
        .bind(status.map(DeliveryStatus::as_str))
        .bind(i64::from(clamp_limit(limit)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(DeliveryRow::into_record)
        .collect()
    }

    async fn retry_delivery(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)?;
        sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = ?, updated_at = ? \
             WHERE id = ? AND status IN ('pending', 'failed')",
        )
        .bind(now.0)
        .bind(now.0)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        let row = sqlx::query_as::<_, DeliveryRow>(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM outbox WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        row.map(DeliveryRow::into_record).transpose()
    }

    async fn outbox_notifications(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        // No cross-process signal in SQLite: delivery workers poll.
        None
    }

    async fn namespace(&self) -> Result<Option<NamespaceRecord>, StoreError> {
        sqlx::query_as(namespace::NAMESPACE_SQL)
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
        sqlx::query(namespace::BIND_NAMESPACE_SQL)
            .bind(id)
            .bind(blob_store)
            .bind(now.0)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        sqlx::query_as(namespace::NAMESPACE_SQL)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testsuite;

    #[test]
    fn memory_urls_are_recognised() {
        assert!(is_memory_url("sqlite::memory:"));
        assert!(is_memory_url("sqlite://:memory:"));
        assert!(is_memory_url("sqlite://?mode=memory"));
        assert!(!is_memory_url("sqlite://a.db"));
        assert!(!is_memory_url("a.db"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn suite_on_memory() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        testsuite::store_suite(Arc::new(store.clone())).await;
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn suite_on_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = SqliteStore::open(&url).await.unwrap();
        testsuite::store_suite(Arc::new(store.clone())).await;
        store.close().await;
    }

    #[tokio::test]
    async fn file_urls_and_paths_open_the_same_database() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db.sqlite");
        let a = SqliteStore::open(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        assert!(a.consume_jti("i", "j", UnixTime(10)).await.unwrap());
        a.close().await;
        let b = SqliteStore::open_file(&path, SqliteOptions::default())
            .await
            .unwrap();
        assert!(!b.consume_jti("i", "j", UnixTime(10)).await.unwrap());
        b.close().await;
        let c = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        assert!(!c.consume_jti("i", "j", UnixTime(10)).await.unwrap());
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&c.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        // 2 is FULL.
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&c.pool)
            .await
            .unwrap();
        assert_eq!(sync, 2);
        c.close().await;
    }

    /// Writers on two pools of one file (as two processes would be) neither fail with
    /// `SQLITE_BUSY` nor apply a delivery twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn concurrent_deliveries_across_pools_all_succeed() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db.sqlite");
        let a = SqliteStore::open_file(&path, SqliteOptions::default())
            .await
            .unwrap();
        let b = SqliteStore::open_file(&path, SqliteOptions::default())
            .await
            .unwrap();
        let shared = testsuite::delivery("installation", 1_700_000_000);
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            // Half share one delivery id; the others are distinct.
            let d = if i % 4 == 0 {
                shared.clone()
            } else {
                testsuite::delivery("installation", 1_700_000_000)
            };
            let inst = testsuite::installation(testsuite::unique_installation_id());
            let repo = testsuite::unique_repository_id();
            tasks.push(tokio::spawn(async move {
                let effects = [
                    WebhookEffect::UpsertInstallation(inst.clone()),
                    WebhookEffect::AddRepositories {
                        installation_id: inst.id,
                        repositories: vec![InstalledRepository {
                            id: repo,
                            full_name: "octo-org/repo".into(),
                        }],
                        as_of: None,
                    },
                ];
                let won = store.apply_webhook(&d, &effects).await;
                (i, won, repo)
            }));
        }
        let mut shared_winners = 0;
        for task in tasks {
            let (i, won, repo) = task.await.unwrap();
            let won = won.unwrap();
            if i % 4 == 0 {
                shared_winners += usize::from(won);
            } else {
                assert!(won, "a distinct delivery is applied");
            }
            assert_eq!(a.repository_binding(repo).await.unwrap().is_some(), won);
        }
        assert_eq!(shared_winners, 1);
        a.close().await;
        b.close().await;
    }

    #[tokio::test]
    async fn sqlite_has_no_outbox_notifications() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert!(store.outbox_notifications().await.is_none());
    }

    #[tokio::test]
    async fn memory_databases_are_separate() {
        let a = SqliteStore::open("sqlite::memory:").await.unwrap();
        let b = SqliteStore::open("sqlite::memory:").await.unwrap();
        assert!(a.consume_jti("i", "j", UnixTime(10)).await.unwrap());
        assert!(b.consume_jti("i", "j", UnixTime(10)).await.unwrap());
    }

    #[tokio::test]
    async fn corrupt_rows_are_reported() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let upload = testsuite::new_upload(testsuite::unique_repository_id());
        store.insert_upload(&upload).await.unwrap();
        sqlx::query("UPDATE uploads SET identity_json = '{' WHERE id = ?")
            .bind(upload.id.as_str())
            .execute(&store.pool)
            .await
            .unwrap();
        let err = store.get_upload(&upload.id).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_closed_store_is_unavailable() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        store.close().await;
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }
}
