//! The upload client retries with a fresh token and a fresh stream, and stops on refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runproof_client::{Auth, ClientError, TokenSource, UploadOptions, upload_all};
use runproof_testkit::FakeGithub;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Seen {
    attempts: Vec<(String, String, Vec<u8>)>,
}

struct Flaky {
    seen: Mutex<Seen>,
    /// Status of each attempt, in order; after the list, 201.
    script: Vec<u16>,
}

async fn handler(State(s): State<Arc<Flaky>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers["authorization"].to_str().unwrap().to_owned();
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    let n = {
        let mut seen = s.seen.lock().unwrap();
        seen.attempts.push((auth, key, body.to_vec()));
        seen.attempts.len()
    };
    match s.script.get(n - 1) {
        Some(&status) => (
            StatusCode::from_u16(status).unwrap(),
            [("retry-after", "0"), ("content-type", "application/problem+json")],
            json!({"code": if status == 401 { "token_expired" } else { "storage_unavailable" }, "detail": "scripted"}).to_string(),
        )
            .into_response(),
        None => (
            StatusCode::CREATED,
            axum::Json(json!({
                "id": "01900000-0000-7000-8000-000000000001",
                "status": "verified",
                "size": body.len(),
                "sha256": hex::encode(Sha256::digest(&body)),
                "name": "f.bin",
            })),
        )
            .into_response(),
    }
}

async fn start(script: Vec<u16>) -> (String, Arc<Flaky>) {
    let state = Arc::new(Flaky {
        seen: Mutex::default(),
        script,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let audience = format!("{url}/audience");
    let app = axum::Router::new()
        .route("/v1/uploads", post(handler))
        .route(
            "/.well-known/runproof",
            get(move || async move { axum::Json(json!({ "audience": audience })) }),
        )
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

fn options(url: &str, file: std::path::PathBuf) -> UploadOptions {
    UploadOptions {
        url: url.to_owned(),
        audience: None,
        base: file.parent().map(std::path::Path::to_path_buf),
        files: vec![file],
        attempts: 4,
        timeout: Duration::from_secs(10),
        progress: false,
    }
}

#[tokio::test]
async fn retries_5xx_and_429_with_a_fresh_token_and_a_fresh_stream() {
    let gh = FakeGithub::start().await.unwrap();
    let (url, flaky) = start(vec![503, 429]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let tokens = TokenSource::Actions {
        request_url: gh.token_request_url(),
        request_token: gh.token_request_token(),
    };
    let done = tokio::time::timeout(
        Duration::from_secs(60),
        upload_all(&options(&url, file), &Auth::Oidc(tokens)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(done.len(), 1);
    let seen = flaky.seen.lock().unwrap();
    assert_eq!(seen.attempts.len(), 3);
    let tokens: std::collections::HashSet<_> = seen.attempts.iter().map(|a| a.0.clone()).collect();
    assert_eq!(tokens.len(), 3, "a fresh token for every attempt");
    let keys: std::collections::HashSet<_> = seen.attempts.iter().map(|a| a.1.clone()).collect();
    assert_eq!(keys.len(), 1, "one idempotency key across retries");
    for (_, _, body) in &seen.attempts {
        assert_eq!(body, &content, "a complete fresh stream for every attempt");
    }
    // The token was requested for the audience the server announced.
    let (auth, _, _) = &seen.attempts[0];
    let claims = auth
        .trim_start_matches("Bearer ")
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], format!("{url}/audience"));
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_names_its_code() {
    let gh = FakeGithub::start().await.unwrap();
    let (url, flaky) = start(vec![401]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, b"x").unwrap();
    let tokens = TokenSource::Actions {
        request_url: gh.token_request_url(),
        request_token: gh.token_request_token(),
    };
    let err = upload_all(&options(&url, file), &Auth::Oidc(tokens))
        .await
        .unwrap_err();
    let ClientError::Refused(refused) = &err else {
        panic!("a Refused error: {err:?}");
    };
    assert_eq!(
        (refused.status, refused.code.as_str()),
        (401, "token_expired")
    );
    assert_eq!(flaky.seen.lock().unwrap().attempts.len(), 1);
}

#[tokio::test]
async fn gives_up_after_the_last_attempt() {
    let gh = FakeGithub::start().await.unwrap();
    let (url, flaky) = start(vec![500; 10]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.bin");
    std::fs::write(&file, b"x").unwrap();
    let tokens = TokenSource::Actions {
        request_url: gh.token_request_url(),
        request_token: gh.token_request_token(),
    };
    let mut opts = options(&url, file);
    opts.attempts = 2;
    let err = upload_all(&opts, &Auth::Oidc(tokens)).await.unwrap_err();
    assert!(format!("{err:#}").contains("giving up"), "{err:#}");
    assert_eq!(flaky.seen.lock().unwrap().attempts.len(), 2);
}
