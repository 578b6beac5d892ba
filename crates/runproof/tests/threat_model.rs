//! Every attack in docs/threat-model.md names the tests that show it is stopped, and every
//! name is a test that runs: a function marked `#[test]` or `#[tokio::test]` (also inside
//! `proptest!`), a function of the store's conformance suite that the suite calls, a file
//! that holds such tests, or a rule string that is the first field of a row in a test's
//! table of cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
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

/// Text between pairs of `delim`.
fn quoted(text: &str, delim: char) -> Vec<String> {
    text.split(delim)
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The name of the function a line declares, if it does.
fn declared_fn(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once("fn ")?;
    let end = rest.find(['(', '<'])?;
    Some(rest[..end].trim())
}

/// The functions of `source` that the test harness runs: `fn` right after `#[test]` or
/// `#[tokio::test…]`, with only attributes, comments or blank lines between. `#[ignore]`d
/// ones are left out: they do not run.
fn test_fns(source: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let (mut marked, mut ignored) = (false, false);
    for line in source.lines().map(str::trim) {
        if line.starts_with("#[test]") || line.starts_with("#[tokio::test") {
            marked = true;
        } else if line.starts_with("#[ignore") {
            ignored = true;
        } else if marked && (line.starts_with("#[") || line.starts_with("//") || line.is_empty()) {
        } else {
            if marked
                && !ignored
                && let Some(name) = declared_fn(line)
            {
                out.insert(name.to_owned());
            }
            (marked, ignored) = (false, false);
        }
    }
    out
}

/// The functions the store's conformance suite runs: those called in the body of a
/// `…_suite` function of `testsuite.rs` (itself run by tests of each backend).
fn suite_fns(testsuite: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_suite = false;
    for line in testsuite.lines() {
        if let Some(name) = declared_fn(line).filter(|_| line.starts_with("pub ")) {
            in_suite = name.ends_with("_suite");
        } else if line == "}" {
            in_suite = false;
        } else if in_suite {
            let call = line.trim().split('(').next().unwrap_or_default();
            if !call.is_empty() && call.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.insert(call.to_owned());
            }
        }
    }
    out
}

/// The string literals of `source` that open a row of a table of cases: after `rule: `,
/// after `case(`, or alone at the start of a line that follows an opening `(` or `[`.
fn rule_strings(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut previous = "";
    for line in source.lines().map(str::trim) {
        let literal = if let Some((_, rest)) = line.split_once("rule: \"") {
            Some(rest)
        } else if let Some((_, rest)) = line.split_once("case(\"") {
            Some(rest)
        } else if (previous.ends_with('(') || previous.ends_with('['))
            && let Some(rest) = line.strip_prefix('"')
        {
            Some(rest)
        } else {
            None
        };
        if let Some(rest) = literal
            && let Some(end) = rest.find('"')
        {
            out.push(rest[..end].replace("\\\\", "\\"));
        }
        if !line.is_empty() {
            previous = line;
        }
    }
    out
}

/// The rules a cell names: "lifetime: nbf/iat in the future" names two; a trailing `…`
/// (or a parenthesised list after it) names every rule that starts so. A rule also names
/// the rules it is the first words of ("lifetime: nbf in the future beyond the leeway").
fn rule_variants(rule: &str) -> (Vec<String>, bool) {
    let prefix = rule.trim_end_matches(" (other issuer, trailing slash, case)");
    let is_prefix = prefix.ends_with('…');
    let prefix = prefix.trim_end_matches('…').trim_end();
    let variants = if prefix.contains('/') && !prefix.contains(' ') {
        vec![prefix.to_owned()]
    } else if let Some((head, tail)) = prefix.split_once('/') {
        let (stem, first) = head.rsplit_once(' ').unwrap_or(("", head));
        let rest = tail.split_once(' ').map_or("", |(_, r)| r);
        let second = tail.split_once(' ').map_or(tail, |(w, _)| w);
        vec![
            format!("{stem} {first} {rest}").trim().to_owned(),
            format!("{stem} {second} {rest}").trim().to_owned(),
        ]
    } else {
        vec![prefix.to_owned()]
    };
    (variants, is_prefix)
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
    let mut tests = BTreeSet::new();
    let mut rules = BTreeSet::new();
    let mut test_files = BTreeSet::new();
    for (path, source) in &sources {
        let found = test_fns(source);
        if found.is_empty() {
            continue;
        }
        test_files.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        tests.extend(found);
        rules.extend(rule_strings(source));
    }
    let testsuite = sources
        .iter()
        .find(|(p, _)| p.ends_with("runproof-store/src/testsuite.rs"))
        .map(|(_, s)| suite_fns(s))
        .unwrap_or_default();
    // The store's cases are tests declared by `store_conformance!`'s list.
    assert!(
        tests.contains("concurrent_jti_has_one_winner")
            || testsuite.contains("concurrent_jti_has_one_winner"),
        "the store suite was not read"
    );

    let mut rows = 0;
    let mut unresolved = Vec::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | # | attack | check | code | test |
        if cells.len() < 7 || cells[1].parse::<u32>().is_err() {
            continue;
        }
        rows += 1;
        let (number, cell) = (cells[1], cells[5]);
        let names = quoted(cell, '`');
        let quoted_rules = quoted(cell, '"');
        assert!(
            !names.is_empty() || !quoted_rules.is_empty(),
            "attack {number} names no test: {line}"
        );
        for name in &names {
            let ok = if name.ends_with(".rs") {
                test_files.contains(name.rsplit('/').next().unwrap_or(name))
            } else {
                let last = name.rsplit("::").next().unwrap_or(name);
                tests.contains(last) || testsuite.contains(last)
            };
            if !ok {
                unresolved.push(format!("attack {number}: `{name}` is not a test"));
            }
        }
        for rule in &quoted_rules {
            let (variants, is_prefix) = rule_variants(rule);
            let ok = variants.iter().all(|v| {
                rules.iter().any(|r| {
                    r == v
                        || r.starts_with(&format!("{v} "))
                        || (is_prefix && r.starts_with(v.as_str()))
                })
            });
            if !ok {
                unresolved.push(format!(
                    "attack {number}: rule \"{rule}\" is not a row of a test's table"
                ));
            }
        }
    }
    assert!(rows >= 40, "the attack table was not found ({rows} rows)");
    assert!(
        unresolved.is_empty(),
        "{} names that are not tests:\n{}",
        unresolved.len(),
        unresolved.join("\n")
    );
}

/// The checks themselves: what counts as a test, a suite test and a rule.
#[test]
fn rule_names_resolve_only_to_tests_that_run() {
    let source = r#"
        #[test]
        fn plain() {}
        /// Doc.
        #[tokio::test(flavor = "multi_thread")]
        #[allow(unused)]
        async fn asynchronous() {}
        #[test]
        #[ignore]
        fn ignored() {}
        fn helper_named_in_a_comment() {}
        proptest! {
            #[test]
            fn property(x in 0..1u8) {}
        }
        fn table() {
            let cases = vec![
                case("rule one", 401, "code"),
                Row { rule: "rule two", status: 403 },
                (
                    "rule three: a tuple",
                    1,
                ),
            ];
            assert_eq!(a, b, "rule four: only a message");
            assert!(
                ok,
                "rule five: a message on its own line"
            );
        }
    "#;
    assert_eq!(
        test_fns(source),
        ["asynchronous", "plain", "property"]
            .map(str::to_owned)
            .into()
    );
    assert_eq!(
        rule_strings(source),
        ["rule one", "rule two", "rule three: a tuple"]
    );
    let suite = "pub async fn store_suite(store: S) {\n    one(&*store).await;\n    two(Arc::clone(&store)).await;\n}\n\npub async fn one(store: &S) {\n    helper();\n}\n";
    assert_eq!(suite_fns(suite), ["one", "two"].map(str::to_owned).into());
    assert_eq!(
        rule_variants("lifetime: nbf/iat in the future"),
        (
            vec![
                "lifetime: nbf in the future".to_owned(),
                "lifetime: iat in the future".to_owned()
            ],
            false
        )
    );
    assert_eq!(rule_variants("names: …"), (vec!["names:".to_owned()], true));
}
