//! The statements the operator console needs: its sign-in sessions, the overview's
//! counts, the installations and their repositories, and pushes page by page.

use runproof_core::UnixTime;

use super::exec::{Pool, db_error, is_unique_violation, query};
use super::row::stored_count;
use crate::console::ConsoleCounts;
use crate::error::{Invalid, StoreError};

/// Stores a console session.
pub(crate) async fn create_session(
    pool: &Pool,
    token_hash: &str,
    created_at: UnixTime,
    expires_at: UnixTime,
) -> Result<(), StoreError> {
    let done = query(
        "INSERT INTO console_sessions (token_hash, created_at, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(token_hash)
    .bind(created_at.0)
    .bind(expires_at.0)
    .execute(pool)
    .await;
    match done {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Invalid(Invalid::SessionExists)),
        Err(e) => Err(db_error(e)),
    }
}

/// Whether the session exists and expires after `now`.
pub(crate) async fn session_valid(
    pool: &Pool,
    token_hash: &str,
    now: UnixTime,
) -> Result<bool, StoreError> {
    let found: Option<(i64,)> =
        query("SELECT expires_at FROM console_sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(token_hash)
            .bind(now.0)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
    Ok(found.is_some())
}

/// Deletes one session; whether there was one.
pub(crate) async fn delete_session(pool: &Pool, token_hash: &str) -> Result<bool, StoreError> {
    let deleted = query("DELETE FROM console_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(deleted > 0)
}

/// Deletes the sessions expired at `now` (the complement of [`session_valid`]'s bound).
pub(crate) async fn purge_sessions(pool: &Pool, now: UnixTime) -> Result<u64, StoreError> {
    query("DELETE FROM console_sessions WHERE expires_at <= $1")
        .bind(now.0)
        .execute(pool)
        .await
        .map_err(db_error)
}

/// The overview's counts in one statement, each from an index: `uploads_status_id`, an
/// index of the outbox that leads with its status, `installations_deleted_id` and
/// `installation_repositories_listed` (reached from each installation that is not
/// deleted).
pub(crate) const COUNTS_SQL: &str = "SELECT \
     (SELECT COUNT(*) FROM uploads WHERE status = 'pending'), \
     (SELECT COUNT(*) FROM outbox WHERE status = 'failed'), \
     (SELECT COUNT(*) FROM outbox WHERE status = 'pending'), \
     (SELECT COUNT(*) FROM installations WHERE deleted = FALSE), \
     (SELECT COUNT(*) FROM installations AS i JOIN installation_repositories AS r \
      ON r.installation_id = i.id AND r.removed = FALSE WHERE i.deleted = FALSE)";

/// The overview's counts.
pub(crate) async fn counts(pool: &Pool) -> Result<ConsoleCounts, StoreError> {
    let (pending_uploads, failed_pushes, pending_pushes, installations, repositories): (
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = query(COUNTS_SQL).fetch_one(pool).await.map_err(db_error)?;
    Ok(ConsoleCounts {
        pending_uploads: stored_count(pending_uploads, "count")?,
        failed_pushes: stored_count(failed_pushes, "count")?,
        pending_pushes: stored_count(pending_pushes, "count")?,
        installations: stored_count(installations, "count")?,
        repositories: stored_count(repositories, "count")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    /// The plan of `sql` on SQLite (with `$N` placeholders replaced by `values`), one
    /// line per step.
    async fn sqlite_plan(store: &SqliteStore, sql: &str, values: &[&str]) -> Vec<String> {
        let mut sql = sql.to_owned();
        // Highest first, so that `$1` does not match the start of `$10`.
        for (i, value) in values.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", i + 1), value);
        }
        let Pool::Sqlite(pool) = &store.pool else {
            panic!("a SQLite store")
        };
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(pool)
                .await
                .unwrap();
        plan.into_iter().map(|step| step.3).collect()
    }

    /// Every step reads through an index (a `SCAN` of a whole table has none), and
    /// each of `indexes` serves a step.
    fn assert_indexed(plan: &[String], indexes: &[&str]) {
        for step in plan {
            assert!(
                !step.starts_with("SCAN") || step.contains("INDEX") || step == "SCAN CONSTANT ROW",
                "{step} in {plan:?}"
            );
        }
        for index in indexes {
            assert!(
                plan.iter().any(|step| step.contains(index)),
                "{index} unused in {plan:?}"
            );
        }
    }

    #[tokio::test]
    async fn counts_read_indexes_on_sqlite() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let plan = sqlite_plan(&store, COUNTS_SQL, &[]).await;
        assert_indexed(
            &plan,
            &[
                "uploads_status_id",
                "outbox_status_",
                "installations_deleted_id",
                "installation_repositories_listed",
            ],
        );
        // The repositories are reached from the installations, not scanned whole.
        assert!(
            plan.iter()
                .any(|s| s.starts_with("SEARCH") && s.contains("installation_repositories_listed")),
            "{plan:?}"
        );
        assert_eq!(counts(&store.pool).await.unwrap(), ConsoleCounts::default());
    }
}
