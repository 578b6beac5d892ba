//! The GitHub App integration through a real server: installation binding, the signed
//! webhook receiver, and the github_token mode. Each hostile case names its rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Harness, Options, bearer};
use runproof_core::{InstallationId, RepositoryId, Secret};
use runproof_testkit::{
    FakeGithub, RunSpec, WebhookSender, installation_payload, installation_repositories_payload,
    sign_webhook,
};
use serde_json::{Value, json};

const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 77;
const SECRET: &str = "webhook-secret-0123456789";
const OLD_SECRET: &str = "webhook-secret-old-000000";

fn repo() -> (u64, &'static str) {
    let r = RunSpec::default();
    (r.repository_id, "octo-org/octo-repo")
}

async fn start() -> Harness {
    let gh = FakeGithub::start().await.unwrap();
    let creds = gh.register_app(APP_ID).unwrap();
    let run = RunSpec::default();
    gh.add_installation(
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[repo()],
    );
    Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(creds.private_key_pem))),
            webhook_secrets: vec![Secret::new(SECRET.into()), Secret::new(OLD_SECRET.into())],
            github_token: true,
            ..Default::default()
        },
    )
    .await
}

fn sender(h: &Harness, secret: &str) -> WebhookSender {
    WebhookSender::new(format!("{}/v1/github/webhooks", h.url), secret.as_bytes())
}

fn other_repo() -> RunSpec {
    RunSpec {
        repository: "octo-org/other".into(),
        repository_id: 5_550_001,
        ..RunSpec::default()
    }
}

#[tokio::test]
async fn installed_repository_is_accepted_with_its_installation_id() {
    let h = start().await;
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["identity"]["installation_id"], json!(INSTALLATION));
    let lookups = h.gh.api_requests("repo_installation");
    let (status, _) = h.upload(Some(&bearer(&h.token())), "b", "2").await;
    assert_eq!(status, 201);
    assert_eq!(
        h.gh.api_requests("repo_installation"),
        lookups,
        "the lookup is cached"
    );
    assert!(h.gh.app_jwt_uses() >= 1);
    assert_eq!(
        h.gh.last_app_jwt_error(),
        None,
        "the fake accepted every App JWT runproof signed"
    );
    let wk: Value = h
        .get("/.well-known/runproof", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wk["installation_binding"], true);
    assert_eq!(wk["modes"], json!(["oidc", "session", "github_token"]));
    h.stop().await;
}

#[tokio::test]
async fn rule_not_installed_then_an_installation_webhook_makes_it_accepted() {
    let h = start().await;
    h.gh.set_run(other_repo());
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "{body}"
    );
    h.assert_nothing_stored("not installed").await;

    let run = RunSpec::default();
    let payload = installation_repositories_payload(
        "added",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[(5_550_001, "octo-org/other")],
        &[],
    );
    let (status, _, _) = sender(&h, SECRET)
        .send("installation_repositories", &payload)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, record) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["identity"]["installation_id"], json!(INSTALLATION));

    let payload = installation_repositories_payload(
        "removed",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[],
        &[(5_550_001, "octo-org/other")],
    );
    let (status, _, _) = sender(&h, SECRET)
        .send("installation_repositories", &payload)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "removed: {body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_suspended_installation_is_not_installed() {
    let h = start().await;
    let run = RunSpec::default();
    let created = installation_payload(
        "created",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[repo()],
    );
    assert_eq!(
        sender(&h, SECRET)
            .send("installation", &created)
            .await
            .unwrap()
            .0,
        200
    );
    let mut suspend = installation_payload(
        "suspend",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[],
    );
    suspend["installation"]["suspended_at"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(
        sender(&h, SECRET)
            .send("installation", &suspend)
            .await
            .unwrap()
            .0,
        200
    );
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "{body}"
    );
    let unsuspend = installation_payload(
        "unsuspend",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[],
    );
    assert_eq!(
        sender(&h, SECRET)
            .send("installation", &unsuspend)
            .await
            .unwrap()
            .0,
        200
    );
    let (status, _) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(status, 201);
    let deleted = installation_payload(
        "deleted",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[repo()],
    );
    assert_eq!(
        sender(&h, SECRET)
            .send("installation", &deleted)
            .await
            .unwrap()
            .0,
        200
    );
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "deleted: {body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_suspended_installation_found_by_lookup_is_not_installed() {
    let h = start().await;
    h.gh.suspend_installation(INSTALLATION, true);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_renamed_or_recreated_repository_does_not_inherit_the_installation() {
    let h = start().await;
    // The name now belongs to a new repository id; the token still carries the old one.
    h.gh.set_repository("octo-org/octo-repo", 9_999_999);
    let (status, body) = h.upload(Some(&bearer(&h.token())), "a", "1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn github_outage_with_nothing_known_is_503_never_a_guess() {
    let h = start().await;
    h.gh.set_api_outage(true);
    let resp = h
        .http
        .post(format!("{}/v1/uploads?name=a", h.url))
        .bearer_auth(h.token())
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "upstream_unavailable"
    );
    h.gh.set_api_outage(false);

    h.gh.set_rate_limited(Some(30));
    let resp = h
        .http
        .post(format!("{}/v1/uploads?name=a", h.url))
        .bearer_auth(h.token())
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=30).contains(&retry),
        "Retry-After follows GitHub's: {retry}"
    );
    h.assert_nothing_stored("outage").await;
    h.stop().await;
}

#[tokio::test]
async fn rule_app_jwt_is_signed_by_the_configured_key() {
    let gh = FakeGithub::start().await.unwrap();
    gh.register_app(APP_ID).unwrap();
    let wrong = gh.register_app(APP_ID + 1).unwrap();
    gh.add_installation(
        INSTALLATION,
        "octo-org",
        RunSpec::default().repository_owner_id,
        &[repo()],
    );
    let h = Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(wrong.private_key_pem))),
            ..Default::default()
        },
    )
    .await;
    let resp = h
        .http
        .post(format!("{}/v1/uploads?name=a", h.url))
        .bearer_auth(h.token())
        .body("1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        503,
        "a refused App JWT is an outage on our side, never an accept"
    );
    assert!(
        h.gh.last_app_jwt_error().is_some(),
        "the fake checked and refused the App JWT"
    );
    h.stop().await;
}

#[tokio::test]
async fn webhook_signatures_are_checked_before_anything_else() {
    let h = start().await;
    let run = RunSpec::default();
    let payload = installation_repositories_payload(
        "added",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[(5_550_001, "octo-org/other")],
        &[],
    );
    let body = serde_json::to_vec(&payload).unwrap();
    let good = sign_webhook(SECRET.as_bytes(), &body);
    let mut modified = body.clone();
    modified.extend_from_slice(b" ");
    let sha1_only = "sha1=0123456789abcdef0123456789abcdef01234567";
    let s = sender(&h, SECRET);
    let cases: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("webhook signature: missing", body.clone(), None),
        (
            "webhook signature: SHA-1 only",
            body.clone(),
            Some(sha1_only.into()),
        ),
        (
            "webhook signature: wrong secret",
            body.clone(),
            Some(sign_webhook(b"not-the-secret", &body)),
        ),
        (
            "webhook signature: valid signature over a modified body",
            modified,
            Some(good.clone()),
        ),
        (
            "webhook signature: garbage",
            body.clone(),
            Some("sha256=zzzz".into()),
        ),
        // Verified before parsing: unreadable JSON under a bad signature is 401, never 400.
        (
            "webhook signature: a bad signature over a body that is not JSON",
            b"{not json".to_vec(),
            Some(sign_webhook(b"not-the-secret", b"{not json")),
        ),
    ];
    for (rule, body, sig) in cases {
        let (status, text) = s
            .send_raw("installation_repositories", &uuid(), &body, sig.as_deref())
            .await
            .unwrap();
        assert_eq!(status, 401, "rule `{rule}`: {text}");
    }
    assert!(
        h.service
            .store()
            .repository_binding(RepositoryId(5_550_001))
            .await
            .unwrap()
            .is_none(),
        "nothing changed"
    );

    // Rotation: the old secret still verifies while it is configured.
    let (status, _) = sender(&h, OLD_SECRET)
        .send_raw(
            "installation_repositories",
            &uuid(),
            &body,
            Some(&sign_webhook(OLD_SECRET.as_bytes(), &body)),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "rule webhook secret rotation");
    assert!(
        h.service
            .store()
            .repository_binding(RepositoryId(5_550_001))
            .await
            .unwrap()
            .is_some()
    );
    h.stop().await;
}

fn uuid() -> String {
    format!(
        "00000000-0000-4000-8000-{:012x}",
        rand_u64() & 0xffff_ffff_ffff
    )
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(42);
    h.finish()
}

#[tokio::test]
async fn rule_redelivery_has_no_second_effect() {
    let h = start().await;
    let run = RunSpec::default();
    let added = installation_repositories_payload(
        "added",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[(5_550_001, "octo-org/other")],
        &[],
    );
    let removed = installation_repositories_payload(
        "removed",
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[],
        &[(5_550_001, "octo-org/other")],
    );
    let s = sender(&h, SECRET);
    let add_body = serde_json::to_vec(&added).unwrap();
    let add_id = uuid();
    let sig = sign_webhook(SECRET.as_bytes(), &add_body);
    assert_eq!(
        s.send_raw("installation_repositories", &add_id, &add_body, Some(&sig))
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        s.send("installation_repositories", &removed)
            .await
            .unwrap()
            .0,
        200
    );
    // The "added" delivery comes again: 2xx, and the repository stays removed.
    let (status, text) = s
        .send_raw("installation_repositories", &add_id, &add_body, Some(&sig))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("duplicate"), "{text}");
    let b = h
        .service
        .store()
        .repository_binding(RepositoryId(5_550_001))
        .await
        .unwrap()
        .unwrap();
    assert!(b.removed, "the redelivery had no second effect");
    h.stop().await;
}

#[tokio::test]
async fn webhook_receiver_answers_ping_ignores_other_events_and_caps_the_body() {
    let h = start().await;
    let s = sender(&h, SECRET);
    let (status, _, _) = s
        .send(
            "ping",
            &json!({"zen": "Keep it logically awesome.", "hook_id": 1}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, _, _) = s.send("star", &json!({"action": "created"})).await.unwrap();
    assert_eq!(status, 200, "other events are acknowledged and ignored");
    // The cap applies before verification: a body over it is 413 whatever its signature
    // (a receiver that verified first would answer 401 to this one).
    let big = vec![b' '; 25 * 1024 * 1024 + 1];
    let sig = sign_webhook(b"not-the-secret", &big);
    let (status, _) = s.send_raw("push", &uuid(), &big, Some(&sig)).await.unwrap();
    assert_eq!(status, 413, "an oversized body under a bad signature");
    // A declared length over the cap is refused from the headers, before any byte is read.
    let sig = format!("sha256={}", "0".repeat(64));
    let answer = raw_delivery(&h, Some(&sig), MAX_WEBHOOK_BYTES + 1).await;
    assert_eq!(
        answer,
        Some(413),
        "Content-Length over the cap, no body sent"
    );
    let (status, _) = s
        .send_raw(
            "installation",
            &uuid(),
            b"{}",
            Some(&sign_webhook(SECRET.as_bytes(), b"{}")),
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "a signed but unreadable installation payload");
    h.stop().await;
}

/// GitHub's cap on a delivery, 25 MiB.
const MAX_WEBHOOK_BYTES: usize = 25 * 1024 * 1024;

/// Sends the head of a delivery that declares `length` bytes and sends none of them, and
/// returns the status of the answer, or `None` when none comes within 5 s (the server
/// would wait for the body first).
async fn raw_delivery(h: &Harness, signature: Option<&str>, length: usize) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = h.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let signature = signature
        .map(|s| format!("X-Hub-Signature-256: {s}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /v1/github/webhooks HTTP/1.1\r\nHost: {addr}\r\nX-GitHub-Event: ping\r\n\
         X-GitHub-Delivery: {}\r\n{signature}Content-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n",
        uuid(),
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    let read = async {
        while !answer.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .ok()?;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
async fn rule_unsigned_deliveries_are_refused_before_the_body_is_read() {
    // The body deadline is far beyond the wait: a receiver that read the body first would
    // still be waiting when the test gives up.
    let gh = FakeGithub::start().await.unwrap();
    let h = Harness::start_against(
        gh,
        Options {
            webhook_secrets: vec![Secret::new(SECRET.into())],
            limits: runproof_server::LimitsConfig {
                webhook_body_timeout_seconds: 60,
                ..runproof_server::LimitsConfig::default()
            },
            ..Default::default()
        },
    )
    .await;
    let answer = raw_delivery(&h, None, 1024 * 1024).await;
    assert_eq!(
        answer,
        Some(401),
        "a delivery without X-Hub-Signature-256 is refused from its headers"
    );
    h.stop().await;
}

fn payload_dir() -> Option<std::path::PathBuf> {
    let d = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/webhook_payloads");
    assert!(d.is_dir(), "{} is missing", d.display());
    Some(d)
}

fn event_of(dir_name: &str, file: &str) -> String {
    if dir_name != "octocrab" {
        return dir_name.to_owned();
    }
    let stem = file
        .trim_end_matches(".json")
        .trim_end_matches("_webhook_event");
    for event in [
        "installation_repositories",
        "installation",
        "issue_comment",
        "issues",
        "pull_request",
        "push",
        "ping",
        "repository",
        "commit_comment",
        "workflow_run",
        "check_suite",
    ] {
        if stem.starts_with(event) {
            return event.to_owned();
        }
    }
    "unknown".into()
}

#[tokio::test]
async fn every_real_payload_goes_through_the_receiver_without_a_5xx() {
    let Some(dir) = payload_dir() else { return };
    let h = start().await;
    let s = sender(&h, SECRET);
    let mut sent = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    dirs.sort_by_key(|e| e.file_name());
    for d in dirs {
        let dir_name = d.file_name().to_string_lossy().into_owned();
        let mut files: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        files.sort_by_key(|e| e.file_name());
        for f in files {
            let name = f.file_name().to_string_lossy().into_owned();
            let mut body = std::fs::read(f.path()).unwrap();
            if dir_name == "octocrab" && name.starts_with("workflow_run_event") {
                let v: Value = serde_json::from_slice(&body).unwrap();
                body = serde_json::to_vec(&v["payload"]).unwrap();
            }
            let event = event_of(&dir_name, &name);
            let sig = sign_webhook(SECRET.as_bytes(), &body);
            let (status, text) = s
                .send_raw(&event, &uuid(), &body, Some(&sig))
                .await
                .unwrap();
            assert!(
                status < 500,
                "{dir_name}/{name} as {event}: {status} {text}"
            );
            sent += 1;
        }
    }
    assert!(sent >= 50, "{sent}");

    // octokit's installation examples changed the stored state as they say.
    let store = &h.service.store();
    let inst = store
        .get_installation(InstallationId(957_387))
        .await
        .unwrap()
        .unwrap();
    assert!(!inst.deleted && !inst.installation.suspended);
    assert!(
        store
            .repository_binding(RepositoryId(186_853_002))
            .await
            .unwrap()
            .unwrap()
            .is_active(),
        "created lists it"
    );
    assert!(
        store
            .repository_binding(RepositoryId(186_853_007))
            .await
            .unwrap()
            .unwrap()
            .is_active(),
        "added lists it"
    );
    // octokit's unsuspend carries the `updated_at` of the suspension it ends: the same
    // second, so the order is unknown. Still suspended, unsettled: GitHub is asked.
    let inst = store
        .get_installation(InstallationId(16_598_467))
        .await
        .unwrap()
        .unwrap();
    assert!(
        inst.installation.suspended && inst.unsettled,
        "suspend then unsuspend of the same second: {inst:?}"
    );
    let inst = store
        .get_installation(InstallationId(39_593_433))
        .await
        .unwrap()
        .unwrap();
    assert!(inst.deleted, "octocrab's created then deleted");
    assert!(
        store
            .repository_binding(RepositoryId(455_581_571))
            .await
            .unwrap()
            .unwrap()
            .removed
    );
    let run = store
        .get_workflow_run(
            RepositoryId(199_196_552),
            runproof_core::RunId(1_245_374_547),
            1,
        )
        .await
        .unwrap()
        .expect("octocrab's real App delivery of workflow_run is stored");
    assert_eq!(run.installation_id, Some(InstallationId(18_995_746)));
    assert!(
        store
            .get_workflow_run(
                RepositoryId(300_029_405),
                runproof_core::RunId(289_782_451),
                1
            )
            .await
            .unwrap()
            .is_some(),
        "octokit's workflow_run example is stored"
    );
    h.stop().await;
}

type Headers = Vec<(&'static str, String)>;
type GtCase<'a> = (&'static str, &'a str, Headers, u16, &'static str);

fn gt_headers(run: &RunSpec) -> Vec<(&'static str, String)> {
    vec![
        ("x-runproof-repository", run.repository.clone()),
        (
            "x-runproof-run",
            format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
        ),
        ("x-runproof-sha", run.sha.clone()),
    ]
}

async fn gt_upload(h: &Harness, token: &str, headers: &[(&'static str, String)]) -> (u16, Value) {
    let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h.upload_with(
        Some(&format!("token {token}")),
        "name=gt.txt",
        "from a GITHUB_TOKEN",
        &hs,
    )
    .await
}

#[tokio::test]
async fn github_token_mode_accepts_exactly_the_claimed_repository() {
    let h = start().await;
    let run = RunSpec::default();
    let token = h.gh.issue_github_token(&[repo()], run.repository_owner_id);
    let (status, record) = gt_upload(&h, &token, &gt_headers(&run)).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["mode"], "github_token");
    let id = &record["identity"];
    assert_eq!(
        id["repository_id"],
        json!(run.repository_id),
        "from GitHub's answer"
    );
    assert_eq!(id["repository_owner_id"], json!(run.repository_owner_id));
    assert_eq!(id["installation_id"], json!(INSTALLATION));
    assert_eq!(id["unverified"], json!(["run_id", "run_attempt", "sha"]));
    assert_eq!(id["run_id"], json!(run.run_id));
    h.stop().await;
}

#[tokio::test]
async fn github_token_hostile_cases() {
    let h = start().await;
    let run = RunSpec::default();
    let owner = run.repository_owner_id;
    let two =
        h.gh.issue_github_token(&[repo(), (5_550_001, "octo-org/other")], owner);
    let wrong =
        h.gh.issue_github_token(&[(5_550_001, "octo-org/other")], owner);
    let revoked = h.gh.issue_github_token(&[repo()], owner);
    h.gh.revoke_token(&revoked);
    let good = h.gh.issue_github_token(&[repo()], owner);
    let mut other_run = gt_headers(&run);
    other_run[1].1 = format!("5550001/{}/1", run.run_id);
    let mut no_sha = gt_headers(&run);
    no_sha.pop();
    let mut bad_run = gt_headers(&run);
    bad_run[1].1 = "not/a/run".into();
    let cases: Vec<GtCase<'_>> = vec![
        (
            "github_token: a token seeing two repositories",
            &two,
            gt_headers(&run),
            403,
            "policy_denied",
        ),
        (
            "github_token: a token for another repository",
            &wrong,
            gt_headers(&run),
            403,
            "policy_denied",
        ),
        (
            "github_token: a revoked token",
            &revoked,
            gt_headers(&run),
            401,
            "invalid_github_token",
        ),
        (
            "github_token: an unknown token",
            "ghs_forged",
            gt_headers(&run),
            401,
            "invalid_github_token",
        ),
        (
            "github_token: run header names another repository",
            &good,
            other_run,
            403,
            "policy_denied",
        ),
        (
            "github_token: X-Runproof-Sha missing",
            &good,
            no_sha,
            400,
            "invalid_request",
        ),
        (
            "github_token: X-Runproof-Run malformed",
            &good,
            bad_run,
            400,
            "invalid_request",
        ),
    ];
    for (rule, token, headers, status, code) in cases {
        let (got, body) = gt_upload(&h, token, &headers).await;
        assert_eq!(
            (got, body["code"].as_str().unwrap_or_default()),
            (status, code),
            "rule `{rule}`: {body}"
        );
        let text = body.to_string();
        assert!(
            !text.contains(token),
            "rule `{rule}`: the token is never echoed"
        );
    }
    h.assert_nothing_stored("github_token hostile cases").await;

    // The token belongs to a repository where the App is not installed.
    let elsewhere =
        h.gh.issue_github_token(&[(5_550_001, "octo-org/other")], owner);
    let other = other_repo();
    let (got, body) = gt_upload(&h, &elsewhere, &gt_headers(&other)).await;
    assert_eq!(
        (got, body["code"].as_str()),
        (403, Some("not_installed")),
        "{body}"
    );
    h.stop().await;
}

#[tokio::test]
async fn github_token_mode_is_off_by_default() {
    let gh = FakeGithub::start().await.unwrap();
    let h = Harness::start_against(gh, Options::default()).await;
    let token = h.gh.issue_github_token(&[repo()], 1);
    let (status, body) = gt_upload(&h, &token, &gt_headers(&RunSpec::default())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("mode_disabled"))
    );
    assert_eq!(
        h.gh.api_requests("installation_repositories"),
        0,
        "GitHub is not even asked"
    );
    h.stop().await;
}

/// Sets the installation object's times: created long ago, changed (and suspended, when
/// it is) at `changed_at`.
fn dated(mut payload: Value, changed_at: &str) -> Value {
    let inst = &mut payload["installation"];
    inst["created_at"] = json!("2030-01-01T00:00:00Z");
    inst["updated_at"] = json!(changed_at);
    if !inst["suspended_at"].is_null() {
        inst["suspended_at"] = json!(changed_at);
    }
    payload
}

#[tokio::test]
async fn rule_a_late_installation_delivery_never_revives_access() {
    let h = start().await;
    let run = RunSpec::default();
    let (login, owner) = (run.repository_owner.as_str(), run.repository_owner_id);
    let s = sender(&h, SECRET);
    let deliver = |event: &'static str, payload: Value| {
        let s = &s;
        async move {
            let (status, body, _) = s.send(event, &payload).await.unwrap();
            assert_eq!(status, 200, "{event}: {body}");
        }
    };
    let upload = || async { h.upload(Some(&bearer(&h.token())), "a", "1").await };

    // The suspension arrives before the creation it followed: still suspended.
    let suspend = installation_payload("suspend", INSTALLATION, login, owner, &[]);
    deliver("installation", dated(suspend, "2030-01-01T00:00:20Z")).await;
    let created = installation_payload("created", INSTALLATION, login, owner, &[repo()]);
    deliver("installation", dated(created, "2030-01-01T00:00:10Z")).await;
    let (status, body) = upload().await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "a late `created` revived a suspended installation: {body}"
    );
    let unsuspend = installation_payload("unsuspend", INSTALLATION, login, owner, &[]);
    deliver("installation", dated(unsuspend, "2030-01-01T00:00:30Z")).await;
    assert_eq!(upload().await.0, 201, "a later unsuspend applies");

    // A removal arrives before the addition it followed: still removed.
    let other = other_repo();
    let removed = installation_repositories_payload(
        "removed",
        INSTALLATION,
        login,
        owner,
        &[],
        &[(other.repository_id, "octo-org/other")],
    );
    deliver(
        "installation_repositories",
        dated(removed, "2030-01-01T00:00:50Z"),
    )
    .await;
    let added = installation_repositories_payload(
        "added",
        INSTALLATION,
        login,
        owner,
        &[(other.repository_id, "octo-org/other")],
        &[],
    );
    deliver(
        "installation_repositories",
        dated(added, "2030-01-01T00:00:40Z"),
    )
    .await;
    h.gh.set_run(other);
    let (status, body) = upload().await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_installed")),
        "a late `added` revived a removed repository: {body}"
    );

    // An unsuspend of the same second as the suspension, as GitHub's own payloads have
    // it: the order is unknown, so GitHub is asked, and its answer decides.
    h.gh.set_run(RunSpec::default());
    let suspend = installation_payload("suspend", INSTALLATION, login, owner, &[]);
    deliver("installation", dated(suspend, "2030-01-01T00:01:00Z")).await;
    assert_eq!(upload().await.0, 403);
    let asked = h.gh.api_requests("repo_installation");
    let unsuspend = installation_payload("unsuspend", INSTALLATION, login, owner, &[]);
    deliver("installation", dated(unsuspend, "2030-01-01T00:01:00Z")).await;
    let (status, body) = upload().await;
    assert_eq!(status, 201, "{body}");
    assert!(
        h.gh.api_requests("repo_installation") > asked,
        "GitHub settled it"
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_one_tenants_spent_github_token_never_answers_another_with_503() {
    let h = start().await;
    let tenant_b = RunSpec {
        repository: "other-org/repo".into(),
        repository_id: 6_660_001,
        repository_owner: "other-org".into(),
        repository_owner_id: 6_660_000,
        ..RunSpec::default()
    };
    h.gh.add_installation(78, "other-org", 6_660_000, &[(6_660_001, "other-org/repo")]);
    let tenant_a = RunSpec::default();
    let a =
        h.gh.issue_github_token(&[repo()], tenant_a.repository_owner_id);
    let b =
        h.gh.issue_github_token(&[(6_660_001, "other-org/repo")], 6_660_000);
    h.gh.set_token_rate_limited(&a, Some(1800));

    let upload_a = || async {
        let mut req = h
            .http
            .post(format!("{}/v1/uploads?name=a", h.url))
            .header("authorization", format!("token {a}"))
            .body("1");
        for (k, v) in gt_headers(&tenant_a) {
            req = req.header(k, v);
        }
        req.send().await.unwrap()
    };
    let resp = upload_a().await;
    assert_eq!(resp.status(), 503);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((60..=1800).contains(&retry), "GitHub's reset: {retry}");
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "upstream_unavailable"
    );

    // Right after, tenant B with its own token is served.
    let (status, record) = gt_upload(&h, &b, &gt_headers(&tenant_b)).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["identity"]["repository_id"], json!(6_660_001));

    // Tenant A waits its limit out without GitHub being asked again.
    let asked = h.gh.api_requests("installation_repositories");
    assert_eq!(upload_a().await.status(), 503);
    assert_eq!(h.gh.api_requests("installation_repositories"), asked);
    h.stop().await;
}

/// A client whose requests come from `ip` (any 127/8 address reaches the server).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::from(ip))
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

/// An upload without credentials (webhook mode) claiming run `run_id` of `repository_id`.
async fn claim(client: &reqwest::Client, h: &Harness, repository_id: u64, run_id: u64) -> u16 {
    client
        .post(format!("{}/v1/uploads?name=r.json", h.url))
        .header("x-runproof-run", format!("{repository_id}/{run_id}/1"))
        .header("x-runproof-sha", RunSpec::default().sha)
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn rule_lookups_caused_by_strangers_are_bounded_per_address_and_repository_and_cached() {
    let gh = FakeGithub::start().await.unwrap();
    let creds = gh.register_app(APP_ID).unwrap();
    let run = RunSpec::default();
    gh.add_installation(
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[repo()],
    );
    let h = Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(creds.private_key_pem))),
            webhook_secrets: vec![Secret::new(SECRET.into())],
            webhook_mode: Some(runproof_service::WebhookModeConfig::default()),
            ..Default::default()
        },
    )
    .await;
    // The lookup budget's defaults: 30 per address and 30 per repository a minute.
    const BUDGET: u64 = 30;
    let total = |h: &Harness| -> u64 {
        [
            "repo_installation",
            "access_tokens",
            "repository",
            "repository_by_id",
            "repository_installation_by_id",
            "workflow_run",
            "contents",
        ]
        .iter()
        .map(|r| h.gh.api_requests(r))
        .sum()
    };

    // One address names 100 repositories the App is not installed on.
    let one = client_from([127, 0, 0, 1]);
    for i in 0..100 {
        assert_eq!(claim(&one, &h, 7_000_000 + i, 1).await, 202);
    }
    let by_id = h.gh.api_requests("repository_installation_by_id");
    assert!(
        (1..=BUDGET).contains(&by_id),
        "100 unknown repositories from one address: {by_id} lookups"
    );
    // "Not installed" is remembered: another address naming one of them asks nothing.
    let fresh = client_from([127, 0, 0, 9]);
    assert_eq!(claim(&fresh, &h, 7_000_000, 2).await, 202);
    assert_eq!(h.gh.api_requests("repository_installation_by_id"), by_id);
    assert_eq!(claim(&fresh, &h, 7_999_999, 1).await, 202);
    assert_eq!(
        h.gh.api_requests("repository_installation_by_id"),
        by_id + 1
    );

    // Five addresses name 60 unknown runs of one installed repository.
    let runs_before = h.gh.api_requests("workflow_run");
    for a in 2..7u8 {
        let client = client_from([127, 0, 0, a]);
        for i in 0..12 {
            let run_id = 100 + u64::from(a) * 100 + i;
            assert_eq!(claim(&client, &h, run.repository_id, run_id).await, 202);
        }
    }
    let runs = h.gh.api_requests("workflow_run") - runs_before;
    assert!(
        (1..=BUDGET).contains(&runs),
        "60 unknown runs of one repository: {runs} run lookups"
    );

    // Genuine tokens of 45 repositories without the App, from one address: the binding
    // lookups stop at the budget, then the answer is 429.
    let oidc = client_from([127, 0, 0, 11]);
    let by_name_before = h.gh.api_requests("repo_installation");
    let mut answers = Vec::new();
    for i in 0..45 {
        h.gh.set_run(RunSpec {
            repository: format!("octo-org/unknown-{i}"),
            repository_id: 8_000_000 + i,
            ..RunSpec::default()
        });
        let resp = oidc
            .post(format!("{}/v1/uploads?name=a", h.url))
            .bearer_auth(h.token())
            .body("1")
            .send()
            .await
            .unwrap();
        answers.push(resp.status().as_u16());
    }
    let by_name = h.gh.api_requests("repo_installation") - by_name_before;
    assert!(
        (1..=BUDGET).contains(&by_name),
        "45 unknown repositories: {by_name} lookups"
    );
    assert!(
        answers.iter().all(|s| *s == 403 || *s == 429),
        "{answers:?}"
    );
    assert!(answers.contains(&429), "{answers:?}");
    assert!(
        total(&h) <= 4 * 3 * BUDGET,
        "every GitHub call: {}",
        total(&h)
    );
    h.stop().await;
}
