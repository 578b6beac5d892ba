//! The App's trust rules (`[[policy.rules]]`) through a real server, in every mode: a run
//! that matches a rule is admitted; one that matches none is refused with `403
//! policy_denied` and the nearest rule's `mismatches`, and nothing is stored. Each
//! refusing case names its rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Harness, Options, bearer};
use runproof_core::rules::TrustRule;
use runproof_core::{OwnerId, RepositoryId, Secret};
use runproof_service::WebhookModeConfig;
use runproof_testkit::{FakeGithub, RunSpec, WebhookSender, workflow_run_payload};
use serde_json::{Value, json};

const SECRET: &str = "webhook-secret-0123456789";
const INSTALLATION: u64 = 91;

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

/// A rule every default run of the fake matches.
fn matching_rule() -> TrustRule {
    let run = RunSpec::default();
    TrustRule {
        name: "main pushes".into(),
        repository_owner_ids: Some(vec![OwnerId(run.repository_owner_id)]),
        repository_ids: Some(vec![RepositoryId(run.repository_id)]),
        workflows: strings(&[".github/workflows/*.yml"]),
        job_workflows: strings(&["octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/**"]),
        refs: strings(&["refs/heads/main"]),
        events: strings(&["push"]),
        runner_environments: strings(&["github-hosted"]),
        ..TrustRule::default()
    }
}

/// A rule the default run does not match: it wants a release tag.
fn release_rule() -> TrustRule {
    TrustRule {
        name: "release tags".into(),
        refs: strings(&["refs/tags/v*"]),
        ..TrustRule::default()
    }
}

async fn start(rules: Vec<TrustRule>) -> Harness {
    Harness::start_with(Options {
        trust_rules: rules,
        ..Default::default()
    })
    .await
}

/// Asserts a `403 policy_denied` naming `rule`, with exactly these mismatches.
fn assert_refused(rule: &str, status: u16, body: &Value, name: &str, mismatches: Value) {
    assert_eq!(status, 403, "rule `{rule}`: {body}");
    assert_eq!(body["code"], "policy_denied", "rule `{rule}`: {body}");
    assert_eq!(body["mismatches"], mismatches, "rule `{rule}`: {body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(name),
        "rule `{rule}`: the detail names the nearest rule: {detail}"
    );
}

#[tokio::test]
async fn a_run_matching_one_app_rule_is_admitted() {
    let h = start(vec![release_rule(), matching_rule()]).await;
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "{record}");
    assert!(record.get("mismatches").is_none());
    h.stop().await;
}

#[tokio::test]
async fn rule_no_app_rule_matches_refuses_with_the_nearest_rules_mismatches() {
    let far = TrustRule {
        name: "production releases".into(),
        refs: strings(&["refs/tags/v*"]),
        environments: strings(&["production"]),
        ..TrustRule::default()
    };
    let h = start(vec![far, release_rule()]).await;
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_refused(
        "ref not allowed",
        status,
        &body,
        "release tags",
        json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]),
    );
    h.assert_nothing_stored("a refusing rule").await;
    h.stop().await;
}

#[tokio::test]
async fn rule_a_missing_claim_is_shown_as_null() {
    let h = start(vec![TrustRule {
        name: "deployments".into(),
        environments: strings(&["production"]),
        ..TrustRule::default()
    }])
    .await;
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_refused(
        "environment missing",
        status,
        &body,
        "deployments",
        json!([{"field": "environment", "expected": ["production"], "actual": null}]),
    );
    h.assert_nothing_stored("a missing claim").await;
    h.stop().await;
}

/// The worked example of docs/operations.md: every upload must run inside the App's
/// reusable workflow, pinned to a commit.
#[tokio::test]
async fn rule_job_workflows_pinned_to_a_commit() {
    let run = RunSpec::default();
    let pinned = |sha: &str| TrustRule {
        name: "the upload workflow".into(),
        job_workflows: Some(vec![format!(
            "octo-org/octo-repo/.github/workflows/ci.yml@{sha}"
        )]),
        ..TrustRule::default()
    };
    let h = start(vec![pinned(&run.sha)]).await;
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "the pinned commit: {record}");
    h.stop().await;

    let other = "0123456789abcdef0123456789abcdef01234567";
    let h = start(vec![pinned(other)]).await;
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_refused(
        "job workflow at another commit",
        status,
        &body,
        "the upload workflow",
        json!([{
            "field": "job_workflow_ref",
            "expected": [format!("octo-org/octo-repo/.github/workflows/ci.yml@{other}")],
            "actual": format!("octo-org/octo-repo/.github/workflows/ci.yml@{}", run.sha),
        }]),
    );
    h.assert_nothing_stored("another commit").await;
    h.stop().await;
}

#[tokio::test]
async fn rule_a_session_is_refused_at_open() {
    let h = start(vec![release_rule()]).await;
    let resp = h
        .http
        .post(format!("{}/v1/sessions", h.url))
        .bearer_auth(h.token())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_refused(
        "session open",
        status,
        &body,
        "release tags",
        json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]),
    );
    assert!(body.get("token").is_none(), "{body}");
    h.stop().await;

    let h = start(vec![matching_rule()]).await;
    let resp = h
        .http
        .post(format!("{}/v1/sessions", h.url))
        .bearer_auth(h.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let session: Value = resp.json().await.unwrap();
    let token = session["token"].as_str().unwrap();
    let (status, record) = h.upload(Some(&bearer(token)), "a", "1").await;
    assert_eq!(
        status, 201,
        "a session opened under the rules uploads: {record}"
    );
    h.stop().await;
}

fn gt_headers(run: &RunSpec) -> Vec<(&'static str, String)> {
    vec![
        ("x-runproof-repository", run.repository.clone()),
        (
            "x-runproof-run",
            format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
        ),
        ("x-runproof-sha", run.sha.clone()),
    ]
}

async fn github_token_upload(rules: Vec<TrustRule>) -> (u16, Value) {
    let h = Harness::start_with(Options {
        github_token: true,
        trust_rules: rules,
        ..Default::default()
    })
    .await;
    let run = RunSpec::default();
    let token = h.gh.issue_github_token(
        &[(run.repository_id, run.repository.as_str())],
        run.repository_owner_id,
    );
    let headers = gt_headers(&run);
    let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = h
        .upload_with(Some(&format!("token {token}")), "name=gt.txt", "gt", &hs)
        .await;
    if out.0 != 201 {
        h.assert_nothing_stored("github_token refused").await;
    }
    h.stop().await;
    out
}

#[tokio::test]
async fn rule_github_token_mode_fails_closed_on_a_claim_it_lacks() {
    let run = RunSpec::default();
    let (status, body) = github_token_upload(vec![TrustRule {
        name: "main only".into(),
        repository_ids: Some(vec![RepositoryId(run.repository_id)]),
        refs: strings(&["refs/heads/main"]),
        ..TrustRule::default()
    }])
    .await;
    assert_refused(
        "github_token without a ref",
        status,
        &body,
        "main only",
        json!([{"field": "ref", "expected": ["refs/heads/main"], "actual": null}]),
    );

    // The ids come from GitHub's answer: a rule on them alone admits the upload.
    let (status, record) = github_token_upload(vec![TrustRule {
        name: "this repository".into(),
        repository_ids: Some(vec![RepositoryId(run.repository_id)]),
        ..TrustRule::default()
    }])
    .await;
    assert_eq!(status, 201, "{record}");

    // A claim the mode took from the client unverified never matches.
    let (status, body) = github_token_upload(vec![TrustRule {
        name: "this commit".into(),
        claims: Some([("sha".to_owned(), run.sha.clone())].into()),
        ..TrustRule::default()
    }])
    .await;
    assert_refused(
        "github_token with an unverified sha",
        status,
        &body,
        "this commit",
        json!([{"field": "sha", "expected": [run.sha], "actual": null}]),
    );
}

async fn webhook_mode_outcome(rules: Vec<TrustRule>) -> Value {
    let gh = FakeGithub::start().await.unwrap();
    let h = Harness::start_against(
        gh,
        Options {
            webhook_secrets: vec![Secret::new(SECRET.into())],
            webhook_mode: Some(WebhookModeConfig::default()),
            trust_rules: rules,
            ..Default::default()
        },
    )
    .await;
    let run = RunSpec::default();
    let resp = h
        .http
        .post(format!("{}/v1/uploads?name=results.json", h.url))
        .header(
            "x-runproof-run",
            format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
        )
        .header("x-runproof-sha", &run.sha)
        .body("results")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let body: Value = resp.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    let payload =
        workflow_run_payload("in_progress", &run, Some(INSTALLATION), "in_progress", None);
    let sender = WebhookSender::new(format!("{}/v1/github/webhooks", h.url), SECRET.as_bytes());
    let (status, body, _) = sender.send("workflow_run", &payload).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let mut delay = Duration::from_millis(20);
    let mut outcome = Value::Null;
    for _ in 0..40 {
        outcome = h
            .get(&format!("/v1/uploads/{id}/status"), None)
            .await
            .json()
            .await
            .unwrap();
        if outcome["status"] != "pending" {
            break;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
    h.stop().await;
    outcome
}

#[tokio::test]
async fn rule_webhook_mode_approval_rejects_a_run_no_rule_allows() {
    let run = RunSpec::default();
    let s = webhook_mode_outcome(vec![TrustRule {
        name: "pushes here".into(),
        repository_ids: Some(vec![RepositoryId(run.repository_id)]),
        events: strings(&["push"]),
        ..TrustRule::default()
    }])
    .await;
    assert_eq!(s["status"], "verified", "{s}");

    // The webhook mode knows no ref: a rule on it rejects, naming the rule.
    let s = webhook_mode_outcome(vec![TrustRule {
        name: "main only".into(),
        refs: strings(&["refs/heads/main"]),
        ..TrustRule::default()
    }])
    .await;
    assert_eq!(s["status"], "rejected", "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("main only") && reason.contains("ref"),
        "{reason}"
    );
}
