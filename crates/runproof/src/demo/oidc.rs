//! The demo's rows with OIDC tokens: the genuine upload through the real client and the
//! App reading it back, hostile tokens and requests, and the installation binding.

use std::path::Path;

use runproof_client::{Auth, TokenSource, UploadOptions, upload_all};
use runproof_testkit::{FakeGithub, RunSpec, TestKey};
use serde_json::{Value, json};

use super::env::{DEMO_AUDIENCE, DEV_INSTALLATION, DevEnvironment, Row, error_chain};
use crate::config;

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

/// Steps 1 and 2: a genuine upload through the real client, then the App reads it back.
/// Returns the options it uploaded with, for the other modes' rows.
///
/// # Errors
/// When a request cannot be sent at all.
pub(crate) async fn genuine_rows(
    env: &DevEnvironment,
    base: &str,
    http: &reqwest::Client,
    dir: &Path,
    rows: &mut Vec<Row>,
) -> anyhow::Result<UploadOptions> {
    let gh = &env.github;
    // 1. The genuine path, through the real client.
    let file = dir.join("results.json");
    std::fs::write(&file, br#"{"tests": 42, "failures": 0}"#)?;
    let tokens = TokenSource::Actions {
        request_url: gh.token_request_url(),
        request_token: gh.token_request_token(),
    };
    let opts = UploadOptions {
        url: base.to_owned(),
        // The demo's audience is not the loopback server's host: say it, as a workflow would.
        audience: Some(DEMO_AUDIENCE.to_owned()),
        base: Some(dir.to_path_buf()),
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
    Ok(opts)
}

/// Step 3: hostile tokens and requests, each refused with its code.
///
/// # Errors
/// When a token cannot be minted or a request cannot be sent at all.
pub(crate) async fn hostile_rows(
    gh: &FakeGithub,
    base: &str,
    http: &reqwest::Client,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let token = gh.token(DEMO_AUDIENCE)?;
    let (s, c, _) = post_upload(http, base, "a.txt", Some(&token), b"first", None).await?;
    rows.push(Row {
        request: "fresh token, first use".into(),
        expected: "201 verified".into(),
        got: outcome(s, &c),
    });
    let (s, c, _) = post_upload(http, base, "a.txt", Some(&token), b"again", None).await?;
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
        let (s, c, _) = post_upload(http, base, "x.txt", Some(&token), b"hostile", None).await?;
        rows.push(Row {
            request: request.into(),
            expected: expected.into(),
            got: outcome(s, &c),
        });
    }
    let (s, c, _) = post_upload(http, base, "x.txt", None, b"hostile", None).await?;
    rows.push(Row {
        request: "no credentials".into(),
        expected: "401 missing_credentials".into(),
        got: outcome(s, &c),
    });
    let token = gh.token(DEMO_AUDIENCE)?;
    let wrong = runproof_core::digest::format_content_digest(&[0u8; 32]);
    let (s, c, _) =
        post_upload(http, base, "x.txt", Some(&token), b"hostile", Some(&wrong)).await?;
    rows.push(Row {
        request: "body that does not match its Content-Digest".into(),
        expected: "400 digest_mismatch".into(),
        got: outcome(s, &c),
    });
    let token = gh.token(DEMO_AUDIENCE)?;
    let (s, c, _) = post_upload(
        http,
        base,
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
    Ok(())
}

/// Step 4: an upload from a repository where the App is not installed, refused until a
/// signed webhook adds it. Returns that repository's run.
///
/// # Errors
/// When a token cannot be minted or a request cannot be sent at all.
pub(crate) async fn binding_rows(
    env: &DevEnvironment,
    base: &str,
    http: &reqwest::Client,
    rows: &mut Vec<Row>,
) -> anyhow::Result<RunSpec> {
    let gh = &env.github;
    let run = gh.run();
    let elsewhere = runproof_testkit::RunSpec {
        repository: format!("{}/not-installed", run.repository_owner),
        repository_id: 7_000_001,
        ..run.clone()
    };
    gh.set_run(elsewhere.clone());
    let token = gh.token(DEMO_AUDIENCE)?;
    let (s, c, _) = post_upload(http, base, "b.txt", Some(&token), b"elsewhere", None).await?;
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
    let (s, c, _) = post_upload(http, base, "b.txt", Some(&token), b"elsewhere", None).await?;
    rows.push(Row {
        request: format!("upload from {} after the webhook", elsewhere.repository),
        expected: "201 verified".into(),
        got: outcome(s, &c),
    });
    gh.set_run(run.clone());
    Ok(elsewhere)
}
