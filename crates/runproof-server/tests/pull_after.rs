//! `GET /v1/uploads?after=`: the App's forward cursor through a real server. A poller that
//! starts from nothing and follows `next_cursor` sees every verified upload exactly once,
//! in the order they became verified: a pending (webhook mode) upload verified after
//! later OIDC uploads comes after them; an empty page keeps the cursor; uploads committed
//! while it polls are all seen. Each hostile case names its rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{API_KEY, Harness, Options, bearer};
use runproof_core::Secret;
use runproof_service::WebhookModeConfig;
use runproof_testkit::{RunSpec, WebhookSender, workflow_run_payload};
use serde_json::Value;

const SECRET: &str = "webhook-secret-0123456789";

async fn start() -> Harness {
    Harness::start_with(Options {
        webhook_secrets: vec![Secret::new(SECRET.into())],
        webhook_mode: Some(WebhookModeConfig::default()),
        ..Default::default()
    })
    .await
}

/// `GET /v1/uploads?<query>` with the API key: status and body.
async fn list(h: &Harness, query: &str) -> (u16, Value) {
    let resp = h.get(&format!("/v1/uploads?{query}"), Some(API_KEY)).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// One forward page after `cursor`: the ids, in order, and the next cursor.
async fn page_after(h: &Harness, cursor: &str, limit: u32) -> (Vec<String>, String) {
    let (status, body) = list(h, &format!("after={cursor}&limit={limit}")).await;
    assert_eq!(status, 200, "{body}");
    let uploads = body["uploads"].as_array().unwrap();
    for upload in uploads {
        assert_eq!(upload["status"], "verified", "{upload}");
    }
    let next = body["next_cursor"]
        .as_str()
        .unwrap_or_else(|| panic!("next_cursor is always a string: {body}"))
        .to_owned();
    let ids = uploads
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, next)
}

/// Follows `next_cursor` from `cursor` until a page comes back empty; returns every id
/// seen, in order, and the cursor to poll with next.
async fn drain(h: &Harness, mut cursor: String, limit: u32) -> (Vec<String>, String) {
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let (ids, next) = page_after(h, &cursor, limit).await;
        if ids.is_empty() {
            assert_eq!(next, cursor, "an empty page gives the same cursor back");
            return (seen, cursor);
        }
        seen.extend(ids);
        cursor = next;
    }
    panic!("the listing never ended");
}

async fn upload_oidc(h: &Harness, body: &'static str) -> String {
    let (status, json) = h
        .upload(Some(&bearer(&h.token())), "results.json", body)
        .await;
    assert_eq!(status, 201, "{json}");
    json["id"].as_str().unwrap().to_owned()
}

async fn upload_pending(h: &Harness, run: &RunSpec) -> String {
    let (status, json) = h
        .upload_with(
            None,
            "name=pending.json",
            "pending",
            &[
                (
                    "x-runproof-run",
                    &format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
                ),
                ("x-runproof-sha", &run.sha),
            ],
        )
        .await;
    assert_eq!(status, 202, "{json}");
    json["id"].as_str().unwrap().to_owned()
}

/// Sends the run's signed `workflow_run` webhook and waits until `id` is verified.
async fn verify_by_webhook(h: &Harness, run: &RunSpec, id: &str) {
    let payload = workflow_run_payload("in_progress", run, None, "in_progress", None);
    let sender = WebhookSender::new(format!("{}/v1/github/webhooks", h.url), SECRET.as_bytes());
    let (status, body, _) = sender.send("workflow_run", &payload).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let mut delay = Duration::from_millis(20);
    for _ in 0..40 {
        let (_, record) = list(h, "status=pending").await;
        let pending = record["uploads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == id);
        if !pending {
            let resp = h.get(&format!("/v1/uploads/{id}"), Some(API_KEY)).await;
            let record: Value = resp.json().await.unwrap();
            assert_eq!(record["status"], "verified", "{record}");
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
    panic!("the pending upload was never verified");
}

#[tokio::test]
async fn a_poller_from_nothing_sees_every_verified_upload_once_in_verification_order() {
    let h = start().await;
    // Nothing yet: an empty page, and a cursor to poll with all the same.
    let (ids, start_cursor) = page_after(&h, "", 100).await;
    assert!(ids.is_empty());
    let (ids, again) = page_after(&h, &start_cursor, 100).await;
    assert!(ids.is_empty());
    assert_eq!(again, start_cursor);

    let first = upload_oidc(&h, "first").await;
    let run = RunSpec::default();
    let pending = upload_pending(&h, &run).await;
    let second = upload_oidc(&h, "second").await;

    let (seen, cursor) = drain(&h, start_cursor.clone(), 1).await;
    assert_eq!(
        seen,
        [first.clone(), second.clone()],
        "the pending upload is not listed yet"
    );

    // Verified now, after `second` although received before it: it comes after.
    verify_by_webhook(&h, &run, &pending).await;
    let third = upload_oidc(&h, "third").await;
    let (seen, cursor) = drain(&h, cursor, 100).await;
    assert_eq!(seen, [pending.clone(), third.clone()]);
    let (ids, same) = page_after(&h, &cursor, 100).await;
    assert!(ids.is_empty());
    assert_eq!(same, cursor, "nothing new: the same cursor");

    // From nothing again, every verified upload exactly once, in verification order.
    let everything = [
        first.clone(),
        second.clone(),
        pending.clone(),
        third.clone(),
    ];
    let (seen, _) = drain(&h, String::new(), 1).await;
    assert_eq!(seen, everything);
    let (seen, _) = drain(&h, start_cursor, 3).await;
    assert_eq!(seen, everything);

    // A repository filter combines with `after` (every upload here is of one repository).
    let repository = h.claims()["repository_id"].as_str().unwrap().to_owned();
    assert_eq!(repository, run.repository_id.to_string());
    let (status, body) = list(&h, &format!("after=&repository_id={repository}")).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        everything.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let (status, body) = list(&h, "after=&repository_id=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uploads"], serde_json::json!([]));
    assert_eq!(body["next_cursor"], "0");

    // The backward listing is unchanged: newest id first, whatever the verification order.
    let (status, body) = list(&h, "").await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            third.as_str(),
            second.as_str(),
            pending.as_str(),
            first.as_str()
        ]
    );
    assert!(body["next_cursor"].is_null());
    let (status, body) = list(&h, &format!("limit=1&cursor={third}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["uploads"][0]["id"], second.as_str());
    h.stop().await;
}

#[tokio::test]
async fn rule_after_takes_only_its_own_cursors_and_no_status_or_backward_cursor() {
    let h = start().await;
    let id = upload_oidc(&h, "one").await;
    for bad in [
        "abc",
        "-1",
        "%2B1",
        "01",
        "1.5",
        "%201",
        "9223372036854775808",
        "99999999999999999999999",
        id.as_str(),
    ] {
        let (status, body) = list(&h, &format!("after={bad}")).await;
        assert_eq!(
            status, 400,
            "rule: a cursor that was never given out: {bad}"
        );
        assert_eq!(body["code"], "invalid_request", "{body}");
    }
    for combined in [
        format!("after=&cursor={id}"),
        "after=&status=verified".to_owned(),
        "after=0&status=pending".to_owned(),
        format!("after=0&cursor={id}&status=verified"),
    ] {
        let (status, body) = list(&h, &combined).await;
        assert_eq!(status, 400, "rule: after combines with neither: {combined}");
        assert_eq!(body["code"], "invalid_request", "{body}");
    }
    let (status, body) = list(&h, "after=&limit=0").await;
    assert_eq!(status, 400, "{body}");
    let resp = h.get("/v1/uploads?after=", None).await;
    assert_eq!(
        resp.status().as_u16(),
        401,
        "rule: the read API takes a key"
    );
    let resp = h.get("/v1/uploads?after=", Some("not-the-key")).await;
    assert_eq!(
        resp.status().as_u16(),
        401,
        "rule: the read API takes a key"
    );
    // A cursor far ahead is valid and simply finds nothing yet.
    let (status, body) = list(&h, "after=9223372036854775807").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["next_cursor"], "9223372036854775807");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rule_uploads_committed_while_polling_are_all_seen_once() {
    let h = Arc::new(start().await);
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let h = Arc::clone(&h);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..8 {
                ids.push(upload_oidc(&h, "concurrent").await);
            }
            ids
        }));
    }
    let mut cursor = String::new();
    let mut seen = Vec::new();
    let mut polls = 0;
    while !tasks.iter().all(tokio::task::JoinHandle::is_finished) && polls < 10_000 {
        let (ids, next) = page_after(&h, &cursor, 5).await;
        seen.extend(ids);
        cursor = next;
        polls += 1;
    }
    let mut written = HashSet::new();
    for task in tasks {
        written.extend(task.await.unwrap());
    }
    let (rest, _) = drain(&h, cursor, 5).await;
    seen.extend(rest);
    let distinct: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), seen.len(), "no upload is seen twice");
    assert_eq!(distinct, written, "every upload is seen");
    assert_eq!(written.len(), 48);
    Arc::into_inner(h).unwrap().stop().await;
}
