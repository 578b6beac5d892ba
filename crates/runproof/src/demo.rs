//! `runproof demo`: the whole story once, on embedded defaults, against the fake GitHub.
//!
//! A genuine upload goes through the real client code path; hostile requests follow.
//! Every outcome is checked against what it must be, and the table says so.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use runproof_client::{Auth, GithubTokenAuth, TokenSource, UploadOptions, Uploaded, upload_all};
use runproof_server::AppState;
use runproof_testkit::{FakeGithub, TestKey};
use serde_json::{Value, json};

use crate::config::{self, Resolved};
use crate::serve::{RunningServer, build_state};

/// The audience the demo server asks for.
pub const DEMO_AUDIENCE: &str = "https://runproof.demo.invalid";

/// The fake GitHub and a server trusting it, both on loopback.
pub struct DevEnvironment {
    /// The fake GitHub.
    pub github: FakeGithub,
    /// The server.
    pub server: RunningServer,
    /// The server's state (for inspection).
    pub state: Arc<AppState>,
    /// The read API key.
    pub api_key: String,
    /// The secret the fake GitHub signs webhook deliveries with.
    pub webhook_secret: String,
}

/// The App id the dev environment registers with the fake GitHub.
pub const DEV_APP_ID: u64 = 1001;
/// The installation the dev environment creates for the default run's repository.
pub const DEV_INSTALLATION: u64 = 3_100_001;

/// Starts a fake GitHub and a server that trusts it, with data under `data_dir`.
///
/// # Errors
/// When either cannot start.
pub async fn start_dev(
    data_dir: PathBuf,
    listen: std::net::SocketAddr,
    base: Option<config::Config>,
) -> anyhow::Result<DevEnvironment> {
    let github = FakeGithub::start()
        .await
        .context("cannot start the fake GitHub")?;
    let api_key = format!("rpk_{}", uuid::Uuid::new_v4().simple());
    let mut cfg: config::Config = match base {
        Some(c) => c,
        None => config::load(None)?,
    };
    cfg.listen = listen;
    if cfg.database_url.is_none() && cfg.blob_store.is_none() {
        cfg.data_dir = data_dir;
    }
    let audience = cfg
        .oidc
        .as_ref()
        .and_then(|o| o.audience.clone())
        .unwrap_or_else(|| DEMO_AUDIENCE.to_owned());
    cfg.oidc = Some(config::OidcConfig {
        audience: Some(audience),
        leeway_seconds: 60,
        replay_protection: true,
        issuers: vec![config::IssuerEntry {
            issuer: github.issuer(),
            jwks_url: None,
        }],
    });
    cfg.api_keys
        .push(runproof_core::Secret::new(api_key.clone()));

    // The fake GitHub plays the App's side too: an App, one installation, webhooks.
    let app = github.register_app(DEV_APP_ID)?;
    let run = github.run();
    github.add_installation(
        DEV_INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[(run.repository_id, &run.repository)],
    );
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    let key_file = cfg.data_dir.join("dev-app-key.pem");
    std::fs::write(&key_file, &app.private_key_pem)
        .with_context(|| format!("cannot write {}", key_file.display()))?;
    let webhook_secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    cfg.github = Some(config::GithubConfig {
        api_url: github.base_url(),
        app_id: DEV_APP_ID,
        private_key_file: Some(key_file),
        webhook_secrets: vec![runproof_core::Secret::new(webhook_secret.clone())],
        webhook_secrets_file: None,
        timeout_seconds: 5,
    });
    cfg.github_token.enabled = true;
    cfg.webhook_mode.enabled = true;

    let resolved: Resolved = config::resolve(cfg)?;
    let state = build_state(&resolved).await?;
    let server = RunningServer::start(state.clone(), listen).await?;
    Ok(DevEnvironment {
        github,
        server,
        state,
        api_key,
        webhook_secret,
    })
}

pub(crate) struct Row {
    pub(crate) request: String,
    pub(crate) expected: String,
    pub(crate) got: String,
}

impl Row {
    fn ok(&self) -> bool {
        self.expected == self.got
    }
}

async fn post_upload(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    auth: Option<&str>,
    body: &'static [u8],
    digest: Option<&str>,
) -> anyhow::Result<(u16, String, Value)> {
    let mut req = http
        .post(format!("{base}/v1/uploads?name={name}"))
        .body(body);
    if let Some(token) = auth {
        req = req.bearer_auth(token);
    }
    if let Some(d) = digest {
        req = req.header("content-digest", d);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let code = body.get("code").and_then(Value::as_str).map_or_else(
        || {
            body.get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        },
        str::to_owned,
    );
    Ok((status, code, body))
}

fn outcome(status: u16, code: &str) -> String {
    format!("{status} {code}")
}

/// An error and its sources, `: `-separated, as the binary prints an error.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs the demo and prints its table. Returns whether every outcome was as expected.
///
/// # Errors
/// When the environment cannot start (not when an outcome is wrong).
pub async fn run() -> anyhow::Result<bool> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    // A short pending_ttl, so that the demo can show an upload expiring.
    let mut defaults = config::load(None)?;
    defaults.webhook_mode.pending_ttl_seconds = 1;
    let env = start_dev(
        dir.path().to_path_buf(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(defaults),
    )
    .await?;
    let base = env.server.url();
    let gh = &env.github;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut rows = Vec::new();

    println!(
        "runproof demo: server {base}, fake GitHub issuer {}",
        gh.issuer()
    );
    println!(
        "audience {DEMO_AUDIENCE}; repository {} (id {})\n",
        gh.run().repository,
        gh.run().repository_id
    );

    // 1. The genuine path, through the real client.
    let file = dir.path().join("results.json");
    std::fs::write(&file, br#"{"tests": 42, "failures": 0}"#)?;
    let tokens = TokenSource::Actions {
        request_url: gh.token_request_url(),
        request_token: gh.token_request_token(),
    };
    let opts = UploadOptions {
        url: base.clone(),
        // The demo's audience is not the loopback server's host: say it, as a workflow would.
        audience: Some(DEMO_AUDIENCE.to_owned()),
        base: Some(dir.path().to_path_buf()),
        files: vec![file.clone()],
        attempts: 3,
        timeout: std::time::Duration::from_secs(30),
        progress: false,
    };
    let genuine = upload_all(&opts, &Auth::Oidc(tokens)).await;
    let got = match &genuine {
        Ok(u) => u
            .first()
            .map_or("none".into(), |u| format!("201 {}", u.status)),
        Err(e) => format!("error: {}", error_chain(e)),
    };
    rows.push(Row {
        request: "genuine upload via `runproof upload` (OIDC token from the runner)".into(),
        expected: "201 verified".into(),
        got,
    });

    // 2. The App reads it back.
    if let Some(id) = genuine
        .as_ref()
        .ok()
        .and_then(|u| u.first())
        .map(|u| u.id.clone())
    {
        let resp = http
            .get(format!("{base}/v1/uploads/{id}/content"))
            .bearer_auth(&env.api_key)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let same = resp.bytes().await? == std::fs::read(&file)?;
        rows.push(Row {
            request: "App reads the content back with its API key".into(),
            expected: "200 same bytes".into(),
            got: format!(
                "{status} {}",
                if same {
                    "same bytes"
                } else {
                    "different bytes"
                }
            ),
        });
    }

    // 3. Hostile requests.
    let token = gh.token(DEMO_AUDIENCE)?;
    let (s, c, _) = post_upload(&http, &base, "a.txt", Some(&token), b"first", None).await?;
    rows.push(Row {
        request: "fresh token, first use".into(),
        expected: "201 verified".into(),
        got: outcome(s, &c),
    });
    let (s, c, _) = post_upload(&http, &base, "a.txt", Some(&token), b"again", None).await?;
    rows.push(Row {
        request: "the same token again (replay)".into(),
        expected: "401 token_replayed".into(),
        got: outcome(s, &c),
    });

    let default_aud = format!("https://github.com/{}", gh.run().repository_owner);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "token for GitHub's default audience",
            gh.token(&default_aud)?,
            "401 wrong_audience",
        ),
        (
            "token for another service's audience",
            gh.token("https://other.example.com")?,
            "401 wrong_audience",
        ),
        (
            "token signed by a forged key with GitHub's kid",
            {
                let forged = TestKey::generate(gh.current_key().kid())?;
                forged.sign_claims(&Value::Object(gh.claims(DEMO_AUDIENCE)))?
            },
            "401 bad_signature",
        ),
        (
            "token signed by a key the issuer never published",
            {
                let stranger = TestKey::generate("attacker-key")?;
                stranger.sign_claims(&Value::Object(gh.claims(DEMO_AUDIENCE)))?
            },
            "401 unknown_key",
        ),
        (
            "token with alg none",
            {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                format!(
                    "{}.{}.",
                    b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
                    b64.encode(serde_json::to_vec(&gh.claims(DEMO_AUDIENCE))?)
                )
            },
            "401 unsupported_algorithm",
        ),
        (
            "run triggered by pull_request_target",
            {
                let mut claims = gh.claims(DEMO_AUDIENCE);
                claims.insert("event_name".into(), json!("pull_request_target"));
                gh.mint(&claims)?
            },
            "403 policy_denied",
        ),
        (
            "expired token",
            {
                let mut claims = gh.claims(DEMO_AUDIENCE);
                let now = claims
                    .get("iat")
                    .and_then(Value::as_i64)
                    .unwrap_or_default();
                claims.insert("iat".into(), json!(now - 900));
                claims.insert("nbf".into(), json!(now - 900));
                claims.insert("exp".into(), json!(now - 600));
                gh.mint(&claims)?
            },
            "401 token_expired",
        ),
        (
            "token from an issuer not configured",
            {
                let mut claims = gh.claims(DEMO_AUDIENCE);
                claims.insert("iss".into(), json!(config::GITHUB_ISSUER));
                gh.mint(&claims)?
            },
            "401 untrusted_issuer",
        ),
    ];
    for (request, token, expected) in cases {
        let (s, c, _) = post_upload(&http, &base, "x.txt", Some(&token), b"hostile", None).await?;
        rows.push(Row {
            request: request.into(),
            expected: expected.into(),
            got: outcome(s, &c),
        });
    }
    let (s, c, _) = post_upload(&http, &base, "x.txt", None, b"hostile", None).await?;
    rows.push(Row {
        request: "no credentials".into(),
        expected: "401 missing_credentials".into(),
        got: outcome(s, &c),
    });
    let token = gh.token(DEMO_AUDIENCE)?;
    let wrong = runproof_core::digest::format_content_digest(&[0u8; 32]);
    let (s, c, _) = post_upload(
        &http,
        &base,
        "x.txt",
        Some(&token),
        b"hostile",
        Some(&wrong),
    )
    .await?;
    rows.push(Row {
        request: "body that does not match its Content-Digest".into(),
        expected: "400 digest_mismatch".into(),
        got: outcome(s, &c),
    });
    let token = gh.token(DEMO_AUDIENCE)?;
    let (s, c, _) = post_upload(
        &http,
        &base,
        "..%2Fetc%2Fpasswd",
        Some(&token),
        b"hostile",
        None,
    )
    .await?;
    rows.push(Row {
        request: "name with a path (../etc/passwd)".into(),
        expected: "400 invalid_request".into(),
        got: outcome(s, &c),
    });

    // 4. Installation binding: a repository where the App is not installed.
    let run = gh.run();
    let elsewhere = runproof_testkit::RunSpec {
        repository: format!("{}/not-installed", run.repository_owner),
        repository_id: 7_000_001,
        ..run.clone()
    };
    gh.set_run(elsewhere.clone());
    let token = gh.token(DEMO_AUDIENCE)?;
    let (s, c, _) = post_upload(&http, &base, "b.txt", Some(&token), b"elsewhere", None).await?;
    rows.push(Row {
        request: format!("upload from {} (App not installed)", elsewhere.repository),
        expected: "403 not_installed".into(),
        got: outcome(s, &c),
    });
    let sender = runproof_testkit::WebhookSender::new(
        format!("{base}/v1/github/webhooks"),
        env.webhook_secret.as_bytes(),
    );
    let added = runproof_testkit::installation_repositories_payload(
        "added",
        DEV_INSTALLATION,
        &run.repository_owner,
        run.repository_owner_id,
        &[(elsewhere.repository_id, &elsewhere.repository)],
        &[],
    );
    let (s, _, _) = sender.send("installation_repositories", &added).await?;
    rows.push(Row {
        request: "signed installation_repositories webhook adds it".into(),
        expected: "200".into(),
        got: s.to_string(),
    });
    let forged = runproof_testkit::WebhookSender::new(
        format!("{base}/v1/github/webhooks"),
        b"not-the-secret",
    );
    let (s, _, _) = forged.send("installation_repositories", &added).await?;
    rows.push(Row {
        request: "the same webhook signed with another secret".into(),
        expected: "401".into(),
        got: s.to_string(),
    });
    let token = gh.token(DEMO_AUDIENCE)?;
    let (s, c, _) = post_upload(&http, &base, "b.txt", Some(&token), b"elsewhere", None).await?;
    rows.push(Row {
        request: format!("upload from {} after the webhook", elsewhere.repository),
        expected: "201 verified".into(),
        got: outcome(s, &c),
    });
    gh.set_run(run.clone());

    // 5. The github_token mode, through the real client.
    let gt = gh.issue_github_token(
        &[(run.repository_id, &run.repository)],
        run.repository_owner_id,
    );
    let gt_auth = |token: &str| {
        Auth::GithubToken(GithubTokenAuth {
            token: token.to_owned(),
            repository: run.repository.clone(),
            run: format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
            sha: run.sha.clone(),
        })
    };
    let one = UploadOptions {
        attempts: 1,
        ..opts.clone()
    };
    let got = match upload_all(&one, &gt_auth(&gt)).await {
        Ok(u) => u
            .first()
            .map_or("none".into(), |u| format!("201 {}", u.status)),
        Err(e) => format!("error: {}", error_chain(&e)),
    };
    rows.push(Row {
        request: "github_token mode: the run's GITHUB_TOKEN".into(),
        expected: "201 verified".into(),
        got,
    });
    let two = gh.issue_github_token(
        &[
            (run.repository_id, &run.repository),
            (elsewhere.repository_id, &elsewhere.repository),
        ],
        run.repository_owner_id,
    );
    let refused = |r: Result<Vec<Uploaded>, runproof_client::ClientError>| match r {
        Ok(_) => "accepted".to_owned(),
        Err(e) => e.refused().map_or_else(
            || format!("error: {}", error_chain(&e)),
            |r| format!("{} {}", r.status, r.code),
        ),
    };
    rows.push(Row {
        request: "github_token mode: a token that sees two repositories".into(),
        expected: "403 policy_denied".into(),
        got: refused(upload_all(&one, &gt_auth(&two)).await),
    });
    gh.revoke_token(&gt);
    rows.push(Row {
        request: "github_token mode: the token after the run ended".into(),
        expected: "401 invalid_github_token".into(),
        got: refused(upload_all(&one, &gt_auth(&gt)).await),
    });

    // 6. The webhook mode: uploads without credentials, approved by GitHub.
    crate::demo_webhook::rows(&env, &base, &opts, &mut rows).await?;

    // 7. What was stored: the genuine uploads verified; the others rejected or expired,
    // their content deleted.
    let mut counts = Vec::new();
    for status in ["verified", "pending", "rejected", "expired"] {
        let resp = http
            .get(format!("{base}/v1/uploads?status={status}"))
            .bearer_auth(&env.api_key)
            .send()
            .await?;
        let listed = resp.json::<Value>().await?;
        let count = listed
            .get("uploads")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        counts.push(format!("{count} {status}"));
    }
    rows.push(Row {
        request: "uploads stored after all of the above".into(),
        expected: "7 verified, 0 pending, 1 rejected, 1 expired".into(),
        got: counts.join(", "),
    });

    let width = rows.iter().map(|r| r.request.len()).max().unwrap_or(10);
    let col = rows
        .iter()
        .map(|r| r.expected.len().max(r.got.len()))
        .max()
        .unwrap_or(26)
        .max(26);
    println!(
        "{:<width$}  {:<col$}  {:<col$}  result",
        "request", "expected", "got"
    );
    println!("{}", "-".repeat(width + 2 * col + 12));
    for r in &rows {
        println!(
            "{:<width$}  {:<col$}  {:<col$}  {}",
            r.request,
            r.expected,
            r.got,
            if r.ok() { "ok" } else { "UNEXPECTED" }
        );
    }
    let all_ok = rows.iter().all(Row::ok);
    println!(
        "\n{}",
        if all_ok {
            "every outcome was as expected"
        } else {
            "SOME OUTCOMES WERE NOT AS EXPECTED"
        }
    );
    env.server.stop().await?;
    env.github.shutdown();
    Ok(all_ok)
}
