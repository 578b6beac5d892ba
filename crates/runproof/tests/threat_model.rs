//! Every attack in docs/threat-model.md names the tests that show it is stopped, and
//! every name resolves: a file that exists, a function that is defined, a rule string
//! that a test uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.is_dir() && name != "target" && !name.starts_with('.') {
            rust_files(&p, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// Text between pairs of `open`/`close` delimiters.
fn quoted(text: &str, delim: char) -> Vec<String> {
    text.split(delim)
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_attack_links_to_tests_that_exist() {
    let root = root();
    let doc = std::fs::read_to_string(root.join("docs/threat-model.md")).unwrap();
    let mut files = Vec::new();
    for dir in ["crates", "fuzz"] {
        rust_files(&root.join(dir), &mut files);
    }
    let sources: Vec<(PathBuf, String)> = files
        .iter()
        .map(|p| (p.clone(), std::fs::read_to_string(p).unwrap()))
        .collect();
    let file_exists = |name: &str| sources.iter().any(|(p, _)| p.ends_with(name));
    let fn_exists = |name: &str| {
        let last = name.rsplit("::").next().unwrap_or(name);
        let needle = format!("fn {last}(");
        sources.iter().any(|(_, s)| s.contains(&needle))
    };
    let rule_exists = |rule: &str| {
        let prefix = rule
            .trim_end_matches('…')
            .trim_end_matches(" (other issuer, trailing slash, case)");
        // "lifetime: nbf/iat in the future" names two rules at once.
        let variants: Vec<String> = if prefix.contains('/') && !prefix.contains(' ') {
            vec![prefix.to_owned()]
        } else if let Some((head, tail)) = prefix.split_once('/') {
            let (stem, first) = head.rsplit_once(' ').unwrap_or(("", head));
            let rest = tail.split_once(' ').map_or("", |(_, r)| r);
            let second = tail.split_once(' ').map_or(tail, |(w, _)| w);
            vec![
                format!("{stem} {first} {rest}"),
                format!("{stem} {second} {rest}"),
            ]
        } else {
            vec![prefix.to_owned()]
        };
        variants.iter().all(|v| {
            let v = v.trim();
            sources.iter().any(|(_, s)| s.contains(&format!("\"{v}")))
        })
    };

    let mut rows = 0;
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | # | attack | check | code | test |
        if cells.len() < 7 || cells[1].parse::<u32>().is_err() {
            continue;
        }
        rows += 1;
        let (number, tests) = (cells[1], cells[5]);
        let names = quoted(tests, '`');
        let rules = quoted(tests, '"');
        assert!(
            !names.is_empty() || !rules.is_empty(),
            "attack {number} names no test: {line}"
        );
        for name in &names {
            let ok = if name.ends_with(".rs") {
                file_exists(name.rsplit('/').next().unwrap_or(name))
            } else {
                fn_exists(name)
            };
            assert!(
                ok,
                "attack {number}: `{name}` does not resolve to a test file or function"
            );
        }
        for rule in &rules {
            assert!(
                rule_exists(rule),
                "attack {number}: rule \"{rule}\" is not used by any test"
            );
        }
    }
    assert!(rows >= 40, "the attack table was not found ({rows} rows)");
}
