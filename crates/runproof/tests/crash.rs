//! Crash safety: a real server process takes concurrent uploads (OIDC tokens, and pending
//! uploads of the webhook mode approved by signed `workflow_run` webhooks) and pushes them
//! to an App endpoint that fails a third of the time. It is SIGKILLed at random moments over
//! several rounds, restarted each time on the same data directory. Afterwards every upload
//! answered `201` or `202` is present with bytes matching its sha256 (bodies up to 64 KiB
//! stored in the database with their record, larger ones as blobs), no record points at a
//! missing or partial blob, no partial blob is visible, blobs left without a record by a
//! kill are collected, tokens accepted before a crash are
//! still refused as `token_replayed`, every pending upload is approved once its run is, and
//! every upload is delivered to the App: the outbox and the pending uploads resume.
//!
//! A SIGKILL keeps the page cache, so those rounds cannot show that a blob was fsynced.
//! Another test watches the server's system calls under `strace`: each blob is fsynced
//! before its rename into `blobs/`, and its directory after the rename and before the
//! answer.
//!
//! The seed is printed; `RUNPROOF_CRASH_SEED` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proc;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use proc::{Rng, Server, client, free_port, list_all, sha256_hex, write_config};
use runproof_testkit::{FakeGithub, RunSpec, WebhookSender, sign_webhook, workflow_run_payload};
use serde_json::Value;

const AUDIENCE: &str = "https://runproof.crash.test";
const API_KEY: &str = "crash-api-key-0123456789";
const WEBHOOK_SECRET: &str = "crash-webhook-secret-0123456789";
const DELIVERY_SECRET: &str = "crash-delivery-secret-0123456789";
const APP_ID: u64 = 5151;
const INSTALLATION: u64 = 51;
const ROUNDS: usize = 4;
const TASKS: usize = 8;
/// `[storage] inline_max_bytes` by default: bodies up to this size live in the database.
const INLINE_MAX_BYTES: usize = 64 * 1024;

/// An upload the server answered `201` (with its token) or `202` (with its run).
struct Acked {
    id: String,
    sha256: String,
    size: usize,
    token: Option<String>,
    run: Option<RunSpec>,
}

/// The App's endpoint: checks each push's signature, records it, and fails every third.
/// A push with a bad signature or an unreadable body is counted, not panicked on: a panic
/// in a handler would show only as a delivery that never arrives.
struct Receiver {
    url: String,
    seen: Arc<Mutex<HashMap<String, u32>>>,
    bad: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ReceiverState {
    seen: Arc<Mutex<HashMap<String, u32>>>,
    bad: Arc<AtomicU64>,
    calls: Arc<AtomicU64>,
    flaky: Arc<AtomicBool>,
}

impl Receiver {
    async fn start(flaky: Arc<AtomicBool>) -> Self {
        let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let bad: Arc<AtomicU64> = Arc::default();
        let state = ReceiverState {
            seen: Arc::clone(&seen),
            bad: Arc::clone(&bad),
            calls: Arc::default(),
            flaky,
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            seen,
            bad,
            task,
        }
    }

    /// The ids of `ids` not delivered yet.
    fn missing<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
        let seen = self.seen.lock().unwrap();
        ids.filter(|id| !seen.contains_key(*id)).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("x-runproof-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if signature != sign_webhook(DELIVERY_SECRET.as_bytes(), &body) {
        state.bad.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED;
    }
    if state.flaky.load(Ordering::Relaxed) && state.calls.fetch_add(1, Ordering::Relaxed) % 3 == 0 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let upload = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|p| p["upload"]["id"].as_str().map(str::to_owned));
    let Some(upload) = upload else {
        state.bad.fetch_add(1, Ordering::Relaxed);
        return StatusCode::BAD_REQUEST;
    };
    *state.seen.lock().unwrap().entry(upload).or_default() += 1;
    StatusCode::OK
}

/// The server's configuration beyond the basics: the App, the webhook mode, delivery.
fn extra_config(gh: &FakeGithub, dir: &Path, receiver: &str) -> String {
    let app = gh.register_app(APP_ID).unwrap();
    let key = dir.join("app.pem");
    std::fs::write(&key, &app.private_key_pem).unwrap();
    format!(
        r#"
[github]
api_url = "{api}"
app_id = {APP_ID}
private_key_file = '{key}'
webhook_secrets = ["{WEBHOOK_SECRET}"]
timeout_seconds = 5

[webhook_mode]
enabled = true

[delivery]
url = "{receiver}"
secrets = ["{DELIVERY_SECRET}"]
timeout_seconds = 2
backoff_seconds = 1
max_backoff_seconds = 2
max_attempts = 1000

[limits]
unauthenticated_per_ip_per_minute = 0
unauthenticated_per_repository_per_minute = 0
"#,
        api = gh.base_url(),
        key = key.display(),
    )
}

/// The names of the files under `blobs/`.
fn blob_names(data: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for shard in std::fs::read_dir(data.join("blobs")).unwrap() {
        for f in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            names.push(f.unwrap().file_name().into_string().unwrap());
        }
    }
    names
}

/// A signed `workflow_run` completed with success: GitHub vouches for `run`.
async fn approve(sender: &WebhookSender, run: &RunSpec) -> bool {
    let mut payload = workflow_run_payload(
        "completed",
        run,
        Some(INSTALLATION),
        "completed",
        Some("success"),
    );
    // The run started before its uploads (the fake stamps the time the payload is built,
    // and an upload received before its attempt started is rejected).
    let started = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    if let Ok(started) = started.format(&time::format_description::well_known::Rfc3339) {
        payload["workflow_run"]["run_started_at"] = started.into();
    }
    matches!(sender.send("workflow_run", &payload).await, Ok((200, _, _)))
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
    let base_run = gh.run();
    gh.add_installation(
        INSTALLATION,
        &base_run.repository_owner,
        base_run.repository_owner_id,
        &[(base_run.repository_id, &base_run.repository)],
    );
    let flaky = Arc::new(AtomicBool::new(true));
    let receiver = Receiver::start(Arc::clone(&flaky)).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = extra_config(&gh, dir.path(), &receiver.url);
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let http = client();
    let mut kills = 0;
    let next_run = Arc::new(AtomicU64::new(7_000_000));
    // Every run a pending upload claimed, answered or not.
    let claimed: Arc<Mutex<Vec<RunSpec>>> = Arc::default();
    let mut approved_before_crash = 0;

    for round in 0..ROUNDS {
        let port = free_port();
        let config = write_config(
            dir.path(),
            port,
            &data,
            &gh.issuer(),
            AUDIENCE,
            API_KEY,
            &extra,
        );
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
            let (gh, http, acked, stop, next_run, claimed) = (
                Arc::clone(&gh),
                http.clone(),
                Arc::clone(&acked),
                Arc::clone(&stop),
                Arc::clone(&next_run),
                Arc::clone(&claimed),
            );
            let base = server.base.clone();
            let mut rng = Rng(rng.next() | 1);
            let base_run = base_run.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..60 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let size = rng.below(256 * 1024) as usize;
                    let body = rng.bytes(size);
                    let sha = sha256_hex(&body);
                    let request = http
                        .post(format!("{base}/v1/uploads?name=r{round}-t{t}-{i}.bin"))
                        .body(body);
                    // One upload in three is a pending upload of a run of its own.
                    let (request, token, run) = if rng.below(3) == 0 {
                        let run = RunSpec {
                            run_id: next_run.fetch_add(1, Ordering::Relaxed),
                            ..base_run.clone()
                        };
                        claimed.lock().unwrap().push(run.clone());
                        let request = request
                            .header(
                                "x-runproof-run",
                                format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
                            )
                            .header("x-runproof-sha", &run.sha);
                        (request, None, Some(run))
                    } else {
                        let token = gh.token(AUDIENCE).unwrap();
                        (request.bearer_auth(&token), Some(token), None)
                    };
                    let Ok(resp) = request.send().await else {
                        break;
                    };
                    let status = resp.status().as_u16();
                    let Ok(v) = resp.json::<Value>().await else {
                        break;
                    };
                    assert!(status < 500, "a 5xx before the crash: {status} {v}");
                    let expected = if run.is_some() { 202 } else { 201 };
                    assert_eq!(status, expected, "{v}");
                    assert_eq!(v["sha256"], sha);
                    acked.lock().unwrap().push(Acked {
                        id: v["id"].as_str().unwrap().to_owned(),
                        sha256: sha,
                        size,
                        token,
                        run,
                    });
                }
            }));
        }
        // Meanwhile GitHub vouches for some of the runs already claimed.
        let approver = {
            let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
            let sender = WebhookSender::new(
                format!("{}/v1/github/webhooks", server.base),
                WEBHOOK_SECRET.as_bytes(),
            );
            let mut rng = Rng(rng.next() | 1);
            tokio::spawn(async move {
                let mut approved = 0;
                while !stop.load(Ordering::Relaxed) {
                    let runs: Vec<RunSpec> = acked
                        .lock()
                        .unwrap()
                        .iter()
                        .filter_map(|a| a.run.clone())
                        .collect();
                    if !runs.is_empty() {
                        let run = &runs[rng.below(runs.len() as u64) as usize];
                        if approve(&sender, run).await {
                            approved += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                approved
            })
        };
        // Kill at a random moment while uploads are in flight.
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        server.kill9();
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        approved_before_crash += approver.await.unwrap();
        println!(
            "round {round}: killed; {} uploads acknowledged so far",
            acked.lock().unwrap().len()
        );
    }

    // Restart once more and check everything. A kill between a blob's commit and its
    // record's insert leaves a complete blob no record names: with a grace of 1 s (no
    // upload is in flight now), the collector deletes those at start.
    let blobs_before = blob_names(&data).len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &data,
        &gh.issuer(),
        AUDIENCE,
        API_KEY,
        &format!("orphan_blob_grace_seconds = 1\n{extra}"),
    );
    let server = Server::start(&config, port, &log).await;
    assert_eq!(std::fs::read_dir(data.join("tmp")).unwrap().count(), 0);
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= ROUNDS, "uploads were acknowledged");

    // Pending uploads resume: GitHub vouches for every claimed run (again, for some), and
    // every pending upload, acknowledged before a crash or committed unanswered, ends
    // verified.
    let sender = WebhookSender::new(
        format!("{}/v1/github/webhooks", server.base),
        WEBHOOK_SECRET.as_bytes(),
    );
    let pending = acked.iter().filter(|a| a.run.is_some()).count();
    let claimed = std::mem::take(&mut *claimed.lock().unwrap());
    for run in &claimed {
        assert!(
            approve(&sender, run).await,
            "approval of run {}",
            run.run_id
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let records = loop {
        let records = list_all(&http, &server.base, API_KEY).await;
        let unsettled: Vec<&Value> = records
            .iter()
            .filter(|r| r["status"] != "verified")
            .collect();
        if unsettled.is_empty() {
            break records;
        }
        assert!(
            Instant::now() < deadline,
            "{} uploads still not verified after their runs were approved: {:?}",
            unsettled.len(),
            unsettled.first()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The outbox resumes: every acknowledged upload reaches the App, pushes that failed or
    // were cut by a kill included.
    flaky.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert_eq!(
            receiver.bad.load(Ordering::Relaxed),
            0,
            "pushes with a bad signature or an unreadable body"
        );
        let missing = receiver.missing(acked.iter().map(|a| a.id.as_str()));
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged uploads never delivered: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        receiver.bad.load(Ordering::Relaxed),
        0,
        "pushes with a bad signature or an unreadable body"
    );
    let deliveries: u32 = receiver.seen.lock().unwrap().values().sum();
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
    // Bodies up to inline_max_bytes (the default, 64 KiB) live in the database, larger
    // ones in blobs/: the rounds must have acknowledged both kinds.
    let inline = acked.iter().filter(|a| a.size <= INLINE_MAX_BYTES).count();
    assert!(
        inline > 0 && inline < acked.len(),
        "{inline} of {} acknowledged bodies inline: both kinds must be covered",
        acked.len()
    );
    let in_blobs: HashSet<&str> = records
        .iter()
        .filter(|r| r["size"].as_u64().unwrap() > INLINE_MAX_BYTES as u64)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    // No partial blob is visible, and no blob without a record is left once the collector
    // ran: blobs/ holds exactly the records' blobs (bounded wait for the collector).
    let ids: HashSet<&str> = by_id.keys().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = blob_names(&data);
        for name in &names {
            assert!(
                !name.ends_with(".part"),
                "partial file under blobs/: {name}"
            );
        }
        let unreferenced = names.iter().filter(|n| !ids.contains(n.as_str())).count();
        if unreferenced == 0 {
            assert_eq!(
                names.len(),
                in_blobs.len(),
                "every record of a body over inline_max_bytes has its blob, and no other"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unreferenced} unreferenced blobs left after the collector ran"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let orphans = blobs_before - in_blobs.len();
    // Tokens accepted before a crash are still spent.
    let mut replayed = 0;
    let tokens: Vec<&String> = acked.iter().filter_map(|a| a.token.as_ref()).collect();
    for token in tokens.iter().step_by((tokens.len() / 20).max(1)) {
        let resp = http
            .post(format!("{}/v1/uploads?name=replay.bin", server.base))
            .bearer_auth(token)
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
        "crash: {kills} SIGKILLs, {} acknowledged uploads ({} pending, {approved_before_crash} \
         approvals before a crash) all present, all verified and all delivered ({deliveries} \
         pushes received), {} records all intact, {orphans} unreferenced complete blobs collected, \
         {replayed} replays refused",
        acked.len(),
        pending,
        records.len()
    );
}

/// One system call of an strace log, with the log lines of its entry and of its exit.
struct Call {
    name: String,
    args: String,
    ret: String,
    entry: usize,
    exit: usize,
}

impl Call {
    /// The path strace shows for the first argument, a file descriptor (`-yy`).
    fn fd_path(&self) -> Option<&str> {
        let (_, rest) = self.args.split_once('<')?;
        Some(rest.split_once('>')?.0)
    }

    /// The quoted arguments (paths of a rename).
    fn strings(&self) -> Vec<&str> {
        self.args.split('"').skip(1).step_by(2).collect()
    }
}

/// The calls of an `strace -f` log, a call split across lines (`<unfinished ...>`, then
/// `<... resumed>`) joined again.
fn calls(trace: &str) -> Vec<Call> {
    let mut out = Vec::new();
    let mut open: HashMap<&str, (String, String, usize)> = HashMap::new();
    for (i, line) in trace.lines().enumerate() {
        let Some((pid, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            if let Some((name, args)) = head.split_once('(') {
                open.insert(pid, (name.to_owned(), args.to_owned(), i));
            }
        } else if let Some(tail) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = tail.split_once(" resumed>") else {
                continue;
            };
            let Some((name, args, entry)) = open.remove(pid) else {
                continue;
            };
            let (more, ret) = tail.rsplit_once(" = ").unwrap_or((tail, "?"));
            out.push(Call {
                name,
                args: args + more,
                ret: ret.trim().to_owned(),
                entry,
                exit: i,
            });
        } else if let Some((head, ret)) = rest.rsplit_once(" = ")
            && let Some((name, args)) = head.split_once('(')
        {
            out.push(Call {
                name: name.to_owned(),
                args: args.to_owned(),
                ret: ret.trim().to_owned(),
                entry: i,
                exit: i,
            });
        }
    }
    out
}

/// Rule: a blob is durable before it is visible and before its upload is acknowledged, and
/// so is a small body stored in the database.
/// Under `strace`, for every upload answered `201`: the last write to its temporary file
/// ends before that file's fsync, the fsync (returning 0) ends before the rename into
/// `blobs/<xx>/<id>`, and an fsync of `blobs/<xx>` starts after the rename and ends before
/// the answer naming the id is written to the client's connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_blobs_are_fsynced_before_their_rename_and_their_directory_before_the_answer() {
    let strace = std::process::Command::new("strace")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !strace {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "strace is missing, and with CI=true this test must run (.ci/run installs it)"
        );
        println!("SKIPPED: strace is missing; the fsync order was not checked");
        return;
    }
    let gh = FakeGithub::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let trace_file = dir.path().join("strace.log");
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
    let mut server = Server::start_traced(
        &config,
        port,
        &dir.path().join("server.log"),
        &trace_file,
        "fsync,fdatasync,rename,renameat,renameat2,write,writev,pwrite64,sendto,sendmsg",
    )
    .await;
    // A few at once, so that commits interleave across the blocking pool's threads.
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let (http, base) = (http.clone(), server.base.clone());
        let token = gh.token(AUDIENCE).unwrap();
        tasks.push(tokio::spawn(async move {
            // Past inline_max_bytes (64 KiB): a blob.
            let body = Rng(i + 1).bytes(64 * 1024 + 1 + i as usize);
            let resp = http
                .post(format!("{base}/v1/uploads?name=durable-{i}.bin"))
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            let v: Value = resp.json().await.unwrap();
            v["id"].as_str().unwrap().to_owned()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    // Then, alone, a small body: it lives in the database, committed through the WAL.
    let resp = http
        .post(format!("{}/v1/uploads?name=inline.bin", server.base))
        .bearer_auth(gh.token(AUDIENCE).unwrap())
        .body(Rng(99).bytes(1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let inline_id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.stop_traced();
    let trace = std::fs::read_to_string(&trace_file).unwrap();
    let calls = calls(&trace);

    for id in &ids {
        let rename = calls
            .iter()
            .find(|c| {
                c.name.starts_with("rename")
                    && c.strings()
                        .last()
                        .is_some_and(|d| d.ends_with(&format!("/{id}")))
            })
            .unwrap_or_else(|| panic!("no rename of a file to the blob of {id}"));
        assert_eq!(rename.ret, "0", "the rename of {id}");
        let strings = rename.strings();
        let (part, dest) = (strings[0], strings[strings.len() - 1]);
        let part_name = format!("/{}>", part.rsplit('/').next().unwrap());
        let shard = dest.rsplit_once('/').unwrap().0;
        let shard_name = format!("/blobs/{}>", shard.rsplit('/').next().unwrap());
        let on_part = |c: &&Call| c.args.contains(&part_name);

        let fsync = calls
            .iter()
            .filter(|c| matches!(c.name.as_str(), "fsync" | "fdatasync"))
            .filter(on_part)
            .find(|c| c.exit < rename.entry)
            .unwrap_or_else(|| panic!("{id}: {part} renamed without an fsync before"));
        assert_eq!(fsync.ret, "0", "{id}: the fsync of {part}");
        let last_write = calls
            .iter()
            .filter(|c| c.name.starts_with("write") || c.name.starts_with("pwrite"))
            .filter(on_part)
            .map(|c| c.exit)
            .max()
            .unwrap_or_else(|| panic!("{id}: no write to {part}"));
        assert!(
            last_write < fsync.entry,
            "{id}: written to after its fsync started"
        );

        let answer = calls
            .iter()
            .filter(|c| c.name.starts_with("write") || c.name.starts_with("send"))
            .filter(|c| c.fd_path().is_some_and(|p| p.starts_with("TCP:")))
            .find(|c| c.entry > rename.exit && c.args.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{id}: the answer naming it was not seen"));
        let dir_sync = calls
            .iter()
            .filter(|c| c.name == "fsync" && c.args.contains(&shard_name))
            .find(|c| c.entry > rename.exit && c.exit < answer.entry)
            .unwrap_or_else(|| {
                panic!("{id}: {shard} not fsynced between the rename and the answer")
            });
        assert_eq!(dir_sync.ret, "0", "{id}: the fsync of {shard}");
    }
    // The small body: after every earlier answer, its batch is written to the WAL, the
    // WAL is fsynced, and only then is the answer naming it written.
    let answers = |id: &str| {
        calls
            .iter()
            .filter(|c| c.name.starts_with("write") || c.name.starts_with("send"))
            .filter(|c| c.fd_path().is_some_and(|p| p.starts_with("TCP:")))
            .find(|c| c.args.contains(id))
            .map(|c| c.entry)
    };
    let earlier = ids.iter().map(|id| answers(id).unwrap()).max().unwrap();
    let answer = answers(&inline_id).expect("the answer naming the small body's upload");
    let on_wal = |c: &&Call| c.args.contains("-wal>");
    let wal_write = calls
        .iter()
        .filter(|c| c.name.starts_with("pwrite") || c.name.starts_with("write"))
        .filter(on_wal)
        .find(|c| c.entry > earlier && c.exit < answer)
        .unwrap_or_else(|| panic!("{inline_id}: no write to the WAL before its answer"));
    let wal_sync = calls
        .iter()
        .filter(|c| matches!(c.name.as_str(), "fsync" | "fdatasync"))
        .filter(on_wal)
        .find(|c| c.entry > wal_write.exit && c.exit < answer)
        .unwrap_or_else(|| {
            panic!("rule: {inline_id} answered without an fsync of the WAL after its commit")
        });
    assert_eq!(wal_sync.ret, "0", "the fsync of the WAL");
    println!(
        "durability: {} blobs, each fsynced before its rename, its directory fsynced after the \
         rename and before the answer; a small body's commit fsynced in the WAL before its \
         answer ({} system calls traced)",
        ids.len(),
        calls.len()
    );
}
