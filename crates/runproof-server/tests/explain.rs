//! `POST /v1/policy/explain` through a real server: every check of an upload with its
//! outcome, every App rule with its mismatches, at a chosen time, and no side effect: the
//! token explained still uploads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{API_KEY, AUDIENCE, Harness, Options, bearer};
use runproof_core::rules::TrustRule;
use serde_json::{Value, json};

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

fn main_rule() -> TrustRule {
    TrustRule {
        name: "main pushes".into(),
        refs: strings(&["refs/heads/main"]),
        events: strings(&["push"]),
        ..TrustRule::default()
    }
}

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

async fn explain(h: &Harness, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = h
        .http
        .post(format!("{}/v1/policy/explain", h.url))
        .json(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The check named `name`.
fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {body}"))
}

/// The names of the checks that did not pass.
fn failed(body: &Value) -> Vec<String> {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] != true)
        .map(|c| c["check"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_allowed_token_shows_its_identity_every_check_and_the_matching_rule() {
    let h = start(vec![release_rule(), main_rule()]).await;
    let (status, body) = explain(&h, Some(API_KEY), &json!({"token": h.token()})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed"], true, "{body}");
    assert_eq!(failed(&body), Vec::<String>::new(), "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(names, runproof_service::explain::CHECKS, "{body}");
    let run = h.gh.run();
    assert_eq!(body["identity"]["repository_id"], json!(run.repository_id));
    assert!(
        check(&body, "app_rules")["detail"]
            .as_str()
            .unwrap()
            .contains("main pushes"),
        "{body}"
    );
    assert!(
        check(&body, "repository_rules")["detail"]
            .as_str()
            .unwrap()
            .contains("no repository rules"),
        "{body}"
    );
    assert_eq!(
        body["rules"],
        json!([
            {"layer": "app", "name": "release tags", "matched": false, "mismatches": [
                {"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]},
            {"layer": "app", "name": "main pushes", "matched": true, "mismatches": []},
        ]),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_a_refusing_app_rule_shows_its_mismatches() {
    let h = start(vec![release_rule()]).await;
    let (status, body) = explain(&h, Some(API_KEY), &json!({"token": h.token()})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed"], false, "{body}");
    assert_eq!(failed(&body), vec!["app_rules"], "{body}");
    assert!(body["identity"].is_object(), "the token verifies: {body}");
    assert!(
        check(&body, "app_rules")["detail"]
            .as_str()
            .unwrap()
            .contains("release tags"),
        "{body}"
    );
    assert_eq!(
        body["rules"][0]["mismatches"],
        json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]),
        "{body}"
    );
    // The upload meets the same refusal.
    let (status, refused) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["mismatches"], body["rules"][0]["mismatches"]);
    h.stop().await;
}

#[tokio::test]
async fn rule_times_are_checked_at_the_time_asked() {
    let h = start(Vec::new()).await;
    let mut claims = h.claims();
    let iat = claims["iat"].as_i64().unwrap() - 3600;
    claims.insert("iat".into(), json!(iat));
    claims.insert("nbf".into(), json!(iat - 5));
    claims.insert("exp".into(), json!(iat + 300));
    let expired = h.gh.mint(&claims).unwrap();

    let (status, body) = explain(&h, Some(API_KEY), &json!({"token": expired})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed"], false, "now: {body}");
    assert!(body["identity"].is_null(), "{body}");
    assert_eq!(check(&body, "times")["ok"], false, "{body}");
    assert!(
        check(&body, "times")["detail"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    assert_eq!(check(&body, "signature")["ok"], true, "{body}");
    assert!(
        check(&body, "events")["detail"]
            .as_str()
            .unwrap()
            .starts_with("not checked"),
        "{body}"
    );

    let (status, body) = explain(
        &h,
        Some(API_KEY),
        &json!({"token": expired, "at": iat + 10}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed"], true, "at a time it was valid: {body}");

    let fresh = h.token();
    let later = h.claims()["exp"].as_i64().unwrap() + 3600;
    let (status, body) = explain(&h, Some(API_KEY), &json!({"token": fresh, "at": later})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed"], false, "an hour after it expires: {body}");
    assert_eq!(failed(&body)[0], "times", "{body}");
    h.stop().await;
}

#[tokio::test]
async fn rule_a_wrong_audience_names_the_failing_check() {
    let h = start(vec![main_rule()]).await;
    let token = h.gh.token("https://elsewhere.test").unwrap();
    let (status, body) = explain(&h, Some(API_KEY), &json!({"token": token})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed"], false, "{body}");
    assert!(body["identity"].is_null(), "{body}");
    assert_eq!(body["rules"], json!([]), "{body}");
    assert_eq!(check(&body, "audience")["ok"], false, "{body}");
    assert_eq!(check(&body, "signature")["ok"], true, "{body}");
    assert_eq!(check(&body, "issuer")["ok"], true, "{body}");
    assert_eq!(failed(&body)[0], "audience", "{body}");
    h.stop().await;
}

#[tokio::test]
async fn rule_a_malformed_token_is_an_answer_not_an_error() {
    let h = start(Vec::new()).await;
    let (status, body) = explain(&h, Some(API_KEY), &json!({"token": "not.a.jwt"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed"], false, "{body}");
    assert_eq!(failed(&body).len(), runproof_service::explain::CHECKS.len());
    assert_eq!(check(&body, "token")["ok"], false, "{body}");
    h.stop().await;
}

#[tokio::test]
async fn rule_explain_takes_the_api_key() {
    let h = start(Vec::new()).await;
    let body = json!({"token": h.token()});
    let (status, problem) = explain(&h, None, &body).await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(problem["code"], "missing_credentials");
    let (status, problem) = explain(&h, Some("wrong-key"), &body).await;
    assert_eq!(status, 401, "{problem}");
    assert_eq!(problem["code"], "invalid_api_key");
    // The job's own token is not an API key.
    let (status, problem) = explain(&h, Some(&h.token()), &body).await;
    assert_eq!(status, 401, "{problem}");
    h.stop().await;
}

#[tokio::test]
async fn rule_the_body_is_checked() {
    let h = start(Vec::new()).await;
    let (status, problem) = explain(
        &h,
        Some(API_KEY),
        &json!({"token": h.token(), "audience": AUDIENCE}),
    )
    .await;
    assert_eq!(status, 400, "unknown field: {problem}");
    assert_eq!(problem["code"], "invalid_request");
    let (status, problem) = explain(&h, Some(API_KEY), &json!({"at": 1})).await;
    assert_eq!(status, 400, "no token: {problem}");
    assert_eq!(problem["code"], "invalid_request");
    let (status, problem) =
        explain(&h, Some(API_KEY), &json!({"token": "x".repeat(70 * 1024)})).await;
    assert_eq!(status, 413, "too large: {problem}");
    h.stop().await;
}

#[tokio::test]
async fn explaining_leaves_the_jti_unused() {
    let h = start(vec![main_rule()]).await;
    let token = h.token();
    for _ in 0..2 {
        let (status, body) = explain(&h, Some(API_KEY), &json!({"token": token})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["allowed"], true, "{body}");
    }
    h.assert_nothing_stored("explaining").await;
    let (status, record) = h.upload(Some(&bearer(&token)), "a", "1").await;
    assert_eq!(status, 201, "the upload after explain: {record}");

    // Once used, explain says so.
    let (status, body) = explain(&h, Some(API_KEY), &json!({"token": token})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["allowed"], false, "{body}");
    assert_eq!(failed(&body), vec!["replay"], "{body}");
    h.stop().await;
}
