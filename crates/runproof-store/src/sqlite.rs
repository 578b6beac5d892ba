//! Opening the store on SQLite: one file in WAL mode, or an in-memory database for
//! tests. The statements are [`SqlStore`]'s, shared with PostgreSQL.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{StoreError, Unavailable};
use crate::sql::exec::{Pool, db_error};
use crate::sql::store::SqlStore;

/// A [`SqlStore`] opened on SQLite ([`SqliteStore::open`]).
///
/// Durability: WAL journal with `synchronous = FULL`, so an upload acknowledged after
/// [`crate::Store::insert_upload`] returns survives a crash or power loss.
pub type SqliteStore = SqlStore;

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

impl SqlStore {
    /// Opens (creating when missing, with its directory) and migrates the SQLite
    /// database at `url_or_path` with default [`SqliteOptions`].
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
            let connect = SqliteConnectOptions::from_str("sqlite::memory:")
                .map_err(|e| StoreError::Unavailable(Unavailable::SqliteMemoryUrl(e)))?;
            return open_pool(connect, &options, true).await;
        }
        let connect = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path)
                .map_err(|e| StoreError::Unavailable(Unavailable::SqliteUrl(e)))?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        };
        open_pool(connect, &options, false).await
    }

    /// Opens (creating when missing, with its directory) and migrates the SQLite
    /// database file at `path`. Unlike a URL, the path is taken literally (`?` and `%`
    /// are not special).
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub async fn open_file(
        path: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::new().filename(path);
        open_pool(connect, &options, false).await
    }
}

/// Opens the pool with the durability and locking every connection needs, and migrates.
async fn open_pool(
    connect: SqliteConnectOptions,
    options: &SqliteOptions,
    in_memory: bool,
) -> Result<SqlStore, StoreError> {
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
        create_parent(connect.get_filename())?;
        connect = connect.journal_mode(SqliteJournalMode::Wal);
        pool = pool.max_connections(options.max_connections.max(1));
    }
    let pool: SqlitePool = pool.connect_with(connect).await.map_err(db_error)?;
    sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
    Ok(SqlStore::new(Pool::Sqlite(pool)))
}

/// Creates the directory of the database file when missing (SQLite creates the file,
/// not its directory).
fn create_parent(file: &Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(Unavailable::CreateDirectory {
                    path: parent.to_owned(),
                    source: e,
                })
            })
        }
        _ => Ok(()),
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

#[cfg(test)]
mod tests {
    use runproof_core::UnixTime;

    use super::*;
    use crate::sql::exec::query;
    use crate::{InstalledRepository, Store, WebhookEffect, testsuite};

    #[test]
    fn memory_urls_are_recognised() {
        assert!(is_memory_url("sqlite::memory:"));
        assert!(is_memory_url("sqlite://:memory:"));
        assert!(is_memory_url("sqlite://?mode=memory"));
        assert!(!is_memory_url("sqlite://a.db"));
        assert!(!is_memory_url("a.db"));
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
        let (mode,): (String,) = query("PRAGMA journal_mode")
            .fetch_one(&c.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        // 2 is FULL.
        let (sync,): (i64,) = query("PRAGMA synchronous")
            .fetch_one(&c.pool)
            .await
            .unwrap();
        assert_eq!(sync, 2);
        c.close().await;
    }

    #[tokio::test]
    async fn missing_directories_are_created() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("a").join("b").join("db.sqlite");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        store.ping().await.unwrap();
        assert!(path.is_file());
        store.close().await;
    }

    /// Writers on two pools of one file (as two processes would be) neither fail with
    /// `SQLITE_BUSY` nor apply a delivery twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn concurrent_webhook_deliveries_across_pools_all_succeed() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("db.sqlite");
        let a = SqliteStore::open_file(&path, SqliteOptions::default())
            .await
            .unwrap();
        let b = SqliteStore::open_file(&path, SqliteOptions::default())
            .await
            .unwrap();
        let shared = testsuite::webhook_delivery("installation", 1_700_000_000);
        let mut tasks = Vec::new();
        for i in 0..64 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            // Half share one delivery id; the others are distinct.
            let d = if i % 4 == 0 {
                shared.clone()
            } else {
                testsuite::webhook_delivery("installation", 1_700_000_000)
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
        let err = store.listen_outbox().await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
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
        query("UPDATE uploads SET identity_json = '{' WHERE id = $1")
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
