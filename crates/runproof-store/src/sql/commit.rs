//! One batch of uploads in one transaction, with a few multi-row statements whatever
//! its size (see [`crate::pipeline`]).
//!
//! Each statement tolerates its rows' conflicts (`ON CONFLICT DO NOTHING RETURNING`) and
//! reports which rows it stored, so that one write's conflict is that write's outcome
//! and the others go on. The database's unique constraints stay the judge: a `jti` or an
//! idempotency key taken by a concurrent transaction (another replica's) is seen as a
//! conflict once that transaction commits.

use std::collections::{HashMap, HashSet};

use super::exec::{Pool, Tx, db_error, query, query_built, row_runs, values_rows};
use super::idempotency::upload_by_idempotency_key;
use super::notify::announce_pushes;
use super::row::{UploadParams, UploadRow, payload_json, upload_columns, upload_insert_columns};
use crate::error::{Invalid, StoreError};
use crate::model::{IdempotencyScope, UploadId, UploadRecord};
use crate::write::{Committed, UploadWrite};

/// Bound values per statement, below SQLite's limit (32,766) and PostgreSQL's (65,535).
const MAX_PARAMS: usize = 30_000;

/// Inline body bytes per statement, so that one statement never carries a whole batch
/// of large bodies at once.
const MAX_BODY_BYTES_PER_STATEMENT: usize = 4 << 20;

/// Rows per statement: a power of two, so that the texts of multi-row statements are few.
const MAX_ROWS: usize = 64;

const UPLOAD_COLUMNS: usize = 18;
const DELIVERY_COLUMNS: usize = 9;

/// A write whose values are encoded, ready to bind.
struct Encoded<'a> {
    index: usize,
    write: &'a UploadWrite,
    params: UploadParams,
    payloads: Vec<String>,
}

/// Stores `writes` in one transaction; returns each write's outcome, in order.
///
/// # Errors
/// [`StoreError`] when the batch as a whole failed: nothing was stored, or, with
/// [`StoreError::CommitUnknown`], the commit's answer was lost.
pub(crate) async fn commit_uploads(
    pool: &Pool,
    writes: &[UploadWrite],
) -> Result<Vec<Result<Committed, StoreError>>, StoreError> {
    let mut outcomes: Vec<Option<Result<Committed, StoreError>>> =
        writes.iter().map(|_| None).collect();
    let mut live = Vec::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        let encoded = UploadParams::new(&write.upload).and_then(|params| {
            let payloads = write
                .upload
                .pushes
                .iter()
                .map(payload_json)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Encoded {
                index,
                write,
                params,
                payloads,
            })
        });
        match encoded {
            Ok(encoded) => live.push(encoded),
            Err(e) => outcomes[index] = Some(Err(e)),
        }
    }
    if live.is_empty() {
        return Ok(finish(outcomes));
    }

    let mut tx = pool.begin_write().await?;
    let live = spend_jtis(&mut tx, live, &mut outcomes).await?;
    let inserted = insert_uploads(&mut tx, live, &mut outcomes).await?;
    insert_bodies(&mut tx, &inserted).await?;
    let inserted = insert_pushes(&mut tx, inserted, &mut outcomes).await?;
    consume_reservations(&mut tx, &inserted).await?;
    let announced = inserted
        .iter()
        .any(|(e, _)| !e.write.upload.pushes.is_empty());
    if announced {
        announce_pushes(&mut tx).await?;
    }
    tx.commit().await?;
    for (encoded, record) in inserted {
        outcomes[encoded.index] = Some(Ok(Committed::Inserted(record)));
    }
    Ok(finish(outcomes))
}

fn finish(
    outcomes: Vec<Option<Result<Committed, StoreError>>>,
) -> Vec<Result<Committed, StoreError>> {
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(StoreError::Invalid(Invalid::NoOutcome))))
        .collect()
}

/// Records the batch's `jti`s; a write whose `jti` was spent (before, or earlier in
/// this batch) is [`Committed::Replayed`] and goes no further.
async fn spend_jtis<'a>(
    tx: &mut Tx,
    live: Vec<Encoded<'a>>,
    outcomes: &mut [Option<Result<Committed, StoreError>>],
) -> Result<Vec<Encoded<'a>>, StoreError> {
    let mut seen = HashSet::new();
    let mut spending = Vec::new();
    let mut rest = Vec::with_capacity(live.len());
    for encoded in live {
        match &encoded.write.jti {
            None => rest.push(encoded),
            Some(used) if seen.insert((used.issuer.as_str(), used.jti.as_str())) => {
                spending.push(encoded);
            }
            Some(_) => outcomes[encoded.index] = Some(Ok(Committed::Replayed)),
        }
    }
    // Each spending write's position, by its (issuer, jti): unique, as duplicates were
    // set apart above.
    let position: HashMap<(&str, &str), usize> = spending
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let used = e.write.jti.as_ref()?;
            Some(((used.issuer.as_str(), used.jti.as_str()), i))
        })
        .collect();
    let mut fresh = vec![false; spending.len()];
    for run in row_runs(spending.len(), MAX_ROWS.min(MAX_PARAMS / 3)) {
        let chunk = &spending[run];
        let sql = format!(
            "INSERT INTO used_jtis (issuer, jti, expires_at) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING issuer, jti",
            values_rows(tx.dialect(), chunk.len(), 3, 1)
        );
        let mut q = query_built(sql);
        for encoded in chunk {
            if let Some(used) = &encoded.write.jti {
                q = q
                    .bind(used.issuer.as_str())
                    .bind(used.jti.as_str())
                    .bind(used.expires_at.0);
            }
        }
        let rows: Vec<(String, String)> = q.fetch_all(&mut *tx).await.map_err(db_error)?;
        for (issuer, jti) in &rows {
            if let Some(&i) = position.get(&(issuer.as_str(), jti.as_str())) {
                fresh[i] = true;
            }
        }
    }
    for (encoded, spent_now) in spending.into_iter().zip(fresh) {
        if spent_now {
            rest.push(encoded);
        } else {
            outcomes[encoded.index] = Some(Ok(Committed::Replayed));
        }
    }
    Ok(rest)
}

/// Inserts the upload rows; a row that meets an idempotency key is
/// [`Committed::Existing`], one that meets an existing id is refused.
async fn insert_uploads<'a>(
    tx: &mut Tx,
    live: Vec<Encoded<'a>>,
    outcomes: &mut [Option<Result<Committed, StoreError>>],
) -> Result<Vec<(Encoded<'a>, UploadRecord)>, StoreError> {
    let mut rows: HashMap<String, UploadRow> = HashMap::with_capacity(live.len());
    for run in row_runs(live.len(), MAX_ROWS.min(MAX_PARAMS / UPLOAD_COLUMNS)) {
        let chunk = &live[run];
        let sql = format!(
            concat!(
                "INSERT INTO uploads (",
                upload_insert_columns!(),
                ") VALUES {} ON CONFLICT DO NOTHING RETURNING ",
                upload_columns!()
            ),
            values_rows(tx.dialect(), chunk.len(), UPLOAD_COLUMNS, 1)
        );
        let mut q = query_built(sql);
        for encoded in chunk {
            q = encoded.params.bind(q, &encoded.write.upload);
        }
        let stored: Vec<UploadRow> = q.fetch_all(&mut *tx).await.map_err(db_error)?;
        rows.extend(stored.into_iter().map(|row| (row.id.clone(), row)));
    }
    let mut inserted = Vec::with_capacity(rows.len());
    for encoded in live {
        let upload = &encoded.write.upload;
        if let Some(row) = rows.remove(upload.id.as_str()) {
            match row.into_record() {
                Ok(record) => inserted.push((encoded, record)),
                Err(e) => {
                    // Stored yet unreadable: a bug; undone so that nothing half-made stays.
                    undo(tx, &upload.id, &[]).await?;
                    outcomes[encoded.index] = Some(Err(e));
                }
            }
            continue;
        }
        let outcome = match &upload.idempotency_key {
            Some(key) => {
                let scope = IdempotencyScope::new(upload.mode, &upload.identity);
                match upload_by_idempotency_key(&mut *tx, &scope, key).await? {
                    Some(record) => Ok(Committed::Existing(record)),
                    None => Err(already_exists(&upload.id)),
                }
            }
            None => Err(already_exists(&upload.id)),
        };
        outcomes[encoded.index] = Some(outcome);
    }
    Ok(inserted)
}

fn already_exists(id: &UploadId) -> StoreError {
    // Not the idempotency key, so the id itself: a caller bug, not an outage.
    StoreError::Invalid(Invalid::Exists {
        what: "upload",
        key: id.to_string(),
    })
}

/// Stores the inline bodies of the inserted uploads.
async fn insert_bodies(
    tx: &mut Tx,
    inserted: &[(Encoded<'_>, UploadRecord)],
) -> Result<(), StoreError> {
    let with_body: Vec<(&UploadId, &[u8])> = inserted
        .iter()
        .filter_map(|(e, _)| {
            e.write
                .body
                .as_deref()
                .map(|body| (&e.write.upload.id, body))
        })
        .collect();
    let mut start = 0;
    while start < with_body.len() {
        let mut end = start;
        let mut bytes = 0usize;
        while end < with_body.len()
            && end - start < MAX_ROWS
            && (end == start || bytes + with_body[end].1.len() <= MAX_BODY_BYTES_PER_STATEMENT)
        {
            bytes += with_body[end].1.len();
            end += 1;
        }
        let chunk = &with_body[start..end];
        let sql = format!(
            "INSERT INTO upload_bodies (upload_id, body) VALUES {}",
            values_rows(tx.dialect(), chunk.len(), 2, 1)
        );
        let mut q = query_built(sql);
        for (id, body) in chunk {
            q = q.bind(id.as_str()).bind(*body);
        }
        q.execute(&mut *tx).await.map_err(db_error)?;
        start = end;
    }
    Ok(())
}

/// Enqueues the inserted uploads' pushes (pending, due at the upload's creation). An
/// upload one of whose push ids exists already is undone and refused.
async fn insert_pushes<'a>(
    tx: &mut Tx,
    inserted: Vec<(Encoded<'a>, UploadRecord)>,
    outcomes: &mut [Option<Result<Committed, StoreError>>],
) -> Result<Vec<(Encoded<'a>, UploadRecord)>, StoreError> {
    let rows: Vec<(&Encoded<'_>, usize)> = inserted
        .iter()
        .flat_map(|(e, _)| (0..e.write.upload.pushes.len()).map(move |i| (e, i)))
        .collect();
    if rows.is_empty() {
        return Ok(inserted);
    }
    let mut stored = HashSet::with_capacity(rows.len());
    for run in row_runs(rows.len(), MAX_ROWS.min(MAX_PARAMS / DELIVERY_COLUMNS)) {
        let chunk = &rows[run];
        let sql = format!(
            "INSERT INTO outbox (id, event, upload_id, payload_json, status, attempts, \
             created_at, next_attempt_at, updated_at) VALUES {} \
             ON CONFLICT DO NOTHING RETURNING id",
            values_rows(tx.dialect(), chunk.len(), DELIVERY_COLUMNS, 1)
        );
        let mut q = query_built(sql);
        for (encoded, i) in chunk {
            let upload = &encoded.write.upload;
            let push = &upload.pushes[*i];
            q = q
                .bind(&push.id)
                .bind(&push.event)
                .bind(&push.upload_id)
                .bind(&encoded.payloads[*i])
                .bind("pending")
                .bind(0i64)
                .bind(upload.created_at.0)
                .bind(upload.created_at.0)
                .bind(upload.created_at.0);
        }
        let ids: Vec<(String,)> = q.fetch_all(&mut *tx).await.map_err(db_error)?;
        stored.extend(ids.into_iter().map(|(id,)| id));
    }
    let mut kept = Vec::with_capacity(inserted.len());
    for (encoded, record) in inserted {
        let pushes = &encoded.write.upload.pushes;
        match pushes.iter().find(|d| !stored.contains(&d.id)) {
            None => kept.push((encoded, record)),
            Some(taken) => {
                let ours: Vec<String> = pushes
                    .iter()
                    .filter(|d| stored.contains(&d.id))
                    .map(|d| d.id.clone())
                    .collect();
                undo(tx, &encoded.write.upload.id, &ours).await?;
                outcomes[encoded.index] = Some(Err(StoreError::Invalid(Invalid::Exists {
                    what: "delivery",
                    key: taken.id.clone(),
                })));
            }
        }
    }
    Ok(kept)
}

/// Removes what this transaction stored of one upload: its pushes `pushes`, its
/// body and its row (its `jti` stays spent).
async fn undo(tx: &mut Tx, id: &UploadId, pushes: &[String]) -> Result<(), StoreError> {
    if !pushes.is_empty() {
        let sql = format!(
            "DELETE FROM outbox WHERE id IN (SELECT item FROM {})",
            tx.dialect().text_list("$1", "t")
        );
        query_built(sql)
            .bind(pushes)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    query("DELETE FROM upload_bodies WHERE upload_id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    query("DELETE FROM uploads WHERE id = $1")
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Deletes the pending reservations the inserted uploads consume.
async fn consume_reservations(
    tx: &mut Tx,
    inserted: &[(Encoded<'_>, UploadRecord)],
) -> Result<(), StoreError> {
    let ids: Vec<String> = inserted
        .iter()
        .filter_map(|(e, _)| e.write.upload.pending_reservation.as_ref())
        .map(|r| r.as_str().to_owned())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "DELETE FROM pending_reservations WHERE id IN (SELECT item FROM {})",
        tx.dialect().text_list("$1", "t")
    );
    query_built(sql)
        .bind(ids.as_slice())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// The inline body of upload `id`, if it has one.
pub(crate) async fn inline_body(pool: &Pool, id: &UploadId) -> Result<Option<Vec<u8>>, StoreError> {
    let row: Option<(Vec<u8>,)> = query("SELECT body FROM upload_bodies WHERE upload_id = $1")
        .bind(id.as_str())
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    Ok(row.map(|(body,)| body))
}

/// Deletes the inline body of upload `id`; `true` when there was one.
pub(crate) async fn delete_inline_body(pool: &Pool, id: &UploadId) -> Result<bool, StoreError> {
    let done = query("DELETE FROM upload_bodies WHERE upload_id = $1")
        .bind(id.as_str())
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(done > 0)
}

/// Whether `jti` of `issuer` is recorded as spent.
pub(crate) async fn jti_is_spent(pool: &Pool, issuer: &str, jti: &str) -> Result<bool, StoreError> {
    let row: Option<(i64,)> =
        query("SELECT expires_at FROM used_jtis WHERE issuer = $1 AND jti = $2")
            .bind(issuer)
            .bind(jti)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
    Ok(row.is_some())
}

/// The latest expiry among spent `jti`s, if any: until then, a token spent before this
/// process started may come again.
pub(crate) async fn latest_jti_expiry(pool: &Pool) -> Result<Option<i64>, StoreError> {
    let row: Option<(Option<i64>,)> = query("SELECT MAX(expires_at) FROM used_jtis")
        .fetch_optional(pool)
        .await
        .map_err(db_error)?;
    Ok(row.and_then(|(max,)| max))
}
