//! `--small N`: N verified uploads of `--small-bytes` each, `--concurrency` in flight, each
//! with its own token minted before the clock starts; against the rate of small file
//! writes with fsync in the same directory. Depends on [`crate::cli`], [`crate::server`],
//! [`crate::uploads`], [`crate::stats`] and [`crate::baselines`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::baselines::{fsync_baseline, settle};
use crate::cli::Args;
use crate::server::DevServer;
use crate::stats::{MIB, ms, percentile};
use crate::uploads::{mint_many, upload};

/// Runs the small phase in a fresh server, then its fsync baselines.
pub(crate) async fn small_phase(args: &Args, work: &Path) -> anyhow::Result<Value> {
    let n = args.small;
    let c = args.concurrency.max(1);
    let server = DevServer::start(args, work, "small", 100 * MIB)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    eprintln!(
        "small: server pid {} on {}; minting {n} tokens (not timed)…",
        server.pid(),
        server.url
    );
    let mut tokens = mint_many(&http, &server, n + 1, c).await?;
    let body = Bytes::from(vec![b'x'; args.small_bytes]);
    // Warm-up: the first upload fetches the issuer's discovery document and JWKS.
    let warm = tokens.pop().context("no token")?;
    upload(&http, &server, &warm, body.clone().into()).await?;

    eprintln!("small: {n} uploads of {} bytes, {c} in flight…", body.len());
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(c);
    for _ in 0..c {
        let (http, tokens, next, body) = (
            http.clone(),
            Arc::clone(&tokens),
            Arc::clone(&next),
            body.clone(),
        );
        let url = server.url.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else { break };
                let t0 = Instant::now();
                let resp = http
                    .post(format!("{url}/v1/uploads?name=small-{i}.bin"))
                    .bearer_auth(token)
                    .body(body.clone())
                    .send()
                    .await?;
                let status = resp.status();
                let text = resp.text().await?;
                if status.as_u16() != 201 {
                    bail!("upload {i} answered {status}: {text}");
                }
                latencies.push(t0.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for w in workers {
        latencies.extend(w.await??);
    }
    let wall = started.elapsed();
    let hwm = server.status_kib("VmHWM");
    server.stop()?;
    settle();
    latencies.sort_unstable();
    let per_sec = n as f64 / wall.as_secs_f64();

    // The server's SQLite commits (jti, then the upload row) are serialized by SQLite's
    // single writer, each with a WAL fsync: the one-thread fsync rate bounds them.
    let ops = n.min(1000);
    eprintln!("small: fsync baseline, {ops} × (write a 1 KiB file + fsync), 1 thread…");
    let fsync_serial = fsync_baseline(work, ops, 1, args.small_bytes)?;
    eprintln!("small: fsync baseline, {n} × (write a 1 KiB file + fsync), {c} threads…");
    let fsync_parallel = fsync_baseline(work, n, c, args.small_bytes)?;

    Ok(json!({
        "uploads": n,
        "concurrency": c,
        "body_bytes": args.small_bytes,
        "seconds": wall.as_secs_f64(),
        "uploads_per_sec": per_sec,
        "p50_ms": ms(percentile(&latencies, 50.0)),
        "p90_ms": ms(percentile(&latencies, 90.0)),
        "p99_ms": ms(percentile(&latencies, 99.0)),
        "max_ms": ms(latencies.last().copied().unwrap_or_default()),
        "server_peak_rss_kib": hwm,
        "baseline_fsync_per_sec_1_thread": fsync_serial,
        "baseline_fsync_per_sec_c_threads": fsync_parallel,
    }))
}
