//! The event log through a real server: accepted and refused uploads and sessions are
//! recorded with their code, rule, mismatches and (once a token verified) identity;
//! secrets never are; `GET /v1/events` filters, pages and needs the API key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{API_KEY, Harness, Options, bearer};
use runproof_core::rules::TrustRule;
use runproof_testkit::TestKey;
use serde_json::{Value, json};

/// A rule the default run does not match: it wants a release tag.
fn release_rule() -> TrustRule {
    TrustRule {
        name: "release tags".into(),
        refs: Some(vec!["refs/tags/v*".into()]),
        ..TrustRule::default()
    }
}

/// `GET path` with the API key; the status and the JSON body.
async fn get(h: &Harness, path: &str) -> (u16, Value) {
    let resp = h.get(path, Some(API_KEY)).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits (bounded) until the log holds at least `n` events, and returns them all.
async fn events(h: &Harness, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let (status, body) = get(h, "/v1/events?limit=1000").await;
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().unwrap().clone();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} events were recorded");
}

/// A token signed by a key the issuer does not publish under its kid.
fn forged_token(h: &Harness) -> String {
    let forged = TestKey::generate(h.gh.current_key().kid()).unwrap();
    forged.sign_claims(&Value::Object(h.claims())).unwrap()
}

#[tokio::test]
async fn rule_refused_uploads_are_recorded_with_their_code_rule_mismatches_and_identity() {
    let h = Harness::start_with(Options {
        trust_rules: vec![release_rule()],
        ..Default::default()
    })
    .await;
    let claims = h.claims();
    let token = h.token();
    let (status, body) = h.upload(Some(&bearer(&token)), "a", "1").await;
    assert_eq!(status, 403, "{body}");
    let forged = forged_token(&h);
    let (status, body) = h.upload(Some(&bearer(&forged)), "b", "1").await;
    assert_eq!(status, 401, "{body}");

    let all = events(&h, 2).await;
    let (newest, policy) = (&all[0], &all[1]);
    assert_eq!(policy["kind"], "upload");
    assert_eq!(policy["route"], "POST /v1/uploads");
    assert_eq!(policy["mode"], "oidc");
    assert_eq!(policy["outcome"], "refused");
    assert_eq!(policy["code"], "policy_denied");
    assert_eq!(policy["rule"], "release tags");
    assert_eq!(
        policy["mismatches"],
        json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}])
    );
    // The token verified: the run it names is recorded.
    assert_eq!(
        policy["repository_id"].as_u64().map(|id| id.to_string()),
        claims["repository_id"].as_str().map(str::to_owned)
    );
    assert_eq!(
        policy["run_id"].as_u64().map(|id| id.to_string()),
        claims["run_id"].as_str().map(str::to_owned)
    );
    assert_eq!(policy["workflow"], claims["workflow_ref"]);
    assert_eq!(policy["source"], "127.0.0.1");
    assert!(policy["time"].as_str().unwrap().ends_with('Z'), "{policy}");

    // A signature that does not verify: a code, and nothing of the claims.
    assert_eq!(newest["outcome"], "refused");
    assert_eq!(newest["code"], "bad_signature");
    assert_eq!(newest["repository_id"], Value::Null);
    assert_eq!(newest["run_id"], Value::Null);
    assert_eq!(newest["workflow"], Value::Null);
    assert_eq!(newest["rule"], Value::Null);
    assert_eq!(newest["mismatches"], Value::Null);
    h.stop().await;
}

#[tokio::test]
async fn rule_events_never_hold_a_secret() {
    let h = Harness::start().await;
    let token = h.token();
    let (status, _) = h.upload(Some(&bearer(&token)), "a", "1").await;
    assert_eq!(status, 201);
    let (status, _) = h.upload(Some(&bearer(&token)), "b", "1").await;
    assert_eq!(status, 401, "a replayed token");
    let session_token = h.token();
    let resp = h
        .http
        .post(format!("{}/v1/sessions", h.url))
        .header("authorization", bearer(&session_token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let session: Value = resp.json().await.unwrap();
    let rpst = session["token"].as_str().unwrap().to_owned();
    let (status, body) = h.upload(Some(&bearer(&rpst)), "c", "1").await;
    assert_eq!(status, 201, "{body}");
    let forged = forged_token(&h);
    h.upload(Some(&bearer(&forged)), "d", "1").await;
    h.upload(Some(&format!("token {}", "ghs_secretsecret")), "e", "1")
        .await;

    let all = events(&h, 6).await;
    let text = serde_json::to_string(&all).unwrap();
    for secret in [
        token.as_str(),
        session_token.as_str(),
        forged.as_str(),
        rpst.as_str(),
        "ghs_secretsecret",
        API_KEY,
    ] {
        // Any of a JWT's parts, or the whole secret.
        for part in secret.split('.') {
            assert!(
                !text.contains(part),
                "a secret appears in the events: {text}"
            );
        }
    }
    let sessions: Vec<_> = all.iter().filter(|e| e["kind"] == "session").collect();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["outcome"], "accepted");
    let by_session = all.iter().find(|e| e["mode"] == "session").unwrap();
    assert_eq!(by_session["outcome"], "accepted");
    assert!(
        by_session["detail"]
            .as_str()
            .unwrap()
            .starts_with("verified ")
    );
    let accepted = all
        .iter()
        .filter(|e| e["kind"] == "upload" && e["outcome"] == "accepted")
        .count();
    assert_eq!(accepted, 2);
    h.stop().await;
}

#[tokio::test]
async fn events_filter_and_page() {
    let h = Harness::start().await;
    for name in ["a", "b", "c"] {
        let (status, _) = h.upload(Some(&bearer(&h.token())), name, "1").await;
        assert_eq!(status, 201);
    }
    let (status, _) = h.upload(None, "d", "1").await;
    assert_eq!(status, 401);
    let all = events(&h, 4).await;
    assert_eq!(all.len(), 4);
    let repo = all[1]["repository_id"].as_u64().unwrap();

    let (_, refused) = get(&h, "/v1/events?outcome=refused").await;
    let refused = refused["events"].as_array().unwrap().clone();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["code"], "missing_credentials");
    let (_, coded) = get(&h, "/v1/events?code=missing_credentials&kind=upload").await;
    assert_eq!(coded["events"].as_array().unwrap().len(), 1);
    let (_, of_repo) = get(&h, &format!("/v1/events?repository_id={repo}")).await;
    assert_eq!(of_repo["events"].as_array().unwrap().len(), 3);
    let (_, sessions) = get(&h, "/v1/events?kind=session").await;
    assert_eq!(sessions["events"], json!([]));
    let (_, later) = get(&h, "/v1/events?since=2999-01-01T00:00:00Z").await;
    assert_eq!(later["events"], json!([]));

    let mut seen = Vec::new();
    let mut path = String::from("/v1/events?limit=3");
    for _ in 0..10 {
        let (status, page) = get(&h, &path).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/events?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let ids: Vec<Value> = all.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(seen, ids, "pages list every event once, newest first");

    for bad in [
        "kind=everything",
        "outcome=maybe",
        "repository_id=x",
        "since=soon",
        "cursor=zzz",
        "limit=0",
    ] {
        let (status, body) = get(&h, &format!("/v1/events?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_request", "{bad}");
    }
    h.stop().await;
}

#[tokio::test]
async fn rule_events_need_the_api_key() {
    let h = Harness::start().await;
    let resp = h.get("/v1/events", None).await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = h.get("/v1/events", Some("not-the-key")).await;
    assert_eq!(resp.status().as_u16(), 401);
    h.stop().await;
}
