//! `runproof serve` with PostgreSQL and S3 configured: startup fails fast and clearly when
//! they cannot be used, and S3 works with the SQLite default. Real processes; no
//! PostgreSQL server needed (an S3 server runs in-process on loopback).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use runproof_testkit::process::ServerCommand;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tempfile::TempDir;
use tokio::net::TcpListener;

const BUCKET: &str = "startup";
const ACCESS_KEY: &str = "AKIDSTARTUPTEST";
const SECRET_KEY: &str = "startup-test-secret-key";

fn free_port() -> u16 {
    runproof_testkit::process::free_port().unwrap()
}

fn serve(dir: &Path, config: &str) -> ServerCommand {
    let path = dir.join("runproof.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = '{}'\n{config}\n[oidc]\naudience = \"https://startup.example\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    ServerCommand::serve(env!("CARGO_BIN_EXE_runproof"), &path)
        .stderr_to(dir.join("stderr.log"))
        .without_env_prefix("RUNPROOF_")
        .without_env_prefix("AWS_")
}

/// Runs `cmd` to its end (at most `limit`), returning the exit code, stderr and time.
async fn run_to_end(
    dir: &Path,
    cmd: ServerCommand,
    limit: Duration,
) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < limit,
            "the server did not give up within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    (status.code(), stderr, started.elapsed())
}

async fn start_s3() -> (TempDir, String) {
    let root = TempDir::new().unwrap();
    std::fs::create_dir(root.path().join(BUCKET)).unwrap();
    let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(root.path()).unwrap());
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    (root, endpoint)
}

fn s3_section(endpoint: &str, secret: &str) -> String {
    format!(
        "blob_store = \"s3://{BUCKET}/p\"\n[s3]\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{secret}\"\nallow_http = true\n"
    )
}

/// Nothing listens on the port: the server exits 2 within the connect timeout, naming
/// the database without its password.
#[tokio::test]
async fn an_unreachable_database_fails_startup_clearly_and_in_bounded_time() {
    let dir = TempDir::new().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:{}\"\ndatabase_url = \"postgres://runproof:s3cr3t-pw@127.0.0.1:{}/runproof\"\n[database]\nconnect_timeout_seconds = 2\n",
        free_port(),
        free_port()
    );
    let (code, stderr, took) = run_to_end(
        dir.path(),
        serve(dir.path(), &config),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot open the PostgreSQL database postgres://127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(
        !stderr.contains("s3cr3t") && !stderr.contains("panick"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

/// A wrong S3 secret is refused at startup, not on the first upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_s3_credentials_fail_startup() {
    let (_root, endpoint) = start_s3().await;
    let dir = TempDir::new().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:{}\"\n{}",
        free_port(),
        s3_section(&endpoint, "not-the-secret-key")
    );
    let (code, stderr, took) = run_to_end(
        dir.path(),
        serve(dir.path(), &config),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("blob storage at s3://{BUCKET}/p is not writable")),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-secret-key"), "{stderr}");
    assert!(took < Duration::from_secs(35), "took {took:?}");
}

/// SQLite (the default) with blobs on S3: the server becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_with_s3_blobs_serves() {
    let (_root, endpoint) = start_s3().await;
    let dir = TempDir::new().unwrap();
    let port = free_port();
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\n{}",
        s3_section(&endpoint, SECRET_KEY)
    );
    let mut child = serve(dir.path(), &config).spawn().unwrap();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(resp) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && resp.status() == 200
        {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(dir.path().join("data/runproof.db").exists());
    drop(child);
}
