//! Upload sessions (the token exchange) and signed delivery to the App, through a real
//! server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::{API_KEY, Harness, Options, bearer};
use runproof_core::Secret;
use runproof_service::{PushConfig, SessionConfig};
use serde_json::Value;

const DELIVERY_SECRET: &str = "delivery-secret-0123456789";

async fn open_session(h: &Harness, oidc: &str) -> (u16, Value) {
    let resp = h
        .http
        .post(format!("{}/v1/sessions", h.url))
        .bearer_auth(oidc)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_session_carries_many_uploads_for_one_identity() {
    let h = Harness::start().await;
    let oidc = h.token();
    let (status, session) = open_session(&h, &oidc).await;
    assert_eq!(status, 201, "{session}");
    let token = session["token"].as_str().unwrap();
    assert!(token.starts_with("rpst_") && token.len() == 48, "{token}");
    assert!(session["expires_at"].is_string());
    assert_eq!(
        session["identity"]["repository_id"],
        h.gh.run().repository_id
    );
    assert!(session["limits"]["max_uploads"].as_u64().unwrap() > 0);

    for i in 0..3 {
        let (status, record) = h
            .upload(Some(&bearer(token)), &format!("f{i}"), format!("{i}"))
            .await;
        assert_eq!(status, 201, "{record}");
        assert_eq!(record["mode"], "session");
        assert_eq!(record["identity"], session["identity"]);
    }
    let (status, body) = open_session(&h, &oidc).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_replayed")),
        "rule: one OIDC token opens one session"
    );
    let (status, body) = h.upload(Some(&bearer(&oidc)), "x", "x").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_replayed")),
        "the exchanged token is used up"
    );
    let (status, body) = open_session(&h, token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("malformed_token")),
        "a session cannot open a session"
    );
    h.stop().await;
}

#[tokio::test]
async fn session_limits_expiry_and_revocation() {
    let h = Harness::start_with(Options {
        sessions: SessionConfig {
            ttl: Duration::from_secs(2),
            max_uploads: 3,
            max_bytes: 10,
        },
        ..Default::default()
    })
    .await;
    let (_, s) = open_session(&h, &h.token()).await;
    let token = s["token"].as_str().unwrap().to_owned();
    let (status, body) = h.upload(Some(&bearer(&token)), "big", "x".repeat(11)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "rule: session byte budget"
    );
    let (status, _) = h.upload(Some(&bearer(&token)), "a", "12345678").await;
    assert_eq!(status, 201);
    let (status, body) = h.upload(Some(&bearer(&token)), "b", "123").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "rule: session byte budget: 2 bytes left, 3 asked: {body}"
    );
    // A body of unknown length may take what is left, and no more.
    let (status, body) = h
        .upload(Some(&bearer(&token)), "c", chunked(vec![b"12".to_vec()]))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = h.upload(Some(&bearer(&token)), "d", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("policy_denied")),
        "rule: session byte budget spent: {body}"
    );
    let (status, body) = h.upload(Some(&bearer(&token)), "e", "").await;
    assert_eq!(status, 201, "an empty body needs no byte: {body}");
    let (status, body) = h.upload(Some(&bearer(&token)), "f", "").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("policy_denied")),
        "rule: session upload count: {body}"
    );
    assert_eq!(stored_bytes(&h).await, 10, "rule: session byte budget");

    let (_, s) = open_session(&h, &h.token()).await;
    let short = s["token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (status, body) = h.upload(Some(&bearer(&short)), "c", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_expired")),
        "rule: session expiry"
    );

    let (_, s) = open_session(&h, &h.token()).await;
    let live = s["token"].as_str().unwrap().to_owned();
    let revoke = |t: String| {
        let h = &h;
        async move {
            h.http
                .delete(format!("{}/v1/sessions/current", h.url))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(revoke(live.clone()).await, 204);
    let (status, body) = h.upload(Some(&bearer(&live)), "d", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_session")),
        "rule: revoked session"
    );
    assert_eq!(revoke(live.clone()).await, 401);
    let unknown = format!("rpst_{}", "A".repeat(43));
    let (status, body) = h.upload(Some(&bearer(&unknown)), "e", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_session")),
        "rule: unknown session"
    );
    let (status, body) = h.upload(Some(&bearer("rpst_short")), "e", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_session"))
    );
    assert_eq!(h.record_count().await, 3);
    h.stop().await;
}

/// A body of unknown length (chunked), sent as these chunks.
fn chunked(chunks: Vec<Vec<u8>>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = chunks.into_iter().map(Ok).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// The bytes of every stored upload, summed.
async fn stored_bytes(h: &Harness) -> u64 {
    h.service
        .store()
        .list_uploads(&runproof_store::ListFilter::default(), 1000, None)
        .await
        .unwrap()
        .0
        .iter()
        .map(|r| r.size)
        .sum()
}

/// The session's counts as stored: uploads and bytes taken.
async fn session_used(h: &Harness, token: &str) -> (u64, u64) {
    let hash = runproof_core::session::token_hash(token).unwrap();
    let r = h.service.store().get_session(&hash).await.unwrap().unwrap();
    (r.uploads_used, r.bytes_used)
}

/// 20 parallel uploads of 900 bytes against a session of 1 000: the budget is reserved
/// before each body is read, atomically, so at most 1 000 bytes are ever stored, whether
/// the bodies declare their length or not; what a body does not use goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_session_byte_budget_holds_under_parallel_uploads() {
    let h = Harness::start_with(Options {
        sessions: SessionConfig {
            max_uploads: 1000,
            max_bytes: 1000,
            ..SessionConfig::default()
        },
        ..Default::default()
    })
    .await;
    for declared in [true, false] {
        let (_, s) = open_session(&h, &h.token()).await;
        let token = s["token"].as_str().unwrap().to_owned();
        let before = stored_bytes(&h).await;
        let uploads: Vec<_> = (0..20)
            .map(|i| {
                let (http, url, token) = (h.http.clone(), h.url.clone(), token.clone());
                tokio::spawn(async move {
                    let body = if declared {
                        reqwest::Body::from(vec![b'p'; 900])
                    } else {
                        chunked(vec![vec![b'p'; 450], vec![b'p'; 450]])
                    };
                    http.post(format!("{url}/v1/uploads?name=p{i}"))
                        .bearer_auth(token)
                        .body(body)
                        .send()
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for u in uploads {
            statuses.push(u.await.unwrap());
        }
        let stored = stored_bytes(&h).await - before;
        assert!(
            stored <= 1000,
            "rule: session byte budget (declared length: {declared}): {stored} bytes stored, \
             statuses {statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| [201, 403, 413].contains(s)),
            "{statuses:?}"
        );
        assert_eq!(
            session_used(&h, &token).await,
            (1, 900),
            "refusals take nothing; the unused reservation went back"
        );
        // The 100 bytes left are there to use.
        let (status, body) = h
            .upload(Some(&bearer(&token)), "rest", vec![b'r'; 100])
            .await;
        assert_eq!(status, 201, "{body}");
    }
    h.stop().await;
}

/// A body that fails after its bytes were reserved (over the cap while streaming, or
/// not matching its digest) gives the upload and its bytes back before the answer.
#[tokio::test]
async fn rule_a_failed_session_upload_gives_its_reservation_back() {
    let h = Harness::start_with(Options {
        max_upload_bytes: 1000,
        sessions: SessionConfig {
            max_uploads: 1,
            max_bytes: 1000,
            ..SessionConfig::default()
        },
        ..Default::default()
    })
    .await;
    let (_, s) = open_session(&h, &h.token()).await;
    let token = s["token"].as_str().unwrap().to_owned();
    let over = chunked(vec![vec![b'o'; 600], vec![b'o'; 600]]);
    let (status, body) = h.upload(Some(&bearer(&token)), "over", over).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    assert_eq!(session_used(&h, &token).await, (0, 0), "given back");
    let zero = runproof_core::digest::format_content_digest(&[0u8; 32]);
    let (status, body) = h
        .upload_with(
            Some(&bearer(&token)),
            "name=bad",
            vec![b'd'; 1000],
            &[("content-digest", &zero)],
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("digest_mismatch"))
    );
    assert_eq!(session_used(&h, &token).await, (0, 0), "given back");
    let (status, body) = h
        .upload(Some(&bearer(&token)), "whole", vec![b'w'; 1000])
        .await;
    assert_eq!(status, 201, "the whole budget is still there: {body}");
    assert_eq!(session_used(&h, &token).await, (1, 1000));
    assert_eq!(
        h.blob_files(),
        (0, 0),
        "the one body in the database, no partial body"
    );
    h.stop().await;
}

/// An open session does not outlive the App's installation: every use checks the
/// binding again (webhook-fed state first, then the cached lookup), so a session opened
/// before the App was suspended or uninstalled is refused after.
#[tokio::test]
async fn rule_session_use_rechecks_the_installation() {
    const APP_ID: u64 = 4545;
    const INSTALLATION: u64 = 99;
    const SECRET: &str = "webhook-secret-0123456789";
    let gh = runproof_testkit::FakeGithub::start().await.unwrap();
    let creds = gh.register_app(APP_ID).unwrap();
    let run = runproof_testkit::RunSpec::default();
    let repo = (run.repository_id, run.repository.as_str());
    gh.add_installation(
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[repo],
    );
    let h = Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(creds.private_key_pem))),
            webhook_secrets: vec![Secret::new(SECRET.into())],
            ..Default::default()
        },
    )
    .await;
    let sender = runproof_testkit::WebhookSender::new(
        format!("{}/v1/github/webhooks", h.url),
        SECRET.as_bytes(),
    );
    let installation = |action: &str, repos: &[(u64, &str)]| {
        runproof_testkit::installation_payload(
            action,
            INSTALLATION,
            &run.repository_owner,
            run.repository_owner_id,
            repos,
        )
    };
    let send = |payload: Value| {
        let sender = &sender;
        async move {
            let (status, body, _) = sender.send("installation", &payload).await.unwrap();
            assert_eq!(status, 200, "{body}");
        }
    };
    send(installation("created", &[repo])).await;
    let (status, s) = open_session(&h, &h.token()).await;
    assert_eq!(status, 201, "{s}");
    let token = s["token"].as_str().unwrap().to_owned();
    let (status, body) = h.upload(Some(&bearer(&token)), "a", "1").await;
    assert_eq!(status, 201, "{body}");

    let mut suspend = installation("suspend", &[]);
    suspend["installation"]["suspended_at"] = serde_json::json!("2026-01-01T00:00:00Z");
    send(suspend).await;
    let (status, body) = h.upload(Some(&bearer(&token)), "b", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "rule: a suspended installation ends its sessions: {body}"
    );
    assert_eq!(
        session_used(&h, &token).await,
        (1, 1),
        "the refusal took nothing"
    );

    send(installation("unsuspend", &[])).await;
    let (status, body) = h.upload(Some(&bearer(&token)), "c", "1").await;
    assert_eq!(status, 201, "{body}");

    send(installation("deleted", &[repo])).await;
    let (status, body) = h.upload(Some(&bearer(&token)), "d", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "rule: an uninstalled App ends its sessions: {body}"
    );
    assert_eq!(h.record_count().await, 2);
    h.stop().await;
}

/// A receiver that records every delivery and answers as scripted.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<(HeaderMap, Bytes)>>,
    /// While true, answer 503.
    down: Mutex<bool>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.got.lock().unwrap().push((headers, body));
    if *r.down.lock().unwrap() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn start_receiver(port: Option<u16>) -> (String, Arc<Receiver>, tokio::task::JoinHandle<()>) {
    let r = Arc::new(Receiver::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
        .await
        .unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, r, task)
}

fn push_config(url: &str, max_attempts: u32) -> PushConfig {
    PushConfig {
        url: url.to_owned(),
        secrets: vec![Secret::new(DELIVERY_SECRET.into())],
        events: vec!["upload.verified".into()],
        max_attempts,
        timeout: Duration::from_secs(2),
        base_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(1),
        public_url: "https://runproof.test".into(),
    }
}

fn delivered_ids(r: &Receiver) -> std::collections::HashSet<String> {
    r.got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<Value>(body).unwrap()["upload"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn deliveries_survive_a_receiver_outage_and_verify_like_github_webhooks() {
    let (url, r, _task) = start_receiver(None).await;
    *r.down.lock().unwrap() = true;
    let h = Harness::start_with(Options {
        push: Some(push_config(&url, 20)),
        ..Default::default()
    })
    .await;
    let mut ids = std::collections::HashSet::new();
    for i in 0..3 {
        let (status, record) = h
            .upload(
                Some(&bearer(&h.token())),
                &format!("f{i}"),
                format!("body {i}"),
            )
            .await;
        assert_eq!(status, 201);
        ids.insert(record["id"].as_str().unwrap().to_owned());
    }
    wait_until("attempts while the receiver is down", || {
        r.got.lock().unwrap().len() >= 3
    })
    .await;
    *r.down.lock().unwrap() = false;
    wait_until("every delivery after the outage", || {
        let got = r.got.lock().unwrap();
        let ok: std::collections::HashSet<_> = got
            .iter()
            .map(|(_, b)| {
                serde_json::from_slice::<Value>(b).unwrap()["upload"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        ok == ids
    })
    .await;
    // The worker records each outcome just after the receiver answers.
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = h
            .get("/v1/deliveries?status=delivered", Some(API_KEY))
            .await
            .json()
            .await
            .unwrap();
        if listed["deliveries"].as_array().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        listed["deliveries"].as_array().unwrap().len(),
        3,
        "{listed}"
    );

    let secrets = [Secret::new(DELIVERY_SECRET.into())];
    for (headers, body) in r.got.lock().unwrap().iter() {
        let sig = headers["x-runproof-signature-256"].as_bytes();
        runproof_core::webhook::verify_signature(body, Some(sig), &secrets)
            .expect("signed as GitHub signs webhooks");
        assert_eq!(headers["x-runproof-event"], "upload.verified");
        assert!(uuid::Uuid::try_parse(headers["x-runproof-delivery"].to_str().unwrap()).is_ok());
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["event"], "upload.verified");
        assert_eq!(v["upload"]["status"], "verified");
        assert!(
            v["timestamp"].as_i64().unwrap() > 1_700_000_000,
            "a signed timestamp"
        );
        assert_eq!(
            v["content_url"],
            format!(
                "https://runproof.test/v1/uploads/{}/content",
                v["upload"]["id"].as_str().unwrap()
            )
        );
    }
    assert_eq!(delivered_ids(&r), ids, "none lost");
    h.stop().await;
}

#[tokio::test]
async fn a_receiver_that_always_fails_ends_failed_then_retry_through_the_api() {
    let (url, r, _task) = start_receiver(None).await;
    *r.down.lock().unwrap() = true;
    let h = Harness::start_with(Options {
        push: Some(push_config(&url, 2)),
        ..Default::default()
    })
    .await;
    let (status, _) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201);
    let mut failed = Value::Null;
    for _ in 0..100 {
        failed = h
            .get("/v1/deliveries?status=failed", Some(API_KEY))
            .await
            .json()
            .await
            .unwrap();
        if !failed["deliveries"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = &failed["deliveries"][0];
    assert_eq!(d["attempts"], 2, "a bounded number of attempts: {failed}");
    assert_eq!(d["last_error"], "HTTP 503 Service Unavailable", "{d}");
    assert_rfc3339(d);
    assert_eq!(r.got.lock().unwrap().len(), 2);

    *r.down.lock().unwrap() = false;
    let id = d["id"].as_str().unwrap();
    let resp = h
        .http
        .post(format!("{}/v1/deliveries/{id}/retry", h.url))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_rfc3339(&resp.json::<Value>().await.unwrap());
    wait_until("the retried delivery", || r.got.lock().unwrap().len() == 3).await;
    let mut delivered = Value::Null;
    for _ in 0..100 {
        delivered = h
            .get("/v1/deliveries?status=delivered", Some(API_KEY))
            .await
            .json()
            .await
            .unwrap();
        if !delivered["deliveries"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = &delivered["deliveries"][0];
    assert_eq!(d["id"], id, "{delivered}");
    assert_eq!(d["last_error"], Value::Null, "delivered on retry: {d}");
    let resp = h
        .http
        .post(format!(
            "{}/v1/deliveries/{}/retry",
            h.url,
            uuid::Uuid::new_v4()
        ))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = h
        .http
        .post(format!("{}/v1/deliveries/{id}/retry", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the API key is required");
    h.stop().await;
}

/// Times in a push record are RFC 3339, as in upload records.
fn assert_rfc3339(d: &Value) {
    for field in ["created_at", "next_attempt_at"] {
        let text = d[field].as_str().unwrap_or_else(|| panic!("{field}: {d}"));
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{field} {text}: {e}"));
    }
}

/// A push that cannot connect records why (the cause beneath reqwest's "error sending
/// request"), and never the URL's user information or query.
#[tokio::test]
async fn rule_a_failed_push_records_its_cause_without_url_secrets() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://app:s3cr3t-pass@127.0.0.1:{port}/hook?token=s3cr3t-query");
    let h = Harness::start_with(Options {
        push: Some(push_config(&url, 1)),
        ..Default::default()
    })
    .await;
    let (status, _) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201);
    let mut failed = Value::Null;
    for _ in 0..100 {
        failed = h
            .get("/v1/deliveries?status=failed", Some(API_KEY))
            .await
            .json()
            .await
            .unwrap();
        if !failed["deliveries"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = failed["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(
        error.to_lowercase().contains("connection refused"),
        "{error}"
    );
    assert!(!error.contains("s3cr3t"), "{error}");
    h.stop().await;
}

#[tokio::test]
async fn deliveries_pending_at_a_restart_are_made_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    // A receiver address with nothing listening yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let h = Harness::start_with(Options {
        push: Some(push_config(&url, 50)),
        dir: Some(tmp.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201);
    let id = record["id"].as_str().unwrap().to_owned();
    h.stop().await;

    let (_, r, _task) = start_receiver(Some(port)).await;
    let h = Harness::start_with(Options {
        push: Some(push_config(&url, 50)),
        dir: Some(tmp.path().to_path_buf()),
        ..Default::default()
    })
    .await;
    wait_until("the delivery after the restart", || {
        delivered_ids(&r).contains(&id)
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn signature_verifies_with_octokit_webhooks_methods() {
    let Some(modules) = std::env::var_os("RUNPROOF_TEST_OCTOKIT") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "RUNPROOF_TEST_OCTOKIT is not set, and with CI=true this check must run"
        );
        eprintln!(
            "SKIPPED: RUNPROOF_TEST_OCTOKIT is not set (.ci/run installs @octokit/webhooks-methods there)"
        );
        return;
    };
    let (url, r, _task) = start_receiver(None).await;
    let h = Harness::start_with(Options {
        push: Some(push_config(&url, 5)),
        ..Default::default()
    })
    .await;
    let (status, _) = h
        .upload(
            Some(&bearer(&h.token())),
            "a",
            "payload with ♥ and \u{1b}[0m",
        )
        .await;
    assert_eq!(status, 201);
    wait_until("a delivery", || !r.got.lock().unwrap().is_empty()).await;
    let (headers, body) = r.got.lock().unwrap()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, &body).unwrap();
    let module = std::path::PathBuf::from(modules)
        .join("node_modules/@octokit/webhooks-methods/dist-node/index.js");
    let module = if module.exists() {
        module
    } else {
        std::path::PathBuf::from(std::env::var_os("RUNPROOF_TEST_OCTOKIT").unwrap())
            .join("node_modules/@octokit/webhooks-methods/dist-src/index.js")
    };
    let script = format!(
        "import {{ verify }} from {module:?};\nimport {{ readFileSync }} from 'node:fs';\nconst body = readFileSync({body:?}, 'utf8');\nconst ok = await verify({secret:?}, body, process.argv[2]);\nconst bad = await verify('wrong-secret', body, process.argv[2]);\nconsole.log(JSON.stringify({{ ok, bad }}));\n",
        module = module.display().to_string(),
        body = body_file.display().to_string(),
        secret = DELIVERY_SECRET,
    );
    let script_file = dir.path().join("verify.mjs");
    std::fs::write(&script_file, script).unwrap();
    let sig = headers["x-runproof-signature-256"]
        .to_str()
        .unwrap()
        .to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(&script_file)
            .arg(sig)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result, serde_json::json!({"ok": true, "bad": false}));
    h.stop().await;
}
