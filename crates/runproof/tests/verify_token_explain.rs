//! `runproof verify-token --explain`: the real binary on a real token (its claims, with
//! `--config` re-signed for the configuration's audience), printing what
//! `POST /v1/policy/explain` answers (every check, every App rule with its mismatches),
//! exiting 0 only when an upload would be allowed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// The real token of 2025-01 (neu-se/autograder-action, a push to main) and its keys.
const TOKEN: &str = "tok_2025-01_neu-se.jwt";
const JWKS: &str = "jwks_2025-06_crates.io.json";
const AUDIENCE: &str = "https://github.com/neu-se";
/// Inside the token's lifetime (issued at 1738115363, expires at 1738115663).
const INSIDE: i64 = 1_738_115_400;
const EXPIRES: i64 = 1_738_115_663;

fn realworld(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/oidc")
        .join(name);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// The audience of the configurations here: the server's own.
const CONFIG_AUDIENCE: &str = "https://runproof.example.com";

/// A configuration whose `[[policy.rules]]` are `rules` (TOML), beside it the real token's
/// claims for the configuration's audience (a configuration never takes GitHub's default
/// audience) signed by a key of the test's own: `token.jwt`, and its keys, `jwks.json`.
fn config(dir: &Path, rules: &str) -> PathBuf {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let path = dir.join("runproof.toml");
    std::fs::write(
        &path,
        format!("[oidc]\naudience = \"{CONFIG_AUDIENCE}\"\n{rules}"),
    )
    .unwrap();
    let real = std::fs::read_to_string(realworld(TOKEN)).unwrap();
    let payload = real.trim().split('.').nth(1).unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["aud"] = json!(CONFIG_AUDIENCE);
    let key = runproof_testkit::TestKey::generate("explain-key").unwrap();
    std::fs::write(dir.join("token.jwt"), key.sign_claims(&claims).unwrap()).unwrap();
    std::fs::write(
        dir.join("jwks.json"),
        runproof_testkit::jwks_json(&[&key]).to_string(),
    )
    .unwrap();
    path
}

/// Explains the real token with its keys and `--audience`, or, with a configuration, the
/// token beside it with its keys and the configuration's audience.
async fn explain(config: Option<&Path>, at: i64, json: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runproof"));
    cmd.env("NO_PROXY", "127.0.0.1").stdin(Stdio::null());
    cmd.args(["verify-token", "--explain", "--at", &at.to_string()]);
    let token = if let Some(config) = config {
        let dir = config.parent().unwrap();
        cmd.arg("--config")
            .arg(config)
            .arg("--jwks")
            .arg(dir.join("jwks.json"));
        dir.join("token.jwt")
    } else {
        cmd.arg("--jwks")
            .arg(realworld(JWKS))
            .args(["--audience", AUDIENCE]);
        realworld(TOKEN)
    };
    if json {
        cmd.arg("--json");
    }
    cmd.arg(format!("@{}", token.display()));
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The table's row for `first` (its first column), split on runs of two spaces or more.
fn row(text: &str, first: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.split("  ").next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first}:\n{text}"))
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn an_allowed_token_shows_every_check_ok_and_the_matching_rule() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "[[policy.rules]]\nname = \"autograder main\"\nrepository_ids = [922761846]\n\
         refs = [\"refs/heads/main\"]\nevents = [\"push\"]\n\
         job_workflows = [\"neu-se/autograder-action/.github/workflows/ci.yml@refs/heads/main\"]\n",
    );
    let out = explain(Some(&config), INSIDE, false).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.starts_with("allowed: yes\n"), "{text}");
    for check in runproof_service::explain::CHECKS {
        assert_eq!(row(&text, check)[1], "ok", "{check}: {text}");
    }
    assert_eq!(
        row(&text, "installation")[2],
        "binding is off: no App credentials are set"
    );
    assert!(
        row(&text, "times")[2].contains("valid at 2025-01-29T01:50:00Z (issued at 2025-01-29T01:49:23Z, expires at 2025-01-29T01:54:23Z)"),
        "{text}"
    );
    assert_eq!(row(&text, "app")[..3], ["app", "autograder main", "yes"]);

    // --json: the endpoint's body, the same identity and checks.
    let out = explain(Some(&config), INSIDE, true).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["allowed"], true);
    assert_eq!(body["identity"]["repository_id"], json!(922_761_846));
    assert_eq!(
        body["checks"].as_array().unwrap().len(),
        runproof_service::explain::CHECKS.len()
    );
    assert_eq!(
        body["rules"],
        json!([{"layer": "app", "name": "autograder main", "matched": true, "mismatches": []}])
    );
}

#[tokio::test]
async fn rule_a_refusing_app_rule_shows_its_mismatches_in_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        "[[policy.rules]]\nname = \"release tags\"\nrefs = [\"refs/tags/v*\"]\n\
         events = [\"release\", \"workflow_dispatch\"]\nref_protected = true\n",
    );
    let out = explain(Some(&config), INSIDE, false).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "refused: {text}");
    assert!(text.starts_with("allowed: no\n"), "{text}");
    let app_rules = row(&text, "app_rules");
    assert_eq!(app_rules[1], "FAIL", "{text}");
    assert!(app_rules[2].contains("release tags"), "{text}");
    assert_eq!(row(&text, "signature")[1], "ok", "{text}");
    assert_eq!(row(&text, "app")[..3], ["app", "release tags", "no"]);
    for mismatch in [
        "event_name: expected release, workflow_dispatch got push",
        "ref: expected refs/tags/v* got refs/heads/main",
        "ref_protected: expected true got false",
    ] {
        assert!(
            text.lines().any(|l| l.trim_end().ends_with(mismatch)),
            "{mismatch}:\n{text}"
        );
    }

    let out = explain(Some(&config), INSIDE, true).await;
    assert_eq!(out.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["allowed"], false);
    assert!(
        body["rules"][0]["mismatches"].as_array().unwrap().contains(
            &json!({"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"})
        ),
        "{body}"
    );
}

#[tokio::test]
async fn rule_an_expired_token_fails_times_and_later_checks_are_not_reached() {
    let out = explain(None, EXPIRES + 120, false).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("allowed: no\n"), "{text}");
    for passed in ["token", "issuer", "signature", "audience"] {
        assert_eq!(row(&text, passed)[1], "ok", "{passed}: {text}");
    }
    let times = row(&text, "times");
    assert_eq!(times[1], "FAIL", "{text}");
    assert!(times[2].contains("expired"), "{text}");
    let checks = runproof_service::explain::CHECKS;
    let after = checks.iter().skip_while(|c| **c != "times").skip(1);
    for later in after {
        let r = row(&text, later);
        assert_eq!(r[1], "FAIL", "{later}: {text}");
        assert_eq!(r[2], "not checked: `times` failed", "{later}: {text}");
    }
    assert!(text.contains("rules: none"), "{text}");

    let out = explain(None, EXPIRES + 120, true).await;
    assert_eq!(out.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["allowed"], false);
    assert!(body["identity"].is_null(), "{body}");
    assert_eq!(body["rules"], json!([]));
}

/// `--json` prints the body `POST /v1/policy/explain` answers for the same token, time,
/// keys and rules (but for the repository rules, which only the server reads), from a server built the way `--explain` builds its service
/// (binding off, nothing stored), for an allowed token, a refused one and an expired one.
#[tokio::test]
async fn json_is_the_endpoints_body() {
    use std::sync::Arc;

    use runproof_core::{KeySet, Secret, Verifier, VerifierConfig};
    use runproof_github::KeyCache;
    use runproof_server::{AppState, ServerConfig};
    use runproof_service::{Service, ServiceSettings};
    use runproof_store::{LocalBlobStore, SqliteStore};

    const API_KEY: &str = "explain-api-key-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "[[policy.rules]]\nname = \"release tags\"\nrefs = [\"refs/tags/v*\"]\n\
         [[policy.rules]]\nname = \"main\"\nrefs = [\"refs/heads/main\"]\n",
    );
    let resolved = runproof::config::resolve(runproof::config::load(Some(&path)).unwrap()).unwrap();
    let keys =
        KeySet::from_jwks_json(&std::fs::read(dir.path().join("jwks.json")).unwrap()).unwrap();
    let keys = KeyCache::fixed([(
        "https://token.actions.githubusercontent.com".to_owned(),
        keys,
    )])
    .unwrap();
    let verifier = Verifier::new(VerifierConfig {
        issuers: resolved
            .oidc
            .issuers
            .iter()
            .map(|i| i.issuer.clone())
            .collect(),
        audience: resolved.audience.clone(),
        leeway_seconds: resolved.oidc.leeway_seconds,
        policy: resolved.config.policy.checks(),
    });
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    let blobs = LocalBlobStore::open(dir.path()).await.unwrap();
    let service = Service::builder(verifier, Arc::new(keys), Arc::new(store), Arc::new(blobs))
        .settings(ServiceSettings {
            replay_protection: resolved.oidc.replay_protection,
            ..ServiceSettings::default()
        })
        .trust_rules(resolved.config.policy.rules.clone())
        .build()
        .await
        .unwrap();
    let state = Arc::new(AppState::new(
        Arc::new(service),
        ServerConfig {
            api_keys: vec![Secret::new(API_KEY.into())],
            webhook_secrets: Vec::new(),
            limits: runproof_server::LimitsConfig::default(),
            metrics_listen: None,
            ui: runproof_server::UiConfig::default(),
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/policy/explain",
        listener.local_addr().unwrap()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(runproof_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let token = std::fs::read_to_string(dir.path().join("token.jwt")).unwrap();

    // Allowed (rule "main" matches, "release tags" shows its mismatch), then expired.
    for (at, allowed) in [(INSIDE, true), (EXPIRES + 120, false)] {
        let cli = explain(Some(&path), at, true).await;
        assert_eq!(cli.status.code(), Some(if allowed { 0 } else { 1 }));
        let resp = http
            .post(&url)
            .bearer_auth(API_KEY)
            .json(&json!({"token": token.trim(), "at": at}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().await.unwrap();
        // The same body, but for what offline cannot read: the server's repository rules.
        let mut printed: Value = serde_json::from_slice(&cli.stdout).unwrap();
        if allowed {
            let checks = printed["checks"].as_array_mut().unwrap();
            let repository = checks
                .iter_mut()
                .find(|c| c["check"] == "repository_rules")
                .unwrap();
            assert!(
                repository["detail"]
                    .as_str()
                    .unwrap()
                    .starts_with("not checked offline"),
                "{repository}"
            );
            repository["detail"] = body["checks"][11]["detail"].clone();
            assert_eq!(body["checks"][11]["check"], "repository_rules");
        }
        assert_eq!(printed, body, "at {at}");
        assert_eq!(body["allowed"], allowed);
    }
    let _ = stop.send(());
    tokio::time::timeout(std::time::Duration::from_secs(20), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn rule_offline_a_required_action_is_not_checked_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let key = runproof_testkit::TestKey::generate("app-key").unwrap();
    let pem = dir.path().join("app.pem");
    std::fs::write(&pem, key.private_key_pem().unwrap()).unwrap();
    let config = config(
        dir.path(),
        &format!(
            "[policy]\nrequire_action = \"runproof/upload-action\"\nrepository_file = \".github/runproof.yml\"\n\
             [github]\napp_id = 1\nprivate_key_file = \"{}\"\n",
            pem.display()
        ),
    );
    let out = explain(Some(&config), INSIDE, false).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.starts_with("allowed: no\n"), "{text}");
    let action = row(&text, "action");
    assert_eq!(action[1], "FAIL", "{text}");
    assert!(
        action[2].starts_with("not checked offline: require_action = runproof/upload-action"),
        "{text}"
    );
    let repository = row(&text, "repository_rules");
    assert_eq!(repository[1], "ok", "{text}");
    assert!(
        repository[2].starts_with("not checked offline")
            && repository[2].contains(".github/runproof.yml"),
        "{text}"
    );
}
