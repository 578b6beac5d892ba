//! What `runproof serve` says as it starts, read from a real process whose stderr is a
//! file: "listening" only once the socket is bound, warnings about a configuration that
//! refuses everyone, config errors that name their key, and plain text (no colour codes)
//! when stderr is not a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use runproof_testkit::process::{ServerCommand, free_port, loopback_url};
use tempfile::TempDir;

fn serve(dir: &Path, config: &str) -> ServerCommand {
    let path = dir.join("runproof.toml");
    std::fs::write(&path, config).unwrap();
    ServerCommand::serve(env!("CARGO_BIN_EXE_runproof"), &path)
        .stderr_to(dir.join("stderr.log"))
        .without_env_prefix("RUNPROOF_")
        .without_env_prefix("RUST_LOG")
        .without_env_prefix("NO_COLOR")
}

fn config(dir: &Path, port: u16, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:{port}\"\ndata_dir = '{}'\n{extra}\n[oidc]\naudience = \"https://startup.example\"\n",
        dir.join("data").display()
    )
}

/// Runs `cmd` to its end (at most 60 s), returning the exit code and stderr.
async fn run_to_end(dir: &Path, cmd: ServerCommand) -> (Option<i32>, String) {
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the process did not exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    (status.code(), stderr)
}

/// Starts, waits until ready, stops with SIGTERM, and returns stderr.
async fn start_and_stop(dir: &Path, port: u16, cmd: ServerCommand) -> String {
    let mut child = cmd.spawn().unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    child
        .wait_ready(
            &http,
            &format!("{}/healthz", loopback_url(port)),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.stop(Duration::from_secs(20)))
        .await
        .unwrap()
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    std::fs::read_to_string(dir.join("stderr.log")).unwrap()
}

#[tokio::test]
async fn a_port_in_use_fails_naming_the_address_and_never_says_listening() {
    let dir = TempDir::new().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (code, stderr) =
        run_to_end(dir.path(), serve(dir.path(), &config(dir.path(), port, ""))).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
    drop(taken);
}

/// With no API keys and a fresh `data_dir`, the log says both, once each; started again
/// with a key on the same directory, it says neither. Stderr is a file: no ESC byte.
#[tokio::test]
async fn startup_warns_about_no_api_keys_and_a_fresh_data_dir_in_plain_text() {
    let dir = TempDir::new().unwrap();
    let port = free_port().unwrap();
    let first = start_and_stop(
        dir.path(),
        port,
        serve(dir.path(), &config(dir.path(), port, "")),
    )
    .await;
    let lines = |needle: &str, log: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("no API keys are configured", &first), 1, "{first}");
    assert!(
        first
            .lines()
            .any(|l| l.contains("WARN") && l.contains("refuses every request")),
        "{first}"
    );
    assert_eq!(
        lines("data_dir did not exist and was created", &first),
        1,
        "{first}"
    );
    assert_eq!(lines("runproof listening", &first), 1, "{first}");
    assert!(
        first.contains(&format!("listen=127.0.0.1:{port}")),
        "the bound address: {first}"
    );
    assert!(
        !first.contains('\u{1b}'),
        "no colour codes in a file: {first:?}"
    );

    let port = free_port().unwrap();
    let extra = "api_keys = [\"startup-api-key-0123456789\"]";
    let second = start_and_stop(
        dir.path(),
        port,
        serve(dir.path(), &config(dir.path(), port, extra)),
    )
    .await;
    assert_eq!(lines("no API keys are configured", &second), 0, "{second}");
    assert_eq!(lines("data_dir did not exist", &second), 0, "{second}");
    assert_eq!(lines("runproof listening", &second), 1, "{second}");
    assert!(!second.contains('\u{1b}'), "{second:?}");
}

#[tokio::test]
async fn config_errors_name_the_key_as_written() {
    let dir = TempDir::new().unwrap();
    for (toml, expected) in [
        (
            "listen = \"localhost:8080\"\n",
            "`listen`: invalid socket address syntax: an IP address and a port are needed",
        ),
        (
            "[oidc]\naudience = \"https://r.example\"\nleway_seconds = 3\n",
            "`oidc.leway_seconds`: unknown key; the keys here are audience, leeway_seconds",
        ),
    ] {
        let path = dir.path().join("runproof.toml");
        std::fs::write(&path, toml).unwrap();
        let cmd = ServerCommand::serve(env!("CARGO_BIN_EXE_runproof"), &path)
            .stderr_to(dir.path().join("stderr.log"))
            .without_env_prefix("RUNPROOF_");
        let (code, stderr) = run_to_end(dir.path(), cmd).await;
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("default."), "{stderr}");
        assert!(!stderr.contains("``"), "{stderr}");
    }
    let path = dir.path().join("runproof.toml");
    std::fs::write(&path, "[oidc]\naudience = \"https://r.example\"\n").unwrap();
    let cmd = ServerCommand::serve(env!("CARGO_BIN_EXE_runproof"), &path)
        .stderr_to(dir.path().join("stderr.log"))
        .without_env_prefix("RUNPROOF_")
        .env("RUNPROOF_LISTEN", "localhost:8080");
    let (code, stderr) = run_to_end(dir.path(), cmd).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`listen`: invalid socket address syntax")
            && stderr.contains("(set by RUNPROOF_LISTEN)"),
        "{stderr}"
    );
}
