//! The webhook sender against a loopback receiver, and payload shapes against real ones.
// Helpers outside #[test] fns are test code too; clippy's in-test allowances miss them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use runproof_testkit::webhook::DEFAULT_HOOK_ID;
use runproof_testkit::{
    RunSpec, WebhookSender, installation_payload, installation_repositories_payload, sign_webhook,
    workflow_run_payload,
};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

const SECRET: &[u8] = b"It's a Secret to Everybody";
const WAIT: Duration = Duration::from_secs(5);

struct Delivery {
    headers: HeaderMap,
    body: Bytes,
}

/// A receiver that records every delivery and answers 202 "thanks".
async fn receiver() -> (String, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                tx.send(Delivery { headers, body }).unwrap();
                (StatusCode::ACCEPTED, "thanks")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

fn header<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a str> {
    delivery.headers.get(name).map(|v| v.to_str().unwrap())
}

fn hmac_hex(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn github_docs_vector() {
    assert_eq!(
        sign_webhook(SECRET, b"Hello, World!"),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    assert_eq!(
        sign_webhook(b"mysecret", br#"{"foo":"bar"}"#),
        "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3"
    );
}

#[tokio::test]
async fn send_signs_the_exact_bytes_with_github_headers() {
    let (url, mut rx) = receiver().await;
    let sender = WebhookSender::new(url.clone(), SECRET);
    assert_eq!(sender.url(), url);
    let payload = workflow_run_payload(
        "completed",
        &RunSpec::default(),
        Some(99),
        "completed",
        Some("success"),
    );

    let (status, body, delivery_id) = sender.send("workflow_run", &payload).await.unwrap();
    assert_eq!((status, body.as_str()), (202, "thanks"));
    assert!(uuid::Uuid::parse_str(&delivery_id).is_ok());

    let delivery = next(&mut rx).await;
    assert_eq!(
        delivery.body.as_ref(),
        serde_json::to_vec(&payload).unwrap()
    );
    let signature = header(&delivery, "x-hub-signature-256").unwrap();
    assert_eq!(
        signature,
        format!("sha256={}", hmac_hex(SECRET, &delivery.body))
    );
    assert_eq!(header(&delivery, "x-github-event"), Some("workflow_run"));
    assert_eq!(
        header(&delivery, "x-github-delivery"),
        Some(delivery_id.as_str())
    );
    assert_eq!(
        header(&delivery, "x-github-hook-id"),
        Some(DEFAULT_HOOK_ID.to_string().as_str())
    );
    assert!(
        header(&delivery, "user-agent")
            .unwrap()
            .starts_with("GitHub-Hookshot/")
    );
    assert_eq!(header(&delivery, "content-type"), Some("application/json"));
    let parsed: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(parsed, payload);

    // Each delivery gets its own id.
    let (_, _, second) = sender.send("workflow_run", &payload).await.unwrap();
    assert_ne!(second, delivery_id);
    next(&mut rx).await;
}

#[tokio::test]
async fn send_raw_for_hostile_tests() {
    let (url, mut rx) = receiver().await;
    let sender = WebhookSender::new(url, SECRET).with_hook_id(7);

    // No signature at all.
    let (status, _) = sender
        .send_raw("ping", "fixed-id", b"{}", None)
        .await
        .unwrap();
    assert_eq!(status, 202);
    let delivery = next(&mut rx).await;
    assert!(header(&delivery, "x-hub-signature-256").is_none());
    assert_eq!(header(&delivery, "x-github-delivery"), Some("fixed-id"));
    assert_eq!(header(&delivery, "x-github-hook-id"), Some("7"));

    // A forged signature, and a redelivery under the same id, sent verbatim.
    for _ in 0..2 {
        sender
            .send_raw("ping", "fixed-id", b"not json", Some("sha256=00"))
            .await
            .unwrap();
        let delivery = next(&mut rx).await;
        assert_eq!(header(&delivery, "x-hub-signature-256"), Some("sha256=00"));
        assert_eq!(header(&delivery, "x-github-delivery"), Some("fixed-id"));
        assert_eq!(delivery.body.as_ref(), b"not json");
    }
}

#[tokio::test]
async fn unreachable_receiver_is_an_error() {
    // Bind then drop to find a closed loopback port.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let sender = WebhookSender::new(format!("http://{addr}/hook"), SECRET);
    let result = sender.send("ping", &json!({})).await;
    assert!(result.is_err());
}

#[test]
fn installation_payload_shapes() {
    let payload = installation_payload("created", 12, "octo-org", 9919, &[(1, "octo-org/a")]);
    assert_eq!(payload["action"], "created");
    assert_eq!(payload["installation"]["id"], 12);
    assert_eq!(payload["installation"]["account"]["login"], "octo-org");
    assert_eq!(payload["installation"]["account"]["id"], 9919);
    assert_eq!(payload["repositories"][0]["id"], 1);
    assert_eq!(payload["repositories"][0]["full_name"], "octo-org/a");
    assert_eq!(payload["repositories"][0]["name"], "a");
    assert!(payload["installation"]["suspended_at"].is_null());
    let suspended = installation_payload("suspend", 12, "octo-org", 9919, &[]);
    assert!(suspended["installation"]["suspended_at"].is_string());

    let payload = installation_repositories_payload(
        "removed",
        12,
        "octo-org",
        9919,
        &[],
        &[(2, "octo-org/b")],
    );
    assert_eq!(payload["action"], "removed");
    assert_eq!(payload["repositories_added"], json!([]));
    assert_eq!(payload["repositories_removed"][0]["id"], 2);
    assert_eq!(payload["repository_selection"], "selected");
}

/// A payload under `tests/fixtures/realworld/webhook_payloads` of the workspace.
fn real_payload(path: &str) -> Value {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/webhook_payloads")
        .join(path);
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_slice(&bytes).unwrap()
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

/// Every member we send exists in the real payload's object.
fn assert_subset(ours: &Value, real: &Value, what: &str) {
    let extra: Vec<_> = keys(ours).difference(&keys(real)).cloned().collect();
    assert!(
        extra.is_empty(),
        "{what}: members GitHub does not send: {extra:?}"
    );
}

#[test]
fn payloads_match_real_deliveries() {
    let real = real_payload("workflow_run/completed.payload.json");
    let ours = workflow_run_payload(
        "completed",
        &RunSpec::default(),
        None,
        "completed",
        Some("success"),
    );
    assert_subset(&ours, &real, "workflow_run event");
    for member in [
        "workflow_run",
        "workflow",
        "repository",
        "organization",
        "sender",
    ] {
        assert_subset(&ours[member], &real[member], member);
    }
    for member in ["repository", "head_repository", "head_commit", "actor"] {
        assert_subset(
            &ours["workflow_run"][member],
            &real["workflow_run"][member],
            member,
        );
    }

    let real = real_payload("installation/created.payload.json");
    let ours = installation_payload("created", 1, "octo-org", 2, &[(3, "octo-org/x")]);
    assert_subset(&ours, &real, "installation event");
    assert_subset(
        &ours["repositories"][0],
        &real["repositories"][0],
        "repository",
    );
    let real_suspend = real_payload("installation/suspend.payload.json");
    assert_subset(
        &ours["installation"],
        &real_suspend["installation"],
        "installation",
    );

    let real = real_payload("installation_repositories/added.payload.json");
    let ours =
        installation_repositories_payload("added", 1, "octo-org", 2, &[(3, "octo-org/x")], &[]);
    assert_subset(&ours, &real, "installation_repositories event");
}
