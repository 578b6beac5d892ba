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
use runproof_core::{RepositoryId, RunId, UnixTime};
use runproof_store::{
    EventCursor, EventFilter, EventKind, EventOutcome, NewEvent, PostgresOptions, SqliteStore,
    Store, UploadId,
};
use sqlx::Connection as _;

const DEFAULT_EVENTS: u64 = 1_000_000;
const BATCH: usize = 256;
const DAYS: i64 = 30;
const REPOSITORIES: u64 = 200;
const FIRST_REPOSITORY: u64 = 1_296_000;
const PAGE: u32 = 50;
const CODES: [&str; 10] = [
    "missing_credentials",
    "bad_signature",
    "token_expired",
    "audience_mismatch",
    "policy_denied",
    "rule_mismatch",
    "replayed_token",
    "rate_limited",
    "invalid_request",
    "payload_too_large",
];
/// How often each code is drawn (out of the sum): a few codes make most refusals.
const CODE_WEIGHTS: [u64; 10] = [30, 8, 12, 4, 10, 20, 3, 6, 5, 2];
const MODES: [&str; 4] = ["oidc", "session", "github_token", "webhook"];
const MODE_WEIGHTS: [u64; 4] = [60, 25, 10, 5];

/// xorshift64*: reproducible draws without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn weighted<T: Copy>(&mut self, items: &[T], weights: &[u64]) -> T {
        let mut draw = self.below(weights.iter().sum());
        for (item, w) in items.iter().zip(weights) {
            if draw < *w {
                return *item;
            }
            draw -= w;
        }
        items[items.len() - 1]
    }
}

/// What the queries look for, as drawn during the fill.
struct Targets {
    code: &'static str,
    repository_id: RepositoryId,
    upload_id: UploadId,
    middle: EventCursor,
    now: UnixTime,
}

/// The events, in time order, one batch at a time.
struct Events {
    rng: Rng,
    total: u64,
    next: u64,
    start: i64,
    span: i64,
    last_upload: Option<UploadId>,
    target_upload: Option<UploadId>,
}

impl Events {
    fn new(total: u64, now: i64) -> Self {
        Self {
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            total,
            next: 0,
            start: now - DAYS * 86_400,
            span: DAYS * 86_400,
            last_upload: None,
            target_upload: None,
        }
    }

    fn event(&mut self) -> NewEvent {
        let i = self.next;
        self.next += 1;
        let at =
            self.start + i64::try_from(i).unwrap() * self.span / i64::try_from(self.total).unwrap();
        let r = self.rng.below(REPOSITORIES);
        let repository_id = RepositoryId(FIRST_REPOSITORY + r);
        let run_id = RunId(9_000_000_000 + self.rng.below(1_000_000));
        let workflow = format!("octo-org/repo-{r}/.github/workflows/ci.yml@refs/heads/main");
        let source = format!("192.0.2.{}", self.rng.below(250) + 1);
        let kind = self.rng.weighted(
            &[
                EventKind::Upload,
                EventKind::Session,
                EventKind::Webhook,
                EventKind::Push,
                EventKind::Pending,
                EventKind::Rules,
            ],
            &[70, 10, 10, 7, 2, 1],
        );
        let mut e = match kind {
            EventKind::Upload | EventKind::Session => {
                let outcome = self.rng.weighted(
                    &[
                        EventOutcome::Accepted,
                        EventOutcome::Refused,
                        EventOutcome::Failed,
                    ],
                    &[80, 18, 2],
                );
                let mut e = NewEvent::new(UnixTime(at), kind, outcome);
                e.route = Some(
                    if kind == EventKind::Upload {
                        "POST /v1/uploads"
                    } else {
                        "POST /v1/sessions"
                    }
                    .into(),
                );
                e.mode = Some(self.rng.weighted(&MODES, &MODE_WEIGHTS).into());
                match outcome {
                    EventOutcome::Accepted => {
                        e.repository_id = Some(repository_id);
                        e.run_id = Some(run_id);
                        e.workflow = Some(workflow);
                        if kind == EventKind::Upload {
                            let id = UploadId::generate();
                            e.detail = Some(format!("verified {id}"));
                            e.upload_id = Some(id.clone());
                            if self.target_upload.is_none() && i >= self.total / 2 {
                                self.target_upload = Some(id.clone());
                            }
                            self.last_upload = Some(id);
                        }
                    }
                    EventOutcome::Refused => {
                        let code = self.rng.weighted(&CODES, &CODE_WEIGHTS);
                        e.code = Some(code.into());
                        e.detail = Some(format!("the request was refused: {code}"));
                        if code == "rule_mismatch" {
                            e.rule = Some("release tags".into());
                            e.mismatches = Some(serde_json::json!([
                                {"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}
                            ]));
                            e.repository_id = Some(repository_id);
                            e.run_id = Some(run_id);
                            e.workflow = Some(workflow);
                        }
                    }
                    _ => {
                        e.code = Some("upstream_unavailable".into());
                        e.detail = Some("GitHub's keys could not be fetched".into());
                    }
                }
                e
            }
            EventKind::Webhook => {
                let outcome = self.rng.weighted(
                    &[
                        EventOutcome::Received,
                        EventOutcome::Duplicate,
                        EventOutcome::Refused,
                    ],
                    &[90, 7, 3],
                );
                let mut e = NewEvent::new(UnixTime(at), kind, outcome);
                e.route = Some("POST /v1/github/webhooks".into());
                e.detail = Some(format!("workflow_run {}", uuid::Uuid::new_v4()));
                if outcome == EventOutcome::Refused {
                    e.code = Some("bad_signature".into());
                }
                e
            }
            EventKind::Push | EventKind::Pending => {
                let outcome = match kind {
                    EventKind::Pending => EventOutcome::Settled,
                    _ if self.rng.below(10) == 0 => EventOutcome::Failed,
                    _ => EventOutcome::Delivered,
                };
                let mut e = NewEvent::new(UnixTime(at), kind, outcome);
                e.upload_id.clone_from(&self.last_upload);
                e.repository_id = Some(repository_id);
                e.detail = Some(format!(
                    "upload.verified of {}, attempt 1",
                    self.last_upload.as_ref().map_or("", UploadId::as_str)
                ));
                e
            }
            _ => {
                let mut e = NewEvent::new(UnixTime(at), kind, EventOutcome::Changed);
                e.route = Some("PUT /v1/repositories/{id}/rules".into());
                e.repository_id = Some(repository_id);
                e.detail = Some("set 1 rules".into());
                e
            }
        };
        e.source.get_or_insert(source);
        e
    }

    fn batch(&mut self) -> Option<Vec<NewEvent>> {
        let left = self.total - self.next;
        (left > 0).then(|| (0..left.min(BATCH as u64)).map(|_| self.event()).collect())
    }
}

/// Fills `store`; returns what to look for and how long one batch took (the median).
async fn fill(store: &dyn Store, total: u64, now: i64) -> (Targets, Duration) {
    let mut events = Events::new(total, now);
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
        code: "rule_mismatch",
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
