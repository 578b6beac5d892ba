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
//!
//! Its modules, each depending only on those listed before it: `cli` (the flags), `stats`
//! and `table` (statistics, and the table's cells and targets), `baselines` (what each
//! figure is held against, and the machine), `server` (the runproof processes, started
//! through `runproof_testkit::process` as the integration tests start theirs), `uploads`
//! (tokens and uploads against a dev server), the phases `small`, `large`, `storage` and
//! `peer`, and `report` (the Markdown table). This file only wires them.
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod baselines;
mod cli;
mod large;
mod peer;
mod report;
mod server;
mod small;
mod stats;
mod storage;
mod table;
mod uploads;

use clap::Parser as _;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = cli::Args::parse();
    std::fs::create_dir_all(&args.work_dir)?;
    let work = std::path::absolute(&args.work_dir)?;
    let mut results = serde_json::Map::new();
    results.insert("machine".into(), baselines::machine());

    if args.openssl_seconds > 0 {
        results.insert("openssl".into(), baselines::openssl(args.openssl_seconds));
    }
    if let Some(verify) = args
        .criterion_dir
        .as_deref()
        .and_then(baselines::criterion_verify)
    {
        results.insert("verify".into(), verify);
    }
    if let Some(path) = &args.peer_results {
        results.insert("peer".into(), peer::load(path));
    }
    if args.small > 0 {
        results.insert("small".into(), small::small_phase(&args, &work).await?);
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
            large.push(large::large_phase(&args, &work, mib).await?);
        }
        results.insert("large".into(), Value::Array(large));
    }

    let results = Value::Object(results);
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)?;
    }
    println!("{}", report::summary(&results));
    Ok(())
}
