//! `--peer-results FILE`: the figures `scripts/bench-peer.sh` wrote, as rows of the table.
//!
//! The script drives, under the same `wrk` load (every request a fresh token, 1 KiB body),
//! a Node peer that only verifies tokens (`node:http` + `jose`, no storage, no replay
//! guard) and `runproof serve` on SQLite, on PostgreSQL, and as two PostgreSQL replicas
//! (two `wrk`s with half the connections each, at once). Setups alternate within each
//! round. Each ratio is the median over rounds of that round's ratio; each value is the
//! median over rounds. Depends on [`crate::stats`] and [`crate::table`].

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::stats::median;
use crate::table::{
    Op, RSS_TARGET, RSS_TARGET_MIB, Target, f, num, target_cell, target_cell_ratio,
};

/// runproof on SQLite against the peer, req/s: at least 2.
pub(crate) const SQLITE_RPS_TARGET: Target = (Op::AtLeast, 2.0);
/// runproof on SQLite against the peer, p99 latency: at most the peer's.
pub(crate) const SQLITE_P99_TARGET: Target = (Op::AtMost, 1.0);
/// runproof on PostgreSQL (one replica) against the peer, req/s: at least 1.
pub(crate) const POSTGRES_RPS_TARGET: Target = (Op::AtLeast, 1.0);

const SETUPS: [&str; 4] = ["node", "sqlite", "pg", "pg2"];

/// Reads the script's JSON and adds `summary`: per-setup medians and the ratios.
pub(crate) fn load(path: &Path) -> Value {
    let raw = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return json!({ "skipped": format!("cannot read {}: {e}", path.display()) }),
    };
    match serde_json::from_slice::<Value>(&raw) {
        Ok(v) => analyse(v),
        Err(e) => json!({ "skipped": format!("{} is not JSON: {e}", path.display()) }),
    }
}

/// One run with its parts (one `wrk` per replica) combined: req/s and counts summed, the
/// latencies of the slower part, the peak RSS of the larger process.
fn combine(run: &Value) -> Option<Value> {
    let parts = run.get("parts")?.as_array()?;
    if parts.is_empty() || parts.iter().any(|p| p.get("rps").is_none()) {
        return None;
    }
    let sum = |k: &str| {
        parts
            .iter()
            .filter_map(|p| f(p, &format!("/{k}")))
            .sum::<f64>()
    };
    let max = |k: &str| {
        parts
            .iter()
            .filter_map(|p| f(p, &format!("/{k}")))
            .fold(f64::NAN, f64::max)
    };
    let rss = run
        .get("peak_rss_kib")
        .and_then(Value::as_array)
        .and_then(|v| v.iter().filter_map(Value::as_f64).reduce(f64::max));
    Some(json!({
        "round": run.get("round"),
        "rps": sum("rps"),
        "p50_ms": max("p50"),
        "p99_ms": max("p99"),
        "requests": sum("requests"),
        "failed": sum("non2xx") + sum("errors"),
        "peak_rss_kib": rss,
    }))
}

fn analyse(mut raw: Value) -> Value {
    if raw.get("skipped").is_some() {
        return raw;
    }
    let runs: Vec<(String, Option<Value>)> = raw
        .get("runs")
        .and_then(Value::as_array)
        .map(|runs| {
            runs.iter()
                .map(|r| {
                    let setup = r.get("setup").and_then(Value::as_str).unwrap_or("?");
                    (setup.to_owned(), combine(r))
                })
                .collect()
        })
        .unwrap_or_default();
    let of = |setup: &str| -> Vec<&Value> {
        runs.iter()
            .filter(|(s, _)| s == setup)
            .filter_map(|(_, r)| r.as_ref())
            .collect()
    };
    let mut setups = Map::new();
    for setup in SETUPS {
        let rs = of(setup);
        let broken = runs
            .iter()
            .filter(|(s, r)| s == setup && r.is_none())
            .count();
        if rs.is_empty() && broken == 0 {
            continue;
        }
        let col =
            |k: &str| -> Vec<f64> { rs.iter().filter_map(|r| f(r, &format!("/{k}"))).collect() };
        let total = |k: &str| col(k).iter().sum::<f64>();
        setups.insert(
            setup.into(),
            json!({
                "runs": rs.len(),
                "broken_runs": broken,
                "rps": median(&col("rps")),
                "p50_ms": median(&col("p50_ms")),
                "p99_ms": median(&col("p99_ms")),
                "requests": total("requests"),
                "failed": total("failed"),
                "peak_rss_kib": col("peak_rss_kib").into_iter().reduce(f64::max),
            }),
        );
    }
    // The median over rounds of a / b, both measured in the same round.
    let paired = |a: &str, b: &str, k: &str| -> Option<f64> {
        let ratios: Vec<f64> = of(a)
            .iter()
            .filter_map(|ra| {
                let rb = of(b)
                    .into_iter()
                    .find(|rb| rb.get("round") == ra.get("round"))?;
                let (x, y) = (f(ra, &format!("/{k}"))?, f(rb, &format!("/{k}"))?);
                (y > 0.0).then_some(x / y)
            })
            .collect();
        (!ratios.is_empty()).then(|| median(&ratios))
    };
    let ratios = json!({
        "sqlite_vs_node_rps": paired("sqlite", "node", "rps"),
        "sqlite_vs_node_p99": paired("sqlite", "node", "p99_ms"),
        "pg_vs_node_rps": paired("pg", "node", "rps"),
        "pg_vs_node_p99": paired("pg", "node", "p99_ms"),
        "sqlite_vs_pg_rps": paired("sqlite", "pg", "rps"),
        "pg2_vs_pg_rps": paired("pg2", "pg", "rps"),
    });
    if let Some(obj) = raw.as_object_mut() {
        obj.insert(
            "summary".into(),
            json!({ "setups": setups, "ratios": ratios }),
        );
    }
    raw
}

/// Rows of the summary table.
pub(crate) fn summary(r: &Value, s: &mut String) {
    let Some(p) = r.get("peer") else { return };
    if let Some(why) = p.get("skipped").and_then(Value::as_str) {
        let _ = writeln!(
            s,
            "| small uploads against the Node peer (wrk) | skipped: {why} | | | |"
        );
        for (what, target) in [
            ("runproof on SQLite ÷ Node peer, req/s", SQLITE_RPS_TARGET),
            ("runproof on SQLite ÷ Node peer, p99", SQLITE_P99_TARGET),
            (
                "runproof on PostgreSQL ÷ Node peer, req/s",
                POSTGRES_RPS_TARGET,
            ),
        ] {
            let _ = writeln!(s, "| {what} | | | | {} |", target_cell_ratio(None, target));
        }
        return;
    }
    let setup = |k: &str| p.pointer(&format!("/summary/setups/{k}"));
    let ratio = |k: &str| f(p, &format!("/summary/ratios/{k}"));
    let shown = |v: Option<f64>| num(v, 2);
    // A setup's figures, with its failed requests if any; `None` when it was not measured.
    let figures = |k: &str| -> Option<(String, f64)> {
        let v = setup(k)?;
        let failed = f(v, "/failed").unwrap_or(0.0);
        let broken = f(v, "/broken_runs").unwrap_or(0.0);
        let mut text = format!(
            "{} req/s, p50 {} / p99 {} ms",
            num(f(v, "/rps"), 0),
            num(f(v, "/p50_ms"), 1),
            num(f(v, "/p99_ms"), 1)
        );
        if failed > 0.0 {
            let _ = write!(
                text,
                "; **{failed:.0} of {:.0} requests failed**",
                f(v, "/requests").unwrap_or(0.0)
            );
        }
        if broken > 0.0 {
            let _ = write!(text, "; **{broken:.0} run(s) without a wrk result**");
        }
        Some((text, failed + broken))
    };
    // A target is not met by a setup that failed requests, whatever its ratio.
    let judged = |k: &str, r: Option<f64>, target: Target| -> String {
        match figures(k) {
            Some((_, bad)) if bad > 0.0 => {
                let (op, bound) = target;
                format!("{} {bound} ❌ (failed requests, see value)", op.symbol())
            }
            _ => target_cell_ratio(r, target),
        }
    };
    let not_measured = |k: &str| -> String {
        p.get("postgres_skipped")
            .and_then(Value::as_str)
            .map_or_else(
                || format!("not measured ({k})"),
                |why| format!("skipped: {why}"),
            )
    };
    let _ = writeln!(
        s,
        "| small uploads under wrk ({} connections, {} B, a fresh token each, {} × {} rounds): Node peer, `node:http` + `jose`, verifies only | {} | | | |",
        p["connections"],
        p["body_bytes"],
        p["duration"].as_str().unwrap_or("?"),
        p["rounds"],
        figures("node").map_or_else(|| "not measured".to_owned(), |(t, _)| t)
    );
    let node_p99 = setup("node").and_then(|v| f(v, "/p99_ms"));
    let _ = writeln!(
        s,
        "| **runproof on SQLite, req/s** | {} | Node peer | **{}** | {} |",
        figures("sqlite").map_or_else(|| "not measured".to_owned(), |(t, _)| t),
        shown(ratio("sqlite_vs_node_rps")),
        judged("sqlite", ratio("sqlite_vs_node_rps"), SQLITE_RPS_TARGET)
    );
    let _ = writeln!(
        s,
        "| **runproof on SQLite, p99** | {} ms | Node peer p99 {} ms | **{}** | {} |",
        num(setup("sqlite").and_then(|v| f(v, "/p99_ms")), 1),
        num(node_p99, 1),
        shown(ratio("sqlite_vs_node_p99")),
        judged("sqlite", ratio("sqlite_vs_node_p99"), SQLITE_P99_TARGET)
    );
    match figures("pg") {
        Some((text, _)) => {
            let _ = writeln!(
                s,
                "| **runproof on PostgreSQL, req/s** | {text} | Node peer | **{}** | {} |",
                shown(ratio("pg_vs_node_rps")),
                judged("pg", ratio("pg_vs_node_rps"), POSTGRES_RPS_TARGET)
            );
            let _ = writeln!(
                s,
                "| runproof on PostgreSQL, p99 | {} ms | Node peer p99 {} ms | {} | |",
                num(setup("pg").and_then(|v| f(v, "/p99_ms")), 1),
                num(node_p99, 1),
                shown(ratio("pg_vs_node_p99"))
            );
            let _ = writeln!(
                s,
                "| runproof on SQLite ÷ on PostgreSQL, req/s | | PostgreSQL | {} | |",
                shown(ratio("sqlite_vs_pg_rps"))
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| **runproof on PostgreSQL, req/s** | {} | Node peer | | {} |",
                not_measured("pg"),
                target_cell_ratio(None, POSTGRES_RPS_TARGET)
            );
        }
    }
    match figures("pg2") {
        Some((text, _)) => {
            let _ = writeln!(
                s,
                "| **runproof on PostgreSQL, 2 replicas (a wrk each, half the connections)** | {text} (latencies: the slower replica's) | PostgreSQL, 1 replica | **{}** | |",
                shown(ratio("pg2_vs_pg_rps"))
            );
        }
        None => {
            let _ = writeln!(
                s,
                "| runproof on PostgreSQL, 2 replicas | {} | | | |",
                not_measured("pg2")
            );
        }
    }
    let rss = ["sqlite", "pg", "pg2"]
        .iter()
        .filter_map(|k| setup(k).and_then(|v| f(v, "/peak_rss_kib")))
        .reduce(f64::max)
        .map(|k| k / 1024.0);
    let _ = writeln!(
        s,
        "| server peak RSS (wrk phase, largest runproof process) | {} MiB (Node peer: {} MiB) | target {RSS_TARGET_MIB} MiB | {} | {} |",
        num(rss, 1),
        num(
            setup("node")
                .and_then(|v| f(v, "/peak_rss_kib"))
                .map(|k| k / 1024.0),
            1
        ),
        shown(rss.map(|m| m / RSS_TARGET_MIB)),
        target_cell(rss, Some(RSS_TARGET_MIB), RSS_TARGET)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(setup: &str, round: u64, parts: &[(f64, f64, u64)], rss: &[u64]) -> Value {
        let parts: Vec<Value> = parts
            .iter()
            .map(|&(rps, p99, failed)| {
                json!({ "rps": rps, "p50": p99 / 4.0, "p99": p99, "requests": rps * 5.0,
                        "non2xx": failed, "errors": 0 })
            })
            .collect();
        json!({ "setup": setup, "round": round, "parts": parts, "peak_rss_kib": rss })
    }

    fn raw(runs: Vec<Value>) -> Value {
        json!({ "connections": 64, "duration": "5s", "rounds": 2, "body_bytes": 1024, "runs": runs })
    }

    fn row<'a>(table: &'a str, start: &str) -> &'a str {
        table
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start:?} in\n{table}"))
    }

    #[test]
    fn ratios_pair_rounds_and_replicas_add_up() {
        let v = analyse(raw(vec![
            run("node", 1, &[(1000.0, 10.0, 0)], &[50_000]),
            run("sqlite", 1, &[(2500.0, 8.0, 0)], &[20_000]),
            run("pg", 1, &[(1200.0, 12.0, 0)], &[21_000]),
            run(
                "pg2",
                1,
                &[(700.0, 20.0, 0), (600.0, 30.0, 0)],
                &[22_000, 30_000],
            ),
            run("node", 2, &[(2000.0, 5.0, 0)], &[51_000]),
            run("sqlite", 2, &[(3000.0, 6.0, 0)], &[20_000]),
            run("pg", 2, &[(2000.0, 10.0, 0)], &[21_000]),
            run(
                "pg2",
                2,
                &[(900.0, 10.0, 0), (900.0, 10.0, 0)],
                &[22_000, 22_000],
            ),
        ]));
        let r = |k: &str| f(&v, &format!("/summary/ratios/{k}")).unwrap();
        // Round 1: 2.5, round 2: 1.5; the median of two is their mean.
        assert!((r("sqlite_vs_node_rps") - 2.0).abs() < 1e-9);
        assert!((r("sqlite_vs_node_p99") - (0.8 + 1.2) / 2.0).abs() < 1e-9);
        // Two replicas: req/s summed (1300 and 1800) against one (1200 and 2000).
        assert!((r("pg2_vs_pg_rps") - (1300.0 / 1200.0 + 0.9) / 2.0).abs() < 1e-9);
        let pg2 = v.pointer("/summary/setups/pg2").unwrap();
        assert_eq!(f(pg2, "/p99_ms"), Some((30.0 + 10.0) / 2.0));
        assert_eq!(f(pg2, "/peak_rss_kib"), Some(30_000.0));

        let table = summary_of(v);
        assert!(row(&table, "| **runproof on SQLite, req/s**").ends_with("| **2.00** | ≥ 2 ✅ |"));
        assert!(row(&table, "| **runproof on SQLite, p99**").ends_with("| **1.00** | ≤ 1 ✅ |"));
        assert!(row(&table, "| server peak RSS (wrk phase").ends_with("| 0.46 | < 1 ✅ |"));
        for line in table.lines() {
            assert_eq!(line.matches('|').count(), 6, "{line}");
        }
    }

    fn summary_of(peer: Value) -> String {
        let mut s = String::new();
        summary(&json!({ "peer": peer }), &mut s);
        s
    }

    #[test]
    fn misses_say_by_how_much_and_failures_miss() {
        let v = analyse(raw(vec![
            run("node", 1, &[(1000.0, 10.0, 0)], &[50_000]),
            run("sqlite", 1, &[(1500.0, 13.0, 0)], &[70_000]),
            run("pg", 1, &[(1200.0, 12.0, 3)], &[21_000]),
        ]));
        let table = summary_of(v);
        assert!(
            row(&table, "| **runproof on SQLite, req/s**")
                .ends_with("| **1.50** | ≥ 2 ❌ (1.5000: 25.0 % short) |"),
            "{table}"
        );
        assert!(
            row(&table, "| **runproof on SQLite, p99**")
                .ends_with("| ≤ 1 ❌ (1.3000: 30.0 % over) |"),
            "{table}"
        );
        let pg = row(&table, "| **runproof on PostgreSQL, req/s**");
        assert!(pg.contains("3 of 6000 requests failed"), "{pg}");
        assert!(
            pg.ends_with("| ≥ 1 ❌ (failed requests, see value) |"),
            "{pg}"
        );
        assert!(
            row(&table, "| server peak RSS (wrk phase").contains("< 1 ❌ (1.0681: 6.8 % over)")
        );
        assert!(row(&table, "| runproof on PostgreSQL, 2 replicas").contains("not measured"));
    }

    #[test]
    fn a_skipped_phase_still_lists_its_targets() {
        let table = summary_of(json!({ "skipped": "wrk is missing" }));
        assert!(table.contains("skipped: wrk is missing"));
        assert!(
            row(&table, "| runproof on SQLite ÷ Node peer, req/s")
                .ends_with("| ≥ 2 (not measured) |")
        );
        let pg_skipped = analyse(json!({
            "connections": 64, "duration": "5s", "rounds": 1, "body_bytes": 1024,
            "postgres_skipped": "no PostgreSQL",
            "runs": [run("node", 1, &[(1000.0, 10.0, 0)], &[1]), run("sqlite", 1, &[(2000.0, 9.0, 0)], &[1])],
        }));
        let table = summary_of(pg_skipped);
        assert!(
            row(&table, "| **runproof on PostgreSQL, req/s**")
                .ends_with("| skipped: no PostgreSQL | Node peer | | ≥ 1 (not measured) |"),
            "{table}"
        );
        // A run whose wrk printed nothing is counted, and fails the setup's targets.
        let broken = analyse(raw(vec![
            run("node", 1, &[(1000.0, 10.0, 0)], &[1]),
            json!({ "setup": "sqlite", "round": 1, "parts": [{ "error": "wrk printed no RESULT line" }], "peak_rss_kib": [] }),
            run("sqlite", 2, &[(3000.0, 9.0, 0)], &[1]),
        ]));
        let table = summary_of(broken);
        let sqlite = row(&table, "| **runproof on SQLite, req/s**");
        assert!(sqlite.contains("1 run(s) without a wrk result"), "{sqlite}");
        assert!(
            sqlite.ends_with("❌ (failed requests, see value) |"),
            "{sqlite}"
        );
    }
}
