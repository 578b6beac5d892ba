//! The demo's webhook-mode rows: uploads without credentials, held pending until GitHub
//! vouches for their run.

use std::time::{Duration, Instant};

use runproof_client::{Auth, PendingClaim, UploadOptions, upload_all, wait_for_outcome};
use runproof_testkit::{RunSpec, WebhookSender, workflow_run_payload};
use serde_json::{Value, json};

use super::env::{DEV_INSTALLATION, DevEnvironment, Row, error_chain};

fn claim(run: &RunSpec) -> PendingClaim {
    PendingClaim {
        run: format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
        sha: run.sha.clone(),
    }
}

/// POSTs an upload without credentials claiming `run`; returns "STATUS record-status"
/// (or the problem's code) and the record.
async fn post_pending(
    http: &reqwest::Client,
    base: &str,
    run: &RunSpec,
    body: &'static str,
) -> anyhow::Result<(String, Value)> {
    let c = claim(run);
    let resp = http
        .post(format!("{base}/v1/uploads?name=webhook-mode.json"))
        .header("x-runproof-run", &c.run)
        .header("x-runproof-sha", &c.sha)
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    // A problem's `status` is a number: its `code` says what happened.
    let what = body
        .get("code")
        .or_else(|| body.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Ok((format!("{status} {what}"), body))
}

fn id_of(record: &Value) -> String {
    record
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Adds the webhook-mode rows: an upload before its webhook and one after, a run found by
/// active confirmation, a fork run rejected, a wrong sha refused, and a claim of a run
/// never seen that expires.
///
/// # Errors
/// When a request cannot be sent at all.
pub(crate) async fn rows(
    env: &DevEnvironment,
    base: &str,
    opts: &UploadOptions,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let gh = &env.github;
    let template = gh.run();
    let spec = |run_id: u64| RunSpec {
        run_id,
        ..template.clone()
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let sender = WebhookSender::new(
        format!("{base}/v1/github/webhooks"),
        env.webhook_secret.as_bytes(),
    );
    let webhook = |run: &RunSpec| {
        workflow_run_payload(
            "in_progress",
            run,
            Some(DEV_INSTALLATION),
            "in_progress",
            None,
        )
    };

    // A claim with the wrong commit: its run is known, the sha is not the run's, so it
    // can never be approved: refused before its body, nothing stored.
    let known = spec(9_100_005);
    sender.send("workflow_run", &webhook(&known)).await?;
    let wrong_claim = RunSpec {
        sha: "0".repeat(40),
        ..known.clone()
    };
    rows.push(Row {
        request: "webhook mode: a claim with another commit than its known run's".into(),
        expected: "403 policy_denied".into(),
        got: post_pending(&http, base, &wrong_claim, "wrong sha")
            .await?
            .0,
    });

    // A claim of a run that GitHub never vouches for: it stays pending until pending_ttl
    // (1 s in the demo) and the sweeper expire it.
    let unseen = spec(9_100_006);
    let wrong_at = Instant::now();
    let (got, wrong_record) = post_pending(&http, base, &unseen, "unseen run").await?;
    rows.push(Row {
        request: "webhook mode: a claim of a run no webhook describes".into(),
        expected: "202 pending".into(),
        got,
    });

    // An upload before its run's webhook, through the real client.
    let before = spec(9_100_001);
    let one = UploadOptions {
        attempts: 1,
        ..opts.clone()
    };
    let uploaded = upload_all(&one, &Auth::Pending(claim(&before))).await;
    let (got, id) = match &uploaded {
        Ok(u) => u.first().map_or(("none".into(), String::new()), |u| {
            (u.status.clone(), u.id.clone())
        }),
        Err(e) => (format!("error: {}", error_chain(e)), String::new()),
    };
    rows.push(Row {
        request: "webhook mode: `runproof upload --mode pending` before its webhook".into(),
        expected: "pending".into(),
        got,
    });
    let (status, _, _) = sender.send("workflow_run", &webhook(&before)).await?;
    let outcome = wait_for_outcome(
        &http,
        base,
        std::slice::from_ref(&id),
        Duration::from_secs(5),
        Duration::from_millis(20),
    )
    .await?;
    rows.push(Row {
        request: "  then the run's signed workflow_run webhook arrives".into(),
        expected: "200, upload verified".into(),
        got: format!(
            "{status}, upload {}",
            outcome.first().map_or("unknown", |s| s.status.as_str())
        ),
    });

    // An upload after its run's webhook: approved at once.
    let after = spec(9_100_002);
    sender.send("workflow_run", &webhook(&after)).await?;
    rows.push(Row {
        request: "webhook mode: upload after its run's webhook".into(),
        expected: "201 verified".into(),
        got: post_pending(&http, base, &after, "after").await?.0,
    });

    // No webhook at all: runproof asks GitHub's API with an installation token.
    let asked = spec(9_100_003);
    gh.add_workflow_run(&asked, "in_progress", None);
    rows.push(Row {
        request: "webhook mode: run found by active confirmation (REST API)".into(),
        expected: "201 verified".into(),
        got: post_pending(&http, base, &asked, "asked").await?.0,
    });

    // A run of a fork: its head repository is another repository.
    let fork = spec(9_100_004);
    let mut payload = webhook(&fork);
    payload["workflow_run"]["head_repository"]["id"] = json!(7_000_999);
    sender.send("workflow_run", &payload).await?;
    rows.push(Row {
        request: "webhook mode: upload claiming a fork's run".into(),
        expected: "202 rejected".into(),
        got: post_pending(&http, base, &fork, "fork").await?.0,
    });

    // The unseen run's upload, once pending_ttl has passed: the sweeper expires it and
    // deletes its content (and the rejected one's).
    if let Some(left) = Duration::from_millis(2100).checked_sub(wrong_at.elapsed()) {
        tokio::time::sleep(left).await;
    }
    let report = runproof_service::sweep(env.state.service()).await;
    let wrong_id = id_of(&wrong_record);
    let status = wait_for_outcome(
        &http,
        base,
        std::slice::from_ref(&wrong_id),
        Duration::ZERO,
        Duration::from_millis(20),
    )
    .await?;
    rows.push(Row {
        request: "  after pending_ttl, the sweeper runs".into(),
        expected: "expired, 2 blobs deleted".into(),
        got: format!(
            "{}, {} blobs deleted",
            status.first().map_or("unknown", |s| s.status.as_str()),
            report.blobs_deleted
        ),
    });
    let resp = http
        .get(format!("{base}/v1/uploads/{wrong_id}/content"))
        .bearer_auth(&env.api_key)
        .send()
        .await?;
    let code = resp.status().as_u16();
    let problem: Value = resp.json().await.unwrap_or(Value::Null);
    rows.push(Row {
        request: "App reads the expired upload's content".into(),
        expected: "404 not_found".into(),
        got: format!(
            "{code} {}",
            problem.get("code").and_then(Value::as_str).unwrap_or("")
        ),
    });
    Ok(())
}
