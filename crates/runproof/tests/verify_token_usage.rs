//! `runproof verify-token` used wrongly or half-rightly: the real binary says what is wrong
//! with the command (exit 2) rather than refusing the token, and prints times as RFC 3339.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The real token of 2025-01 (neu-se/autograder-action) and its keys.
const TOKEN: &str = "tok_2025-01_neu-se.jwt";
const JWKS: &str = "jwks_2025-06_crates.io.json";
const AUDIENCE: &str = "https://github.com/neu-se";
/// Inside the token's lifetime.
const INSIDE: &str = "1738115400";

fn realworld(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/oidc")
        .join(name);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

fn token_arg() -> String {
    format!("@{}", realworld(TOKEN).display())
}

async fn verify_token(args: Vec<std::ffi::OsString>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runproof"));
    cmd.env("NO_PROXY", "127.0.0.1")
        .env_remove("RUNPROOF_CONFIG")
        .stdin(Stdio::null())
        .arg("verify-token")
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn args<const N: usize>(list: [&dyn AsRef<std::ffi::OsStr>; N]) -> Vec<std::ffi::OsString> {
    list.iter().map(|a| a.as_ref().to_owned()).collect()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `--jwks` file that is missing, a directory, not JSON or without a usable key is a
/// usage error naming the file, whatever issuer the token names; never `untrusted_issuer`.
#[tokio::test]
async fn an_unusable_jwks_file_is_named_not_blamed_on_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json").unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"keys":[]}"#).unwrap();
    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, vec![b' '; 2 * 1024 * 1024]).unwrap();
    let cases = [
        (&missing, "cannot read the JWKS file"),
        (&dir.path().to_path_buf(), "cannot read the JWKS file"),
        (&garbage, "is not a JWKS"),
        (&empty, "is not a JWKS"),
        (&huge, "is not a JWKS"),
    ];
    for (file, says) in cases {
        // With the token's own issuer, and with another (which the token would fail).
        for issuer in [None, Some("https://ghes.example.com/_services/token")] {
            let mut a = args([&"--jwks", file, &"--audience", &AUDIENCE, &"--at", &INSIDE]);
            if let Some(issuer) = issuer {
                a.extend(args([&"--issuer", &issuer]));
            }
            a.push(token_arg().into());
            let out = verify_token(a).await;
            let (stdout, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
            assert!(stdout.is_empty(), "{stdout}");
            assert!(stderr.contains(says), "{stderr}");
            assert!(
                stderr.contains(&file.display().to_string()),
                "names the file: {stderr}"
            );
            assert!(!stderr.contains("untrusted_issuer"), "{stderr}");
        }
    }
}

/// `--config` without `--audience` checks against the configuration's `[oidc] audience`;
/// `--audience` may repeat it but not contradict it, and is required without `--config`.
#[tokio::test]
async fn config_supplies_the_audience_and_a_different_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runproof.toml");
    // Not the token's audience: the refusal names both, so the configuration's was used.
    std::fs::write(
        &config,
        "[oidc]\naudience = \"https://runproof.example.com\"\n",
    )
    .unwrap();
    let jwks = realworld(JWKS);
    let out = verify_token(args([
        &"--config",
        &config,
        &"--jwks",
        &jwks,
        &"--at",
        &INSIDE,
        &token_arg(),
    ]))
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.starts_with("wrong_audience:"), "{stdout}");
    assert!(stdout.contains("https://runproof.example.com"), "{stdout}");
    assert!(stdout.contains(AUDIENCE), "{stdout}");

    // Repeating it is the same check.
    let out = verify_token(args([
        &"--config",
        &config,
        &"--jwks",
        &jwks,
        &"--audience",
        &"https://runproof.example.com",
        &"--at",
        &INSIDE,
        &token_arg(),
    ]))
    .await;
    assert!(
        text(&out).0.starts_with("wrong_audience:"),
        "{:?}",
        text(&out)
    );

    // Another audience with --config: refused before the token is looked at.
    let out = verify_token(args([
        &"--config",
        &config,
        &"--jwks",
        &jwks,
        &"--audience",
        &AUDIENCE,
        &"--at",
        &INSIDE,
        &token_arg(),
    ]))
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("--audience"), "{stderr}");
    assert!(stderr.contains("https://runproof.example.com"), "{stderr}");

    // Without --config, --audience is required.
    let out = verify_token(args([&"--jwks", &jwks, &"--at", &INSIDE, &token_arg()])).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("give --audience"), "{stderr}");
}

/// `--issuer` names the issuer of the `--jwks` keys: with `--config` alone it would be
/// ignored, so it is refused; with `--config` and `--jwks` it must be one of the
/// configuration's issuers.
#[tokio::test]
async fn rule_issuer_without_jwks_is_refused_not_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("runproof.toml");
    std::fs::write(
        &config,
        "[oidc]\naudience = \"https://runproof.example.com\"\n",
    )
    .unwrap();
    let other = "https://ghes.example.com/_services/token";
    let out = verify_token(args([
        &"--config",
        &config,
        &"--issuer",
        &other,
        &"--at",
        &INSIDE,
        &token_arg(),
    ]))
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("--issuer"), "{stderr}");
    assert!(stderr.contains("--jwks"), "{stderr}");

    let out = verify_token(args([
        &"--config",
        &config,
        &"--jwks",
        &realworld(JWKS),
        &"--issuer",
        &other,
        &"--at",
        &INSIDE,
        &token_arg(),
    ]))
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("not an issuer of"), "{stderr}");
    assert!(stderr.contains(other), "{stderr}");
}

/// A bad `--at` is one message, said once, with an example of the form it takes.
#[tokio::test]
async fn a_bad_at_is_said_once() {
    for bad in ["garbage", "2025-13-01T00:00:00Z", "2025-01-29 01:50"] {
        let out = verify_token(args([
            &"--jwks",
            &realworld(JWKS),
            &"--audience",
            &AUDIENCE,
            &"--at",
            &bad,
            &token_arg(),
        ]))
        .await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_eq!(
            stderr.matches("neither unix seconds nor RFC 3339").count(),
            1
        );
        assert!(stderr.contains("2026-11-30T13:31:00Z"), "{stderr}");
        // The cause, once: no part of the message after the first `: ` comes twice.
        let cause = stderr.trim_end().rsplit(": ").next().unwrap();
        assert_eq!(stderr.matches(cause).count(), 1, "{stderr}");
    }
}

/// Refusals for time print RFC 3339 in UTC, not unix seconds, in text and in `--json`.
#[tokio::test]
async fn time_refusals_print_rfc3339() {
    // The token was issued at 1738115363 and expires at 1738115663 (2025-01-29T01:54:23Z).
    for (at, code, says) in [
        (
            "1738115783",
            "token_expired",
            "token expired at 2025-01-29T01:54:23Z",
        ),
        (
            "2025-01-29T01:40:00Z",
            "token_not_yet_valid",
            "token not valid before 2025-01-29T01:49:23Z",
        ),
    ] {
        let out = verify_token(args([
            &"--jwks",
            &realworld(JWKS),
            &"--audience",
            &AUDIENCE,
            &"--at",
            &at,
            &token_arg(),
        ]))
        .await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert_eq!(stdout.trim_end(), format!("{code}: {says}"));

        let out = verify_token(args([
            &"--jwks",
            &realworld(JWKS),
            &"--audience",
            &AUDIENCE,
            &"--at",
            &at,
            &"--json",
            &token_arg(),
        ]))
        .await;
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(body["code"], code);
        assert_eq!(body["detail"], says);
    }
}
