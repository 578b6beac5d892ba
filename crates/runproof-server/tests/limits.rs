//! Self-defence: the in-flight cap, the per-IP and per-repository limits for requests
//! without credentials, and the limit on failed credentials answer `429 rate_limited` with
//! `Retry-After`; the connection cap holds new connections back; the header deadline closes
//! silent, trickling and idle connections; webhook deliveries whose signatures are not
//! checked yet are bounded in time, number and bytes per address; addresses forwarded by
//! trusted proxies are the clients'. The server keeps serving everyone else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Harness, Options, bearer};
use runproof_core::Secret;
use runproof_server::LimitsConfig;
use runproof_service::WebhookModeConfig;
use runproof_testkit::WebhookSender;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// An upload with credentials is accepted: everyone else is still served.
async fn assert_others_served(h: &Harness) {
    let (status, body) = h
        .upload_with(Some(&bearer(&h.token())), "name=a.txt", "genuine", &[])
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn unauthenticated_requests_are_limited_per_ip_and_others_still_served() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            unauthenticated_per_ip_per_minute: 3,
            unauthenticated_per_repository_per_minute: 0,
            ..LimitsConfig::default()
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
    assert_others_served(&h).await;
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
            max_requests_in_flight: 2,
            unauthenticated_per_ip_per_minute: 0,
            unauthenticated_per_repository_per_minute: 0,
            ..LimitsConfig::default()
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
    // Health checks are never behind the cap.
    for probe in ["healthz", "readyz"] {
        let status = h
            .http
            .get(format!("{}/{probe}", h.url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{probe}");
    }
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

/// A pending upload (no credentials) claiming a run of `repository`.
async fn pending(h: &Harness, repository: u64, run: u64) -> reqwest::Response {
    h.http
        .post(format!("{}/v1/uploads?name=results.json", h.url))
        .header("x-runproof-run", format!("{repository}/{run}/1"))
        .header("x-runproof-sha", "a".repeat(40))
        .body("pending")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn rule_unauthenticated_requests_are_limited_per_repository() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            unauthenticated_per_ip_per_minute: 0,
            unauthenticated_per_repository_per_minute: 3,
            ..LimitsConfig::default()
        },
        webhook_mode: Some(WebhookModeConfig::default()),
        ..Options::default()
    })
    .await;
    // Three pending uploads naming repository 100, each for another run.
    for run in 1..=3 {
        let resp = pending(&h, 100, run).await;
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    }
    let resp = pending(&h, 100, 4).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "rate_limited");
    assert!(
        v["detail"].as_str().unwrap().contains("repository 100"),
        "{v}"
    );
    // Nothing of the refused upload was stored: three pending records in all.
    assert_eq!(h.record_count().await, 3);
    // Another repository, and uploads with credentials, are still served.
    let resp = pending(&h, 200, 1).await;
    assert_eq!(resp.status(), 202);
    assert_others_served(&h).await;
}

#[tokio::test]
async fn an_unparsable_run_header_is_refused_by_the_handler_not_counted() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            unauthenticated_per_ip_per_minute: 0,
            unauthenticated_per_repository_per_minute: 1,
            ..LimitsConfig::default()
        },
        webhook_mode: Some(WebhookModeConfig::default()),
        ..Options::default()
    })
    .await;
    for _ in 0..3 {
        let resp = h
            .http
            .post(format!("{}/v1/uploads?name=results.json", h.url))
            .header("x-runproof-run", "100/not-a-run")
            .header("x-runproof-sha", "a".repeat(40))
            .body("pending")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }
    assert_eq!(pending(&h, 100, 1).await.status(), 202);
}

/// Reads until the server closes the connection (`true`) or `within` passes (`false`).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read).await.is_ok()
}

#[tokio::test]
async fn rule_silent_trickling_and_idle_connections_are_closed_at_the_header_deadline() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            header_timeout_seconds: 1,
            ..LimitsConfig::default()
        },
        ..Options::default()
    })
    .await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    // Connects and sends nothing.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Sends its headers a byte at a time, slower than the deadline allows.
    let mut trickling = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\n" {
            if trickling.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_within(&mut trickling, Duration::from_secs(5)).await
    });
    // Makes one request, then stays idle on the kept-alive connection.
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "silent closed"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)).await,
        "idle closed"
    );
    assert!(trickle.await.unwrap(), "trickling closed");
    // Everyone else is served.
    assert_others_served(&h).await;
}

#[tokio::test]
async fn rule_connections_over_the_cap_wait_until_one_closes() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            max_connections: 2,
            header_timeout_seconds: 0,
            ..LimitsConfig::default()
        },
        ..Options::default()
    })
    .await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let holders = [
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
    ];
    // A third connection is not served while two are open (its handshake completes in the
    // kernel's backlog, but no answer comes)...
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "no answer at the cap: {answer:?}");
    // ... and is served as soon as one of them closes.
    drop(holders);
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut answer))
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn rule_slow_body_is_cut_off_at_the_body_deadline() {
    let h = Harness::start_with(Options {
        body_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/uploads?name=slow.bin HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\nContent-Length: 100000\r\n\r\npartial",
        h.token()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    // Meanwhile everyone else is served.
    assert_others_served(&h).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer))
        .await
        .expect("answered at the deadline")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("invalid_request"), "{answer}");
    // Only the genuine upload is stored (its small body in the database); nothing of the
    // slow one is kept, not even a partial file.
    assert_eq!(h.record_count().await, 1);
    assert_eq!(h.blob_files(), (0, 0));
}

const WEBHOOK_SECRET: &str = "limits-webhook-secret-0123456789";

async fn webhook_harness(per_ip: u32) -> (Harness, WebhookSender, WebhookSender) {
    let h = Harness::start_with(Options {
        webhook_secrets: vec![Secret::new(WEBHOOK_SECRET.into())],
        limits: LimitsConfig {
            unauthenticated_per_ip_per_minute: per_ip,
            ..LimitsConfig::default()
        },
        ..Options::default()
    })
    .await;
    let url = format!("{}/v1/github/webhooks", h.url);
    let genuine = WebhookSender::new(url.clone(), WEBHOOK_SECRET.as_bytes());
    let forger = WebhookSender::new(url, b"not-the-webhook-secret-0123456789");
    (h, genuine, forger)
}

#[tokio::test]
async fn signed_deliveries_are_not_counted_against_the_address() {
    let (h, genuine, _) = webhook_harness(3).await;
    for _ in 0..10 {
        let (status, body, _) = genuine
            .send("ping", &json!({"zen": "Keep it logically awesome."}))
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = h.upload_with(None, "name=a.txt", "x", &[]).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn rule_forged_webhook_signatures_count_against_the_address() {
    let (h, genuine, forger) = webhook_harness(20).await;
    let ping = json!({"zen": "Anything added dilutes everything else."});
    // Each bad signature counts ten requests: the third try is over a limit of 20.
    for _ in 0..2 {
        let (status, body, _) = forger.send("ping", &ping).await.unwrap();
        assert_eq!(status, 401, "{body}");
    }
    let (status, body, _) = forger.send("ping", &ping).await.unwrap();
    assert_eq!(status, 429, "{body}");
    // The address is limited for everything without credentials until its window ends...
    let (status, body) = h.upload_with(None, "name=a.txt", "x", &[]).await;
    assert_eq!(status, 429, "{body}");
    // ... but a correctly signed delivery from it is still checked and served, and so are
    // uploads with credentials.
    let (status, body, _) = genuine.send("ping", &ping).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_others_served(&h).await;
}

#[tokio::test]
async fn rule_failed_credentials_count_against_the_address() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            unauthenticated_per_ip_per_minute: 3,
            unauthenticated_per_repository_per_minute: 0,
            ..LimitsConfig::default()
        },
        ..Options::default()
    })
    .await;
    // Good credentials are not counted.
    for i in 0..5 {
        let (status, body) = h
            .upload_with(
                Some(&bearer(&h.token())),
                &format!("name={i}.txt"),
                "ok",
                &[],
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // Junk in `Authorization` no longer skips the limit: each failure counts.
    for junk in ["Bearer junk", "Basic dXNlcjpwYXNz", "Bearer a.b.c"] {
        let (status, body) = h.upload_with(Some(junk), "name=j.txt", "x", &[]).await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body) = h
        .upload_with(Some("Bearer junk"), "name=j.txt", "x", &[])
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "rate_limited", "{body}");
    // A wrong API key is a failed credential too, and is refused now.
    let resp = h
        .http
        .get(format!("{}/v1/uploads", h.url))
        .header("authorization", "Bearer not-the-api-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    // The failures count against the address's limit for requests without credentials.
    let (status, body) = h.upload_with(None, "name=a.txt", "x", &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(h.record_count().await, 5);
}

#[tokio::test]
async fn rule_only_uploads_count_against_a_repository() {
    let h = Harness::start_with(Options {
        limits: LimitsConfig {
            unauthenticated_per_ip_per_minute: 0,
            unauthenticated_per_repository_per_minute: 3,
            ..LimitsConfig::default()
        },
        webhook_mode: Some(WebhookModeConfig::default()),
        ..Options::default()
    })
    .await;
    // Requests that name repository 100 but upload nothing do not spend its quota.
    for _ in 0..10 {
        let resp = h
            .http
            .get(format!("{}/.well-known/runproof", h.url))
            .header("x-runproof-run", "100/1/1")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    for run in 1..=3 {
        let resp = pending(&h, 100, run).await;
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap());
    }
    assert_eq!(pending(&h, 100, 4).await.status(), 429);
}

const GITHUB_ADDRESS: &str = "140.82.115.1";
const ATTACKER_ADDRESS: &str = "203.0.113.66";

/// A `ping` delivery signed with `secret`, as forwarded by a proxy for `client`: the status,
/// and how long the answer took.
async fn delivery_for(h: &Harness, secret: &[u8], client: &str) -> (u16, Duration) {
    let body = serde_json::to_vec(&json!({"zen": "Practicality beats purity."})).unwrap();
    let started = Instant::now();
    let resp = h
        .http
        .post(format!("{}/v1/github/webhooks", h.url))
        .header("x-forwarded-for", client)
        .header("x-github-event", "ping")
        .header("x-github-delivery", uuid_like())
        .header(
            "x-hub-signature-256",
            runproof_testkit::webhook::sign_webhook(secret, &body),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), started.elapsed())
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("delivery-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A delivery that claims a signature and a length, and sends `body` of it.
async fn held_delivery(
    h: &Harness,
    client: Option<&str>,
    length: usize,
    body: &[u8],
) -> tokio::net::TcpStream {
    let addr = h.url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let forwarded = client
        .map(|c| format!("X-Forwarded-For: {c}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /v1/github/webhooks HTTP/1.1\r\nHost: {addr}\r\n{forwarded}\
         X-GitHub-Event: ping\r\nX-GitHub-Delivery: {}\r\n\
         X-Hub-Signature-256: sha256={}\r\nContent-Length: {length}\r\n\r\n",
        uuid_like(),
        "0".repeat(64),
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s
}

/// The status of the answer on `stream`, or `None` when none comes `within`.
async fn answer(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<u16> {
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    let read = async {
        while !head.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok()?;
    let line = String::from_utf8_lossy(&head);
    line.split(' ').nth(1)?.parse().ok()
}

fn proxied(limits: LimitsConfig) -> Options {
    Options {
        webhook_secrets: vec![Secret::new(WEBHOOK_SECRET.into())],
        limits: LimitsConfig {
            trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
            ..limits
        },
        ..Options::default()
    }
}

#[tokio::test]
async fn rule_idle_and_forged_deliveries_do_not_lock_up_health_checks_or_signed_deliveries() {
    let h = Harness::start_with(proxied(LimitsConfig {
        max_requests_in_flight: 16,
        max_unverified_deliveries_per_address: 4,
        webhook_body_timeout_seconds: 2,
        header_timeout_seconds: 2,
        ..LimitsConfig::default()
    }))
    .await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    // One address holds 40 connections: 10 silent, 30 forged deliveries that announce
    // 1000 bytes and send none.
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut forged = Vec::new();
    for _ in 0..30 {
        forged.push(held_delivery(&h, Some(ATTACKER_ADDRESS), 1000, b"").await);
    }
    // Health checks and other addresses' signed deliveries are served at once.
    let started = Instant::now();
    let resp = h
        .http
        .get(format!("{}/healthz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let health = started.elapsed();
    let resp = h
        .http
        .get(format!("{}/readyz", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, signed) = delivery_for(&h, WEBHOOK_SECRET.as_bytes(), GITHUB_ADDRESS).await;
    assert_eq!(status, 200);
    eprintln!(
        "while 40 idle and forged connections are held: /healthz in {health:?}, a signed delivery in {signed:?}"
    );
    assert!(health < Duration::from_secs(5) && signed < Duration::from_secs(5));
    // Every forged delivery is answered: refused at once beyond the address's four, the
    // others cut off at the body deadline.
    let mut statuses = Vec::new();
    for stream in &mut forged {
        statuses.push(answer(stream, Duration::from_secs(10)).await);
    }
    assert!(
        statuses.iter().all(|s| matches!(s, Some(408 | 429))),
        "{statuses:?}"
    );
    let timed_out = statuses.iter().filter(|s| **s == Some(408)).count();
    assert!((4..30).contains(&timed_out), "{statuses:?}");
}

#[tokio::test]
async fn rule_slow_deliveries_do_not_hold_the_webhook_budget() {
    // A long body deadline: the budget alone must keep genuine deliveries served.
    let h = Harness::start_with(proxied(LimitsConfig {
        webhook_body_timeout_seconds: 60,
        ..LimitsConfig::default()
    }))
    .await;
    // Three deliveries announce 25, 25 and 14 MiB (64 MiB in all) and send one byte each.
    let mut slow = Vec::new();
    for mib in [25, 25, 14] {
        slow.push(held_delivery(&h, Some(ATTACKER_ADDRESS), mib * 1024 * 1024, b"{").await);
    }
    // Genuine deliveries, from GitHub's address and from the attacker's own, keep being
    // served while the slow ones are held.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        for client in [GITHUB_ADDRESS, ATTACKER_ADDRESS] {
            let (status, _) = delivery_for(&h, WEBHOOK_SECRET.as_bytes(), client).await;
            assert_eq!(status, 200, "a signed delivery from {client}");
        }
    }
    for stream in &mut slow {
        assert_eq!(
            answer(stream, Duration::from_millis(50)).await,
            None,
            "still held"
        );
    }
}

#[tokio::test]
async fn rule_forged_deliveries_behind_a_trusted_proxy_do_not_block_other_clients() {
    let h = Harness::start_with(proxied(LimitsConfig {
        unauthenticated_per_ip_per_minute: 20,
        ..LimitsConfig::default()
    }))
    .await;
    let forger = b"not-the-webhook-secret-0123456789";
    // Forged deliveries through the proxy strike their own client's address: 401, 401,
    // then 429.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(delivery_for(&h, forger, ATTACKER_ADDRESS).await.0);
    }
    assert_eq!(statuses, [401, 401, 429]);
    // Other clients behind the same proxy are served: GitHub's deliveries and the
    // discovery document the client needs.
    assert_eq!(
        delivery_for(&h, WEBHOOK_SECRET.as_bytes(), GITHUB_ADDRESS)
            .await
            .0,
        200
    );
    let resp = h
        .http
        .get(format!("{}/.well-known/runproof", h.url))
        .header("x-forwarded-for", "198.51.100.20")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A correctly signed delivery is never refused for the strikes of forged ones.
    assert_eq!(
        delivery_for(&h, WEBHOOK_SECRET.as_bytes(), ATTACKER_ADDRESS)
            .await
            .0,
        200
    );
    // The forger stays limited, whatever it writes into `X-Forwarded-For` itself: the
    // proxy's entry is the rightmost.
    let resp = h
        .http
        .get(format!("{}/.well-known/runproof", h.url))
        .header(
            "x-forwarded-for",
            format!("198.51.100.21, {ATTACKER_ADDRESS}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
}

#[tokio::test]
async fn a_forwarded_address_is_not_believed_from_an_untrusted_peer() {
    let (h, _, forger) = webhook_harness(20).await;
    let ping = json!({"zen": "Mind your words, they are important."});
    for _ in 0..3 {
        let _ = forger.send("ping", &ping).await.unwrap();
    }
    // 127.0.0.1 is not a trusted proxy here: its `X-Forwarded-For` changes nothing.
    let resp = h
        .http
        .get(format!("{}/.well-known/runproof", h.url))
        .header("x-forwarded-for", "198.51.100.20")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
}
