//! `[policy] repository_file` through a real server: the repository's trust rules read
//! from a file on its default branch, served by the fake GitHub at
//! `GET /repositories/{id}/contents/{path}` without a `ref`. The file's version at the
//! run's commit (or on another branch) is never read, a broken file refuses with `403
//! policy_denied` saying why, a signed `push` to the default branch that touches the file
//! refreshes it and nothing else does, and GitHub down with nothing cached is `503`.
//! Each refusing case names its rule.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Harness, Options, bearer};
use runproof_core::Secret;
use runproof_core::rules::TrustRule;
use runproof_testkit::{FakeGithub, RunSpec, WebhookSender};
use serde_json::{Value, json};

const APP_ID: u64 = 4343;
const INSTALLATION: u64 = 88;
const SECRET: &str = "webhook-secret-0123456789";
const PATH: &str = ".github/runproof.yml";

/// The default run (a push to `refs/heads/main`) matches it.
const MAIN: &str = "rules:\n  - name: main pushes\n    refs: [refs/heads/main]\n";
/// The default run does not match it.
const RELEASE: &str = "rules:\n  - name: release tags\n    refs: [\"refs/tags/v*\"]\n";

async fn start_with(trust_rules: Vec<TrustRule>) -> Harness {
    let gh = FakeGithub::start().await.unwrap();
    let creds = gh.register_app(APP_ID).unwrap();
    let run = RunSpec::default();
    gh.add_installation(
        INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[(run.repository_id, run.repository.as_str())],
    );
    Harness::start_against(
        gh,
        Options {
            app: Some((APP_ID, Secret::new(creds.private_key_pem))),
            webhook_secrets: vec![Secret::new(SECRET.into())],
            repository_file: Some(PATH.into()),
            trust_rules,
            ..Default::default()
        },
    )
    .await
}

async fn start() -> Harness {
    start_with(Vec::new()).await
}

/// Puts (or, with `None`, removes) the file on the default branch.
fn default_branch_file(h: &Harness, content: Option<&str>) {
    h.gh.set_default_branch_file(RunSpec::default().repository_id, PATH, content);
}

async fn upload(h: &Harness) -> (u16, Value) {
    h.upload(Some(&bearer(&h.token())), "a", "1").await
}

/// A `push` payload as GitHub sends it, with one commit modifying `modified`.
fn push_payload(git_ref: &str, modified: &[&str]) -> Value {
    let run = RunSpec::default();
    json!({
        "ref": git_ref,
        "before": "1".repeat(40),
        "after": "2".repeat(40),
        "created": false,
        "deleted": false,
        "forced": false,
        "repository": {
            "id": run.repository_id,
            "full_name": run.repository,
            "default_branch": "main",
            "owner": {"id": run.repository_owner_id, "login": run.repository_owner},
        },
        "installation": {"id": INSTALLATION},
        "commits": [{
            "id": "2".repeat(40),
            "added": [],
            "removed": [],
            "modified": modified,
        }],
    })
}

async fn deliver(h: &Harness, event: &str, payload: &Value) {
    let sender = WebhookSender::new(format!("{}/v1/github/webhooks", h.url), SECRET.as_bytes());
    let (status, body, _) = sender.send(event, payload).await.unwrap();
    assert_eq!(status, 200, "{event}: {body}");
}

/// A push to the default branch that touches the file: its copy is dropped.
async fn push_file_change(h: &Harness) {
    deliver(h, "push", &push_payload("refs/heads/main", &[PATH])).await;
}

/// Asserts a `403 policy_denied` whose mismatches are `mismatches`, for `rule`.
fn assert_refused(rule: &str, status: u16, body: &Value, mismatches: &Value) {
    assert_eq!(status, 403, "rule `{rule}`: {body}");
    assert_eq!(body["code"], "policy_denied", "rule `{rule}`: {body}");
    assert_eq!(&body["mismatches"], mismatches, "rule `{rule}`: {body}");
}

/// Asserts a `403 policy_denied` saying the file cannot be used, and why.
fn assert_broken(rule: &str, status: u16, body: &Value, why: &str) {
    assert_eq!(status, 403, "rule `{rule}`: {body}");
    assert_eq!(body["code"], "policy_denied", "rule `{rule}`: {body}");
    let mismatch = &body["mismatches"][0];
    assert_eq!(
        mismatch["field"], "repository_file",
        "rule `{rule}`: {body}"
    );
    let actual = mismatch["actual"].as_str().unwrap_or_default();
    assert!(
        actual.contains(why),
        "rule `{rule}`: the mismatch says why ({why}): {body}"
    );
}

#[tokio::test]
async fn the_files_rules_admit_a_matching_run() {
    let h = start().await;
    assert_eq!(h.service.repository_file(), Some(PATH));
    default_branch_file(&h, Some(MAIN));
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(
        h.gh.api_requests("contents_by_id"),
        1,
        "read from the default branch, by repository id"
    );
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(h.gh.api_requests("contents_by_id"), 1, "and cached");
    h.stop().await;
}

#[tokio::test]
async fn rule_the_files_rules_refuse_a_run_none_allows_with_the_nearest_rules_mismatches() {
    let h = start().await;
    default_branch_file(&h, Some(RELEASE));
    let (status, body) = upload(&h).await;
    assert_refused(
        "the file's rule refuses",
        status,
        &body,
        &json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]),
    );
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("release tags") && detail.contains("repository"),
        "{detail}"
    );
    h.assert_nothing_stored("the file refuses").await;
    h.stop().await;
}

/// A pull request (or any push) that changes the file at its own commit cannot change
/// the rules its run is held to: only the default branch's file is read.
#[tokio::test]
async fn rule_the_file_at_the_runs_commit_or_branch_is_ignored() {
    let run = RunSpec::default();
    let h = start().await;
    default_branch_file(&h, Some(RELEASE));
    for git_ref in [
        run.sha.as_str(),
        "refs/heads/main",
        "main",
        "refs/heads/dev",
    ] {
        h.gh.set_file(&run.repository, PATH, git_ref, MAIN);
    }
    let (status, body) = upload(&h).await;
    assert_refused(
        "the pushed commit's file is not read",
        status,
        &body,
        &json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]),
    );
    assert_eq!(h.gh.api_requests("contents"), 0, "no file read at a commit");
    assert_eq!(h.gh.api_requests("contents_by_id"), 1);
    h.stop().await;

    // And the other way round: the default branch allows, the commit's file would refuse.
    let h = start().await;
    default_branch_file(&h, Some(MAIN));
    h.gh.set_file(&run.repository, PATH, &run.sha, RELEASE);
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

#[tokio::test]
async fn rule_a_broken_file_refuses_every_run_saying_why() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    bomb.push_str("rules: []\n");
    let too_large = format!("{}\nrules: []\n", "#".repeat(70 * 1024));
    let cases: [(&str, &str, &str); 7] = [
        ("bad YAML", "rules: [\n", "not valid YAML"),
        (
            "unknown field",
            "rules:\n  - name: x\n    branches: [main]\n",
            "unknown field `branches`",
        ),
        (
            "unknown top-level key",
            "rulez: []\n",
            "unknown field `rulez`",
        ),
        ("alias bomb", &bomb, "expands to more than"),
        ("too large", &too_large, "larger than 65536 bytes"),
        (
            "a bound broken",
            "rules:\n  - refs: [main]\n",
            "refs/heads/main",
        ),
        ("a key given twice", "rules: []\nrules: []\n", "given twice"),
    ];
    let h = start().await;
    for (rule, content, why) in cases {
        default_branch_file(&h, Some(content));
        push_file_change(&h).await;
        let (status, body) = upload(&h).await;
        assert_broken(rule, status, &body, why);
    }
    h.assert_nothing_stored("a broken file").await;
    // Fixed on the default branch, announced by a push: runs are admitted again.
    default_branch_file(&h, Some(MAIN));
    push_file_change(&h).await;
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

#[tokio::test]
async fn without_a_file_the_app_rules_still_apply() {
    let h = start().await;
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "no file, no rules: {record}");
    assert_eq!(h.gh.api_requests("contents_by_id"), 1);
    let (status, _) = upload(&h).await;
    assert_eq!(status, 201);
    assert_eq!(
        h.gh.api_requests("contents_by_id"),
        1,
        "the absence is cached too"
    );
    h.stop().await;

    // The App's layer holds with or without the file.
    let app_rule = TrustRule {
        name: "app: release tags".into(),
        refs: Some(vec!["refs/tags/v*".into()]),
        ..TrustRule::default()
    };
    let h = start_with(vec![app_rule]).await;
    default_branch_file(&h, Some(MAIN));
    let (status, body) = upload(&h).await;
    assert_refused(
        "the App's layer still applies",
        status,
        &body,
        &json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]),
    );
    h.stop().await;
}

#[tokio::test]
async fn rule_only_a_push_to_the_default_branch_touching_the_file_refreshes_it() {
    let h = start().await;
    default_branch_file(&h, Some(MAIN));
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    // The default branch now refuses; until GitHub says it changed, the copy holds.
    default_branch_file(&h, Some(RELEASE));
    deliver(&h, "push", &push_payload("refs/heads/dev", &[PATH])).await;
    deliver(&h, "push", &push_payload("refs/tags/v1", &[PATH])).await;
    deliver(&h, "push", &push_payload("refs/heads/main", &["README.md"])).await;
    deliver(
        &h,
        "pull_request",
        &json!({
            "action": "synchronize",
            "number": 1,
            "repository": {"id": RunSpec::default().repository_id, "default_branch": "main"},
            "pull_request": {"head": {"ref": "dev"}, "base": {"ref": "main"}},
        }),
    )
    .await;
    let (status, record) = upload(&h).await;
    assert_eq!(
        status, 201,
        "another branch, a tag, another file or a pull request changes nothing: {record}"
    );
    assert_eq!(h.gh.api_requests("contents_by_id"), 1);

    push_file_change(&h).await;
    let (status, body) = upload(&h).await;
    assert_refused(
        "a push to the default branch refreshes the file",
        status,
        &body,
        &json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]),
    );
    assert_eq!(h.gh.api_requests("contents_by_id"), 2);

    // Removed on the default branch: no file, no repository rules.
    default_branch_file(&h, None);
    let mut removal = push_payload("refs/heads/main", &[]);
    removal["commits"][0]["removed"] = json!([PATH]);
    deliver(&h, "push", &removal).await;
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

#[tokio::test]
async fn rule_github_down_with_nothing_cached_is_upstream_unavailable() {
    let h = start().await;
    default_branch_file(&h, Some(MAIN));
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    push_file_change(&h).await;
    h.gh.set_api_outage(true);
    let (status, body) = upload(&h).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "upstream_unavailable", "{body}");
    assert_eq!(
        h.record_count().await,
        1,
        "nothing stored while GitHub is down"
    );
    h.gh.set_api_outage(false);
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "{record}");
    h.stop().await;
}

async fn put_api_rules(h: &Harness, rules: &Value) {
    let resp = h
        .http
        .put(format!(
            "{}/v1/repositories/{}/rules",
            h.url,
            RunSpec::default().repository_id
        ))
        .bearer_auth(common::API_KEY)
        .json(&json!({ "rules": rules }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
}

/// A repository with the file uses the file; without it, the rules set through the API.
#[tokio::test]
async fn rule_a_repository_with_the_file_uses_the_file_else_the_api_rules() {
    let h = start().await;
    put_api_rules(
        &h,
        &json!([{"name": "api: release tags", "refs": ["refs/tags/v*"]}]),
    )
    .await;
    let (status, body) = upload(&h).await;
    assert_refused(
        "no file: the API's rules apply",
        status,
        &body,
        &json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}]),
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("api: release tags"),
        "{body}"
    );

    default_branch_file(&h, Some(MAIN));
    let mut added = push_payload("refs/heads/main", &[]);
    added["commits"][0]["added"] = json!([PATH]);
    deliver(&h, "push", &added).await;
    let (status, record) = upload(&h).await;
    assert_eq!(status, 201, "the file replaces the API's rules: {record}");

    // A broken file refuses, even though the API's rules would not be consulted anyway.
    default_branch_file(&h, Some("rules: [\n"));
    push_file_change(&h).await;
    let (status, body) = upload(&h).await;
    assert_broken(
        "a broken file is not skipped",
        status,
        &body,
        "not valid YAML",
    );
    h.stop().await;
}

async fn explain(h: &Harness) -> Value {
    let resp = h
        .http
        .post(format!("{}/v1/policy/explain", h.url))
        .bearer_auth(common::API_KEY)
        .json(&json!({"token": h.token()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap()
}

#[tokio::test]
async fn explain_shows_the_files_rules() {
    let h = start().await;
    default_branch_file(
        &h,
        Some(&format!(
            "{MAIN}  - name: release tags\n    refs: [\"refs/tags/v*\"]\n"
        )),
    );
    let body = explain(&h).await;
    assert_eq!(body["allowed"], true, "{body}");
    let repository_rules = check(&body, "repository_rules");
    assert_eq!(repository_rules["ok"], true, "{body}");
    assert!(
        repository_rules["detail"].as_str().unwrap().contains(PATH),
        "{body}"
    );
    let rules: Vec<&Value> = body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["layer"] == "repository")
        .collect();
    assert_eq!(rules.len(), 2, "{body}");
    assert_eq!(rules[0]["name"], "main pushes");
    assert_eq!(rules[0]["matched"], true);
    assert_eq!(rules[1]["name"], "release tags");
    assert_eq!(rules[1]["matched"], false);
    assert_eq!(
        rules[1]["mismatches"],
        json!([{"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}])
    );

    default_branch_file(&h, Some("rules:\n  - refz: [x]\n"));
    push_file_change(&h).await;
    let body = explain(&h).await;
    assert_eq!(body["allowed"], false, "{body}");
    assert_eq!(check(&body, "repository_rules")["ok"], false, "{body}");
    let broken = body["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["layer"] == "repository")
        .unwrap();
    assert_eq!(
        broken["mismatches"][0]["field"], "repository_file",
        "{body}"
    );
    assert!(
        broken["mismatches"][0]["actual"]
            .as_str()
            .unwrap()
            .contains("unknown field `refz`"),
        "{body}"
    );
    h.assert_nothing_stored("explaining").await;
    h.stop().await;
}
