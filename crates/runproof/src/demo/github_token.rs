//! The demo's rows in the `github_token` mode, through the real client.

use runproof_client::{Auth, ClientError, GithubTokenAuth, UploadOptions, Uploaded, upload_all};
use runproof_testkit::{FakeGithub, RunSpec};

use super::env::{Row, error_chain};

/// Step 5: the run's `GITHUB_TOKEN` accepted; a token that sees two repositories (the
/// default run's and `elsewhere`) and a revoked one refused.
pub(crate) async fn rows(
    gh: &FakeGithub,
    opts: &UploadOptions,
    elsewhere: &RunSpec,
    rows: &mut Vec<Row>,
) {
    let run = gh.run();
    let gt = gh.issue_github_token(
        &[(run.repository_id, &run.repository)],
        run.repository_owner_id,
    );
    let gt_auth = |token: &str| {
        Auth::GithubToken(GithubTokenAuth {
            token: token.to_owned(),
            repository: run.repository.clone(),
            run: format!("{}/{}/{}", run.repository_id, run.run_id, run.run_attempt),
            sha: run.sha.clone(),
        })
    };
    let one = UploadOptions {
        attempts: 1,
        ..opts.clone()
    };
    let got = match upload_all(&one, &gt_auth(&gt)).await {
        Ok(u) => u
            .first()
            .map_or("none".into(), |u| format!("201 {}", u.status)),
        Err(e) => format!("error: {}", error_chain(&e)),
    };
    rows.push(Row {
        request: "github_token mode: the run's GITHUB_TOKEN".into(),
        expected: "201 verified".into(),
        got,
    });
    let two = gh.issue_github_token(
        &[
            (run.repository_id, &run.repository),
            (elsewhere.repository_id, &elsewhere.repository),
        ],
        run.repository_owner_id,
    );
    let refused = |r: Result<Vec<Uploaded>, ClientError>| match r {
        Ok(_) => "accepted".to_owned(),
        Err(e) => e.refused().map_or_else(
            || format!("error: {}", error_chain(&e)),
            |r| format!("{} {}", r.status, r.code),
        ),
    };
    rows.push(Row {
        request: "github_token mode: a token that sees two repositories".into(),
        expected: "403 policy_denied".into(),
        got: refused(upload_all(&one, &gt_auth(&two)).await),
    });
    gh.revoke_token(&gt);
    rows.push(Row {
        request: "github_token mode: the token after the run ended".into(),
        expected: "401 invalid_github_token".into(),
        got: refused(upload_all(&one, &gt_auth(&gt)).await),
    });
}
