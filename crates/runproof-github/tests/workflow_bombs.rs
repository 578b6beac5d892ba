//! Hostile workflow files under the 512 KiB cap: block-style nesting, an alias bomb and a
//! wide mapping each end in a typed error, and reading any of them keeps the peak RSS of
//! a separate process far below 256 MiB. Each hostile case that broke the reader before
//! names its rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use runproof_github::workflow::{MAX_WORKFLOW_BYTES, WorkflowError, WorkflowUses, parse_workflow};

/// A job that uses the action, so that a reader which survives a bomb would approve.
const GENUINE: &str =
    "on: push\njobs:\n  up:\n    runs-on: x\n    steps:\n      - uses: runproof/upload-action@v1\n";

/// `- ` 99,000 times on one line: a sequence nested 99,000 levels deep in block style.
fn block_nesting_bomb() -> String {
    format!("{GENUINE}deep:\n{}x\n", "- ".repeat(99_000))
}

/// A 40,000-character anchored scalar referenced 49,000 times: 1.96 GB once expanded.
fn alias_bomb() -> String {
    let mut text = format!("{GENUINE}big: &a {}\nmany: [", "x".repeat(40_000));
    text.push_str(&vec!["*a"; 49_000].join(", "));
    text.push_str("]\n");
    text
}

/// One mapping with as many short entries as the cap allows.
fn wide_mapping() -> String {
    let mut text = String::from(GENUINE);
    for i in 0.. {
        let entry = format!("k{i}: v\n");
        if text.len() + entry.len() > MAX_WORKFLOW_BYTES {
            break;
        }
        text.push_str(&entry);
    }
    text
}

fn bomb(name: &str) -> String {
    let text = match name {
        "block_nesting" => block_nesting_bomb(),
        "alias" => alias_bomb(),
        "wide_mapping" => wide_mapping(),
        _ => panic!("no bomb named {name}"),
    };
    assert!(text.len() <= MAX_WORKFLOW_BYTES, "{name}: {}", text.len());
    text
}

#[test]
fn rule_block_nesting_bomb_is_too_deep() {
    assert_eq!(
        parse_workflow(&bomb("block_nesting")),
        Err(WorkflowError::TooDeep)
    );
    // Flow style too, below the scanner's own cap of 255 levels.
    let flow = format!("{GENUINE}deep: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert_eq!(parse_workflow(&flow), Err(WorkflowError::TooDeep));
}

#[test]
fn rule_alias_bomb_is_bounded_in_bytes_after_expansion() {
    assert_eq!(
        parse_workflow(&bomb("alias")),
        Err(WorkflowError::TooManyBytes)
    );
    // Nesting through aliases counts too: each level adds the depth of what it names.
    let mut deep = format!("{GENUINE}l0: &l0 [x]\n");
    for i in 1..80 {
        deep.push_str(&format!("l{i}: &l{i} [*l{}]\n", i - 1));
    }
    assert_eq!(parse_workflow(&deep), Err(WorkflowError::TooDeep));
}

#[test]
fn wide_mapping_is_bounded_in_nodes() {
    assert_eq!(
        parse_workflow(&bomb("wide_mapping")),
        Err(WorkflowError::TooManyNodes)
    );
}

#[test]
fn a_large_genuine_workflow_is_read() {
    let mut text = String::from("on: push\njobs:\n");
    for job in 0..400 {
        text.push_str(&format!(
            "  job-{job}:\n    runs-on: ubuntu-latest\n    env: {{ A: a, B: b }}\n    steps:\n"
        ));
        for step in 0..8 {
            text.push_str(&format!(
                "      - name: step {step} of job {job}, with a long enough description\n        uses: owner-{step}/action-{step}@v{step}\n        with:\n          input: value {step}\n"
            ));
        }
    }
    assert!(text.len() > MAX_WORKFLOW_BYTES / 2 && text.len() < MAX_WORKFLOW_BYTES);
    let uses = parse_workflow(&text).unwrap();
    assert_eq!(uses.actions.len(), 3200);
    assert_eq!(uses.actions[1], "owner-1/action-1");
    assert_ne!(uses, WorkflowUses::default());
}

const BOMB_ENV: &str = "RUNPROOF_WORKFLOW_BOMB";
const PEAK_LINE: &str = "workflow-bomb-peak-kib=";

/// Run by [`rule_workflow_bombs_keep_peak_rss_under_256_mib`] in a child process, with
/// the bomb named in [`BOMB_ENV`]; does nothing otherwise.
#[test]
fn child_reads_the_named_bomb() {
    let Ok(name) = std::env::var(BOMB_ENV) else {
        return;
    };
    let text = bomb(&name);
    assert!(parse_workflow(&text).is_err(), "{name}");
    drop(text);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim();
    println!("{PEAK_LINE}{peak}");
}

#[test]
fn rule_workflow_bombs_keep_peak_rss_under_256_mib() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("no /proc here: peak RSS not measured");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for name in ["block_nesting", "alias", "wide_mapping"] {
        let out = Command::new(&exe)
            .args(["--exact", "child_reads_the_named_bomb", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(BOMB_ENV, name)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: the reader died ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let peak_kib: u64 = stdout
            .lines()
            .find_map(|l| l.split_once(PEAK_LINE).map(|(_, kib)| kib.trim()))
            .unwrap_or_else(|| panic!("{name}: no peak reported: {stdout}"))
            .parse()
            .unwrap();
        eprintln!("{name}: peak RSS {:.1} MiB", peak_kib as f64 / 1024.0);
        assert!(peak_kib < 256 * 1024, "{name}: peak RSS {peak_kib} KiB");
    }
}
