//! Load driver for a real `runproof serve --dev` process on loopback.
//!
//! Measures, each against a baseline taken in the same run on the same machine:
//!
//! - `--small N --concurrency C`: N verified uploads of `--small-bytes` (1 KiB) each, every
//!   one with its own freshly minted OIDC token (replay protection is on in `--dev`).
//!   Tokens are minted before the clock starts. Reports uploads/s, p50 and p99 latency, and
//!   as context the rate of 1 KiB file writes + fsync at the same concurrency in the same
//!   directory (the server fsyncs each blob, its directory and two SQLite commits).
//! - `--large-mib 64,1024`: uploads of each size, streamed from a repeated 1 MiB chunk
//!   (never held in memory), each in a fresh server process, alternating `--repeat` times
//!   with `dd if=/dev/zero bs=1M conv=fsync` of the same size into the same directory.
//!   Reports median MiB/s of each, their ratio, and the server's peak RSS (`VmHWM` from
//!   `/proc/<pid>/status`, the highest over the rounds).
//! - `--storage N --database-url URL`: N small verified uploads (`--small-bytes`,
//!   `--concurrency` in flight) on three setups, each in fresh `runproof serve --config`
//!   processes trusting a fake GitHub that runs in this process: SQLite with local blobs
//!   (the default setup); PostgreSQL with local blobs, one replica; PostgreSQL with two
//!   replicas sharing the database (one schema) and a `file://` blob directory, uploads
//!   alternating between them. `--storage-rounds` rounds, the order rotating each round;
//!   medians are reported, and the ratios PostgreSQL ÷ SQLite and two replicas ÷ one.
//!   Each PostgreSQL setup gets a schema of its own, dropped afterwards.
//! - `--peer-results FILE`: the figures `scripts/bench-peer.sh` wrote (runproof on SQLite,
//!   on PostgreSQL and as two replicas, against a Node peer that only verifies, under the
//!   same `wrk` load); their ratios become rows of the table, with their targets.
//! - `--openssl-seconds S`: `openssl speed -seconds S rsa2048` verify/s.
//! - `--criterion-dir DIR`: reads `verify/*` estimates written by
//!   `cargo bench -p runproof-core --bench verify` and relates them to openssl.
//!
//! Prints a Markdown summary and optionally writes every number as JSON (`--json-out`).
//! It only measures; it asserts nothing about timings. It exits non-zero if an upload
//! is refused, since the numbers would then be meaningless.
//!
//! `scripts/bench.sh` runs it all; by hand:
//! `cargo build --release -p runproof --examples --bins &&
//!  target/release/examples/load --small 2000 --concurrency 16 --large-mib 1024`.
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;
const AUDIENCE: &str = "https://runproof.bench.invalid";
const RSS_TARGET_MIB: f64 = 64.0;
/// Full verification against `openssl speed`: at least 0.6.
const VERIFY_TARGET: Target = (Op::AtLeast, 0.6);
/// Peak RSS of the server, in any phase and at any size, against [`RSS_TARGET_MIB`]: below 1.
const RSS_TARGET: Target = (Op::Below, 1.0);
/// An upload of at least [`LARGE_TARGET_MIB`] against `dd conv=fsync` of the same size.
const LARGE_TARGET: Target = (Op::AtLeast, 0.8);
const LARGE_TARGET_MIB: u64 = 1024;

/// Drive a real runproof server on loopback and measure it against same-run baselines.
#[derive(Debug, Parser)]
struct Args {
    /// The runproof binary (build it with `--release`).
    #[arg(long, default_value = "target/release/runproof")]
    server_bin: PathBuf,
    /// Scratch directory on the disk under test; everything created in it is removed.
    #[arg(long, default_value = "target/bench-tmp")]
    work_dir: PathBuf,
    /// Number of small uploads (0: skip).
    #[arg(long, default_value_t = 0)]
    small: usize,
    /// Uploads in flight at once during the small phase.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Body size of each small upload, in bytes.
    #[arg(long, default_value_t = 1024)]
    small_bytes: usize,
    /// Large upload sizes in MiB, comma-separated; each in a fresh server (empty: skip).
    #[arg(long, value_delimiter = ',')]
    large_mib: Vec<u64>,
    /// Rounds of (upload, dd) per large size; medians are reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Skip the dd baseline of the large phase.
    #[arg(long)]
    no_dd: bool,
    /// Small uploads per setup in the storage comparison (0: skip).
    #[arg(long, default_value_t = 0)]
    storage: usize,
    /// Rounds of the storage comparison; medians are reported.
    #[arg(long, default_value_t = 3)]
    storage_rounds: usize,
    /// PostgreSQL for the storage comparison (e.g. postgres://postgres@127.0.0.1:5432/test).
    /// Without it the comparison is skipped, and says so.
    #[arg(long)]
    database_url: Option<String>,
    /// The JSON `scripts/bench-peer.sh` wrote: its rows join the table.
    #[arg(long)]
    peer_results: Option<PathBuf>,
    /// Run `openssl speed -seconds S rsa2048` (0: skip).
    #[arg(long, default_value_t = 0)]
    openssl_seconds: u64,
    /// Criterion's output directory (`target/criterion`) to read the verify bench from.
    #[arg(long)]
    criterion_dir: Option<PathBuf>,
    /// Write every measurement here as JSON.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// `RUST_LOG` of the server process (its log goes to a file in the work dir).
    #[arg(long, default_value = "info")]
    server_log: String,
}

// ---------------------------------------------------------------------------------------
// The server process.

struct Server {
    child: Child,
    url: String,
    token_url: String,
    token_secret: String,
    audience: String,
    data_dir: PathBuf,
    config_path: PathBuf,
}

impl Server {
    /// Starts `runproof serve --dev` on a free loopback port, data under `work/<name>`.
    fn start(args: &Args, work: &Path, name: &str, max_upload_bytes: u64) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let data_dir = work.join(format!("{name}-data"));
        let config_path = work.join(format!("{name}.toml"));
        let data = data_dir.to_str().context("work dir is not UTF-8")?;
        if data.contains('\'') {
            bail!("the work dir must not contain a single quote");
        }
        std::fs::write(
            &config_path,
            format!(
                "listen = \"127.0.0.1:{port}\"\n\
                 data_dir = '{data}'\n\
                 max_upload_bytes = {max_upload_bytes}\n\
                 [oidc]\n\
                 audience = \"{AUDIENCE}\"\n"
            ),
        )?;
        let log = std::fs::File::create(work.join(format!("{name}-server.log")))?;
        let mut cmd = Command::new(&args.server_bin);
        cmd.args(["serve", "--dev", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", &args.server_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RUNPROOF_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", args.server_bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Keep draining stdout for the life of the process.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            url: String::new(),
            token_url: String::new(),
            token_secret: String::new(),
            audience: String::new(),
            data_dir,
            config_path,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.url.is_empty()
            || server.token_url.is_empty()
            || server.token_secret.is_empty()
            || server.audience.is_empty()
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => bail!(
                    "the server did not print its URLs (see {}/{name}-server.log)",
                    work.display()
                ),
            };
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("runproof dev server on ") {
                server.url = rest.split_whitespace().next().unwrap_or("").to_owned();
            } else if let Some(rest) = line.strip_prefix("audience:") {
                server.audience = rest.trim().to_owned();
            } else if let Some(rest) = line.strip_prefix("export ACTIONS_ID_TOKEN_REQUEST_URL=") {
                server.token_url = rest.trim_matches('\'').to_owned();
            } else if let Some(rest) = line.strip_prefix("export ACTIONS_ID_TOKEN_REQUEST_TOKEN=") {
                server.token_secret = rest.trim_matches('\'').to_owned();
            }
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A `kB` field of `/proc/<pid>/status`, in KiB.
    fn status_kib(&self, field: &str) -> Option<u64> {
        proc_status_kib(self.pid(), field)
    }

    /// SIGTERM (graceful), then SIGKILL after 15 s; removes the data dir and config.
    fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(&self.config_path);
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

// ---------------------------------------------------------------------------------------
// Tokens and uploads.

async fn mint(http: &reqwest::Client, server: &Server) -> anyhow::Result<String> {
    let audience: String =
        url::form_urlencoded::byte_serialize(server.audience.as_bytes()).collect();
    let resp = http
        .get(format!("{}&audience={audience}", server.token_url))
        .header("authorization", format!("bearer {}", server.token_secret))
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("token request answered {}", resp.status());
    }
    let body: Value = resp.json().await?;
    body.get("value")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("token response without `value`")
}

async fn mint_many(
    http: &reqwest::Client,
    server: &Server,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    futures_util::stream::iter(0..n)
        .map(|_| mint(http, server))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// POSTs one upload and returns the server's JSON answer; anything but 201 is an error.
async fn upload(
    http: &reqwest::Client,
    server: &Server,
    token: &str,
    body: reqwest::Body,
) -> anyhow::Result<Value> {
    let resp = http
        .post(format!("{}/v1/uploads?name=bench.bin", server.url))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    if status.as_u16() != 201 {
        bail!("upload answered {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------
// Phases.

async fn small_phase(args: &Args, work: &Path) -> anyhow::Result<Value> {
    let n = args.small;
    let c = args.concurrency.max(1);
    let server = Server::start(args, work, "small", 100 * MIB)?;
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

/// `n` writes of a small new file followed by `fsync`, spread over `c` threads.
fn fsync_baseline(work: &Path, n: usize, c: usize, bytes: usize) -> anyhow::Result<f64> {
    let dir = work.join("fsync-baseline");
    std::fs::create_dir_all(&dir)?;
    let next = Arc::new(AtomicUsize::new(0));
    let body = vec![b'x'; bytes];
    let started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..c)
            .map(|_| {
                let (next, dir, body) = (Arc::clone(&next), &dir, &body);
                s.spawn(move || -> std::io::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        let mut f = std::fs::File::create(dir.join(format!("{i}.bin")))?;
                        f.write_all(body)?;
                        f.sync_all()?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("fsync thread panicked"))??;
        }
        Ok(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir)?;
    Ok(n as f64 / secs)
}

/// One upload of `mib` MiB into a fresh server, which is then stopped and its data removed.
async fn large_once(args: &Args, work: &Path, mib: u64, rep: usize) -> anyhow::Result<Value> {
    let name = format!("large-{mib}-{rep}");
    let server = Server::start(args, work, &name, (mib + 1) * MIB)?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()?;
    let tokens = mint_many(&http, &server, 2, 2).await?;
    // Warm-up with a small body, then note the resident size before the big one.
    upload(
        &http,
        &server,
        &tokens[0],
        Bytes::from_static(b"warm-up").into(),
    )
    .await?;
    let rss_before = server.status_kib("VmRSS");

    // A stream of the same 1 MiB chunk: the client never holds more than that.
    let chunk = Bytes::from(
        (0..MIB)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let stream = futures_util::stream::iter(
        (0..mib).map(move |_| Ok::<Bytes, std::io::Error>(chunk.clone())),
    );

    // Sample RSS while the upload runs, in case VmHWM is unavailable.
    let pid = server.pid();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = tokio::spawn(async move {
        let mut max = 0u64;
        loop {
            max = max.max(proc_status_kib(pid, "VmRSS").unwrap_or(0));
            tokio::select! {
                _ = &mut stop_rx => break,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        max
    });

    let started = Instant::now();
    let answer = upload(
        &http,
        &server,
        &tokens[1],
        reqwest::Body::wrap_stream(stream),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    let sampled_max_rss = sampler.await?;
    let hwm = server.status_kib("VmHWM");
    let size = answer.get("size").and_then(Value::as_u64);
    if size != Some(mib * MIB) {
        bail!("the server counted {size:?} bytes, not {}", mib * MIB);
    }
    server.stop()?;
    settle();
    Ok(json!({
        "seconds": secs,
        "mib_per_sec": mib as f64 / secs,
        "server_rss_before_kib": rss_before,
        "server_sampled_max_rss_kib": sampled_max_rss,
        "server_peak_rss_kib": hwm,
    }))
}

/// `--repeat` rounds of (upload, dd) of `mib` MiB, alternating so both see the same
/// disk conditions; reports medians (this VM's disk varies by 3x from one write to the next).
async fn large_phase(args: &Args, work: &Path, mib: u64) -> anyhow::Result<Value> {
    let reps = args.repeat.max(1);
    let mut uploads = Vec::with_capacity(reps);
    let mut dds = Vec::with_capacity(reps);
    for rep in 0..reps {
        eprintln!("large: {mib} MiB upload, round {}/{reps}…", rep + 1);
        uploads.push(large_once(args, work, mib, rep).await?);
        if !args.no_dd {
            eprintln!(
                "large: dd baseline, {mib} MiB with conv=fsync, round {}/{reps}…",
                rep + 1
            );
            dds.push(dd_baseline(work, mib)?);
        }
    }
    let rates: Vec<f64> = uploads
        .iter()
        .filter_map(|u| f(u, "/mib_per_sec"))
        .collect();
    let max_kib = |field: &str| {
        uploads
            .iter()
            .filter_map(|u| u.get(field).and_then(Value::as_u64))
            .max()
    };
    Ok(json!({
        "mib": mib,
        "rounds": reps,
        "mib_per_sec": median(&rates),
        "mib_per_sec_all": rates,
        "server_rss_before_kib": max_kib("server_rss_before_kib"),
        "server_sampled_max_rss_kib": max_kib("server_sampled_max_rss_kib"),
        "server_peak_rss_kib": max_kib("server_peak_rss_kib"),
        "baseline_dd_mib_per_sec": (!dds.is_empty()).then(|| median(&dds)),
        "baseline_dd_mib_per_sec_all": dds,
        "rounds_detail": uploads,
    }))
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Flushes the filesystem so deletions (and their discards) of one round do not land in
/// the next measurement.
fn settle() {
    let _ = Command::new("sync").status();
}

/// `dd if=/dev/zero of=<work>/dd.bin bs=1M count=<mib> conv=fsync`, timed from outside.
fn dd_baseline(work: &Path, mib: u64) -> anyhow::Result<f64> {
    let target = work.join("dd.bin");
    let started = Instant::now();
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", target.display()))
        .arg("bs=1M")
        .arg(format!("count={mib}"))
        .arg("conv=fsync")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot run dd")?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&target);
    settle();
    if !out.status.success() {
        bail!("dd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(mib as f64 / secs)
}

/// `openssl speed -seconds S rsa2048`: RSA-2048 verify/s, or why there is none.
fn openssl_verify_per_sec(seconds: u64) -> Result<f64, String> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "rsa2048"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("openssl is missing or cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!("openssl speed exited with {}", out.status));
    }
    parse_openssl_speed(&String::from_utf8_lossy(&out.stdout))
        .ok_or_else(|| "no `rsa 2048 bits` verify/s in openssl's output".to_owned())
}

/// Finds the column named `verify/s` in the header and reads it from the `rsa 2048 bits`
/// row. Handles both `sign verify sign/s verify/s` (3.0/3.1) and the 3.2+ layout with
/// encrypt/decrypt columns.
fn parse_openssl_speed(text: &str) -> Option<f64> {
    let mut columns: Option<Vec<&str>> = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.contains(&"verify/s") {
            columns = Some(words);
            continue;
        }
        let (Some(cols), ["rsa", "2048", "bits", values @ ..]) = (&columns, words.as_slice())
        else {
            continue;
        };
        let idx = cols.iter().position(|c| *c == "verify/s")?;
        return values.get(idx)?.parse().ok();
    }
    None
}

/// `mean` in ns of `<dir>/verify/<bench>/new/estimates.json`.
fn criterion_mean_ns(dir: &Path, bench: &str) -> Option<f64> {
    let path = dir.join("verify").join(bench).join("new/estimates.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v.pointer("/mean/point_estimate")?.as_f64()
}

// ---------------------------------------------------------------------------------------
// Summary.

fn f(v: &Value, ptr: &str) -> Option<f64> {
    v.pointer(ptr).and_then(Value::as_f64)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

/// How a ratio is held against its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `≥ bound`.
    AtLeast,
    /// `≤ bound`.
    AtMost,
    /// `< bound`.
    Below,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Self::AtLeast => "≥",
            Self::AtMost => "≤",
            Self::Below => "<",
        }
    }

    fn met(self, ratio: f64, bound: f64) -> bool {
        match self {
            Self::AtLeast => ratio >= bound,
            Self::AtMost => ratio <= bound,
            Self::Below => ratio < bound,
        }
    }
}

/// A target for a ratio.
type Target = (Op, f64);

/// The target cell: the target and whether this run met it, judged on the exact ratio `a ÷ b`.
fn target_cell(a: Option<f64>, b: Option<f64>, target: Target) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => target_cell_ratio(Some(a / b), target),
        _ => target_cell_ratio(None, target),
    }
}

/// The target cell for a ratio. A miss says by how much, with the exact ratio; so does a
/// hit whose two printed decimals would read as a miss.
fn target_cell_ratio(exact: Option<f64>, (op, bound): Target) -> String {
    let sym = op.symbol();
    let Some(exact) = exact.filter(|r| r.is_finite()) else {
        return format!("{sym} {bound} (not measured)");
    };
    if !op.met(exact, bound) {
        let by = 100.0 * (exact - bound).abs() / bound;
        let how = if op == Op::AtLeast { "short" } else { "over" };
        return format!("{sym} {bound} ❌ ({exact:.4}: {by:.1} % {how})");
    }
    let shown = format!("{exact:.2}").parse::<f64>().unwrap_or(exact);
    if op.met(shown, bound) {
        format!("{sym} {bound} ✅")
    } else {
        format!("{sym} {bound} ✅ ({exact:.4})")
    }
}

fn summary(r: &Value) -> String {
    let mut s = String::new();
    let openssl = f(r, "/openssl/verify_per_sec");
    let raw = f(r, "/verify/rs256_raw_aws_lc/per_sec");
    let full = f(r, "/verify/parse_and_verify/per_sec");
    let parsed = f(r, "/verify/verify_parsed/per_sec");
    let parse_ns = f(r, "/verify/parse/mean_ns");
    let full_ns = f(r, "/verify/parse_and_verify/mean_ns");
    let raw_ns = f(r, "/verify/rs256_raw_aws_lc/mean_ns");
    let _ = writeln!(
        s,
        "| measurement | value | baseline (same run) | ratio | target |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    if let Some(err) = r.pointer("/openssl/error").and_then(Value::as_str) {
        let _ = writeln!(s, "| openssl speed rsa2048 | {err} | | | |");
    }
    if r.get("verify").is_some() {
        let _ = writeln!(
            s,
            "| full verify (parse + `Verifier::verify`), 1 core | {} verify/s | openssl rsa2048 {} verify/s | **{}** | {} |",
            num(full, 0),
            num(openssl, 0),
            ratio(full, openssl),
            target_cell(full, openssl, VERIFY_TARGET)
        );
        let _ = writeln!(
            s,
            "| `Verifier::verify` on a parsed token | {} verify/s | openssl | {} | |",
            num(parsed, 0),
            ratio(parsed, openssl)
        );
        let _ = writeln!(
            s,
            "| raw aws-lc `verify_sig` (SHA-256 + RSA) | {} verify/s | openssl | {} | |",
            num(raw, 0),
            ratio(raw, openssl)
        );
        let _ = writeln!(
            s,
            "| full verify ÷ raw aws-lc verify | {} µs vs {} µs per token | raw aws-lc | **{}** | |",
            num(full_ns.map(|v| v / 1000.0), 1),
            num(raw_ns.map(|v| v / 1000.0), 1),
            ratio(full, raw)
        );
        let _ = writeln!(
            s,
            "| of which `UnverifiedToken::parse` | {} µs per token | | | |",
            num(parse_ns.map(|v| v / 1000.0), 1),
        );
    }
    if let Some(small) = r.get("small") {
        let _ = writeln!(
            s,
            "| small uploads ({} B, {} in flight, {} uploads) | {} uploads/s | 1 KiB write+fsync, 1 thread: {} /s ({} threads: {} /s) | {} | |",
            small["body_bytes"],
            small["concurrency"],
            small["uploads"],
            num(f(small, "/uploads_per_sec"), 0),
            num(f(small, "/baseline_fsync_per_sec_1_thread"), 0),
            small["concurrency"],
            num(f(small, "/baseline_fsync_per_sec_c_threads"), 0),
            ratio(
                f(small, "/uploads_per_sec"),
                f(small, "/baseline_fsync_per_sec_1_thread")
            )
        );
        let _ = writeln!(
            s,
            "| small upload latency p50 / p90 / p99 / max | {} / {} / {} / {} ms | | | |",
            num(f(small, "/p50_ms"), 1),
            num(f(small, "/p90_ms"), 1),
            num(f(small, "/p99_ms"), 1),
            num(f(small, "/max_ms"), 1)
        );
        let _ = writeln!(
            s,
            "| server peak RSS (small phase) | {} MiB | target {RSS_TARGET_MIB} MiB | {} | {} |",
            num(f(small, "/server_peak_rss_kib").map(|k| k / 1024.0), 1),
            ratio(
                f(small, "/server_peak_rss_kib").map(|k| k / 1024.0),
                Some(RSS_TARGET_MIB)
            ),
            target_cell(
                f(small, "/server_peak_rss_kib").map(|k| k / 1024.0),
                Some(RSS_TARGET_MIB),
                RSS_TARGET
            )
        );
    }
    peer::summary(r, &mut s);
    storage::summary(r, &mut s);
    if let Some(large) = r.get("large").and_then(Value::as_array) {
        for l in large {
            let (rate, dd) = (f(l, "/mib_per_sec"), f(l, "/baseline_dd_mib_per_sec"));
            let target = if l["mib"].as_u64().is_some_and(|m| m >= LARGE_TARGET_MIB) {
                format!(" {} ", target_cell(rate, dd, LARGE_TARGET))
            } else {
                " ".to_owned()
            };
            let _ = writeln!(
                s,
                "| {} MiB upload (median of {}) | {} MiB/s | dd conv=fsync {} MiB/s | **{}** |{target}|",
                l["mib"],
                l["rounds"],
                num(rate, 0),
                num(dd, 0),
                ratio(rate, dd)
            );
            let peak_mib = f(l, "/server_peak_rss_kib").map(|k| k / 1024.0);
            let _ = writeln!(
                s,
                "| server peak RSS ({} MiB upload) | {} MiB (before: {} MiB) | target {RSS_TARGET_MIB} MiB | **{}** | {} |",
                l["mib"],
                num(peak_mib, 1),
                num(f(l, "/server_rss_before_kib").map(|k| k / 1024.0), 1),
                ratio(peak_mib, Some(RSS_TARGET_MIB)),
                target_cell(peak_mib, Some(RSS_TARGET_MIB), RSS_TARGET)
            );
        }
    }
    s
}

// ---------------------------------------------------------------------------------------

#[path = "load/peer.rs"]
mod peer;
#[path = "load/storage.rs"]
mod storage;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.work_dir)?;
    let work = std::path::absolute(&args.work_dir)?;
    let mut results = serde_json::Map::new();
    results.insert(
        "machine".into(),
        json!({
            "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
            "model": cpu_model(),
        }),
    );

    if args.openssl_seconds > 0 {
        eprintln!("openssl speed -seconds {} rsa2048…", args.openssl_seconds);
        let v = match openssl_verify_per_sec(args.openssl_seconds) {
            Ok(v) => json!({ "verify_per_sec": v }),
            Err(e) => json!({ "error": e }),
        };
        results.insert("openssl".into(), v);
    }
    if let Some(dir) = &args.criterion_dir {
        let mut verify = serde_json::Map::new();
        for bench in [
            "rs256_raw_aws_lc",
            "parse",
            "verify_parsed",
            "parse_and_verify",
        ] {
            if let Some(ns) = criterion_mean_ns(dir, bench) {
                verify.insert(bench.into(), json!({ "mean_ns": ns, "per_sec": 1e9 / ns }));
            }
        }
        if verify.is_empty() {
            eprintln!("no criterion estimates under {}", dir.display());
        } else {
            results.insert("verify".into(), Value::Object(verify));
        }
    }
    if let Some(path) = &args.peer_results {
        results.insert("peer".into(), peer::load(path));
    }
    if args.small > 0 {
        results.insert("small".into(), small_phase(&args, &work).await?);
    }
    if args.storage > 0 {
        match args.database_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                let storage = storage::phase(&args, &work, url).await?;
                results.insert("storage".into(), storage);
            }
            None => {
                eprintln!("storage: skipped, no --database-url (PostgreSQL) given");
                results.insert(
                    "storage".into(),
                    json!({ "skipped": "no PostgreSQL (--database-url)" }),
                );
            }
        }
    }
    if !args.large_mib.is_empty() {
        let mut large = Vec::new();
        for &mib in &args.large_mib {
            large.push(large_phase(&args, &work, mib).await?);
        }
        results.insert("large".into(), Value::Array(large));
    }

    let results = Value::Object(results);
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
    }
    println!("{}", summary(&results));
    Ok(())
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_openssl_speed_layouts() {
        let v30 = "                  sign    verify    sign/s verify/s\n\
                   rsa 2048 bits 0.000705s 0.000021s   1418.4  48000.9\n";
        assert_eq!(parse_openssl_speed(v30), Some(48000.9));
        let v32 = "                   sign    verify    encrypt   decrypt   sign/s verify/s  encr./s  decr./s\n\
                   rsa  2048 bits 0.000700s 0.000020s 0.000021s 0.000690s   1428.6  50000.0  47619.0   1449.3\n";
        assert_eq!(parse_openssl_speed(v32), Some(50000.0));
        assert_eq!(parse_openssl_speed("nothing"), None);
    }

    fn results(full_per_sec: f64, peak_kib: f64) -> Value {
        json!({
            "openssl": { "verify_per_sec": 80_000.0 },
            "verify": {
                "parse_and_verify": { "per_sec": full_per_sec, "mean_ns": 1e9 / full_per_sec },
                "rs256_raw_aws_lc": { "per_sec": 81_000.0, "mean_ns": 12_345.0 },
            },
            "large": [{
                "mib": 1024, "rounds": 3, "mib_per_sec": 800.0, "baseline_dd_mib_per_sec": 1600.0,
                "server_peak_rss_kib": peak_kib, "server_rss_before_kib": 14_000.0,
            }],
        })
    }

    /// The marks come from the figures: a table typed by hand cannot disagree with them.
    #[test]
    fn summary_marks_each_target_met_or_missed() {
        let met = summary(&results(60_000.0, 17.0 * 1024.0));
        let verify = met
            .lines()
            .find(|l| l.starts_with("| full verify ("))
            .unwrap();
        assert!(verify.contains("| **0.75** | ≥ 0.6 ✅ |"), "{verify}");
        let rss = met
            .lines()
            .find(|l| l.contains("server peak RSS (1024"))
            .unwrap();
        assert!(rss.contains("| **0.27** | < 1 ✅ |"), "{rss}");

        let missed = summary(&results(40_000.0, 70.0 * 1024.0));
        let verify = missed
            .lines()
            .find(|l| l.starts_with("| full verify ("))
            .unwrap();
        assert!(
            verify.contains("| **0.50** | ≥ 0.6 ❌ (0.5000: 16.7 % short) |"),
            "{verify}"
        );
        let rss = missed
            .lines()
            .find(|l| l.contains("server peak RSS (1024"))
            .unwrap();
        assert!(
            rss.contains("| **1.09** | < 1 ❌ (1.0938: 9.4 % over) |"),
            "{rss}"
        );
        // 1 GiB at half of dd's rate misses ≥ 0.8 by 37.5 %.
        let large = missed
            .lines()
            .find(|l| l.starts_with("| 1024 MiB upload"))
            .unwrap();
        assert!(
            large.contains("| **0.50** | ≥ 0.8 ❌ (0.5000: 37.5 % short) |"),
            "{large}"
        );

        // Judged on the exact ratio: 0.5952 prints as 0.60 but misses ≥ 0.6, and says so.
        assert_eq!(
            target_cell(Some(0.5952), Some(1.0), VERIFY_TARGET),
            "≥ 0.6 ❌ (0.5952: 0.8 % short)"
        );
        // Met, but printed as 1.00 against `< 1`: the exact ratio says why it is met.
        assert_eq!(
            target_cell(Some(0.996), Some(1.0), RSS_TARGET),
            "< 1 ✅ (0.9960)"
        );
        assert_eq!(
            target_cell(Some(1.0), Some(1.0), (Op::AtMost, 1.0)),
            "≤ 1 ✅"
        );
        assert_eq!(target_cell(Some(0.6), Some(1.0), VERIFY_TARGET), "≥ 0.6 ✅");
        assert_eq!(
            target_cell(None, Some(1.0), VERIFY_TARGET),
            "≥ 0.6 (not measured)"
        );
        // Every row has the table's five columns.
        for line in met.lines().chain(missed.lines()) {
            assert_eq!(line.matches('|').count(), 6, "{line}");
        }
    }
}
