//! Genuine flows through a real server: upload, read back, key rotation, issuer outage,
//! idempotency, operations endpoints, graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{API_KEY, AUDIENCE, Harness, Options, bearer, count_files};
use runproof_core::{OwnerId, Policy, RepositoryId};
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
            allowed_repository_ids: vec![RepositoryId(RunSpec::default().repository_id)],
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
    // The name now belongs to another repository (deleted and recreated): same owner,
    // same name, a new id. Only the repository allow-list can refuse it.
    h.gh.set_run(RunSpec {
        repository_id: 9_999_999,
        ..RunSpec::default()
    });
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("policy_denied")),
        "rule: repository allow-list by id, the same name with a new id"
    );
    // The allowed repository renamed (and its owner too): same ids, accepted.
    h.gh.set_run(RunSpec {
        repository: "renamed-org/renamed-repo".into(),
        repository_owner: "renamed-org".into(),
        ..RunSpec::default()
    });
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "rule: a rename keeps the ids: {record}");
    assert_eq!(record["identity"]["repository"], "renamed-org/renamed-repo");
    assert_eq!(h.record_count().await, 2);
    h.stop().await;
}

#[tokio::test]
async fn idempotency_key_makes_retries_safe() {
    let h = Harness::start_with(blob_bodies()).await;
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
    let h = Harness::start_with(blob_bodies()).await;
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
    // In flight: the server has begun writing the body.
    let tmp = h.root.join("tmp");
    wait_for("the body's temporary file", || count_files(&tmp) == 1).await;

    let url = h.url.clone();
    let addr = url.trim_start_matches("http://").to_owned();
    let stopping = tokio::spawn(h.stop());
    // Shutting down: the listener is closed while the upload is still being received.
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "the listener closed"
    );
    assert!(!upload.is_finished(), "the upload is still in flight");
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

/// Every body in a blob file: for tests of the blob path (by default, bodies up to 64 KiB
/// live in the database).
fn blob_bodies() -> Options {
    Options {
        inline_max_bytes: 0,
        ..Default::default()
    }
}

/// Waits (up to 10 s) until `ready` holds.
async fn wait_for(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..1000 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 10 s");
}

/// Every blob under `blobs/` has a record, once uploads in flight have settled (waits up
/// to 10 s for the two to agree).
async fn assert_every_blob_has_a_record(h: &Harness, why: &str) {
    let mut last = (0, 0, 0);
    for _ in 0..100 {
        let (blobs, tmp) = h.blob_files();
        let records = h.record_count().await;
        last = (blobs, records, tmp);
        if blobs == records && tmp == 0 {
            println!("{why}: {records} records, each with its blob");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{why}: {} blobs for {} records, {} partial bodies",
        last.0, last.1, last.2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_a_client_reset_after_its_last_byte_leaves_no_unreferenced_blob() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start_with(blob_bodies()).await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let body = vec![b'r'; 4096];
    for i in 0..200 {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/uploads?name=reset-{i} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
            h.token(),
            body.len()
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(&body).await.unwrap();
        // An RST, not a FIN, at a point that sweeps the time the server takes to commit
        // and insert (0 to 20 ms after the last byte).
        tokio::time::sleep(Duration::from_micros(100 * (i % 200))).await;
        conn.set_zero_linger().unwrap();
        drop(conn);
    }
    assert_every_blob_has_a_record(
        &h,
        "rule: commit and insert finish when the client has gone",
    )
    .await;
    assert!(
        h.record_count().await > 0,
        "some bodies arrived whole before their reset"
    );
    h.stop().await;
}

/// Idempotency keys are scoped to the whole proven identity (mode, issuer, repository,
/// run, attempt): a stranger's pending upload never answers a genuine OIDC upload with
/// the same key, and a request without credentials naming the repository never gets a
/// verified upload's record back.
#[tokio::test]
async fn rule_idempotency_keys_do_not_cross_trust_levels() {
    let h = Harness::start_with(Options {
        webhook_mode: Some(runproof_service::WebhookModeConfig::default()),
        ..Default::default()
    })
    .await;
    let run = h.gh.run();
    let run_header = format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt);
    let unauthenticated = |key: &'static str| {
        let (h, run_header, sha) = (&h, run_header.clone(), run.sha.clone());
        async move {
            h.upload_with(
                None,
                "name=results.json",
                "stranger",
                &[
                    ("x-runproof-run", &run_header),
                    ("x-runproof-sha", &sha),
                    ("idempotency-key", key),
                ],
            )
            .await
        }
    };

    let (status, stranger) = unauthenticated("key-pending-first").await;
    assert_eq!(status, 202, "{stranger}");
    assert_eq!(stranger["status"], "pending");
    let (status, genuine) = h
        .upload_with(
            Some(&bearer(&h.token())),
            "name=results.json",
            "genuine",
            &[("idempotency-key", "key-pending-first")],
        )
        .await;
    assert_eq!(
        status, 201,
        "rule: a stranger's pending upload never answers a verified request: {genuine}"
    );
    assert_ne!(genuine["id"], stranger["id"]);
    assert_eq!(
        (genuine["status"].as_str(), genuine["mode"].as_str()),
        (Some("verified"), Some("oidc"))
    );

    let (status, verified) = h
        .upload_with(
            Some(&bearer(&h.token())),
            "name=results.json",
            "genuine",
            &[("idempotency-key", "key-verified-first")],
        )
        .await;
    assert_eq!(status, 201, "{verified}");
    let (status, answer) = unauthenticated("key-verified-first").await;
    assert_ne!(
        answer["id"], verified["id"],
        "rule: a request without credentials never gets a verified record by its key"
    );
    assert_eq!(
        (status, answer["status"].as_str()),
        (202, Some("pending")),
        "{answer}"
    );

    // Each party's own retry is still answered with its own record.
    let (status, again) = unauthenticated("key-pending-first").await;
    assert_eq!((status, &again["id"]), (200, &stranger["id"]));
    let (status, again) = h
        .upload_with(
            Some(&bearer(&h.token())),
            "name=results.json",
            "genuine",
            &[("idempotency-key", "key-pending-first")],
        )
        .await;
    assert_eq!((status, &again["id"]), (200, &genuine["id"]));
    assert_eq!(h.record_count().await, 4);
    h.stop().await;
}

/// The uploader chooses the bytes and their `Content-Type`: the content route serves them
/// as a download that a browser neither sniffs, renders in our origin, nor runs, also
/// when a range is asked for.
#[tokio::test]
async fn rule_content_is_served_as_a_sandboxed_attachment() {
    let h = Harness::start().await;
    let html = "<script>alert(document.cookie)</script>";
    let (status, record) = h
        .upload_with(
            Some(&bearer(&h.token())),
            "name=%22r%C3%A9sum%C3%A9%22%3B%20x.html",
            html,
            &[("content-type", "text/html")],
        )
        .await;
    assert_eq!(status, 201, "{record}");
    let id = record["id"].as_str().unwrap();
    for range in [None, Some("bytes=0-7"), Some("bytes=-5")] {
        let mut req = h
            .http
            .get(format!("{}/v1/uploads/{id}/content", h.url))
            .bearer_auth(API_KEY);
        if let Some(range) = range {
            req = req.header("range", range);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), if range.is_some() { 206 } else { 200 });
        let headers = resp.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{range:?}");
        assert_eq!(headers["content-security-policy"], "sandbox", "{range:?}");
        assert_eq!(
            headers["content-disposition"],
            "attachment; filename=_r_sum____x.html; \
             filename*=UTF-8''%22r%C3%A9sum%C3%A9%22%3B%20x.html",
            "{range:?}"
        );
    }
    h.stop().await;
}

/// A PostgreSQL connection lost while a `COMMIT` is in flight leaves the insert's outcome
/// unknown. The record may exist: its blob is deleted only once a lookup says it does not,
/// so that an idempotent retry never gets a record whose content is gone.
#[tokio::test]
async fn rule_a_lost_commit_answer_is_looked_up_before_the_blob_is_deleted() {
    use runproof_store::testsuite::{CommitFault, LostCommitAnswers};
    let faults =
        std::sync::Arc::new(std::sync::OnceLock::<std::sync::Arc<LostCommitAnswers>>::new());
    let h = Harness::start_with(Options {
        wrap_store: Some(Box::new({
            let faults = std::sync::Arc::clone(&faults);
            move |inner| {
                let store = std::sync::Arc::new(LostCommitAnswers::new(inner));
                faults.set(std::sync::Arc::clone(&store)).unwrap();
                store
            }
        })),
        inline_max_bytes: 0,
        ..Default::default()
    })
    .await;
    let faults = faults.get().unwrap();
    let key = [("idempotency-key", "lost-commit-answer")];

    faults.set(CommitFault::CommittedAnswerLost);
    let (status, record) = h
        .upload_with(Some(&bearer(&h.token())), "name=a", "committed", &key)
        .await;
    faults.set(CommitFault::None);
    assert_eq!(status, 201, "the record committed: {record}");
    assert_eq!(
        h.blob_files(),
        (1, 0),
        "rule: the blob of a committed record is kept"
    );
    let (status, again) = h
        .upload_with(Some(&bearer(&h.token())), "name=a", "committed", &key)
        .await;
    assert_eq!((status, &again["id"]), (200, &record["id"]));
    let id = record["id"].as_str().unwrap();
    let content = h
        .get(&format!("/v1/uploads/{id}/content"), Some(API_KEY))
        .await;
    assert_eq!(content.status(), 200);
    assert_eq!(content.text().await.unwrap(), "committed");

    faults.set(CommitFault::NotCommittedAnswerLost);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "b", "lost").await;
    faults.set(CommitFault::None);
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("storage_unavailable"))
    );
    assert_eq!(h.blob_files(), (1, 0), "no record: its blob is deleted");

    faults.set(CommitFault::CommittedAndLookupsFail);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "c", "unknown").await;
    faults.set(CommitFault::None);
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("storage_unavailable"))
    );
    assert_eq!(
        (h.blob_files(), h.record_count().await),
        ((2, 0), 2),
        "rule: when no lookup can tell, the blob is kept (the collector decides later)"
    );
    h.stop().await;
}

/// A body up to `[storage] inline_max_bytes` (64 KiB by default) is stored in the
/// database with its record: no file is written. A larger one is a blob. The read API
/// serves both alike, ranges included.
#[tokio::test]
async fn rule_small_bodies_live_in_the_database_and_read_like_blobs() {
    let h = Harness::start().await;
    let small: Vec<u8> = (0..1024u32).map(|i| (i % 251) as u8).collect();
    let (status, record) = h
        .upload(Some(&bearer(&h.token())), "small.bin", small.clone())
        .await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(h.blob_files(), (0, 0), "rule: a small body writes no file");
    let large = vec![7u8; 64 * 1024 + 1];
    let (status, big) = h
        .upload(Some(&bearer(&h.token())), "large.bin", large.clone())
        .await;
    assert_eq!(status, 201, "{big}");
    assert_eq!(h.blob_files(), (1, 0), "a body over the limit is a blob");

    let id = record["id"].as_str().unwrap();
    let content = h
        .get(&format!("/v1/uploads/{id}/content"), Some(API_KEY))
        .await;
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().await.unwrap().as_ref(), small.as_slice());
    let ranged = h
        .http
        .get(format!("{}/v1/uploads/{id}/content", h.url))
        .bearer_auth(API_KEY)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &small[100..200]);
    let big_id = big["id"].as_str().unwrap();
    let content = h
        .get(&format!("/v1/uploads/{big_id}/content"), Some(API_KEY))
        .await;
    assert_eq!(content.bytes().await.unwrap().len(), large.len());
    h.stop().await;
}

/// A chunked body of unknown length starts in memory and moves to a blob once it grows
/// past `inline_max_bytes`: nothing is lost at the switch.
#[tokio::test]
async fn rule_a_chunked_body_past_the_inline_limit_moves_to_a_blob_whole() {
    let h = Harness::start_with(Options {
        inline_max_bytes: 1000,
        ..Default::default()
    })
    .await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..5u8).map(|i| Ok(vec![i; 300])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, record) = h.upload(Some(&bearer(&h.token())), "grows.bin", body).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["size"], 1500);
    assert_eq!(h.blob_files(), (1, 0), "past the limit: a blob");
    let id = record["id"].as_str().unwrap();
    let bytes = h
        .get(&format!("/v1/uploads/{id}/content"), Some(API_KEY))
        .await
        .bytes()
        .await
        .unwrap();
    let expected: Vec<u8> = (0..5u8).flat_map(|i| vec![i; 300]).collect();
    assert_eq!(bytes.as_ref(), expected.as_slice());

    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..3u8).map(|i| Ok(vec![i; 300])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, record) = h.upload(Some(&bearer(&h.token())), "fits.bin", body).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(h.blob_files(), (1, 0), "within the limit: no new file");
    h.stop().await;
}

/// Sends an upload with `token` whose body never comes, and returns the answer, which
/// must arrive before the body does (within 10 s).
async fn answer_without_body(h: &Harness, token: &str) -> (u16, Value) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        h.http
            .post(format!("{}/v1/uploads?name=replay.bin", h.url))
            .bearer_auth(token)
            .header("content-length", "1000")
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    )
    .await
    .expect("answered before the body was sent")
    .unwrap();
    drop(tx);
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A replayed token is refused before its body is read: on the replica that accepted it
/// (the replay guard in memory), and after a restart (the database, asked because the
/// guard starts incomplete).
#[tokio::test]
async fn rule_a_replay_is_refused_before_its_body_is_read_also_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = || Options {
        dir: Some(tmp.path().to_path_buf()),
        ..Default::default()
    };
    let h = Harness::start_with(opts()).await;
    let gh = h.gh.clone();
    let token = h.token();
    let (status, record) = h.upload(Some(&bearer(&token)), "a", "first").await;
    assert_eq!(status, 201, "{record}");
    let (status, refusal) = answer_without_body(&h, &token).await;
    assert_eq!(
        (status, refusal["code"].as_str()),
        (401, Some("token_replayed")),
        "rule: refused on this replica before the body: {refusal}"
    );
    h.stop().await;

    let h = Harness::start_against(gh, opts()).await;
    let (status, refusal) = answer_without_body(&h, &token).await;
    assert_eq!(
        (status, refusal["code"].as_str()),
        (401, Some("token_replayed")),
        "rule: a token accepted before a restart is refused after it: {refusal}"
    );
    let (status, record) = h.upload(Some(&bearer(&h.token())), "b", "fresh").await;
    assert_eq!(status, 201, "a fresh token still works: {record}");
    assert_eq!(h.record_count().await, 2);
    h.stop().await;
}

/// Concurrent uploads share batches: each gets its own outcome, a replay in the same
/// batch fails alone, and every stored body reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_concurrent_uploads_in_one_batch_never_fail_each_other() {
    let h = std::sync::Arc::new(Harness::start().await);
    let replayed = h.token();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let h = std::sync::Arc::clone(&h);
        let token = if i % 8 == 0 {
            replayed.clone()
        } else {
            h.token()
        };
        tasks.push(tokio::spawn(async move {
            let body = format!("body-{i}");
            let (status, record) = h
                .upload(Some(&bearer(&token)), &format!("n{i}"), body.clone())
                .await;
            (status, record, body)
        }));
    }
    let mut stored = 0;
    let mut refused = 0;
    for task in tasks {
        let (status, record, body) = task.await.unwrap();
        match status {
            201 => {
                stored += 1;
                let id = record["id"].as_str().unwrap();
                let content = h
                    .get(&format!("/v1/uploads/{id}/content"), Some(API_KEY))
                    .await;
                assert_eq!(content.text().await.unwrap(), body);
            }
            401 => {
                assert_eq!(record["code"], "token_replayed", "{record}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {record}"),
        }
    }
    assert_eq!(
        (stored, refused),
        (57, 7),
        "one use of the shared token, 56 others"
    );
    assert_eq!(h.record_count().await, 57);
}
