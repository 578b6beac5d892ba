//! Faults of the server's own dependencies, against a real server process:
//! - storage full (a 2 MiB tmpfs, when this runs as root and may mount; else skipped with a
//!   printed line): `507`/`503 storage_unavailable`, nothing partial kept, reads still work;
//! - the database unreachable at start: a clear error and a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proc;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use proc::{Rng, Server, client, free_port, list_all, sha256_hex, write_config};
use runproof_testkit::FakeGithub;
use serde_json::Value;

const AUDIENCE: &str = "https://runproof.faults.test";
const API_KEY: &str = "faults-api-key-0123456789";

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
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
    let dir = tempfile::tempdir().unwrap();
    let Some(mnt) = Tmpfs::mount(&dir.path().join("blobs-fs"), "2m") else {
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
    // 2 MiB fills within a few 384 KiB uploads; bounded.
    for i in 0..20 {
        let body = rng.bytes(384 * 1024);
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
        assert!(status == 507 || status == 503, "{status} {v}");
        assert_eq!(v["code"], "storage_unavailable", "{v}");
        refused = Some(status);
        break;
    }
    let refused = refused.expect("the full disk was reported");
    assert!(!stored.is_empty());
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_runproof"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server kept running with {extra}");
    };
    (status.success(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn unreachable_postgres_at_start_is_a_clear_error() {
    let (ok, stderr) = serve_expecting_exit(
        "database_url = \"postgres://runproof@127.0.0.1:1/x\"\n[database]\nconnect_timeout_seconds = 2",
    );
    assert!(!ok, "non-zero exit");
    println!("postgres unreachable: {}", stderr.trim());
    let lower = stderr.to_lowercase();
    assert!(lower.contains("database"), "names the database: {stderr}");
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
