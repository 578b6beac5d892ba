//! Genuine flows through a real server: upload, read back, key rotation, issuer outage,
//! idempotency, operations endpoints, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{API_KEY, AUDIENCE, Harness, Options, bearer};
use runproof_core::{OwnerId, Policy};
use runproof_testkit::{FakeGithub, RunSpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn genuine_upload_is_stored_with_its_identity_and_read_back() {
    let h = Harness::start().await;
    let body = b"{\"coverage\": 93.1}".to_vec();
    let digest = runproof_core::digest::format_content_digest(&Sha256::digest(&body).into());
    let (status, record) = h
        .upload_with(
            Some(&bearer(&h.token())),
            "name=coverage.json",
            body.clone(),
            &[
                ("content-digest", &digest),
                ("content-type", "application/json"),
            ],
        )
        .await;
    assert_eq!(status, 201, "{record}");
    let run = h.gh.run();
    assert_eq!(record["status"], "verified");
    assert_eq!(record["mode"], "oidc");
    assert_eq!(record["name"], "coverage.json");
    assert_eq!(record["size"], body.len());
    assert_eq!(record["sha256"], hex::encode(Sha256::digest(&body)));
    assert_eq!(record["content_type"], "application/json");
    assert!(record["verified_at"].is_string());
    let identity = &record["identity"];
    assert_eq!(
        identity["repository_id"],
        json!(run.repository_id),
        "ids are integers"
    );
    assert_eq!(
        identity["repository_owner_id"],
        json!(run.repository_owner_id)
    );
    assert_eq!(identity["run_id"], json!(run.run_id));
    assert_eq!(identity["repository"], run.repository);
    assert_eq!(identity["sha"], run.sha);
    assert_eq!(identity["issuer"], h.gh.issuer());
    assert_eq!(identity["event_name"], "push");

    let id = record["id"].as_str().unwrap();
    let got: Value = h
        .get(&format!("/v1/uploads/{id}"), Some(API_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, record);

    let resp = h
        .get(&format!("/v1/uploads/{id}/content"), Some(API_KEY))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["content-digest"], digest.as_str());
    assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice());

    let resp = h
        .http
        .get(format!("{}/v1/uploads/{id}/content", h.url))
        .bearer_auth(API_KEY)
        .header("range", "bytes=2-9")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 2-9/{}", body.len())
    );
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &body[2..=9]);
    h.stop().await;
}

#[tokio::test]
async fn read_api_requires_a_valid_api_key() {
    let h = Harness::start().await;
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a.txt", "a").await;
    assert_eq!(status, 201);
    let id = record["id"].as_str().unwrap();
    for path in [
        "/v1/uploads".to_owned(),
        format!("/v1/uploads/{id}"),
        format!("/v1/uploads/{id}/content"),
    ] {
        let resp = h.get(&path, None).await;
        assert_eq!(resp.status(), 401, "rule: API key required on {path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "missing_credentials");
        for wrong in [
            "test-api-key-0123456788",
            "test-api-key-01234567890",
            "",
            "x",
        ] {
            let resp = h
                .http
                .get(format!("{}{path}", h.url))
                .header("authorization", format!("Bearer {wrong}"))
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                401,
                "rule: API key compared exactly ({wrong:?})"
            );
        }
        // An upload token is not an API key.
        let resp = h.get(&path, Some(&h.token())).await;
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "invalid_api_key");
    }
    h.stop().await;
}

#[tokio::test]
async fn listing_filters_and_paginates() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        if i == 5 {
            h.gh.set_run(RunSpec {
                repository_id: 777,
                repository: "octo-org/other".into(),
                ..RunSpec::default()
            });
        }
        let (status, record) = h
            .upload(
                Some(&bearer(&h.token())),
                &format!("f{i}.txt"),
                format!("{i}"),
            )
            .await;
        assert_eq!(status, 201);
        ids.push(record["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/uploads?limit=3&cursor={c}"),
            None => "/v1/uploads?limit=3".into(),
        };
        let page: Value = h.get(&path, Some(API_KEY)).await.json().await.unwrap();
        for u in page["uploads"].as_array().unwrap() {
            seen.push(u["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let page: Value = h
        .get("/v1/uploads?repository_id=777", Some(API_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["uploads"].as_array().unwrap().len(), 2);
    let page: Value = h
        .get("/v1/uploads?status=pending", Some(API_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["uploads"].as_array().unwrap().len(), 0);
    let page: Value = h
        .get("/v1/uploads?status=verified", Some(API_KEY))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["uploads"].as_array().unwrap().len(), 7);
    assert!(page["next_cursor"].is_null());

    for bad in [
        "status=done",
        "repository_id=abc",
        "limit=0",
        "limit=1001",
        "cursor=zzz",
    ] {
        let resp = h.get(&format!("/v1/uploads?{bad}"), Some(API_KEY)).await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
    let resp = h
        .get(
            "/v1/uploads/01890000-0000-7000-8000-000000000000",
            Some(API_KEY),
        )
        .await;
    assert_eq!(resp.status(), 404);
    let resp = h
        .get("/v1/uploads/..%2F..%2Fetc/content", Some(API_KEY))
        .await;
    assert_eq!(resp.status(), 404);
    h.stop().await;
}

#[tokio::test]
async fn key_rotation_is_picked_up_on_an_unknown_kid() {
    let h = Harness::start().await;
    let before = h.gh.jwks_requests();
    let (status, _) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201);
    assert_eq!(h.gh.jwks_requests(), before, "cached keys are used");
    h.gh.rotate_key(false).unwrap();
    let (status, body) = h.upload(Some(&bearer(&h.token())), "b", "2").await;
    assert_eq!(status, 201, "a new kid triggers a refresh: {body}");
    assert_eq!(h.gh.jwks_requests(), before + 1, "exactly one refresh");
    h.stop().await;
}

#[tokio::test]
async fn issuer_outage_keeps_cached_keys_working() {
    let h = Harness::start_with(Options {
        cooldown: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    h.gh.set_outage(true);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "cached kid during the outage: {body}");

    // A kid nobody has seen, during the outage: refused as unknown, not accepted.
    h.gh.rotate_key(false).unwrap();
    let (status, body) = h.upload(Some(&bearer(&h.token())), "b", "2").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unknown_key")),
        "{body}"
    );
    assert_eq!(h.record_count().await, 1);
    h.stop().await;
}

#[tokio::test]
async fn issuer_outage_with_nothing_cached_is_503_with_retry_after() {
    let gh = FakeGithub::start().await.unwrap();
    gh.set_outage(true);
    let h = Harness::start_against(
        gh,
        Options {
            prefetch_keys: false,
            ..Default::default()
        },
    )
    .await;
    let resp = h
        .http
        .post(format!("{}/v1/uploads?name=a", h.url))
        .bearer_auth(h.token())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "upstream_unavailable");
    h.assert_nothing_stored("outage").await;

    h.gh.set_outage(false);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "x").await;
    assert_eq!(status, 201, "recovers once the issuer is back: {body}");
    h.stop().await;
}

#[tokio::test]
async fn policy_allow_lists_and_runner_rule_apply() {
    let h = Harness::start_with(Options {
        policy: Policy {
            require_github_hosted_runner: true,
            allowed_repository_owner_ids: vec![OwnerId(RunSpec::default().repository_owner_id)],
            ..Policy::default()
        },
        ..Default::default()
    })
    .await;
    let (status, _) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201);
    h.gh.set_run(RunSpec {
        runner_environment: "self-hosted".into(),
        ..RunSpec::default()
    });
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("policy_denied")),
        "rule: github-hosted runner"
    );
    h.gh.set_run(RunSpec {
        repository_owner_id: 1,
        ..RunSpec::default()
    });
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("policy_denied")),
        "rule: owner allow-list by id"
    );
    assert_eq!(h.record_count().await, 1);
    h.stop().await;
}

#[tokio::test]
async fn idempotency_key_makes_retries_safe() {
    let h = Harness::start().await;
    let headers = [("idempotency-key", "5c0f1d2e-retry-key")];
    let (s1, first) = h
        .upload_with(Some(&bearer(&h.token())), "name=a", "same", &headers)
        .await;
    let (s2, second) = h
        .upload_with(Some(&bearer(&h.token())), "name=a", "same", &headers)
        .await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(h.record_count().await, 1);
    assert_eq!(h.blob_files(), (1, 0));
    h.stop().await;
}

#[tokio::test]
async fn large_upload_streams_through() {
    let h = Harness::start_with(Options {
        max_upload_bytes: 64 * 1024 * 1024,
        ..Default::default()
    })
    .await;
    let chunk = vec![0xA5u8; 1024 * 1024];
    let mut hasher = Sha256::new();
    for _ in 0..24 {
        hasher.update(&chunk);
    }
    let expected = hex::encode(hasher.finalize());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..24).map(|_| Ok(chunk.clone())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, record) = h.upload(Some(&bearer(&h.token())), "big.bin", body).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["size"], 24 * 1024 * 1024);
    assert_eq!(record["sha256"], expected);
    h.stop().await;
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let h = Harness::start().await;
    let wk: Value = h
        .get("/.well-known/runproof", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wk["audience"], AUDIENCE);
    assert_eq!(wk["modes"], json!(["oidc", "session"]));
    assert_eq!(wk["installation_binding"], false);
    assert_eq!(h.get("/healthz", None).await.status(), 200);
    assert_eq!(h.get("/readyz", None).await.status(), 200);
    let (status, _) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201);
    let _ = h.upload(Some(&bearer("x.y.z")), "a", "1").await;
    let text = h.get("/metrics", Some(API_KEY)).await.text().await.unwrap();
    for needle in [
        "runproof_verifications_total{mode=\"oidc\",outcome=\"accepted\",code=\"ok\"}",
        "outcome=\"rejected\",code=\"malformed_token\"",
        "runproof_verification_seconds_bucket",
        "runproof_jwks_refresh_total",
        "runproof_uploads_total",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    let resp = h.get("/nope", None).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    h.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_upload_finish() {
    let h = Harness::start().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let req = h
        .http
        .post(format!("{}/v1/uploads?name=slow.bin", h.url))
        .bearer_auth(h.token())
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let upload = tokio::spawn(req);
    tx.send(Ok(vec![1u8; 1000])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let url = h.url.clone();
    let stopping = tokio::spawn(h.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(Ok(vec![2u8; 1000])).await.unwrap();
    drop(tx);
    let resp = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 201, "the in-flight upload completed");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("{url}/healthz")).await.is_err(),
        "no longer accepting"
    );
}
