//! The `runproof` binary as a person or an Actions job runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use runproof::demo::{DEMO_AUDIENCE, start_dev};
use serde_json::Value;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runproof"));
    cmd.env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null());
    cmd
}

async fn run(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn realworld(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/oidc")
        .join(name);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

#[tokio::test]
async fn demo_exits_zero_with_every_outcome_as_expected() {
    let mut cmd = bin();
    cmd.arg("demo");
    let out = run(cmd).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("every outcome was as expected"), "{stdout}");
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");
    // The App's trust rule: a refusal, its mismatches, the same token explained.
    let row = |request: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(request))
            .unwrap_or_else(|| panic!("no row {request:?}:\n{stdout}"))
            .to_owned()
    };
    let mismatch = "repository_owner_id: expected 9919 got 6500002";
    for (request, got) in [
        (
            "upload from other-org/tools (App installed, no App rule admits it)",
            "403 policy_denied".to_owned(),
        ),
        (
            "its mismatches (nearest rule: \"the demo organization\")",
            mismatch.to_owned(),
        ),
        (
            "the same token through POST /v1/policy/explain",
            "200 allowed false, failed: app_rules".to_owned(),
        ),
        (
            "explain's rule \"the demo organization\": matched, mismatches",
            format!("false, {mismatch}"),
        ),
    ] {
        let line = row(request);
        assert_eq!(line.matches(got.as_str()).count(), 2, "{line}");
        assert!(line.trim_end().ends_with(" ok"), "{line}");
    }
}

#[tokio::test]
async fn verify_token_accepts_real_tokens_inside_their_lifetime_only() {
    let cases = [
        (
            "step-security_github_oidc_token_2022-08-05.jwt",
            "step-security_jwks_2022.json",
            "https://github.com/varunsh-coder",
            1_659_663_000_i64,
            1_659_663_293_i64,
            "433903792",
        ),
        (
            "tok_2025-01_neu-se.jwt",
            "jwks_2025-06_crates.io.json",
            "https://github.com/neu-se",
            1_738_115_400,
            1_738_115_663,
            "922761846",
        ),
    ];
    for (token, jwks, aud, inside, exp, repo_id) in cases {
        let (token, jwks) = (realworld(token), realworld(jwks));
        let mut cmd = bin();
        cmd.args(["verify-token", "--jwks"])
            .arg(&jwks)
            .args(["--audience", aud, "--at", &inside.to_string(), "--json"])
            .arg(format!("@{}", token.display()));
        let out = run(cmd).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let identity: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(identity["repository_id"].to_string(), repo_id);
        assert_eq!(
            identity["issuer"],
            "https://token.actions.githubusercontent.com"
        );

        // RFC 3339 for --at, and the token on stdin.
        let at = time::OffsetDateTime::from_unix_timestamp(inside)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut cmd = bin();
        cmd.args(["verify-token", "--jwks"])
            .arg(&jwks)
            .args(["--audience", aud, "--at", &at, "-"])
            .stdin(std::fs::File::open(&token).unwrap());
        let out = run(cmd).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("repository_id"));

        let mut cmd = bin();
        cmd.args(["verify-token", "--jwks"])
            .arg(&jwks)
            .args(["--audience", aud, "--at", &(exp + 120).to_string()])
            .arg(format!("@{}", token.display()));
        let out = run(cmd).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("token_expired"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );

        let mut cmd = bin();
        cmd.args(["verify-token", "--jwks"])
            .arg(&jwks)
            .args([
                "--audience",
                "https://runproof.example.com",
                "--at",
                &inside.to_string(),
                "--json",
            ])
            .arg(format!("@{}", token.display()));
        let out = run(cmd).await;
        assert_eq!(out.status.code(), Some(1));
        let refused: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(refused["code"], "wrong_audience");
    }
}

#[tokio::test]
async fn upload_without_token_variables_names_the_permission() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.txt");
    std::fs::write(&f, "x").unwrap();
    let mut cmd = bin();
    cmd.args(["upload", "--url", "http://127.0.0.1:9"]).arg(&f);
    let out = run(cmd).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("permissions: id-token: write"), "{stderr}");
}

/// `--wait` waits for pending uploads only: with another mode it is refused before anything
/// is sent, and `upload`'s help line names every mode.
#[tokio::test]
async fn upload_wait_needs_mode_pending_and_help_names_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.txt");
    std::fs::write(&f, "x").unwrap();
    for mode in [None, Some("oidc"), Some("github-token")] {
        let mut cmd = bin();
        cmd.env_remove("RUNPROOF_MODE")
            .args(["upload", "--url", "http://127.0.0.1:9", "--wait"])
            .args(mode.map(|m| ["--mode", m]).into_iter().flatten())
            .arg(&f);
        let out = run(cmd).await;
        assert_eq!(out.status.code(), Some(2), "{mode:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("`--wait` needs `--mode pending`"),
            "{stderr}"
        );
        assert!(stderr.contains("Usage: runproof upload"), "{stderr}");
    }
    let mut cmd = bin();
    cmd.arg("--help");
    let out = run(cmd).await;
    let help = String::from_utf8_lossy(&out.stdout);
    let line = help
        .lines()
        .find(|l| l.trim_start().starts_with("upload"))
        .unwrap();
    for mode in ["OIDC", "github-token", "pending"] {
        assert!(line.contains(mode), "{line}");
    }
}

#[tokio::test]
async fn upload_as_an_actions_job_writes_outputs_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let env = start_dev(
        dir.path().join("data"),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .await
    .unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("out/deep")).unwrap();
    let a = ws.join("out/deep/report one.json");
    let b = ws.join("b.bin");
    std::fs::write(&a, "{\"ok\": true}").unwrap();
    std::fs::write(&b, vec![3u8; 300_000]).unwrap();
    let output = dir.path().join("github_output");
    let summary = dir.path().join("step_summary");
    let mut cmd = bin();
    // The dev server's audience is not its loopback host, so it is given, as a workflow would.
    cmd.args([
        "upload",
        "--url",
        &env.server.url(),
        "--audience",
        DEMO_AUDIENCE,
    ])
    .args(["out/deep/report one.json", "b.bin"])
    .current_dir(&ws)
    .env(
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        env.github.token_request_url(),
    )
    .env(
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        env.github.token_request_token(),
    )
    .env("GITHUB_OUTPUT", &output)
    .env("GITHUB_STEP_SUMMARY", &summary);
    let out = run(cmd).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), 2);
    // The delimiter form: `upload-ids<<DELIMITER`, the value, the delimiter.
    let written = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    let delimiter = lines[0].strip_prefix("upload-ids<<").unwrap();
    assert_eq!(lines[1..], [ids.join(",").as_str(), delimiter], "{written}");
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary.contains("out\\/deep\\/report one\\.json") && summary.contains(&ids[1]),
        "{summary}"
    );

    let http = reqwest::Client::new();
    let mut names = Vec::new();
    for id in &ids {
        let record: Value = http
            .get(format!("{}/v1/uploads/{id}", env.server.url()))
            .bearer_auth(&env.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            record["mode"], "session",
            "two files go through one upload session"
        );
        names.push(record["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        names,
        ["out/deep/report one.json", "b.bin"],
        "named by their path"
    );
    for (id, path) in ids.iter().zip([&a, &b]) {
        let bytes = http
            .get(format!("{}/v1/uploads/{id}/content", env.server.url()))
            .bearer_auth(&env.api_key)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(bytes.as_ref(), std::fs::read(path).unwrap().as_slice());
    }
    env.server.stop().await.unwrap();
}

/// Kills the server if the test fails before stopping it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_config(dir: &std::path::Path, body: &str) -> PathBuf {
    let p = dir.join("runproof.toml");
    std::fs::write(&p, body).unwrap();
    p
}

#[tokio::test]
async fn bad_config_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[oidc]\naudience = \"https://r.example\"\nleway_seconds = 3\n",
            "leway_seconds",
        ),
        ("listen = \"127.0.0.1:0\"\n", "oidc.audience"),
        (
            "[oidc]\naudience = \"https://github.com/octo\"\n",
            "GitHub's default",
        ),
        (
            "[oidc]\naudience = \"https://r.example\"\n[[oidc.issuers]]\nissuer = \"http://issuer.example\"\n",
            "https",
        ),
        (
            "max_upload_bytes = \"lots\"\n[oidc]\naudience = \"https://r.example\"\n",
            "max_upload_bytes",
        ),
    ];
    for (toml, needle) in cases {
        let cfg = write_config(dir.path(), toml);
        let mut cmd = bin();
        cmd.args(["serve", "--config"])
            .arg(&cfg)
            .env("RUNPROOF_DATA_DIR", dir.path().join("d"));
        let out = run(cmd).await;
        assert_eq!(out.status.code(), Some(2), "{toml}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    }
    let mut cmd = bin();
    cmd.args(["serve", "--config", "/nonexistent/runproof.toml"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// A `RUNPROOF_…` variable that sets no key is named once at startup, without its value;
/// those that `runproof upload` reads are not.
#[tokio::test]
async fn an_unknown_variable_is_named_at_startup_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "listen = \"127.0.0.1:0\"\n");
    let mut cmd = bin();
    cmd.args(["serve", "--config"])
        .arg(&cfg)
        .env("RUNPROOF_DATA_DIR", dir.path().join("d"))
        .env("RUNPROOF_LIMITS__MAX_CONECTIONS", "s3cr3t-typo-value")
        .env("RUNPROOF_URL", "https://runproof.example")
        .env("RUNPROOF_AUDIENCE", "https://runproof.example");
    let out = run(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "no audience: the start fails after the warning"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let named = stderr
        .lines()
        .filter(|l| l.contains("RUNPROOF_LIMITS__MAX_CONECTIONS"))
        .count();
    assert_eq!(named, 1, "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");
    assert!(
        !stderr.contains("RUNPROOF_URL") && !stderr.contains("RUNPROOF_AUDIENCE"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_runs_from_config_with_env_overrides_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = write_config(
        dir.path(),
        "listen = \"127.0.0.1:1\"\n[oidc]\naudience = \"https://from-file.example\"\n",
    );
    let child = bin()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("RUNPROOF_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUNPROOF_OIDC__AUDIENCE", DEMO_AUDIENCE)
        .env("RUNPROOF_DATA_DIR", dir.path().join("data"))
        .env(
            "RUNPROOF_API_KEYS",
            "key-aaaaaaaaaaaaaaaa,key-bbbbbbbbbbbbbbbb",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(Some(child));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut wk = None;
    for _ in 0..100 {
        if let Ok(resp) = http.get(format!("{url}/.well-known/runproof")).send().await {
            wk = Some(resp.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wk = wk.expect("server came up");
    assert_eq!(
        wk["audience"], DEMO_AUDIENCE,
        "RUNPROOF_OIDC__AUDIENCE overrides the file"
    );
    assert_eq!(wk["installation_binding"], false);
    let resp = http
        .get(format!("{url}/v1/uploads"))
        .bearer_auth("key-bbbbbbbbbbbbbbbb")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "RUNPROOF_API_KEYS adds keys");
    assert!(dir.path().join("data/runproof.db").exists());

    let mut child = child.0.take().unwrap();
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || {
        for _ in 0..100 {
            if let Some(s) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (s, err);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        panic!("server did not stop on SIGTERM");
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{}", status.1);
    assert!(
        status.1.contains("installation binding is OFF"),
        "the startup log says so: {}",
        status.1
    );
}
