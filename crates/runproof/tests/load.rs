//! Load without loss: 64 concurrent clients against a real server process for
//! `RUNPROOF_LOAD_SECONDS` (default 10), mixing genuine uploads (OIDC tokens and upload
//! sessions) with hostile ones (replays, wrong audience, forged key, bad digest, oversized,
//! no credentials). Zero 5xx; every genuine upload accepted and then readable; every hostile
//! one rejected. Peak RSS and open fds of the server are reported and loosely bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proc;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proc::{Rng, Server, client, free_port, list_all, rss_and_fds, sha256_hex, write_config};
use runproof_testkit::{FakeGithub, TestKey};
use serde_json::Value;
use sha2::Digest as _;

const AUDIENCE: &str = "https://runproof.load.test";
const API_KEY: &str = "load-api-key-0123456789";
const CLIENTS: usize = 64;
const MAX_UPLOAD: usize = 1024 * 1024;

#[derive(Default)]
struct Tally {
    /// (kind, status) → count.
    outcomes: BTreeMap<(&'static str, u16), u64>,
    /// Ids and digests of accepted genuine uploads.
    accepted: Vec<(String, String)>,
    failures: Vec<String>,
}

fn digest_header(body: &[u8]) -> String {
    runproof_core::digest::format_content_digest(&sha2::Sha256::digest(body).into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_mixed_genuine_and_hostile() {
    let seconds: u64 = std::env::var("RUNPROOF_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed = Rng::from_time().0;
    println!("load: {CLIENTS} clients for {seconds} s, seed {seed}");
    let gh = Arc::new(FakeGithub::start().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &dir.path().join("data"),
        &gh.issuer(),
        AUDIENCE,
        API_KEY,
        "",
    );
    let server = Server::start(&config, port, &dir.path().join("server.log")).await;
    let base = server.base.clone();
    let http = client();
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let stranger = Arc::new(TestKey::generate(gh.current_key().kid()).unwrap());
    let mut rng = Rng(seed);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (gh, http, tally, base, stranger) = (
            Arc::clone(&gh),
            http.clone(),
            Arc::clone(&tally),
            base.clone(),
            Arc::clone(&stranger),
        );
        let mut rng = Rng(rng.next() | 1);
        let unpooled = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut session: Option<(String, u32)> = None;
            let mut spent: Vec<String> = Vec::new();
            for i in 0..100_000u32 {
                if Instant::now() >= deadline {
                    break;
                }
                let name = format!("c{c}-{i}.bin");
                let size = rng.below(64 * 1024) as usize;
                let body = rng.bytes(size);
                let kind: &'static str = match rng.below(10) {
                    0..=2 => "oidc",
                    3..=4 => "session",
                    5 => "replay",
                    6 => "wrong_audience",
                    7 => "forged_key",
                    8 => "bad_digest",
                    _ => match rng.below(2) {
                        0 => "oversized",
                        _ => "no_credentials",
                    },
                };
                let genuine = matches!(kind, "oidc" | "session");
                let mut body = body;
                let mut digest = Some(digest_header(&body));
                let auth: Option<String> = match kind {
                    "oidc" => {
                        let t = gh.token(AUDIENCE).unwrap();
                        spent.push(t.clone());
                        Some(t)
                    }
                    "session" => {
                        if session.as_ref().is_none_or(|(_, n)| *n >= 5) {
                            let oidc = gh.token(AUDIENCE).unwrap();
                            let resp = http
                                .post(format!("{base}/v1/sessions"))
                                .bearer_auth(&oidc)
                                .send()
                                .await
                                .unwrap();
                            let status = resp.status().as_u16();
                            let v: Value = resp.json().await.unwrap();
                            let mut t = tally.lock().unwrap();
                            *t.outcomes.entry(("session_open", status)).or_default() += 1;
                            if status != 201 && status != 200 {
                                t.failures.push(format!("session open: {status} {v}"));
                                continue;
                            }
                            session = Some((v["token"].as_str().unwrap().to_owned(), 0));
                        }
                        let s = session.as_mut().unwrap();
                        s.1 += 1;
                        Some(s.0.clone())
                    }
                    "replay" => match spent.first() {
                        Some(t) => Some(t.clone()),
                        None => continue,
                    },
                    "wrong_audience" => Some(gh.token("https://github.com/octo-org").unwrap()),
                    "forged_key" => Some(
                        stranger
                            .sign_claims(&Value::Object(gh.claims(AUDIENCE)))
                            .unwrap(),
                    ),
                    "bad_digest" => {
                        digest = Some(digest_header(b"something else"));
                        Some(gh.token(AUDIENCE).unwrap())
                    }
                    "oversized" => {
                        let extra = rng.below(4096) as usize;
                        body = rng.bytes(MAX_UPLOAD + 1 + extra);
                        digest = None;
                        Some(gh.token(AUDIENCE).unwrap())
                    }
                    _ => None,
                };
                let sha = sha256_hex(&body);
                // A hostile upload is refused before its body is read (or, oversized, cut
                // off mid-send) and its connection closed: keep such connections out of the
                // shared pool, where a client could reuse one the server has closed.
                let http = if !genuine { &unpooled } else { &http };
                let mut req = http
                    .post(format!("{base}/v1/uploads?name={name}"))
                    .body(body);
                if let Some(a) = auth {
                    req = req.bearer_auth(a);
                }
                if let Some(d) = digest {
                    req = req.header("content-digest", d);
                }
                let (status, text) = match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        (status, resp.text().await.unwrap_or_default())
                    }
                    // The server may close the connection of a refused body while it is still
                    // being sent; that is a rejection too.
                    Err(e) if !genuine => (499, e.to_string()),
                    Err(e) => (0, e.to_string()),
                };
                let mut t = tally.lock().unwrap();
                *t.outcomes.entry((kind, status)).or_default() += 1;
                let ok = if genuine {
                    status == 201
                } else {
                    (400..500).contains(&status)
                };
                if !ok {
                    t.failures.push(format!("{kind}: {status} {text}"));
                } else if genuine {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["sha256"] != sha {
                        t.failures.push(format!("{kind}: wrong sha256 {v}"));
                    }
                    t.accepted.push((v["id"].as_str().unwrap().to_owned(), sha));
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let (hwm_kib, fds) = rss_and_fds(server.pid());
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let total: u64 = tally.outcomes.values().sum();
    println!("load: {total} requests in {seconds} s");
    for ((kind, status), n) in &tally.outcomes {
        println!("  {kind:<15} {status} × {n}");
    }
    println!(
        "load: server peak RSS {} MiB, open fds {fds}",
        hwm_kib / 1024
    );
    assert!(
        tally.failures.is_empty(),
        "{} failures, first: {:?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(5)]
    );
    assert!(
        tally.outcomes.keys().all(|(_, s)| *s < 500 || *s == 499),
        "a 5xx"
    );
    assert!(!tally.accepted.is_empty());

    // Nothing acknowledged was lost.
    let records = list_all(&http, &base, API_KEY).await;
    let stored: HashSet<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for a in &tally.accepted {
        assert!(stored.contains(a), "accepted upload {} missing", a.0);
    }
    assert_eq!(
        records.len(),
        tally.accepted.len(),
        "no hostile upload stored"
    );
    assert!(hwm_kib < 512 * 1024, "peak RSS {hwm_kib} KiB");
    assert!(fds < 1000, "{fds} open fds");
}
