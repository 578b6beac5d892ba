//! `runproof serve --dev` as a newcomer meets it: started from the repository root, its
//! banner's indented lines are run as printed, in one shell, from the same directory. Each
//! mode's upload (OIDC, `github_token`, and the webhook mode with `--wait`) ends verified,
//! and the banner's read-API command lists them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runproof_testkit::process::ServerCommand;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_runproof");
/// How long the server may take to print its banner.
const BANNER_WITHIN: Duration = Duration::from_secs(60);
/// How long the banner's commands may take, all together.
const COMMANDS_WITHIN: &str = "120";

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_dev_banner_runs_as_printed_from_the_repository_root_and_every_mode_verifies() {
    if !have("curl") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl is required (CI=true: not skipped)"
        );
        eprintln!("SKIPPED: curl is missing; the dev banner's commands were not run");
        return;
    }
    let root = repository_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("runproof.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let mut server = ServerCommand::new(BIN)
        .args(["serve", "--dev", "--config"])
        .arg(&config)
        .current_dir(&root)
        .without_env_prefix("RUNPROOF_")
        .env("NO_PROXY", "127.0.0.1")
        .env("RUST_LOG", "warn")
        .stdout_lines()
        .stderr_to(dir.path().join("server.log"))
        .spawn()
        .unwrap();

    // The banner ends with the read API's command.
    let mut banner = Vec::new();
    let deadline = Instant::now() + BANNER_WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            .stdout_line(left)
            .unwrap_or_else(|e| panic!("{e}; the banner so far:\n{}", banner.join("\n")));
        let last = line.starts_with("  curl ");
        banner.push(line);
        if last {
            break;
        }
    }
    let banner = banner.join("\n");
    let commands: Vec<&str> = banner
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .collect();
    let program = commands
        .iter()
        .find(|c| c.contains(" upload "))
        .and_then(|c| c.split_whitespace().next())
        .unwrap();
    assert!(
        root.join(program).is_file() || program == "runproof",
        "the program is named as the repository root reaches it: {program}\n{banner}"
    );
    for c in &commands {
        assert!(
            c.starts_with("export ")
                || c.starts_with("curl ")
                || c.starts_with(&format!("{program} upload ")),
            "every indented line is a command: {c}\n{banner}"
        );
        assert!(!c.contains("FILE"), "no placeholder: {c}");
    }
    let uploads = commands.iter().filter(|c| c.contains(" upload ")).count();
    assert_eq!(uploads, 3, "one upload per mode:\n{banner}");

    // One shell, from the repository root, with nothing of an Actions job in it.
    let script = dir.path().join("banner.sh");
    std::fs::write(
        &script,
        format!("set -euo pipefail\n{}\n", commands.join("\n")),
    )
    .unwrap();
    let mut shell = Command::new("timeout");
    shell
        .args([COMMANDS_WITHIN, "bash"])
        .arg(&script)
        .current_dir(&root)
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if ["ACTIONS_", "GITHUB_", "RUNPROOF_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            shell.env_remove(&key);
        }
    }
    let out = shell.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the banner's commands as printed:\n{banner}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{}",
        server.log_tail(40)
    );

    // Each upload prints its id; the read API's answer comes last.
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let (listing, ids) = lines.split_last().unwrap();
    assert_eq!(ids.len(), 3, "an id per upload:\n{stdout}");
    let listing: Value = serde_json::from_str(listing).unwrap();
    let listed = listing["uploads"].as_array().unwrap();
    for (id, mode) in ids.iter().zip(["oidc", "github_token", "webhook"]) {
        let record = listed
            .iter()
            .find(|u| u["id"] == *id)
            .unwrap_or_else(|| panic!("{mode} upload {id} is listed as verified: {listing}"));
        assert_eq!(record["status"], "verified", "{record}");
        assert_eq!(record["mode"], mode, "{record}");
    }
    assert!(
        stderr.contains(&format!("{}: verified", ids[2])),
        "--wait says the webhook mode's upload is verified:\n{stderr}"
    );
    server.stop(Duration::from_secs(10)).unwrap();
}
