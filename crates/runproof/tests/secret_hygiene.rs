//! Secret hygiene: a real server runs genuine flows and hostile cases with debug logging
//! on; then its logs, every error body it sent and its metrics are searched for token, key
//! and secret material. None may appear.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::time::Duration;

use runproof_testkit::process::ServerCommand;
use runproof_testkit::{
    FakeGithub, RunSpec, TestKey, WebhookSender, installation_repositories_payload,
};
use serde_json::Value;

const AUDIENCE: &str = "https://runproof.hygiene.test";
const API_KEY: &str = "api-key-SECRET-aaaaaaaaaaaa";
const WEBHOOK_SECRET: &str = "webhook-SECRET-bbbbbbbbbbbb";
const DELIVERY_SECRET: &str = "delivery-SECRET-cccccccccccc";

fn free_port() -> u16 {
    runproof_testkit::process::free_port().unwrap()
}

/// Distinctive pieces of a secret: long enough never to occur by chance.
fn pieces(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    for part in secret.split('.') {
        if part.len() >= 24 {
            out.push(part.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn no_secret_reaches_logs_error_bodies_or_metrics() {
    let gh = FakeGithub::start().await.unwrap();
    let app = gh.register_app(77).unwrap();
    let run = RunSpec::default();
    gh.add_installation(
        5,
        &run.repository_owner,
        run.repository_owner_id,
        &[(run.repository_id, &run.repository)],
    );

    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("app.pem");
    std::fs::write(&key_file, &app.private_key_pem).unwrap();
    let receiver_port = free_port();
    let port = free_port();
    let config = format!(
        r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
api_keys = ["{API_KEY}"]
[oidc]
audience = "{AUDIENCE}"
[[oidc.issuers]]
issuer = "{issuer}"
[github]
api_url = "{api}"
app_id = 77
private_key_file = "{key}"
webhook_secrets = ["{WEBHOOK_SECRET}"]
[github_token]
enabled = true
[delivery]
url = "http://127.0.0.1:{receiver_port}/hook"
secrets = ["{DELIVERY_SECRET}"]
max_attempts = 2
backoff_seconds = 1
"#,
        data = dir.path().join("data").display(),
        issuer = gh.issuer(),
        api = gh.base_url(),
        key = key_file.display(),
    );
    let config_file = dir.path().join("runproof.toml");
    std::fs::write(&config_file, config).unwrap();
    let log_file = dir.path().join("server.log");
    let mut server = ServerCommand::serve(env!("CARGO_BIN_EXE_runproof"), &config_file)
        .env("RUST_LOG", "debug")
        .env("NO_PROXY", "127.0.0.1")
        .stdout_to(dir.path().join("server.out"))
        .stderr_to(&log_file)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "server came up");

    let mut secrets: Vec<String> = vec![
        API_KEY.into(),
        WEBHOOK_SECRET.into(),
        DELIVERY_SECRET.into(),
        gh.token_request_token(),
    ];
    secrets.extend(
        app.private_key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_owned),
    );
    let mut bodies = Vec::new();
    let post = |auth: Option<String>, extra: Vec<(&'static str, String)>, body: &'static str| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let mut req = http
                .post(format!("{base}/v1/uploads?name=a.txt"))
                .body(body);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            for (k, v) in extra {
                req = req.header(k, v);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };

    // Genuine flows: OIDC, a session, a GITHUB_TOKEN, a webhook.
    let token = gh.token(AUDIENCE).unwrap();
    secrets.push(token.clone());
    let (s, b) = post(Some(format!("Bearer {token}")), vec![], "genuine").await;
    assert_eq!(s, 201, "{b}");
    bodies.push(b);
    let (s, b) = post(Some(format!("Bearer {token}")), vec![], "replay").await;
    assert_eq!(s, 401);
    bodies.push(b);
    let oidc = gh.token(AUDIENCE).unwrap();
    secrets.push(oidc.clone());
    let resp = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(&oidc)
        .send()
        .await
        .unwrap();
    let session: Value = resp.json().await.unwrap();
    let session_token = session["token"].as_str().unwrap().to_owned();
    secrets.push(session_token.clone());
    let (s, b) = post(
        Some(format!("Bearer {session_token}")),
        vec![],
        "via session",
    )
    .await;
    assert_eq!(s, 201, "{b}");
    bodies.push(b);
    let resp = http
        .delete(format!("{base}/v1/sessions/current"))
        .bearer_auth(&session_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (s, b) = post(Some(format!("Bearer {session_token}")), vec![], "revoked").await;
    assert_eq!(s, 401);
    bodies.push(b);

    let gt = gh.issue_github_token(
        &[(run.repository_id, &run.repository)],
        run.repository_owner_id,
    );
    secrets.push(gt.clone());
    let headers = vec![
        ("x-runproof-repository", run.repository.clone()),
        (
            "x-runproof-run",
            format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
        ),
        ("x-runproof-sha", run.sha.clone()),
    ];
    let (s, b) = post(Some(format!("token {gt}")), headers.clone(), "github token").await;
    assert_eq!(s, 201, "{b}");
    bodies.push(b);
    gh.revoke_token(&gt);
    let (s, b) = post(
        Some(format!("token {gt}")),
        headers.clone(),
        "revoked github token",
    )
    .await;
    assert_eq!(s, 401);
    bodies.push(b);
    let bogus = "ghs_THISisAmadeUPtokenVALUE0123456789".to_owned();
    secrets.push(bogus.clone());
    let (_, b) = post(Some(format!("token {bogus}")), headers, "bogus").await;
    bodies.push(b);

    let sender = WebhookSender::new(
        format!("{base}/v1/github/webhooks"),
        WEBHOOK_SECRET.as_bytes(),
    );
    let payload = installation_repositories_payload(
        "added",
        5,
        &run.repository_owner,
        run.repository_owner_id,
        &[(42, "octo-org/x")],
        &[],
    );
    let (s, b, _) = sender
        .send("installation_repositories", &payload)
        .await
        .unwrap();
    assert_eq!(s, 200);
    bodies.push(b);
    let forged = WebhookSender::new(
        format!("{base}/v1/github/webhooks"),
        b"wrong-secret-SECRET-dddd",
    );
    let (_, b, _) = forged
        .send("installation_repositories", &payload)
        .await
        .unwrap();
    bodies.push(b);

    // Hostile tokens.
    let stranger = TestKey::generate(gh.current_key().kid()).unwrap();
    let forged_token = stranger
        .sign_claims(&Value::Object(gh.claims(AUDIENCE)))
        .unwrap();
    secrets.push(forged_token.clone());
    let wrong_aud = gh.token("https://github.com/octo-org").unwrap();
    secrets.push(wrong_aud.clone());
    for t in [
        forged_token,
        wrong_aud,
        "garbage.SECRETgarbageSECRETgarbage.x".to_owned(),
    ] {
        let (_, b) = post(Some(format!("Bearer {t}")), vec![], "hostile").await;
        bodies.push(b);
    }
    for key in [API_KEY, "wrong-api-key-SECRET-eeeeeee"] {
        let resp = http
            .get(format!("{base}/v1/uploads"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let text = resp.text().await.unwrap();
        if key != API_KEY {
            bodies.push(text);
        }
    }
    secrets.push("wrong-api-key-SECRET-eeeeeee".into());
    // Give the delivery worker time to try (the receiver is down) and log.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    server.stop(Duration::from_secs(5)).unwrap();
    let mut logs = String::new();
    std::fs::File::open(&log_file)
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let mut out = String::new();
    std::fs::File::open(dir.path().join("server.out"))
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(logs.contains("DEBUG"), "debug logging was on");
    assert!(logs.len() > 1000, "the server logged: {} bytes", logs.len());

    let haystacks = [
        ("logs", logs + &out),
        ("error bodies", bodies.join("\n")),
        ("metrics", metrics),
    ];
    for secret in &secrets {
        for piece in pieces(secret) {
            for (name, hay) in &haystacks {
                assert!(
                    !hay.contains(&piece),
                    "secret material found in {name}: {}…",
                    &piece[..8.min(piece.len())]
                );
            }
        }
    }
}
