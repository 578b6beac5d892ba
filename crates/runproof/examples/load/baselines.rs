//! The baselines each figure is held against, measured in the same run on the same
//! machine: file writes with fsync, `dd conv=fsync`, `openssl speed`, and the criterion
//! bench of verification; and what the machine is. Depends on no other module.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The machine's core count and CPU model.
pub(crate) fn machine() -> Value {
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "model": cpu_model(),
    })
}

fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// `n` writes of a small new file followed by `fsync`, spread over `c` threads.
pub(crate) fn fsync_baseline(work: &Path, n: usize, c: usize, bytes: usize) -> anyhow::Result<f64> {
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

/// Flushes the filesystem so deletions (and their discards) of one round do not land in
/// the next measurement.
pub(crate) fn settle() {
    let _ = Command::new("sync").status();
}

/// `dd if=/dev/zero of=<work>/dd.bin bs=1M count=<mib> conv=fsync`, timed from outside.
pub(crate) fn dd_baseline(work: &Path, mib: u64) -> anyhow::Result<f64> {
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

/// `openssl speed -seconds S rsa2048`'s verify/s, or why there is none, as JSON.
pub(crate) fn openssl(seconds: u64) -> Value {
    eprintln!("openssl speed -seconds {seconds} rsa2048…");
    match openssl_verify_per_sec(seconds) {
        Ok(v) => json!({ "verify_per_sec": v }),
        Err(e) => json!({ "error": e }),
    }
}

/// The criterion estimates of the `verify` bench under `dir`, each with its rate; `None`
/// (and a line on stderr) when there are none.
pub(crate) fn criterion_verify(dir: &Path) -> Option<Value> {
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
        None
    } else {
        Some(Value::Object(verify))
    }
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
}
