//! The webhook mode through a real server: pending uploads approved by signed
//! `workflow_run` webhooks in either order, the grace period, mismatches, forks, denied
//! events, replays, quotas, expiry, the workflow check, active confirmation, restarts and
//! real payloads. Each hostile case names its rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Harness, Options, count_files};
use runproof_core::Secret;
use runproof_service::WebhookModeConfig;
use runproof_testkit::{FakeGithub, RunSpec, WebhookSender, sign_webhook, workflow_run_payload};
use serde_json::{Value, json};

const SECRET: &str = "webhook-secret-0123456789";
const APP_ID: u64 = 4343;
const INSTALLATION: u64 = 88;
const ACTION: &str = "runproof/upload-action";

fn run() -> RunSpec {
    RunSpec::default()
}

fn run_headers(run: &RunSpec) -> (String, String) {
    (
        format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
        run.sha.clone(),
    )
}

async fn start(config: WebhookModeConfig, app: bool) -> Harness {
    let gh = FakeGithub::start().await.unwrap();
    start_against(gh, config, app, None).await
}

async fn start_against(
    gh: FakeGithub,
    config: WebhookModeConfig,
    app: bool,
    dir: Option<std::path::PathBuf>,
) -> Harness {
    let app = app.then(|| {
        let creds = gh.register_app(APP_ID).unwrap();
        let r = run();
        gh.add_installation(
            INSTALLATION,
            &r.repository_owner,
            r.repository_owner_id,
            &[(r.repository_id, &r.repository)],
        );
        (APP_ID, Secret::new(creds.private_key_pem))
    });
    Harness::start_against(
        gh,
        Options {
            app,
            webhook_secrets: vec![Secret::new(SECRET.into())],
            webhook_mode: Some(config),
            dir,
            ..Default::default()
        },
    )
    .await
}

fn sender(h: &Harness) -> WebhookSender {
    WebhookSender::new(format!("{}/v1/github/webhooks", h.url), SECRET.as_bytes())
}

/// POSTs a pending upload claiming `run`; returns status, body and `Location`.
async fn upload_pending(h: &Harness, run: &RunSpec, body: &'static str) -> (u16, Value, String) {
    let (run_header, sha) = run_headers(run);
    upload_claiming(h, &run_header, &sha, body).await
}

async fn upload_claiming(
    h: &Harness,
    run_header: &str,
    sha: &str,
    body: &'static str,
) -> (u16, Value, String) {
    let resp = h
        .http
        .post(format!("{}/v1/uploads?name=results.json", h.url))
        .header("x-runproof-run", run_header)
        .header("x-runproof-sha", sha)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let retry_after = resp.headers().get("retry-after").cloned();
    let mut json: Value = resp.json().await.unwrap_or(Value::Null);
    if let (Some(r), Value::Object(map)) = (retry_after, &mut json) {
        map.insert("_retry_after".into(), json!(r.to_str().unwrap()));
    }
    (status, json, location)
}

async fn send_run(h: &Harness, payload: &Value) {
    let (status, body, _) = sender(h).send("workflow_run", payload).await.unwrap();
    assert_eq!(status, 200, "{body}");
}

fn payload(run: &RunSpec, action: &str, status: &str) -> Value {
    let conclusion = (status == "completed").then_some("success");
    workflow_run_payload(action, run, Some(INSTALLATION), status, conclusion)
}

/// The public status of an upload.
async fn status_of(h: &Harness, id: &str) -> Value {
    let resp = h.get(&format!("/v1/uploads/{id}/status"), None).await;
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

/// Polls the public status until it is no longer pending (or about 10 s pass), backing
/// off so as to stay far below the per-IP limit for requests without credentials.
async fn settled(h: &Harness, id: &str) -> Value {
    let mut delay = Duration::from_millis(20);
    for _ in 0..40 {
        let s = status_of(h, id).await;
        if s["status"] != "pending" {
            return s;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
    status_of(h, id).await
}

/// Asserts the upload is still pending once the sweeper has tried to settle it against
/// every run stored so far (the same settling a delivery starts in the background).
async fn still_pending(h: &Harness, id: &str, why: &str) {
    runproof_service::sweep(&h.service).await;
    assert_eq!(status_of(h, id).await["status"], "pending", "{why}");
}

async fn record(h: &Harness, id: &str) -> Value {
    h.get(&format!("/v1/uploads/{id}"), Some(common::API_KEY))
        .await
        .json()
        .await
        .unwrap()
}

/// A rule, the run claimed, an edit of its payload, and a word of the expected reason.
type RejectCase = (&'static str, RunSpec, Box<dyn Fn(&mut Value)>, &'static str);
/// A rule, a run id, its workflow file, the files at its commit, the expected status.
type CheckCase = (
    &'static str,
    u64,
    &'static str,
    Vec<(&'static str, String)>,
    &'static str,
);

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test]
async fn upload_before_its_webhook_is_approved_by_it() {
    let h = start(WebhookModeConfig::default(), false).await;
    let r = run();
    let (status, body, location) = upload_pending(&h, &r, "results").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "pending");
    assert_eq!(body["mode"], "webhook");
    assert_eq!(body["identity"]["issuer"], "unverified");
    assert_eq!(
        body["identity"]["unverified"],
        json!(["repository_id", "run_id", "run_attempt", "sha"])
    );
    assert!(body["verified_at"].is_null());
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/uploads/{id}/status"));
    let public = status_of(&h, &id).await;
    assert_eq!(
        public,
        json!({"id": id, "status": "pending", "reason": null}),
        "the status route says nothing else"
    );

    send_run(&h, &payload(&r, "in_progress", "in_progress")).await;
    assert_eq!(settled(&h, &id).await["status"], "verified");
    let rec = record(&h, &id).await;
    assert_eq!(rec["mode"], "webhook");
    assert!(rec["verified_at"].is_string());
    let identity = &rec["identity"];
    assert_eq!(identity["repository"], r.repository);
    assert_eq!(identity["repository_id"], r.repository_id);
    assert_eq!(identity["repository_owner_id"], r.repository_owner_id);
    assert_eq!(identity["run_id"], r.run_id);
    assert_eq!(identity["run_attempt"], 1);
    assert_eq!(identity["sha"], r.sha);
    assert_eq!(identity["event_name"], "push");
    assert_eq!(identity["installation_id"], INSTALLATION);
    assert!(identity.get("unverified").is_none(), "{identity}");
    let content = h
        .get(&format!("/v1/uploads/{id}/content"), Some(common::API_KEY))
        .await;
    assert_eq!(content.text().await.unwrap(), "results");
    let wk: Value = h
        .get("/.well-known/runproof", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wk["modes"], json!(["oidc", "session", "webhook"]));
    h.stop().await;
}

#[tokio::test]
async fn upload_after_its_webhook_is_approved_at_once_for_any_action() {
    let h = start(WebhookModeConfig::default(), false).await;
    for (i, (action, status)) in [
        ("requested", "queued"),
        ("in_progress", "in_progress"),
        ("completed", "completed"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = RunSpec {
            run_id: 7_000 + i as u64,
            ..run()
        };
        send_run(&h, &payload(&r, action, status)).await;
        let (code, body, location) = upload_pending(&h, &r, "after").await;
        assert_eq!(
            (code, body["status"].as_str()),
            (201, Some("verified")),
            "{action}: {body}"
        );
        assert_eq!(
            location,
            format!("/v1/uploads/{}", body["id"].as_str().unwrap())
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn rule_grace_period_after_completion() {
    let h = start(WebhookModeConfig::default(), false).await;
    // Completed 700 s ago: an upload now is 100 s past the 600 s grace period.
    let late = RunSpec {
        run_id: 8_001,
        ..run()
    };
    let mut p = payload(&late, "completed", "completed");
    p["workflow_run"]["updated_at"] = json!(rfc3339(now() - 700));
    send_run(&h, &p).await;
    let (code, body, _) = upload_pending(&h, &late, "late").await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(body["status"], "rejected", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("after the run completed"),
        "{body}"
    );
    let id = body["id"].as_str().unwrap();
    let content = h
        .get(&format!("/v1/uploads/{id}/content"), Some(common::API_KEY))
        .await;
    assert_eq!(
        content.status().as_u16(),
        404,
        "rejected content is never served"
    );

    // Completed 500 s ago: within the grace period.
    let recent = RunSpec {
        run_id: 8_002,
        ..run()
    };
    let mut p = payload(&recent, "completed", "completed");
    p["workflow_run"]["updated_at"] = json!(rfc3339(now() - 500));
    send_run(&h, &p).await;
    let (code, body, _) = upload_pending(&h, &recent, "in time").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some("verified")),
        "{body}"
    );

    // Pending first, then a completion that is old by the time it arrives.
    let stale = RunSpec {
        run_id: 8_003,
        ..run()
    };
    let (_, body, _) = upload_pending(&h, &stale, "stale").await;
    let id = body["id"].as_str().unwrap();
    let mut p = payload(&stale, "completed", "completed");
    p["workflow_run"]["updated_at"] = json!(rfc3339(now() - 3600));
    send_run(&h, &p).await;
    assert_eq!(settled(&h, id).await["status"], "rejected");
    h.stop().await;
}

/// Claims made before their run is known: another repository, run or attempt stays
/// pending (the attempt may start later); another commit is rejected once the run is
/// known, and refused at once after that.
#[tokio::test]
async fn rule_mismatched_claims_stay_pending_or_are_rejected() {
    let h = start(WebhookModeConfig::default(), false).await;
    let r = run();
    let cases: Vec<(&str, RunSpec)> = vec![
        (
            "same run: another repository id",
            RunSpec {
                repository_id: r.repository_id + 1,
                ..r.clone()
            },
        ),
        (
            "same run: another run id",
            RunSpec {
                run_id: r.run_id + 1,
                ..r.clone()
            },
        ),
        (
            "same run: another attempt",
            RunSpec {
                run_attempt: 2,
                ..r.clone()
            },
        ),
        (
            "same commit: another sha",
            RunSpec {
                sha: "1".repeat(40),
                ..r.clone()
            },
        ),
    ];
    let mut ids = Vec::new();
    for (rule, claimed) in &cases {
        let (code, body, _) = upload_pending(&h, claimed, "claim").await;
        assert_eq!(code, 202, "{rule}: {body}");
        ids.push((*rule, body["id"].as_str().unwrap().to_owned()));
    }
    send_run(&h, &payload(&r, "in_progress", "in_progress")).await;
    send_run(&h, &payload(&r, "completed", "completed")).await;
    let (other_commit, waiting) = ids.split_last().unwrap();
    let s = settled(&h, &other_commit.1).await;
    assert_eq!(s["status"], "rejected", "{}: {s}", other_commit.0);
    assert!(
        s["reason"].as_str().unwrap().contains("commit"),
        "{}: {s}",
        other_commit.0
    );
    for (rule, id) in waiting {
        still_pending(&h, id, rule).await;
    }
    // The sweeper settles nothing either.
    let report = runproof_service::sweep(&h.service).await;
    assert_eq!(report.settled, 0);
    for (rule, id) in waiting {
        assert_eq!(status_of(&h, id).await["status"], "pending", "{rule}");
    }
    // The run known, another commit is refused before the body and stores nothing.
    let before = h.record_count().await;
    let (code, body, _) = upload_pending(&h, &cases[3].1, "claim").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("policy_denied")),
        "{body}"
    );
    assert_eq!(h.record_count().await, before);
    h.stop().await;
}

#[tokio::test]
async fn rule_fork_runs_and_denied_events_are_rejected() {
    let h = start(WebhookModeConfig::default(), false).await;
    let cases: Vec<RejectCase> = vec![
        (
            "forks: head repository is another",
            RunSpec {
                run_id: 9_001,
                ..run()
            },
            Box::new(|p: &mut Value| {
                p["workflow_run"]["head_repository"]["id"] = json!(424_242);
            }),
            "fork",
        ),
        (
            "forks: head repository missing fails closed",
            RunSpec {
                run_id: 9_002,
                ..run()
            },
            Box::new(|p: &mut Value| {
                p["workflow_run"]
                    .as_object_mut()
                    .unwrap()
                    .remove("head_repository");
            }),
            "fork",
        ),
        (
            "events: pull_request_target",
            RunSpec {
                run_id: 9_003,
                event_name: "pull_request_target".into(),
                ..run()
            },
            Box::new(|_: &mut Value| {}),
            "pull_request_target",
        ),
        (
            "events: workflow_run",
            RunSpec {
                run_id: 9_004,
                event_name: "workflow_run".into(),
                ..run()
            },
            Box::new(|_: &mut Value| {}),
            "workflow_run",
        ),
    ];
    for (rule, r, edit, reason) in cases {
        let (_, body, _) = upload_pending(&h, &r, "x").await;
        let id = body["id"].as_str().unwrap().to_owned();
        let mut p = payload(&r, "in_progress", "in_progress");
        edit(&mut p);
        send_run(&h, &p).await;
        let s = settled(&h, &id).await;
        assert_eq!(s["status"], "rejected", "{rule}: {s}");
        assert!(
            s["reason"].as_str().unwrap().contains(reason),
            "{rule}: {s}"
        );
    }
    h.stop().await;

    // allow_forks = true accepts the fork.
    let h = start(
        WebhookModeConfig {
            allow_forks: true,
            ..WebhookModeConfig::default()
        },
        false,
    )
    .await;
    let r = run();
    let mut p = payload(&r, "in_progress", "in_progress");
    p["workflow_run"]["head_repository"]["id"] = json!(424_242);
    send_run(&h, &p).await;
    let (code, body, _) = upload_pending(&h, &r, "fork allowed").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some("verified")),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_replayed_delivery_has_no_second_effect() {
    let h = start(WebhookModeConfig::default(), false).await;
    let r = run();
    let body = serde_json::to_vec(&payload(&r, "in_progress", "in_progress")).unwrap();
    let sig = sign_webhook(SECRET.as_bytes(), &body);
    let (status, text) = sender(&h)
        .send_raw("workflow_run", "delivery-1", &body, Some(&sig))
        .await
        .unwrap();
    assert_eq!((status, text.contains("processed")), (200, true), "{text}");

    // The same delivery id, replayed with a body for another run (re-signed, as an
    // attacker holding the secret could not do; even then): no effect.
    let other = RunSpec {
        run_id: r.run_id + 1,
        sha: "2".repeat(40),
        ..r.clone()
    };
    let (_, pending, _) = upload_pending(&h, &other, "other run").await;
    let id = pending["id"].as_str().unwrap();
    let body2 = serde_json::to_vec(&payload(&other, "in_progress", "in_progress")).unwrap();
    let sig2 = sign_webhook(SECRET.as_bytes(), &body2);
    let (status, text) = sender(&h)
        .send_raw("workflow_run", "delivery-1", &body2, Some(&sig2))
        .await
        .unwrap();
    assert_eq!((status, text.contains("duplicate")), (200, true), "{text}");
    still_pending(&h, id, "a replayed delivery id changes nothing").await;

    // A replay of the genuine bytes under their id: duplicate, the run unchanged.
    let (status, text) = sender(&h)
        .send_raw("workflow_run", "delivery-1", &body, Some(&sig))
        .await
        .unwrap();
    assert_eq!((status, text.contains("duplicate")), (200, true), "{text}");
    h.stop().await;
}

#[tokio::test]
async fn quotas_bound_pending_uploads() {
    let h = start(
        WebhookModeConfig {
            max_uploads_per_run: 2,
            max_pending_bytes_per_repository: 10,
            max_pending_uploads: 3,
            max_pending_bytes: 15,
            ..WebhookModeConfig::default()
        },
        false,
    )
    .await;
    let r = run();
    // Malformed or missing headers.
    let (code, body, _) = upload_claiming(&h, "1/2", &r.sha, "x").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (code, body, _) = upload_claiming(&h, "1/2/3", "HEAD", "x").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (code, body) = h.upload(None, "x", "x").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (401, Some("missing_credentials")),
        "{body}"
    );

    // Per repository: 10 bytes pending at most (declared length, then streamed).
    let (code, body, _) = upload_pending(&h, &r, "0123456789a").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    let chunked = reqwest::Body::wrap_stream(futures_util::stream::iter(vec![
        Ok::<_, std::io::Error>("012345".to_owned()),
        Ok("6789ab".to_owned()),
    ]));
    let (rh, sha) = run_headers(&r);
    let (code, body) = h
        .upload_with(
            None,
            "name=chunked",
            chunked,
            &[("x-runproof-run", &rh), ("x-runproof-sha", &sha)],
        )
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    assert_eq!(h.record_count().await, 0, "refused uploads store nothing");
    let repo = runproof_core::RepositoryId(r.repository_id);
    let pending_bytes = || async { h.service.store().pending_total().await.unwrap().1 };
    assert_eq!(pending_bytes().await, 0, "refused uploads hold no bytes");

    // Per run: two uploads, then 429 with Retry-After.
    assert_eq!(upload_pending(&h, &r, "12345").await.0, 202);
    assert_eq!(upload_pending(&h, &r, "1234").await.0, 202);
    assert_eq!(h.service.store().pending_usage(repo).await.unwrap(), (2, 9));
    let (code, body, _) = upload_pending(&h, &r, "1").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert!(body["_retry_after"].is_string(), "{body}");
    // The repository now holds 9 bytes: 2 more do not fit.
    let r2 = RunSpec {
        run_id: r.run_id + 1,
        ..r.clone()
    };
    let (code, body, _) = upload_pending(&h, &r2, "ab").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );

    // Overall bytes (15): another repository may add 6, not 7.
    let elsewhere = RunSpec {
        repository_id: 77_001,
        ..r.clone()
    };
    let (code, body, _) = upload_pending(&h, &elsewhere, "1234567").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert!(body["_retry_after"].is_string(), "{body}");
    assert_eq!(upload_pending(&h, &elsewhere, "123456").await.0, 202);
    assert_eq!(pending_bytes().await, 15, "exactly the overall byte quota");
    // Overall uploads (3): a fourth waits.
    let third = RunSpec {
        repository_id: 77_002,
        ..r.clone()
    };
    let (code, body, _) = upload_pending(&h, &third, "").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert_eq!(h.record_count().await, 3);
    assert_eq!(pending_bytes().await, 15, "refusals add no bytes");

    // Approval frees the repository's and the overall quota.
    send_run(&h, &payload(&r, "in_progress", "in_progress")).await;
    for _ in 0..100 {
        if h.service.store().pending_total().await.unwrap().0 == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(upload_pending(&h, &third, "1").await.0, 202);
    h.stop().await;
}

#[tokio::test]
async fn webhook_mode_off_keeps_missing_credentials() {
    let h = Harness::start().await;
    let r = run();
    let (code, body, _) = upload_pending(&h, &r, "x").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (401, Some("missing_credentials")),
        "{body}"
    );
    h.assert_nothing_stored("webhook mode off").await;
    h.stop().await;
}

#[tokio::test]
async fn expiry_marks_old_pending_uploads_and_deletes_rejected_and_expired_blobs() {
    let h = start(
        WebhookModeConfig {
            pending_ttl_seconds: 1,
            ..WebhookModeConfig::default()
        },
        false,
    )
    .await;
    let r = run();
    // Verified: stays. Rejected (fork): blob deleted. A run never seen: expires, blob
    // deleted.
    let good = RunSpec {
        run_id: 1,
        ..r.clone()
    };
    send_run(&h, &payload(&good, "in_progress", "in_progress")).await;
    let (_, verified, _) = upload_pending(&h, &good, "good").await;
    assert_eq!(verified["status"], "verified");
    let fork = RunSpec {
        run_id: 2,
        ..r.clone()
    };
    let mut p = payload(&fork, "in_progress", "in_progress");
    p["workflow_run"]["head_repository"]["id"] = json!(1);
    send_run(&h, &p).await;
    let (_, rejected, _) = upload_pending(&h, &fork, "fork").await;
    assert_eq!(rejected["status"], "rejected");
    let unseen = RunSpec {
        run_id: 3,
        ..good.clone()
    };
    let (_, pending, _) = upload_pending(&h, &unseen, "unseen run").await;
    assert_eq!(pending["status"], "pending");
    let ids = [&verified, &rejected, &pending].map(|r| r["id"].as_str().unwrap().to_owned());
    assert_eq!(bodies(&h, &ids).await, [true, true, true]);
    assert_eq!(
        count_files(&h.root.join("blobs")),
        0,
        "small bodies live in the database"
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let report = runproof_service::sweep(&h.service).await;
    assert_eq!(report.expired, 1, "{report:?}");
    assert_eq!(report.blobs_deleted, 2, "{report:?}");
    let s = status_of(&h, pending["id"].as_str().unwrap()).await;
    assert_eq!(s["status"], "expired");
    assert_eq!(s["reason"], "pending_ttl elapsed");
    assert_eq!(
        bodies(&h, &ids).await,
        [true, false, false],
        "only the verified body remains"
    );
    assert_eq!(
        status_of(&h, verified["id"].as_str().unwrap()).await["status"],
        "verified"
    );
    // A second sweep (or one after a restart) has nothing left to do.
    let again = runproof_service::sweep(&h.service).await;
    assert_eq!((again.expired, again.blobs_deleted), (0, 0));
    h.stop().await;
}

/// Whether each upload still has its body, wherever it lives (database or blob store).
async fn bodies<const N: usize>(h: &Harness, ids: &[String; N]) -> [bool; N] {
    let mut out = [false; N];
    for (i, id) in ids.iter().enumerate() {
        let id = runproof_store::UploadId::parse(id).unwrap();
        out[i] = h.service.blobs().exists(&id).await.unwrap();
    }
    out
}

fn workflow(steps_use: &str) -> String {
    format!(
        "name: analyse\non: [push]\njobs:\n  analyse:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - uses: {steps_use}\n"
    )
}

#[tokio::test]
async fn rule_workflow_check_present_absent_and_through_a_reusable_workflow() {
    let gh = FakeGithub::start().await.unwrap();
    let h = start_against(
        gh,
        WebhookModeConfig {
            require_action: Some(ACTION.into()),
            ..WebhookModeConfig::default()
        },
        true,
        None,
    )
    .await;
    let base = run();
    let cases: Vec<CheckCase> = vec![
        (
            "workflow check: the action is used by a step",
            101,
            "present.yml",
            vec![(
                ".github/workflows/present.yml",
                workflow("runproof/upload-action@v1"),
            )],
            "verified",
        ),
        (
            "workflow check: the action is absent",
            102,
            "absent.yml",
            vec![(".github/workflows/absent.yml", workflow("someone/else@v1"))],
            "rejected",
        ),
        (
            "workflow check: reached through a reusable workflow of the repository",
            103,
            "caller.yml",
            vec![
                (
                    ".github/workflows/caller.yml",
                    "on: push\njobs:\n  call:\n    uses: ./.github/workflows/reusable.yml\n".into(),
                ),
                (
                    ".github/workflows/reusable.yml",
                    format!(
                        "on: workflow_call\n{}",
                        workflow("runproof/upload-action/sub@main")
                            .trim_start_matches("name: analyse\non: [push]\n")
                    ),
                ),
            ],
            "verified",
        ),
        (
            "workflow check: the file is missing at that commit",
            104,
            "missing.yml",
            vec![],
            "rejected",
        ),
    ];
    for (rule, run_id, file, files, want) in cases {
        let r = RunSpec {
            run_id,
            workflow: file.into(),
            ..base.clone()
        };
        for (path, text) in &files {
            h.gh.set_file(&r.repository, path, &r.sha, text);
        }
        let (_, body, _) = upload_pending(&h, &r, "checked").await;
        let id = body["id"].as_str().unwrap().to_owned();
        send_run(&h, &payload(&r, "in_progress", "in_progress")).await;
        let s = settled(&h, &id).await;
        assert_eq!(s["status"], want, "{rule}: {s}");
        if want == "rejected" {
            assert!(
                s["reason"].as_str().unwrap().contains("workflow"),
                "{rule}: {s}"
            );
        }
    }
    // The result is cached per (repository, path, sha): a second upload of run 101
    // reads no file again.
    let before = h.gh.api_requests("contents");
    let r = RunSpec {
        run_id: 101,
        workflow: "present.yml".into(),
        ..base.clone()
    };
    let (code, body, _) = upload_pending(&h, &r, "again").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some("verified")),
        "{body}"
    );
    assert_eq!(h.gh.api_requests("contents"), before);
    h.stop().await;
}

#[tokio::test]
async fn active_confirmation_approves_at_once_and_github_down_leaves_it_pending() {
    let gh = FakeGithub::start().await.unwrap();
    let h = start_against(gh, WebhookModeConfig::default(), true, None).await;
    let r = run();

    // The run exists and is in progress: approved in the request, no webhook needed.
    h.gh.add_workflow_run(&r, "in_progress", None);
    let (code, body, _) = upload_pending(&h, &r, "confirmed").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some("verified")),
        "{body}"
    );
    assert_eq!(body["identity"]["installation_id"], INSTALLATION);
    assert_eq!(body["identity"]["repository"], r.repository);
    assert!(h.gh.api_requests("workflow_run") >= 1);

    // GitHub does not know the run: pending, for the webhook.
    let unknown = RunSpec {
        run_id: 55_001,
        ..r.clone()
    };
    let (code, body, _) = upload_pending(&h, &unknown, "unknown").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (202, Some("pending")),
        "{body}"
    );

    // A fork run, found by the API: rejected.
    let fork = RunSpec {
        run_id: 55_002,
        ..r.clone()
    };
    let mut object = runproof_testkit::workflow_run_object(&fork, "in_progress", None);
    object["head_repository"]["id"] = json!(999);
    h.gh.put_workflow_run(&fork.repository, object);
    let (code, body, _) = upload_pending(&h, &fork, "fork").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (202, Some("rejected")),
        "{body}"
    );

    // A run that completed long ago, found by the API: rejected.
    let old = RunSpec {
        run_id: 55_003,
        ..r.clone()
    };
    let mut object = runproof_testkit::workflow_run_object(&old, "completed", Some("success"));
    object["updated_at"] = json!(rfc3339(now() - 3600));
    h.gh.put_workflow_run(&old.repository, object);
    let (code, body, _) = upload_pending(&h, &old, "old").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (202, Some("rejected")),
        "{body}"
    );

    // GitHub down: the upload stays pending, never rejected; when GitHub is back, the
    // sweeper asks again and approves it.
    let later = RunSpec {
        run_id: 55_004,
        ..r.clone()
    };
    h.gh.add_workflow_run(&later, "in_progress", None);
    h.gh.set_api_outage(true);
    let (code, body, _) = upload_pending(&h, &later, "outage").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (202, Some("pending")),
        "{body}"
    );
    let id = body["id"].as_str().unwrap().to_owned();
    let report = runproof_service::sweep(&h.service).await;
    assert_eq!(report.settled, 0);
    assert_eq!(status_of(&h, &id).await["status"], "pending");
    h.gh.set_api_outage(false);
    let report = runproof_service::sweep(&h.service).await;
    assert!(report.settled >= 1, "{report:?}");
    assert_eq!(status_of(&h, &id).await["status"], "verified");
    h.stop().await;
}

#[tokio::test]
async fn pending_uploads_survive_a_restart_and_are_approved_later() {
    let dir = tempfile::tempdir().unwrap();
    let gh = FakeGithub::start().await.unwrap();
    let h = start_against(
        gh.clone(),
        WebhookModeConfig::default(),
        false,
        Some(dir.path().to_path_buf()),
    )
    .await;
    let r = run();
    let (code, body, _) = upload_pending(&h, &r, "before restart").await;
    assert_eq!(code, 202);
    let id = body["id"].as_str().unwrap().to_owned();
    h.stop().await;

    let h = start_against(
        gh.clone(),
        WebhookModeConfig::default(),
        false,
        Some(dir.path().to_path_buf()),
    )
    .await;
    assert_eq!(status_of(&h, &id).await["status"], "pending");
    send_run(&h, &payload(&r, "in_progress", "in_progress")).await;
    assert_eq!(settled(&h, &id).await["status"], "verified");
    let content = h
        .get(&format!("/v1/uploads/{id}/content"), Some(common::API_KEY))
        .await;
    assert_eq!(content.text().await.unwrap(), "before restart");
    h.stop().await;

    // A run stored while an upload waited, with the process gone before it settled the
    // upload: the sweeper of the next process settles it.
    let h = start_against(
        gh.clone(),
        WebhookModeConfig::default(),
        false,
        Some(dir.path().to_path_buf()),
    )
    .await;
    let r2 = RunSpec {
        run_id: r.run_id + 10,
        ..r.clone()
    };
    let (_, body, _) = upload_pending(&h, &r2, "second").await;
    let id2 = body["id"].as_str().unwrap().to_owned();
    let stored = runproof_store::WorkflowRunRecord {
        repository_id: runproof_core::RepositoryId(r2.repository_id),
        run_id: runproof_core::RunId(r2.run_id),
        run_attempt: 1,
        head_sha: r2.sha.clone(),
        head_repository_id: Some(runproof_core::RepositoryId(r2.repository_id)),
        event: "push".into(),
        status: "in_progress".into(),
        conclusion: None,
        path: ".github/workflows/ci.yml".into(),
        installation_id: None,
        repository_full_name: r2.repository.clone(),
        owner_id: runproof_core::OwnerId(r2.repository_owner_id),
        run_started_at: Some(runproof_core::UnixTime(now())),
        updated_at: runproof_core::UnixTime(now()),
        completed_at: None,
        received_at: runproof_core::UnixTime(now()),
    };
    // Written straight to the database, as a delivery whose settling never ran.
    let delivery = runproof_store::WebhookDelivery {
        id: "crashed-delivery".into(),
        event: "workflow_run".into(),
        received_at: runproof_core::UnixTime(now()),
    };
    assert!(
        h.service
            .store()
            .apply_webhook(
                &delivery,
                &[runproof_store::WebhookEffect::UpsertWorkflowRun(stored)]
            )
            .await
            .unwrap()
    );
    h.stop().await;
    let h = start_against(
        gh,
        WebhookModeConfig::default(),
        false,
        Some(dir.path().to_path_buf()),
    )
    .await;
    // The housekeeping task sweeps on start.
    assert_eq!(settled(&h, &id2).await["status"], "verified");
    h.stop().await;
}

fn realworld_dir() -> Option<std::path::PathBuf> {
    let d = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/webhook_payloads");
    assert!(d.is_dir(), "{} is missing", d.display());
    Some(d)
}

fn realworld(dir: &std::path::Path, path: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(path)).unwrap()).unwrap()
}

/// The headers an upload from the run of a real payload would carry.
fn claim_of(p: &Value) -> (String, String) {
    let wr = &p["workflow_run"];
    (
        format!(
            "{}/{}/{}",
            p["repository"]["id"],
            wr["id"],
            wr["run_attempt"].as_u64().unwrap_or(1)
        ),
        wr["head_sha"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn real_payloads_drive_approval() {
    let Some(dir) = realworld_dir() else {
        return;
    };
    let h = start(WebhookModeConfig::default(), false).await;
    // octocrab's App delivery (schedule, queued, no run_attempt, an installation) and
    // octokit's repository-webhook examples (repository_dispatch).
    let octocrab = realworld(&dir, "octocrab/workflow_run_event.json")["payload"].clone();
    let requested = realworld(&dir, "workflow_run/requested.payload.json");
    let completed = realworld(&dir, "workflow_run/completed.payload.json");
    // octocrab's payload predates `run_started_at`: it cannot show that the attempt had
    // started when the upload arrived, so it approves nothing (fail closed).
    let (run_header, sha) = claim_of(&octocrab);
    let (code, body, _) = upload_claiming(&h, &run_header, &sha, "no start").await;
    assert_eq!(code, 202, "{body}");
    let waiting = body["id"].as_str().unwrap().to_owned();
    send_run(&h, &octocrab).await;
    still_pending(&h, &waiting, "no run_started_at: nothing approves").await;
    // The same run described again, later, with its start.
    let mut octocrab = octocrab;
    let wr = &mut octocrab["workflow_run"];
    wr["run_started_at"] = wr["created_at"].clone();
    wr["updated_at"] = json!("2021-09-17T12:02:00Z");
    for (name, p, want) in [
        ("octocrab workflow_run_event.json", &octocrab, "verified"),
        ("octokit requested.payload.json", &requested, "verified"),
    ] {
        let (run_header, sha) = claim_of(p);
        let (code, body, _) = upload_claiming(&h, &run_header, &sha, "real").await;
        assert_eq!(code, 202, "{name}: {body}");
        let id = body["id"].as_str().unwrap().to_owned();
        send_run(&h, p).await;
        let s = settled(&h, &id).await;
        assert_eq!(s["status"], want, "{name}: {s}");
        let rec = record(&h, &id).await;
        assert_eq!(
            rec["identity"]["repository_id"], p["repository"]["id"],
            "{name}"
        );
        assert_eq!(
            rec["identity"]["repository"], p["repository"]["full_name"],
            "{name}"
        );
        assert_eq!(
            rec["identity"]["event_name"], p["workflow_run"]["event"],
            "{name}"
        );
    }
    let rec_octocrab = {
        let (run_header, sha) = claim_of(&octocrab);
        let (code, body, _) = upload_claiming(&h, &run_header, &sha, "after").await;
        assert_eq!(code, 201, "the run is known now: {body}");
        body
    };
    assert_eq!(rec_octocrab["identity"]["installation_id"], 18_995_746);
    assert_eq!(status_of(&h, &waiting).await["status"], "verified");
    assert_eq!(rec_octocrab["identity"]["run_attempt"], 1);

    // octokit's completed example finished in 2020: an upload now is far past the grace
    // period. The run is stored as completed, so a later upload is rejected at once.
    send_run(&h, &completed).await;
    let (run_header, sha) = claim_of(&completed);
    let (code, body, _) = upload_claiming(&h, &run_header, &sha, "late").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (202, Some("rejected")),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_not_installed_repository_is_refused_or_rejected() {
    let gh = FakeGithub::start().await.unwrap();
    let h = start_against(gh, WebhookModeConfig::default(), true, None).await;
    let r = run();
    // A repository the App is not installed on: its run's webhook cannot approve it.
    let other = RunSpec {
        repository: "octo-org/other".into(),
        repository_id: 5_550_001,
        ..r.clone()
    };
    let (code, body, _) = upload_pending(&h, &other, "elsewhere").await;
    assert_eq!(code, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    send_run(
        &h,
        &workflow_run_payload("in_progress", &other, None, "in_progress", None),
    )
    .await;
    let s = settled(&h, &id).await;
    assert_eq!(s["status"], "rejected", "{s}");
    assert!(
        s["reason"].as_str().unwrap().contains("not installed"),
        "{s}"
    );

    // Once webhooks say the repository was removed from the installation, uploads
    // claiming it are refused before the body is read.
    let removed = runproof_testkit::installation_repositories_payload(
        "removed",
        INSTALLATION,
        &r.repository_owner,
        r.repository_owner_id,
        &[],
        &[(r.repository_id, &r.repository)],
    );
    let (status, _, _) = sender(&h)
        .send("installation_repositories", &removed)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (code, body, _) = upload_pending(&h, &r, "removed").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("not_installed")),
        "{body}"
    );
    h.stop().await;
}

/// A claim of attempt 7 of a known run, with its public commit, made before a maintainer
/// re-ran the run: the signed event of attempt 7 (even `requested`) rejects it, since
/// the upload was received before the attempt existed.
#[tokio::test]
async fn rule_upload_made_before_its_run_attempt_existed_is_rejected() {
    let h = start(WebhookModeConfig::default(), false).await;
    let earlier = RunSpec {
        run_id: 9_001,
        run_attempt: 6,
        ..run()
    };
    send_run(&h, &payload(&earlier, "completed", "completed")).await;
    let claimed = RunSpec {
        run_attempt: 7,
        ..earlier.clone()
    };
    let (code, body, _) = upload_pending(&h, &claimed, "early").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (202, Some("pending")),
        "attempt 7 may still start: {body}"
    );
    let id = body["id"].as_str().unwrap().to_owned();

    // Attempt 7 starts two minutes later (more than the 60 s allowed for clocks).
    let mut requested = payload(&claimed, "requested", "queued");
    requested["workflow_run"]["run_started_at"] = json!(rfc3339(now() + 120));
    send_run(&h, &requested).await;
    let s = settled(&h, &id).await;
    assert_eq!(s["status"], "rejected", "{s}");
    assert!(
        s["reason"]
            .as_str()
            .unwrap()
            .contains("before the run attempt started"),
        "{s}"
    );
    // While the attempt has not started, a new claim of it is refused at once.
    let (code, body, _) = upload_pending(&h, &claimed, "still early").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (403, Some("policy_denied")),
        "{body}"
    );
    h.stop().await;
}

/// Lockout: 100 claims naming a known run with a wrong commit are refused before their
/// bodies and count against nothing; claims of an attempt that has not started count
/// against that attempt only; the genuine upload is then approved.
#[tokio::test]
async fn rule_wrong_claims_of_a_known_run_do_not_lock_out_the_genuine_upload() {
    let h = start(WebhookModeConfig::default(), false).await;
    let r = run();
    send_run(&h, &payload(&r, "in_progress", "in_progress")).await;
    let wrong = RunSpec {
        sha: "f".repeat(40),
        ..r.clone()
    };
    for i in 0..100 {
        let (code, body, _) = upload_pending(&h, &wrong, "forged").await;
        assert_eq!(
            (code, body["code"].as_str()),
            (403, Some("policy_denied")),
            "claim {i}: {body}"
        );
    }
    assert_eq!(h.record_count().await, 0, "refused claims store nothing");
    let next_attempt = RunSpec {
        run_attempt: 2,
        ..r.clone()
    };
    for _ in 0..3 {
        assert_eq!(upload_pending(&h, &next_attempt, "not yet").await.0, 202);
    }
    let (code, body, _) = upload_pending(&h, &r, "genuine").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some("verified")),
        "{body}"
    );
    h.stop().await;
}

/// Claims made while the run was unknown count against its quota, until the run is
/// known: those naming another commit are then rejected and stop counting.
#[tokio::test]
async fn rule_claims_that_can_no_longer_be_approved_stop_counting() {
    let h = start(
        WebhookModeConfig {
            max_uploads_per_run: 3,
            ..WebhookModeConfig::default()
        },
        false,
    )
    .await;
    let r = run();
    let wrong = RunSpec {
        sha: "f".repeat(40),
        ..r.clone()
    };
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (code, body, _) = upload_pending(&h, &wrong, "forged").await;
        assert_eq!(code, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let (code, body, _) = upload_pending(&h, &r, "too soon").await;
    assert_eq!(
        (code, body["code"].as_str()),
        (429, Some("rate_limited")),
        "the run unknown, every claim counts: {body}"
    );
    send_run(&h, &payload(&r, "in_progress", "in_progress")).await;
    for id in &ids {
        assert_eq!(settled(&h, id).await["status"], "rejected");
    }
    let (code, body, _) = upload_pending(&h, &r, "genuine").await;
    assert_eq!(
        (code, body["status"].as_str()),
        (201, Some("verified")),
        "{body}"
    );
    h.stop().await;
}

/// 20 parallel 900-byte pending uploads against 1000 pending bytes per repository: the
/// room is reserved before each body is read, so at most one is stored, never more bytes
/// than the quota; the refused ones leave nothing reserved behind.
#[tokio::test]
async fn rule_parallel_pending_uploads_never_exceed_the_byte_quota() {
    let h = start(
        WebhookModeConfig {
            max_pending_bytes_per_repository: 1000,
            ..WebhookModeConfig::default()
        },
        false,
    )
    .await;
    let r = run();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (http, url) = (h.http.clone(), h.url.clone());
            let claimed = RunSpec {
                run_id: 20_000 + i,
                ..r.clone()
            };
            tokio::spawn(async move {
                let (run_header, sha) = run_headers(&claimed);
                // The body comes a little later, so that every request is admitted (or
                // not) before any body is stored.
                let body = futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, std::io::Error>(vec![b'x'; 900])
                });
                http.post(format!("{url}/v1/uploads?name=big.bin"))
                    .header("x-runproof-run", run_header)
                    .header("x-runproof-sha", sha)
                    .header("content-length", "900")
                    .body(reqwest::Body::wrap_stream(body))
                    .send()
                    .await
                    .map(|resp| resp.status().as_u16())
            })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(202) => stored += 1,
            // Refused before the body (the connection may close before it is sent).
            Ok(413) | Err(_) => {}
            Ok(other) => panic!("unexpected status {other}"),
        }
    }
    let repo = runproof_core::RepositoryId(r.repository_id);
    let (uploads, bytes) = h.service.store().pending_usage(repo).await.unwrap();
    assert!(
        bytes <= 1000,
        "{bytes} bytes pending against a quota of 1000"
    );
    assert_eq!((stored, uploads, bytes), (1, 1, 900));
    // Nothing of the refused ones is still reserved: the 100 bytes left are free.
    let claimed = RunSpec {
        run_id: 20_100,
        ..r.clone()
    };
    assert_eq!(
        upload_pending(&h, &claimed, "y".repeat(100).leak()).await.0,
        202
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_policy_require_action_holds_in_the_webhook_mode_too() {
    let gh = FakeGithub::start().await.unwrap();
    let creds = gh.register_app(APP_ID).unwrap();
    let base = run();
    gh.add_installation(
        INSTALLATION,
        &base.repository_owner,
        base.repository_owner_id,
        &[(base.repository_id, &base.repository)],
    );
    let h = Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(creds.private_key_pem))),
            webhook_secrets: vec![Secret::new(SECRET.into())],
            webhook_mode: Some(WebhookModeConfig::default()),
            require_action: Some(ACTION.into()),
            ..Default::default()
        },
    )
    .await;
    for (run_id, file, action, want) in [
        (201, "uses.yml", "runproof/upload-action@v1", "verified"),
        (202, "other.yml", "someone/else@v1", "rejected"),
    ] {
        let r = RunSpec {
            run_id,
            workflow: file.into(),
            ..base.clone()
        };
        h.gh.set_file(
            &r.repository,
            &format!(".github/workflows/{file}"),
            &r.sha,
            &workflow(action),
        );
        let (_, body, _) = upload_pending(&h, &r, "checked").await;
        let id = body["id"].as_str().unwrap().to_owned();
        send_run(&h, &payload(&r, "in_progress", "in_progress")).await;
        let s = settled(&h, &id).await;
        assert_eq!(s["status"], want, "[policy] require_action, {file}: {s}");
        if want == "rejected" {
            assert!(s["reason"].as_str().unwrap().contains(ACTION), "{s}");
        }
    }
    h.stop().await;
}
