//! The console's pages at 1,000,000 events, over HTTP, as an operator's browser asks.
//!
//! Starts the server of the integration tests on a SQLite file in the target directory
//! (WAL, `synchronous = FULL`, as `runproof serve` opens it), and fills its store:
//!
//! - 1,000,000 events spread over the last 30 days, through `Store::insert_events` in
//!   batches of 256 as the event writer sends them: uploads (most of them, in four modes;
//!   accepted with their upload id, refused with one of ten codes, or failed), sessions,
//!   webhook deliveries, pending uploads settled, pushes and rules changes, over 200
//!   repositories (the uploads below add their own events; the fill leaves room for them,
//!   so that the log holds 1,000,000 events, its default row bound);
//! - 100 installations of two repositories each, through `Store::apply_webhook`;
//! - 2,000 real uploads through `POST /v1/uploads` (a fresh token each), whose pushes go to
//!   an address that refuses connections, so that the pushes page lists 2,000 failed ones.
//!
//! Then it signs in as a browser does (`GET /ui/sign-in`, `POST /ui/sign-in` with the API
//! key and the form's CSRF value) and times each page, whole responses read, as the
//! median and p90 of 15 requests after 2 warm-ups, one request at a time over one
//! keep-alive connection. Each is printed next to two baselines of the same run: `GET
//! /healthz` over the same client (the cost of a request that reads nothing), and one raw
//! RSA-2048 PKCS#1 v1.5 (SHA-256) signature check with aws-lc-rs on a 1.8 kB input (a
//! GitHub token's size), the unit every upload already pays once.
//!
//! PostgreSQL too when `RUNPROOF_BENCH_DATABASE_URL` or `RUNPROOF_TEST_DATABASE_URL` names
//! a server: the same fill in a schema of its own, analyzed after the fill as autovacuum
//! would, dropped at the end.
//!
//! Run: `cargo bench -p runproof-server --bench console`. `RUNPROOF_BENCH_EVENTS` sets
//! another number of events (for a quick trial).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_precision_loss
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use common::{API_KEY, Harness, Options, bearer};
use futures_util::StreamExt as _;
use runproof_core::{InstallationId, OwnerId, RepositoryId, Secret, UnixTime};
use runproof_service::PushConfig;
use runproof_store::{
    EventCursor, EventFilter, EventKind, EventOutcome, EventSplit, Installation,
    InstalledRepository, PostgresOptions, RepositorySelection, Store, WebhookDelivery,
    WebhookEffect,
};
use sqlx::Connection as _;

#[path = "../../runproof-store/benches/common/synthetic.rs"]
mod synthetic;

use synthetic::{Events, FIRST_REPOSITORY, REPOSITORIES, TARGET_CODE};

const DEFAULT_EVENTS: u64 = 1_000_000;
/// The fill ends now and starts a little under 30 days ago, so that retention purges
/// nothing while the pages are timed.
const SPAN_SECONDS: i64 = 30 * 86_400 - 3_600;
const INSTALLATIONS: u64 = 100;
const UPLOADS: usize = 2_000;
/// Each real upload adds its upload event and its failed push's event.
const EVENTS_PER_UPLOAD: u64 = 2;
const WARM_UPS: usize = 2;
const SAMPLES: usize = 15;
/// How many times the deep page follows "Older events".
const PAGES_DEEP: usize = 20;
/// The repository and code the filtered pages ask for.
const TARGET_REPOSITORY: u64 = FIRST_REPOSITORY + 7;

fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Fills the store behind `h`: events, installations, then real uploads whose pushes fail.
async fn fill(h: &Harness, events: u64) {
    let store = h.service.store();
    let started = Instant::now();
    let mut events_gen = Events::new(events, now() - SPAN_SECONDS, SPAN_SECONDS);
    while let Some(batch) = events_gen.batch() {
        store.insert_events(&batch).await.unwrap();
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "  filled {events} events in {took:.1} s ({:.0} events/s)",
        events as f64 / took
    );

    for i in 0..INSTALLATIONS {
        let id = InstallationId(70_000 + i);
        let at = UnixTime(now());
        let repositories = (0..REPOSITORIES / INSTALLATIONS)
            .map(|k| {
                let r = i * (REPOSITORIES / INSTALLATIONS) + k;
                InstalledRepository {
                    id: RepositoryId(FIRST_REPOSITORY + r),
                    full_name: format!("octo-org-{i}/repo-{r}"),
                }
            })
            .collect();
        let applied = store
            .apply_webhook(
                &WebhookDelivery {
                    id: uuid::Uuid::new_v4().to_string(),
                    event: "installation".into(),
                    received_at: at,
                },
                &[
                    WebhookEffect::UpsertInstallation(Installation {
                        id,
                        account_id: OwnerId(90_000 + i),
                        account_login: format!("octo-org-{i}"),
                        repository_selection: RepositorySelection::Selected,
                        suspended: false,
                        as_of: Some(at),
                    }),
                    WebhookEffect::AddRepositories {
                        installation_id: id,
                        repositories,
                        as_of: Some(at),
                    },
                ],
            )
            .await
            .unwrap();
        assert!(applied);
    }

    let started = Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..UPLOADS)
        .map(|i| async move {
            let token = h.token();
            h.upload(Some(&bearer(&token)), &format!("report-{i}.json"), "{}")
                .await
                .0
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201), "uploads answered 201");
    // Every push fails at once (the address refuses connections); wait until all have.
    for _ in 0..600 {
        let counts = store.console_counts().await.unwrap();
        if counts.failed_pushes == UPLOADS as u64 && counts.pending_pushes == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = store.console_counts().await.unwrap();
    assert_eq!(counts.failed_pushes, UPLOADS as u64, "every push failed");
    println!(
        "  {INSTALLATIONS} installations, {UPLOADS} uploads with a failed push each, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A client that keeps redirects and cookies in our hands, on one keep-alive connection.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `name=value` of every non-empty `Set-Cookie`.
fn cookies_of(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|nv| nv.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .map(str::to_owned)
        .collect()
}

/// The value of the page's hidden `csrf` input.
fn csrf_in(html: &str) -> String {
    let at = html.find("name=\"csrf\"").expect("a csrf input");
    let start = html[..at].rfind('<').unwrap();
    let end = at + html[at..].find('>').unwrap();
    let tag = &html[start..end];
    let v = tag.find("value=\"").expect("a csrf value") + "value=\"".len();
    let rest = &tag[v..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Signs in; the `Cookie` header value of the session.
async fn sign_in(http: &reqwest::Client, url: &str) -> String {
    let form = http.get(format!("{url}/ui/sign-in")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let mut jar = cookies_of(&form);
    let csrf = csrf_in(&form.text().await.unwrap());
    let resp = http
        .post(format!("{url}/ui/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", jar.join("; "))
        .body(format!(
            "key={}&csrf={}",
            form_encode(API_KEY),
            form_encode(&csrf)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "signed in");
    for c in cookies_of(&resp) {
        let name = c.split('=').next().unwrap().to_owned();
        jar.retain(|old| !old.starts_with(&format!("{name}=")));
        jar.push(c);
    }
    assert!(jar.iter().any(|c| c.starts_with("runproof_console=")));
    jar.join("; ")
}

/// One page, read whole; its body.
async fn get(http: &reqwest::Client, url: &str, path: &str, cookie: &str) -> String {
    let resp = http
        .get(format!("{url}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// The `href` of the page's "next page" link, unescaped.
fn next_page(html: &str) -> Option<String> {
    let at = html.find("id=\"next-page\"")?;
    let rest = &html[at..];
    let v = rest.find("href=\"")? + "href=\"".len();
    let href = &rest[v..];
    Some(href[..href.find('"')?].replace("&amp;", "&"))
}

/// Median and p90 of `SAMPLES` timed requests after `WARM_UPS`.
async fn time_page(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    cookie: &str,
) -> (Duration, Duration) {
    for _ in 0..WARM_UPS {
        black_box(get(http, url, path, cookie).await);
    }
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        black_box(get(http, url, path, cookie).await);
        times.push(t.elapsed());
    }
    times.sort();
    (times[times.len() / 2], times[times.len() * 9 / 10])
}

/// The median of 50 `GET /healthz` after 5 warm-ups.
async fn healthz(http: &reqwest::Client, url: &str) -> Duration {
    let mut times = Vec::new();
    for i in 0..55 {
        let t = Instant::now();
        let resp = http.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        black_box(resp.bytes().await.unwrap());
        if i >= 5 {
            times.push(t.elapsed());
        }
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

/// One page's figures.
struct Row {
    page: String,
    median: Duration,
    p90: Duration,
}

/// What one backend measured.
struct Run {
    events: u64,
    healthz: Duration,
    rows: Vec<Row>,
}

/// Signs in and times every page of the filled store behind `h`.
async fn measure(h: &Harness) -> Run {
    let store = h.service.store();
    let (newest, _) = store
        .list_events(&EventFilter::default(), 1, None)
        .await
        .unwrap();
    let newest = newest[0].id;
    let middle = EventCursor(newest / 2).encode();
    println!("  {newest} events in the log");

    let http = client();
    let url = &h.url;
    let cookie = sign_in(&http, url).await;
    let health = healthz(&http, url).await;

    let mut deep = "/ui/events".to_owned();
    for _ in 0..PAGES_DEEP {
        let html = get(&http, url, &deep, &cookie).await;
        deep = next_page(&html).expect("an older page");
    }

    let pages: Vec<(String, String)> = vec![
        ("`/ui/` (24 h)".into(), "/ui/".into()),
        ("`/ui/?range=7d`".into(), "/ui/?range=7d".into()),
        ("`/ui/refusals`".into(), "/ui/refusals".into()),
        (
            format!("`/ui/refusals?code={TARGET_CODE}`"),
            format!("/ui/refusals?code={TARGET_CODE}"),
        ),
        (
            "`/ui/refusals?repository_id=…` (1 of 200)".into(),
            format!("/ui/refusals?repository_id={TARGET_REPOSITORY}"),
        ),
        (
            "`/ui/refusals`, cursor half-way down".into(),
            format!("/ui/refusals?cursor={middle}"),
        ),
        ("`/ui/events`".into(), "/ui/events".into()),
        (
            "`/ui/events?kind=push&outcome=failed`".into(),
            "/ui/events?kind=push&outcome=failed".into(),
        ),
        (
            format!("`/ui/events`, {PAGES_DEEP} pages in (\"Older events\" followed)"),
            deep,
        ),
        (
            "`/ui/events`, cursor half-way down".into(),
            format!("/ui/events?cursor={middle}"),
        ),
        (
            "`/ui/events?kind=push&outcome=failed`, cursor half-way down".into(),
            format!("/ui/events?kind=push&outcome=failed&cursor={middle}"),
        ),
        (
            format!("`/ui/uploads` ({UPLOADS} uploads)"),
            "/ui/uploads".into(),
        ),
        (
            format!("`/ui/pushes` ({UPLOADS} failed)"),
            "/ui/pushes".into(),
        ),
        (
            format!("`/ui/installations` ({INSTALLATIONS})"),
            "/ui/installations".into(),
        ),
    ];
    let mut rows = Vec::new();
    for (page, path) in pages {
        let size = get(&http, url, &path, &cookie).await.len();
        let (median, p90) = time_page(&http, url, &path, &cookie).await;
        println!(
            "  {page}: median {} p90 {} ms, {:.1} KiB",
            ms(median),
            ms(p90),
            size as f64 / 1024.0
        );
        rows.push(Row { page, median, p90 });
    }
    // The overview's share that is the store's: its four calls, in process.
    for (label, hours, bucket) in [("24 h", 24, 3600), ("7 d", 168, 4 * 3600)] {
        let since = UnixTime(now() - hours * 3600);
        let mut times = Vec::new();
        for i in 0..WARM_UPS + SAMPLES {
            let t = Instant::now();
            let mut n = 0;
            for (kind, outcome, split) in [
                (EventKind::Upload, EventOutcome::Accepted, EventSplit::Mode),
                (EventKind::Upload, EventOutcome::Refused, EventSplit::Code),
                (EventKind::Session, EventOutcome::Refused, EventSplit::Code),
            ] {
                n += store
                    .event_counts(since, kind, outcome, split, bucket)
                    .await
                    .unwrap()
                    .len();
            }
            black_box(store.console_counts().await.unwrap());
            if i >= WARM_UPS {
                times.push(t.elapsed());
            }
            black_box(n);
            if i == 0 {
                println!("  the overview's rows, {label}: {n}");
            }
        }
        times.sort();
        rows.push(Row {
            page: format!(
                "of which the overview's store calls ({label}: `event_counts` × 3, `console_counts`), in process"
            ),
            median: times[times.len() / 2],
            p90: times[times.len() * 9 / 10],
        });
    }
    Run {
        events: newest,
        healthz: health,
        rows,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn ratio(d: Duration, unit: Duration) -> String {
    let r = d.as_secs_f64() / unit.as_secs_f64();
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// A dead address for pushes: a port that was just bound and closed.
async fn refusing_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook")
}

async fn options(dir: &std::path::Path) -> Options {
    Options {
        dir: Some(dir.to_path_buf()),
        push: Some(PushConfig {
            url: refusing_url().await,
            secrets: vec![Secret::new("delivery-secret-0123456789".into())],
            events: vec!["upload.verified".into()],
            // One attempt: each push is failed at once and stays failed.
            max_attempts: 1,
            timeout: Duration::from_secs(2),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
            public_url: "https://runproof.bench.invalid".into(),
        }),
        limits: runproof_server::LimitsConfig {
            unauthenticated_per_ip_per_minute: 0,
            ..runproof_server::LimitsConfig::default()
        },
        ..Options::default()
    }
}

async fn admin(url: &str, sql: String) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

fn print_table(run: &Run, rsa: Duration) {
    println!(
        "{} events; `/healthz` median {} ms, raw RSA-2048 verify {} µs:",
        run.events,
        ms(run.healthz),
        format_args!("{:.1}", rsa.as_secs_f64() * 1e6)
    );
    println!();
    println!("| page | median ms | p90 ms | ÷ `/healthz` | ÷ raw RSA verify |");
    println!("|---|---|---|---|---|");
    for r in &run.rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.page,
            ms(r.median),
            ms(r.p90),
            ratio(r.median, run.healthz),
            ratio(r.median, rsa)
        );
    }
    println!();
}

fn main() {
    let total = std::env::var("RUNPROOF_BENCH_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_EVENTS);
    let fill_events = total.saturating_sub(EVENTS_PER_UPLOAD * UPLOADS as u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rsa = raw_rsa_verify();
        println!(
            "raw RSA-2048 verify (aws-lc-rs): {:.1} µs",
            rsa.as_secs_f64() * 1e6
        );

        println!("SQLite:");
        let dir = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let h = Harness::start_with(options(dir.path()).await).await;
        fill(&h, fill_events).await;
        let sqlite = measure(&h).await;
        h.stop().await;
        drop(dir);

        let url = ["RUNPROOF_BENCH_DATABASE_URL", "RUNPROOF_TEST_DATABASE_URL"]
            .into_iter()
            .find_map(|var| std::env::var(var).ok().filter(|u| !u.is_empty()));
        let postgres = match url {
            Some(url) => {
                println!("PostgreSQL:");
                let schema = format!("rp_bench_{}", uuid::Uuid::new_v4().simple());
                let pg = runproof_store::PostgresStore::connect(
                    &url,
                    PostgresOptions {
                        schema: Some(schema.clone()),
                        ..PostgresOptions::default()
                    },
                )
                .await
                .unwrap();
                let store: Arc<dyn Store> = Arc::new(pg.clone());
                let dir = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
                let mut opts = options(dir.path()).await;
                opts.wrap_store = Some(Box::new(move |_sqlite| store));
                let h = Harness::start_with(opts).await;
                fill(&h, fill_events).await;
                // Analyzed once filled, as autovacuum would before long.
                admin(&url, format!("ANALYZE \"{schema}\".events; ANALYZE \"{schema}\".event_hours")).await;
                let run = measure(&h).await;
                h.stop().await;
                pg.close().await;
                admin(&url, format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
                Some(run)
            }
            None => {
                println!(
                    "PostgreSQL: skipped (RUNPROOF_BENCH_DATABASE_URL and RUNPROOF_TEST_DATABASE_URL are unset)"
                );
                None
            }
        };

        println!();
        println!("Console pages, SQLite:");
        println!();
        print_table(&sqlite, rsa);
        if let Some(run) = &postgres {
            println!("Console pages, PostgreSQL:");
            println!();
            print_table(run, rsa);
        }
    });
}
