//! Trust rules on the identities of real GitHub Actions tokens (collected elsewhere, kept
//! in `tests/fixtures/realworld/oidc`): for each field and pattern form, a rule that
//! matches what the token says, and rules that refuse it with the mismatches a refusal
//! shows. The token of 2022 predates `workflow_ref`, `ref_protected`, the `*_sha` claims
//! and `runner_environment`: rules that need them refuse it, naming no value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use runproof_core::rules::{Layer, LayerOutcome, Mismatch, evaluate, evaluate_all, explain};
use runproof_core::{
    KeySet, Policy, RunIdentity, TrustRule, UnixTime, UnverifiedToken, Verifier, VerifierConfig,
};
use serde_json::{Value, json};

const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The token of 2022 (varunsh-coder/actions-playground, `workflow_dispatch` on main).
const OLD: usize = 0;
/// The token of 2025-01 (neu-se/autograder-action, a push to main, in an enterprise).
const NEW: usize = 1;

const TOKENS: [(&str, &str, &str, i64); 2] = [
    (
        "step-security_github_oidc_token_2022-08-05.jwt",
        "step-security_jwks_2022.json",
        "https://github.com/varunsh-coder",
        1_659_662_993,
    ),
    (
        "tok_2025-01_neu-se.jwt",
        "jwks_2025-06_crates.io.json",
        "https://github.com/neu-se",
        1_738_115_363,
    ),
];

const NEW_SHA: &str = "87094ea4756a84eb768be22a43bfed71eeecd472";
const OTHER_SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn realworld(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/oidc")
        .join(path);
    std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (fixtures in the repository)", p.display()))
}

/// The verified identity of each real token, inside its lifetime.
fn identities() -> [RunIdentity; 2] {
    TOKENS.map(|(token, jwks, audience, iat)| {
        let token = String::from_utf8(realworld(token)).unwrap();
        let keys = KeySet::from_jwks_json(&realworld(jwks)).unwrap();
        let verifier = Verifier::new(VerifierConfig {
            issuers: vec![GITHUB_ISSUER.into()],
            audience: audience.into(),
            leeway_seconds: 60,
            policy: Policy::default(),
        });
        verifier
            .verify(
                UnverifiedToken::parse(token.trim()).unwrap(),
                &keys,
                UnixTime(iat + 10),
            )
            .unwrap()
            .identity
    })
}

fn rule(fields: Value) -> TrustRule {
    let rule: TrustRule = serde_json::from_value(fields).unwrap();
    rule.validate().unwrap();
    rule
}

fn mismatch(field: &str, expected: &[&str], actual: Option<&str>) -> Mismatch {
    Mismatch {
        field: field.into(),
        expected: expected.iter().map(|e| (*e).to_owned()).collect(),
        actual: actual.map(Into::into),
    }
}

/// One case: a rule, which token it is checked against, and the mismatches expected (none:
/// it matches).
struct Case {
    name: &'static str,
    token: usize,
    rule: Value,
    mismatches: Vec<Mismatch>,
}

fn case(name: &'static str, token: usize, rule: Value, mismatches: Vec<Mismatch>) -> Case {
    Case {
        name,
        token,
        rule,
        mismatches,
    }
}

fn cases() -> Vec<Case> {
    vec![
        // Ids.
        case(
            "owner and repository ids match",
            NEW,
            json!({"repository_owner_ids": [76_491_096], "repository_ids": [922_761_846]}),
            vec![],
        ),
        case(
            "another repository id refuses",
            NEW,
            json!({"repository_ids": [433_903_792, 1]}),
            vec![mismatch(
                "repository_id",
                &["433903792", "1"],
                Some("922761846"),
            )],
        ),
        case(
            "another owner id refuses",
            OLD,
            json!({"repository_owner_ids": [76_491_096]}),
            vec![mismatch(
                "repository_owner_id",
                &["76491096"],
                Some("25015917"),
            )],
        ),
        // workflows: the path part of workflow_ref.
        case(
            "workflows: the exact file",
            NEW,
            json!({"workflows": [".github/workflows/ci.yml"]}),
            vec![],
        ),
        case(
            "workflows: * within a segment",
            NEW,
            json!({"workflows": [".github/workflows/*.yml"]}),
            vec![],
        ),
        case(
            "workflows: ** across segments",
            NEW,
            json!({"workflows": ["**/ci.yml"]}),
            vec![],
        ),
        case(
            "workflows: * does not cross a segment",
            NEW,
            json!({"workflows": ["*/ci.yml"]}),
            vec![mismatch(
                "workflow_ref",
                &["*/ci.yml"],
                Some(".github/workflows/ci.yml"),
            )],
        ),
        case(
            "workflows: another file refuses",
            NEW,
            json!({"workflows": [".github/workflows/release.yml"]}),
            vec![mismatch(
                "workflow_ref",
                &[".github/workflows/release.yml"],
                Some(".github/workflows/ci.yml"),
            )],
        ),
        case(
            "workflows: a token without workflow_ref refuses",
            OLD,
            json!({"workflows": [".github/workflows/mfa_release.yml"]}),
            vec![mismatch(
                "workflow_ref",
                &[".github/workflows/mfa_release.yml"],
                None,
            )],
        ),
        // job_workflows: owner/repo/path@ref-pattern or @sha.
        case(
            "job_workflows: at a ref",
            NEW,
            json!({"job_workflows": ["neu-se/autograder-action/.github/workflows/ci.yml@refs/heads/main"]}),
            vec![],
        ),
        case(
            "job_workflows: at a ref pattern",
            OLD,
            json!({"job_workflows": ["varunsh-coder/actions-playground/.github/workflows/*.yml@refs/heads/*"]}),
            vec![],
        ),
        case(
            "job_workflows: pinned to the commit it ran",
            NEW,
            json!({"job_workflows": [format!("neu-se/autograder-action/.github/workflows/ci.yml@{NEW_SHA}")]}),
            vec![],
        ),
        case(
            "job_workflows: pinned to another commit refuses, showing the sha",
            NEW,
            json!({"job_workflows": [format!("neu-se/autograder-action/.github/workflows/ci.yml@{OTHER_SHA}")]}),
            vec![mismatch(
                "job_workflow_ref",
                &[&format!(
                    "neu-se/autograder-action/.github/workflows/ci.yml@{OTHER_SHA}"
                )],
                Some(&format!(
                    "neu-se/autograder-action/.github/workflows/ci.yml@{NEW_SHA}"
                )),
            )],
        ),
        case(
            "job_workflows: a pin refuses a token without job_workflow_sha",
            OLD,
            json!({"job_workflows": [format!("varunsh-coder/actions-playground/.github/workflows/mfa_release.yml@{OTHER_SHA}")]}),
            vec![mismatch(
                "job_workflow_ref",
                &[&format!(
                    "varunsh-coder/actions-playground/.github/workflows/mfa_release.yml@{OTHER_SHA}"
                )],
                Some(
                    "varunsh-coder/actions-playground/.github/workflows/mfa_release.yml@refs/heads/main",
                ),
            )],
        ),
        case(
            "job_workflows: another repository's reusable workflow refuses",
            NEW,
            json!({"job_workflows": ["app-org/upload/.github/workflows/upload.yml@refs/tags/v*"]}),
            vec![mismatch(
                "job_workflow_ref",
                &["app-org/upload/.github/workflows/upload.yml@refs/tags/v*"],
                Some("neu-se/autograder-action/.github/workflows/ci.yml@refs/heads/main"),
            )],
        ),
        // refs.
        case(
            "refs: exact",
            OLD,
            json!({"refs": ["refs/heads/main"]}),
            vec![],
        ),
        case(
            "refs: any entry of the list",
            NEW,
            json!({"refs": ["refs/tags/v*", "refs/heads/*"]}),
            vec![],
        ),
        case(
            "refs: a tag pattern refuses a branch",
            NEW,
            json!({"refs": ["refs/tags/v*"]}),
            vec![mismatch("ref", &["refs/tags/v*"], Some("refs/heads/main"))],
        ),
        // ref_protected.
        case(
            "ref_protected: false as the token says",
            NEW,
            json!({"ref_protected": false}),
            vec![],
        ),
        case(
            "ref_protected: an unprotected ref refuses",
            NEW,
            json!({"ref_protected": true}),
            vec![mismatch("ref_protected", &["true"], Some("false"))],
        ),
        case(
            "ref_protected: a token without the claim refuses",
            OLD,
            json!({"ref_protected": true}),
            vec![mismatch("ref_protected", &["true"], None)],
        ),
        // environments: neither real token ran in one.
        case(
            "environments: a run without an environment refuses",
            NEW,
            json!({"environments": ["production"]}),
            vec![mismatch("environment", &["production"], None)],
        ),
        // events.
        case(
            "events: push",
            NEW,
            json!({"events": ["push", "release"]}),
            vec![],
        ),
        case(
            "events: workflow_dispatch",
            OLD,
            json!({"events": ["workflow_dispatch"]}),
            vec![],
        ),
        case(
            "events: another event refuses",
            OLD,
            json!({"events": ["push", "release"]}),
            vec![mismatch(
                "event_name",
                &["push", "release"],
                Some("workflow_dispatch"),
            )],
        ),
        // runner_environments.
        case(
            "runner_environments: github-hosted",
            NEW,
            json!({"runner_environments": ["github-hosted"]}),
            vec![],
        ),
        case(
            "runner_environments: self-hosted only refuses",
            NEW,
            json!({"runner_environments": ["self-hosted"]}),
            vec![mismatch(
                "runner_environment",
                &["self-hosted"],
                Some("github-hosted"),
            )],
        ),
        case(
            "runner_environments: a token without the claim refuses",
            OLD,
            json!({"runner_environments": ["github-hosted"]}),
            vec![mismatch("runner_environment", &["github-hosted"], None)],
        ),
        // claims: typed ones by name, and claims no typed field carries.
        case(
            "claims: typed and extra claims, exactly",
            NEW,
            json!({"claims": {
                "enterprise": "northeastern-university",
                "enterprise_id": "521",
                "repository_visibility": "public",
                "actor_id": "2130186",
                "workflow": "Continuous Integration",
            }}),
            vec![],
        ),
        case(
            "claims: each differing claim is a mismatch",
            NEW,
            json!({"claims": {
                "enterprise": "other-enterprise",
                "repository_visibility": "private",
                "workflow": "Continuous Integration",
            }}),
            vec![
                mismatch(
                    "enterprise",
                    &["other-enterprise"],
                    Some("northeastern-university"),
                ),
                mismatch("repository_visibility", &["private"], Some("public")),
            ],
        ),
        case(
            "claims: a claim the token lacks refuses",
            OLD,
            json!({"claims": {"enterprise": "northeastern-university", "repo_property_team": "infra"}}),
            vec![
                mismatch("enterprise", &["northeastern-university"], None),
                mismatch("repo_property_team", &["infra"], None),
            ],
        ),
        // Every field at once: the PyPI-like release rule, bound to what the token says.
        case(
            "every field bound to the run matches",
            NEW,
            json!({
                "name": "autograder ci",
                "repository_owner_ids": [76_491_096],
                "repository_ids": [922_761_846],
                "workflows": [".github/workflows/ci.yml"],
                "job_workflows": [format!("neu-se/autograder-action/.github/workflows/ci.yml@{NEW_SHA}")],
                "refs": ["refs/heads/main"],
                "ref_protected": false,
                "events": ["push"],
                "runner_environments": ["github-hosted"],
                "claims": {"repository_visibility": "public"},
            }),
            vec![],
        ),
    ]
}

#[test]
fn real_identities_through_each_field_and_pattern_form() {
    let ids = identities();
    let cases = cases();
    assert!(cases.iter().any(|c| c.token == OLD) && cases.iter().any(|c| c.token == NEW));
    for c in &cases {
        let identity = &ids[c.token];
        let r = rule(c.rule.clone());
        assert_eq!(
            r.mismatches(identity),
            c.mismatches,
            "{}: {}",
            c.name,
            c.rule
        );
        // The layer agrees: a lone matching rule allows; a lone refusing one is the nearest.
        match evaluate(std::slice::from_ref(&r), identity) {
            LayerOutcome::Matched { index, .. } => {
                assert!(c.mismatches.is_empty(), "{}", c.name);
                assert_eq!(index, 0);
            }
            LayerOutcome::Refused { nearest } => {
                assert_eq!(nearest.mismatches, c.mismatches, "{}", c.name);
            }
            other => panic!("{}: {other:?}", c.name),
        }
    }
}

/// Both layers must agree: a repository rule that refuses what the App's allows refuses
/// the upload, and the refusal names the repository's layer.
#[test]
fn rule_both_layers_must_match_a_real_identity() {
    let ids = identities();
    let identity = &ids[NEW];
    let app = [rule(
        json!({"name": "org repos", "repository_owner_ids": [76_491_096]}),
    )];
    let repo_ok = [rule(
        json!({"name": "ci on main", "refs": ["refs/heads/main"]}),
    )];
    let repo_refuses = [
        rule(json!({"name": "release env", "environments": ["release"]})),
        rule(json!({"name": "tags only", "refs": ["refs/tags/*"], "events": ["push", "release"]})),
    ];
    let allowed = evaluate_all(
        &[(Layer::App, &app), (Layer::Repository, &repo_ok)],
        identity,
    );
    assert!(allowed.allowed(), "{allowed:?}");
    let refused = evaluate_all(
        &[(Layer::App, &app), (Layer::Repository, &repo_refuses)],
        identity,
    );
    let (layer, nearest) = refused.refusal().unwrap();
    assert_eq!(layer, Layer::Repository);
    // Both rules differ in one field; the first is the nearest.
    assert_eq!(nearest.name, "release env");
    assert_eq!(
        nearest.mismatches,
        vec![mismatch("environment", &["release"], None)]
    );
    // Explaining the refusing layer shows each rule.
    let reports = explain(&repo_refuses, identity);
    assert_eq!(reports.len(), 2);
    assert!(reports.iter().all(|r| !r.matched));
    assert_eq!(
        reports[1].mismatches,
        vec![mismatch("ref", &["refs/tags/*"], Some("refs/heads/main"))]
    );
}

/// `sub` is never compared (its format changes, and it carries names): a rule naming it
/// is refused, and the identities of both real tokens keep none.
#[test]
fn rule_sub_is_never_compared_on_real_identities() {
    for identity in identities() {
        assert_eq!(identity.claim("sub"), None);
    }
    let named: TrustRule = serde_json::from_value(
        json!({"claims": {"sub": "repo:neu-se/autograder-action:ref:refs/heads/main"}}),
    )
    .unwrap();
    assert!(named.validate().is_err());
}
