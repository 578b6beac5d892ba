//! Statements and their execution on either backend: bound [`Value`]s, a [`Pool`] or a
//! [`Tx`] of either, and the mapping of database errors to [`StoreError`].

use sqlx::postgres::{PgConnection, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{FromRow, Postgres, SqlStr, Sqlite, Transaction};

use super::dialect::{self, Dialect};
use crate::error::{Invalid, StoreError, Unavailable};

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Text(&'a str),
    OptText(Option<&'a str>),
    Bytes(&'a [u8]),
    /// A list of strings bound as one value: a `text[]` on PostgreSQL, a JSON array on
    /// SQLite. Statements read it through [`Dialect::text_list`].
    TextList(&'a [String]),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::OptInt(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(v)
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::OptText(v)
    }
}

impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Value::OptText(v.as_deref())
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Bytes(v)
    }
}

impl<'a> From<&'a [String]> for Value<'a> {
    fn from(v: &'a [String]) -> Self {
        Value::TextList(v)
    }
}

/// A pool of either backend.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    /// What differs on this pool's backend.
    pub(crate) fn dialect(&self) -> &'static Dialect {
        match self {
            Pool::Sqlite(_) => &dialect::SQLITE,
            Pool::Postgres(_) => &dialect::POSTGRES,
        }
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that what it reads cannot change before it writes and it
    /// never fails half-way to upgrade its lock; PostgreSQL's row locks and unique
    /// indexes need no more than its default.
    pub(crate) async fn begin_write(&self) -> Result<Tx, StoreError> {
        match self {
            Pool::Sqlite(p) => p
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map(Tx::Sqlite)
                .map_err(db_error),
            Pool::Postgres(p) => p.begin().await.map(Tx::Postgres).map_err(db_error),
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// A transaction of either backend.
#[derive(Debug)]
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    /// What differs on this transaction's backend.
    pub(crate) fn dialect(&self) -> &'static Dialect {
        match self {
            Tx::Sqlite(_) => &dialect::SQLITE,
            Tx::Postgres(_) => &dialect::POSTGRES,
        }
    }

    /// Commits. An answer from the database is a definite rollback; anything else
    /// (the connection lost while the `COMMIT` was in flight) leaves the outcome
    /// unknown: [`StoreError::CommitUnknown`], so that no caller assumes nothing was
    /// stored.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        let done = match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        };
        done.map_err(|e| {
            if matches!(e, sqlx::Error::Database(_)) {
                return db_error(e);
            }
            match db_error(e) {
                StoreError::Unavailable(cause) => StoreError::CommitUnknown(cause),
                other => other,
            }
        })
    }

    /// Rolls back (also what dropping it does, without waiting).
    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        let done = match self {
            Tx::Sqlite(t) => t.rollback().await,
            Tx::Postgres(t) => t.rollback().await,
        };
        done.map_err(db_error)
    }
}

/// Where a statement runs: a pool (any free connection) or a transaction.
pub(crate) enum Exec<'c> {
    SqlitePool(&'c SqlitePool),
    PgPool(&'c PgPool),
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl<'c> From<&'c Pool> for Exec<'c> {
    fn from(pool: &'c Pool) -> Self {
        match pool {
            Pool::Sqlite(p) => Exec::SqlitePool(p),
            Pool::Postgres(p) => Exec::PgPool(p),
        }
    }
}

impl<'c> From<&'c mut Tx> for Exec<'c> {
    fn from(tx: &'c mut Tx) -> Self {
        match tx {
            Tx::Sqlite(t) => Exec::Sqlite(t),
            Tx::Postgres(t) => Exec::Postgres(t),
        }
    }
}

/// A statement and its values.
#[derive(Debug)]
pub(crate) struct Query<'a> {
    sql: SqlStr,
    args: Vec<Value<'a>>,
}

/// A statement from a fixed text.
pub(crate) fn query<'a>(sql: &'static str) -> Query<'a> {
    Query {
        sql: SqlStr::from_static(sql),
        args: Vec::new(),
    }
}

/// A statement from a text built at run time from fixed fragments (never from values,
/// which are always bound).
pub(crate) fn query_built<'a>(sql: String) -> Query<'a> {
    Query {
        sql: sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql)),
        args: Vec::new(),
    }
}

/// Rows that both backends decode the same way.
pub(crate) trait Decoded:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Decoded for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

macro_rules! bind_all {
    ($query:expr, $args:expr, $list:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match *arg {
                Value::Int(v) => q.bind(v),
                Value::OptInt(v) => q.bind(v),
                Value::Bool(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::OptText(v) => q.bind(v),
                Value::Bytes(v) => q.bind(v),
                Value::TextList(v) => q.bind($list(v)),
            };
        }
        q
    }};
}

/// Binds `args` to a SQLite statement; a list goes as JSON text for `json_each`.
fn sqlite_query<'q>(
    sql: SqlStr,
    args: &[Value<'q>],
) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments> {
    bind_all!(sqlx::query::<Sqlite>(sql), args, json_list)
}

/// Binds `args` to a PostgreSQL statement; a list goes as a `text[]`.
fn pg_query<'q>(
    sql: SqlStr,
    args: &[Value<'q>],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    bind_all!(sqlx::query::<Postgres>(sql), args, <[String]>::to_vec)
}

fn sqlite_query_as<'q, T>(
    sql: SqlStr,
    args: &[Value<'q>],
) -> sqlx::query::QueryAs<'q, Sqlite, T, sqlx::sqlite::SqliteArguments>
where
    T: for<'r> FromRow<'r, SqliteRow>,
{
    bind_all!(sqlx::query_as::<Sqlite, T>(sql), args, json_list)
}

fn pg_query_as<'q, T>(
    sql: SqlStr,
    args: &[Value<'q>],
) -> sqlx::query::QueryAs<'q, Postgres, T, sqlx::postgres::PgArguments>
where
    T: for<'r> FromRow<'r, PgRow>,
{
    bind_all!(sqlx::query_as::<Postgres, T>(sql), args, <[String]>::to_vec)
}

/// A list of strings as a JSON array (strings need no more than JSON's escaping).
fn json_list(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| String::from("[]"))
}

impl<'a> Query<'a> {
    /// Binds the next placeholder.
    #[must_use]
    pub(crate) fn bind(mut self, value: impl Into<Value<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Runs the statement; returns how many rows it changed.
    pub(crate) async fn execute(self, exec: impl Into<Exec<'_>>) -> Result<u64, sqlx::Error> {
        Ok(match exec.into() {
            Exec::SqlitePool(p) => sqlite_query(self.sql, &self.args)
                .execute(p)
                .await?
                .rows_affected(),
            Exec::PgPool(p) => pg_query(self.sql, &self.args)
                .execute(p)
                .await?
                .rows_affected(),
            Exec::Sqlite(c) => sqlite_query(self.sql, &self.args)
                .execute(c)
                .await?
                .rows_affected(),
            Exec::Postgres(c) => pg_query(self.sql, &self.args)
                .execute(c)
                .await?
                .rows_affected(),
        })
    }

    /// Every row the statement returns.
    pub(crate) async fn fetch_all<T: Decoded>(
        self,
        exec: impl Into<Exec<'_>>,
    ) -> Result<Vec<T>, sqlx::Error> {
        match exec.into() {
            Exec::SqlitePool(p) => sqlite_query_as(self.sql, &self.args).fetch_all(p).await,
            Exec::PgPool(p) => pg_query_as(self.sql, &self.args).fetch_all(p).await,
            Exec::Sqlite(c) => sqlite_query_as(self.sql, &self.args).fetch_all(c).await,
            Exec::Postgres(c) => pg_query_as(self.sql, &self.args).fetch_all(c).await,
        }
    }

    /// The first row the statement returns, if any.
    pub(crate) async fn fetch_optional<T: Decoded>(
        self,
        exec: impl Into<Exec<'_>>,
    ) -> Result<Option<T>, sqlx::Error> {
        match exec.into() {
            Exec::SqlitePool(p) => {
                sqlite_query_as(self.sql, &self.args)
                    .fetch_optional(p)
                    .await
            }
            Exec::PgPool(p) => pg_query_as(self.sql, &self.args).fetch_optional(p).await,
            Exec::Sqlite(c) => {
                sqlite_query_as(self.sql, &self.args)
                    .fetch_optional(c)
                    .await
            }
            Exec::Postgres(c) => pg_query_as(self.sql, &self.args).fetch_optional(c).await,
        }
    }

    /// The first row the statement returns; [`sqlx::Error::RowNotFound`] when none.
    pub(crate) async fn fetch_one<T: Decoded>(
        self,
        exec: impl Into<Exec<'_>>,
    ) -> Result<T, sqlx::Error> {
        self.fetch_optional(exec)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// `($s, $s+1, …), (…)`: `rows` groups of `columns` placeholders, numbered from `start`,
/// for a multi-row `VALUES` whose statement has no other placeholder before them (see
/// [`Dialect::push_placeholder`]).
pub(crate) fn values_rows(dialect: &Dialect, rows: usize, columns: usize, start: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    let mut n = start;
    for row in 0..rows {
        out.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            dialect.push_placeholder(&mut out, n);
            n += 1;
        }
        out.push(')');
    }
    out
}

/// Splits `len` rows into runs of at most `max` rows, each a power of two (largest
/// first), so that multi-row statements come in few distinct texts and stay in the
/// connection's statement cache.
pub(crate) fn row_runs(len: usize, max: usize) -> Vec<std::ops::Range<usize>> {
    let max = if max == 0 { 1 } else { 1 << max.ilog2() };
    let mut runs = Vec::new();
    let mut start = 0;
    while start < len {
        let left = len - start;
        let run = if left >= max { max } else { 1 << left.ilog2() };
        runs.push(start..start + run);
        start += run;
    }
    runs
}

/// Maps a database error to its typed cause, whose message is fit for logs and
/// responses.
pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    let cause = match e {
        sqlx::Error::Database(d) => {
            let refused = dialect::refuses_value(&*d);
            let e = sqlx::Error::Database(d);
            if refused {
                return StoreError::Invalid(Invalid::Refused(e));
            }
            Unavailable::Database(e)
        }
        sqlx::Error::Io(io) => Unavailable::Io(io),
        sqlx::Error::PoolTimedOut => Unavailable::PoolTimedOut,
        sqlx::Error::PoolClosed => Unavailable::PoolClosed,
        // Connection strings (passwords included) may appear in these: keep them out.
        sqlx::Error::Configuration(_) => Unavailable::Configuration,
        sqlx::Error::Tls(_) => Unavailable::Tls,
        other => Unavailable::Driver(other),
    };
    StoreError::Unavailable(cause)
}

/// Whether `e` is a unique-constraint violation, on either backend.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_rows_numbers_every_placeholder_once() {
        let pg = &dialect::POSTGRES;
        assert_eq!(values_rows(pg, 1, 2, 1), "($1, $2)");
        assert_eq!(values_rows(pg, 2, 3, 4), "($4, $5, $6), ($7, $8, $9)");
        assert_eq!(values_rows(pg, 0, 3, 1), "");
        assert_eq!(values_rows(&dialect::SQLITE, 2, 2, 1), "(?, ?), (?, ?)");
    }

    #[test]
    fn row_runs_are_powers_of_two_covering_every_row_once() {
        assert_eq!(row_runs(0, 64), vec![]);
        assert_eq!(row_runs(37, 64), vec![0..32, 32..36, 36..37]);
        assert_eq!(row_runs(130, 64), vec![0..64, 64..128, 128..130]);
        assert_eq!(row_runs(5, 100), vec![0..4, 4..5]);
        assert_eq!(row_runs(3, 0), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn json_lists_escape_what_json_escapes() {
        let list = vec!["a\"b".to_owned(), "c".to_owned()];
        assert_eq!(json_list(&list), r#"["a\"b","c"]"#);
    }
}
