//! The demo's rows of trust rules: the App's rule ([`app_rule`], set in the demo's
//! configuration) admits the runs of one organization; a run in another organization,
//! where the App is installed too, is refused with `403 policy_denied` and the rule's
//! `mismatches`, and the same token, explained through `POST /v1/policy/explain`, says
//! which check failed.

use runproof_core::OwnerId;
use runproof_core::rules::TrustRule;
use runproof_testkit::RunSpec;
use serde_json::{Value, json};

use super::env::{DEMO_AUDIENCE, DevEnvironment, Row};

/// The name of the demo's App rule.
pub(crate) const RULE_NAME: &str = "the demo organization";

/// The installation the demo adds for the other organization.
const OTHER_INSTALLATION: u64 = 3_100_002;

/// The App's rule of the demo: runs of the default run's organization, by id. Every mode
/// knows the owner's id, so every other row of the demo meets it and passes.
pub(crate) fn app_rule() -> TrustRule {
    TrustRule {
        name: RULE_NAME.into(),
        repository_owner_ids: Some(vec![OwnerId(run_owner_id())]),
        ..TrustRule::default()
    }
}

/// The owner id of the fake GitHub's default run.
fn run_owner_id() -> u64 {
    RunSpec::default().repository_owner_id
}

/// `field: expected … got …`, each mismatch of a refusal.
fn shown(mismatches: &Value) -> String {
    let Some(list) = mismatches.as_array() else {
        return "none".into();
    };
    let text: Vec<String> = list
        .iter()
        .map(|m| {
            let expected: Vec<&str> = m["expected"]
                .as_array()
                .map(|e| e.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "{}: expected {} got {}",
                m["field"].as_str().unwrap_or("?"),
                expected.join(", "),
                m["actual"].as_str().unwrap_or("(none)")
            )
        })
        .collect();
    if text.is_empty() {
        "none".into()
    } else {
        text.join("; ")
    }
}

/// Step 5: a run in another organization, where the App is installed, refused by the
/// App's rule; its mismatches; the same token explained.
///
/// # Errors
/// When a token cannot be minted or a request cannot be sent at all.
pub(crate) async fn rows(
    env: &DevEnvironment,
    base: &str,
    http: &reqwest::Client,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let gh = &env.github;
    let run = gh.run();
    let other = RunSpec {
        repository: "other-org/tools".into(),
        repository_id: 7_000_002,
        repository_owner: "other-org".into(),
        repository_owner_id: 6_500_002,
        ..run.clone()
    };
    gh.add_installation(
        OTHER_INSTALLATION,
        &other.repository_owner,
        other.repository_owner_id,
        &[(other.repository_id, &other.repository)],
    );
    gh.set_run(other.clone());
    let token = gh.token(DEMO_AUDIENCE);
    gh.set_run(run);
    let token = token?;

    let resp = http
        .post(format!("{base}/v1/uploads?name=c.txt"))
        .bearer_auth(&token)
        .body(&b"other organization"[..])
        .send()
        .await?;
    let status = resp.status().as_u16();
    let refusal: Value = resp.json().await.unwrap_or(Value::Null);
    rows.push(Row {
        request: format!(
            "upload from {} (App installed, no App rule admits it)",
            other.repository
        ),
        expected: "403 policy_denied".into(),
        got: format!("{status} {}", refusal["code"].as_str().unwrap_or("")),
    });
    let mismatch = format!(
        "repository_owner_id: expected {} got {}",
        run_owner_id(),
        other.repository_owner_id
    );
    rows.push(Row {
        request: format!("its mismatches (nearest rule: {RULE_NAME:?})"),
        expected: mismatch.clone(),
        got: shown(&refusal["mismatches"]),
    });

    let resp = http
        .post(format!("{base}/v1/policy/explain"))
        .bearer_auth(&env.api_key)
        .json(&json!({ "token": token }))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let explained: Value = resp.json().await.unwrap_or(Value::Null);
    let failed: Vec<&str> = explained["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter(|c| c["ok"] != true)
                .filter_map(|c| c["check"].as_str())
                .collect()
        })
        .unwrap_or_default();
    rows.push(Row {
        request: "the same token through POST /v1/policy/explain".into(),
        expected: "200 allowed false, failed: app_rules".into(),
        got: format!(
            "{status} allowed {}, failed: {}",
            explained["allowed"],
            failed.join(", ")
        ),
    });
    let rule = explained["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == RULE_NAME));
    rows.push(Row {
        request: format!("explain's rule {RULE_NAME:?}: matched, mismatches"),
        expected: format!("false, {mismatch}"),
        got: rule.map_or_else(
            || "absent".into(),
            |r| format!("{}, {}", r["matched"], shown(&r["mismatches"])),
        ),
    });
    Ok(())
}
