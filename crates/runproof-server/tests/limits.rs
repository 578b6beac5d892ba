//! Self-defence: the in-flight cap and the per-IP limit for requests without credentials
//! answer `429 rate_limited` with `Retry-After`, and the server keeps serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Harness, Options, bearer};
use runproof_server::LimitsConfig;
use tokio::io::AsyncWriteExt as _;

#[tokio::test]
async fn unauthenticated_requests_are_limited_per_ip_and_others_still_served() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            max_connections: 64,
            unauthenticated_per_ip_per_minute: 3,
        },
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        let (status, body) = h.upload_with(None, "name=a.txt", "x", &[]).await;
        assert_eq!(status, 401, "{body}");
    }
    let resp = h
        .http
        .post(format!("{}/v1/uploads?name=a.txt", h.url))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "rate_limited");
    // Requests with credentials and health probes are still served.
    let (status, body) = h
        .upload_with(Some(&bearer(&h.token())), "name=a.txt", "genuine", &[])
        .await;
    assert_eq!(status, 201, "{body}");
    let resp = h
        .http
        .get(format!("{}/healthz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(h.record_count().await, 1);
}

#[tokio::test]
async fn requests_over_the_in_flight_cap_are_refused_at_once_then_served_again() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            max_connections: 2,
            unauthenticated_per_ip_per_minute: 0,
        },
        ..Options::default()
    })
    .await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    // Two uploads with valid tokens whose bodies never finish hold both slots.
    let mut held = Vec::new();
    for i in 0..2 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/uploads?name=slow{i}.txt HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {}\r\nContent-Length: 100000\r\n\r\npartial",
            h.token()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        held.push(s);
    }
    // Bounded wait until both are in flight: a third request is refused at once.
    let mut refused = None;
    for _ in 0..100 {
        let resp = h
            .http
            .post(format!("{}/v1/uploads?name=c.txt", h.url))
            .header("authorization", bearer(&h.token()))
            .body("third")
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            refused = Some(resp);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = refused.expect("the third request was refused");
    assert_eq!(resp.headers()["retry-after"], "1");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "rate_limited");
    // Dropping the slow clients frees the slots; the server serves again.
    drop(held);
    let mut served = false;
    for _ in 0..100 {
        let (status, _) = h
            .upload_with(Some(&bearer(&h.token())), "name=d.txt", "after", &[])
            .await;
        if status == 201 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "served again once the slow clients left");
}
