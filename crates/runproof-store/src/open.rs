//! Opening the [`Store`] a database URL names, whichever backend it is: the one place
//! where a URL picks a backend.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Invalid, StoreError};
use crate::postgres::{PostgresOptions, PostgresStore};
use crate::sqlite::{SqliteOptions, SqliteStore};
use crate::store::Store;

/// The longest URL scheme repeated in an error message; anything longer is more likely a
/// mistyped secret than a scheme.
const MAX_SHOWN_SCHEME_LEN: usize = 32;

/// Pool tuning common to every backend of [`open_store`], and where PostgreSQL keeps
/// the tables; `None` keeps the backend's default ([`SqliteOptions`],
/// [`PostgresOptions`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections the pool opens (at least 1).
    pub max_connections: Option<u32>,
    /// Longest a statement may run before the server cancels it (PostgreSQL only: SQLite
    /// has no such limit and ignores it).
    pub statement_timeout: Option<Duration>,
    /// How long a caller waits for a connection, at startup too (PostgreSQL only: SQLite
    /// ignores it).
    pub connect_timeout: Option<Duration>,
    /// The schema holding the tables ([`PostgresOptions::schema`]); PostgreSQL only,
    /// refused for SQLite.
    pub schema: Option<String>,
}

/// The database backends [`open_store`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseKind {
    /// `sqlite:…` (`sqlite://path`, `sqlite:path`, `sqlite::memory:`): a [`SqliteStore`].
    Sqlite,
    /// `postgres://…` or `postgresql://…`: a [`PostgresStore`].
    Postgres,
}

impl DatabaseKind {
    /// The backend `database_url` names, by its scheme.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the scheme is none of [`DatabaseKind`]'s (the
    /// message names the scheme, never the rest of the URL).
    pub fn of_url(database_url: &str) -> Result<Self, StoreError> {
        if database_url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Invalid(unsupported(database_url)))
        }
    }
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

/// Opens, creating and migrating when needed, the store that `database_url` names (see
/// [`DatabaseKind`]); a PostgreSQL store keeps its tables in `pool.schema`, or else on
/// the server's default `search_path`.
///
/// # Errors
/// [`StoreError::Invalid`] when the scheme is unsupported ([`DatabaseKind::of_url`]) or
/// a schema is set for SQLite, or the errors of [`SqliteStore::open_with`] and
/// [`PostgresStore::connect`].
pub async fn open_store(
    database_url: &str,
    pool: PoolSettings,
) -> Result<Arc<dyn Store>, StoreError> {
    let store = match DatabaseKind::of_url(database_url)? {
        DatabaseKind::Sqlite => {
            if pool.schema.is_some() {
                return Err(StoreError::Invalid(Invalid::SchemaOnSqlite));
            }
            let defaults = SqliteOptions::default();
            let options = SqliteOptions {
                max_connections: pool.max_connections.unwrap_or(defaults.max_connections),
                ..defaults
            };
            SqliteStore::open_with(database_url, options).await?
        }
        DatabaseKind::Postgres => {
            let defaults = PostgresOptions::default();
            let options = PostgresOptions {
                max_connections: pool.max_connections.unwrap_or(defaults.max_connections),
                acquire_timeout: pool.connect_timeout.unwrap_or(defaults.acquire_timeout),
                statement_timeout: pool.statement_timeout.unwrap_or(defaults.statement_timeout),
                schema: pool.schema,
            };
            PostgresStore::connect(database_url, options).await?
        }
    };
    Ok(Arc::new(store))
}

/// Why `database_url` names no backend, quoting its scheme only when it looks like one.
fn unsupported(database_url: &str) -> Invalid {
    let scheme = database_url.split_once(':').map(|(scheme, _)| scheme);
    match scheme {
        Some(scheme) if looks_like_scheme(scheme) => Invalid::UnsupportedScheme(scheme.to_owned()),
        Some(_) => Invalid::MalformedScheme,
        None => Invalid::NoScheme,
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
                connect_timeout: Some(Duration::from_secs(1)),
                schema: None,
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
            let msg = msg.to_string();
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
            assert_eq!(msg.to_string(), "invalid PostgreSQL URL");
        }
    }

    #[test]
    fn urls_name_their_backend() {
        for (url, kind) in [
            ("sqlite::memory:", DatabaseKind::Sqlite),
            ("sqlite:///var/lib/r.db", DatabaseKind::Sqlite),
            ("postgres://db/app", DatabaseKind::Postgres),
            ("postgresql://db/app", DatabaseKind::Postgres),
        ] {
            assert_eq!(DatabaseKind::of_url(url).unwrap(), kind, "{url}");
        }
        assert_eq!(DatabaseKind::Postgres.to_string(), "PostgreSQL");
        let err = DatabaseKind::of_url("mysql://u:s3cr3t@db/x").unwrap_err();
        assert!(matches!(&err, StoreError::Invalid(m) if m.to_string().contains("\"mysql\"")));
    }

    /// A schema is refused where it cannot apply (SQLite) or cannot be a plain
    /// identifier, before anything is opened: nothing is created elsewhere than asked.
    #[tokio::test]
    async fn rule_schemas_are_refused_unless_valid_and_postgres() {
        let dir = tempfile::TempDir::new().unwrap();
        let file = dir.path().join("db.sqlite");
        let cases = [
            (format!("sqlite://{}", file.display()), "rp_one"),
            ("postgres://u:s3cr3t@127.0.0.1:1/db".to_owned(), "Bad-Name"),
            (
                "postgres://u:s3cr3t@127.0.0.1:1/db".to_owned(),
                "x; DROP TABLE uploads",
            ),
            ("postgresql://u:s3cr3t@127.0.0.1:1/db".to_owned(), ""),
        ];
        for (url, schema) in cases {
            let settings = PoolSettings {
                schema: Some(schema.to_owned()),
                connect_timeout: Some(Duration::from_secs(1)),
                ..PoolSettings::default()
            };
            let Err(err) = open_store(&url, settings).await else {
                panic!("{url:?} opened with schema {schema:?}");
            };
            let StoreError::Invalid(msg) = &err else {
                panic!("{url:?} {schema:?}: {err:?}");
            };
            let msg = msg.to_string();
            assert!(msg.contains("schema"), "{msg}");
            assert!(!msg.contains("s3cr3t"), "{msg}");
        }
        assert!(!file.exists(), "the SQLite database was not created");
    }
}
