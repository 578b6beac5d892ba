//! The statements of the event log ([`NewEvent`], [`EventRecord`]): insert a batch with
//! its hourly counts, list newest first, read the hourly counts, purge by age and by count.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use runproof_core::{RepositoryId, RunId, UnixTime};

use super::exec::{Pool, db_error, query, query_built, row_runs, values_rows};
use super::row::{clamp_limit, sql_id};
use crate::error::{Corrupt, StoreError};
use crate::event::{
    EVENT_HOUR_SECONDS, EventCursor, EventFilter, EventHour, EventKind, EventOutcome, EventRecord,
    MAX_EVENT_MISMATCHES_BYTES, NewEvent, bounded_text, event_hour,
};
use crate::model::UploadId;

/// The columns an insert names, in order.
const INSERT_COLUMNS: &str = "at, kind, route, mode, outcome, code, rule, mismatches_json, \
     repository_id, run_id, workflow, source, detail, upload_id";
const COLUMNS: usize = 14;
/// The most rows one insert statement carries.
const MAX_ROWS_PER_INSERT: usize = 64;

/// An `events` row as stored.
#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    id: i64,
    at: i64,
    kind: String,
    route: Option<String>,
    mode: Option<String>,
    outcome: String,
    code: Option<String>,
    rule: Option<String>,
    mismatches_json: Option<String>,
    repository_id: Option<i64>,
    run_id: Option<i64>,
    workflow: Option<String>,
    source: Option<String>,
    detail: Option<String>,
    upload_id: Option<String>,
}

fn unsigned(column: &'static str, value: i64, row: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| {
        StoreError::Corrupt(Corrupt::Negative {
            column,
            value,
            row: Some(format!("event {row}")),
        })
    })
}

impl EventRow {
    fn into_record(self) -> Result<EventRecord, StoreError> {
        let row = self.id;
        let id = unsigned("id", self.id, row)?;
        let kind = EventKind::parse(&self.kind).ok_or_else(|| {
            StoreError::Corrupt(Corrupt::text(
                "kind",
                &self.kind,
                Some(format!("event {row}")),
            ))
        })?;
        let outcome = EventOutcome::parse(&self.outcome).ok_or_else(|| {
            StoreError::Corrupt(Corrupt::text(
                "outcome",
                &self.outcome,
                Some(format!("event {row}")),
            ))
        })?;
        let mismatches = self
            .mismatches_json
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|source| {
                StoreError::Corrupt(Corrupt::Json {
                    column: "mismatches_json",
                    row: format!("event {row}"),
                    source,
                })
            })?;
        let repository_id = self
            .repository_id
            .map(|v| unsigned("repository_id", v, row).map(RepositoryId))
            .transpose()?;
        let run_id = self
            .run_id
            .map(|v| unsigned("run_id", v, row).map(RunId))
            .transpose()?;
        Ok(EventRecord {
            id,
            event: NewEvent {
                at: UnixTime(self.at),
                kind,
                route: self.route,
                mode: self.mode,
                outcome,
                code: self.code,
                rule: self.rule,
                mismatches,
                repository_id,
                run_id,
                workflow: self.workflow,
                source: self.source,
                detail: self.detail,
                upload_id: self.upload_id.map(UploadId),
            },
        })
    }
}

/// One event's values, bounded, ready to bind.
struct Bound {
    at: i64,
    kind: &'static str,
    route: Option<String>,
    mode: Option<String>,
    outcome: &'static str,
    code: Option<String>,
    rule: Option<String>,
    mismatches: Option<String>,
    repository_id: Option<i64>,
    run_id: Option<i64>,
    workflow: Option<String>,
    source: Option<String>,
    detail: Option<String>,
    upload_id: Option<String>,
}

fn text(v: Option<&String>) -> Option<String> {
    v.map(|s| bounded_text(s).to_owned())
}

impl Bound {
    fn new(e: &NewEvent) -> Result<Self, StoreError> {
        let mismatches = e
            .mismatches
            .as_ref()
            .and_then(|m| serde_json::to_string(m).ok())
            .filter(|m| m.len() <= MAX_EVENT_MISMATCHES_BYTES);
        Ok(Self {
            at: e.at.0,
            kind: e.kind.as_str(),
            route: text(e.route.as_ref()),
            mode: text(e.mode.as_ref()),
            outcome: e.outcome.as_str(),
            code: text(e.code.as_ref()),
            rule: text(e.rule.as_ref()),
            mismatches,
            repository_id: e.repository_id.map(|r| sql_id(r.0)).transpose()?,
            run_id: e.run_id.map(|r| sql_id(r.0)).transpose()?,
            workflow: text(e.workflow.as_ref()),
            source: text(e.source.as_ref()),
            detail: text(e.detail.as_ref()),
            upload_id: e
                .upload_id
                .as_ref()
                .map(|u| bounded_text(u.as_str()).to_owned()),
        })
    }
}

/// A row of `event_hours`: '' stands for no mode or no code.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct HourKey<'a> {
    hour: i64,
    kind: &'static str,
    outcome: &'static str,
    mode: &'a str,
    code: &'a str,
}

/// How many of `bound` fall on each row of `event_hours`.
fn hour_counts(bound: &[Bound]) -> BTreeMap<HourKey<'_>, i64> {
    let mut counts = BTreeMap::new();
    for b in bound {
        let key = HourKey {
            hour: event_hour(UnixTime(b.at)).0,
            kind: b.kind,
            outcome: b.outcome,
            mode: b.mode.as_deref().unwrap_or(""),
            code: b.code.as_deref().unwrap_or(""),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

const UPSERT_HOUR_SQL: &str = "INSERT INTO event_hours (hour, kind, outcome, mode, code, count) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (hour, kind, outcome, mode, code) \
     DO UPDATE SET count = event_hours.count + excluded.count";

/// Inserts `events` and their hourly counts in one transaction; returns how many.
pub(crate) async fn insert(pool: &Pool, events: &[NewEvent]) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(0);
    }
    let bound = events
        .iter()
        .map(Bound::new)
        .collect::<Result<Vec<_>, _>>()?;
    let mut tx = pool.begin_write().await?;
    let dialect = tx.dialect();
    for run in row_runs(bound.len(), MAX_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO events ({INSERT_COLUMNS}) VALUES {}",
            values_rows(dialect, run.len(), COLUMNS, 1)
        );
        let mut q = query_built(sql);
        for b in &bound[run] {
            q = q
                .bind(b.at)
                .bind(b.kind)
                .bind(&b.route)
                .bind(&b.mode)
                .bind(b.outcome)
                .bind(&b.code)
                .bind(&b.rule)
                .bind(&b.mismatches)
                .bind(b.repository_id)
                .bind(b.run_id)
                .bind(&b.workflow)
                .bind(&b.source)
                .bind(&b.detail)
                .bind(&b.upload_id);
        }
        q.execute(&mut tx).await.map_err(db_error)?;
    }
    // Keys in order, so that concurrent batches lock the rows they share in one order.
    for (key, count) in hour_counts(&bound) {
        query(UPSERT_HOUR_SQL)
            .bind(key.hour)
            .bind(key.kind)
            .bind(key.outcome)
            .bind(key.mode)
            .bind(key.code)
            .bind(count)
            .execute(&mut tx)
            .await
            .map_err(db_error)?;
    }
    tx.commit().await?;
    Ok(bound.len() as u64)
}

/// The listing statement for `filter`, with a cursor when `with_cursor`.
fn list_sql(filter: &EventFilter, with_cursor: bool) -> String {
    let mut sql = String::from(
        "SELECT id, at, kind, route, mode, outcome, code, rule, mismatches_json, \
         repository_id, run_id, workflow, source, detail, upload_id FROM events WHERE TRUE",
    );
    let mut param = 0;
    let mut next = || {
        param += 1;
        param
    };
    if filter.kind.is_some() {
        let _ = write!(sql, " AND kind = ${}", next());
    }
    if filter.outcome.is_some() {
        let _ = write!(sql, " AND outcome = ${}", next());
    }
    if filter.code.is_some() {
        let _ = write!(sql, " AND code = ${}", next());
    }
    if filter.repository_id.is_some() {
        let _ = write!(sql, " AND repository_id = ${}", next());
    }
    if filter.since.is_some() {
        let _ = write!(sql, " AND at >= ${}", next());
    }
    if filter.upload_id.is_some() {
        let _ = write!(sql, " AND upload_id = ${}", next());
    }
    if with_cursor {
        let _ = write!(sql, " AND id < ${}", next());
    }
    let _ = write!(sql, " ORDER BY id DESC LIMIT ${}", next());
    sql
}

/// Events matching `filter`, newest first, at most `limit`, after `cursor`.
pub(crate) async fn list(
    pool: &Pool,
    filter: &EventFilter,
    limit: u32,
    cursor: Option<EventCursor>,
) -> Result<(Vec<EventRecord>, Option<EventCursor>), StoreError> {
    let limit = clamp_limit(limit);
    let mut q = query_built(list_sql(filter, cursor.is_some()));
    if let Some(kind) = filter.kind {
        q = q.bind(kind.as_str());
    }
    if let Some(outcome) = filter.outcome {
        q = q.bind(outcome.as_str());
    }
    if let Some(code) = &filter.code {
        q = q.bind(code.as_str());
    }
    if let Some(repo) = filter.repository_id {
        q = q.bind(sql_id(repo.0)?);
    }
    if let Some(since) = filter.since {
        q = q.bind(since.0);
    }
    if let Some(upload) = &filter.upload_id {
        q = q.bind(upload.as_str());
    }
    if let Some(cursor) = cursor {
        q = q.bind(sql_id(cursor.0)?);
    }
    // One extra row tells whether another page exists without a COUNT.
    let rows: Vec<EventRow> = q
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let more = rows.len() > limit as usize;
    let records = rows
        .into_iter()
        .take(limit as usize)
        .map(EventRow::into_record)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if more {
        records.last().map(|r| EventCursor(r.id))
    } else {
        None
    };
    Ok((records, next))
}

/// Reads one chart: `event_hours` of `kind` and `outcome` from an hour on, through
/// `event_hours_chart`, in its order.
const HOURS_SQL: &str = "SELECT hour, mode, code, count FROM event_hours \
     WHERE kind = $1 AND outcome = $2 AND hour >= $3 ORDER BY hour, mode, code";

/// The hourly counts of `kind` and `outcome` from the hour `since` falls in.
pub(crate) async fn hours(
    pool: &Pool,
    since: UnixTime,
    kind: EventKind,
    outcome: EventOutcome,
) -> Result<Vec<EventHour>, StoreError> {
    let rows: Vec<(i64, String, String, i64)> = query(HOURS_SQL)
        .bind(kind.as_str())
        .bind(outcome.as_str())
        .bind(event_hour(since).0)
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    let some = |s: String| (!s.is_empty()).then_some(s);
    rows.into_iter()
        .map(|(hour, mode, code, count)| {
            let count = u64::try_from(count).map_err(|_| {
                StoreError::Corrupt(Corrupt::Negative {
                    column: "count",
                    value: count,
                    row: Some(format!("event hour {hour}")),
                })
            })?;
            Ok(EventHour {
                hour: UnixTime(hour),
                mode: some(mode),
                code: some(code),
                count,
            })
        })
        .collect()
}

/// Reads one chart summed by mode: buckets of `$4` seconds from an hour on, through
/// `event_hours_chart`.
const COUNTS_BY_MODE_SQL: &str = "SELECT hour - hour % $4 AS bucket, mode, \
     CAST(SUM(count) AS BIGINT) FROM event_hours \
     WHERE kind = $1 AND outcome = $2 AND hour >= $3 GROUP BY bucket, mode ORDER BY bucket, mode";

/// Reads one chart summed by code, as [`COUNTS_BY_MODE_SQL`] by mode.
const COUNTS_BY_CODE_SQL: &str = "SELECT hour - hour % $4 AS bucket, code, \
     CAST(SUM(count) AS BIGINT) FROM event_hours \
     WHERE kind = $1 AND outcome = $2 AND hour >= $3 GROUP BY bucket, code ORDER BY bucket, code";

/// The counts of `kind` and `outcome` from the hour `since` falls in, summed by `split`
/// into buckets of `bucket_seconds`.
pub(crate) async fn counts(
    pool: &Pool,
    since: UnixTime,
    kind: EventKind,
    outcome: EventOutcome,
    split: crate::EventSplit,
    bucket_seconds: u32,
) -> Result<Vec<EventHour>, StoreError> {
    if bucket_seconds == 0 || !bucket_seconds.is_multiple_of(3600) {
        return Err(StoreError::Invalid(crate::Invalid::OutOfRange {
            what: "chart bucket seconds (a positive multiple of 3600)",
            value: u64::from(bucket_seconds),
        }));
    }
    let by_mode = matches!(split, crate::EventSplit::Mode);
    let sql = if by_mode {
        COUNTS_BY_MODE_SQL
    } else {
        COUNTS_BY_CODE_SQL
    };
    let rows: Vec<(i64, String, i64)> = query(sql)
        .bind(kind.as_str())
        .bind(outcome.as_str())
        .bind(event_hour(since).0)
        .bind(i64::from(bucket_seconds))
        .fetch_all(pool)
        .await
        .map_err(db_error)?;
    rows.into_iter()
        .map(|(bucket, label, count)| {
            let count = u64::try_from(count).map_err(|_| {
                StoreError::Corrupt(Corrupt::Negative {
                    column: "count",
                    value: count,
                    row: Some(format!("event bucket {bucket}")),
                })
            })?;
            let label = (!label.is_empty()).then_some(label);
            let (mode, code) = if by_mode {
                (label, None)
            } else {
                (None, label)
            };
            Ok(EventHour {
                hour: UnixTime(bucket),
                mode,
                code,
                count,
            })
        })
        .collect()
}

/// Deletes events before `before`, then all but the newest `max_rows`; returns how many
/// events. Hourly counts go by age alone: those of hours that ended by `before`.
pub(crate) async fn purge(pool: &Pool, before: UnixTime, max_rows: u64) -> Result<u64, StoreError> {
    let old = query("DELETE FROM events WHERE at < $1")
        .bind(before.0)
        .execute(pool)
        .await
        .map_err(db_error)?;
    query("DELETE FROM event_hours WHERE hour <= $1")
        .bind(before.0.saturating_sub(EVENT_HOUR_SECONDS))
        .execute(pool)
        .await
        .map_err(db_error)?;
    let keep = i64::try_from(max_rows).unwrap_or(i64::MAX);
    let newest_dropped: Option<(i64,)> =
        query("SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET $1")
            .bind(keep)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
    let over = match newest_dropped {
        Some((id,)) => query("DELETE FROM events WHERE id <= $1")
            .bind(id)
            .execute(pool)
            .await
            .map_err(db_error)?,
        None => 0,
    };
    Ok(old + over)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_binds_one_placeholder_per_filter_in_order() {
        let all = EventFilter {
            kind: Some(EventKind::Upload),
            outcome: Some(EventOutcome::Refused),
            code: Some("x".into()),
            repository_id: Some(RepositoryId(1)),
            since: Some(UnixTime(0)),
            upload_id: Some(UploadId::generate()),
        };
        let sql = list_sql(&all, true);
        assert!(sql.contains("kind = $1") && sql.contains("upload_id = $6"));
        assert!(sql.contains("id < $7") && sql.ends_with("$8"));
        assert!(list_sql(&EventFilter::default(), false).ends_with("LIMIT $1"));
    }

    /// SQLite's plan of `sql` with its placeholders replaced by `values`, in order.
    async fn sqlite_plan(sql: &str, values: &[&str]) -> Vec<String> {
        let store = crate::SqliteStore::open("sqlite::memory:").await.unwrap();
        let Pool::Sqlite(pool) = &store.pool else {
            panic!("a SQLite store")
        };
        let mut sql = sql.to_owned();
        // Highest first, so that `$1` does not eat into `$10`.
        for (i, v) in values.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", i + 1), v);
        }
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(pool)
                .await
                .unwrap();
        plan.into_iter().map(|step| step.3).collect()
    }

    /// A chart reads its rows from `event_hours_chart` alone, already in order.
    #[tokio::test]
    async fn event_hours_are_read_through_their_index_on_sqlite() {
        let plan = sqlite_plan(HOURS_SQL, &["'upload'", "'accepted'", "0"]).await;
        assert!(
            plan.iter()
                .any(|s| s.contains("COVERING INDEX event_hours_chart")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|s| s.contains("TEMP B-TREE")), "{plan:?}");
    }

    /// A chart's sums read `event_hours_chart` alone (the grouping by bucket then sorts
    /// the few rows a window has, never the events).
    #[tokio::test]
    async fn event_counts_are_read_through_their_index_on_sqlite() {
        for sql in [COUNTS_BY_MODE_SQL, COUNTS_BY_CODE_SQL] {
            let plan = sqlite_plan(sql, &["'upload'", "'refused'", "0", "14400"]).await;
            assert!(
                plan.iter()
                    .any(|s| s.contains("COVERING INDEX event_hours_chart")),
                "{plan:?}"
            );
            assert!(!plan.iter().any(|s| s.contains("SCAN")), "{plan:?}");
        }
    }

    /// An upload's events are found through `events_upload`, newest first without a sort.
    #[tokio::test]
    async fn events_of_an_upload_are_read_through_their_index_on_sqlite() {
        let filter = EventFilter {
            upload_id: Some(UploadId::generate()),
            ..EventFilter::default()
        };
        for cursor in [false, true] {
            let values: &[&str] = if cursor {
                &["'x'", "100", "51"]
            } else {
                &["'x'", "51"]
            };
            let plan = sqlite_plan(&list_sql(&filter, cursor), values).await;
            assert!(plan.iter().any(|s| s.contains("events_upload")), "{plan:?}");
            assert!(!plan.iter().any(|s| s.contains("TEMP B-TREE")), "{plan:?}");
        }
    }
}
