//! Real GitHub Actions tokens and JWKS, written by GitHub and collected elsewhere, verify
//! inside their lifetime and fail outside it.
#![allow(clippy::panic)]

use std::path::PathBuf;

use runproof_core::rules::{Layer, Mismatch, evaluate_all};
use runproof_core::{
    ActorId, EnterpriseId, KeySet, Policy, RepositoryId, UnixTime, UnverifiedToken, Verifier,
    VerifierConfig, VerifyError,
};

const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

fn realworld(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/oidc")
        .join(path);
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (fixtures in the repository)", p.display()))
}

fn verifier(audience: &str) -> Verifier {
    Verifier::new(VerifierConfig {
        issuers: vec![GITHUB_ISSUER.into()],
        audience: audience.into(),
        leeway_seconds: 60,
        policy: Policy::default(),
    })
}

struct Case {
    token: &'static str,
    jwks: &'static str,
    audience: &'static str,
    iat: i64,
    exp: i64,
    repository_id: u64,
    /// The claims a trust rule reads, as the real token carries them.
    actor_id: u64,
    repository_visibility: &'static str,
    ref_type: &'static str,
    ref_protected: Option<bool>,
    workflow_sha: Option<&'static str>,
    job_workflow_ref: &'static str,
    job_workflow_sha: Option<&'static str>,
    enterprise: Option<(&'static str, u64)>,
    /// String claims no typed field carries, kept for rules to name.
    extra_claims: &'static [(&'static str, &'static str)],
}

const CASES: [Case; 2] = [
    Case {
        token: "step-security_github_oidc_token_2022-08-05.jwt",
        jwks: "step-security_jwks_2022.json",
        audience: "https://github.com/varunsh-coder",
        iat: 1_659_662_993,
        exp: 1_659_663_293,
        repository_id: 433_903_792,
        actor_id: 25_015_917,
        repository_visibility: "public",
        ref_type: "branch",
        // Tokens of 2022 had neither `ref_protected` nor the `*_sha` claims.
        ref_protected: None,
        workflow_sha: None,
        job_workflow_ref: "varunsh-coder/actions-playground/.github/workflows/mfa_release.yml@refs/heads/main",
        job_workflow_sha: None,
        enterprise: None,
        extra_claims: &[
            ("base_ref", ""),
            ("head_ref", ""),
            ("run_number", "6"),
            ("workflow", "Publish Package to npmjs"),
        ],
    },
    Case {
        token: "tok_2025-01_neu-se.jwt",
        jwks: "jwks_2025-06_crates.io.json",
        audience: "https://github.com/neu-se",
        iat: 1_738_115_363,
        exp: 1_738_115_663,
        repository_id: 922_761_846,
        actor_id: 2_130_186,
        repository_visibility: "public",
        ref_type: "branch",
        ref_protected: Some(false),
        workflow_sha: Some("87094ea4756a84eb768be22a43bfed71eeecd472"),
        job_workflow_ref: "neu-se/autograder-action/.github/workflows/ci.yml@refs/heads/main",
        job_workflow_sha: Some("87094ea4756a84eb768be22a43bfed71eeecd472"),
        enterprise: Some(("northeastern-university", 521)),
        extra_claims: &[
            ("base_ref", ""),
            ("head_ref", ""),
            ("run_number", "12"),
            ("workflow", "Continuous Integration"),
        ],
    },
];

#[test]
fn real_tokens_verify_inside_their_lifetime_and_fail_after() {
    for case in &CASES {
        let (token, jwks) = (realworld(case.token), realworld(case.jwks));
        let token = String::from_utf8(token).unwrap();
        let keys = KeySet::from_jwks_json(&jwks).unwrap();
        let v = verifier(case.audience);

        let ok = v
            .verify(
                UnverifiedToken::parse(token.trim()).unwrap(),
                &keys,
                UnixTime(case.iat + 10),
            )
            .unwrap();
        assert_eq!(ok.identity.repository_id, RepositoryId(case.repository_id));
        assert_eq!(ok.identity.issuer, GITHUB_ISSUER);
        assert_eq!(ok.expires_at, UnixTime(case.exp));
        let id = &ok.identity;
        assert_eq!(id.actor_id, Some(ActorId(case.actor_id)), "{}", case.token);
        assert_eq!(
            id.repository_visibility.as_deref(),
            Some(case.repository_visibility)
        );
        assert_eq!(id.ref_type.as_deref(), Some(case.ref_type));
        assert_eq!(id.ref_protected, case.ref_protected, "{}", case.token);
        assert_eq!(id.workflow_sha.as_deref(), case.workflow_sha);
        assert_eq!(id.job_workflow_ref.as_deref(), Some(case.job_workflow_ref));
        assert_eq!(id.job_workflow_sha.as_deref(), case.job_workflow_sha);
        assert_eq!(id.enterprise.as_deref(), case.enterprise.map(|e| e.0));
        assert_eq!(id.enterprise_id, case.enterprise.map(|e| EnterpriseId(e.1)));
        assert_eq!(id.check_run_id, None, "check_run_id came in 2025-11");
        assert_eq!(
            id.extra_claims.iter().collect::<Vec<_>>(),
            case.extra_claims.to_vec(),
            "{}",
            case.token
        );
        // Real identities through trust rules: one bound to what the token says matches;
        // the same rule at another ref refuses, naming the ref.
        let (path, _) = case.job_workflow_ref.split_once('@').unwrap();
        let bound: runproof_core::TrustRule = serde_json::from_value(serde_json::json!({
            "name": "bound",
            "repository_ids": [case.repository_id],
            "refs": ["refs/heads/main"],
            "job_workflows": [match case.job_workflow_sha {
                Some(sha) => format!("{path}@{sha}"),
                None => case.job_workflow_ref.to_owned(),
            }],
            "events": [id.event_name.clone().unwrap()],
        }))
        .unwrap();
        bound.validate().unwrap();
        let mut elsewhere = bound.clone();
        elsewhere.refs = Some(vec!["refs/tags/v*".into()]);
        let verdict = evaluate_all(
            &[
                (Layer::App, std::slice::from_ref(&bound)),
                (Layer::Repository, &[]),
            ],
            id,
        );
        assert!(verdict.allowed(), "{}: {verdict:?}", case.token);
        let verdict = evaluate_all(&[(Layer::App, std::slice::from_ref(&elsewhere))], id);
        let (layer, nearest) = verdict.refusal().unwrap();
        assert_eq!(layer, Layer::App);
        assert_eq!(
            nearest.mismatches,
            vec![Mismatch {
                field: "ref".into(),
                expected: vec!["refs/tags/v*".into()],
                actual: Some("refs/heads/main".into()),
            }]
        );

        let late = v.verify(
            UnverifiedToken::parse(token.trim()).unwrap(),
            &keys,
            UnixTime(case.exp + 61),
        );
        assert!(matches!(late, Err(VerifyError::Expired { .. })), "{late:?}");

        let wrong_aud = verifier("https://runproof.example.com").verify(
            UnverifiedToken::parse(token.trim()).unwrap(),
            &keys,
            UnixTime(case.iat + 10),
        );
        assert!(
            matches!(wrong_aud, Err(VerifyError::WrongAudience { .. })),
            "rule: custom audience: {wrong_aud:?}"
        );

        let mut forged = token.trim().to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        let bad = v.verify(
            UnverifiedToken::parse(&forged).unwrap(),
            &keys,
            UnixTime(case.iat + 10),
        );
        assert!(
            matches!(
                bad,
                Err(VerifyError::BadSignature | VerifyError::Malformed { .. })
            ),
            "{bad:?}"
        );
    }
}
