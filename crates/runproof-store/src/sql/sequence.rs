//! The order in which uploads become verified (`verified_seq`), and the forward listing
//! that follows it ([`crate::Store::list_verified_after`]).
//!
//! A transaction that makes uploads verified numbers them with [`number`] as its last
//! write before `COMMIT`. The numbers come from the one row of `upload_sequence`, taken
//! with `UPDATE … RETURNING`: that row stays locked until the transaction ends, so a
//! second verifying transaction waits there until the first has committed (or rolled
//! back) and then reads its number. Numbers therefore become visible in increasing
//! order: once a reader sees number `n`, every number below `n` is committed or was
//! never used, and a poller that remembers the highest number it has seen misses
//! nothing. A plain sequence would not do on PostgreSQL: two transactions may commit in
//! the opposite order to the one their numbers were drawn in.
//!
//! Taken last, the lock is held only for the commit itself. A transaction that holds it
//! then waits at most for the row of an upload left without a position by an older
//! version, whose transactions never wait for the counter, so it adds no deadlock.
//! SQLite's writing transactions hold the database's only write lock already; the
//! statements are the same.

use std::collections::HashSet;

use runproof_core::RepositoryId;

use super::exec::{Pool, Tx, db_error, query, query_built};
use super::row::{UploadRow, clamp_limit, sql_id, upload_columns};
use crate::error::{Corrupt, Invalid, StoreError};
use crate::model::{UploadId, UploadRecord};

/// The most verified uploads without a position, not the transaction's own, that one
/// call of [`number`] numbers besides the transaction's own (beyond: the next calls).
const MAX_STRAYS: usize = 64;

/// Verified uploads without a position (`$1`: the most), oldest first; spelt as the
/// partial index `uploads_unnumbered` is, so that it serves the query.
const UNNUMBERED_SQL: &str = "SELECT id FROM uploads \
     WHERE status = 'verified' AND verified_seq IS NULL ORDER BY verified_at, id LIMIT $1";

/// Numbers the uploads `ids` (just made verified, in order) with the next numbers of
/// `upload_sequence`. Call it last before `COMMIT`: it locks the counter until the
/// transaction ends.
///
/// Verified uploads that another transaction committed without a position (a version
/// that did not number them: an older replica during an upgrade) are numbered first,
/// at most [`MAX_STRAYS`] a call, so that `after` lists them too. One that a concurrent
/// call numbered meanwhile keeps its position; the number meant for it stays unused,
/// which a poller never notices.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub(crate) async fn number(tx: &mut Tx, ids: &[&UploadId]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let own: HashSet<&str> = ids.iter().map(|id| id.as_str()).collect();
    let unnumbered: Vec<(String,)> = query(UNNUMBERED_SQL)
        .bind(sql_count(ids.len() + MAX_STRAYS))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
    let mut ordered: Vec<String> = unnumbered
        .into_iter()
        .map(|(id,)| id)
        .filter(|id| !own.contains(id.as_str()))
        .take(MAX_STRAYS)
        .collect();
    ordered.extend(ids.iter().map(|id| id.as_str().to_owned()));
    let count = sql_count(ordered.len());
    let (last,): (i64,) =
        query("UPDATE upload_sequence SET last = last + $1 WHERE singleton = 1 RETURNING last")
            .bind(count)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
    let first = last - count + 1;
    if let [id] = ordered.as_slice() {
        query("UPDATE uploads SET verified_seq = $1 WHERE id = $2 AND verified_seq IS NULL")
            .bind(first)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        return Ok(());
    }
    // ROW_NUMBER over the list's position: 1, 2, … on both backends, whatever base each
    // numbers its list positions from.
    let sql = format!(
        "UPDATE uploads SET verified_seq = $1 + numbered.n - 1 FROM \
         (SELECT item, ROW_NUMBER() OVER (ORDER BY ord) AS n FROM {}) AS numbered \
         WHERE uploads.id = numbered.item AND uploads.verified_seq IS NULL",
        tx.dialect().text_list("$2", "t")
    );
    query_built(sql)
        .bind(first)
        .bind(ordered.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// A count as a SQL integer (a batch's size: far below `i64::MAX`).
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
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
/// the last one, or `after` when there is none.
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
            .bind(sql_id(repository_id.get())?)
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

        // An older version verifies an upload after the migration, without a position:
        // the next upload verified here numbers it, before itself.
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
        let (page, _) = store.list_verified_after(Some(repo), 5, 100).await.unwrap();
        assert!(page.is_empty(), "not listed before it has a position");
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
