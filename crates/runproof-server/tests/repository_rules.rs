//! A repository's trust rules set through the API (`PUT|GET|DELETE
//! /v1/repositories/{repository_id}/rules`) through a real server: the App manages them
//! with its API key, and every upload of the repository must then match one of them as
//! well as one of the App's own (`[[policy.rules]]`). Each refusing case names its rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{API_KEY, Harness, Options, bearer};
use runproof_core::rules::TrustRule;
use runproof_core::{RepositoryId, Secret, UnixTime};
use runproof_service::WebhookModeConfig;
use runproof_testkit::{FakeGithub, RunSpec, WebhookSender, workflow_run_payload};
use serde_json::{Value, json};

const SECRET: &str = "webhook-secret-0123456789";
const INSTALLATION: u64 = 91;

fn rules_path(id: impl std::fmt::Display) -> String {
    format!("/v1/repositories/{id}/rules")
}

fn repo() -> u64 {
    RunSpec::default().repository_id
}

/// A repository rule the default run matches.
fn main_rule() -> Value {
    json!({"name": "main pushes", "refs": ["refs/heads/main"], "events": ["push"]})
}

/// A repository rule the default run does not match: it wants a release tag.
fn release_rule() -> Value {
    json!({"name": "release tags", "refs": ["refs/tags/v*"]})
}

async fn start(app_rules: Vec<TrustRule>) -> Harness {
    Harness::start_with(Options {
        trust_rules: app_rules,
        ..Default::default()
    })
    .await
}

/// Sends `method` to `path` with `key` and a JSON `body`; returns the status and the
/// JSON answer (`null` when there is none).
async fn call(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = h.http.request(method, format!("{}{path}", h.url));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn put(h: &Harness, id: u64, rules: Value) -> (u16, Value) {
    call(
        h,
        reqwest::Method::PUT,
        &rules_path(id),
        Some(API_KEY),
        Some(&json!({ "rules": rules })),
    )
    .await
}

async fn get(h: &Harness, id: u64) -> Value {
    let (status, body) = call(
        h,
        reqwest::Method::GET,
        &rules_path(id),
        Some(API_KEY),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn delete(h: &Harness, id: u64) -> u16 {
    call(
        h,
        reqwest::Method::DELETE,
        &rules_path(id),
        Some(API_KEY),
        None,
    )
    .await
    .0
}

/// Uploads with a fresh OIDC token of the default run.
async fn upload(h: &Harness) -> (u16, Value) {
    h.upload(Some(&bearer(&h.token())), "a.txt", "1").await
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

fn ref_mismatch() -> Value {
    json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}])
}

#[tokio::test]
async fn rules_are_put_read_replaced_and_deleted() {
    let h = start(Vec::new()).await;
    assert_eq!(get(&h, repo()).await, json!({"rules": []}), "none yet");

    let full = json!({
        "name": "release uploads",
        "repository_owner_ids": [650001],
        "repository_ids": [740001],
        "workflows": [".github/workflows/release.yml"],
        "job_workflows": ["app-org/upload/.github/workflows/upload.yml@refs/tags/v*"],
        "refs": ["refs/heads/main", "refs/tags/v*"],
        "ref_protected": true,
        "environments": ["production"],
        "events": ["push", "release"],
        "runner_environments": ["github-hosted"],
        "claims": {"repo_property_team": "infra"}
    });
    let (status, body) = put(&h, repo(), json!([full, main_rule()])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"rules": [full, main_rule()]}));
    assert_eq!(get(&h, repo()).await, body, "read back as stored");
    assert_eq!(
        get(&h, repo() + 1).await,
        json!({"rules": []}),
        "another repository has none"
    );

    let (status, body) = put(&h, repo(), json!([release_rule()])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get(&h, repo()).await,
        json!({"rules": [release_rule()]}),
        "a PUT replaces the whole layer"
    );

    assert_eq!(delete(&h, repo()).await, 204);
    assert_eq!(get(&h, repo()).await, json!({"rules": []}));
    assert_eq!(delete(&h, repo()).await, 204, "deleting none is fine");
    h.stop().await;
}

#[tokio::test]
async fn rule_the_rules_api_needs_the_apps_api_key() {
    let h = start(Vec::new()).await;
    let path = rules_path(repo());
    let body = json!({"rules": [release_rule()]});
    for key in [None, Some("not-the-key"), Some(h.token().as_str())] {
        for method in [
            reqwest::Method::PUT,
            reqwest::Method::GET,
            reqwest::Method::DELETE,
        ] {
            let (status, answer) = call(&h, method.clone(), &path, key, Some(&body)).await;
            assert_eq!(status, 401, "{method} with {key:?}: {answer}");
        }
    }
    assert_eq!(
        get(&h, repo()).await,
        json!({"rules": []}),
        "nothing stored"
    );
    let (status, _) = upload(&h).await;
    assert_eq!(status, 201);
    h.stop().await;
}

#[tokio::test]
async fn rule_unknown_fields_bad_json_and_broken_bounds_are_invalid_requests() {
    let h = start(Vec::new()).await;
    let (status, _) = put(&h, repo(), json!([main_rule()])).await;
    assert_eq!(status, 200);
    let too_many: Vec<Value> = (0..65).map(|i| json!({"name": format!("r{i}")})).collect();
    let cases: Vec<(&str, String)> = vec![
        (
            "unknown rule field",
            json!({"rules": [{"name": "x", "branch": "main"}]}).to_string(),
        ),
        (
            "unknown top-level field",
            json!({"rules": [], "repository": "octo-org/octo-repo"}).to_string(),
        ),
        ("missing rules", json!({}).to_string()),
        ("not JSON", "{\"rules\": [".to_owned()),
        (
            "wrong type",
            json!({"rules": [{"refs": "refs/heads/main"}]}).to_string(),
        ),
        (
            "empty list",
            json!({"rules": [{"name": "x", "refs": []}]}).to_string(),
        ),
        (
            "ref not in full",
            json!({"rules": [{"name": "x", "refs": ["main"]}]}).to_string(),
        ),
        (
            "job workflow without a ref",
            json!({"rules": [{"job_workflows": ["o/r/.github/workflows/u.yml"]}]}).to_string(),
        ),
        ("too many rules", json!({ "rules": too_many }).to_string()),
    ];
    for (rule, body) in cases {
        let resp = h
            .http
            .put(format!("{}{}", h.url, rules_path(repo())))
            .bearer_auth(API_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(status, 400, "rule `{rule}`: {answer}");
        assert_eq!(answer["code"], "invalid_request", "rule `{rule}`: {answer}");
    }
    assert_eq!(
        get(&h, repo()).await,
        json!({"rules": [main_rule()]}),
        "a refused PUT changes nothing"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_the_repository_id_is_a_positive_integer() {
    let h = start(Vec::new()).await;
    for id in ["0", "abc", "-1", "1.5", "99999999999999999999"] {
        let (status, body) = call(
            &h,
            reqwest::Method::GET,
            &rules_path(id),
            Some(API_KEY),
            None,
        )
        .await;
        assert_eq!(status, 400, "{id}: {body}");
        assert_eq!(body["code"], "invalid_request", "{id}: {body}");
        let (status, _) = call(
            &h,
            reqwest::Method::PUT,
            &rules_path(id),
            Some(API_KEY),
            Some(&json!({"rules": []})),
        )
        .await;
        assert_eq!(status, 400, "{id}");
    }
    h.stop().await;
}

#[tokio::test]
async fn rule_the_rules_body_is_bounded() {
    let h = start(Vec::new()).await;
    let name = "x".repeat(100);
    let big = json!({"rules": [{"name": name, "claims": {"padding": "y".repeat(70 * 1024)}}]});
    let (status, body) = call(
        &h,
        reqwest::Method::PUT,
        &rules_path(repo()),
        Some(API_KEY),
        Some(&big),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large", "{body}");
    assert_eq!(get(&h, repo()).await, json!({"rules": []}));
    h.stop().await;
}

#[tokio::test]
async fn rule_the_repository_layer_refuses_a_run_the_app_layer_allows() {
    let app = TrustRule {
        name: "app: this repository".into(),
        repository_ids: Some(vec![RepositoryId(repo())]),
        ..TrustRule::default()
    };
    let h = start(vec![app]).await;
    let (status, _) = put(&h, repo(), json!([release_rule()])).await;
    assert_eq!(status, 200);
    let (status, body) = upload(&h).await;
    assert_refused(
        "repository layer",
        status,
        &body,
        "release tags",
        ref_mismatch(),
    );
    assert!(
        body["detail"].as_str().unwrap().contains("repository"),
        "{body}"
    );
    h.assert_nothing_stored("the repository layer refused")
        .await;
    let metrics = h.get("/metrics", Some(API_KEY)).await.text().await.unwrap();
    assert!(
        metrics.contains("runproof_trust_rule_refusals_total{layer=\"repository\"}"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_both_layers_must_match() {
    // The App's layer refuses, the repository's allows: refused by the App's.
    let h = start(vec![TrustRule {
        name: "app: releases".into(),
        refs: Some(vec!["refs/tags/v*".into()]),
        ..TrustRule::default()
    }])
    .await;
    let (status, _) = put(&h, repo(), json!([main_rule()])).await;
    assert_eq!(status, 200);
    let (status, body) = upload(&h).await;
    assert_refused("app layer", status, &body, "app: releases", ref_mismatch());
    assert!(body["detail"].as_str().unwrap().contains("app"), "{body}");
    h.assert_nothing_stored("the App's layer refused").await;
    h.stop().await;

    // Both allow: admitted.
    let h = start(vec![TrustRule {
        name: "app: main".into(),
        refs: Some(vec!["refs/heads/main".into()]),
        ..TrustRule::default()
    }])
    .await;
    let (status, _) = put(&h, repo(), json!([release_rule(), main_rule()])).await;
    assert_eq!(status, 200);
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "one rule of each layer matches: {record}");
    h.stop().await;
}

#[tokio::test]
async fn an_empty_repository_layer_adds_no_constraint() {
    let h = start(Vec::new()).await;
    let (status, body) = put(&h, repo(), json!([])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"rules": []}));
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");

    // Another repository's rules are not this one's.
    let (status, _) = put(&h, repo() + 1, json!([release_rule()])).await;
    assert_eq!(status, 200);
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

#[tokio::test]
async fn rule_a_rule_change_takes_effect_at_once() {
    let h = start(Vec::new()).await;
    let (status, _) = upload(&h).await;
    assert_eq!(status, 201, "no rules yet");

    let (status, _) = put(&h, repo(), json!([release_rule()])).await;
    assert_eq!(status, 200);
    let (status, body) = upload(&h).await;
    assert_refused("tightened", status, &body, "release tags", ref_mismatch());

    let (status, _) = put(&h, repo(), json!([main_rule()])).await;
    assert_eq!(status, 200);
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "loosened: {record}");

    let (status, _) = put(&h, repo(), json!([release_rule()])).await;
    assert_eq!(status, 200);
    let (status, body) = upload(&h).await;
    assert_refused(
        "tightened again",
        status,
        &body,
        "release tags",
        ref_mismatch(),
    );

    assert_eq!(delete(&h, repo()).await, 204);
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "deleted: {record}");
    h.stop().await;
}

#[tokio::test]
async fn rule_a_session_meets_the_repository_rules_in_force_at_each_upload() {
    let h = start(Vec::new()).await;
    let (status, _) = put(&h, repo(), json!([release_rule()])).await;
    assert_eq!(status, 200);
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
        ref_mismatch(),
    );

    let (status, _) = put(&h, repo(), json!([main_rule()])).await;
    assert_eq!(status, 200);
    let resp = h
        .http
        .post(format!("{}/v1/sessions", h.url))
        .bearer_auth(h.token())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let session: Value = resp.json().await.unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    let (status, record) = h.upload(Some(&bearer(&token)), "a", "1").await;
    assert_eq!(status, 201, "{record}");

    let (status, _) = put(&h, repo(), json!([release_rule()])).await;
    assert_eq!(status, 200);
    let (status, body) = h.upload(Some(&bearer(&token)), "b", "2").await;
    assert_refused(
        "session upload after a change",
        status,
        &body,
        "release tags",
        ref_mismatch(),
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_stored_rules_that_cannot_be_used_refuse_every_run() {
    let h = start(Vec::new()).await;
    // Stored beneath the API, as an older or newer release might have left them: an empty
    // list is outside this release's bounds.
    h.service
        .store()
        .put_repository_rules(
            RepositoryId(repo()),
            &[TrustRule {
                name: "broken".into(),
                refs: Some(Vec::new()),
                ..TrustRule::default()
            }],
            UnixTime(1_700_000_000),
        )
        .await
        .unwrap();
    let (status, body) = upload(&h).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "policy_denied", "{body}");
    let mismatches = body["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1, "{body}");
    assert_eq!(mismatches[0]["field"], "repository_rules", "{body}");
    assert!(
        mismatches[0]["actual"]
            .as_str()
            .unwrap()
            .contains("empty list"),
        "{body}"
    );
    h.assert_nothing_stored("broken rules").await;

    // Setting them again through the API repairs the layer.
    let (status, _) = put(&h, repo(), json!([main_rule()])).await;
    assert_eq!(status, 200);
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

async fn explain(h: &Harness) -> Value {
    let (status, body) = call(
        h,
        reqwest::Method::POST,
        "/v1/policy/explain",
        Some(API_KEY),
        Some(&json!({"token": h.token()})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {body}"))
}

#[tokio::test]
async fn explain_shows_the_repository_layer() {
    let h = start(Vec::new()).await;
    let body = explain(&h).await;
    assert_eq!(check(&body, "repository_rules")["ok"], true, "{body}");
    assert_eq!(body["rules"], json!([]), "{body}");

    let (status, _) = put(&h, repo(), json!([release_rule(), main_rule()])).await;
    assert_eq!(status, 200);
    let body = explain(&h).await;
    assert_eq!(body["allowed"], true, "{body}");
    let repository_check = check(&body, "repository_rules");
    assert_eq!(repository_check["ok"], true, "{body}");
    assert!(
        repository_check["detail"]
            .as_str()
            .unwrap()
            .contains("main pushes"),
        "{body}"
    );
    assert_eq!(
        body["rules"],
        json!([
            {"layer": "repository", "name": "release tags", "matched": false,
             "mismatches": ref_mismatch()},
            {"layer": "repository", "name": "main pushes", "matched": true, "mismatches": []},
        ]),
        "{body}"
    );

    let (status, _) = put(&h, repo(), json!([release_rule()])).await;
    assert_eq!(status, 200);
    let body = explain(&h).await;
    assert_eq!(body["allowed"], false, "{body}");
    let repository_check = check(&body, "repository_rules");
    assert_eq!(repository_check["ok"], false, "{body}");
    assert!(
        repository_check["detail"]
            .as_str()
            .unwrap()
            .contains("release tags"),
        "{body}"
    );

    // Explaining stored nothing and used no jti: the rules unchanged, an upload refused
    // for the same reason.
    let (status, body) = upload(&h).await;
    assert_refused(
        "after explain",
        status,
        &body,
        "release tags",
        ref_mismatch(),
    );
    h.stop().await;
}

/// A pending upload of the default run, settled by a signed `workflow_run` webhook, with
/// these repository rules set first; returns its final status record.
async fn webhook_mode_outcome(rules: Value) -> Value {
    let gh = FakeGithub::start().await.unwrap();
    let h = Harness::start_against(
        gh,
        Options {
            webhook_secrets: vec![Secret::new(SECRET.into())],
            webhook_mode: Some(WebhookModeConfig::default()),
            ..Default::default()
        },
    )
    .await;
    let (status, _) = put(&h, repo(), rules).await;
    assert_eq!(status, 200);
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
async fn rule_webhook_mode_settling_applies_the_repository_layer() {
    let s = webhook_mode_outcome(json!([{"name": "pushes", "events": ["push"]}])).await;
    assert_eq!(s["status"], "verified", "{s}");

    let s = webhook_mode_outcome(json!([{"name": "main only", "refs": ["refs/heads/main"]}])).await;
    assert_eq!(s["status"], "rejected", "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(
        reason.contains("main only") && reason.contains("repository"),
        "{reason}"
    );
}
