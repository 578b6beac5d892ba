//! The run identity carries every claim a trust rule needs, whatever else the token holds:
//! both of GitHub's `sub` formats verify alike, unknown claims never fail verification,
//! and optional claims of the wrong type are absent rather than fatal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use runproof_core::claims::{MAX_EXTRA_CLAIM_VALUE_BYTES, MAX_EXTRA_CLAIMS};
use runproof_core::{
    ActorId, CheckRunId, EnterpriseId, KeySet, Policy, RunIdentity, UnixTime, UnverifiedToken,
    Verifier, VerifierConfig,
};
use runproof_testkit::{TestKey, jwks_json};
use serde_json::{Value, json};

const ISSUER: &str = "https://token.actions.githubusercontent.com";
const AUDIENCE: &str = "https://runproof.example.com";
const NOW: i64 = 1_780_000_000;
const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const JOB_SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// Claims shaped like GitHub's (ids as strings), with every claim a rule may read.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "repo:octo-org/octo-repo:ref:refs/heads/main",
        "ref": "refs/heads/main",
        "ref_type": "branch",
        "ref_protected": "true",
        "sha": SHA,
        "repository": "octo-org/octo-repo",
        "repository_id": "1296269",
        "repository_owner": "octo-org",
        "repository_owner_id": "9919",
        "repository_visibility": "private",
        "enterprise": "octo-enterprise",
        "enterprise_id": "521",
        "run_id": "4242424242",
        "run_number": "7",
        "run_attempt": "1",
        "check_run_id": "31415926535",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "Release",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml@refs/heads/main",
        "workflow_sha": SHA,
        "job_workflow_ref": "app-org/upload/.github/workflows/upload.yml@refs/tags/v1",
        "job_workflow_sha": JOB_SHA,
        "event_name": "push",
        "environment": "production",
        "runner_environment": "github-hosted",
        "repo_property_team": "infra",
        "head_ref": "",
        "base_ref": "",
        "jti": "8f1d2b9c-5e0a-4c1e-9d3f-7a6b5c4d3e2f",
        "iat": NOW,
        "nbf": NOW - 5,
        "exp": NOW + 300,
    })
}

struct Fixture {
    key: TestKey,
    keys: KeySet,
    verifier: Verifier,
}

fn fixture() -> Fixture {
    let key = TestKey::generate("k1").unwrap();
    let keys = KeySet::from_jwks_json(&serde_json::to_vec(&jwks_json(&[&key])).unwrap()).unwrap();
    let verifier = Verifier::new(VerifierConfig {
        issuers: vec![ISSUER.into()],
        audience: AUDIENCE.into(),
        leeway_seconds: 60,
        policy: Policy::default(),
    });
    Fixture {
        key,
        keys,
        verifier,
    }
}

impl Fixture {
    fn verify(&self, claims: &Value) -> Result<RunIdentity, runproof_core::VerifyError> {
        let token = self.key.sign_claims(claims).unwrap();
        self.verifier
            .verify(
                UnverifiedToken::parse(&token).unwrap(),
                &self.keys,
                UnixTime(NOW),
            )
            .map(|v| v.identity)
    }
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().unwrap().remove(key);
    claims
}

#[test]
fn every_claim_a_rule_needs_reaches_the_identity() {
    let id = fixture().verify(&claims()).unwrap();
    assert_eq!(id.ref_type.as_deref(), Some("branch"));
    assert_eq!(id.ref_protected, Some(true));
    assert_eq!(id.repository_visibility.as_deref(), Some("private"));
    assert_eq!(id.enterprise.as_deref(), Some("octo-enterprise"));
    assert_eq!(id.enterprise_id, Some(EnterpriseId(521)));
    assert_eq!(id.check_run_id, Some(CheckRunId(31_415_926_535)));
    assert_eq!(id.actor_id, Some(ActorId(583_231)));
    assert_eq!(id.workflow_sha.as_deref(), Some(SHA));
    assert_eq!(id.job_workflow_sha.as_deref(), Some(JOB_SHA));
    assert_eq!(id.environment.as_deref(), Some("production"));
    assert_eq!(id.extra_claims.get("repo_property_team"), Some("infra"));
    assert_eq!(id.extra_claims.get("workflow"), Some("Release"));
    assert_eq!(id.extra_claims.get("run_number"), Some("7"));
    assert_eq!(id.extra_claims.get("head_ref"), Some(""));
    for kept_elsewhere in ["sub", "iss", "aud", "jti", "exp", "ref", "repository_id"] {
        assert_eq!(
            id.extra_claims.get(kept_elsewhere),
            None,
            "{kept_elsewhere}"
        );
    }
    assert_eq!(id.claim("repository_id").as_deref(), Some("1296269"));
    assert_eq!(id.claim("ref_protected").as_deref(), Some("true"));
    assert_eq!(id.claim("repo_property_team").as_deref(), Some("infra"));
    assert_eq!(id.claim("sub"), None, "sub is never kept");
}

#[test]
fn both_subject_formats_verify_alike_and_give_the_same_identity() {
    let f = fixture();
    let reference = f.verify(&claims()).unwrap();
    let subjects = [
        // The format before 2026-07: names only.
        "repo:octo-org/octo-repo:ref:refs/heads/main",
        // GitHub's immutable subject format, from 2026-07: names with their ids.
        "repo:octo-org@9919/octo-repo@1296269:ref:refs/heads/main",
        "repo:octo-org@9919/octo-repo@1296269:environment:production",
        // Anything else in sub changes nothing either.
        "something-else-entirely",
        "",
    ];
    for sub in subjects {
        let identity = f.verify(&with(claims(), "sub", json!(sub))).unwrap();
        assert_eq!(identity, reference, "sub = {sub:?}");
    }
    let identity = f.verify(&without(claims(), "sub")).unwrap();
    assert_eq!(identity, reference, "no sub at all");
}

#[test]
fn unknown_claims_of_any_type_never_fail_verification() {
    let f = fixture();
    let reference = f.verify(&claims()).unwrap();
    for (name, value) in [
        ("repo_property_tags", json!(["a", "b"])),
        ("repo_property_nested", json!({"a": {"b": [1, 2, null]}})),
        ("issuer_scope", json!(null)),
        ("run_number", json!(7)),
        ("some_flag", json!(true)),
        ("a_float", json!(1.5)),
    ] {
        let identity = f.verify(&with(claims(), name, value.clone())).unwrap();
        let mut expected = reference.clone();
        if name == "run_number" {
            // Only string claims are kept: the number replaces the string, and is dropped.
            expected = serde_json::from_value(with(
                serde_json::to_value(&expected).unwrap(),
                "extra_claims",
                json!({
                    "base_ref": "", "head_ref": "", "repo_property_team": "infra",
                    "workflow": "Release",
                }),
            ))
            .unwrap();
        }
        assert_eq!(identity, expected, "{name} = {value}");
    }
}

#[test]
fn optional_claims_of_the_wrong_type_are_absent_not_fatal() {
    let f = fixture();
    let cases: [(&str, Value); 12] = [
        ("ref_protected", json!("yes")),
        ("ref_protected", json!(1)),
        ("ref_type", json!(5)),
        ("repository_visibility", json!(["public"])),
        ("enterprise", json!({})),
        ("enterprise_id", json!("-1")),
        ("check_run_id", json!("not a number")),
        ("actor_id", json!(1.5)),
        ("actor_id", json!("99999999999999999999999")),
        ("workflow_sha", json!("not-a-sha")),
        (
            "job_workflow_sha",
            json!("0123456789ABCDEF0123456789ABCDEF01234567"),
        ),
        ("job_workflow_sha", json!(12)),
    ];
    for (name, value) in cases {
        let identity = f
            .verify(&with(claims(), name, value.clone()))
            .unwrap_or_else(|e| panic!("{name} = {value}: {e:?}"));
        assert_eq!(identity.claim(name), None, "{name} = {value}");
        assert_eq!(identity.extra_claims.get(name), None, "{name} = {value}");
    }
}

#[test]
fn ref_protected_reads_a_string_or_a_boolean() {
    let f = fixture();
    for (value, expected) in [
        (json!("true"), Some(true)),
        (json!("false"), Some(false)),
        (json!(true), Some(true)),
        (json!(false), Some(false)),
        (json!("TRUE"), None),
        (json!(null), None),
    ] {
        let identity = f
            .verify(&with(claims(), "ref_protected", value.clone()))
            .unwrap();
        assert_eq!(identity.ref_protected, expected, "{value}");
    }
    let identity = f.verify(&without(claims(), "ref_protected")).unwrap();
    assert_eq!(identity.ref_protected, None);
}

#[test]
fn extra_claims_are_bounded_and_the_rest_ignored() {
    let f = fixture();
    let mut many = claims();
    for i in 0..MAX_EXTRA_CLAIMS + 20 {
        many = with(many, &format!("repo_property_p{i:03}"), json!("v"));
    }
    many = with(
        many,
        "repo_property_long",
        json!("x".repeat(MAX_EXTRA_CLAIM_VALUE_BYTES + 1)),
    );
    let identity = f.verify(&many).unwrap();
    assert_eq!(identity.extra_claims.len(), MAX_EXTRA_CLAIMS);
    assert_eq!(identity.extra_claims.get("repo_property_long"), None);
    // What is kept round-trips through storage unchanged.
    let stored = serde_json::to_string(&identity).unwrap();
    let back: RunIdentity = serde_json::from_str(&stored).unwrap();
    assert_eq!(back, identity);
}
