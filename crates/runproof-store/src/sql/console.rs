//! The statements the operator console needs: its sign-in sessions, the overview's
//! counts, the installations and their repositories, and pushes page by page.

use runproof_core::{InstallationId, RepositoryId, UnixTime};

use super::dialect::Dialect;
use super::exec::{Pool, db_error, is_unique_violation, query, query_built};
use super::row::{
    InstallationRow, PushRow, clamp_limit, installation_columns, push_columns, sql_id,
    stored_count, stored_id,
};
use crate::console::{ConsoleCounts, PushFilter};
use crate::error::{Invalid, StoreError};
use crate::github::{InstalledRepository, KnownInstallation};
use crate::limits::ID_BATCH;
use crate::outbox::PushRecord;

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

/// Installations not deleted with an id above `$1`, in id order, at most `$2`: read
/// through `installations_deleted_id`.
pub(crate) const INSTALLATIONS_SQL: &str = concat!(
    "SELECT ",
    installation_columns!(),
    " FROM installations WHERE deleted = FALSE AND id > $1 ORDER BY id LIMIT $2"
);

/// The repositories installation `$1` lists (not removed) with an id above `$2`, in id
/// order, at most `$3`: read through `installation_repositories_listed`.
pub(crate) const REPOSITORIES_SQL: &str = "SELECT repository_id, full_name \
     FROM installation_repositories \
     WHERE installation_id = $1 AND removed = FALSE AND repository_id > $2 \
     ORDER BY repository_id LIMIT $3";

/// An id to list after: `after`, or below every stored id (they are never negative).
fn after_id(after: Option<u64>) -> Result<i64, StoreError> {
    after.map_or(Ok(-1), sql_id)
}

/// A page of installations not deleted, in id order.
pub(crate) async fn installations(
    pool: &Pool,
    after: Option<InstallationId>,
    limit: u32,
) -> Result<Vec<KnownInstallation>, StoreError> {
    query(INSTALLATIONS_SQL)
        .bind(after_id(after.map(|id| id.get()))?)
        .bind(i64::from(clamp_limit(limit)))
        .fetch_all(pool)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(InstallationRow::into_installation)
        .collect()
}

/// A page of the repositories an installation lists, in id order.
pub(crate) async fn repositories(
    pool: &Pool,
    installation: InstallationId,
    after: Option<RepositoryId>,
    limit: u32,
) -> Result<Vec<InstalledRepository>, StoreError> {
    let rows: Vec<(i64, String)> = query(REPOSITORIES_SQL)
        .bind(sql_id(installation.get())?)
        .bind(after_id(after.map(|id| id.get()))?)
        .bind(i64::from(clamp_limit(limit)))
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(id, full_name)| {
            Ok(InstalledRepository {
                id: RepositoryId(stored_id(id, "repository id")?),
                full_name,
            })
        })
        .collect()
}

/// Of the ids bound at `$1` (a text list), those that have rules, in id order: read
/// through the primary key of `repository_rules`.
fn with_rules_sql(dialect: &Dialect) -> String {
    format!(
        "SELECT r.repository_id FROM repository_rules AS r \
         WHERE r.repository_id IN (SELECT CAST(t.item AS BIGINT) FROM {}) \
         ORDER BY r.repository_id",
        dialect.text_list("$1", "t")
    )
}

/// Which of `ids` have rules stored, in id order, each once; looked up in batches.
pub(crate) async fn repositories_with_rules(
    pool: &Pool,
    ids: &[RepositoryId],
) -> Result<Vec<RepositoryId>, StoreError> {
    let sql = with_rules_sql(pool.dialect());
    let mut found = Vec::new();
    for chunk in ids.chunks(ID_BATCH) {
        // An id beyond the database's integers has no rules: leave it out.
        let chunk: Vec<String> = chunk
            .iter()
            .filter(|id| sql_id(id.get()).is_ok())
            .map(|id| id.get().to_string())
            .collect();
        if chunk.is_empty() {
            continue;
        }
        let rows: Vec<(i64,)> = query_built(sql.clone())
            .bind(chunk.as_slice())
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
        for (id,) in rows {
            found.push(RepositoryId(stored_id(id, "repository id")?));
        }
    }
    found.sort_unstable_by_key(|id| id.get());
    found.dedup();
    Ok(found)
}

/// The pushes matching `filter`, newest first (`created_at`, then `id`), after the push
/// whose `created_at` and `id` are bound when `after` is set, at most the last
/// placeholder's. Read through `outbox_status_created_at`, `outbox_upload_id` or
/// `outbox_created_at`, in their order: no sort.
fn pushes_sql(filter: &PushFilter, after: bool) -> String {
    let mut sql = String::from(concat!(
        "SELECT ",
        push_columns!(),
        " FROM outbox WHERE TRUE"
    ));
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if filter.status.is_some() {
        sql.push_str(&format!(" AND status = ${}", next()));
    }
    if filter.upload_id.is_some() {
        sql.push_str(&format!(" AND upload_id = ${}", next()));
    }
    if after {
        let (at, id) = (next(), next());
        sql.push_str(&format!(" AND (created_at, id) < (${at}, ${id})"));
    }
    sql.push_str(&format!(
        " ORDER BY created_at DESC, id DESC LIMIT ${}",
        next()
    ));
    sql
}

/// A page of pushes, newest first, after the push `before` names (its id); returns the
/// page and the id to pass for the next page, if there is one.
pub(crate) async fn pushes_page(
    pool: &Pool,
    filter: &PushFilter,
    limit: u32,
    before: Option<&str>,
) -> Result<(Vec<PushRecord>, Option<String>), StoreError> {
    let limit = clamp_limit(limit);
    let after = match before {
        Some(id) => {
            let found: Option<(i64,)> = query("SELECT created_at FROM outbox WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(db_error)?;
            // Pushes are never deleted: an unknown cursor was never given out.
            let Some((at,)) = found else {
                return Ok((Vec::new(), None));
            };
            Some((at, id))
        }
        None => None,
    };
    let mut q = query_built(pushes_sql(filter, after.is_some()));
    if let Some(status) = filter.status {
        q = q.bind(status.as_str());
    }
    if let Some(upload) = &filter.upload_id {
        q = q.bind(upload.as_str());
    }
    if let Some((at, id)) = after {
        q = q.bind(at).bind(id);
    }
    // One extra row tells whether another page exists without a COUNT.
    let rows: Vec<PushRow> = q
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let more = rows.len() > limit as usize;
    let pushes = rows
        .into_iter()
        .take(limit as usize)
        .map(PushRow::into_record)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if more {
        pushes.last().map(|p| p.id.clone())
    } else {
        None
    };
    Ok((pushes, next))
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
    async fn installations_and_their_repositories_read_indexes_on_sqlite() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let plan = sqlite_plan(&store, INSTALLATIONS_SQL, &["5", "10"]).await;
        assert_indexed(&plan, &["installations_deleted_id (deleted=? AND id>?)"]);
        assert!(!plan.iter().any(|s| s.contains("TEMP B-TREE")), "{plan:?}");
        let plan = sqlite_plan(&store, REPOSITORIES_SQL, &["5", "7", "10"]).await;
        assert_indexed(
            &plan,
            &[
                "installation_repositories_listed (installation_id=? AND removed=? AND repository_id>?)",
            ],
        );
        assert!(!plan.iter().any(|s| s.contains("TEMP B-TREE")), "{plan:?}");
        let sql = with_rules_sql(store.pool.dialect());
        let plan = sqlite_plan(&store, &sql, &["'[\"1\"]'"]).await;
        assert!(
            plan.iter()
                .any(|s| s.starts_with("SEARCH r") && s.contains("PRIMARY KEY")),
            "{plan:?}"
        );
    }

    /// Each filter of the push list reads the index that leads with it, in the listing's
    /// order (no sort), also after a cursor.
    #[tokio::test]
    async fn push_pages_read_an_index_in_order_on_sqlite() {
        let store = SqliteStore::open("sqlite::memory:").await.unwrap();
        let status = PushFilter {
            status: Some(crate::PushStatus::Failed),
            ..PushFilter::default()
        };
        let upload = PushFilter {
            upload_id: Some(crate::UploadId::generate()),
            ..PushFilter::default()
        };
        let both = PushFilter {
            status: Some(crate::PushStatus::Failed),
            upload_id: Some(crate::UploadId::generate()),
        };
        let cases = [
            (PushFilter::default(), "outbox_created_at"),
            (status, "outbox_status_created_at (status=?"),
            (upload, "outbox_upload_id (upload_id=?"),
            (both, "outbox_upload_id (upload_id=?"),
        ];
        for (filter, index) in cases {
            for after in [false, true] {
                let sql = pushes_sql(&filter, after);
                let plan = sqlite_plan(&store, &sql, &["'a'", "'b'", "'c'", "'d'", "5"]).await;
                assert_indexed(&plan, &[index]);
                assert!(
                    !plan.iter().any(|s| s.contains("TEMP B-TREE")),
                    "{filter:?}: {plan:?}"
                );
            }
        }
    }

    #[test]
    fn push_pages_number_their_parameters() {
        let both = PushFilter {
            status: Some(crate::PushStatus::Failed),
            upload_id: Some(crate::UploadId::generate()),
        };
        assert!(pushes_sql(&both, true).ends_with(
            " WHERE TRUE AND status = $1 AND upload_id = $2 AND (created_at, id) < ($3, $4) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ));
        assert!(
            pushes_sql(&PushFilter::default(), false)
                .ends_with(" WHERE TRUE ORDER BY created_at DESC, id DESC LIMIT $1")
        );
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
