//! The event log at 1,000,000 events: what the console's pages ask of it.
//!
//! Fills a fresh store with 1,000,000 events spread over 30 days (the default retention
//! and row bound), through `Store::insert_events` in batches of 256 as the event writer
//! sends them: uploads (most of them, in four modes; accepted, refused with one of ten
//! codes, or failed), sessions, webhook deliveries, pending uploads settled, pushes and
//! rules changes, over 200 repositories. Then times, each as the median of many calls:
//!
//! - `event_hours` over 24 hours and over 7 days, for accepted and for refused uploads
//!   (the overview's charts);
//! - `list_events`, a first page of 50: unfiltered, by outcome (`refused`), by code, by
//!   repository, by upload; and a page half-way down the log, unfiltered and refused only,
//!   through a cursor.
//!
//! Each is printed next to one raw RSA-2048 PKCS#1 v1.5 signature check with aws-lc-rs on
//! a 1.8 kB input (a GitHub token's size), measured in the same run: the unit a request
//! already pays once. SQLite always (a file in the target directory, with the server's
//! settings: WAL, `synchronous = FULL`); PostgreSQL too when
//! `RUNPROOF_BENCH_DATABASE_URL` or `RUNPROOF_TEST_DATABASE_URL` names a server (in a
//! schema of its own, analyzed after the fill as autovacuum would, dropped at the end).
//!
//! Run: `cargo bench -p runproof-store --bench events`. `RUNPROOF_BENCH_EVENTS` sets
//! another number of events (for a quick trial).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use runproof_core::{RepositoryId, UnixTime};
use runproof_store::{
    EventCursor, EventFilter, EventKind, EventOutcome, PostgresOptions, SqliteStore, Store,
    UploadId,
};
use sqlx::Connection as _;

#[path = "common/synthetic.rs"]
mod synthetic;

use synthetic::{Events, FIRST_REPOSITORY, TARGET_CODE};

const DEFAULT_EVENTS: u64 = 1_000_000;
const DAYS: i64 = 30;
const PAGE: u32 = 50;

/// What the queries look for, as drawn during the fill.
struct Targets {
    code: &'static str,
    repository_id: RepositoryId,
    upload_id: UploadId,
    middle: EventCursor,
    now: UnixTime,
}

/// Fills `store`; returns what to look for and how long one batch took (the median).
async fn fill(store: &dyn Store, total: u64, now: i64) -> (Targets, Duration) {
    let mut events = Events::new(total, now - DAYS * 86_400, DAYS * 86_400);
    let started = Instant::now();
    let mut batches = Vec::new();
    while let Some(batch) = events.batch() {
        let t = Instant::now();
        store.insert_events(&batch).await.unwrap();
        batches.push(t.elapsed());
    }
    println!(
        "  filled {total} events in {:.1} s ({:.0} events/s)",
        started.elapsed().as_secs_f64(),
        total as f64 / started.elapsed().as_secs_f64()
    );
    batches.sort();
    let targets = Targets {
        code: TARGET_CODE,
        repository_id: RepositoryId(FIRST_REPOSITORY + 7),
        upload_id: events.target_upload.expect("an upload after the middle"),
        middle: EventCursor(total / 2),
        now: UnixTime(now),
    };
    (targets, batches[batches.len() / 2])
}

/// The median time of `f`, over at least 20 calls and about a second.
async fn median<F, Fut>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..3 {
        f().await;
    }
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 20 || (started.elapsed() < Duration::from_secs(1) && times.len() < 2_000) {
        let t = Instant::now();
        f().await;
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// One raw RSA-2048 PKCS#1 v1.5 (SHA-256) signature check on a 1.8 kB input: the median
/// of 20 rounds of 200.
fn raw_rsa_verify() -> Duration {
    let key = KeyPair::generate(KeySize::Rsa2048).unwrap();
    let message = vec![b'e'; 1_800];
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        &message,
        &mut signature,
    )
    .unwrap();
    let public =
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref()).unwrap();
    public.verify_sig(&message, &signature).unwrap();
    let mut rounds: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..200 {
                public
                    .verify_sig(black_box(&message), black_box(&signature))
                    .unwrap();
            }
            t.elapsed() / 200
        })
        .collect();
    rounds.sort();
    rounds[rounds.len() / 2]
}

/// The timed queries: a name and its median.
async fn measure(store: &Arc<dyn Store>, t: &Targets) -> Vec<(String, Duration)> {
    let mut out = Vec::new();
    for (label, outcome) in [
        ("accepted", EventOutcome::Accepted),
        ("refused", EventOutcome::Refused),
    ] {
        for (span, secs) in [("24 h", 86_400), ("7 d", 7 * 86_400)] {
            let since = t.now.minus(secs);
            let rows = store
                .event_hours(since, EventKind::Upload, outcome)
                .await
                .unwrap();
            let time = median(|| async {
                black_box(
                    store
                        .event_hours(since, EventKind::Upload, outcome)
                        .await
                        .unwrap(),
                );
            })
            .await;
            out.push((
                format!(
                    "`event_hours`, {label} uploads, {span} ({} rows)",
                    rows.len()
                ),
                time,
            ));
        }
    }
    let lists = [
        ("unfiltered", EventFilter::default(), None),
        (
            "`outcome=refused`",
            EventFilter {
                outcome: Some(EventOutcome::Refused),
                ..EventFilter::default()
            },
            None,
        ),
        (
            "`code=rule_mismatch`",
            EventFilter {
                code: Some(t.code.into()),
                ..EventFilter::default()
            },
            None,
        ),
        (
            "`repository_id` (1 of 200)",
            EventFilter {
                repository_id: Some(t.repository_id),
                ..EventFilter::default()
            },
            None,
        ),
        (
            "`upload_id`",
            EventFilter {
                upload_id: Some(t.upload_id.clone()),
                ..EventFilter::default()
            },
            None,
        ),
        (
            "unfiltered, cursor half-way down",
            EventFilter::default(),
            Some(t.middle),
        ),
        (
            "`outcome=refused`, cursor half-way down",
            EventFilter {
                outcome: Some(EventOutcome::Refused),
                ..EventFilter::default()
            },
            Some(t.middle),
        ),
    ];
    for (label, filter, cursor) in lists {
        let (page, _) = store.list_events(&filter, PAGE, cursor).await.unwrap();
        assert!(!page.is_empty(), "{label} finds events");
        let time = median(|| async {
            black_box(store.list_events(&filter, PAGE, cursor).await.unwrap());
        })
        .await;
        out.push((
            format!(
                "`list_events`, {PAGE} a page, {label} ({} rows)",
                page.len()
            ),
            time,
        ));
    }
    out
}

fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn ratio(d: Duration, unit: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() / unit.as_secs_f64())
}

/// Opens PostgreSQL in a fresh schema when a server is named.
async fn postgres() -> Option<(runproof_store::PostgresStore, String, String)> {
    let url = ["RUNPROOF_BENCH_DATABASE_URL", "RUNPROOF_TEST_DATABASE_URL"]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().filter(|u| !u.is_empty()))?;
    let schema = format!("rp_bench_{}", uuid::Uuid::new_v4().simple());
    let store = runproof_store::PostgresStore::connect(
        &url,
        PostgresOptions {
            schema: Some(schema.clone()),
            ..PostgresOptions::default()
        },
    )
    .await
    .unwrap();
    Some((store, url, schema))
}

async fn admin(url: &str, sql: String) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

fn main() {
    let total = std::env::var("RUNPROOF_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_EVENTS);
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rsa = raw_rsa_verify();
        println!("raw RSA-2048 verify (aws-lc-rs): {}", micros(rsa));

        println!("SQLite:");
        let dir = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let sqlite: Arc<dyn Store> =
            Arc::new(SqliteStore::open_file(dir.path().join("events.sqlite"), Default::default())
                .await
                .unwrap());
        let (targets, batch) = fill(sqlite.as_ref(), total, now).await;
        let mut rows = vec![("`insert_events`, one batch of 256".to_owned(), batch)];
        rows.extend(measure(&sqlite, &targets).await);
        let sqlite_rows = rows;

        let pg_rows = match postgres().await {
            Some((postgres, url, schema)) => {
                println!("PostgreSQL:");
                let store: Arc<dyn Store> = Arc::new(postgres.clone());
                let (targets, batch) = fill(store.as_ref(), total, now).await;
                admin(&url, format!("ANALYZE \"{schema}\".events; ANALYZE \"{schema}\".event_hours")).await;
                let mut rows = vec![("`insert_events`, one batch of 256".to_owned(), batch)];
                rows.extend(measure(&store, &targets).await);
                drop(store);
                postgres.close().await;
                admin(&url, format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
                Some(rows)
            }
            None => {
                println!("PostgreSQL: skipped (RUNPROOF_BENCH_DATABASE_URL and RUNPROOF_TEST_DATABASE_URL are unset)");
                None
            }
        };

        println!();
        println!("{total} events; each time ÷ one raw RSA-2048 verify ({}):", micros(rsa));
        println!();
        println!("| query | SQLite | ÷ raw RSA verify | PostgreSQL | ÷ raw RSA verify |");
        println!("|---|---|---|---|---|");
        for (i, (name, time)) in sqlite_rows.iter().enumerate() {
            let pg = pg_rows
                .as_ref()
                .map_or(("—".to_owned(), "—".to_owned()), |rows| {
                    (micros(rows[i].1), ratio(rows[i].1, rsa))
                });
            println!(
                "| {name} | {} | {} | {} | {} |",
                micros(*time),
                ratio(*time, rsa),
                pg.0,
                pg.1
            );
        }
    });
}
