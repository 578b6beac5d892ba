//! Why a store operation failed: [`StoreError`], and the typed causes its variants carry
//! ([`Unavailable`], [`Corrupt`], [`Invalid`]), so that callers tell causes apart
//! without reading text.
//!
//! Each message is whole on its own (logs show the top-level one only). An error's
//! [`source`](std::error::Error::source) is the library error underneath (sqlx's,
//! serde_json's, I/O), when there is one; causes that may quote a database URL, password
//! included, are kept out of both.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::model::{UploadId, UploadRecord};

/// Why a store operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with the same idempotency scope and key exists.
    Conflict(Box<UploadRecord>),
    /// The database could not be reached or failed.
    Unavailable(Unavailable),
    /// A stored row could not be decoded (a bug or a corrupted database).
    Corrupt(Corrupt),
    /// Migrations failed.
    Migration(sqlx::migrate::MigrateError),
    /// A value cannot be stored (such as an integer beyond the database's range).
    Invalid(Invalid),
    /// The database was asked to commit and no answer came back (the connection was lost
    /// while the `COMMIT` was in flight): the change may be stored or not. Look before
    /// undoing anything that a stored change would need.
    CommitUnknown(Unavailable),
    /// The commit pipeline's queue is full: nothing was stored; retry shortly.
    Busy,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Conflict(_) => f.write_str("an upload with this idempotency key exists"),
            Self::Unavailable(cause) => write!(f, "database unavailable: {cause}"),
            Self::Corrupt(cause) => write!(f, "corrupt row: {cause}"),
            Self::Migration(cause) => write!(f, "migration failed: {cause}"),
            Self::Invalid(cause) => write!(f, "invalid value: {cause}"),
            Self::CommitUnknown(cause) => write!(f, "commit outcome unknown: {cause}"),
            Self::Busy => f.write_str("the commit queue is full"),
        }
    }
}

impl std::error::Error for StoreError {
    /// The library error underneath, if any: the typed cause's own message is part of
    /// this error's.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        use std::error::Error;
        match self {
            Self::Unavailable(cause) | Self::CommitUnknown(cause) => Error::source(cause),
            Self::Corrupt(cause) => Error::source(cause),
            Self::Migration(cause) => Some(cause),
            Self::Invalid(cause) => Error::source(cause),
            Self::Conflict(_) | Self::Busy => None,
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migration(e)
    }
}

impl StoreError {
    /// This error, to be given to each write of a batch that failed as a whole (see
    /// [`BatchError::for_each_write`]).
    pub(crate) fn into_batch(self) -> BatchError {
        match self {
            StoreError::CommitUnknown(cause) => BatchError::CommitUnknown(Arc::new(cause)),
            StoreError::Unavailable(cause) => BatchError::Unavailable(Arc::new(cause)),
            StoreError::Busy => BatchError::Busy,
            other => BatchError::Other(Arc::new(other)),
        }
    }
}

/// The error of a batch that failed as a whole, shared by its writes.
#[derive(Debug)]
pub(crate) enum BatchError {
    Unavailable(Arc<Unavailable>),
    CommitUnknown(Arc<Unavailable>),
    Busy,
    Other(Arc<StoreError>),
}

impl BatchError {
    /// The same error for each write of the batch: an outage (or an unknown commit) as
    /// it is, anything else as an outage of the batch.
    pub(crate) fn for_each_write(&self) -> StoreError {
        match self {
            Self::Unavailable(cause) => {
                StoreError::Unavailable(Unavailable::Shared(Arc::clone(cause)))
            }
            Self::CommitUnknown(cause) => {
                StoreError::CommitUnknown(Unavailable::Shared(Arc::clone(cause)))
            }
            Self::Busy => StoreError::Busy,
            Self::Other(e) => StoreError::Unavailable(Unavailable::Batch(Arc::clone(e))),
        }
    }
}

/// Why the database could not be reached or failed: what [`StoreError::Unavailable`]
/// and [`StoreError::CommitUnknown`] carry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The database answered with an error (a [`sqlx::Error::Database`]).
    #[error("database error: {}", database_message(.0))]
    Database(#[source] sqlx::Error),
    /// Input or output with the database failed.
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// No connection of the pool became free in time.
    #[error("timed out waiting for a database connection")]
    PoolTimedOut,
    /// The pool is closed.
    #[error("the database pool is closed")]
    PoolClosed,
    /// The connection settings were refused. The driver's message is left out: it may
    /// quote them, password included.
    #[error("invalid database configuration")]
    Configuration,
    /// TLS with the database failed (the driver's message is left out, as above).
    #[error("database TLS error")]
    Tls,
    /// Another failure of the database driver.
    #[error("{0}")]
    Driver(#[source] sqlx::Error),
    /// The PostgreSQL URL does not parse. The parser's message is left out: it may quote
    /// the URL, password included.
    #[error("invalid PostgreSQL URL")]
    PostgresUrl,
    /// The SQLite URL does not parse.
    #[error("invalid SQLite URL: {0}")]
    SqliteUrl(#[source] sqlx::Error),
    /// The in-memory SQLite URL does not parse.
    #[error("invalid in-memory SQLite URL: {0}")]
    SqliteMemoryUrl(#[source] sqlx::Error),
    /// The directory of the SQLite file cannot be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDirectory {
        /// The directory.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// The commit pipeline has stopped: nothing was queued.
    #[error("the commit pipeline has stopped")]
    PipelineStopped,
    /// The commit pipeline stopped with the write queued, before answering.
    #[error("the commit pipeline stopped before answering")]
    PipelineDropped,
    /// A batch's commit answered for another number of writes than it had.
    #[error("the batch's outcome could not be matched to its writes")]
    UnmatchedOutcomes,
    /// The batch this write was in failed as a whole, with this outage, which each of
    /// its writes shares.
    #[error(transparent)]
    Shared(Arc<Unavailable>),
    /// The batch this write was in failed as a whole, with this error.
    #[error(transparent)]
    Batch(Arc<StoreError>),
}

impl Unavailable {
    /// The cause itself, when a batch's writes share it ([`Unavailable::Shared`]).
    #[must_use]
    pub fn shared_cause(&self) -> &Unavailable {
        match self {
            Self::Shared(cause) => cause.shared_cause(),
            other => other,
        }
    }
}

impl From<std::io::Error> for Unavailable {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// The database's own message of a [`sqlx::Error::Database`], else the whole error.
fn database_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    }
}

/// What a stored row holds that the model cannot: what [`StoreError::Corrupt`] carries.
/// `column` names the value as the model knows it (`status`, `pending run_attempt`);
/// `row`, when given, says which row (an upload id, `delivery <id>`,
/// `installation <id>`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Corrupt {
    /// A value the model does not know or cannot hold (shown as stored: text quoted).
    #[error("{column} {value}{}", of(.row.as_deref()))]
    Value {
        /// Which value.
        column: &'static str,
        /// The value as stored.
        value: String,
        /// Which row, if known.
        row: Option<String>,
    },
    /// A negative count, size or id.
    #[error("negative {column} {value}{}", of(.row.as_deref()))]
    Negative {
        /// Which value.
        column: &'static str,
        /// The value as stored.
        value: i64,
        /// Which row, if known.
        row: Option<String>,
    },
    /// A JSON column that does not decode.
    #[error("{column} of {row}: {source}")]
    Json {
        /// Which value.
        column: &'static str,
        /// Which row.
        row: String,
        /// Why it does not decode.
        source: serde_json::Error,
    },
    /// A pending upload whose claimed run lacks some of its columns.
    #[error("pending run of {upload} is incomplete")]
    IncompleteRun {
        /// The upload.
        upload: UploadId,
    },
}

impl Corrupt {
    /// A text value the model does not know, quoted.
    pub(crate) fn text(column: &'static str, value: &str, row: Option<String>) -> Self {
        Self::Value {
            column,
            value: format!("{value:?}"),
            row,
        }
    }

    /// A number the model cannot hold.
    pub(crate) fn number(column: &'static str, value: i64, row: Option<String>) -> Self {
        Self::Value {
            column,
            value: value.to_string(),
            row,
        }
    }
}

/// " of `row`", or nothing.
fn of(row: Option<&str>) -> String {
    row.map_or_else(String::new, |row| format!(" of {row}"))
}

/// The schemes [`crate::open_store`] opens, as its errors list them.
const EXPECTED_SCHEMES: &str = "expected sqlite:, postgres:// or postgresql://";

/// What cannot be stored or done as asked: what [`StoreError::Invalid`] carries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// A number beyond the database's integers.
    #[error("{what} out of range: {value}")]
    OutOfRange {
        /// Which number (`id`, `upload size`, `bytes`).
        what: &'static str,
        /// The number.
        value: u64,
    },
    /// A row with this key exists already (a caller's bug, not an outage).
    #[error("{what} {key} already exists")]
    Exists {
        /// Which kind of row (`upload`, `delivery`, `reservation`).
        what: &'static str,
        /// Its key.
        key: String,
    },
    /// A session with this token hash exists already (the hash is not shown).
    #[error("a session with this token exists")]
    SessionExists,
    /// A value that does not encode as JSON.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// Which value (`identity`, `delivery payload`).
        what: &'static str,
        /// Why not.
        source: serde_json::Error,
    },
    /// The database refused a value rather than failed: PostgreSQL's data exceptions
    /// (class 22), such as a NUL character in text.
    #[error("value refused: {}", database_message(.0))]
    Refused(#[source] sqlx::Error),
    /// A pending upload resolved to pending.
    #[error("a pending upload cannot be resolved to pending")]
    PendingToPending,
    /// A webhook delivery id that is empty or longer than
    /// [`crate::MAX_WEBHOOK_DELIVERY_ID_LEN`].
    #[error("delivery id must be 1 to 256 bytes")]
    WebhookDeliveryId {
        /// Its length, in bytes.
        len: usize,
    },
    /// A write of a batch that its commit left without an outcome (a bug).
    #[error("the write was left without an outcome")]
    NoOutcome,
    /// Outbox notifications asked of a store that is not on PostgreSQL.
    #[error("outbox notifications need PostgreSQL")]
    NotPostgres,
    /// A PostgreSQL schema name that is not 1 to 63 characters of `[a-z0-9_]`.
    #[error("PostgreSQL schema name must be 1 to 63 characters of [a-z0-9_]")]
    SchemaName,
    /// A schema set for a SQLite database.
    #[error("a schema applies to PostgreSQL only, and the database is SQLite")]
    SchemaOnSqlite,
    /// A database URL whose scheme the store does not open (the scheme alone is kept,
    /// never the rest of the URL).
    #[error("unsupported database URL scheme {0:?}: {EXPECTED_SCHEMES}")]
    UnsupportedScheme(String),
    /// A database URL whose text before `:` is not a scheme (not shown: it may be a
    /// mistyped secret).
    #[error("database URL has no valid scheme: {EXPECTED_SCHEMES}")]
    MalformedScheme,
    /// A database URL without a `:`.
    #[error("database URL has no scheme: {EXPECTED_SCHEMES}")]
    NoScheme,
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::{Corrupt, Invalid, StoreError, Unavailable};

    fn io(kind: std::io::ErrorKind, text: &str) -> std::io::Error {
        std::io::Error::new(kind, text)
    }

    #[test]
    fn messages_name_the_cause() {
        let cases = [
            (
                StoreError::Unavailable(io(std::io::ErrorKind::ConnectionReset, "reset").into()),
                "database unavailable: I/O error: reset",
            ),
            (
                StoreError::CommitUnknown(Unavailable::PoolClosed),
                "commit outcome unknown: the database pool is closed",
            ),
            (
                StoreError::Corrupt(Corrupt::text("status", "lost", Some("u1".into()))),
                "corrupt row: status \"lost\" of u1",
            ),
            (
                StoreError::Corrupt(Corrupt::Negative {
                    column: "count",
                    value: -1,
                    row: None,
                }),
                "corrupt row: negative count -1",
            ),
            (
                StoreError::Invalid(Invalid::Exists {
                    what: "delivery",
                    key: "d1".into(),
                }),
                "invalid value: delivery d1 already exists",
            ),
            (
                StoreError::Invalid(Invalid::UnsupportedScheme("mysql".into())),
                "invalid value: unsupported database URL scheme \"mysql\": expected sqlite:, \
                 postgres:// or postgresql://",
            ),
        ];
        for (err, shown) in cases {
            assert_eq!(err.to_string(), shown);
        }
    }

    #[test]
    fn the_source_is_the_library_error() {
        let err = StoreError::Unavailable(io(std::io::ErrorKind::ConnectionReset, "reset").into());
        let source = err.source().expect("a source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an I/O error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);

        let json = serde_json::from_str::<u8>("x").unwrap_err();
        let err = StoreError::Corrupt(Corrupt::Json {
            column: "identity",
            row: "u1".into(),
            source: json,
        });
        assert!(err.source().unwrap().is::<serde_json::Error>());
        assert!(StoreError::Invalid(Invalid::NoOutcome).source().is_none());
    }

    #[test]
    fn each_write_of_a_failed_batch_gets_the_same_cause() {
        let lost =
            StoreError::CommitUnknown(io(std::io::ErrorKind::ConnectionAborted, "lost").into());
        let batch = lost.into_batch();
        for _ in 0..2 {
            let each = batch.for_each_write();
            let StoreError::CommitUnknown(cause) = &each else {
                panic!("{each:?}");
            };
            assert!(
                matches!(cause.shared_cause(), Unavailable::Io(_)),
                "{each:?}"
            );
            assert_eq!(each.to_string(), "commit outcome unknown: I/O error: lost");
            assert!(each.source().unwrap().is::<std::io::Error>());
        }

        let batch = StoreError::Invalid(Invalid::NoOutcome).into_batch();
        let each = batch.for_each_write();
        let StoreError::Unavailable(Unavailable::Batch(whole)) = &each else {
            panic!("{each:?}");
        };
        assert!(
            matches!(**whole, StoreError::Invalid(Invalid::NoOutcome)),
            "{each:?}"
        );
        assert_eq!(
            each.to_string(),
            "database unavailable: invalid value: the write was left without an outcome"
        );
        assert!(matches!(
            StoreError::Busy.into_batch().for_each_write(),
            StoreError::Busy
        ));
    }
}
