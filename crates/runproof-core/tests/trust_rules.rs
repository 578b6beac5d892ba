//! Trust rules, table-driven: every field, every pattern form, the refusal of each field,
//! the nearest rule, both layers, and the bounds a rule is held to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use runproof_core::rules::{
    FieldProblem, Layer, LayerOutcome, MAX_ENTRIES, MAX_PATTERN_BYTES, MAX_RULES_PER_LAYER,
    Mismatch, RuleError, evaluate, evaluate_all, explain, pattern_matches, validate_layer,
};
use runproof_core::{OwnerId, RepositoryId, RunIdentity, TrustRule};
use serde_json::json;

const JOB_SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER_SHA: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn identity() -> RunIdentity {
    serde_json::from_value(json!({
        "issuer": "https://token.actions.githubusercontent.com",
        "repository": "octo-org/octo-repo",
        "repository_id": 740_001,
        "repository_owner": "octo-org",
        "repository_owner_id": 650_001,
        "run_id": 30,
        "sha": "a".repeat(40),
        "ref": "refs/tags/v1.2.3",
        "ref_type": "tag",
        "ref_protected": true,
        "workflow_ref": "octo-org/octo-repo/.github/workflows/release.yml@refs/tags/v1.2.3",
        "workflow_sha": "a".repeat(40),
        "job_workflow_ref": "app-org/upload/.github/workflows/upload.yml@refs/tags/v2",
        "job_workflow_sha": JOB_SHA,
        "event_name": "release",
        "environment": "production",
        "runner_environment": "github-hosted",
        "extra_claims": {"repo_property_team": "infra", "workflow": "Release"},
    }))
    .unwrap()
}

fn rule(fields: serde_json::Value) -> TrustRule {
    serde_json::from_value(fields).unwrap()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn patterns_match_within_and_across_segments() {
    let cases: &[(&str, &str, bool)] = &[
        ("refs/heads/main", "refs/heads/main", true),
        ("refs/heads/main", "refs/heads/main2", false),
        ("refs/heads/main", "refs/heads/mai", false),
        ("refs/heads/main", "xrefs/heads/main", false),
        ("refs/tags/v*", "refs/tags/v1", true),
        ("refs/tags/v*", "refs/tags/v", true),
        ("refs/tags/v*", "refs/tags/v1/evil", false),
        ("refs/tags/v*", "refs/tags/x1", false),
        ("refs/heads/*", "refs/heads/main", true),
        ("refs/heads/*", "refs/heads/feature/x", false),
        ("refs/heads/**", "refs/heads/feature/x", true),
        ("refs/heads/**", "refs/heads/", true),
        ("refs/**/main", "refs/heads/main", true),
        ("refs/**/main", "refs/a/b/c/main", true),
        ("refs/**/main", "refs/main", false),
        ("refs/*/main", "refs/heads/main", true),
        ("refs/*/main", "refs/a/b/main", false),
        ("*", "", true),
        ("*", "a/b", false),
        ("**", "a/b", true),
        ("", "", true),
        ("", "a", false),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "abc", true),
        ("a*b*c", "acb", false),
        ("v?", "v1", false),
        ("v?", "v?", true),
        ("[ab]", "a", false),
        ("[ab]", "[ab]", true),
        ("a.b", "aXb", false),
        (
            ".github/workflows/*.yml",
            ".github/workflows/release.yml",
            true,
        ),
        (
            ".github/workflows/*.yml",
            ".github/workflows/release.yaml",
            false,
        ),
        ("é*", "été", true),
    ];
    for (pattern, text, expected) in cases {
        assert_eq!(
            pattern_matches(pattern, text),
            *expected,
            "{pattern:?} against {text:?}"
        );
    }
}

#[test]
fn rule_adversarial_patterns_take_linear_time() {
    let text = "a".repeat(16 * 1024);
    let mut patterns = Vec::new();
    let star_a = "*a".repeat(MAX_PATTERN_BYTES / 2 - 1) + "b";
    patterns.push(star_a);
    patterns.push("**a".repeat(MAX_PATTERN_BYTES / 3 - 1) + "b");
    patterns.push("*".repeat(MAX_PATTERN_BYTES - 1) + "b");
    let started = Instant::now();
    for pattern in &patterns {
        assert!(pattern.len() <= MAX_PATTERN_BYTES);
        assert!(!pattern_matches(pattern, &text), "{pattern}");
    }
    assert!(pattern_matches(&"*a".repeat(100), &text));
    // Backtracking would take longer than the universe's age here; states take moments.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// A rule setting one field, and whether the identity matches it.
fn field_cases() -> Vec<(serde_json::Value, bool)> {
    vec![
        (json!({"repository_owner_ids": [650_001]}), true),
        (json!({"repository_owner_ids": ["650001", 1]}), true),
        (json!({"repository_owner_ids": [1, 2]}), false),
        (json!({"repository_ids": [740_001]}), true),
        (json!({"repository_ids": [740_002]}), false),
        (
            json!({"workflows": [".github/workflows/release.yml"]}),
            true,
        ),
        (json!({"workflows": [".github/workflows/*.yml"]}), true),
        (json!({"workflows": [".github/**"]}), true),
        (json!({"workflows": [".github/workflows/ci.yml"]}), false),
        (
            json!({"workflows": ["octo-org/octo-repo/.github/workflows/release.yml"]}),
            false,
        ),
        (
            json!({"job_workflows": ["app-org/upload/.github/workflows/upload.yml@refs/tags/v*"]}),
            true,
        ),
        (
            json!({"job_workflows": ["app-org/upload/.github/workflows/upload.yml@refs/tags/v2"]}),
            true,
        ),
        (
            json!({"job_workflows": ["app-org/*/.github/workflows/upload.yml@refs/tags/**"]}),
            true,
        ),
        (
            json!({"job_workflows": [format!("app-org/upload/.github/workflows/upload.yml@{JOB_SHA}")]}),
            true,
        ),
        (
            json!({"job_workflows": [format!("app-org/upload/.github/workflows/upload.yml@{OTHER_SHA}")]}),
            false,
        ),
        (
            json!({"job_workflows": [format!("app-org/other/.github/workflows/upload.yml@{JOB_SHA}")]}),
            false,
        ),
        (
            json!({"job_workflows": ["app-org/upload/.github/workflows/upload.yml@refs/heads/main"]}),
            false,
        ),
        (
            json!({"job_workflows": ["app-org/upload/.github/workflows/other.yml@refs/tags/v2"]}),
            false,
        ),
        (
            json!({"job_workflows": ["evil-org/upload/.github/workflows/upload.yml@refs/tags/v2"]}),
            false,
        ),
        (json!({"refs": ["refs/tags/v*"]}), true),
        (
            json!({"refs": ["refs/heads/main", "refs/tags/v1.2.3"]}),
            true,
        ),
        (json!({"refs": ["refs/heads/main"]}), false),
        (json!({"ref_protected": true}), true),
        (json!({"ref_protected": false}), false),
        (json!({"environments": ["staging", "production"]}), true),
        (json!({"environments": ["Production"]}), false),
        (json!({"events": ["push", "release"]}), true),
        (json!({"events": ["push"]}), false),
        (json!({"runner_environments": ["github-hosted"]}), true),
        (json!({"runner_environments": ["self-hosted"]}), false),
        (json!({"claims": {"repo_property_team": "infra"}}), true),
        (
            json!({"claims": {"repo_property_team": "infra", "ref_type": "tag"}}),
            true,
        ),
        (
            json!({"claims": {"repository_owner_id": "650001", "ref_protected": "true"}}),
            true,
        ),
        (json!({"claims": {"workflow": "Release"}}), true),
        (json!({"claims": {"repo_property_team": "Infra"}}), false),
        (json!({"claims": {"repo_property_missing": "x"}}), false),
        (json!({"name": "only a name"}), true),
    ]
}

#[test]
fn each_field_and_pattern_form_matches_or_not() {
    let id = identity();
    for (fields, expected) in field_cases() {
        let rule = rule(fields.clone());
        rule.validate().unwrap_or_else(|e| panic!("{fields}: {e}"));
        let mismatches = rule.mismatches(&id);
        assert_eq!(mismatches.is_empty(), expected, "{fields}: {mismatches:?}");
    }
}

#[test]
fn a_rule_matches_when_every_field_it_sets_matches() {
    let full = rule(json!({
        "name": "release uploads",
        "repository_owner_ids": [650_001],
        "repository_ids": [740_001],
        "workflows": [".github/workflows/release.yml"],
        "job_workflows": [
            "app-org/upload/.github/workflows/upload.yml@refs/tags/v*",
            format!("app-org/upload/.github/workflows/upload.yml@{OTHER_SHA}"),
        ],
        "refs": ["refs/heads/main", "refs/tags/v*"],
        "ref_protected": true,
        "environments": ["production"],
        "events": ["push", "release"],
        "runner_environments": ["github-hosted"],
        "claims": {"repo_property_team": "infra"},
    }));
    full.validate().unwrap();
    assert_eq!(full.mismatches(&identity()), vec![]);
    // One field off is enough to refuse, and it is the one named.
    let mut id = identity();
    id.environment = Some("staging".into());
    assert_eq!(
        full.mismatches(&id),
        vec![Mismatch {
            field: "environment".into(),
            expected: strings(&["production"]),
            actual: Some("staging".into()),
        }]
    );
}

/// Asserts that `fields` refuses `id` with exactly one mismatch of `field`, showing `actual`.
fn refuses(fields: serde_json::Value, id: &RunIdentity, field: &str, actual: Option<&str>) {
    let rule = rule(fields.clone());
    rule.validate().unwrap();
    let mismatches = rule.mismatches(id);
    assert_eq!(mismatches.len(), 1, "{fields}: {mismatches:?}");
    assert_eq!(mismatches[0].field, field, "{fields}");
    assert_eq!(mismatches[0].actual.as_deref(), actual, "{fields}");
}

#[test]
fn rule_repository_owner_ids_refuse_another_owner() {
    refuses(
        json!({"repository_owner_ids": [1]}),
        &identity(),
        "repository_owner_id",
        Some("650001"),
    );
}

#[test]
fn rule_repository_ids_refuse_another_repository_whatever_its_name() {
    let mut id = identity();
    id.repository_id = RepositoryId(740_002);
    refuses(
        json!({"repository_ids": [740_001]}),
        &id,
        "repository_id",
        Some("740002"),
    );
}

#[test]
fn rule_workflows_refuse_another_calling_workflow() {
    let mut id = identity();
    id.workflow_ref = Some("octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/dev".into());
    refuses(
        json!({"workflows": [".github/workflows/release.yml"]}),
        &id,
        "workflow_ref",
        Some(".github/workflows/ci.yml"),
    );
    id.workflow_ref = None;
    refuses(
        json!({"workflows": [".github/workflows/release.yml"]}),
        &id,
        "workflow_ref",
        None,
    );
}

#[test]
fn rule_job_workflows_refuse_another_reusable_workflow_or_ref() {
    refuses(
        json!({"job_workflows": ["app-org/upload/.github/workflows/upload.yml@refs/tags/v1"]}),
        &identity(),
        "job_workflow_ref",
        Some("app-org/upload/.github/workflows/upload.yml@refs/tags/v2"),
    );
}

#[test]
fn rule_job_workflows_pinned_to_a_commit_refuse_another_commit() {
    // Shown in the form of the entries: path@sha.
    refuses(
        json!({"job_workflows": [format!("app-org/upload/.github/workflows/upload.yml@{OTHER_SHA}")]}),
        &identity(),
        "job_workflow_ref",
        Some(&format!(
            "app-org/upload/.github/workflows/upload.yml@{JOB_SHA}"
        )),
    );
    // The sha alone is not enough: the path must match too.
    let pinned = json!({"job_workflows": [format!("app-org/upload/.github/workflows/upload.yml@{JOB_SHA}")]});
    let mut id = identity();
    id.job_workflow_ref = Some("evil/upload/.github/workflows/upload.yml@refs/tags/v2".into());
    refuses(
        pinned.clone(),
        &id,
        "job_workflow_ref",
        Some(&format!(
            "evil/upload/.github/workflows/upload.yml@{JOB_SHA}"
        )),
    );
    let mut id = identity();
    id.job_workflow_sha = None;
    refuses(
        pinned,
        &id,
        "job_workflow_ref",
        Some("app-org/upload/.github/workflows/upload.yml@refs/tags/v2"),
    );
}

#[test]
fn rule_refs_refuse_another_ref() {
    let mut id = identity();
    id.git_ref = Some("refs/heads/dev".into());
    let rule = rule(json!({"refs": ["refs/heads/main"]}));
    assert_eq!(
        serde_json::to_value(rule.mismatches(&id)).unwrap(),
        json!([{"field": "ref", "expected": ["refs/heads/main"], "actual": "refs/heads/dev"}]),
        "the shape a refusal carries"
    );
}

#[test]
fn rule_ref_protected_refuses_an_unprotected_or_unknown_ref() {
    let mut id = identity();
    id.ref_protected = Some(false);
    refuses(
        json!({"ref_protected": true}),
        &id,
        "ref_protected",
        Some("false"),
    );
    id.ref_protected = None;
    refuses(json!({"ref_protected": true}), &id, "ref_protected", None);
    refuses(json!({"ref_protected": false}), &id, "ref_protected", None);
}

#[test]
fn rule_environments_refuse_another_or_no_environment() {
    let mut id = identity();
    refuses(
        json!({"environments": ["staging"]}),
        &id,
        "environment",
        Some("production"),
    );
    id.environment = None;
    refuses(
        json!({"environments": ["production"]}),
        &id,
        "environment",
        None,
    );
}

#[test]
fn rule_events_refuse_another_event() {
    refuses(
        json!({"events": ["push"]}),
        &identity(),
        "event_name",
        Some("release"),
    );
}

#[test]
fn rule_runner_environments_refuse_another_runner() {
    let mut id = identity();
    id.runner_environment = Some("self-hosted".into());
    refuses(
        json!({"runner_environments": ["github-hosted"]}),
        &id,
        "runner_environment",
        Some("self-hosted"),
    );
}

#[test]
fn rule_claims_refuse_another_value_or_a_missing_claim() {
    refuses(
        json!({"claims": {"repo_property_team": "security"}}),
        &identity(),
        "repo_property_team",
        Some("infra"),
    );
    refuses(
        json!({"claims": {"repo_property_tier": "1"}}),
        &identity(),
        "repo_property_tier",
        None,
    );
}

#[test]
fn rule_an_identity_lacking_a_required_claim_matches_no_rule() {
    // As pending and GITHUB_TOKEN identities are: no ref, workflow, environment, runner.
    let bare: RunIdentity = serde_json::from_value(json!({
        "issuer": "https://api.github.com",
        "repository": "octo-org/octo-repo",
        "repository_id": 740_001,
        "repository_owner_id": 650_001,
        "run_id": 30,
        "sha": "a".repeat(40),
    }))
    .unwrap();
    for (fields, _) in field_cases() {
        let ids_only = fields.get("repository_owner_ids").is_some()
            || fields.get("repository_ids").is_some()
            || fields.get("name").is_some()
            || fields.pointer("/claims/repository_owner_id").is_some();
        let matched = rule(fields.clone()).mismatches(&bare).is_empty();
        if !ids_only {
            assert!(!matched, "{fields}");
        }
    }
}

#[test]
fn rule_a_claim_taken_unverified_satisfies_no_rule() {
    let mut id = identity();
    id.unverified = vec!["repository_id".into()];
    refuses(
        json!({"repository_ids": [740_001]}),
        &id,
        "repository_id",
        None,
    );
}

#[test]
fn rule_sub_is_never_compared() {
    let sub = rule(json!({"claims": {"sub": "repo:octo-org/octo-repo:ref:refs/heads/main"}}));
    let err = sub.validate().unwrap_err();
    assert_eq!(err.field, "claims");
}

#[test]
fn an_empty_layer_adds_no_constraint_and_a_non_empty_one_does() {
    let id = identity();
    assert_eq!(evaluate(&[], &id), LayerOutcome::Unconstrained);
    assert!(evaluate(&[], &id).allows());
    let refusing = [rule(
        json!({"name": "main only", "refs": ["refs/heads/main"]}),
    )];
    let outcome = evaluate(&refusing, &id);
    assert!(!outcome.allows());
    assert!(
        matches!(outcome, LayerOutcome::Refused { ref nearest } if nearest.name == "main only")
    );
}

#[test]
fn the_first_matching_rule_is_reported() {
    let layer = [
        rule(json!({"name": "a", "events": ["push"]})),
        rule(json!({"name": "b", "events": ["release"]})),
        rule(json!({"name": "c", "events": ["release"]})),
    ];
    assert_eq!(
        evaluate(&layer, &identity()),
        LayerOutcome::Matched {
            index: 1,
            name: "b".into()
        }
    );
}

#[test]
fn rule_a_refusal_names_the_nearest_rule_first_on_a_tie() {
    let layer = [
        rule(json!({"name": "two off", "events": ["push"], "refs": ["refs/heads/main"]})),
        rule(json!({"name": "one off", "events": ["push"]})),
        rule(json!({"name": "also one off", "environments": ["staging"]})),
    ];
    let LayerOutcome::Refused { nearest } = evaluate(&layer, &identity()) else {
        panic!("refused")
    };
    assert_eq!((nearest.index, nearest.name.as_str()), (1, "one off"));
    assert!(!nearest.matched);
    assert_eq!(nearest.mismatches.len(), 1);

    let reports = explain(&layer, &identity());
    assert_eq!(
        reports
            .iter()
            .map(|r| r.mismatches.len())
            .collect::<Vec<_>>(),
        vec![2, 1, 1]
    );
    assert!(reports.iter().all(|r| !r.matched));
}

#[test]
fn both_layers_must_be_satisfied() {
    let id = identity();
    let app = [rule(
        json!({"name": "app", "runner_environments": ["github-hosted"]}),
    )];
    let repo_ok = [rule(
        json!({"name": "repo", "environments": ["production"]}),
    )];
    let repo_no = [rule(json!({"name": "repo", "environments": ["staging"]}))];
    let none: [TrustRule; 0] = [];

    let cases: [(&[TrustRule], &[TrustRule], Option<Layer>); 6] = [
        (&app, &repo_ok, None),
        (&app, &none, None),
        (&none, &repo_ok, None),
        (&none, &none, None),
        (&app, &repo_no, Some(Layer::Repository)),
        (&repo_no, &app, Some(Layer::App)),
    ];
    for (app_layer, repo_layer, refused_by) in cases {
        let verdict = evaluate_all(
            &[(Layer::App, app_layer), (Layer::Repository, repo_layer)],
            &id,
        );
        assert_eq!(verdict.allowed(), refused_by.is_none());
        assert_eq!(verdict.refusal().map(|(layer, _)| layer), refused_by);
    }
    assert_eq!(
        serde_json::to_value(Layer::Repository).unwrap(),
        json!("repository")
    );
}

#[test]
fn rule_unknown_fields_are_refused() {
    for bad in [
        json!({"ref": ["refs/heads/main"]}),
        json!({"workflow": [".github/workflows/a.yml"]}),
        json!({"repository_owner_ids": [1], "extra": true}),
    ] {
        assert!(
            serde_json::from_value::<TrustRule>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn rules_serialize_only_the_fields_they_set() {
    let r = rule(json!({"name": "n", "refs": ["refs/heads/main"], "ref_protected": false}));
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"name": "n", "refs": ["refs/heads/main"], "ref_protected": false})
    );
    assert_eq!(
        r,
        TrustRule {
            name: "n".into(),
            refs: Some(strings(&["refs/heads/main"])),
            ref_protected: Some(false),
            ..TrustRule::default()
        }
    );
    let ids = rule(json!({"repository_owner_ids": [1], "repository_ids": ["2"]}));
    assert_eq!(ids.repository_owner_ids, Some(vec![OwnerId(1)]));
    assert_eq!(ids.repository_ids, Some(vec![RepositoryId(2)]));
}

#[test]
fn rule_bounds_are_checked_and_name_the_field() {
    let long = "refs/".to_owned() + &"x".repeat(MAX_PATTERN_BYTES);
    let many: Vec<String> = (0..=MAX_ENTRIES)
        .map(|i| format!("refs/heads/b{i}"))
        .collect();
    let many_claims: BTreeMap<String, String> = (0..=MAX_ENTRIES)
        .map(|i| (format!("c{i}"), "v".into()))
        .collect();
    let cases: Vec<(serde_json::Value, &str, FieldProblem)> = vec![
        (json!({"refs": []}), "refs", FieldProblem::EmptyList),
        (
            json!({"repository_ids": []}),
            "repository_ids",
            FieldProblem::EmptyList,
        ),
        (json!({"claims": {}}), "claims", FieldProblem::EmptyList),
        (
            json!({"refs": many}),
            "refs",
            FieldProblem::TooManyEntries { max: MAX_ENTRIES },
        ),
        (
            json!({"claims": many_claims}),
            "claims",
            FieldProblem::TooManyEntries { max: MAX_ENTRIES },
        ),
        (
            json!({"refs": [long]}),
            "refs",
            FieldProblem::TooLong {
                max: MAX_PATTERN_BYTES,
            },
        ),
        (json!({"events": [""]}), "events", FieldProblem::EmptyEntry),
        (
            json!({"name": "n".repeat(129)}),
            "name",
            FieldProblem::TooLong { max: 128 },
        ),
    ];
    for (fields, field, problem) in cases {
        let err = rule(fields.clone()).validate().unwrap_err();
        assert_eq!((err.field, err.problem), (field, problem), "{fields}");
    }
    // Entries not of their field's form.
    let invalid: &[(serde_json::Value, &str)] = &[
        (json!({"refs": ["main"]}), "refs"),
        (json!({"refs": ["refs/heads/***"]}), "refs"),
        (json!({"refs": ["refs/heads/a\nb"]}), "refs"),
        (
            json!({"workflows": [".github/workflows/a.yml@refs/heads/main"]}),
            "workflows",
        ),
        (
            json!({"job_workflows": ["app-org/upload/.github/workflows/upload.yml"]}),
            "job_workflows",
        ),
        (
            json!({"job_workflows": ["upload.yml@refs/tags/v1"]}),
            "job_workflows",
        ),
        (
            json!({"job_workflows": ["app-org/upload/.github/workflows/upload.yml@"]}),
            "job_workflows",
        ),
        (
            json!({"job_workflows": ["app-org/upload/.github/workflows/upload.yml@v1"]}),
            "job_workflows",
        ),
        (
            json!({"job_workflows": [format!("a/b/c.yml@{}", JOB_SHA.to_uppercase())]}),
            "job_workflows",
        ),
        (json!({"environments": ["prod*"]}), "environments"),
        (json!({"events": ["pu*"]}), "events"),
        (json!({"runner_environments": ["*"]}), "runner_environments"),
        (json!({"claims": {"sub": "x"}}), "claims"),
    ];
    for (fields, field) in invalid {
        let err = rule(fields.clone()).validate().unwrap_err();
        assert_eq!(err.field, *field, "{fields}");
        assert!(
            matches!(err.problem, FieldProblem::Invalid { .. }),
            "{fields}: {err}"
        );
    }
    // A layer: its size, and the first rule that breaks a bound, by index and name.
    let ok = rule(json!({"events": ["push"]}));
    assert_eq!(
        validate_layer(&vec![ok.clone(); MAX_RULES_PER_LAYER]),
        Ok(())
    );
    assert_eq!(
        validate_layer(&vec![ok.clone(); MAX_RULES_PER_LAYER + 1]),
        Err(RuleError::TooManyRules {
            count: MAX_RULES_PER_LAYER + 1,
            max: MAX_RULES_PER_LAYER
        })
    );
    let bad = rule(json!({"name": "bad", "refs": ["main"]}));
    let err = validate_layer(&[ok, bad]).unwrap_err();
    assert!(
        matches!(&err, RuleError::InRule { index: 1, name, error } if name == "bad" && error.field == "refs"),
        "{err}"
    );
    assert!(err.to_string().contains("refs"), "{err}");
}
