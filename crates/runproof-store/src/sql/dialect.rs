//! What differs between SQLite and PostgreSQL, and nothing else.

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
    /// Appended to a `SELECT` that claims rows for an update in a later statement:
    /// PostgreSQL locks them and passes over rows that concurrent claimers hold; SQLite
    /// needs nothing, as its writing transaction holds the database's only write lock.
    pub(crate) skip_locked: &'static str,
    /// Placed after `AS` in a `WITH` whose rows must be fixed once (PostgreSQL may
    /// otherwise inline the CTE and evaluate it again); SQLite has no such keyword
    /// here and evaluates it once anyway.
    pub(crate) materialized: &'static str,
    /// Whether enqueued deliveries are announced to listeners at commit (`pg_notify`).
    pub(crate) notifies: bool,
}

impl Dialect {
    /// A `FROM` item named `alias` with columns `item` (text) and `ord` (its position,
    /// from 1 on PostgreSQL, from 0 on SQLite: compare only) over the list bound at
    /// `placeholder` (a [`super::Value::TextList`]).
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

pub(crate) static SQLITE: Dialect = Dialect {
    backend: Backend::Sqlite,
    skip_locked: "",
    materialized: "",
    notifies: false,
};

pub(crate) static POSTGRES: Dialect = Dialect {
    backend: Backend::Postgres,
    skip_locked: " FOR UPDATE SKIP LOCKED",
    materialized: "MATERIALIZED",
    notifies: true,
};
