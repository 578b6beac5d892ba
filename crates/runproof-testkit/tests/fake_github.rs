//! Drives a real `FakeGithub` over loopback HTTP.
// Helpers outside #[test] fns are test code too; clippy's in-test allowances miss them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::time::Duration;

use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use runproof_testkit::{FakeGithub, RunSpec, TestKey, jwks_json};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(5);

fn client() -> reqwest::Client {
    // no_proxy: a proxy from the environment must never see loopback test traffic.
    reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .build()
        .unwrap()
}

async fn get(url: &str) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

async fn get_json(url: &str) -> Value {
    let response = get(url).await;
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.json().await.unwrap()
}

fn b64(part: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(part).unwrap()
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&b64(part)).unwrap()
}

/// Checks `jwt`'s RS256 signature against the JWK with its kid in `jwks`, rebuilt
/// from n/e, and returns (header, claims).
fn verify_with_jwks(jwt: &str, jwks: &Value) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header = decode_part(parts[0]);
    let kid = header["kid"].as_str().unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS"));
    let n = b64(jwk["n"].as_str().unwrap());
    let e = b64(jwk["e"].as_str().unwrap());
    assert_ne!(n[0], 0, "n has a leading zero byte");
    assert_ne!(e[0], 0, "e has a leading zero byte");
    assert_eq!(n.len(), 256);
    let message = format!("{}.{}", parts[0], parts[1]);
    PublicKeyComponents { n, e }
        .verify(
            &RSA_PKCS1_2048_8192_SHA256,
            message.as_bytes(),
            &b64(parts[2]),
        )
        .expect("signature verifies");
    (header, decode_part(parts[1]))
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn test_key_signs_and_verifies_with_spki_and_jwk() {
    let key = TestKey::generate("my-kid").unwrap();
    assert_eq!(key.kid(), "my-kid");
    let jwk = key.jwk();
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["alg"], "RS256");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], "my-kid");
    assert_eq!(jwk["e"], "AQAB");

    let jwt = key.sign_claims(&json!({"sub": "x"})).unwrap();
    let (header, claims) = verify_with_jwks(&jwt, &jwks_json(&[&key]));
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["kid"], "my-kid");
    assert!(!b64(header["x5t"].as_str().unwrap()).is_empty());
    assert_eq!(claims, json!({"sub": "x"}));

    let parts: Vec<&str> = jwt.split('.').collect();
    let der = key.public_key_der();
    let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der);
    let message = format!("{}.{}", parts[0], parts[1]);
    public
        .verify(message.as_bytes(), &b64(parts[2]))
        .expect("verifies with DER key");
    assert!(public.verify(b"tampered", &b64(parts[2])).is_err());

    let custom = key.sign(&json!({"alg": "none"}), &json!({})).unwrap();
    assert_eq!(
        decode_part(custom.split('.').next().unwrap()),
        json!({"alg": "none"})
    );
}

#[tokio::test]
async fn discovery_matches_github_shape() {
    let gh = FakeGithub::start().await.unwrap();
    assert!(gh.addr().ip().is_loopback());
    assert_eq!(
        gh.base_url(),
        format!("http://127.0.0.1:{}", gh.addr().port())
    );
    assert_eq!(gh.issuer(), gh.base_url());
    assert!(!gh.issuer().ends_with('/'));

    let doc = get_json(&format!("{}/.well-known/openid-configuration", gh.issuer())).await;
    assert_eq!(doc["issuer"], gh.issuer());
    assert_eq!(doc["jwks_uri"], gh.jwks_url());
    assert_eq!(
        doc["subject_types_supported"],
        json!(["public", "pairwise"])
    );
    assert_eq!(doc["response_types_supported"], json!(["id_token"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    assert_eq!(doc["scopes_supported"], json!(["openid"]));
    let supported = doc["claims_supported"].as_array().unwrap();
    for claim in [
        "sub",
        "aud",
        "repository_id",
        "run_id",
        "jti",
        "runner_environment",
    ] {
        assert!(supported.iter().any(|c| c == claim), "{claim}");
    }
    assert_eq!(gh.discovery_requests(), 1);
    assert_eq!(gh.jwks_requests(), 0);
    gh.shutdown();
}

#[tokio::test]
async fn minted_token_verifies_against_served_jwks() {
    let gh = FakeGithub::start().await.unwrap();
    let jwks = get_json(&gh.jwks_url()).await;
    assert_eq!(kids(&jwks), vec![gh.current_key().kid().to_owned()]);
    let kid = gh.current_key().kid().to_owned();
    assert_eq!(kid.len(), 40);
    assert!(kid.chars().all(|c| c.is_ascii_hexdigit()));

    let jwt = gh.token("https://runproof.example").unwrap();
    let (header, claims) = verify_with_jwks(&jwt, &jwks);
    assert_eq!(header["kid"], kid);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert!(header["x5t"].is_string());
    assert_eq!(claims["aud"], "https://runproof.example");
    assert_eq!(claims["iss"], gh.issuer());
    assert_eq!(gh.jwks_requests(), 1);
}

#[tokio::test]
async fn claims_have_github_shapes() {
    let gh = FakeGithub::start().await.unwrap();
    let run = gh.run();
    assert_eq!(run, RunSpec::default());
    let claims = gh.claims("aud-1");
    assert_eq!(claims["sub"], "repo:octo-org/octo-repo:ref:refs/heads/main");
    assert_eq!(claims["ref"], "refs/heads/main");
    assert_eq!(claims["ref_type"], "branch");
    assert_eq!(claims["repository"], "octo-org/octo-repo");
    assert_eq!(claims["repository_owner"], "octo-org");
    assert_eq!(claims["repository_id"], "1296269");
    assert_eq!(claims["repository_owner_id"], "9919");
    assert_eq!(claims["run_id"], "4242424242");
    assert_eq!(claims["run_attempt"], "1");
    assert_eq!(claims["sha"], run.sha);
    assert_eq!(run.sha.len(), 40);
    assert_eq!(claims["event_name"], "push");
    assert_eq!(claims["actor"], "octocat");
    assert_eq!(claims["runner_environment"], "github-hosted");
    assert_eq!(
        claims["workflow_ref"],
        "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main"
    );
    assert_eq!(claims["job_workflow_ref"], claims["workflow_ref"]);
    assert_eq!(claims["workflow_sha"], run.sha);
    assert_eq!(claims["job_workflow_sha"], run.sha);
    for id in [
        "repository_id",
        "repository_owner_id",
        "run_id",
        "run_number",
        "run_attempt",
        "actor_id",
    ] {
        assert!(claims[id].is_string(), "{id} must be a JSON string");
        claims[id].as_str().unwrap().parse::<u64>().unwrap();
    }
    for s in ["workflow", "repository_visibility", "head_ref", "base_ref"] {
        assert!(claims[s].is_string(), "{s}");
    }
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat - 5);
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 300);

    let jtis: HashSet<String> = (0..20)
        .map(|_| gh.claims("a")["jti"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(jtis.len(), 20);
    uuid::Uuid::parse_str(jtis.iter().next().unwrap()).unwrap();

    gh.set_run(RunSpec {
        repository: "someone/else".into(),
        repository_id: 7,
        repository_owner: "someone".into(),
        repository_owner_id: 8,
        run_attempt: 3,
        ..RunSpec::default()
    });
    let claims = gh.claims("a");
    assert_eq!(claims["repository"], "someone/else");
    assert_eq!(claims["repository_id"], "7");
    assert_eq!(claims["repository_owner_id"], "8");
    assert_eq!(claims["run_attempt"], "3");
    assert_eq!(claims["sub"], "repo:someone/else:ref:refs/heads/main");
}

#[tokio::test]
async fn time_offset_shifts_lifetimes() {
    let gh = FakeGithub::start().await.unwrap();
    let now = gh.claims("a")["iat"].as_i64().unwrap();
    gh.set_time_offset(-3600);
    let shifted = gh.claims("a")["iat"].as_i64().unwrap();
    assert!((now - 3600 - shifted).abs() <= 2, "{now} {shifted}");
    let jwt = gh.token("a").unwrap();
    let claims = decode_part(jwt.split('.').nth(1).unwrap());
    assert!(claims["exp"].as_i64().unwrap() < now);
}

#[tokio::test]
async fn mint_signs_custom_claims() {
    let gh = FakeGithub::start().await.unwrap();
    let mut claims = gh.claims("a");
    claims.insert("aud".into(), json!(["a", "b"]));
    let jwt = gh.mint(&claims).unwrap();
    let jwks = jwks_json(&[&gh.current_key()]);
    let (_, decoded) = verify_with_jwks(&jwt, &jwks);
    assert_eq!(decoded["aud"], json!(["a", "b"]));
}

#[tokio::test]
async fn rotation_keeps_then_retires_old_keys() {
    let gh = FakeGithub::start().await.unwrap();
    let first = gh.current_key();
    let old_token = gh.token("a").unwrap();

    let second = gh.rotate_key(false).unwrap();
    assert_ne!(first.kid(), second.kid());
    assert_eq!(gh.current_key().kid(), second.kid());
    let jwks = get_json(&gh.jwks_url()).await;
    assert_eq!(
        kids(&jwks),
        vec![second.kid().to_owned(), first.kid().to_owned()]
    );
    verify_with_jwks(&old_token, &jwks);
    let (header, _) = verify_with_jwks(&gh.token("a").unwrap(), &jwks);
    assert_eq!(header["kid"], second.kid());

    let third = gh.rotate_key(true).unwrap();
    let jwks = get_json(&gh.jwks_url()).await;
    assert_eq!(kids(&jwks), vec![third.kid().to_owned()]);
    assert_eq!(gh.published_keys().len(), 1);
    assert_eq!(gh.jwks_requests(), 2);
}

#[tokio::test]
async fn outage_answers_503_but_token_endpoint_works() {
    let gh = FakeGithub::start().await.unwrap();
    gh.set_outage(true);
    let discovery = format!("{}/.well-known/openid-configuration", gh.issuer());
    assert_eq!(
        get(&discovery).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        get(&gh.jwks_url()).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(gh.jwks_requests(), 1);
    assert_eq!(gh.discovery_requests(), 1);

    let response = client()
        .get(format!("{}&audience=x", gh.token_request_url()))
        .header(
            "Authorization",
            format!("bearer {}", gh.token_request_token()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    gh.set_outage(false);
    get_json(&gh.jwks_url()).await;
    get_json(&discovery).await;
    assert_eq!(gh.jwks_requests(), 2);
    assert_eq!(gh.discovery_requests(), 2);
}

#[tokio::test]
async fn jwks_override_serves_raw_body() {
    let gh = FakeGithub::start().await.unwrap();
    gh.set_jwks_override(Some(b"not json at all".to_vec()));
    let response = get(&gh.jwks_url()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"not json at all");
    gh.set_jwks_override(None);
    let jwks = get_json(&gh.jwks_url()).await;
    assert_eq!(kids(&jwks), vec![gh.current_key().kid().to_owned()]);
}

#[tokio::test]
async fn token_request_endpoint_like_actions() {
    let gh = FakeGithub::start().await.unwrap();
    let url = format!(
        "{}&audience=https%3A%2F%2Frunproof.example",
        gh.token_request_url()
    );
    assert!(gh.token_request_url().contains("?api-version=2.0"));

    for scheme in ["bearer", "Bearer", "BEARER"] {
        let response = client()
            .get(&url)
            .header(
                "Authorization",
                format!("{scheme} {}", gh.token_request_token()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
        let body: Value = response.json().await.unwrap();
        let jwt = body["value"].as_str().unwrap();
        let jwks = get_json(&gh.jwks_url()).await;
        let (_, claims) = verify_with_jwks(jwt, &jwks);
        assert_eq!(claims["aud"], "https://runproof.example");
        assert_eq!(claims["iss"], gh.issuer());
    }

    let response = client()
        .get(gh.token_request_url())
        .header(
            "Authorization",
            format!("bearer {}", gh.token_request_token()),
        )
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let claims = decode_part(body["value"].as_str().unwrap().split('.').nth(1).unwrap());
    assert_eq!(claims["aud"], "https://github.com/octo-org");

    for auth in [
        None,
        Some("bearer wrong".to_owned()),
        Some(format!("Basic {}", gh.token_request_token())),
        Some(gh.token_request_token()),
    ] {
        let mut request = client().get(&url);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
    }
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let gh = FakeGithub::start().await.unwrap();
    get_json(&gh.jwks_url()).await;
    gh.shutdown();
    let url = gh.jwks_url();
    let refused = tokio::time::timeout(TIMEOUT, async {
        loop {
            // A fresh client: no pooled connection may outlive the listener.
            if client().get(&url).send().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "server still answering after shutdown");
}

#[tokio::test]
async fn dropping_last_clone_stops_serving() {
    let gh = FakeGithub::start().await.unwrap();
    let clone = gh.clone();
    let url = gh.jwks_url();
    drop(gh);
    get_json(&url).await;
    drop(clone);
    let refused = tokio::time::timeout(TIMEOUT, async {
        while client().get(&url).send().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "server still answering after drop");
}
