//! `runproof upload --mode pending` as an Actions job without `id-token: write` runs it,
//! against the dev environment (webhook mode on).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use runproof::demo::{DEV_INSTALLATION, DevEnvironment, start_dev};
use runproof_testkit::{RunSpec, WebhookSender, workflow_run_payload};
use serde_json::{Value, json};

fn bin(run: &RunSpec) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runproof"));
    cmd.env_remove("ACTIONS_ID_TOKEN_REQUEST_URL")
        .env_remove("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_TOKEN")
        .env("GITHUB_REPOSITORY_ID", run.repository_id.to_string())
        .env("GITHUB_RUN_ID", run.run_id.to_string())
        .env("GITHUB_RUN_ATTEMPT", run.run_attempt.to_string())
        .env("GITHUB_SHA", &run.sha)
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null());
    cmd
}

async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

async fn env(dir: &std::path::Path) -> DevEnvironment {
    start_dev(
        dir.to_path_buf(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        None,
    )
    .await
    .unwrap()
}

fn sender(env: &DevEnvironment) -> WebhookSender {
    WebhookSender::new(
        format!("{}/v1/github/webhooks", env.server.url()),
        env.webhook_secret.as_bytes(),
    )
}

fn spec(env: &DevEnvironment, run_id: u64) -> RunSpec {
    RunSpec {
        run_id,
        ..env.github.run()
    }
}

/// Waits (bounded) until `n` uploads are pending, as the read API lists them.
async fn wait_until_pending(env: &DevEnvironment, n: usize) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/v1/uploads?status=pending", env.server.url());
    let mut pending = 0;
    for _ in 0..600 {
        let v: Value = http
            .get(&url)
            .bearer_auth(&env.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pending = v["uploads"].as_array().map_or(0, Vec::len);
        if pending >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{pending} uploads pending after 30 s, want {n}");
}

fn upload_args<'a>(cmd: &'a mut Command, url: &str, file: &std::path::Path) -> &'a mut Command {
    // Files must be under the base directory (the working directory by default).
    cmd.args(["upload", "--mode", "pending", "--url", url, "--no-progress"])
        .arg("--base")
        .arg(file.parent().unwrap_or(file))
        .arg(file)
}

#[tokio::test]
async fn wait_until_the_webhook_approves_then_exit_zero() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let f = dir.path().join("results.json");
    std::fs::write(&f, "{}").unwrap();
    let run = spec(&env, 6_100_001);
    let mut cmd = bin(&run);
    upload_args(&mut cmd, &env.server.url(), &f).arg("--wait");
    let child = tokio::task::spawn_blocking(move || cmd.output().unwrap());
    // The webhook comes once the upload is held pending, so that `--wait` has to wait.
    wait_until_pending(&env, 1).await;
    let payload = workflow_run_payload(
        "in_progress",
        &run,
        Some(DEV_INSTALLATION),
        "in_progress",
        None,
    );
    assert_eq!(
        sender(&env).send("workflow_run", &payload).await.unwrap().0,
        200
    );
    let out = child.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(": verified"), "{stderr}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 36, "the upload id is printed: {id}");
    env.server.stop().await.unwrap();
}

#[tokio::test]
async fn rejected_or_still_pending_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path()).await;
    let f = dir.path().join("results.json");
    std::fs::write(&f, "{}").unwrap();

    // A fork's run: rejected, whether waited for or not.
    let fork = spec(&env, 6_200_001);
    let mut payload = workflow_run_payload(
        "in_progress",
        &fork,
        Some(DEV_INSTALLATION),
        "in_progress",
        None,
    );
    payload["workflow_run"]["head_repository"]["id"] = json!(5);
    assert_eq!(
        sender(&env).send("workflow_run", &payload).await.unwrap().0,
        200
    );
    let mut cmd = bin(&fork);
    upload_args(&mut cmd, &env.server.url(), &f).arg("--wait");
    let out = output(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(": rejected (the run is from a fork"),
        "{stderr}"
    );

    // No webhook within --wait-timeout: still pending, non-zero.
    let silent = spec(&env, 6_200_002);
    let mut cmd = bin(&silent);
    upload_args(&mut cmd, &env.server.url(), &f).args(["--wait", "--wait-timeout", "1"]);
    let out = output(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(": pending"), "{stderr}");

    // Without --wait, a pending upload is a success: the step goes on.
    let mut cmd = bin(&silent);
    upload_args(&mut cmd, &env.server.url(), &f);
    let out = output(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(": pending"), "{stderr}");

    // Outside a runner: the missing variable is named.
    let mut cmd = bin(&silent);
    cmd.env_remove("GITHUB_RUN_ID");
    upload_args(&mut cmd, &env.server.url(), &f);
    let out = output(cmd).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("GITHUB_RUN_ID"), "{stderr}");
    env.server.stop().await.unwrap();
}
