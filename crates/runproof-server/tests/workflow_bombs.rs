//! Hostile workflow files through a real server in the webhook mode with `require_action`:
//! a pending upload whose run's workflow file is a block-nesting bomb or an alias bomb
//! ends `rejected` as unreadable, the server stays up, and a restart does not read the
//! file again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Harness, Options};
use runproof_core::Secret;
use runproof_service::WebhookModeConfig;
use runproof_testkit::{FakeGithub, RunSpec, WebhookSender, workflow_run_payload};
use serde_json::Value;

const SECRET: &str = "webhook-secret-0123456789";
const APP_ID: u64 = 4343;
const INSTALLATION: u64 = 88;
const ACTION: &str = "runproof/upload-action";
/// A job that uses the action: a reader that survived a bomb would approve the upload.
const GENUINE: &str =
    "on: push\njobs:\n  up:\n    runs-on: x\n    steps:\n      - uses: runproof/upload-action@v1\n";

/// A fake GitHub with the App installed on the run's repository; the App's key.
async fn github() -> (FakeGithub, String) {
    let gh = FakeGithub::start().await.unwrap();
    let creds = gh.register_app(APP_ID).unwrap();
    let r = RunSpec::default();
    gh.add_installation(
        INSTALLATION,
        &r.repository_owner,
        r.repository_owner_id,
        &[(r.repository_id, &r.repository)],
    );
    (gh, creds.private_key_pem)
}

async fn start(gh: FakeGithub, pem: &str, dir: &std::path::Path) -> Harness {
    Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(pem.into()))),
            webhook_secrets: vec![Secret::new(SECRET.into())],
            webhook_mode: Some(WebhookModeConfig {
                require_action: Some(ACTION.into()),
                ..WebhookModeConfig::default()
            }),
            dir: Some(dir.to_path_buf()),
            ..Default::default()
        },
    )
    .await
}

async fn status_of(h: &Harness, id: &str) -> Value {
    let resp = h.get(&format!("/v1/uploads/{id}/status"), None).await;
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

/// Polls the public status until it is no longer pending, for about 10 s at most.
async fn settled(h: &Harness, id: &str) -> Value {
    let mut delay = Duration::from_millis(20);
    for _ in 0..40 {
        let s = status_of(h, id).await;
        if s["status"] != "pending" {
            return s;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
    status_of(h, id).await
}

/// Serves `text` as the run's workflow file, uploads a pending result claiming the run,
/// sends the run's signed `workflow_run` event, and returns the upload's settled status.
async fn upload_checked_against(h: &Harness, run_id: u64, text: &str) -> (String, Value) {
    let r = RunSpec {
        run_id,
        workflow: format!("w{run_id}.yml"),
        ..RunSpec::default()
    };
    let path = format!(".github/workflows/{}", r.workflow);
    h.gh.set_file(&r.repository, &path, &r.sha, text);
    let resp = h
        .http
        .post(format!("{}/v1/uploads?name=results.json", h.url))
        .header(
            "x-runproof-run",
            format!("{}/{}/{}", r.repository_id, r.run_id, r.run_attempt),
        )
        .header("x-runproof-sha", &r.sha)
        .body("checked")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = workflow_run_payload("in_progress", &r, Some(INSTALLATION), "in_progress", None);
    let sender = WebhookSender::new(format!("{}/v1/github/webhooks", h.url), SECRET.as_bytes());
    let (status, body, _) = sender.send("workflow_run", &event).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let s = settled(h, &id).await;
    (id, s)
}

#[tokio::test]
async fn rule_workflow_bombs_reject_the_upload_durably_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let (gh, pem) = github().await;
    let h = start(gh.clone(), &pem, dir.path()).await;

    let block_nesting = format!("{GENUINE}deep:\n{}x\n", "- ".repeat(99_000));
    let alias = format!(
        "{GENUINE}big: &a {}\nmany: [{}]\n",
        "x".repeat(40_000),
        vec!["*a"; 49_000].join(", ")
    );
    let cases = [
        (
            "block-style nesting 99,000 levels deep",
            201,
            block_nesting,
            "deeper",
        ),
        (
            "an alias bomb of 1.96 GB once expanded",
            202,
            alias,
            "bytes",
        ),
    ];
    // Past the file cap and, once base64-encoded, past the most runproof reads of an answer.
    let oversized = format!("{GENUINE}#{}\n", "x".repeat(900 * 1024));
    let cases = [
        cases[0].clone(),
        cases[1].clone(),
        (
            "a file larger than the contents API answers runproof reads",
            204,
            oversized,
            "longer than",
        ),
    ];
    let mut rejected = Vec::new();
    for (rule, run_id, text, why) in cases {
        let (id, s) = upload_checked_against(&h, run_id, &text).await;
        assert_eq!(s["status"], "rejected", "{rule}: {s}");
        let reason = s["reason"].as_str().unwrap();
        assert!(
            reason.contains("workflow") && reason.contains(why),
            "{rule}: {s}"
        );
        rejected.push(id);
    }

    // Still up: health, and a genuine workflow is still read and approves its upload.
    let health = h
        .http
        .get(format!("{}/healthz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (_, s) = upload_checked_against(&h, 203, GENUINE).await;
    assert_eq!(s["status"], "verified", "{s}");
    let reads = h.gh.api_requests("contents");
    h.stop().await;

    // The rejection is in the database: after a restart and a sweep the uploads are still
    // rejected and no workflow file was read again.
    let h = start(gh, &pem, dir.path()).await;
    let report = runproof_service::sweep(&h.service).await;
    assert_eq!(report.settled, 0, "{report:?}");
    for id in &rejected {
        assert_eq!(status_of(&h, id).await["status"], "rejected");
    }
    assert_eq!(h.gh.api_requests("contents"), reads);
    h.stop().await;
}
