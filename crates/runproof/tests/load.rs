//! Load without loss: 64 concurrent clients against a real server process for
//! `RUNPROOF_LOAD_SECONDS` (default 10), mixing genuine uploads of every mode (OIDC tokens,
//! upload sessions, `GITHUB_TOKEN`s, pending uploads approved by signed `workflow_run`
//! webhooks) with hostile ones (replays, wrong audience, forged key, bad digest,
//! oversized, no credentials; revoked, unknown, too wide or misplaced `GITHUB_TOKEN`s;
//! pending uploads claiming a fork's run, a denied event, a run completed long ago, a
//! repository without the App, another commit, or a run vouched for only by unsigned or
//! wrongly signed webhooks; malformed run headers; a flood naming one repository).
//!
//! Every answer must be one its kind allows, and none is a 5xx. After the load, the pending
//! uploads left are the hostile ones; the server is restarted with `pending_ttl_seconds = 1`
//! so that its sweeper expires them. Then every genuine upload is verified and readable
//! with its sha256, every hostile upload that was held is rejected or expired and its
//! content is not served, and nothing else is stored. Peak RSS and open fds of the server
//! under load are reported and loosely bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proc;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proc::{
    Rng, Server, client, free_port, list_all, list_status, rss_and_fds, sha256_hex, write_config,
};
use runproof_testkit::{
    FakeGithub, RunSpec, TestKey, WebhookSender, installation_payload, workflow_run_payload,
};
use serde_json::{Value, json};
use sha2::Digest as _;

const AUDIENCE: &str = "https://runproof.load.test";
const API_KEY: &str = "load-api-key-0123456789";
const CLIENTS: usize = 64;
const MAX_UPLOAD: usize = 1024 * 1024;
const APP_ID: u64 = 4_242;
/// The App's installation on the whole account of the fake's default owner.
const INSTALLATION: u64 = 3_300_001;
const WEBHOOK_SECRET: &str = "load-webhook-secret-0123456789";
/// An account without the App.
const STRANGER: &str = "stranger-org";
const STRANGER_ID: u64 = 77_001;
/// The repository the flood names; no other kind uses it.
const FLOOD_REPOSITORY: u64 = 6_999_999;
/// Requests without credentials naming one repository, per minute.
const PER_REPOSITORY_LIMIT: u32 = 20;

/// The mix: each kind with its weight.
const MIX: &[(&str, u64)] = &[
    ("oidc", 6),
    ("session", 4),
    ("replay", 2),
    ("wrong_audience", 1),
    ("forged_key", 1),
    ("bad_digest", 1),
    ("oversized", 1),
    ("no_credentials", 1),
    ("github_token", 5),
    ("gt_revoked", 1),
    ("gt_unknown", 1),
    ("gt_two_repositories", 1),
    ("gt_other_repository", 1),
    ("gt_not_installed", 1),
    ("pending", 6),
    ("wh_fork", 1),
    ("wh_denied_event", 1),
    ("wh_too_late", 1),
    ("wh_not_installed", 1),
    ("wh_wrong_sha", 1),
    ("wh_forged_webhook", 1),
    ("wh_malformed_run", 1),
    ("flood_repository", 1),
];

/// A closed connection instead of an answer. Allowed as such only for an oversized body,
/// refused while it is still being sent: a refusal of anything else is an answer, so that a
/// handler that aborts is not taken for one. Any other close is a stray: a few are tolerated
/// (at most [`STRAY_CLOSES_PER_MILLE`] of all requests), since the loaded CI machine has shown
/// a rare broken pipe as 64 clients connect at once; a handler that aborts one kind of
/// request closes about 24 in 1000.
const CLOSED: (u16, &str) = (499, "closed");
/// The most stray closes, per 1000 requests.
const STRAY_CLOSES_PER_MILLE: u64 = 5;

/// The answers a kind may get: the status with the problem's `code`, or, for 2xx, the
/// record's `status` (or the delivery's).
fn expected(kind: &str) -> &'static [(u16, &'static str)] {
    match kind {
        "oidc" | "session" | "github_token" => &[(201, "verified")],
        "session_open" => &[(201, "")],
        "pending" => &[(202, "pending"), (201, "verified")],
        "replay" => &[(401, "token_replayed")],
        "wrong_audience" => &[(401, "wrong_audience")],
        "forged_key" => &[(401, "bad_signature")],
        "bad_digest" => &[(400, "digest_mismatch")],
        "oversized" => &[(413, "payload_too_large"), CLOSED],
        "no_credentials" => &[(401, "missing_credentials")],
        "gt_revoked" | "gt_unknown" => &[(401, "invalid_github_token")],
        "gt_two_repositories" | "gt_other_repository" => &[(403, "policy_denied")],
        // Each names a repository GitHub is asked about; the lookups have a budget.
        "gt_not_installed" => &[(403, "not_installed"), (429, "rate_limited")],
        "wh_fork" | "wh_denied_event" | "wh_too_late" | "wh_not_installed" => {
            &[(202, "pending"), (202, "rejected")]
        }
        // Another commit of a run already known is refused before the body.
        "wh_wrong_sha" => &[(202, "pending"), (403, "policy_denied")],
        "wh_forged_webhook" => &[(202, "pending")],
        "wh_malformed_run" => &[(400, "invalid_request")],
        "flood_repository" => &[(400, "invalid_request"), (429, "rate_limited")],
        "webhook" => &[(200, "processed")],
        "webhook_unsigned" => &[(401, "missing_credentials")],
        "webhook_bad_signature" => &[(401, "bad_signature")],
        _ => &[],
    }
}

/// The status a stored upload of this kind must end with, and its mode.
fn end_state(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "oidc" => ("verified", "oidc"),
        "session" => ("verified", "session"),
        "github_token" => ("verified", "github_token"),
        "pending" => ("verified", "webhook"),
        "wh_fork" | "wh_denied_event" | "wh_too_late" | "wh_not_installed" | "wh_wrong_sha" => {
            ("rejected", "webhook")
        }
        "wh_forged_webhook" => ("expired", "webhook"),
        _ => return None,
    })
}

/// An error with its causes, so that a refusal by a closed connection says what closed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn genuine(kind: &str) -> bool {
    matches!(kind, "oidc" | "session" | "github_token" | "pending")
}

fn pick(rng: &mut Rng) -> &'static str {
    let total: u64 = MIX.iter().map(|(_, w)| w).sum();
    let mut r = rng.below(total);
    for (kind, w) in MIX {
        if r < *w {
            return kind;
        }
        r -= w;
    }
    unreachable!()
}

fn digest_header(body: &[u8]) -> String {
    runproof_core::digest::format_content_digest(&sha2::Sha256::digest(body).into())
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn run_header(run: &RunSpec) -> String {
    format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt)
}

/// The headers of the `github_token` mode claiming `run`.
fn gt_headers(run: &RunSpec) -> Vec<(&'static str, String)> {
    vec![
        ("x-runproof-repository", run.repository.clone()),
        ("x-runproof-run", run_header(run)),
        ("x-runproof-sha", run.sha.clone()),
    ]
}

/// The headers of a pending upload (webhook mode) claiming `run`.
fn pending_headers(run: &RunSpec) -> Vec<(&'static str, String)> {
    vec![
        ("x-runproof-run", run_header(run)),
        ("x-runproof-sha", run.sha.clone()),
    ]
}

/// A signed `workflow_run` completed/success delivery for `run`.
fn completed(run: &RunSpec) -> Value {
    started_early(workflow_run_payload(
        "completed",
        run,
        Some(INSTALLATION),
        "completed",
        Some("success"),
    ))
}

/// The fake stamps `run_started_at` with the time a payload is built; a run starts before
/// its uploads, and an upload received before its attempt started is rejected.
fn started_early(mut payload: Value) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    payload["workflow_run"]["run_started_at"] = json!(rfc3339(now - 600));
    payload
}

#[derive(Clone, Copy)]
enum Signing {
    Signed,
    Unsigned,
    WrongSecret,
}

#[derive(Default)]
struct Tally {
    /// (kind, status, code or record status) → count.
    outcomes: BTreeMap<(&'static str, u16, String), u64>,
    /// Every upload the server stored: id → (kind, sha256).
    stored: HashMap<String, (&'static str, String)>,
    failures: Vec<String>,
    /// Closed connections where an answer was due, with their causes.
    stray_closes: Vec<String>,
}

struct Ctx {
    gh: Arc<FakeGithub>,
    base: String,
    http: reqwest::Client,
    /// For uploads refused (before or while their body is read): the server closes their
    /// connections, so none is kept in a pool where a client could reuse a closed one.
    unpooled: reqwest::Client,
    webhooks: WebhookSender,
    forger: WebhookSender,
    stranger: TestKey,
    template: RunSpec,
    next: AtomicU64,
    tally: Mutex<Tally>,
}

/// A client's state across its requests.
#[derive(Default)]
struct ClientState {
    session: Option<(String, u32)>,
    spent: Option<String>,
    /// The current run's `GITHUB_TOKEN`, its run, and the uploads made with it.
    token: Option<(String, RunSpec, u32)>,
    /// The previous run's `GITHUB_TOKEN`, revoked when the run ended.
    revoked: Option<(String, RunSpec)>,
    /// The current webhook-mode run: uploads made, and after how many it completes.
    run: Option<(RunSpec, u32, u32)>,
}

impl Ctx {
    /// A new run in a new repository of `owner`.
    fn new_run(&self, rng: &mut Rng, owner: &str, owner_id: u64) -> RunSpec {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        RunSpec {
            repository: format!("{owner}/load-{n}"),
            repository_id: 50_000_000 + n,
            repository_owner: owner.to_owned(),
            repository_owner_id: owner_id,
            run_id: 9_000_000_000 + n,
            sha: hex::encode(rng.bytes(20)),
            ..self.template.clone()
        }
    }

    fn own_run(&self, rng: &mut Rng) -> RunSpec {
        let (owner, id) = (
            self.template.repository_owner.clone(),
            self.template.repository_owner_id,
        );
        self.new_run(rng, &owner, id)
    }

    fn github_token(&self, runs: &[&RunSpec]) -> String {
        let repos: Vec<(u64, &str)> = runs
            .iter()
            .map(|r| (r.repository_id, r.repository.as_str()))
            .collect();
        self.gh
            .issue_github_token(&repos, runs[0].repository_owner_id)
    }

    /// Counts an answer, checks it against the kind's allowed answers, and remembers a
    /// stored upload.
    fn record(&self, kind: &'static str, status: u16, v: &Value, sha: Option<&str>) {
        let label = if status == CLOSED.0 {
            CLOSED.1.to_owned()
        } else {
            v.get("code")
                .or_else(|| v.get("status"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let mut t = self.tally.lock().unwrap();
        let ok = expected(kind)
            .iter()
            .any(|(s, l)| *s == status && *l == label);
        if !ok && status == CLOSED.0 {
            t.stray_closes.push(format!("{kind}: {v}"));
        } else if !ok {
            t.failures.push(format!("{kind}: {status} {label} {v}"));
        }
        *t.outcomes.entry((kind, status, label)).or_default() += 1;
        if let (Some(sha), Some(id)) = (sha, v.get("id").and_then(Value::as_str))
            && (200..300).contains(&status)
        {
            if v["sha256"] != sha {
                t.failures.push(format!("{kind}: wrong sha256 {v}"));
            }
            t.stored.insert(id.to_owned(), (kind, sha.to_owned()));
        }
    }

    async fn webhook(&self, signing: Signing, payload: &Value) {
        let (kind, sent) = match signing {
            Signing::Signed => (
                "webhook",
                self.webhooks
                    .send("workflow_run", payload)
                    .await
                    .map(|(s, t, _)| (s, t)),
            ),
            Signing::WrongSecret => (
                "webhook_bad_signature",
                self.forger
                    .send("workflow_run", payload)
                    .await
                    .map(|(s, t, _)| (s, t)),
            ),
            Signing::Unsigned => (
                "webhook_unsigned",
                self.webhooks
                    .send_raw(
                        "workflow_run",
                        &uuid::Uuid::new_v4().to_string(),
                        &serde_json::to_vec(payload).unwrap(),
                        None,
                    )
                    .await,
            ),
        };
        let (status, text) = sent.unwrap_or_else(|e| (CLOSED.0, chain(&e)));
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        self.record(kind, status, &v, None);
    }

    async fn upload(
        &self,
        kind: &'static str,
        name: &str,
        body: Vec<u8>,
        auth: Option<String>,
        headers: &[(&'static str, String)],
        digest: Option<String>,
    ) {
        let sha = sha256_hex(&body);
        let http = if end_state(kind).is_some() {
            &self.http
        } else {
            &self.unpooled
        };
        let mut req = http
            .post(format!("{}/v1/uploads?name={name}", self.base))
            .body(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(d) = digest {
            req = req.header("content-digest", d);
        }
        let (status, v) = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            }
            Err(e) => (CLOSED.0, Value::String(chain(&e))),
        };
        self.record(kind, status, &v, Some(&sha));
    }

    /// One request of a kind picked at random (with the webhooks that go with it).
    async fn step(&self, st: &mut ClientState, rng: &mut Rng, name: &str) {
        let kind = pick(rng);
        let size = rng.below(64 * 1024) as usize;
        let mut body = rng.bytes(size);
        let mut digest = Some(digest_header(&body));
        let mut auth: Option<String> = None;
        let mut headers = Vec::new();
        // A webhook for the upload's run, sent before or after it.
        let mut webhook: Option<(Signing, Value, bool)> = None;
        let bearer = |t: &str| Some(format!("Bearer {t}"));
        match kind {
            "oidc" => {
                let t = self.gh.token(AUDIENCE).unwrap();
                st.spent.get_or_insert_with(|| t.clone());
                auth = bearer(&t);
            }
            "session" => {
                if st.session.as_ref().is_none_or(|(_, n)| *n >= 5) {
                    let oidc = self.gh.token(AUDIENCE).unwrap();
                    let resp = match self
                        .http
                        .post(format!("{}/v1/sessions", self.base))
                        .bearer_auth(&oidc)
                        .send()
                        .await
                    {
                        Ok(resp) => resp,
                        Err(e) => {
                            let v = Value::String(chain(&e));
                            self.record("session_open", CLOSED.0, &v, None);
                            return;
                        }
                    };
                    let status = resp.status().as_u16();
                    let v: Value = resp.json().await.unwrap();
                    self.record("session_open", status, &v, None);
                    if status != 201 {
                        return;
                    }
                    st.session = Some((v["token"].as_str().unwrap().to_owned(), 0));
                }
                let s = st.session.as_mut().unwrap();
                s.1 += 1;
                auth = bearer(&s.0);
            }
            "replay" => match &st.spent {
                Some(t) => auth = bearer(t),
                None => return,
            },
            "wrong_audience" => {
                auth = bearer(&self.gh.token("https://github.com/octo-org").unwrap())
            }
            "forged_key" => {
                let claims = Value::Object(self.gh.claims(AUDIENCE));
                auth = bearer(&self.stranger.sign_claims(&claims).unwrap());
            }
            "bad_digest" => {
                digest = Some(digest_header(b"something else"));
                auth = bearer(&self.gh.token(AUDIENCE).unwrap());
            }
            "oversized" => {
                let extra = rng.below(4096) as usize;
                body = rng.bytes(MAX_UPLOAD + 1 + extra);
                digest = None;
                auth = bearer(&self.gh.token(AUDIENCE).unwrap());
            }
            "no_credentials" => {}
            "github_token" => {
                // A run's token serves a few uploads; when the run ends, GitHub revokes it.
                if st.token.as_ref().is_none_or(|(_, _, n)| *n >= 5) {
                    if let Some((old, run, _)) = st.token.take() {
                        self.gh.revoke_token(&old);
                        st.revoked = Some((old, run));
                    }
                    let run = self.own_run(rng);
                    st.token = Some((self.github_token(&[&run]), run, 0));
                }
                let (t, run, n) = st.token.as_mut().unwrap();
                *n += 1;
                auth = Some(format!("token {t}"));
                headers = gt_headers(run);
            }
            "gt_revoked" => match &st.revoked {
                Some((t, run)) => {
                    auth = Some(format!("token {t}"));
                    headers = gt_headers(run);
                }
                None => return,
            },
            "gt_unknown" => {
                auth = Some(format!("token ghs_{}", hex::encode(rng.bytes(18))));
                headers = gt_headers(&self.own_run(rng));
            }
            "gt_two_repositories" => {
                let (a, b) = (self.own_run(rng), self.own_run(rng));
                auth = Some(format!("token {}", self.github_token(&[&a, &b])));
                headers = gt_headers(&a);
            }
            "gt_other_repository" => {
                let (a, b) = (self.own_run(rng), self.own_run(rng));
                auth = Some(format!("token {}", self.github_token(&[&a])));
                headers = gt_headers(&b);
            }
            "gt_not_installed" => {
                let run = self.new_run(rng, STRANGER, STRANGER_ID);
                auth = Some(format!("token {}", self.github_token(&[&run])));
                headers = gt_headers(&run);
            }
            "pending" => {
                // A run makes 1 to 3 uploads; its in_progress webhook comes first now and
                // then, and its completed webhook after its last upload.
                if st.run.is_none() {
                    let run = self.own_run(rng);
                    if rng.below(3) == 0 {
                        let started = started_early(workflow_run_payload(
                            "in_progress",
                            &run,
                            Some(INSTALLATION),
                            "in_progress",
                            None,
                        ));
                        self.webhook(Signing::Signed, &started).await;
                    }
                    st.run = Some((run, 0, 1 + rng.below(3) as u32));
                }
                let (run, made, last) = st.run.as_mut().unwrap();
                *made += 1;
                headers = pending_headers(run);
                if *made >= *last {
                    webhook = Some((Signing::Signed, completed(run), false));
                    st.run = None;
                }
            }
            "wh_fork" => {
                let run = self.own_run(rng);
                let mut payload = completed(&run);
                payload["workflow_run"]["head_repository"]["id"] =
                    json!(self.own_run(rng).repository_id);
                headers = pending_headers(&run);
                webhook = Some((Signing::Signed, payload, rng.below(2) == 0));
            }
            "wh_denied_event" => {
                let run = RunSpec {
                    event_name: "pull_request_target".into(),
                    ..self.own_run(rng)
                };
                headers = pending_headers(&run);
                webhook = Some((Signing::Signed, completed(&run), rng.below(2) == 0));
            }
            "wh_too_late" => {
                let run = self.own_run(rng);
                let mut payload = completed(&run);
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                for (field, ago) in [
                    ("created_at", 7300),
                    ("run_started_at", 7300),
                    ("updated_at", 7200),
                ] {
                    payload["workflow_run"][field] = json!(rfc3339(now - ago));
                }
                headers = pending_headers(&run);
                webhook = Some((Signing::Signed, payload, rng.below(2) == 0));
            }
            "wh_not_installed" => {
                let run = self.new_run(rng, STRANGER, STRANGER_ID);
                let payload =
                    workflow_run_payload("completed", &run, None, "completed", Some("success"));
                headers = pending_headers(&run);
                webhook = Some((Signing::Signed, payload, rng.below(2) == 0));
            }
            "wh_wrong_sha" => {
                let run = self.own_run(rng);
                let claim = RunSpec {
                    sha: hex::encode(rng.bytes(20)),
                    ..run.clone()
                };
                headers = pending_headers(&claim);
                webhook = Some((Signing::Signed, completed(&run), rng.below(2) == 0));
            }
            "wh_forged_webhook" => {
                let run = self.own_run(rng);
                headers = pending_headers(&run);
                let signing = if rng.below(2) == 0 {
                    Signing::Unsigned
                } else {
                    Signing::WrongSecret
                };
                webhook = Some((signing, completed(&run), rng.below(2) == 0));
            }
            "wh_malformed_run" => {
                headers = vec![
                    ("x-runproof-run", "not/a/run".into()),
                    ("x-runproof-sha", self.template.sha.clone()),
                ];
            }
            "flood_repository" => {
                body.clear();
                digest = None;
                headers = vec![
                    ("x-runproof-run", format!("{FLOOD_REPOSITORY}/1/1")),
                    ("x-runproof-sha", "not-a-sha".into()),
                ];
            }
            _ => unreachable!("{kind}"),
        }
        if let Some((signing, payload, true)) = &webhook {
            self.webhook(*signing, payload).await;
        }
        self.upload(kind, name, body, auth, &headers, digest).await;
        if let Some((signing, payload, false)) = &webhook {
            self.webhook(*signing, payload).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_mixed_genuine_and_hostile() {
    let seconds: u64 = std::env::var("RUNPROOF_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed = Rng::from_time().0;
    println!("load: {CLIENTS} clients for {seconds} s, seed {seed}");
    let gh = Arc::new(FakeGithub::start().await.unwrap());
    let template = gh.run();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");

    // The App, installed on every repository of the fake's default owner.
    let app = gh.register_app(APP_ID).unwrap();
    let key_file = dir.path().join("app-key.pem");
    std::fs::write(&key_file, &app.private_key_pem).unwrap();
    gh.add_installation(
        INSTALLATION,
        &template.repository_owner,
        template.repository_owner_id,
        &[(template.repository_id, &template.repository)],
    );
    let settings = |pending_ttl_seconds: u64| {
        format!(
            r#"[github]
api_url = "{api}"
app_id = {APP_ID}
private_key_file = "{key}"
webhook_secrets = ["{WEBHOOK_SECRET}"]
[github_token]
enabled = true
[webhook_mode]
enabled = true
pending_ttl_seconds = {pending_ttl_seconds}
max_pending_uploads = 1000000
[limits]
# Every client of the test comes from 127.0.0.1, as if through one proxy: pooled connections,
# fresh ones for hostile requests and the webhook sender together can pass the default
# per-address cap, whose extra connections are closed at once.
max_connections_per_address = 4096
unauthenticated_per_ip_per_minute = 1000000
unauthenticated_per_repository_per_minute = {PER_REPOSITORY_LIMIT}
"#,
            api = gh.base_url(),
            key = key_file.display(),
        )
    };
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &data,
        &gh.issuer(),
        AUDIENCE,
        API_KEY,
        &settings(86_400),
    );
    let mut server = Server::start(&config, port, &log).await;
    let base = server.base.clone();
    let hook_url = format!("{base}/v1/github/webhooks");
    let webhooks = WebhookSender::new(&hook_url, WEBHOOK_SECRET.as_bytes());
    let mut installed = installation_payload(
        "created",
        INSTALLATION,
        &template.repository_owner,
        template.repository_owner_id,
        &[(template.repository_id, &template.repository)],
    );
    installed["installation"]["repository_selection"] = json!("all");
    let (status, text, _) = webhooks.send("installation", &installed).await.unwrap();
    assert_eq!(status, 200, "{text}");

    let http = client();
    let ctx = Arc::new(Ctx {
        gh: Arc::clone(&gh),
        base: base.clone(),
        http: http.clone(),
        unpooled: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        webhooks,
        forger: WebhookSender::new(&hook_url, b"not-the-webhook-secret"),
        stranger: TestKey::generate(gh.current_key().kid()).unwrap(),
        template: template.clone(),
        next: AtomicU64::new(0),
        tally: Mutex::default(),
    });
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rng = Rng(seed);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let ctx = Arc::clone(&ctx);
        let mut rng = Rng(rng.next() | 1);
        tasks.push(tokio::spawn(async move {
            let mut st = ClientState::default();
            for i in 0..100_000u32 {
                if Instant::now() >= deadline {
                    break;
                }
                ctx.step(&mut st, &mut rng, &format!("c{c}-{i}.bin")).await;
            }
            // The last run's completed webhook comes after the load.
            if let Some((run, _, _)) = st.run.take() {
                ctx.webhook(Signing::Signed, &completed(&run)).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let load_end = Instant::now();
    let (hwm_kib, fds) = rss_and_fds(server.pid());
    let tally = std::mem::take(&mut *ctx.tally.lock().unwrap());
    let total: u64 = tally.outcomes.values().sum();
    println!("load: {total} requests in {seconds} s");
    for ((kind, status, label), n) in &tally.outcomes {
        println!("  {kind:<22} {status} {label:<22} × {n}");
    }
    println!(
        "load: server peak RSS {} MiB, open fds {fds}",
        hwm_kib / 1024
    );
    assert!(
        tally.failures.is_empty(),
        "{} failures, first: {:?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(5)]
    );
    println!(
        "load: {} stray closes {:?}",
        tally.stray_closes.len(),
        tally.stray_closes
    );
    assert!(
        tally.stray_closes.len() as u64 * 1000 <= total * STRAY_CLOSES_PER_MILLE,
        "{} connections closed where an answer was due, of {total} requests: {:?}",
        tally.stray_closes.len(),
        &tally.stray_closes[..tally.stray_closes.len().min(5)]
    );
    assert!(
        tally
            .outcomes
            .keys()
            .all(|(_, s, _)| *s < 500 || *s == CLOSED.0),
        "a 5xx"
    );
    for kind in ["oidc", "session", "github_token", "pending"] {
        assert!(
            tally.stored.values().any(|(k, _)| *k == kind),
            "no {kind} upload"
        );
    }
    // The flood went past its repository's limit: the limit answered.
    assert!(
        tally
            .outcomes
            .keys()
            .any(|(k, s, _)| *k == "flood_repository" && *s == 429),
        "the flood naming one repository never met a 429"
    );

    // The webhooks settle the pending uploads in the background: wait (bounded) until the
    // only ones left pending are those no signed webhook vouches for, and those of
    // repositories without the App whose installation lookup, made while their request was
    // served, found the lookup budget spent: the sweeper settles them.
    let lingering = |pending: &[Value]| -> Vec<String> {
        pending
            .iter()
            .filter_map(|r| {
                let id = r["id"].as_str().unwrap();
                let kind = tally.stored.get(id).map(|(k, _)| *k);
                (!matches!(kind, Some("wh_forged_webhook" | "wh_not_installed")))
                    .then(|| format!("{id} ({kind:?})"))
            })
            .collect()
    };
    let mut left = Vec::new();
    for _ in 0..100 {
        left = lingering(&list_status(&http, &base, API_KEY, "pending").await);
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        left.is_empty(),
        "{} uploads still pending: {:?}",
        left.len(),
        &left[..left.len().min(5)]
    );

    // Restart with pending_ttl_seconds = 1: the sweeper, at start, expires what is left
    // pending (every such upload is at least 2 s old by then) and deletes its content.
    server.kill9();
    if let Some(wait) = Duration::from_millis(2100).checked_sub(load_end.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    let port = free_port();
    let config = write_config(
        dir.path(),
        port,
        &data,
        &gh.issuer(),
        AUDIENCE,
        API_KEY,
        &settings(1),
    );
    let server = Server::start(&config, port, &log).await;
    let base = server.base.clone();
    let mut pending = usize::MAX;
    for _ in 0..200 {
        pending = list_status(&http, &base, API_KEY, "pending").await.len();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0, "the sweeper expires every upload left pending");

    // Nothing acknowledged was lost; nothing hostile was accepted; nothing else is stored.
    let records = list_all(&http, &base, API_KEY).await;
    let mut ends: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut bad = Vec::new();
    for r in &records {
        let id = r["id"].as_str().unwrap();
        let status = r["status"].as_str().unwrap();
        let Some((kind, sha)) = tally.stored.get(id) else {
            bad.push(format!("unexpected record {r}"));
            continue;
        };
        *ends.entry((kind, status)).or_default() += 1;
        let (want, mode) = end_state(kind).unwrap();
        // Left to the sweeper (above), the restart's short pending TTL expires it first.
        let also = (*kind == "wh_not_installed").then_some("expired");
        if (status != want && Some(status) != also)
            || r["mode"] != mode
            || r["sha256"] != sha.as_str()
        {
            bad.push(format!(
                "{kind}: want {want} ({mode}) with sha256 {sha}, got {r}"
            ));
        }
    }
    for ((kind, status), n) in &ends {
        println!("  stored {kind:<22} {status:<9} × {n}");
    }
    assert!(
        bad.is_empty(),
        "{} bad records, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(
        records.len(),
        tally.stored.len(),
        "every stored upload is listed"
    );

    // The content: genuine uploads read back with their sha256; rejected and expired ones
    // are not served.
    let mut genuine_read = 0;
    let mut hostile_read = 0;
    for (id, (kind, sha)) in &tally.stored {
        let read = if genuine(kind) {
            &mut genuine_read
        } else {
            &mut hostile_read
        };
        if *read >= 100 {
            continue;
        }
        *read += 1;
        let resp = http
            .get(format!("{base}/v1/uploads/{id}/content"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if genuine(kind) {
            assert_eq!(status, 200, "{kind} {id}");
            let bytes = resp.bytes().await.unwrap();
            assert_eq!(&sha256_hex(&bytes), sha, "{kind} {id}");
        } else {
            assert_eq!(status, 404, "{kind} {id}: content not served");
        }
    }
    println!("load: {genuine_read} genuine contents read back, {hostile_read} hostile refused");

    assert!(hwm_kib < 512 * 1024, "peak RSS {hwm_kib} KiB");
    assert!(fds < 1000, "{fds} open fds");
}
