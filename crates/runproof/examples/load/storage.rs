//! `--storage N`: small verified uploads per second on SQLite, on PostgreSQL, and on two
//! PostgreSQL replicas, measured in one run.
//!
//! Every setup runs real `runproof serve --config` processes that trust a fake GitHub in
//! this process (no `--dev`, so that two replicas trust the same issuer). Installation
//! binding is off: the phase measures the upload path (verify, replay guard, blob commit,
//! upload row), not GitHub lookups. Depends on [`crate::cli`], [`crate::server`],
//! [`crate::stats`], [`crate::table`] and [`crate::baselines`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt as _;
use runproof_testkit::FakeGithub;
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::baselines::settle;
use crate::cli::Args;
use crate::server::{AUDIENCE, Replica};
use crate::stats::{median, ms, percentile};
use crate::table::{f, num, ratio};

/// The three setups, in the order of the first round.
const SETUPS: [Setup; 3] = [Setup::Sqlite, Setup::Postgres, Setup::PostgresTwoReplicas];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Sqlite,
    Postgres,
    PostgresTwoReplicas,
}

impl Setup {
    fn key(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite_1_replica",
            Self::Postgres => "postgres_1_replica",
            Self::PostgresTwoReplicas => "postgres_2_replicas",
        }
    }

    fn replicas(self) -> usize {
        if self == Self::PostgresTwoReplicas {
            2
        } else {
            1
        }
    }
}

async fn drop_schema(database_url: &str, schema: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(database_url)
        .await
        .context("cannot connect to PostgreSQL to drop the bench schema")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(())
}

/// One setup, once: fresh processes, fresh database (file or schema), N uploads.
async fn run_setup(
    args: &Args,
    work: &Path,
    github: &FakeGithub,
    database_url: &str,
    setup: Setup,
    round: usize,
) -> anyhow::Result<Value> {
    let dir: PathBuf = work.join(format!("storage-{}-{round}", setup.key()));
    std::fs::create_dir_all(&dir)?;
    let schema = format!("rp_bench_{}", uuid::Uuid::new_v4().simple());
    let common = format!(
        "[oidc]\naudience = \"{AUDIENCE}\"\n[[oidc.issuers]]\nissuer = \"{}\"\n",
        github.issuer()
    );
    let config = match setup {
        Setup::Sqlite => common,
        Setup::Postgres | Setup::PostgresTwoReplicas => format!(
            "database_url = \"{database_url}\"\nblob_store = 'file://{}'\n[database]\nschema = \"{schema}\"\n{common}",
            dir.join("shared-blobs").display()
        ),
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut replicas = Vec::new();
    for i in 0..setup.replicas() {
        replicas.push(Replica::spawn(args, &dir, &format!("r{i}"), &config)?);
    }
    let result = async {
        for r in &mut replicas {
            r.await_ready(&http).await?;
        }
        let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
        measure(args, github, &http, &urls).await
    }
    .await;
    for r in replicas {
        r.stop();
    }
    if setup != Setup::Sqlite {
        drop_schema(database_url, &schema).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    settle();
    result
}

/// Mints the tokens (not timed), warms up each replica (JWKS fetch), then times N
/// uploads, `--concurrency` in flight, upload i going to replica i mod R.
async fn measure(
    args: &Args,
    github: &FakeGithub,
    http: &reqwest::Client,
    urls: &[String],
) -> anyhow::Result<Value> {
    let n = args.storage;
    let c = args.concurrency.max(1);
    let body = Bytes::from(vec![b'x'; args.small_bytes]);
    let tokens = {
        let github = github.clone();
        let count = n + urls.len();
        tokio::task::spawn_blocking(move || {
            (0..count)
                .map(|_| github.token(AUDIENCE))
                .collect::<Result<Vec<String>, _>>()
        })
        .await??
    };
    let (warm, tokens) = tokens.split_at(urls.len());
    for (url, token) in urls.iter().zip(warm) {
        post(http, url, token, body.clone(), "warm-up").await?;
    }
    let tokens = Arc::new(tokens.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let latencies = futures_util::stream::iter(0..c)
        .map(|_| {
            let (http, tokens, next, body) = (
                http.clone(),
                Arc::clone(&tokens),
                Arc::clone(&next),
                body.clone(),
            );
            let urls = urls.to_vec();
            async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(token) = tokens.get(i) else { break };
                    let t0 = Instant::now();
                    post(&http, &urls[i % urls.len()], token, body.clone(), "small").await?;
                    latencies.push(t0.elapsed());
                }
                anyhow::Ok(latencies)
            }
        })
        .buffer_unordered(c)
        .collect::<Vec<_>>()
        .await;
    let wall = started.elapsed();
    let mut all = Vec::with_capacity(n);
    for l in latencies {
        all.extend(l?);
    }
    all.sort_unstable();
    Ok(json!({
        "uploads": n,
        "seconds": wall.as_secs_f64(),
        "uploads_per_sec": n as f64 / wall.as_secs_f64(),
        "p50_ms": ms(percentile(&all, 50.0)),
        "p99_ms": ms(percentile(&all, 99.0)),
    }))
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Bytes,
    name: &str,
) -> anyhow::Result<()> {
    let resp = http
        .post(format!("{url}/v1/uploads?name={name}.bin"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    if status.as_u16() != 201 {
        bail!("upload answered {status}: {}", resp.text().await?);
    }
    Ok(())
}

/// Every setup `--storage-rounds` times, the order rotating each round.
pub(crate) async fn phase(args: &Args, work: &Path, database_url: &str) -> anyhow::Result<Value> {
    let github = FakeGithub::start()
        .await
        .context("cannot start the fake GitHub")?;
    let rounds = args.storage_rounds.max(1);
    let mut runs: Vec<Vec<Value>> = vec![Vec::new(); SETUPS.len()];
    for round in 0..rounds {
        for k in 0..SETUPS.len() {
            let index = (k + round) % SETUPS.len();
            let setup = SETUPS[index];
            eprintln!(
                "storage: round {}/{rounds}, {} ({} uploads, {} in flight)…",
                round + 1,
                setup.key(),
                args.storage,
                args.concurrency
            );
            runs[index].push(run_setup(args, work, &github, database_url, setup, round).await?);
        }
    }
    let mut out = serde_json::Map::new();
    for (setup, runs) in SETUPS.iter().zip(runs) {
        let pick = |field: &str| -> Vec<f64> {
            runs.iter()
                .filter_map(|r| r.get(field).and_then(Value::as_f64))
                .collect()
        };
        out.insert(
            setup.key().into(),
            json!({
                "uploads_per_sec": median(&pick("uploads_per_sec")),
                "uploads_per_sec_all": pick("uploads_per_sec"),
                "p50_ms": median(&pick("p50_ms")),
                "p99_ms": median(&pick("p99_ms")),
                "rounds": runs,
            }),
        );
    }
    out.insert("uploads".into(), json!(args.storage));
    out.insert("concurrency".into(), json!(args.concurrency));
    out.insert("body_bytes".into(), json!(args.small_bytes));
    out.insert("rounds".into(), json!(rounds));
    Ok(Value::Object(out))
}

/// Rows of the summary table.
pub(crate) fn summary(r: &Value, s: &mut String) {
    use std::fmt::Write as _;
    let Some(st) = r.get("storage") else { return };
    if let Some(why) = st.get("skipped").and_then(Value::as_str) {
        let _ = writeln!(s, "| storage comparison | skipped: {why} | | | |");
        return;
    }
    let rate = |k: &str| f(st, &format!("/{k}/uploads_per_sec"));
    let lat = |k: &str| {
        format!(
            "p50 {} / p99 {} ms",
            num(f(st, &format!("/{k}/p50_ms")), 1),
            num(f(st, &format!("/{k}/p99_ms")), 1)
        )
    };
    let (sqlite, pg, pg2) = (
        rate("sqlite_1_replica"),
        rate("postgres_1_replica"),
        rate("postgres_2_replicas"),
    );
    let what = format!(
        "{} B, {} in flight, {} uploads, median of {}",
        st["body_bytes"], st["concurrency"], st["uploads"], st["rounds"]
    );
    let _ = writeln!(
        s,
        "| small uploads, SQLite, 1 replica ({what}) | {} uploads/s ({}) | | | |",
        num(sqlite, 0),
        lat("sqlite_1_replica")
    );
    let _ = writeln!(
        s,
        "| **small uploads, PostgreSQL, 1 replica** | {} uploads/s ({}) | SQLite, 1 replica | **{}** | |",
        num(pg, 0),
        lat("postgres_1_replica"),
        ratio(pg, sqlite)
    );
    let _ = writeln!(
        s,
        "| **small uploads, PostgreSQL, 2 replicas** | {} uploads/s ({}) | PostgreSQL, 1 replica | **{}** | |",
        num(pg2, 0),
        lat("postgres_2_replicas"),
        ratio(pg2, pg)
    );
}
