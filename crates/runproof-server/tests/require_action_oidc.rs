//! `[policy] require_action` in the OIDC mode, through a real server against the fake
//! GitHub: an upload, or a session when it is opened, is admitted only when the calling
//! workflow (the path of `workflow_ref` at `workflow_sha`, in the token's own repository)
//! uses the Action, directly or through a reusable workflow of the same repository. Every
//! refusal is `403 policy_denied` with a `require_action` mismatch, and stores nothing;
//! GitHub being unavailable is `503 upstream_unavailable`, never a decision.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{API_KEY, Harness, Options, bearer};
use runproof_core::Secret;
use runproof_testkit::{FakeGithub, RunSpec};
use serde_json::{Value, json};

const APP_ID: u64 = 4545;
const INSTALLATION: u64 = 77;
const ACTION: &str = "runproof/upload-action";
const CI: &str = ".github/workflows/ci.yml";
/// A workflow with a step that uses the Action.
const USES: &str = "on: push\njobs:\n  up:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - uses: runproof/upload-action@v1\n        with:\n          path: results.json\n";
/// A workflow that does not.
const DOES_NOT: &str = "on: push\njobs:\n  up:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: curl -X POST https://runproof.test/v1/uploads\n";
const OTHER_SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// A server requiring the Action, with the App installed on the fake's repository.
async fn start(require_action: Option<&str>) -> Harness {
    let gh = FakeGithub::start().await.unwrap();
    let creds = gh.register_app(APP_ID).unwrap();
    let r = RunSpec::default();
    gh.add_installation(
        INSTALLATION,
        &r.repository_owner,
        r.repository_owner_id,
        &[(r.repository_id, &r.repository)],
    );
    Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(creds.private_key_pem))),
            require_action: require_action.map(str::to_owned),
            ..Default::default()
        },
    )
    .await
}

/// Serves `text` as the calling workflow at the run's commit.
fn serve_ci(h: &Harness, text: &str) {
    let r = h.gh.run();
    h.gh.set_file(&r.repository, CI, &r.sha, text);
}

/// A change to a token's claims.
type EditClaims = Box<dyn FnOnce(&mut serde_json::Map<String, Value>)>;

/// A fresh token whose claims `edit` changed.
fn token_with(h: &Harness, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut claims = h.claims();
    edit(&mut claims);
    h.gh.mint(&claims).unwrap()
}

/// Asserts `403 policy_denied` with exactly one `require_action` mismatch whose `actual`
/// starts with `actual`, and returns the detail.
fn assert_refused(rule: &str, status: u16, body: &Value, actual: &str) -> String {
    assert_eq!(status, 403, "rule `{rule}`: {body}");
    assert_eq!(body["code"], "policy_denied", "rule `{rule}`: {body}");
    let mismatches = body["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "rule `{rule}`: {body}");
    assert_eq!(
        mismatches[0]["field"], "require_action",
        "rule `{rule}`: {body}"
    );
    assert_eq!(
        mismatches[0]["expected"],
        json!([ACTION]),
        "rule `{rule}`: {body}"
    );
    let found = mismatches[0]["actual"].as_str().unwrap();
    assert!(
        found.starts_with(actual),
        "rule `{rule}`: actual {found:?} should start with {actual:?}"
    );
    body["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_workflow_that_uses_the_action_uploads() {
    let h = start(Some(ACTION)).await;
    serve_ci(&h, USES);
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "{record}");
    assert!(record.get("mismatches").is_none(), "{record}");
    // The answer for that file at that commit is cached: a second upload does not fetch.
    let fetched = h.gh.api_requests("contents");
    let (status, record) = h.upload(Some(&bearer(&h.token())), "b", "2").await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(h.gh.api_requests("contents"), fetched);
    h.stop().await;
}

#[tokio::test]
async fn rule_require_action_a_workflow_that_does_not_use_it_is_refused() {
    let h = start(Some(ACTION)).await;
    serve_ci(&h, DOES_NOT);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    let sha = h.gh.run().sha;
    assert_refused(
        "action not used",
        status,
        &body,
        &format!("{CI}@{sha} does not use it"),
    );
    assert_eq!(
        body["mismatches"][0]["actual"],
        format!("{CI}@{sha} does not use it")
    );
    h.assert_nothing_stored("a workflow without the action")
        .await;
    h.stop().await;
}

#[tokio::test]
async fn a_local_reusable_workflow_that_uses_the_action_uploads() {
    let h = start(Some(ACTION)).await;
    let r = h.gh.run();
    serve_ci(
        &h,
        "on: push\njobs:\n  call:\n    uses: ./.github/workflows/upload.yml\n    secrets: inherit\n",
    );
    h.gh.set_file(&r.repository, ".github/workflows/upload.yml", &r.sha, USES);
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

#[tokio::test]
async fn rule_require_action_is_read_at_workflow_sha_not_at_another_commit() {
    let h = start(Some(ACTION)).await;
    let r = h.gh.run();
    // The file uses the Action at another commit, not at the token's `workflow_sha`.
    h.gh.set_file(&r.repository, CI, OTHER_SHA, USES);
    serve_ci(&h, DOES_NOT);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_refused(
        "another commit",
        status,
        &body,
        &format!("{CI}@{} does not use it", r.sha),
    );
    // And a token naming that other commit as its `workflow_sha` is admitted.
    let token = token_with(&h, |c| {
        c.insert("workflow_sha".into(), json!(OTHER_SHA));
    });
    let (status, record) = h.upload(Some(&bearer(&token)), "a", "1").await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

#[tokio::test]
async fn rule_require_action_a_hostile_workflow_is_refused_and_the_server_stays_up() {
    let h = start(Some(ACTION)).await;
    // An alias bomb around a genuine use: a reader that expanded it would admit the run.
    let bomb = format!(
        "{USES}big: &a {}\nmany: [{}]\n",
        "x".repeat(40_000),
        vec!["*a"; 49_000].join(", ")
    );
    serve_ci(&h, &bomb);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    let sha = h.gh.run().sha;
    let detail = assert_refused(
        "alias bomb",
        status,
        &body,
        &format!("{CI}@{sha} cannot be read"),
    );
    assert!(detail.contains("bytes"), "{detail}");
    h.assert_nothing_stored("a hostile workflow").await;

    // A missing file refuses too (fail closed).
    let token = token_with(&h, |c| {
        c.insert("workflow_sha".into(), json!(OTHER_SHA));
    });
    let (status, body) = h.upload(Some(&bearer(&token)), "a", "1").await;
    assert_refused(
        "missing workflow file",
        status,
        &body,
        &format!("{CI}@{OTHER_SHA} cannot be read"),
    );
    let resp = h.get("/healthz", None).await;
    assert_eq!(resp.status().as_u16(), 200);
    h.stop().await;
}

#[tokio::test]
async fn rule_require_action_refuses_a_workflow_ref_of_another_repository_or_no_workflow_sha() {
    let h = start(Some(ACTION)).await;
    serve_ci(&h, USES);
    let cases: [(&str, EditClaims, &str); 3] = [
        (
            "workflow_ref in another repository",
            Box::new(|c| {
                c.insert(
                    "workflow_ref".into(),
                    json!(format!("other-org/other-repo/{CI}@refs/heads/main")),
                );
            }),
            "workflow_ref other-org/other-repo/",
        ),
        (
            "no workflow_ref",
            Box::new(|c| {
                c.remove("workflow_ref");
            }),
            "the token has no workflow_ref",
        ),
        (
            "no workflow_sha",
            Box::new(|c| {
                c.remove("workflow_sha");
            }),
            "the token has no workflow_sha",
        ),
    ];
    for (rule, edit, actual) in cases {
        let token = token_with(&h, edit);
        let (status, body) = h.upload(Some(&bearer(&token)), "a", "1").await;
        assert_refused(rule, status, &body, actual);
    }
    h.assert_nothing_stored("another repository's workflow")
        .await;
    h.stop().await;
}

#[tokio::test]
async fn rule_require_action_github_unavailable_answers_503_not_a_decision() {
    let h = start(Some(ACTION)).await;
    serve_ci(&h, USES);
    // Bind the repository first, so that the outage meets the workflow check.
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "{record}");
    let r = h.gh.run();
    h.gh.set_file(&r.repository, CI, OTHER_SHA, USES);
    h.gh.set_api_outage(true);
    let token = token_with(&h, |c| {
        c.insert("workflow_sha".into(), json!(OTHER_SHA));
    });
    let resp = h
        .http
        .post(format!("{}/v1/uploads?name=b", h.url))
        .bearer_auth(&token)
        .body("2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "upstream_unavailable", "{body}");
    assert!(body.get("mismatches").is_none(), "{body}");

    // Back up: the same commit is checked now (nothing was cached from the outage).
    h.gh.set_api_outage(false);
    let token = token_with(&h, |c| {
        c.insert("workflow_sha".into(), json!(OTHER_SHA));
    });
    let (status, record) = h.upload(Some(&bearer(&token)), "b", "2").await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

#[tokio::test]
async fn rule_require_action_refuses_a_session_at_open() {
    let h = start(Some(ACTION)).await;
    serve_ci(&h, DOES_NOT);
    let resp = h
        .http
        .post(format!("{}/v1/sessions", h.url))
        .bearer_auth(h.token())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    let sha = h.gh.run().sha;
    assert_refused(
        "session open",
        status,
        &body,
        &format!("{CI}@{sha} does not use it"),
    );
    assert!(body.get("token").is_none(), "{body}");

    let r = h.gh.run();
    h.gh.set_file(&r.repository, CI, OTHER_SHA, USES);
    let token = token_with(&h, |c| {
        c.insert("workflow_sha".into(), json!(OTHER_SHA));
    });
    let resp = h
        .http
        .post(format!("{}/v1/sessions", h.url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let session: Value = resp.json().await.unwrap();
    let (status, record) = h
        .upload(Some(&bearer(session["token"].as_str().unwrap())), "a", "1")
        .await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

async fn explain(h: &Harness, token: &str) -> Value {
    let resp = h
        .http
        .post(format!("{}/v1/policy/explain", h.url))
        .bearer_auth(API_KEY)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

fn action_check(body: &Value) -> &Value {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "action")
        .unwrap_or_else(|| panic!("no action check: {body}"))
}

#[tokio::test]
async fn explain_shows_the_action_check() {
    let h = start(Some(ACTION)).await;
    let r = h.gh.run();
    serve_ci(&h, DOES_NOT);
    h.gh.set_file(&r.repository, CI, OTHER_SHA, USES);

    let token = h.token();
    let body = explain(&h, &token).await;
    assert_eq!(body["allowed"], false, "{body}");
    let check = action_check(&body);
    assert_eq!(check["ok"], false, "{body}");
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains(ACTION) && detail.contains("does not use it"),
        "{detail}"
    );
    // Explaining used nothing up: the same token is refused by the check alone.
    let (status, body) = h.upload(Some(&bearer(&token)), "a", "1").await;
    assert_refused(
        "after explain",
        status,
        &body,
        &format!("{CI}@{} does not use it", r.sha),
    );

    let token = token_with(&h, |c| {
        c.insert("workflow_sha".into(), json!(OTHER_SHA));
    });
    let body = explain(&h, &token).await;
    assert_eq!(body["allowed"], true, "{body}");
    let check = action_check(&body);
    assert_eq!(check["ok"], true, "{body}");
    assert_eq!(
        check["detail"],
        format!("{CI}@{OTHER_SHA} uses {ACTION}"),
        "{body}"
    );
    h.stop().await;

    let h = start(None).await;
    let body = explain(&h, &h.token()).await;
    assert_eq!(action_check(&body)["ok"], true, "{body}");
    assert_eq!(action_check(&body)["detail"], "require_action is off");
    h.stop().await;
}

#[tokio::test]
async fn rule_require_action_refuses_the_github_token_mode_which_names_no_workflow() {
    let gh = FakeGithub::start().await.unwrap();
    let creds = gh.register_app(APP_ID).unwrap();
    let r = RunSpec::default();
    gh.add_installation(
        INSTALLATION,
        &r.repository_owner,
        r.repository_owner_id,
        &[(r.repository_id, &r.repository)],
    );
    let h = Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(creds.private_key_pem))),
            require_action: Some(ACTION.into()),
            github_token: true,
            ..Default::default()
        },
    )
    .await;
    serve_ci(&h, USES);
    let token = h.gh.issue_github_token(
        &[(r.repository_id, r.repository.as_str())],
        r.repository_owner_id,
    );
    let run = format!("{}/{}/{}", r.repository_id, r.run_id, r.run_attempt);
    let headers = [
        ("x-runproof-repository", r.repository.as_str()),
        ("x-runproof-run", run.as_str()),
        ("x-runproof-sha", r.sha.as_str()),
    ];
    let (status, body) = h
        .upload_with(
            Some(&format!("token {token}")),
            "name=gt.txt",
            "gt",
            &headers,
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "policy_denied", "{body}");
    assert_eq!(
        body["mismatches"],
        json!([{"field": "require_action", "expected": [ACTION], "actual": null}]),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("OIDC token"),
        "{body}"
    );
    h.assert_nothing_stored("github_token under require_action")
        .await;

    // The same run with its OIDC token, whose workflow uses the Action, is admitted.
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "{body}");
    h.stop().await;
}
