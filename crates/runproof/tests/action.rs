//! The Action as a runner runs it (`scripts/test-action.sh`, one section per rule), and the
//! workflows that build and release it.
//!
//! The sections need python3 with PyYAML, curl, tar, git and mkfifo. Without them the tests
//! say so and pass, except under `CI=true`, where a missing prerequisite fails them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One section at a time: each starts servers and runners of its own.
static SECTIONS: Mutex<()> = Mutex::new(());

fn prerequisites_missing() -> Option<String> {
    let python = Command::new("python3")
        .args(["-c", "import yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !python.is_ok_and(|s| s.success()) {
        return Some("python3 with PyYAML".into());
    }
    for tool in ["bash", "curl", "tar", "git", "mkfifo"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status();
        if !found.is_ok_and(|s| s.success()) {
            return Some(tool.into());
        }
    }
    None
}

/// Runs `scripts/test-action.sh --only <section>` with this build's binary; panics with its
/// output unless every check passed.
fn run_section(section: &str) {
    let _one = SECTIONS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(missing) = prerequisites_missing() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{missing} is required for the Action's tests (CI=true: not skipped)"
        );
        eprintln!("SKIPPED: {missing} is missing; the Action's `{section}` checks did not run");
        return;
    }
    let out_path = std::env::temp_dir().join(format!(
        "runproof-action-{section}-{}.log",
        std::process::id()
    ));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new("bash")
        .arg(root().join("scripts/test-action.sh"))
        .args(["--only", section])
        .env("RUNPROOF_TEST_BIN", env!("CARGO_BIN_EXE_runproof"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("RUNPROOF_TEST_KEEP")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let last = log.lines().last().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()) && last.ends_with(" 0 failed"),
        "scripts/test-action.sh --only {section} failed ({status:?}):\n{log}"
    );
}

#[test]
fn rule_action_refuses_symlinks_outside_paths_and_special_files() {
    run_section("files");
}

#[test]
fn rule_action_lets_no_server_string_into_outputs_or_workflow_commands() {
    run_section("hostile");
}

#[test]
fn rule_action_runs_only_the_binary_that_action_yml_pins() {
    run_section("download");
}

#[test]
fn rule_action_urls_are_parsed_so_a_user_part_cannot_hide_a_host() {
    run_section("invalid");
}

#[test]
fn rule_action_asks_for_the_audience_when_the_server_names_another_host() {
    run_section("upload");
}

// --- the workflows -----------------------------------------------------------------------

/// A permission: scope and level, as in `contents: read`.
type Permission = (&'static str, &'static str);

/// What each job may do with the `GITHUB_TOKEN`; anything more fails. A job that needs more
/// must say so here.
const ALLOWED_PERMISSIONS: &[(&str, &str, &[Permission])] = &[
    ("ci.yml", "test", &[("contents", "read")]),
    ("ci.yml", "action", &[("contents", "read")]),
    ("release.yml", "check", &[("contents", "read")]),
    ("release.yml", "build", &[("contents", "read")]),
    ("release.yml", "draft", &[("contents", "write")]),
    ("release.yml", "publish", &[("contents", "write")]),
];

fn workflows() -> Vec<(String, String)> {
    let dir = root().join(".github/workflows");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no workflow in {}", dir.display());
    files
}

fn permissions_of(value: &Yaml) -> Option<Vec<(String, String)>> {
    let map = value.as_hash()?;
    Some(
        map.iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap_or_default().to_owned(),
                    v.as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    )
}

#[test]
fn rule_workflows_pin_actions_by_commit_and_give_each_job_least_permissions() {
    let sha_pin = |uses: &str| {
        uses.split_once('@').is_some_and(|(action, rev)| {
            action.split('/').count() >= 2
                && rev.len() == 40
                && rev
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    };
    for (file, text) in workflows() {
        // Every `uses:` of another repository names a commit, and says which release it is.
        for (n, line) in text.lines().enumerate() {
            let Some(rest) = line
                .trim_start()
                .trim_start_matches("- ")
                .strip_prefix("uses:")
            else {
                continue;
            };
            let (uses, comment) = rest.split_once('#').unwrap_or((rest, ""));
            let uses = uses.trim();
            if uses.starts_with("./") {
                continue;
            }
            assert!(
                sha_pin(uses),
                "{file}:{}: `{uses}` is not pinned to a commit",
                n + 1
            );
            assert!(
                comment.trim_start().starts_with('v'),
                "{file}:{}: say which release the commit is (`# vX.Y.Z`)",
                n + 1
            );
        }

        let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
        let top = permissions_of(&doc["permissions"]);
        assert_eq!(
            top,
            Some(vec![]),
            "{file}: the workflow grants nothing (`permissions: {{}}`); jobs ask for what they need"
        );
        let jobs = doc["jobs"].as_hash().unwrap();
        for (name, job) in jobs {
            let name = name.as_str().unwrap();
            let granted = permissions_of(&job["permissions"])
                .unwrap_or_else(|| panic!("{file}: job {name} says no `permissions:`"));
            let allowed = ALLOWED_PERMISSIONS
                .iter()
                .find(|(f, j, _)| *f == file && *j == name)
                .map_or(&[][..], |(_, _, p)| *p);
            for (scope, level) in &granted {
                let ok = level == "none"
                    || allowed.iter().any(|(s, l)| {
                        s == scope && (*l == level || (*l == "write" && level == "read"))
                    });
                assert!(
                    ok,
                    "{file}: job {name} has `{scope}: {level}`, more than it needs ({allowed:?})"
                );
            }
        }
    }
}

#[test]
fn action_yml_has_the_release_pins_that_release_yml_verifies() {
    // Between releases the block is empty (the binary is built from the action's own commit);
    // scripts/pin-release.sh writes it, and release.yml checks it against the archives.
    let text = std::fs::read_to_string(root().join("action.yml")).unwrap();
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("# >>> release pins"))
        .take_while(|l| !l.contains("# <<< release pins"))
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let keys: Vec<&str> = block
        .iter()
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k))
        .filter(|k| k.starts_with("RUNPROOF_PINNED_"))
        .collect();
    assert_eq!(
        keys,
        [
            "RUNPROOF_PINNED_VERSION",
            "RUNPROOF_PINNED_COMMIT",
            "RUNPROOF_PINNED_SHA256"
        ],
        "{block:?}"
    );
    let release = std::fs::read_to_string(root().join(".github/workflows/release.yml")).unwrap();
    assert!(
        release.contains("scripts/pin-release.sh --verify"),
        "release.yml publishes only archives that action.yml pins"
    );
    assert!(Path::new(&root().join("scripts/pin-release.sh")).exists());
}
