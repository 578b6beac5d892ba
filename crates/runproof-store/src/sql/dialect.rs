//! What differs between SQLite and PostgreSQL, and nothing else.

use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;

/// The two backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The fragments and switches that differ between the backends. Every statement is
/// otherwise the same text on both.
#[derive(Debug)]
pub(crate) struct Dialect {
    /// Which backend this is.
    pub(crate) backend: Backend,
    /// Batches the commit pipeline commits at once: SQLite has one writer anyway;
    /// PostgreSQL overlaps concurrent commits (and flushes them together).
    pub(crate) parallel_writes: usize,
    /// Appended to a `SELECT` that claims rows for an update in a later statement:
    /// PostgreSQL locks them and passes over rows that concurrent claimers hold; SQLite
    /// needs nothing, as its writing transaction holds the database's only write lock.
    pub(crate) skip_locked: &'static str,
    /// Appended to a `SELECT` of a row that the transaction then rewrites from what it
    /// read: PostgreSQL locks the row, so that concurrent transactions take turns;
    /// SQLite's writing transaction holds the write lock already.
    pub(crate) lock_row: &'static str,
    /// Placed after `AS` in a `WITH` whose rows must be fixed once (PostgreSQL may
    /// otherwise inline the CTE and evaluate it again); SQLite has no such keyword
    /// here and evaluates it once anyway.
    pub(crate) materialized: &'static str,
    /// `false` as the schema's partial indexes spell it, so that a query can use them:
    /// SQLite stores flags as 0/1 and matches an index's `WHERE` by its text.
    pub(crate) false_literal: &'static str,
    /// Run first in a transaction that reserves pending quotas, so that reservations
    /// take turns: PostgreSQL takes a transaction advisory lock (a fixed class and the
    /// schema's hash, so that deployments sharing a database through `schema` do not
    /// wait for each other); SQLite's writing transaction holds the write lock already.
    pub(crate) reservation_lock: Option<&'static str>,
    /// Whether enqueued pushes are announced to listeners at commit (`pg_notify`).
    pub(crate) notifies: bool,
}

impl Dialect {
    /// A `FROM` item named `alias` with columns `item` (text) and `ord` (its position,
    /// from 1 on PostgreSQL, from 0 on SQLite: compare only) over the list bound at
    /// `placeholder` (a [`super::exec::Value::TextList`]).
    pub(crate) fn text_list(&self, placeholder: &str, alias: &str) -> String {
        match self.backend {
            Backend::Postgres => {
                format!("unnest({placeholder}::text[]) WITH ORDINALITY AS {alias}(item, ord)")
            }
            Backend::Sqlite => format!(
                "(SELECT value AS item, key AS ord FROM json_each({placeholder})) AS {alias}"
            ),
        }
    }
}

impl Dialect {
    /// Appends the `n`th placeholder (from 1) of a multi-row statement: `$n` on
    /// PostgreSQL; on SQLite an anonymous `?`, bound in order, since sqlx looks each
    /// numbered placeholder's name up, which SQLite does in time linear in the
    /// statement's placeholders (quadratic for a statement of thousands of them).
    pub(crate) fn push_placeholder(&self, out: &mut String, n: usize) {
        match self.backend {
            Backend::Sqlite => out.push('?'),
            Backend::Postgres => {
                out.push('$');
                out.push_str(&n.to_string());
            }
        }
    }
}

pub(crate) static SQLITE: Dialect = Dialect {
    backend: Backend::Sqlite,
    parallel_writes: 1,
    skip_locked: "",
    lock_row: "",
    materialized: "",
    false_literal: "0",
    reservation_lock: None,
    notifies: false,
};

pub(crate) static POSTGRES: Dialect = Dialect {
    backend: Backend::Postgres,
    parallel_writes: 4,
    skip_locked: " FOR UPDATE SKIP LOCKED",
    lock_row: " FOR UPDATE",
    materialized: "MATERIALIZED",
    false_literal: "FALSE",
    reservation_lock: Some("SELECT pg_advisory_xact_lock(1920102515, hashtext(current_schema()))"),
    notifies: true,
};

/// Whether the database refused a value of the caller's rather than failed: PostgreSQL's
/// class 22 (data exception), such as a NUL character in text, which SQLite stores.
/// Reported as [`crate::Invalid::Refused`].
pub(crate) fn refuses_value(e: &dyn DatabaseError) -> bool {
    e.try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|pg| pg.code().starts_with("22"))
}
