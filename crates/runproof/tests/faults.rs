//! Faults of the server's own dependencies, against a real server process:
//! - storage full (a 2 MiB tmpfs, when this runs as root and may mount; else skipped with a
//!   printed line, and a failure with `CI=true`): exactly the bodies that fit are stored,
//!   then `507 storage_unavailable`, nothing partial kept, reads still work;
//! - the database unreachable at start: a clear error without the URL's credentials, and a
//!   non-zero exit;
//! - the database lost during operation (PostgreSQL behind a proxy that cuts every
//!   connection): `503 storage_unavailable` with `Retry-After`, nothing partial kept, then
//!   recovery without a restart once it is back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proc;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use proc::{
    Rng, Schema, Server, client, free_port, list_all, serve_until_exit, sha256_hex, write_config,
};
use runproof_testkit::FakeGithub;
use serde_json::Value;

const AUDIENCE: &str = "https://runproof.faults.test";
const API_KEY: &str = "faults-api-key-0123456789";

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

/// Runs `args` as root: directly, else through passwordless sudo (as on GitHub's runners).
fn as_root(args: &[&std::ffi::OsStr]) -> bool {
    let run = |program: &str, args: &[&std::ffi::OsStr]| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let (program, rest) = args.split_first().unwrap();
    run(program.to_str().unwrap(), rest) || run("sudo", &[&["-n".as_ref()], args].concat())
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).ok()?;
        let options = format!("size={size},mode=1777");
        let ok = as_root(&[
            "mount".as_ref(),
            "-t".as_ref(),
            "tmpfs".as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            "tmpfs".as_ref(),
            dir.as_os_str(),
        ]);
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        as_root(&["umount".as_ref(), "-l".as_ref(), self.0.as_os_str()]);
    }
}

/// Whether this run must not skip a test for want of a prerequisite.
fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_full_is_refused_cleanly_and_reads_keep_working() {
    const FS_KIB: usize = 2048;
    const BODY_KIB: usize = 384;
    let dir = tempfile::tempdir().unwrap();
    let Some(mnt) = Tmpfs::mount(&dir.path().join("blobs-fs"), &format!("{FS_KIB}k")) else {
        assert!(
            !ci(),
            "cannot mount a tmpfs (not root?), and with CI=true the storage-full test must run"
        );
        println!("SKIPPED storage_full: cannot mount a tmpfs here (not root?)");
        return;
    };
    let gh = FakeGithub::start().await.unwrap();
    let port = free_port();
    let extra = format!("blob_store = \"file://{}\"", mnt.0.display());
    let config = write_config(
        dir.path(),
        port,
        &dir.path().join("data"),
        &gh.issuer(),
        AUDIENCE,
        API_KEY,
        &extra,
    );
    let server = Server::start(&config, port, &dir.path().join("server.log")).await;
    let http = client();
    let mut rng = Rng::from_time();
    let mut stored = Vec::new();
    let mut refused = None;
    // Five bodies fit in 2 MiB (tmpfs counts whole pages, the rest is a few KiB); the
    // sixth finds no room. Bounded.
    for i in 0..20 {
        let body = rng.bytes(BODY_KIB * 1024);
        let resp = http
            .post(format!("{}/v1/uploads?name=f{i}.bin", server.base))
            .bearer_auth(gh.token(AUDIENCE).unwrap())
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        if status == 201 {
            stored.push((v["id"].as_str().unwrap().to_owned(), sha256_hex(&body)));
            continue;
        }
        assert_eq!(status, 507, "a full disk is 507: {v}");
        assert_eq!(v["code"], "storage_unavailable", "{v}");
        refused = Some(status);
        break;
    }
    let refused = refused.expect("the full disk was reported");
    assert_eq!(
        stored.len(),
        FS_KIB / BODY_KIB,
        "every body that fits is stored, and the first that does not is refused"
    );
    // Nothing partial is kept: tmp/ is empty and blobs/ holds exactly the stored bodies.
    assert_eq!(
        files_under(&mnt.0.join("tmp")),
        0,
        "no partial body in tmp/"
    );
    assert_eq!(files_under(&mnt.0.join("blobs")), stored.len());
    let records = list_all(&http, &server.base, API_KEY).await;
    assert_eq!(
        records.len(),
        stored.len(),
        "no record for the refused upload"
    );
    // Reads keep working.
    for (id, sha) in &stored {
        let resp = http
            .get(format!("{}/v1/uploads/{id}/content", server.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(&sha256_hex(&resp.bytes().await.unwrap()), sha);
    }
    println!(
        "storage full: {} uploads stored, then {refused} storage_unavailable; tmp/ empty; \
         reads intact",
        stored.len()
    );
    drop(server);
}

/// Runs `serve` with `extra` config and returns (exit success, stderr), bounded to 60 s.
fn serve_expecting_exit(extra: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &dir.path().join("data"),
        "https://issuer.invalid",
        AUDIENCE,
        API_KEY,
        extra,
    );
    let log = dir.path().join("server.log");
    let Some(status) = serve_until_exit(&config, &log, Duration::from_secs(60)) else {
        panic!("the server kept running with {extra}");
    };
    (status.success(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn unreachable_postgres_at_start_is_a_clear_error() {
    let (ok, stderr) = serve_expecting_exit(
        "database_url = \"postgres://rp-db-user:rp-db-password@127.0.0.1:1/x?password=rp-query-password\"\n\
         [database]\nconnect_timeout_seconds = 2",
    );
    assert!(!ok, "non-zero exit");
    println!("postgres unreachable: {}", stderr.trim());
    let lower = stderr.to_lowercase();
    assert!(lower.contains("database"), "names the database: {stderr}");
    for secret in ["rp-db-user", "rp-db-password", "rp-query-password"] {
        assert!(
            !stderr.contains(secret),
            "the URL's user info and query are not shown ({secret}): {stderr}"
        );
    }
}

#[test]
fn unwritable_sqlite_at_start_is_a_clear_error() {
    let (ok, stderr) =
        serve_expecting_exit("database_url = \"sqlite:///proc/runproof-nowhere/runproof.db\"");
    assert!(!ok, "non-zero exit");
    println!("sqlite unwritable: {}", stderr.trim());
    assert!(
        stderr.contains("/proc/runproof-nowhere"),
        "names the path it cannot use: {stderr}"
    );
}

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, conns) = (Arc::clone(&up), Arc::clone(&conns));
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let conn = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    conns.lock().unwrap().push(conn);
                }
            }
        });
        Self {
            port,
            up,
            conns,
            accept,
        }
    }

    /// The database is gone: open connections are closed, new ones closed at once.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Status, problem or record, and whether `Retry-After` was sent.
async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value, bool) {
    let resp = http
        .post(format!("{base}/v1/uploads?name=results.bin"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().contains_key("retry-after");
    (
        status,
        resp.json().await.unwrap_or(Value::Null),
        retry_after,
    )
}

async fn status_of(http: &reqwest::Client, url: &str, key: Option<&str>) -> u16 {
    let mut req = http.get(url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_lost_during_operation_answers_503_then_recovers() {
    let Some(database) = std::env::var("RUNPROOF_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            !ci(),
            "RUNPROOF_TEST_DATABASE_URL is not set, and with CI=true this test must run"
        );
        println!("SKIPPED database_lost: needs PostgreSQL (RUNPROOF_TEST_DATABASE_URL)");
        return;
    };
    let mut url = reqwest::Url::parse(&database).unwrap();
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let proxy = Proxy::start(target).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.port)).unwrap();
    let schema = Schema {
        url: database.clone(),
        name: format!("rp_faults_{}", uuid::Uuid::new_v4().simple()),
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gh = FakeGithub::start().await.unwrap();
    let port = free_port();
    let extra = format!(
        "database_url = \"{url}\"\n[database]\nschema = \"{}\"\n\
         connect_timeout_seconds = 1\nstatement_timeout_seconds = 5\n",
        schema.name
    );
    let config = write_config(
        dir.path(),
        port,
        &data,
        &gh.issuer(),
        AUDIENCE,
        API_KEY,
        &extra,
    );
    let server = Server::start(&config, port, &dir.path().join("server.log")).await;
    let base = server.base.clone();
    let http = client();
    let mut rng = Rng::from_time();
    let mut stored = Vec::new();
    // Bodies up to inline_max_bytes (64 KiB) live in the database, larger ones are blobs.
    let mut blobs = 0;
    for len in [1024, 64 * 1024, 96 * 1024] {
        let body = rng.bytes(len);
        blobs += usize::from(len > 64 * 1024);
        let (status, v, _) = upload(&http, &base, &gh.token(AUDIENCE).unwrap(), body.clone()).await;
        assert_eq!(status, 201, "{v}");
        stored.push((v["id"].as_str().unwrap().to_owned(), sha256_hex(&body)));
    }

    // An upload whose body is streaming when the database goes: its row cannot be written,
    // so it is refused, and its blob is not kept.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }));
    let in_flight = tokio::spawn({
        let (http, base, token) = (http.clone(), base.clone(), gh.token(AUDIENCE).unwrap());
        async move { upload(&http, &base, &token, body).await }
    });
    // Past inline_max_bytes (64 KiB), so that it moves from memory to a blob in tmp/.
    tx.send(Ok(rng.bytes(96 * 1024))).await.unwrap();
    // Its body is being written to tmp/, so the credentials were checked (the jti claimed):
    // the server reads no body before that. Cut only then (bounded wait).
    let mut streaming = false;
    for _ in 0..200 {
        if files_under(&data.join("tmp")) == 1 {
            streaming = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(streaming, "the upload's body reached tmp/");
    proxy.cut();
    tx.send(Ok(rng.bytes(32 * 1024))).await.unwrap();
    drop(tx);
    let (status, v, retry_after) = in_flight.await.unwrap();
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["code"], "storage_unavailable", "{v}");
    assert!(retry_after, "Retry-After on 503");

    // While it is gone: uploads, reads and readiness answer 503; liveness stays up.
    let refused_token = gh.token(AUDIENCE).unwrap();
    for i in 0..5 {
        let token = if i == 0 {
            refused_token.clone()
        } else {
            gh.token(AUDIENCE).unwrap()
        };
        let (status, v, retry_after) = upload(&http, &base, &token, rng.bytes(1024)).await;
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["code"], "storage_unavailable", "{v}");
        assert!(retry_after, "Retry-After on 503");
    }
    assert_eq!(status_of(&http, &format!("{base}/readyz"), None).await, 503);
    assert_eq!(
        status_of(&http, &format!("{base}/v1/uploads"), Some(API_KEY)).await,
        503
    );
    assert_eq!(
        status_of(&http, &format!("{base}/healthz"), None).await,
        200
    );

    // Back: the pool reconnects by itself; bounded wait for readiness.
    proxy.restore();
    let mut ready = false;
    for _ in 0..60 {
        if status_of(&http, &format!("{base}/readyz"), None).await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(ready, "ready again once the database is back");
    // A token refused during the outage was never spent: no wrong reject afterwards.
    let body = rng.bytes(2048);
    let (status, v, _) = upload(&http, &base, &refused_token, body.clone()).await;
    assert_eq!(status, 201, "{v}");
    stored.push((v["id"].as_str().unwrap().to_owned(), sha256_hex(&body)));

    // Nothing was lost or kept partially: exactly the acknowledged records, each readable,
    // and one blob per record.
    let records = list_all(&http, &base, API_KEY).await;
    assert_eq!(records.len(), stored.len(), "{records:?}");
    for (id, sha) in &stored {
        let resp = http
            .get(format!("{base}/v1/uploads/{id}/content"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(&sha256_hex(&resp.bytes().await.unwrap()), sha);
    }
    assert_eq!(files_under(&data.join("blobs")), blobs, "no orphan blob");
    assert_eq!(files_under(&data.join("tmp")), 0, "no partial body");
    println!(
        "database lost: uploads, reads and /readyz answered 503 storage_unavailable with \
         Retry-After; the in-flight upload's blob was removed; ready again after the \
         database came back, with {} records intact",
        stored.len()
    );
    drop(server);
}
