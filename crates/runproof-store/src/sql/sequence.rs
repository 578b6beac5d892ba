//! The order in which verified uploads become listed (`verified_seq`), and the forward
//! listing that follows it ([`crate::Store::list_verified_after`]).
//!
//! Verifying transactions do not number their uploads: the write path pays nothing. A
//! listing numbers first ([`number_waiting`]), in a short transaction of its own, then
//! reads. That transaction takes the one row of `upload_sequence` with `UPDATE …
//! RETURNING` before anything else, numbers up to [`MAX_NUMBERED`] of the committed
//! verified uploads without a number, in `(verified_at, id)` order, and commits. The row
//! stays locked until then, so numbering transactions take turns (and only with each
//! other), and each reads the uploads after the one before it committed:
//!
//! - numbers are assigned only under the lock, each numbering transaction above the
//!   last, and a higher number never becomes visible before a lower one;
//! - an upload committed after a numbering transaction read is numbered by a later one,
//!   with a higher number;
//! - a listing numbers before it reads, so a reader that sees number `n` sees every
//!   number below it: one that remembers the highest number it has seen misses nothing.
//!
//! A plain sequence would not do on PostgreSQL: two transactions may commit in the
//! opposite order to the one their numbers were drawn in. The transaction that holds
//! the lock waits for no other lock held by a transaction that wants the counter (no
//! other transaction takes it), so it adds no deadlock. SQLite's writing transactions
//! hold the database's only write lock already; the statements are the same.

use runproof_core::RepositoryId;

use super::exec::{Pool, db_error, query};
use super::row::{UploadRow, clamp_limit, sql_id, upload_columns};
use crate::error::{Corrupt, Invalid, StoreError};
use crate::model::UploadRecord;

/// The most uploads one numbering transaction numbers; more wait for the next listing.
const MAX_NUMBERED: i64 = 1000;

/// Verified uploads without a number (`$1`: the most), oldest first; spelt as the
/// partial index `uploads_unnumbered` is, so that it serves the query.
const UNNUMBERED_SQL: &str = "SELECT id FROM uploads \
     WHERE status = 'verified' AND verified_seq IS NULL ORDER BY verified_at, id LIMIT $1";

/// Numbers the first `$2` of [`UNNUMBERED_SQL`]'s uploads `$1 + 1`, `$1 + 2`, … in its
/// order; returns the numbers given. `AND verified_seq IS NULL` again outside: an upload
/// is never renumbered.
const NUMBER_SQL: &str = "UPDATE uploads SET verified_seq = $1 + numbered.n FROM \
     (SELECT id, ROW_NUMBER() OVER (ORDER BY verified_at, id) AS n FROM \
     (SELECT id, verified_at FROM uploads \
     WHERE status = 'verified' AND verified_seq IS NULL ORDER BY verified_at, id LIMIT $2) \
     AS waiting) AS numbered \
     WHERE uploads.id = numbered.id AND uploads.verified_seq IS NULL \
     RETURNING verified_seq";

/// Numbers the committed verified uploads that have no number yet, at most
/// [`MAX_NUMBERED`], oldest verified first, in one transaction that holds the counter
/// of `upload_sequence` from its first statement to its commit. Does nothing, without
/// a writing transaction, when no upload waits.
///
/// Skipping is safe: whichever listing numbers an upload, numbers become visible in
/// increasing order; an upload committed after the look is numbered by the next call.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub(crate) async fn number_waiting(pool: &Pool) -> Result<(), StoreError> {
    let waiting: Option<(String,)> = query(UNNUMBERED_SQL)
        .bind(1i64)
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    if waiting.is_none() {
        return Ok(());
    }
    let mut tx = pool.begin_write().await?;
    // First: the lock, so that what follows reads every numbering committed before it.
    let (last,): (i64,) =
        query("UPDATE upload_sequence SET last = last WHERE singleton = 1 RETURNING last")
            .fetch_one(&mut tx)
            .await
            .map_err(db_error)?;
    let numbered: Vec<(i64,)> = query(NUMBER_SQL)
        .bind(last)
        .bind(MAX_NUMBERED)
        .fetch_all(&mut tx)
        .await
        .map_err(db_error)?;
    if let Some(highest) = numbered.iter().map(|(n,)| *n).max() {
        query("UPDATE upload_sequence SET last = $1 WHERE singleton = 1")
            .bind(highest)
            .execute(&mut tx)
            .await
            .map_err(db_error)?;
    }
    tx.commit().await
}

/// An upload row with its place in the verification order.
#[derive(Debug, sqlx::FromRow)]
struct SequencedRow {
    #[sqlx(flatten)]
    upload: UploadRow,
    verified_seq: i64,
}

/// Verified uploads numbered above `after` (of `repository_id` when given), in
/// increasing order, at most `limit` (clamped like every listing); with the number of
/// the last one, or `after` when there is none. Numbers the uploads waiting for a
/// number first ([`number_waiting`]), then reads.
///
/// # Errors
/// [`StoreError::Invalid`] when `after` or the repository id is beyond the database's
/// integers, [`StoreError::Corrupt`] when a row does not decode, or [`StoreError`] when
/// the database fails.
pub(crate) async fn list_after(
    pool: &Pool,
    repository_id: Option<RepositoryId>,
    after: u64,
    limit: u32,
) -> Result<(Vec<UploadRecord>, u64), StoreError> {
    let from = i64::try_from(after).map_err(|_| {
        StoreError::Invalid(Invalid::OutOfRange {
            what: "verified sequence",
            value: after,
        })
    })?;
    let limit = i64::from(clamp_limit(limit));
    let repository_id = repository_id.map(|r| sql_id(r.get())).transpose()?;
    number_waiting(pool).await?;
    let rows: Vec<SequencedRow> = match repository_id {
        None => {
            query(concat!(
                "SELECT ",
                upload_columns!(),
                ", verified_seq FROM uploads WHERE verified_seq > $1 \
                 ORDER BY verified_seq LIMIT $2"
            ))
            .bind(from)
            .bind(limit)
            .fetch_all(pool)
            .await
        }
        Some(repository_id) => {
            query(concat!(
                "SELECT ",
                upload_columns!(),
                ", verified_seq FROM uploads WHERE repository_id = $1 AND verified_seq > $2 \
                 ORDER BY verified_seq LIMIT $3"
            ))
            .bind(repository_id)
            .bind(from)
            .bind(limit)
            .fetch_all(pool)
            .await
        }
    }
    .map_err(db_error)?;
    let mut next = after;
    let mut uploads = Vec::with_capacity(rows.len());
    for row in rows {
        next = u64::try_from(row.verified_seq).map_err(|_| {
            StoreError::Corrupt(Corrupt::Negative {
                column: "verified_seq",
                value: row.verified_seq,
                row: Some(row.upload.id.clone()),
            })
        })?;
        uploads.push(row.upload.into_record()?);
    }
    Ok((uploads, next))
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;
    use crate::sql::exec::query_built;
    use crate::sql::store::SqlStore;
    use crate::store::Store;
    use crate::testsuite::{identity, new_upload, unique_repository_id};

    /// On SQLite, a partial index can serve only a query whose `WHERE` spells its terms
    /// alike (`INDEXED BY` fails when the index cannot be used).
    #[tokio::test]
    async fn unnumbered_uploads_are_found_by_their_index_on_sqlite() {
        let store = crate::SqliteStore::open("sqlite::memory:").await.unwrap();
        let sql = UNNUMBERED_SQL.replacen(
            "FROM uploads",
            "FROM uploads INDEXED BY uploads_unnumbered",
            1,
        );
        let rows: Vec<(String,)> = query_built(sql)
            .bind(5i64)
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert!(rows.is_empty());
        // And the planner picks it, rather than scanning every verified upload.
        let Pool::Sqlite(pool) = &store.pool else {
            panic!("a SQLite store")
        };
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            UNNUMBERED_SQL.replace("$1", "5")
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.3.contains("uploads_unnumbered")),
            "{plan:?}"
        );
        // The numbering statement finds them the same way.
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            NUMBER_SQL.replace("$1", "0").replace("$2", "5")
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.3.contains("uploads_unnumbered")),
            "{plan:?}"
        );
    }

    /// One numbering numbers at most [`MAX_NUMBERED`] uploads, oldest verified first,
    /// and moves the counter to the last; the next numbers the rest after them; with
    /// nothing waiting it changes nothing.
    #[tokio::test]
    async fn one_numbering_numbers_at_most_its_bound() {
        let store = crate::SqliteStore::open("sqlite::memory:").await.unwrap();
        let repo = unique_repository_id();
        let total = usize::try_from(MAX_NUMBERED).unwrap() + 5;
        for chunk in 0..total.div_ceil(200) {
            let writes: Vec<crate::UploadWrite> = (chunk * 200..total.min(chunk * 200 + 200))
                .map(|i| {
                    let mut upload = new_upload(repo);
                    upload.verified_at = Some(runproof_core::UnixTime(
                        2_000_000_000 - i64::try_from(i).unwrap(),
                    ));
                    crate::UploadWrite {
                        upload,
                        jti: None,
                        body: None,
                    }
                })
                .collect();
            store.commit_uploads(&writes).await.unwrap();
        }
        let state = |pool: Pool| async move {
            let (waiting,): (i64,) =
                query("SELECT COUNT(*) FROM uploads WHERE verified_seq IS NULL")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            let (last,): (i64,) = query("SELECT last FROM upload_sequence")
                .fetch_one(&pool)
                .await
                .unwrap();
            (waiting, last)
        };
        assert_eq!(state(store.pool.clone()).await, (1005, 0), "none at commit");
        number_waiting(&store.pool).await.unwrap();
        assert_eq!(state(store.pool.clone()).await, (5, 1000));
        // The first numbered is the one verified first: the last inserted.
        let (oldest,): (i64,) = query("SELECT verified_at FROM uploads WHERE verified_seq = 1")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(oldest, 2_000_000_000 - 1004);
        number_waiting(&store.pool).await.unwrap();
        assert_eq!(state(store.pool.clone()).await, (0, 1005));
        number_waiting(&store.pool).await.unwrap();
        assert_eq!(state(store.pool.clone()).await, (0, 1005));
    }

    /// The migration numbers the uploads verified before it in the order they were
    /// verified (`verified_at`, then id), leaves the others unnumbered, and the uploads
    /// verified after it come next.
    #[tokio::test]
    async fn the_migration_numbers_earlier_uploads_in_verification_order() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.run_to(13, &pool).await.unwrap();
        let repo = unique_repository_id();
        let identity = serde_json::to_string(&identity(repo)).unwrap();
        // (id, status, verified_at): received in id order, verified in another.
        let rows = [
            ("0190f0d8-0000-7000-8000-000000000001", "verified", Some(30)),
            ("0190f0d8-0000-7000-8000-000000000002", "verified", Some(10)),
            ("0190f0d8-0000-7000-8000-000000000003", "pending", None),
            ("0190f0d8-0000-7000-8000-000000000004", "verified", Some(20)),
            ("0190f0d8-0000-7000-8000-000000000005", "rejected", None),
            ("0190f0d8-0000-7000-8000-000000000006", "verified", Some(10)),
        ];
        for (id, status, verified_at) in rows {
            sqlx::query(
                "INSERT INTO uploads (id, status, mode, name, size, sha256, created_at, \
                 verified_at, identity_json, repository_id) \
                 VALUES (?, ?, 'oidc', 'a.txt', 1, ?, 1, ?, ?, ?)",
            )
            .bind(id)
            .bind(status)
            .bind("a".repeat(64))
            .bind(verified_at)
            .bind(&identity)
            .bind(i64::try_from(repo.get()).unwrap())
            .execute(&pool)
            .await
            .unwrap();
        }
        migrator.run(&pool).await.unwrap();
        let store = SqlStore::new(Pool::Sqlite(pool.clone()));
        let later = store.insert_upload(&new_upload(repo)).await.unwrap();
        let (page, next) = store.list_verified_after(Some(repo), 0, 100).await.unwrap();
        let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "0190f0d8-0000-7000-8000-000000000002",
                "0190f0d8-0000-7000-8000-000000000006",
                "0190f0d8-0000-7000-8000-000000000004",
                "0190f0d8-0000-7000-8000-000000000001",
                later.id.as_str(),
            ]
        );
        assert_eq!(next, 5);

        // An older version verifies an upload after the migration, and this one another:
        // neither has a position until the next listing numbers both, oldest first.
        sqlx::query(
            "INSERT INTO uploads (id, status, mode, name, size, sha256, created_at, \
             verified_at, identity_json, repository_id) \
             VALUES (?, 'verified', 'oidc', 'a.txt', 1, ?, 1, 40, ?, ?)",
        )
        .bind("0190f0d8-0000-7000-8000-000000000007")
        .bind("a".repeat(64))
        .bind(&identity)
        .bind(i64::try_from(repo.get()).unwrap())
        .execute(&pool)
        .await
        .unwrap();
        let newest = store.insert_upload(&new_upload(repo)).await.unwrap();
        let (page, next) = store.list_verified_after(Some(repo), 5, 100).await.unwrap();
        let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["0190f0d8-0000-7000-8000-000000000007", newest.id.as_str()]
        );
        assert_eq!(next, 7);
    }
}
