//! The SQLite [`Store`]: one file in WAL mode, or an in-memory database for tests.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use runproof_core::{RepositoryId, UnixTime};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::Store;
use crate::model::{Cursor, ListFilter, NewUpload, StoreError, UploadId, UploadRecord};
use crate::row::{UploadParams, UploadRow, clamp_limit, sql_id, upload_columns};

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
        let inserted = sqlx::query_as::<_, UploadRow>(concat!(
            "INSERT INTO uploads (id, status, mode, name, size, sha256, content_type, \
             created_at, verified_at, identity_json, repository_id, reason, idempotency_key) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ",
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
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => row.into_record(),
            Err(e) if is_unique_violation(&e) => {
                if let Some(key) = &upload.idempotency_key {
                    let repo = upload.identity.repository_id;
                    if let Some(existing) = self.find_by_idempotency_key(repo, key).await? {
                        return Err(StoreError::Conflict(Box::new(existing)));
                    }
                }
                // Not the idempotency key, so the id itself: a caller bug, not an outage.
                Err(StoreError::Invalid(format!(
                    "upload {} already exists",
                    upload.id
                )))
            }
            Err(e) => Err(db_error(e)),
        }
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
        repository_id: RepositoryId,
        key: &str,
    ) -> Result<Option<UploadRecord>, StoreError> {
        sqlx::query_as::<_, UploadRow>(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE repository_id = ? AND idempotency_key = ?"
        ))
        .bind(sql_id(repository_id.get())?)
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
