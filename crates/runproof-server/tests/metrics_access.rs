//! Who may read `/metrics`: the read API's keys on the main listener, or anyone who can
//! reach a listener of its own, never an anonymous client of the main listener.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{API_KEY, Harness, Options, bearer};
use serde_json::Value;

/// Issue 11: `/metrics` was public on the main listener and told anyone the upload counts
/// and webhook failures. By default it now takes an API key there.
#[tokio::test]
async fn rule_metrics_need_an_api_key_on_the_main_listener() {
    let h = Harness::start().await;
    for (key, code) in [
        (None, "missing_credentials"),
        (Some("not-a-configured-api-key-0123"), "invalid_api_key"),
    ] {
        let resp = h.get("/metrics", key).await;
        assert_eq!(resp.status(), 401, "key {key:?}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], code, "{problem}");
    }
    let resp = h.get("/metrics", Some(API_KEY)).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    // Health checks stay open to all.
    assert_eq!(h.get("/healthz", None).await.status(), 200);
    h.stop().await;
}

/// With `metrics_listen`, the main listener does not serve `/metrics` at all, not even to
/// an API key; the metrics listener serves it without one, and nothing else.
#[tokio::test]
async fn rule_metrics_listen_takes_metrics_off_the_main_listener() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    let h = Harness::start_with(Options {
        metrics_listen: Some(metrics_addr),
        ..Options::default()
    })
    .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runproof_server::serve_metrics(
        listener,
        h.state.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    for key in [None, Some(API_KEY)] {
        assert_eq!(h.get("/metrics", key).await.status(), 404, "key {key:?}");
    }
    // Something to count.
    let (status, _) = h.upload(Some(&bearer("x.y.z")), "a", "1").await;
    assert_eq!(status, 401);
    let resp = h
        .http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("runproof_verifications_total"), "{text}");
    for path in ["/v1/uploads", "/healthz", "/.well-known/runproof"] {
        let resp = h
            .http
            .get(format!("http://{metrics_addr}{path}"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path} on the metrics listener");
    }

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    h.stop().await;
}
