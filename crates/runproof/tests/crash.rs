//! Crash safety: a real server process takes concurrent uploads and is SIGKILLed at random
//! moments over several rounds, restarted each time on the same data directory. Afterwards
//! every upload answered `201` is present with bytes matching its sha256, no record points
//! at a missing or partial blob, no partial blob is visible, and tokens accepted before a
//! crash are still refused as `token_replayed`.
//!
//! The seed is printed; `RUNPROOF_CRASH_SEED` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proc;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proc::{Rng, Server, client, free_port, list_all, sha256_hex, write_config};
use runproof_testkit::FakeGithub;
use serde_json::Value;

const AUDIENCE: &str = "https://runproof.crash.test";
const API_KEY: &str = "crash-api-key-0123456789";
const ROUNDS: usize = 4;
const TASKS: usize = 8;

/// An upload the server answered `201`.
struct Acked {
    id: String,
    sha256: String,
    size: usize,
    token: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_uploads_survive_sigkill() {
    let seed = std::env::var("RUNPROOF_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Rng::from_time().0);
    println!("RUNPROOF_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let gh = Arc::new(FakeGithub::start().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let http = client();
    let mut kills = 0;

    for round in 0..ROUNDS {
        let port = free_port();
        let config = write_config(dir.path(), port, &data, &gh.issuer(), AUDIENCE, API_KEY, "");
        let mut server = Server::start(&config, port, &log).await;
        // A crash leaves nothing in tmp/: the store clears it at start.
        assert_eq!(
            std::fs::read_dir(data.join("tmp")).unwrap().count(),
            0,
            "tmp/ cleared at start (round {round})"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let (gh, http, acked, stop) = (
                Arc::clone(&gh),
                http.clone(),
                Arc::clone(&acked),
                Arc::clone(&stop),
            );
            let base = server.base.clone();
            let mut rng = Rng(rng.next() | 1);
            tasks.push(tokio::spawn(async move {
                for i in 0..60 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let size = rng.below(256 * 1024) as usize;
                    let body = rng.bytes(size);
                    let sha = sha256_hex(&body);
                    let token = gh.token(AUDIENCE).unwrap();
                    let resp = http
                        .post(format!("{base}/v1/uploads?name=r{round}-t{t}-{i}.bin"))
                        .bearer_auth(&token)
                        .body(body)
                        .send()
                        .await;
                    let Ok(resp) = resp else { break };
                    let status = resp.status().as_u16();
                    let Ok(v) = resp.json::<Value>().await else {
                        break;
                    };
                    assert!(status < 500, "a 5xx before the crash: {status} {v}");
                    assert_eq!(status, 201, "{v}");
                    assert_eq!(v["sha256"], sha);
                    acked.lock().unwrap().push(Acked {
                        id: v["id"].as_str().unwrap().to_owned(),
                        sha256: sha,
                        size,
                        token,
                    });
                }
            }));
        }
        // Kill at a random moment while uploads are in flight.
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        server.kill9();
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        println!(
            "round {round}: killed; {} uploads acknowledged so far",
            acked.lock().unwrap().len()
        );
    }

    // Restart once more and check everything.
    let port = free_port();
    let config = write_config(dir.path(), port, &data, &gh.issuer(), AUDIENCE, API_KEY, "");
    let server = Server::start(&config, port, &log).await;
    assert_eq!(std::fs::read_dir(data.join("tmp")).unwrap().count(), 0);
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= ROUNDS, "uploads were acknowledged");
    let records = list_all(&http, &server.base, API_KEY).await;
    let by_id: HashMap<&str, &Value> = records
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r))
        .collect();

    // Every acknowledged upload is present with the right digest.
    for a in &acked {
        let r = by_id
            .get(a.id.as_str())
            .unwrap_or_else(|| panic!("acknowledged upload {} lost", a.id));
        assert_eq!(r["sha256"], a.sha256);
        assert_eq!(r["size"], a.size);
    }
    // No record points at a missing or partial blob.
    for r in &records {
        let id = r["id"].as_str().unwrap();
        let resp = http
            .get(format!("{}/v1/uploads/{id}/content", server.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "content of {id}");
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(sha256_hex(&bytes), r["sha256"].as_str().unwrap(), "{id}");
        assert_eq!(Some(bytes.len() as u64), r["size"].as_u64());
    }
    // No partial blob is visible: every file under blobs/ is complete (either a record's,
    // with its digest, or an orphan committed just before a kill, never readable).
    let ids: HashSet<&str> = by_id.keys().copied().collect();
    let mut orphans = 0;
    for shard in std::fs::read_dir(data.join("blobs")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let f = f.unwrap();
            let name = f.file_name().into_string().unwrap();
            assert!(
                !name.ends_with(".part"),
                "partial file under blobs/: {name}"
            );
            if !ids.contains(name.as_str()) {
                orphans += 1;
            }
        }
    }
    // Tokens accepted before a crash are still spent.
    let mut replayed = 0;
    for a in acked.iter().step_by((acked.len() / 20).max(1)) {
        let resp = http
            .post(format!("{}/v1/uploads?name=replay.bin", server.base))
            .bearer_auth(&a.token)
            .body("replay")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], "token_replayed", "{v}");
        replayed += 1;
    }
    println!(
        "crash: {kills} SIGKILLs, {} acknowledged uploads all present, {} records all intact, \
         {orphans} unreferenced complete blobs, {replayed} replays refused",
        acked.len(),
        records.len()
    );
}
