//! Connecting the store to PostgreSQL: one database (or one schema of it) shared by
//! every replica. The statements are [`SqlStore`]'s, shared with SQLite.
//!
//! Every enqueue notifies [`crate::OUTBOX_CHANNEL`] at commit, so that listeners
//! ([`PostgresStore::listen_outbox`]) wake at once instead of at their next poll (see
//! `sql/notify.rs`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::mpsc;

use crate::error::{Invalid, StoreError, Unavailable};
use crate::sql::exec::{Pool, db_error};
use crate::sql::notify;
use crate::sql::store::SqlStore;

/// The longest schema name PostgreSQL keeps (`NAMEDATALEN - 1`); longer names would be
/// truncated silently, so that two different names could meet.
const MAX_SCHEMA_LEN: usize = 63;

/// A [`SqlStore`] connected to PostgreSQL ([`PostgresStore::connect`]), for several
/// `runproof serve` replicas sharing a database.
///
/// Durability is the server's: a statement returns once its transaction is committed.
pub type PostgresStore = SqlStore;

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

impl SqlStore {
    /// Connects to the PostgreSQL database at `url` (`postgres://…` or
    /// `postgresql://…`), creates [`PostgresOptions::schema`] when set and missing, and
    /// migrates it.
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
            .map_err(|_| StoreError::Unavailable(Unavailable::PostgresUrl))?;
        migrate(&connect, opts.acquire_timeout, schema).await?;
        let setup = session_sql(opts.statement_timeout, schema);
        let pool = pool_options(opts.max_connections, opts.acquire_timeout, setup)
            .connect_with(connect)
            .await
            .map_err(db_error)?;
        Ok(Self::new(Pool::Postgres(pool)))
    }

    /// Listens for [`crate::OUTBOX_CHANNEL`] notifications (sent when any replica enqueues
    /// pushes) and forwards each as `()` to the returned channel, coalesced: at
    /// most one wake-up waits. The listener holds one connection of the pool; it
    /// reconnects with backoff after failures (sending a wake-up after each
    /// reconnection, since notifications sent meanwhile are lost) and stops when the
    /// receiver is dropped or the store is closed.
    ///
    /// Unlike [`crate::Store::outbox_notifications`], fails when the first connection
    /// fails.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached,
    /// [`StoreError::Invalid`] when the store is not on PostgreSQL.
    pub async fn listen_outbox(&self) -> Result<mpsc::Receiver<()>, StoreError> {
        notify::listen_outbox(&self.pool).await
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
        .map_err(db_error)?;
    let mut migrator = sqlx::migrate!("./migrations/postgres");
    if let Some(schema) = schema {
        // Under the migrator's advisory lock, so that replicas starting together do not
        // race on `CREATE SCHEMA IF NOT EXISTS` (which is not concurrency-safe).
        migrator.create_schema(quote_ident(schema));
    }
    let migrated = migrator.run(&pool).await.map_err(StoreError::from);
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
        Err(StoreError::Invalid(Invalid::SchemaName))
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
