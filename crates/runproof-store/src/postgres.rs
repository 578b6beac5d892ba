//! The PostgreSQL [`Store`]: one database (or one schema of it) shared by every replica.
//!
//! Same behaviour as the SQLite store; the differences are in how it is achieved:
//! - Uniqueness (`jti`, delivery id, idempotency key) is enforced by unique indexes and
//!   `INSERT … ON CONFLICT DO NOTHING`, which under READ COMMITTED waits for a
//!   concurrent insert of the same key to commit or roll back before deciding, so it
//!   holds across connections, pools and processes.
//! - A webhook delivery is one READ COMMITTED transaction that starts with the delivery
//!   insert: a concurrent application of the same delivery blocks on it, then sees the
//!   conflict and applies nothing.
//! - Flags are `BOOLEAN` columns, read back as 0/1 so that rows decode exactly as the
//!   SQLite ones do.
//! - Outbox claims lock their rows `FOR UPDATE SKIP LOCKED`, so concurrent workers on
//!   any replica split the due deliveries between them; every enqueue also notifies
//!   [`OUTBOX_CHANNEL`] at commit, so that listeners ([`PostgresStore::listen_outbox`])
//!   wake at once instead of at their next poll. The channel is database-wide: stores
//!   on other schemas of the same database wake each other spuriously, which is
//!   harmless.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, RunIdentity, UnixTime};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;

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
    UploadRow, WorkflowRunParams, WorkflowRunRow, clamp_limit, delivery_columns, into_deliveries,
    into_upload_ids, payload_json, sql_id, stored_count, truncate_error, upload_columns,
    workflow_run_columns, workflow_run_replaces,
};
use crate::session::{NewSession, SessionAsk, SessionRecord, SessionUse, refusal};

/// The longest schema name PostgreSQL keeps (`NAMEDATALEN - 1`); longer names would be
/// truncated silently, so that two different names could meet.
const MAX_SCHEMA_LEN: usize = 63;

/// The channel notified whenever deliveries are enqueued.
pub const OUTBOX_CHANNEL: &str = "runproof_outbox";

/// The first wait before listening again after a failure.
const LISTEN_MIN_BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait between attempts to listen again.
const LISTEN_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The columns of an installation, flags as 0/1 for [`InstallationRow`].
macro_rules! pg_installation_columns {
    () => {
        "id, account_id, account_login, repository_selection, \
         suspended::INT4::INT8 AS suspended, deleted::INT4::INT8 AS deleted, state_at, \
         unsettled::INT4::INT8 AS unsettled"
    };
}

/// The columns of a delivery, qualified for `UPDATE … FROM` (same order as
/// `delivery_columns!`).
macro_rules! pg_delivery_columns {
    () => {
        "outbox.id, outbox.event, outbox.upload_id, outbox.payload_json, outbox.status, \
         outbox.attempts, outbox.last_error, outbox.created_at, outbox.next_attempt_at"
    };
}

/// Tuning of [`PostgresStore::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Most connections the pool opens (at least 1).
    pub max_connections: u32,
    /// How long a caller waits for a connection (including opening one) before failing.
    pub acquire_timeout: Duration,
    /// Longest a statement may run before the server cancels it, set on every connection
    /// (`SET statement_timeout`). Zero disables the limit. Migrations are not limited.
    pub statement_timeout: Duration,
    /// The schema holding the tables, created when missing and put alone on every
    /// connection's `search_path`; when `None`, the server's default `search_path`
    /// (usually `public`). Only `[a-z0-9_]`, 1 to 63 characters.
    pub schema: Option<String>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            schema: None,
        }
    }
}

/// A [`Store`] in PostgreSQL, for several `runproof serve` replicas sharing a database.
///
/// Durability is the server's: a statement returns once its transaction is committed.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://…` or `postgresql://…`), creates
    /// [`PostgresOptions::schema`] when set and missing, and migrates it.
    ///
    /// Safe to call from several replicas at once: migrations take a database-wide
    /// advisory lock.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the schema name is not allowed,
    /// [`StoreError::Unavailable`] when the URL is invalid or the database cannot be
    /// reached (the message never contains the URL), [`StoreError::Migration`] when
    /// migrating fails.
    pub async fn connect(url: &str, opts: PostgresOptions) -> Result<Self, StoreError> {
        let schema = opts.schema.as_deref().map(validate_schema).transpose()?;
        // The parser's messages may quote the URL, password included: keep them out.
        let connect = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Unavailable("invalid PostgreSQL URL".into()))?;
        migrate(&connect, opts.acquire_timeout, schema).await?;
        let setup = session_sql(opts.statement_timeout, schema);
        let pool = pool_options(opts.max_connections, opts.acquire_timeout, setup)
            .connect_with(connect)
            .await
            .map_err(pg_error)?;
        Ok(Self { pool })
    }

    /// Listens for [`OUTBOX_CHANNEL`] notifications (sent when any replica enqueues
    /// deliveries) and forwards each as `()` to the returned channel, coalesced: at
    /// most one wake-up waits. The listener holds one connection of the pool; it
    /// reconnects with backoff after failures (sending a wake-up after each
    /// reconnection, since notifications sent meanwhile are lost) and stops when the
    /// receiver is dropped or the store is closed.
    ///
    /// Unlike [`Store::outbox_notifications`], fails when the first connection fails.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub async fn listen_outbox(&self) -> Result<mpsc::Receiver<()>, StoreError> {
        let listener = listen(&self.pool).await.map_err(pg_error)?;
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(forward_notifications(self.pool.clone(), tx, Some(listener)));
        Ok(rx)
    }

    /// Closes the pool, waiting for connections in use to be returned (outbox
    /// listeners stop and return theirs).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A pool whose every new connection first runs `setup` (built by [`session_sql`]).
fn pool_options(max_connections: u32, acquire_timeout: Duration, setup: String) -> PgPoolOptions {
    let setup: Arc<str> = setup.into();
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .after_connect(move |conn, _meta| {
            let setup = Arc::clone(&setup);
            Box::pin(async move {
                sqlx::raw_sql(AssertSqlSafe(setup)).execute(conn).await?;
                Ok(())
            })
        })
}

/// Creates the schema (when set) and applies pending migrations, through a pool of its
/// own: one connection, without a statement timeout (a migration may take long), closed
/// afterwards.
async fn migrate(
    connect: &PgConnectOptions,
    acquire_timeout: Duration,
    schema: Option<&str>,
) -> Result<(), StoreError> {
    let pool = pool_options(1, acquire_timeout, session_sql(Duration::ZERO, schema))
        .connect_with(connect.clone())
        .await
        .map_err(pg_error)?;
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    if let Some(schema) = schema {
        // Under the migrator's advisory lock, so that replicas starting together do not
        // race on `CREATE SCHEMA IF NOT EXISTS` (which is not concurrency-safe).
        migrator.create_schema(quote_ident(schema));
    }
    let migrated = migrator
        .run(&pool)
        .await
        .map_err(|e| StoreError::Migration(e.to_string()));
    pool.close().await;
    migrated
}

/// Checks a schema name: only `[a-z0-9_]`, 1 to [`MAX_SCHEMA_LEN`] bytes.
fn validate_schema(schema: &str) -> Result<&str, StoreError> {
    let valid = !schema.is_empty()
        && schema.len() <= MAX_SCHEMA_LEN
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(schema)
    } else {
        Err(StoreError::Invalid(
            "PostgreSQL schema name must be 1 to 63 characters of [a-z0-9_]".into(),
        ))
    }
}

/// A validated identifier, quoted (so that one starting with a digit is accepted too).
fn quote_ident(name: &str) -> String {
    format!("\"{name}\"")
}

/// The statements run on every new connection. Built from a number and a validated
/// schema name only.
fn session_sql(statement_timeout: Duration, schema: Option<&str>) -> String {
    // PostgreSQL takes milliseconds up to i32::MAX; a non-zero duration below 1 ms must
    // not become 0, which would disable the limit.
    let mut ms = statement_timeout.as_millis().min(i32::MAX as u128);
    if ms == 0 && !statement_timeout.is_zero() {
        ms = 1;
    }
    let mut sql = format!("SET statement_timeout = {ms}");
    if let Some(schema) = schema {
        sql.push_str("; SET search_path TO ");
        sql.push_str(&quote_ident(schema));
    }
    sql
}

/// Maps a database error to a message fit for logs and responses.
fn pg_error(e: sqlx::Error) -> StoreError {
    let msg = match &e {
        sqlx::Error::Database(d) => {
            // Class 22 (data exception): a value the database refuses, such as a NUL
            // character in text. A caller's value, not an outage.
            if d.code().is_some_and(|c| c.starts_with("22")) {
                return StoreError::Invalid(format!("value refused: {}", d.message()));
            }
            format!("database error: {}", d.message())
        }
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

/// A failed `COMMIT`: an answer from the database is a definite rollback; anything else
/// (the connection lost while the `COMMIT` was in flight) leaves the outcome unknown.
fn pg_commit_error(e: sqlx::Error) -> StoreError {
    if matches!(e, sqlx::Error::Database(_)) {
        return pg_error(e);
    }
    match pg_error(e) {
        StoreError::Unavailable(msg) => StoreError::CommitUnknown(msg),
        other => other,
    }
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
/// `created_at`, inside the caller's transaction, and notifies [`OUTBOX_CHANNEL`]
/// (delivered to listeners when the transaction commits, not at all if it rolls back).
async fn insert_deliveries(
    conn: &mut PgConnection,
    deliveries: &[NewDelivery],
    payloads: &[String],
    created_at: UnixTime,
) -> Result<(), StoreError> {
    if deliveries.is_empty() {
        return Ok(());
    }
    for (delivery, payload) in deliveries.iter().zip(payloads) {
        let done = sqlx::query(
            "INSERT INTO outbox (id, event, upload_id, payload_json, status, attempts, \
             last_error, created_at, next_attempt_at, locked_until, updated_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, NULL, $5, $5, NULL, $5)",
        )
        .bind(&delivery.id)
        .bind(&delivery.event)
        .bind(&delivery.upload_id)
        .bind(payload)
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
            Err(e) => return Err(pg_error(e)),
        }
    }
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(OUTBOX_CHANNEL)
        .execute(&mut *conn)
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Deletes the reservation an inserted upload consumes, inside the insert's transaction
/// (so that a reservation's sums see either the reservation or the upload, never
/// neither).
async fn consume_reservation(
    conn: &mut PgConnection,
    id: Option<&ReservationId>,
) -> Result<(), StoreError> {
    if let Some(id) = id {
        sqlx::query(reservation::RELEASE_SQL)
            .bind(id.as_str())
            .execute(&mut *conn)
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}

/// Listens on [`OUTBOX_CHANNEL`] over a connection of `pool`.
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(OUTBOX_CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications of [`OUTBOX_CHANNEL`] to `tx` (coalesced: one pending wake-up
/// at most) until `tx`'s receiver is dropped or the pool is closed. Starts with
/// `listener` when given; (re)connects with exponential backoff, and sends a wake-up
/// after each reconnection, since notifications sent meanwhile are lost.
async fn forward_notifications(
    pool: PgPool,
    tx: mpsc::Sender<()>,
    mut listener: Option<PgListener>,
) {
    let mut backoff = LISTEN_MIN_BACKOFF;
    loop {
        let mut current = match listener.take() {
            Some(current) => current,
            None => {
                let attempt = tokio::select! {
                    () = tx.closed() => return,
                    attempt = listen(&pool) => attempt,
                };
                match attempt {
                    Ok(current) => {
                        if !wake(&tx) {
                            return;
                        }
                        current
                    }
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %pg_error(e), retry_in = ?backoff, "cannot listen for outbox notifications");
                        if !pause(&tx, &mut backoff).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        loop {
            let next = tokio::select! {
                () = tx.closed() => return,
                next = current.recv() => next,
            };
            match next {
                Ok(_) => {
                    backoff = LISTEN_MIN_BACKOFF;
                    if !wake(&tx) {
                        return;
                    }
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %pg_error(e), retry_in = ?backoff, "outbox notifications interrupted");
                    drop(current);
                    if !pause(&tx, &mut backoff).await {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Sends a wake-up unless one is already waiting. Returns `false` when nobody listens.
fn wake(tx: &mpsc::Sender<()>) -> bool {
    !matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(())))
}

/// Waits `backoff` (then doubles it, up to [`LISTEN_MAX_BACKOFF`]). Returns `false` when
/// the receiver was dropped meanwhile.
async fn pause(tx: &mpsc::Sender<()>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(LISTEN_MAX_BACKOFF);
    tokio::select! {
        () = tx.closed() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// Builds the listing statement from fixed fragments; every value is bound.
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
        sql.push_str(&format!(" AND status = ${}", next()));
    }
    if filter.repository_id.is_some() {
        sql.push_str(&format!(" AND repository_id = ${}", next()));
    }
    if with_cursor {
        sql.push_str(&format!(" AND id < ${}", next()));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", next()));
    sql
}

/// Applies one webhook effect inside the delivery's transaction; `now` is the delivery's
/// receipt time.
async fn apply_effect(
    conn: &mut PgConnection,
    effect: &WebhookEffect,
    now: UnixTime,
) -> Result<(), StoreError> {
    match effect {
        WebhookEffect::UpsertInstallation(installation) => {
            upsert_installation(conn, installation, now).await
        }
        WebhookEffect::DeleteInstallation(installation_id) => {
            sqlx::query("UPDATE installations SET deleted = TRUE, updated_at = $1 WHERE id = $2")
                .bind(now.0)
                .bind(sql_id(installation_id.get())?)
                .execute(&mut *conn)
                .await
                .map_err(pg_error)?;
            Ok(())
        }
        WebhookEffect::AddRepositories {
            installation_id,
            repositories,
            as_of,
        } => {
            // Row locks in id order, so that two deliveries listing the same repositories
            // in different orders cannot deadlock. Stable: a repeated id keeps its last name.
            let mut sorted: Vec<&InstalledRepository> = repositories.iter().collect();
            sorted.sort_by_key(|r| r.id.get());
            for repository in sorted {
                list_repository(conn, *installation_id, repository, false, *as_of, now).await?;
            }
            Ok(())
        }
        WebhookEffect::RemoveRepositories {
            installation_id,
            repository_ids,
            as_of,
        } => {
            let mut sorted: Vec<RepositoryId> = repository_ids.clone();
            sorted.sort_by_key(|id| id.get());
            for id in sorted {
                let repository = InstalledRepository {
                    id,
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
    conn: &mut PgConnection,
    installation: &Installation,
    now: UnixTime,
) -> Result<(), StoreError> {
    let id = sql_id(installation.id.get())?;
    let inserted = sqlx::query(
        "INSERT INTO installations (id, account_id, account_login, repository_selection, \
         suspended, deleted, updated_at, state_at, unsettled) \
         VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, FALSE) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(sql_id(installation.account_id.get())?)
    .bind(&installation.account_login)
    .bind(installation.repository_selection.as_str())
    .bind(installation.suspended)
    .bind(now.0)
    .bind(installation.as_of.map_or(0, |t| t.0))
    .execute(&mut *conn)
    .await
    .map_err(pg_error)?;
    if inserted.rows_affected() == 1 {
        return Ok(());
    }
    // The row lock orders concurrent deliveries for one installation.
    let row = sqlx::query_as::<_, InstallationRow>(concat!(
        "SELECT ",
        pg_installation_columns!(),
        " FROM installations WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .map_err(pg_error)?;
    let kept = row
        .access()?
        .merge(InstallationAccess::of(installation), installation.as_of);
    sqlx::query(
        "UPDATE installations SET account_id = $1, account_login = $2, \
         repository_selection = $3, suspended = $4, state_at = $5, unsettled = $6, \
         updated_at = $7 WHERE id = $8",
    )
    .bind(sql_id(installation.account_id.get())?)
    .bind(&installation.account_login)
    .bind(kept.state.selection.as_str())
    .bind(kept.state.suspended)
    .bind(kept.as_of)
    .bind(kept.unsettled)
    .bind(now.0)
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Lists (`removed` false) or removes a repository of an installation as of `as_of`,
/// merging with what is kept by event time. A removal of a repository never listed
/// leaves a tombstone: "removed" must not read as "unknown", which a caller might resolve
/// through the account's installation.
async fn list_repository(
    conn: &mut PgConnection,
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
         removed, updated_at, state_at, unsettled) VALUES ($1, $2, $3, $4, $5, $6, FALSE) \
         ON CONFLICT (installation_id, repository_id) DO NOTHING",
    )
    .bind(installation_id)
    .bind(repository_id)
    .bind(&repository.full_name)
    .bind(removed)
    .bind(now.0)
    .bind(as_of.map_or(0, |t| t.0))
    .execute(&mut *conn)
    .await
    .map_err(pg_error)?;
    if inserted.rows_affected() == 1 {
        return Ok(());
    }
    let row = sqlx::query_as::<_, ListedRow>(
        "SELECT removed::INT4::INT8 AS removed, state_at, unsettled::INT4::INT8 AS unsettled \
         FROM installation_repositories WHERE installation_id = $1 AND repository_id = $2 \
         FOR UPDATE",
    )
    .bind(installation_id)
    .bind(repository_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(pg_error)?;
    let kept = row.access()?.merge(Removed(removed), as_of);
    sqlx::query(
        "UPDATE installation_repositories SET \
         full_name = CASE WHEN $1 = '' THEN full_name ELSE $1 END, \
         removed = $2, state_at = $3, unsettled = $4, updated_at = $5 \
         WHERE installation_id = $6 AND repository_id = $7",
    )
    .bind(&repository.full_name)
    .bind(kept.state.0)
    .bind(kept.as_of)
    .bind(kept.unsettled)
    .bind(now.0)
    .bind(installation_id)
    .bind(repository_id)
    .execute(&mut *conn)
    .await
    .map_err(pg_error)?;
    Ok(())
}

async fn upsert_workflow_run(
    conn: &mut PgConnection,
    run: &WorkflowRunRecord,
) -> Result<(), StoreError> {
    let params = WorkflowRunParams::new(run)?;
    sqlx::query(concat!(
        "INSERT INTO workflow_runs (",
        workflow_run_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
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
    .map_err(pg_error)?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn consume_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO used_jtis (issuer, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer, jti) DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at.0)
        .execute(&self.pool)
        .await
        .map_err(pg_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_expired_jtis(&self, now: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM used_jtis WHERE expires_at < $1")
            .bind(now.0)
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(done.rows_affected())
    }

    async fn insert_upload(&self, upload: &NewUpload) -> Result<UploadRecord, StoreError> {
        let params = UploadParams::new(upload)?;
        let payloads = delivery_payloads(&upload.deliveries)?;
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        let inserted = sqlx::query_as::<_, UploadRow>(concat!(
            "INSERT INTO uploads (id, status, mode, name, size, sha256, content_type, \
             created_at, verified_at, identity_json, repository_id, reason, idempotency_key, \
             pending_repository_id, pending_run_id, pending_run_attempt, pending_head_sha, \
             idempotency_scope) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18) RETURNING ",
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
                tx.rollback().await.map_err(pg_error)?;
                // A concurrent insert with the same key has committed by now (the
                // violation is only raised once it has), so the lookup finds it.
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
            Err(e) => return Err(pg_error(e)),
        };
        let record = row.into_record()?;
        insert_deliveries(&mut tx, &upload.deliveries, &payloads, upload.created_at).await?;
        consume_reservation(&mut tx, upload.pending_reservation.as_ref()).await?;
        tx.commit().await.map_err(pg_commit_error)?;
        Ok(record)
    }

    async fn commit_uploads(
        &self,
        writes: &[crate::UploadWrite],
    ) -> Result<Vec<Result<crate::Committed, StoreError>>, StoreError> {
        crate::sql::commit::commit_uploads(&crate::sql::Pool::Postgres(self.pool.clone()), writes)
            .await
    }

    async fn inline_body(&self, id: &UploadId) -> Result<Option<Vec<u8>>, StoreError> {
        crate::sql::commit::inline_body(&crate::sql::Pool::Postgres(self.pool.clone()), id).await
    }

    async fn delete_inline_body(&self, id: &UploadId) -> Result<bool, StoreError> {
        crate::sql::commit::delete_inline_body(&crate::sql::Pool::Postgres(self.pool.clone()), id)
            .await
    }

    async fn jti_is_spent(&self, issuer: &str, jti: &str) -> Result<bool, StoreError> {
        crate::sql::commit::jti_is_spent(
            &crate::sql::Pool::Postgres(self.pool.clone()),
            issuer,
            jti,
        )
        .await
    }

    async fn latest_jti_expiry(&self) -> Result<Option<UnixTime>, StoreError> {
        Ok(
            crate::sql::commit::latest_jti_expiry(&crate::sql::Pool::Postgres(self.pool.clone()))
                .await?
                .map(UnixTime),
        )
    }

    async fn get_upload(&self, id: &UploadId) -> Result<Option<UploadRecord>, StoreError> {
        sqlx::query_as::<_, UploadRow>(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_error)?
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
            " FROM uploads WHERE idempotency_scope = $1 AND idempotency_key = $2"
        ))
        .bind(scope.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_error)?
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
        let mut query = sqlx::query_as::<_, UploadRow>(AssertSqlSafe(sql));
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
            .map_err(pg_error)?;
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
        // READ COMMITTED: of two transactions inserting the same delivery id, the second
        // waits for the first to end, then inserts (the first rolled back) or does
        // nothing (it committed).
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        let recorded = sqlx::query(
            "INSERT INTO webhook_deliveries (id, event, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&delivery.id)
        .bind(&delivery.event)
        .bind(delivery.received_at.0)
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
        if recorded.rows_affected() == 0 {
            tx.rollback().await.map_err(pg_error)?;
            return Ok(false);
        }
        for effect in effects {
            // On error the transaction is dropped, which rolls it back: the delivery id
            // is not recorded and a retry applies everything.
            apply_effect(&mut tx, effect, delivery.received_at).await?;
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(true)
    }

    async fn repository_binding(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<RepositoryBinding>, StoreError> {
        sqlx::query_as::<_, BindingRow>(
            "SELECT i.id AS installation_id, i.account_id, \
             i.suspended::INT4::INT8 AS suspended, i.deleted::INT4::INT8 AS deleted, \
             r.removed::INT4::INT8 AS removed, \
             r.unsettled::INT4::INT8 AS repository_unsettled, \
             i.unsettled::INT4::INT8 AS installation_unsettled \
             FROM installation_repositories r JOIN installations i ON i.id = r.installation_id \
             WHERE r.repository_id = $1 \
             ORDER BY CASE WHEN NOT r.removed AND NOT i.deleted THEN 0 ELSE 1 END, \
             i.suspended, r.state_at DESC, r.updated_at DESC, i.updated_at DESC, i.id DESC \
             LIMIT 1",
        )
        .bind(sql_id(repository_id.get())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_error)?
        .map(BindingRow::into_binding)
        .transpose()
    }

    async fn get_installation(
        &self,
        id: InstallationId,
    ) -> Result<Option<KnownInstallation>, StoreError> {
        sqlx::query_as::<_, InstallationRow>(concat!(
            "SELECT ",
            pg_installation_columns!(),
            " FROM installations WHERE id = $1"
        ))
        .bind(sql_id(id.get())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_error)?
        .map(InstallationRow::into_installation)
        .transpose()
    }

    async fn installation_for_account(
        &self,
        account_id: OwnerId,
    ) -> Result<Option<KnownInstallation>, StoreError> {
        sqlx::query_as::<_, InstallationRow>(concat!(
            "SELECT ",
            pg_installation_columns!(),
            " FROM installations WHERE account_id = $1 \
             ORDER BY deleted, state_at DESC, updated_at DESC, id DESC LIMIT 1"
        ))
        .bind(sql_id(account_id.get())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_error)?
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
            " FROM workflow_runs WHERE repository_id = $1 AND run_id = $2 AND run_attempt = $3"
        ))
        .bind(sql_id(repository_id.get())?)
        .bind(sql_id(run_id.get())?)
        .bind(i64::from(run_attempt))
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_error)?
        .map(WorkflowRunRow::into_record)
        .transpose()
    }

    async fn purge_deliveries(&self, before: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM webhook_deliveries WHERE received_at < $1")
            .bind(before.0)
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(done.rows_affected())
    }

    async fn purge_workflow_runs(&self, before: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM workflow_runs WHERE received_at < $1")
            .bind(before.0)
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
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
             FROM uploads WHERE pending_repository_id = $1 AND pending_run_id = $2 \
             AND pending_run_attempt = $3 AND status = 'pending' ORDER BY id"
        ))
        .bind(sql_id(repository_id.get())?)
        .bind(sql_id(run_id.get())?)
        .bind(i64::from(run_attempt))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_error)?
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
        // READ COMMITTED: a concurrent resolution waits for the row lock, then re-checks
        // `status = 'pending'` against the committed row and changes nothing.
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        let done = sqlx::query(
            "UPDATE uploads SET status = $1, identity_json = COALESCE($2, identity_json), \
             repository_id = COALESCE($3, repository_id), reason = $4, verified_at = $5 \
             WHERE id = $6 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(resolution.identity_json.as_deref())
        .bind(resolution.repository_id)
        .bind(reason)
        .bind(resolution.verified_at)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
        if done.rows_affected() == 0 {
            tx.rollback().await.map_err(pg_error)?;
            return Ok(false);
        }
        insert_deliveries(&mut tx, deliveries, &payloads, now).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(true)
    }

    async fn blobs_to_delete(&self, limit: u32) -> Result<Vec<UploadId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM uploads WHERE NOT blob_deleted \
             AND status IN ('rejected', 'expired') ORDER BY id LIMIT $1",
        )
        .bind(i64::from(clamp_limit(limit)))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_error)?;
        into_upload_ids(ids)
    }

    async fn mark_blob_deleted(&self, id: &UploadId) -> Result<(), StoreError> {
        sqlx::query("UPDATE uploads SET blob_deleted = TRUE WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn ids_without_upload(&self, ids: &[UploadId]) -> Result<Vec<UploadId>, StoreError> {
        let mut missing = Vec::new();
        for chunk in ids.chunks(ID_BATCH) {
            let ids: Vec<&str> = chunk.iter().map(UploadId::as_str).collect();
            let batch: Vec<String> = sqlx::query_scalar(
                "SELECT t.id FROM unnest($1::text[]) WITH ORDINALITY AS t(id, n) \
                 WHERE NOT EXISTS (SELECT 1 FROM uploads AS u WHERE u.id = t.id) \
                 ORDER BY t.n",
            )
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(pg_error)?;
            missing.extend(batch.into_iter().map(UploadId));
        }
        Ok(missing)
    }

    async fn pending_usage(&self, repository_id: RepositoryId) -> Result<(u64, u64), StoreError> {
        let (count, bytes): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM uploads \
             WHERE pending_repository_id = $1 AND status = 'pending'",
        )
        .bind(sql_id(repository_id.get())?)
        .fetch_one(&self.pool)
        .await
        .map_err(pg_error)?;
        Ok((stored_count(count, "count")?, stored_count(bytes, "size")?))
    }

    async fn pending_total(&self) -> Result<(u64, u64), StoreError> {
        let (count, bytes): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM uploads \
             WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(pg_error)?;
        Ok((stored_count(count, "count")?, stored_count(bytes, "size")?))
    }

    async fn run_upload_count(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
    ) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM uploads WHERE pending_repository_id = $1 \
             AND pending_run_id = $2",
        )
        .bind(sql_id(repository_id.get())?)
        .bind(sql_id(run_id.get())?)
        .fetch_one(&self.pool)
        .await
        .map_err(pg_error)?;
        stored_count(count, "count")
    }

    async fn reserve_pending(&self, r: &PendingReservation) -> Result<Reserved, StoreError> {
        let params = ReservationParams::new(r)?;
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        // Held until commit: reservations wait for each other. Inserts need not: one
        // that consumes a reservation only lowers the sums, and a statement of READ
        // COMMITTED sees it whole or not at all.
        sqlx::query(reservation::PG_LOCK_SQL)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        sqlx::query(reservation::PURGE_SQL)
            .bind(r.created_at.0)
            .execute(&mut *tx)
            .await
            .map_err(pg_error)?;
        let sums: (i64, i64, i64, i64) = sqlx::query_as(reservation::SUMS_SQL)
            .bind(params.repository_id)
            .bind(params.run_id)
            .bind(params.run_attempt)
            .bind(params.counted_sha.as_deref())
            .bind(params.counted_since)
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_error)?;
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
                Err(e) => return Err(pg_error(e)),
            }
        }
        tx.commit().await.map_err(pg_error)?;
        Ok(outcome)
    }

    async fn release_pending(&self, id: &ReservationId) -> Result<(), StoreError> {
        sqlx::query(reservation::RELEASE_SQL)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
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
            .map_err(pg_error)?
            .into_iter()
            .map(WorkflowRunRow::into_record)
            .collect()
    }

    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        let params = SessionParams::new(session)?;
        let done = sqlx::query(
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
            Err(e) if is_unique_violation(&e) => Err(StoreError::Invalid(
                "a session with this token exists".into(),
            )),
            Err(e) => Err(pg_error(e)),
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
            .map_err(pg_error)?;
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
            .map_err(pg_error)?;
        Ok(())
    }

    async fn revoke_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE sessions SET revoked = TRUE WHERE token_hash = $1 AND NOT revoked")
                .bind(token_hash)
                .execute(&self.pool)
                .await
                .map_err(pg_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn get_session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        sqlx::query_as::<_, SessionRow>(
            "SELECT identity_json, expires_at, revoked::INT4::INT8 AS revoked, max_uploads, \
             max_bytes, uploads_used, bytes_used FROM sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(pg_error)?
        .map(SessionRow::into_record)
        .transpose()
    }

    async fn purge_sessions(&self, before: UnixTime) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(before.0)
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
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
        // SKIP LOCKED: concurrent claimers pass over each other's rows instead of
        // waiting; a row committed meanwhile is re-checked and, leased, left out. The
        // pick is a materialized CTE rather than `id IN (subquery)`: a semi-join may
        // rescan its subquery, which then skips the rows this statement already updated
        // and picks more than the limit.
        let rows = sqlx::query_as::<_, DeliveryRow>(concat!(
            "WITH picked AS MATERIALIZED (SELECT id FROM outbox \
             WHERE status = 'pending' AND next_attempt_at <= $2 \
             AND (locked_until IS NULL OR locked_until < $2) \
             ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE outbox SET locked_until = $1, updated_at = $2 FROM picked \
             WHERE outbox.id = picked.id RETURNING ",
            pg_delivery_columns!()
        ))
        .bind(now.plus(lease_seconds.max(0)).0)
        .bind(now.0)
        .bind(i64::from(clamp_limit(limit)))
        .fetch_all(&self.pool)
        .await
        .map_err(pg_error)?;
        into_deliveries(rows)
    }

    async fn complete_delivery(&self, id: &str, now: UnixTime) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'delivered', locked_until = NULL, \
             attempts = attempts + 1, updated_at = $1 WHERE id = $2",
        )
        .bind(now.0)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(pg_error)?;
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
        .map_err(pg_error)?;
        Ok(())
    }

    async fn list_deliveries(
        &self,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let limit = i64::from(clamp_limit(limit));
        let rows = match status {
            Some(status) => {
                sqlx::query_as::<_, DeliveryRow>(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM outbox WHERE status = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
                ))
                .bind(status.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query_as::<_, DeliveryRow>(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM outbox ORDER BY created_at DESC, id DESC LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        };
        rows.map_err(pg_error)?
            .into_iter()
            .map(DeliveryRow::into_record)
            .collect()
    }

    async fn retry_delivery(
        &self,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(pg_error)?;
        sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $1, updated_at = $1 \
             WHERE id = $2 AND status IN ('pending', 'failed')",
        )
        .bind(now.0)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(pg_error)?;
        let row = sqlx::query_as::<_, DeliveryRow>(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM outbox WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        row.map(DeliveryRow::into_record).transpose()
    }

    async fn outbox_notifications(&self) -> Option<mpsc::Receiver<()>> {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(forward_notifications(self.pool.clone(), tx, None));
        Some(rx)
    }

    async fn namespace(&self) -> Result<Option<NamespaceRecord>, StoreError> {
        sqlx::query_as(namespace::NAMESPACE_SQL)
            .fetch_optional(&self.pool)
            .await
            .map_err(pg_error)
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
            .map_err(pg_error)?;
        sqlx::query_as(namespace::NAMESPACE_SQL)
            .fetch_one(&self.pool)
            .await
            .map_err(pg_error)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers spawn it (`tokio::spawn` needs `Send`); sqlx's `Acquire` bounds can make
    /// an async fn silently lose `Send`.
    #[test]
    fn connecting_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let connect = PostgresStore::connect("postgres://localhost/db", PostgresOptions::default());
        assert_send(&connect);
    }

    #[test]
    fn schema_names_are_checked() {
        for ok in ["rp", "rp_test_0a9", "0abc", &"a".repeat(63)] {
            assert_eq!(validate_schema(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "Upper",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            "é",
            &"a".repeat(64),
        ] {
            let err = validate_schema(bad).unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn session_sql_sets_the_timeout_and_schema() {
        assert_eq!(
            session_sql(Duration::from_secs(10), None),
            "SET statement_timeout = 10000"
        );
        assert_eq!(
            session_sql(Duration::from_micros(10), Some("rp")),
            "SET statement_timeout = 1; SET search_path TO \"rp\""
        );
        assert_eq!(
            session_sql(Duration::ZERO, None),
            "SET statement_timeout = 0"
        );
        assert_eq!(
            session_sql(Duration::from_secs(u64::MAX), None),
            format!("SET statement_timeout = {}", i32::MAX)
        );
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
            status: Some(crate::UploadStatus::Pending),
            repository_id: Some(RepositoryId(1)),
        };
        assert!(list_sql(&both, true).ends_with(
            " AND status = $1 AND repository_id = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
        ));
    }

    /// Without a server: a bad URL or an unreachable one is `Unavailable`, and neither
    /// message repeats the password.
    #[tokio::test]
    async fn connection_errors_do_not_leak_the_url() {
        let opts = PostgresOptions {
            acquire_timeout: Duration::from_secs(2),
            ..PostgresOptions::default()
        };
        for url in [
            "postgres://user:s3cr3t-pw@127.0.0.1:1/db",
            "postgres://user:s3cr3t-pw@[::1/db",
            "postgres://user:s3cr3t-pw@127.0.0.1:1/db?sslmode=bogus",
        ] {
            let err = PostgresStore::connect(url, opts.clone()).await.unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("s3cr3t"), "{shown}");
        }
        let bad_schema = PostgresOptions {
            schema: Some("x; DROP TABLE uploads".into()),
            ..opts
        };
        let err = PostgresStore::connect("postgres://u:s3cr3t-pw@127.0.0.1:1/db", bad_schema)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    }
}
