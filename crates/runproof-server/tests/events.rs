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
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let (status, record) = h.upload(Some(&bearer(&h.token())), name, "1").await;
        assert_eq!(status, 201);
        ids.push(record["id"].as_str().unwrap().to_owned());
    }
    let first = &ids[0];
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
    let (_, of_upload) = get(&h, &format!("/v1/events?upload_id={first}")).await;
    let of_upload = of_upload["events"].as_array().unwrap().clone();
    assert_eq!(of_upload.len(), 1, "{of_upload:?}");
    assert_eq!(of_upload[0]["upload_id"], first.as_str());
    assert_eq!(of_upload[0]["id"], all[3]["id"]);
    // A refusal before anything was stored names no upload.
    assert_eq!(all[0]["upload_id"], Value::Null);
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
        "upload_id=x",
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

const SECRET: &str = "webhook-secret-0123456789";

/// The events of `kind`, once at least `n` are recorded (bounded wait).
async fn events_of(h: &Harness, kind: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let (status, body) = get(h, &format!("/v1/events?kind={kind}")).await;
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().unwrap().clone();
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} {kind} events were recorded");
}

#[tokio::test]
async fn rule_webhook_deliveries_and_rules_changes_are_recorded_without_the_secret() {
    let h = Harness::start_with(Options {
        webhook_secrets: vec![runproof_core::Secret::new(SECRET.into())],
        ..Default::default()
    })
    .await;
    let hook = format!("{}/v1/github/webhooks", h.url);
    let sender = runproof_testkit::WebhookSender::new(hook, SECRET.as_bytes());
    let body = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
    let signature = runproof_testkit::sign_webhook(SECRET.as_bytes(), body);
    let delivery = "0b7a4f3e-0000-4000-8000-000000000001";
    for _ in 0..2 {
        let (status, text) = sender
            .send_raw("ping", delivery, body, Some(&signature))
            .await
            .unwrap();
        assert_eq!(status, 200, "{text}");
    }
    let (status, _) = sender
        .send_raw("ping", "other", body, Some("sha256=00"))
        .await
        .unwrap();
    assert_eq!(status, 401);

    let hooks = events_of(&h, "webhook", 3).await;
    let outcomes: Vec<&str> = hooks
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["refused", "duplicate", "received"]);
    assert_eq!(hooks[0]["code"], "bad_signature");
    assert_eq!(hooks[2]["detail"], format!("ping {delivery}"));
    assert_eq!(hooks[2]["route"], "POST /v1/github/webhooks");
    let text = serde_json::to_string(&hooks).unwrap();
    assert!(
        !text.contains(SECRET) && !text.contains(&signature),
        "{text}"
    );

    let rules = format!("{}/v1/repositories/42/rules", h.url);
    let resp = h
        .http
        .put(&rules)
        .bearer_auth(API_KEY)
        .json(&json!({"rules": [{"name": "main", "refs": ["refs/heads/main"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = h
        .http
        .delete(&rules)
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let changes = events_of(&h, "rules", 2).await;
    assert_eq!(changes[0]["detail"], "deleted");
    assert_eq!(changes[1]["detail"], "set 1 rules");
    assert!(
        changes
            .iter()
            .all(|e| e["outcome"] == "changed" && e["repository_id"] == 42)
    );
    // Who changed them: the address and the route, as for every request.
    assert!(
        changes.iter().all(|e| e["source"] == "127.0.0.1"),
        "{changes:?}"
    );
    assert_eq!(
        changes[0]["route"],
        "DELETE /v1/repositories/{repository_id}/rules"
    );
    assert_eq!(
        changes[1]["route"],
        "PUT /v1/repositories/{repository_id}/rules"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_a_pending_upload_is_recorded_without_its_claims_and_settled_with_them() {
    let h = Harness::start_with(Options {
        webhook_secrets: vec![runproof_core::Secret::new(SECRET.into())],
        webhook_mode: Some(runproof_service::WebhookModeConfig::default()),
        ..Default::default()
    })
    .await;
    let run = runproof_testkit::RunSpec::default();
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
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let payload =
        runproof_testkit::workflow_run_payload("in_progress", &run, Some(91), "in_progress", None);
    let hook = format!("{}/v1/github/webhooks", h.url);
    let (status, body, _) = runproof_testkit::WebhookSender::new(hook, SECRET.as_bytes())
        .send("workflow_run", &payload)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");

    let uploads = events_of(&h, "upload", 1).await;
    assert_eq!(uploads[0]["mode"], "webhook");
    assert_eq!(uploads[0]["outcome"], "accepted");
    assert_eq!(uploads[0]["detail"], format!("pending {id}"));
    assert_eq!(uploads[0]["upload_id"], id.as_str());
    // Claimed, not verified: no identity.
    assert_eq!(uploads[0]["repository_id"], Value::Null);
    let settled = events_of(&h, "pending", 1).await;
    assert_eq!(settled[0]["outcome"], "settled");
    assert_eq!(settled[0]["repository_id"], run.repository_id);
    assert_eq!(settled[0]["run_id"], run.run_id);
    assert_eq!(settled[0]["upload_id"], id.as_str());
    assert!(
        settled[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("verified {id} via ")),
        "{}",
        settled[0]
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_push_attempts_are_recorded_failed_then_delivered_without_the_secret() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let seen = Arc::clone(&seen);
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let push_secret = "push-secret-0123456789abcdef";
    let h = Harness::start_with(Options {
        push: Some(runproof_service::PushConfig {
            url,
            secrets: vec![runproof_core::Secret::new(push_secret.into())],
            events: vec!["upload.verified".into()],
            max_attempts: 3,
            timeout: Duration::from_secs(2),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(1),
            public_url: "https://runproof.test".into(),
        }),
        ..Default::default()
    })
    .await;
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "{record}");
    let id = record["id"].as_str().unwrap();

    let pushes = events_of(&h, "push", 2).await;
    assert_eq!(pushes[1]["outcome"], "failed");
    let failed = pushes[1]["detail"].as_str().unwrap();
    assert!(failed.contains("attempt 1: HTTP 503"), "{failed}");
    assert_eq!(pushes[0]["outcome"], "delivered");
    for push in &pushes {
        let detail = push["detail"].as_str().unwrap();
        assert!(
            detail.contains(id) && detail.contains("upload.verified"),
            "{push}"
        );
        assert_eq!(push["upload_id"], id, "{push}");
    }
    let text = serde_json::to_string(&pushes).unwrap();
    assert!(!text.contains(push_secret), "{text}");
    h.stop().await;
    receiver.abort();
}

/// The side queue is bounded: events beyond it are dropped and counted, and neither the
/// recording nor the requests wait for it.
#[tokio::test]
async fn rule_a_full_event_queue_drops_and_counts_and_requests_still_succeed() {
    let h = Harness::start().await;
    let before = h.service.events_dropped();
    let filler = runproof_store::NewEvent::new(
        runproof_core::UnixTime(1),
        runproof_store::EventKind::Rules,
        runproof_store::EventOutcome::Changed,
    );
    // Without a yield in between, the writer cannot drain: the queue fills and the rest
    // is dropped at once.
    let beyond = runproof_service::events::EVENT_QUEUE_CAPACITY + 10;
    for _ in 0..beyond {
        h.service.record(filler.clone());
    }
    assert!(h.service.events_dropped() >= before + 10);
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

#[tokio::test]
async fn rule_a_request_the_server_could_not_decide_is_failed_not_refused() {
    let gh = runproof_testkit::FakeGithub::start().await.unwrap();
    gh.set_outage(true);
    let h = Harness::start_against(
        gh,
        Options {
            prefetch_keys: false,
            ..Default::default()
        },
    )
    .await;
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "x").await;
    assert_eq!(status, 503, "{body}");
    let all = events(&h, 1).await;
    let event = all
        .iter()
        .find(|e| e["kind"] == "upload")
        .unwrap_or_else(|| panic!("no upload event: {all:?}"));
    assert_eq!(event["outcome"], "failed", "{event}");
    assert_eq!(event["code"], "upstream_unavailable", "{event}");
    let (status, body) = get(&h, "/v1/events?outcome=refused").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"], json!([]), "{body}");
    h.stop().await;
}
