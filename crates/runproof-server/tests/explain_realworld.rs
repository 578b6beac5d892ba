//! `POST /v1/policy/explain` through a real server on real GitHub Actions tokens (kept in
//! `tests/fixtures/realworld/oidc`): GitHub's issuer with the real JWKS that signed them,
//! the App installed through the fake GitHub on their real repositories, `at` inside each
//! token's lifetime. An App rule bound to what the token says allows it; one that is not
//! refuses it with the mismatches of the real claims; outside its lifetime it fails
//! `times`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use runproof_core::rules::TrustRule;
use runproof_core::{KeySet, Policy, Secret, Verifier, VerifierConfig};
use runproof_github::{GithubApp, KeyCache};
use runproof_server::{AppState, ServerConfig};
use runproof_service::{Binding, Service, ServiceSettings};
use runproof_store::{LocalBlobStore, SqliteStore};
use runproof_testkit::FakeGithub;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
const API_KEY: &str = "realworld-api-key-0123456789";
const APP_ID: u64 = 4_242;
const INSTALLATION: u64 = 77_001;

/// One real token and what it says.
struct Real {
    token: &'static str,
    jwks: &'static str,
    audience: &'static str,
    iat: i64,
    exp: i64,
    repository_id: u64,
    repository: &'static str,
    owner_id: u64,
    job_workflow_ref: &'static str,
    event: &'static str,
}

const REAL: [Real; 2] = [
    Real {
        token: "step-security_github_oidc_token_2022-08-05.jwt",
        jwks: "step-security_jwks_2022.json",
        audience: "https://github.com/varunsh-coder",
        iat: 1_659_662_993,
        exp: 1_659_663_293,
        repository_id: 433_903_792,
        repository: "varunsh-coder/actions-playground",
        owner_id: 25_015_917,
        job_workflow_ref: "varunsh-coder/actions-playground/.github/workflows/mfa_release.yml@refs/heads/main",
        event: "workflow_dispatch",
    },
    Real {
        token: "tok_2025-01_neu-se.jwt",
        jwks: "jwks_2025-06_crates.io.json",
        audience: "https://github.com/neu-se",
        iat: 1_738_115_363,
        exp: 1_738_115_663,
        repository_id: 922_761_846,
        repository: "neu-se/autograder-action",
        owner_id: 76_491_096,
        job_workflow_ref: "neu-se/autograder-action/.github/workflows/ci.yml@refs/heads/main",
        event: "push",
    },
];

fn realworld(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/oidc")
        .join(name);
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (fixtures in the repository)", p.display()))
}

fn token(real: &Real) -> String {
    String::from_utf8(realworld(real.token))
        .unwrap()
        .trim()
        .to_owned()
}

/// A server for `real`'s audience, GitHub's issuer with the real JWKS, the App installed
/// through the fake GitHub on the repositories of `installed`, and these App rules.
struct Server {
    url: String,
    http: reqwest::Client,
    _gh: FakeGithub,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(real: &Real, installed: &[&Real], rules: Vec<TrustRule>) -> Self {
        let gh = FakeGithub::start().await.unwrap();
        let creds = gh.register_app(APP_ID).unwrap();
        for (i, r) in installed.iter().enumerate() {
            let (owner, _) = r.repository.split_once('/').unwrap();
            gh.add_installation(
                INSTALLATION + i as u64,
                owner,
                r.owner_id,
                &[(r.repository_id, r.repository)],
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!(
            "sqlite://{}",
            dir.path().join("db.sqlite").display()
        ))
        .await
        .unwrap();
        let blobs = LocalBlobStore::open(dir.path()).await.unwrap();
        let keys = KeySet::from_jwks_json(&realworld(real.jwks)).unwrap();
        let keys = KeyCache::fixed([(GITHUB_ISSUER.to_owned(), keys)]).unwrap();
        let verifier = Verifier::new(VerifierConfig {
            issuers: vec![GITHUB_ISSUER.into()],
            audience: real.audience.into(),
            leeway_seconds: 60,
            policy: Policy::default(),
        });
        let app = GithubApp::new(
            &gh.base_url(),
            APP_ID,
            &Secret::new(creds.private_key_pem),
            Duration::from_secs(3),
        )
        .unwrap();
        let service = Service::builder(verifier, Arc::new(keys), Arc::new(store), Arc::new(blobs))
            .settings(ServiceSettings::default())
            .binding(Some(Binding::new(app)))
            .trust_rules(rules)
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
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(runproof_server::serve(listener, state, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self {
            url,
            http,
            _gh: gh,
            _dir: dir,
            stop: Some(tx),
            task,
        }
    }

    async fn explain(&self, body: &Value) -> Value {
        let resp = self
            .http
            .post(format!("{}/v1/policy/explain", self.url))
            .bearer_auth(API_KEY)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn rule(fields: Value) -> TrustRule {
    let rule: TrustRule = serde_json::from_value(fields).unwrap();
    rule.validate().unwrap();
    rule
}

/// The check named `name`.
fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {body}"))
}

/// The names of the checks that did not pass.
fn failed(body: &Value) -> Vec<String> {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] != true)
        .map(|c| c["check"].as_str().unwrap().to_owned())
        .collect()
}

/// A rule bound to what `real` says: its repository, its job's workflow at its ref, its
/// event, on main.
fn bound(real: &Real) -> TrustRule {
    rule(json!({
        "name": "bound to the run",
        "repository_owner_ids": [real.owner_id],
        "repository_ids": [real.repository_id],
        "job_workflows": [real.job_workflow_ref],
        "refs": ["refs/heads/main"],
        "events": [real.event],
    }))
}

fn release_tags() -> TrustRule {
    rule(json!({"name": "release tags", "refs": ["refs/tags/v*"]}))
}

#[tokio::test]
async fn real_tokens_are_allowed_at_a_time_inside_their_lifetime_by_a_rule_bound_to_them() {
    for real in &REAL {
        let server = Server::start(real, &[real], vec![release_tags(), bound(real)]).await;
        let request = json!({"token": token(real), "at": real.iat + 10});
        let body = server.explain(&request).await;
        assert_eq!(body["allowed"], true, "{}: {body}", real.token);
        assert_eq!(failed(&body), Vec::<String>::new(), "{body}");
        let names: Vec<&str> = body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["check"].as_str().unwrap())
            .collect();
        assert_eq!(names, runproof_service::explain::CHECKS);
        assert_eq!(body["identity"]["repository_id"], json!(real.repository_id));
        assert_eq!(body["identity"]["issuer"], GITHUB_ISSUER);
        assert_eq!(body["identity"]["installation_id"], json!(INSTALLATION));
        assert!(
            check(&body, "installation")["detail"]
                .as_str()
                .unwrap()
                .contains(&INSTALLATION.to_string()),
            "{body}"
        );
        assert!(
            check(&body, "times")["detail"]
                .as_str()
                .unwrap()
                .contains(&format!(
                    "valid at {}",
                    runproof_core::UnixTime(real.iat + 10).rfc3339()
                )),
            "{body}"
        );
        assert_eq!(
            body["rules"],
            json!([
                {"layer": "app", "name": "release tags", "matched": false, "mismatches": [
                    {"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]},
                {"layer": "app", "name": "bound to the run", "matched": true, "mismatches": []},
            ]),
            "{body}"
        );
        // Explaining has no side effect: the same answer again, the jti still unused.
        let again = server.explain(&request).await;
        assert_eq!(again, body);
        assert!(
            check(&again, "replay")["detail"]
                .as_str()
                .unwrap()
                .contains("unused"),
            "{again}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn rule_app_rules_refuse_real_tokens_with_the_mismatches_of_their_claims() {
    let pinned = "0123456789abcdef0123456789abcdef01234567";
    let cases = [
        (
            &REAL[0],
            // 2022's token has no workflow_ref and no ref_protected.
            rule(json!({
                "name": "protected release workflow",
                "workflows": [".github/workflows/mfa_release.yml"],
                "ref_protected": true,
            })),
            json!([
                {"field": "ref_protected", "expected": ["true"], "actual": null},
                {"field": "workflow_ref", "expected": [".github/workflows/mfa_release.yml"], "actual": null},
            ]),
        ),
        (
            &REAL[1],
            rule(json!({
                "name": "pinned upload workflow",
                "job_workflows": [format!("neu-se/autograder-action/.github/workflows/ci.yml@{pinned}")],
                "environments": ["production"],
                "runner_environments": ["github-hosted"],
            })),
            json!([
                {"field": "environment", "expected": ["production"], "actual": null},
                {"field": "job_workflow_ref",
                 "expected": [format!("neu-se/autograder-action/.github/workflows/ci.yml@{pinned}")],
                 "actual": "neu-se/autograder-action/.github/workflows/ci.yml@87094ea4756a84eb768be22a43bfed71eeecd472"},
            ]),
        ),
    ];
    for (real, refusing, mismatches) in cases {
        let name = refusing.name.clone();
        let server = Server::start(real, &[real], vec![refusing]).await;
        let body = server
            .explain(&json!({"token": token(real), "at": real.iat + 10}))
            .await;
        assert_eq!(body["allowed"], false, "{}: {body}", real.token);
        assert_eq!(failed(&body), vec!["app_rules"], "{body}");
        assert!(body["identity"].is_object(), "the token verifies: {body}");
        assert!(
            check(&body, "app_rules")["detail"]
                .as_str()
                .unwrap()
                .contains(&name),
            "{body}"
        );
        assert_eq!(body["rules"][0]["matched"], false, "{body}");
        assert_eq!(body["rules"][0]["mismatches"], mismatches, "{body}");
        server.stop().await;
    }
}

#[tokio::test]
async fn rule_real_tokens_outside_their_lifetime_fail_times() {
    for real in &REAL {
        let server = Server::start(real, &[real], vec![bound(real)]).await;
        for at in [None, Some(real.exp + 120), Some(real.iat - 3600)] {
            let mut request = json!({"token": token(real)});
            if let Some(at) = at {
                request["at"] = json!(at);
            }
            let body = server.explain(&request).await;
            assert_eq!(body["allowed"], false, "{at:?}: {body}");
            assert!(body["identity"].is_null(), "{body}");
            assert_eq!(failed(&body)[0], "times", "{at:?}: {body}");
            assert_eq!(check(&body, "signature")["ok"], true, "{body}");
            assert_eq!(body["rules"], json!([]), "{body}");
        }
        server.stop().await;
    }
}

#[tokio::test]
async fn rule_a_real_repository_without_the_app_fails_installation() {
    let (real, other) = (&REAL[1], &REAL[0]);
    let server = Server::start(real, &[other], vec![bound(real)]).await;
    let body = server
        .explain(&json!({"token": token(real), "at": real.iat + 10}))
        .await;
    assert_eq!(body["allowed"], false, "{body}");
    assert_eq!(failed(&body), vec!["installation"], "{body}");
    server.stop().await;
}
