//! `--large-mib 64,1024`: one upload of each size into a fresh server, streamed from a
//! repeated 1 MiB chunk, alternating `--repeat` times with `dd conv=fsync` of the same size;
//! with the server's peak RSS. Depends on [`crate::cli`], [`crate::server`],
//! [`crate::uploads`], [`crate::stats`], [`crate::table`] and [`crate::baselines`].

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::baselines::{dd_baseline, settle};
use crate::cli::Args;
use crate::server::{DevServer, proc_status_kib};
use crate::stats::{MIB, median};
use crate::table::f;
use crate::uploads::{mint_many, upload};

/// One upload of `mib` MiB into a fresh server, which is then stopped and its data removed.
async fn large_once(args: &Args, work: &Path, mib: u64, rep: usize) -> anyhow::Result<Value> {
    let name = format!("large-{mib}-{rep}");
    let server = DevServer::start(args, work, &name, (mib + 1) * MIB)?;
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
pub(crate) async fn large_phase(args: &Args, work: &Path, mib: u64) -> anyhow::Result<Value> {
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
