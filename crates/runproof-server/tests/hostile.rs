//! Hostile tokens and requests at the HTTP level. Each row names the rule it attacks and
//! checks the status, the stable code, and that nothing at all was stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{AUDIENCE, Harness, bearer};
use hmac::{Hmac, Mac};
use runproof_testkit::{FakeGithub, TestKey};
use serde_json::{Map, Value, json};

type Claims = Map<String, Value>;

fn now(claims: &Claims) -> i64 {
    claims["iat"].as_i64().unwrap()
}

fn with(gh: &FakeGithub, edit: impl FnOnce(&mut Claims)) -> String {
    let mut claims = gh.claims(AUDIENCE);
    edit(&mut claims);
    gh.mint(&claims).unwrap()
}

fn unsigned(header: &Value, claims: &Claims) -> String {
    format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    )
}

struct Case {
    rule: &'static str,
    token: Box<dyn Fn(&FakeGithub) -> String>,
    status: u16,
    code: &'static str,
}

fn case(
    rule: &'static str,
    status: u16,
    code: &'static str,
    token: impl Fn(&FakeGithub) -> String + 'static,
) -> Case {
    Case {
        rule,
        token: Box::new(token),
        status,
        code,
    }
}

fn token_cases() -> Vec<Case> {
    let mut cases = vec![
        case(
            "alg allow-list: alg none",
            401,
            "unsupported_algorithm",
            |gh| {
                let claims = gh.claims(AUDIENCE);
                format!(
                    "{}.",
                    unsigned(&json!({"alg": "none", "typ": "JWT"}), &claims)
                )
            },
        ),
        case(
            "alg allow-list: HS256 keyed with the public key",
            401,
            "unsupported_algorithm",
            |gh| {
                let key = gh.current_key();
                let claims = gh.claims(AUDIENCE);
                let input = unsigned(
                    &json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()}),
                    &claims,
                );
                let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key.public_key_der()).unwrap();
                mac.update(input.as_bytes());
                format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
            },
        ),
        case(
            "alg allow-list: RS512",
            401,
            "unsupported_algorithm",
            |gh| {
                let key = gh.current_key();
                let mut header = key.header();
                header["alg"] = json!("RS512");
                key.sign(&header, &Value::Object(gh.claims(AUDIENCE)))
                    .unwrap()
            },
        ),
        case("unknown kid is refused", 401, "unknown_key", |gh| {
            let stranger = TestKey::generate("not-published").unwrap();
            stranger
                .sign_claims(&Value::Object(gh.claims(AUDIENCE)))
                .unwrap()
        }),
        case("kid required", 401, "unknown_key", |gh| {
            let key = gh.current_key();
            let mut header = key.header();
            header.as_object_mut().unwrap().remove("kid");
            key.sign(&header, &Value::Object(gh.claims(AUDIENCE)))
                .unwrap()
        }),
        case(
            "signature: right kid, wrong key",
            401,
            "bad_signature",
            |gh| {
                let forged = TestKey::generate(gh.current_key().kid()).unwrap();
                forged
                    .sign_claims(&Value::Object(gh.claims(AUDIENCE)))
                    .unwrap()
            },
        ),
        case(
            "signature: payload swapped after signing",
            401,
            "bad_signature",
            |gh| {
                let genuine = gh.token(AUDIENCE).unwrap();
                let parts: Vec<&str> = genuine.split('.').collect();
                let mut claims = gh.claims(AUDIENCE);
                claims.insert("repository_id".into(), json!("1"));
                let payload = B64.encode(serde_json::to_vec(&claims).unwrap());
                format!("{}.{payload}.{}", parts[0], parts[2])
            },
        ),
        case(
            "signature: truncated signature",
            401,
            "bad_signature",
            |gh| {
                let genuine = gh.token(AUDIENCE).unwrap();
                let (input, sig) = genuine.rsplit_once('.').unwrap();
                let sig = B64.decode(sig).unwrap();
                format!("{input}.{}", B64.encode(&sig[..sig.len() - 1]))
            },
        ),
        case(
            "issuer allow-list: github.com issuer not configured",
            401,
            "untrusted_issuer",
            |gh| {
                with(gh, |c| {
                    c.insert(
                        "iss".into(),
                        json!("https://token.actions.githubusercontent.com"),
                    );
                })
            },
        ),
        case(
            "issuer allow-list: trailing slash",
            401,
            "untrusted_issuer",
            |gh| {
                let iss = format!("{}/", gh.issuer());
                with(gh, |c| {
                    c.insert("iss".into(), json!(iss));
                })
            },
        ),
        case(
            "issuer allow-list: case differs",
            401,
            "untrusted_issuer",
            |gh| {
                let iss = gh.issuer().to_uppercase();
                with(gh, |c| {
                    c.insert("iss".into(), json!(iss));
                })
            },
        ),
        case(
            "custom audience: GitHub's default audience",
            401,
            "wrong_audience",
            |gh| gh.token("https://github.com/octo-org").unwrap(),
        ),
        case(
            "custom audience: another audience",
            401,
            "wrong_audience",
            |gh| gh.token("https://runproof.test.evil").unwrap(),
        ),
        case(
            "single audience: a list holding only ours",
            401,
            "wrong_audience",
            |gh| {
                with(gh, |c| {
                    c.insert("aud".into(), json!([AUDIENCE]));
                })
            },
        ),
        case(
            "single audience: a list holding ours and another",
            401,
            "wrong_audience",
            |gh| {
                with(gh, |c| {
                    c.insert("aud".into(), json!([AUDIENCE, "https://other.example"]));
                })
            },
        ),
        case(
            "lifetime: expired beyond the leeway",
            401,
            "token_expired",
            |gh| {
                with(gh, |c| {
                    let t = now(c);
                    c.insert("iat".into(), json!(t - 1000));
                    c.insert("nbf".into(), json!(t - 1000));
                    c.insert("exp".into(), json!(t - 61));
                })
            },
        ),
        case(
            "lifetime: nbf in the future beyond the leeway",
            401,
            "token_not_yet_valid",
            |gh| {
                with(gh, |c| {
                    let t = now(c);
                    c.insert("nbf".into(), json!(t + 120));
                    c.insert("exp".into(), json!(t + 600));
                })
            },
        ),
        case(
            "lifetime: iat in the future beyond the leeway",
            401,
            "token_not_yet_valid",
            |gh| {
                with(gh, |c| {
                    let t = now(c);
                    c.insert("iat".into(), json!(t + 120));
                    c.insert("nbf".into(), json!(t - 5));
                    c.insert("exp".into(), json!(t + 600));
                })
            },
        ),
        case(
            "denied events: pull_request_target",
            403,
            "policy_denied",
            |gh| {
                with(gh, |c| {
                    c.insert("event_name".into(), json!("pull_request_target"));
                })
            },
        ),
        case("denied events: workflow_run", 403, "policy_denied", |gh| {
            with(gh, |c| {
                c.insert("event_name".into(), json!("workflow_run"));
            })
        }),
        case(
            "ids are integers: repository_id not a number",
            401,
            "malformed_token",
            |gh| {
                with(gh, |c| {
                    c.insert("repository_id".into(), json!("12ab"));
                })
            },
        ),
        case(
            "ids are integers: negative run_id",
            401,
            "malformed_token",
            |gh| {
                with(gh, |c| {
                    c.insert("run_id".into(), json!(-4));
                })
            },
        ),
        case("sha is a commit id", 401, "malformed_token", |gh| {
            with(gh, |c| {
                c.insert("sha".into(), json!("main"));
            })
        }),
        case(
            "token size cap: a 20 KiB token",
            401,
            "malformed_token",
            |gh| {
                with(gh, |c| {
                    c.insert("padding".into(), json!("x".repeat(20 * 1024)));
                })
            },
        ),
        case("token shape: not a JWS", 401, "malformed_token", |_| {
            "not-a-token".into()
        }),
        case("token shape: four parts", 401, "malformed_token", |gh| {
            format!("{}.x", gh.token(AUDIENCE).unwrap())
        }),
    ];
    for claim in [
        "iss",
        "aud",
        "exp",
        "iat",
        "jti",
        "repository",
        "repository_id",
        "repository_owner_id",
        "run_id",
        "sha",
    ] {
        cases.push(case(
            "required claims: each one missing",
            401,
            "malformed_token",
            move |gh| {
                with(gh, |c| {
                    c.remove(claim);
                })
            },
        ));
    }
    cases
}

#[tokio::test]
async fn hostile_tokens_are_refused_with_their_code_and_store_nothing() {
    let h = Harness::start().await;
    for case in token_cases() {
        let token = (case.token)(&h.gh);
        let (status, body) = h.upload(Some(&bearer(&token)), "x.txt", "hostile").await;
        assert_eq!(
            (status, body["code"].as_str().unwrap_or_default()),
            (case.status, case.code),
            "rule `{}`: {body}",
            case.rule
        );
        h.assert_nothing_stored(case.rule).await;
    }
    h.stop().await;
}

#[tokio::test]
async fn rule_refusals_name_what_was_expected_and_escape_the_token_text() {
    let h = Harness::start().await;
    let token = h.gh.token("https://github.com/octo-org").unwrap();
    let (status, body) = h.upload(Some(&bearer(&token)), "x.txt", "x").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("wrong_audience"))
    );
    assert_eq!(
        body["detail"],
        format!("audience `https://github.com/octo-org` is not the required `{AUDIENCE}`")
    );

    let hostile = format!("evil\n\u{1b}[31mINFO forged`\u{202e}{}", "a".repeat(5000));
    let token = with(&h.gh, |c| {
        c.insert("aud".into(), json!(hostile));
    });
    let (status, body) = h.upload(Some(&bearer(&token)), "x.txt", "x").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("wrong_audience"))
    );
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("audience `evil\\u{a}\\u{1b}[31mINFO forged\\u{60}\\u{202e}a"),
        "{detail}"
    );
    assert!(!detail.chars().any(char::is_control), "{detail}");
    assert!(
        detail.len() < 400,
        "the echoed audience is bounded: {}",
        detail.len()
    );

    let token = with(&h.gh, |c| {
        c.insert("aud".into(), json!([AUDIENCE]));
    });
    let (_, body) = h.upload(Some(&bearer(&token)), "x.txt", "x").await;
    assert_eq!(
        body["detail"],
        format!("audience is not a single string; `{AUDIENCE}` is required")
    );

    let token = with(&h.gh, |c| {
        c.insert("iss".into(), json!("https://issuer.evil\r\nx"));
    });
    let (status, body) = h.upload(Some(&bearer(&token)), "x.txt", "x").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("untrusted_issuer"))
    );
    assert_eq!(
        body["detail"],
        "issuer `https://issuer.evil\\u{d}\\u{a}x` is not trusted"
    );
    h.assert_nothing_stored("refusals that name what was expected")
        .await;
    h.stop().await;
}

#[tokio::test]
async fn replay_protection_accepts_a_jti_once() {
    let h = Harness::start().await;
    let token = h.token();
    let (status, first) = h.upload(Some(&bearer(&token)), "a.txt", "one").await;
    assert_eq!(status, 201, "{first}");
    let (status, body) = h.upload(Some(&bearer(&token)), "a.txt", "two").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_replayed")),
        "rule: jti once"
    );
    assert_eq!(h.record_count().await, 1);
    assert_eq!(h.blob_files(), (0, 0), "a small body lives in the database");
    h.stop().await;
}

#[tokio::test]
async fn hostile_requests_are_refused_and_store_nothing() {
    let h = Harness::start_with(common::Options {
        max_upload_bytes: 1024,
        ..Default::default()
    })
    .await;
    struct Req {
        rule: &'static str,
        auth: Option<String>,
        query: String,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
        status: u16,
        code: &'static str,
    }
    let ok = || Some(bearer(&h.token()));
    let zero_digest = runproof_core::digest::format_content_digest(&[0u8; 32]);
    let mut reqs = vec![
        Req {
            rule: "credentials required",
            auth: None,
            query: "name=a".into(),
            body: b"x".to_vec(),
            headers: vec![],
            status: 401,
            code: "missing_credentials",
        },
        Req {
            rule: "credentials: Basic scheme",
            auth: Some("Basic dXNlcjpwdw==".into()),
            query: "name=a".into(),
            body: b"x".to_vec(),
            headers: vec![],
            status: 401,
            code: "missing_credentials",
        },
        Req {
            rule: "credentials: empty bearer",
            auth: Some("Bearer ".into()),
            query: "name=a".into(),
            body: b"x".to_vec(),
            headers: vec![],
            status: 401,
            code: "missing_credentials",
        },
        Req {
            rule: "size cap: Content-Length over max_upload_bytes",
            auth: ok(),
            query: "name=a".into(),
            body: vec![7; 1025],
            headers: vec![],
            status: 413,
            code: "payload_too_large",
        },
        Req {
            rule: "digest: Content-Digest mismatch",
            auth: ok(),
            query: "name=a".into(),
            body: b"abc".to_vec(),
            headers: vec![("content-digest", zero_digest.clone())],
            status: 400,
            code: "digest_mismatch",
        },
        Req {
            rule: "digest: malformed Content-Digest",
            auth: ok(),
            query: "name=a".into(),
            body: b"abc".to_vec(),
            headers: vec![("content-digest", "sha-256=:AAAA:".into())],
            status: 400,
            code: "invalid_request",
        },
        Req {
            rule: "names: missing",
            auth: ok(),
            query: String::new(),
            body: b"x".to_vec(),
            headers: vec![],
            status: 400,
            code: "invalid_request",
        },
        Req {
            rule: "idempotency key: control characters",
            auth: ok(),
            query: "name=a".into(),
            body: b"x".to_vec(),
            headers: vec![("idempotency-key", "a\tb".into())],
            status: 400,
            code: "invalid_request",
        },
    ];
    for name in [
        "",
        "%2Fa",
        "a%2F%2Fb",
        "a%2F",
        "a%2F.%2Fb",
        "a%2F..%2Fb",
        "a%5Cb",
        "..",
        "a..b",
        "%2E%2E",
        "a%00b",
        "a%0Ab",
        "%7F",
    ] {
        reqs.push(Req {
            rule: "names: 1-255 bytes, a relative path, no \\ .. or controls",
            auth: ok(),
            query: format!("name={name}"),
            body: b"x".to_vec(),
            headers: vec![],
            status: 400,
            code: "invalid_request",
        });
    }
    reqs.push(Req {
        rule: "names: 256 bytes",
        auth: ok(),
        query: format!("name={}", "n".repeat(256)),
        body: b"x".to_vec(),
        headers: vec![],
        status: 400,
        code: "invalid_request",
    });
    for r in reqs {
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = h
            .upload_with(r.auth.as_deref(), &r.query, r.body, &headers)
            .await;
        assert_eq!(
            (status, body["code"].as_str().unwrap_or_default()),
            (r.status, r.code),
            "rule `{}`: {body}",
            r.rule
        );
        h.assert_nothing_stored(r.rule).await;
    }

    // A streamed body with no Content-Length is cut off at the cap while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..8).map(|_| Ok(vec![1u8; 512])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, json) = h.upload(Some(&bearer(&h.token())), "big.bin", body).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (413, Some("payload_too_large")),
        "rule: size cap while streaming"
    );
    h.assert_nothing_stored("size cap while streaming").await;
    h.stop().await;
}

#[tokio::test]
async fn credentials_are_checked_before_the_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start().await;
    let addr = h.url.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Announce a large body and send none of it: the refusal must come anyway.
    let req = format!(
        "POST /v1/uploads?name=a HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer not.a.token\r\nContent-Length: 100000000\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("the server answered without waiting for the body")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(head.contains("malformed_token"), "{head}");
    h.assert_nothing_stored("credentials before body").await;
    h.stop().await;
}

/// Ids that no database integer holds (above `i64::MAX`) are the client's mistake, not
/// an outage: every route that takes an id from outside refuses them as
/// `400 invalid_request` before anything is stored or asked of GitHub.
#[tokio::test]
async fn rule_ids_beyond_a_database_integer_are_invalid_requests() {
    const SECRET: &str = "webhook-secret-0123456789";
    let h = Harness::start_with(common::Options {
        webhook_mode: Some(runproof_service::WebhookModeConfig::default()),
        github_token: true,
        webhook_secrets: vec![runproof_core::Secret::new(SECRET.into())],
        ..Default::default()
    })
    .await;
    let sha = h.gh.run().sha;
    let huge = ["9223372036854775808", "18446744073709551615"];
    let mut runs = Vec::new();
    for id in huge {
        runs.push((format!("{id}/1/1"), "repository id"));
        runs.push((format!("1/{id}/1"), "run id"));
    }
    for (run, what) in &runs {
        let headers = [
            ("x-runproof-run", run.as_str()),
            ("x-runproof-sha", sha.as_str()),
        ];
        let (status, body) = h.upload_with(None, "name=a", "x", &headers).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "rule: X-Runproof-Run {what} beyond i64 (webhook mode): {run}: {body}"
        );
        let headers = [
            ("x-runproof-run", run.as_str()),
            ("x-runproof-sha", sha.as_str()),
            ("x-runproof-repository", "octo-org/octo-repo"),
        ];
        let (status, body) = h
            .upload_with(Some("token ghs_made_up_token"), "name=a", "x", &headers)
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_request")),
            "rule: X-Runproof-Run {what} beyond i64 (github_token mode): {run}: {body}"
        );
    }
    for id in huge {
        let resp = h
            .get(
                &format!("/v1/uploads?repository_id={id}"),
                Some(common::API_KEY),
            )
            .await;
        assert_eq!(
            resp.status().as_u16(),
            400,
            "rule: repository_id filter beyond i64: {id}"
        );
        let sender = runproof_testkit::WebhookSender::new(
            format!("{}/v1/github/webhooks", h.url),
            SECRET.as_bytes(),
        );
        let huge_id: u64 = id.parse().unwrap();
        for payload in [
            runproof_testkit::installation_payload("created", huge_id, "octo-org", 1, &[]),
            runproof_testkit::installation_payload(
                "created",
                1,
                "octo-org",
                1,
                &[(huge_id, "o/r")],
            ),
        ] {
            let (status, body, _) = sender.send("installation", &payload).await.unwrap();
            assert_eq!(
                status, 400,
                "rule: webhook payload id beyond i64: {id}: {body}"
            );
        }
    }
    h.assert_nothing_stored("ids beyond i64").await;
    h.stop().await;
}
