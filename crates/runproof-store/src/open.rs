//! Opening the [`Store`] a database URL names, whichever backend it is.

use std::sync::Arc;
use std::time::Duration;

use crate::Store;
use crate::model::StoreError;
use crate::postgres::{PostgresOptions, PostgresStore};
use crate::sqlite::{SqliteOptions, SqliteStore};

/// The longest URL scheme repeated in an error message; anything longer is more likely a
/// mistyped secret than a scheme.
const MAX_SHOWN_SCHEME_LEN: usize = 32;

/// Pool tuning common to every backend of [`open_store`]; `None` keeps the backend's
/// default ([`SqliteOptions`], [`PostgresOptions`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections the pool opens (at least 1).
    pub max_connections: Option<u32>,
    /// Longest a statement may run before the server cancels it (PostgreSQL only: SQLite
    /// has no such limit and ignores it).
    pub statement_timeout: Option<Duration>,
}

/// Opens, creating and migrating when needed, the store that `database_url` names:
/// - `sqlite:…` (`sqlite://path`, `sqlite:path`, `sqlite::memory:`): a [`SqliteStore`];
/// - `postgres://…` or `postgresql://…`: a [`PostgresStore`] (its tables in the URL's
///   database, on the server's default `search_path`).
///
/// # Errors
/// [`StoreError::Invalid`] when the scheme is none of those (the message names the
/// scheme, never the rest of the URL), or the errors of [`SqliteStore::open_with`] and
/// [`PostgresStore::connect`].
pub async fn open_store(
    database_url: &str,
    pool: PoolSettings,
) -> Result<Arc<dyn Store>, StoreError> {
    if database_url.starts_with("sqlite:") {
        let defaults = SqliteOptions::default();
        let options = SqliteOptions {
            max_connections: pool.max_connections.unwrap_or(defaults.max_connections),
            ..defaults
        };
        let store = SqliteStore::open_with(database_url, options).await?;
        return Ok(Arc::new(store));
    }
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        let defaults = PostgresOptions::default();
        let options = PostgresOptions {
            max_connections: pool.max_connections.unwrap_or(defaults.max_connections),
            statement_timeout: pool.statement_timeout.unwrap_or(defaults.statement_timeout),
            ..defaults
        };
        let store = PostgresStore::connect(database_url, options).await?;
        return Ok(Arc::new(store));
    }
    Err(StoreError::Invalid(unsupported(database_url)))
}

/// Why `database_url` names no backend, quoting its scheme only when it looks like one.
fn unsupported(database_url: &str) -> String {
    const EXPECTED: &str = "expected sqlite:, postgres:// or postgresql://";
    let scheme = database_url.split_once(':').map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme) if looks_like_scheme(scheme) => {
            format!("unsupported database URL scheme {scheme:?}: {EXPECTED}")
        }
        Some(_) => format!("database URL has no valid scheme: {EXPECTED}"),
        None => format!("database URL has no scheme: {EXPECTED}"),
    }
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` or `.`; and short.
fn looks_like_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= MAX_SHOWN_SCHEME_LEN
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use runproof_core::UnixTime;

    use super::*;

    #[test]
    fn opening_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        assert_send(&open_store("sqlite::memory:", PoolSettings::default()));
    }

    #[tokio::test]
    async fn sqlite_urls_open_sqlite() {
        let store = open_store(
            "sqlite::memory:",
            PoolSettings {
                max_connections: Some(4),
                statement_timeout: Some(Duration::from_secs(1)),
            },
        )
        .await
        .unwrap();
        store.ping().await.unwrap();
        assert!(store.consume_jti("i", "j", UnixTime(10)).await.unwrap());
        assert!(!store.consume_jti("i", "j", UnixTime(10)).await.unwrap());

        let dir = tempfile::TempDir::new().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = open_store(&url, PoolSettings::default()).await.unwrap();
        store.ping().await.unwrap();
    }

    #[tokio::test]
    async fn unknown_schemes_are_invalid_and_named_alone() {
        let cases = [
            ("mysql://root:s3cr3t@db/app", Some("\"mysql\"")),
            ("Postgres://u:s3cr3t@db/app", Some("\"Postgres\"")),
            ("postgres:/u:s3cr3t@db/app", Some("\"postgres\"")),
            ("/var/lib/runproof/s3cr3t.db", None),
            ("u s3cr3t:x@db", None),
            ("", None),
        ];
        for (url, named) in cases {
            let Err(err) = open_store(url, PoolSettings::default()).await else {
                panic!("{url:?} opened");
            };
            let StoreError::Invalid(msg) = &err else {
                panic!("{url:?}: {err:?}");
            };
            assert!(!msg.contains("s3cr3t"), "{msg}");
            if let Some(named) = named {
                assert!(msg.contains(named), "{msg}");
            }
        }
    }

    /// A PostgreSQL URL reaches the PostgreSQL store: here, its error for a URL it cannot
    /// parse (no network needed).
    #[tokio::test]
    async fn postgres_urls_open_postgres() {
        for url in [
            "postgres://u:s3cr3t@[::1/db",
            "postgresql://u:s3cr3t@[::1/db",
        ] {
            let Err(err) = open_store(url, PoolSettings::default()).await else {
                panic!("{url:?} opened");
            };
            let StoreError::Unavailable(msg) = &err else {
                panic!("{url:?}: {err:?}");
            };
            assert_eq!(msg, "invalid PostgreSQL URL");
        }
    }
}
