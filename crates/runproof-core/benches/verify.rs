//! In-process RS256 verification throughput.
//!
//! One GitHub-shaped token (header `typ`/`alg`/`kid`/`x5t`, the ~30 claims GitHub sends,
//! RSA-2048 key with e = 65537) is measured through each layer of the path a request
//! takes, so the cost of each layer is visible next to the raw signature check:
//!
//! - `verify/rs256_raw_aws_lc`: `ParsedPublicKey::verify_sig` alone (SHA-256 of the
//!   signing input + the RSA public operation), the floor for any RS256 verifier;
//! - `verify/parse`: `UnverifiedToken::parse` (base64url + JSON of header and claims);
//! - `verify/verify_parsed`: `Verifier::verify` on an already parsed token;
//! - `verify/parse_and_verify`: both, i.e. everything the core does per request;
//! - `verify/rules_one_match`: the trust rules of both layers when one rule of each
//!   matches (the usual case);
//! - `verify/rules_64_refused`: the App's layer at its bound, 64 rules of several fields
//!   with patterns, none matching, so that every rule's mismatches are worked out (the
//!   most a refusal costs).
//!
//! `scripts/bench.sh` divides these by `openssl speed rsa2048` verify/s from the same run.
//! Run: `cargo bench -p runproof-core --bench verify -- --warm-up-time 1 --measurement-time 3`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use runproof_core::policy::Policy;
use runproof_core::rules::{Layer, TrustRule, evaluate_all};
use runproof_core::{KeySet, UnixTime, UnverifiedToken, Verifier, VerifierConfig};
use runproof_testkit::{TestKey, jwks_json};
use serde_json::json;

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const AUDIENCE: &str = "https://runproof.bench.invalid";

/// Claims shaped like the ones GitHub Actions issues (ids as strings, as GitHub sends them).
fn github_claims(now: i64) -> serde_json::Value {
    let repo = "octo-org/octo-repo";
    let sha = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    let workflow_ref = format!("{repo}/.github/workflows/ci.yml@refs/heads/main");
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": format!("repo:{repo}:ref:refs/heads/main"),
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "ref_protected": "false",
        "sha": sha,
        "repository": repo,
        "repository_id": "1296269",
        "repository_owner": "octo-org",
        "repository_owner_id": "9919",
        "repository_visibility": "public",
        "run_id": "4242424242",
        "run_number": "7",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "ci.yml",
        "workflow_ref": workflow_ref,
        "workflow_sha": sha,
        "job_workflow_ref": workflow_ref,
        "job_workflow_sha": sha,
        "event_name": "push",
        "runner_environment": "github-hosted",
        "head_ref": "",
        "base_ref": "",
        "jti": "8f1d2b9c-5e0a-4c1e-9d3f-7a6b5c4d3e2f",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
    })
}

struct Fixture {
    token: String,
    keys: KeySet,
    raw_key: ParsedPublicKey,
    verifier: Verifier,
    now: UnixTime,
}

fn fixture() -> Fixture {
    let now = i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap();
    // A 40-hex-digit kid, like GitHub's.
    let key = TestKey::generate("9F2F9A5C0B1E3D4A6B7C8D9E0F1A2B3C4D5E6F70").unwrap();
    let token = key.sign_claims(&github_claims(now)).unwrap();
    let jwks = serde_json::to_vec(&jwks_json(&[&key])).unwrap();
    let keys = KeySet::from_jwks_json(&jwks).unwrap();
    let raw_key = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key_der()).unwrap();
    let verifier = Verifier::new(VerifierConfig {
        issuers: vec![ISSUER.to_owned()],
        audience: AUDIENCE.to_owned(),
        leeway_seconds: 60,
        policy: Policy::default(),
    });
    Fixture {
        token,
        keys,
        raw_key,
        verifier,
        now: UnixTime(now),
    }
}

fn bench_verify(c: &mut Criterion) {
    let f = fixture();
    // Sanity: the token verifies, so every bench below measures the success path.
    let parsed = UnverifiedToken::parse(&f.token).unwrap();
    f.verifier.verify(parsed.clone(), &f.keys, f.now).unwrap();

    let (signing_input, sig_b64) = f.token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(sig_b64).unwrap();
    f.raw_key
        .verify_sig(signing_input.as_bytes(), &signature)
        .unwrap();
    eprintln!(
        "token: {} bytes (signing input {} bytes)",
        f.token.len(),
        signing_input.len()
    );

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));

    group.bench_function("rs256_raw_aws_lc", |b| {
        b.iter(|| {
            f.raw_key
                .verify_sig(black_box(signing_input.as_bytes()), black_box(&signature))
                .unwrap();
        });
    });

    group.bench_function("parse", |b| {
        b.iter(|| UnverifiedToken::parse(black_box(&f.token)).unwrap());
    });

    group.bench_function("verify_parsed", |b| {
        b.iter_batched(
            || parsed.clone(),
            |token| f.verifier.verify(token, &f.keys, f.now).unwrap(),
            BatchSize::SmallInput,
        );
    });

    group.bench_function("parse_and_verify", |b| {
        b.iter(|| {
            let token = UnverifiedToken::parse(black_box(&f.token)).unwrap();
            f.verifier.verify(token, &f.keys, f.now).unwrap()
        });
    });

    let identity = f
        .verifier
        .verify(parsed.clone(), &f.keys, f.now)
        .unwrap()
        .identity;
    let matching = vec![TrustRule {
        name: "main".into(),
        refs: Some(vec!["refs/heads/main".into(), "refs/tags/v*".into()]),
        job_workflows: Some(vec![
            "octo-org/**/.github/workflows/*.yml@refs/heads/*".into(),
        ]),
        events: Some(vec!["push".into()]),
        ..TrustRule::default()
    }];
    let refusing: Vec<TrustRule> = (0..64)
        .map(|i| TrustRule {
            name: format!("rule {i}"),
            workflows: Some(vec![format!(".github/workflows/release-{i}.yml")]),
            job_workflows: Some(vec![format!(
                "app-org/upload/**/upload-{i}.yml@refs/tags/v*"
            )]),
            refs: Some(vec![
                format!("refs/tags/v{i}.*"),
                "refs/heads/release/**".into(),
            ]),
            environments: Some(vec!["production".into()]),
            events: Some(vec!["release".into()]),
            ..TrustRule::default()
        })
        .collect();
    assert!(
        evaluate_all(
            &[(Layer::App, &matching), (Layer::Repository, &matching)],
            &identity
        )
        .allowed()
    );
    assert!(!evaluate_all(&[(Layer::App, &refusing)], &identity).allowed());

    group.bench_function("rules_one_match", |b| {
        b.iter(|| {
            evaluate_all(
                black_box(&[(Layer::App, &matching), (Layer::Repository, &matching)]),
                black_box(&identity),
            )
        });
    });

    group.bench_function("rules_64_refused", |b| {
        b.iter(|| evaluate_all(black_box(&[(Layer::App, &refusing)]), black_box(&identity)));
    });

    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
