//! `runproof demo`: the whole story once, on embedded defaults, against the fake GitHub.
//!
//! A genuine upload goes through the real client code path; hostile requests follow.
//! Every outcome is checked against what it must be, and the table says so.
//!
//! Modules, each depending only on those listed before it: `env` (the dev environment that
//! `serve --dev` and the tests start too, and the table's row), `banner` (what `serve --dev`
//! prints), `oidc`, `github_token` and `webhook` (the rows of each mode), `rules` (the App's
//! trust rule, set in the demo's configuration, refusing a run it does not admit). This file
//! runs them in order and prints the table.

pub mod banner;
mod env;
mod github_token;
mod oidc;
mod rules;
mod webhook;

use anyhow::Context;
use serde_json::Value;

use env::Row;
pub use env::{DEMO_AUDIENCE, DEV_APP_ID, DEV_INSTALLATION, DevEnvironment, start_dev};

use crate::config;

/// Runs the demo and prints its table. Returns whether every outcome was as expected.
///
/// # Errors
/// When the environment cannot start (not when an outcome is wrong).
pub async fn run() -> anyhow::Result<bool> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    // A short pending_ttl, so that the demo can show an upload expiring.
    let mut defaults = config::load(None)?;
    defaults.webhook_mode.pending_ttl_seconds = 1;
    // The App's trust rule: runs of the demo's organization (every mode's rows meet it).
    defaults.policy.rules = vec![rules::app_rule()];
    let env = start_dev(
        dir.path().to_path_buf(),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(defaults),
    )
    .await?;
    let base = env.server.url();
    let gh = &env.github;
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut rows = Vec::new();

    println!(
        "runproof demo: server {base}, fake GitHub issuer {}",
        gh.issuer()
    );
    println!(
        "audience {DEMO_AUDIENCE}; repository {} (id {})\n",
        gh.run().repository,
        gh.run().repository_id
    );

    // 1. The genuine path, through the real client. 2. The App reads it back.
    let opts = oidc::genuine_rows(&env, &base, &http, dir.path(), &mut rows).await?;
    // 3. Hostile requests.
    oidc::hostile_rows(gh, &base, &http, &mut rows).await?;
    // 4. Installation binding: a repository where the App is not installed.
    let elsewhere = oidc::binding_rows(&env, &base, &http, &mut rows).await?;
    // 5. The github_token mode, through the real client.
    github_token::rows(gh, &opts, &elsewhere, &mut rows).await;
    // 6. The webhook mode: uploads without credentials, approved by GitHub.
    webhook::rows(&env, &base, &opts, &mut rows).await?;
    // 7. The App's trust rule refuses a run of another organization, and says why.
    rules::rows(&env, &base, &http, &mut rows).await?;

    // 8. What was stored: the genuine uploads verified; the others rejected or expired,
    // their content deleted.
    let mut counts = Vec::new();
    for status in ["verified", "pending", "rejected", "expired"] {
        let resp = http
            .get(format!("{base}/v1/uploads?status={status}"))
            .bearer_auth(&env.api_key)
            .send()
            .await?;
        let listed = resp.json::<Value>().await?;
        let count = listed
            .get("uploads")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        counts.push(format!("{count} {status}"));
    }
    rows.push(Row {
        request: "uploads stored after all of the above".into(),
        expected: "7 verified, 0 pending, 1 rejected, 1 expired".into(),
        got: counts.join(", "),
    });

    let width = rows.iter().map(|r| r.request.len()).max().unwrap_or(10);
    let col = rows
        .iter()
        .map(|r| r.expected.len().max(r.got.len()))
        .max()
        .unwrap_or(26)
        .max(26);
    println!(
        "{:<width$}  {:<col$}  {:<col$}  result",
        "request", "expected", "got"
    );
    println!("{}", "-".repeat(width + 2 * col + 12));
    for r in &rows {
        println!(
            "{:<width$}  {:<col$}  {:<col$}  {}",
            r.request,
            r.expected,
            r.got,
            if r.ok() { "ok" } else { "UNEXPECTED" }
        );
    }
    let all_ok = rows.iter().all(Row::ok);
    println!(
        "\n{}",
        if all_ok {
            "every outcome was as expected"
        } else {
            "SOME OUTCOMES WERE NOT AS EXPECTED"
        }
    );
    env.server.stop().await?;
    env.github.shutdown();
    Ok(all_ok)
}
