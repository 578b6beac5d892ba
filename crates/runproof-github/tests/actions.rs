//! Webhook mode's GitHub calls against the fake GitHub: repositories and installations by
//! id, workflow runs, and workflow files through the contents API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use runproof_core::{InstallationId, RepositoryId, RunId, Secret};
use runproof_github::workflow::{WorkflowCheck, check_workflow};
use runproof_github::{GithubApp, GithubError};
use runproof_testkit::{FakeGithub, RunSpec};

const INSTALLATION: InstallationId = InstallationId(900);

async fn app() -> (FakeGithub, GithubApp) {
    let gh = FakeGithub::start().await.unwrap();
    let creds = gh.register_app(31).unwrap();
    gh.add_installation(900, "octo-org", 9919, &[(1_296_269, "octo-org/octo-repo")]);
    let app = GithubApp::new(
        &gh.base_url(),
        31,
        &Secret::new(creds.private_key_pem),
        Duration::from_secs(5),
    )
    .unwrap();
    (gh, app)
}

#[tokio::test]
async fn repositories_and_installations_are_found_by_id() {
    let (gh, app) = app().await;
    let inst = app
        .repository_installation_by_id(RepositoryId(1_296_269))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inst.id, INSTALLATION);
    assert_eq!(
        app.repository_installation_by_id(RepositoryId(5))
            .await
            .unwrap(),
        None
    );
    let repo = app
        .repository_by_id(RepositoryId(1_296_269), INSTALLATION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repo.full_name, "octo-org/octo-repo");
    assert_eq!(repo.owner.id.0, 9919);
    assert_eq!(
        app.repository_by_id(RepositoryId(5), INSTALLATION)
            .await
            .unwrap(),
        None,
        "a repository the installation does not cover is not found"
    );
    assert_eq!(gh.api_requests("repository_by_id"), 2);
}

#[tokio::test]
async fn workflow_runs_are_read_like_github_answers_them() {
    let (gh, app) = app().await;
    let run = RunSpec::default();
    assert_eq!(
        app.workflow_run(&run.repository, RunId(run.run_id), INSTALLATION)
            .await
            .unwrap(),
        None
    );
    gh.add_workflow_run(&run, "in_progress", None);
    let got = app
        .workflow_run(&run.repository, RunId(run.run_id), INSTALLATION)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, RunId(run.run_id));
    assert_eq!(got.run_attempt, Some(1));
    assert_eq!(got.head_sha, run.sha);
    assert_eq!(got.event, "push");
    assert_eq!(got.status.as_deref(), Some("in_progress"));
    assert_eq!(got.path.as_deref(), Some(".github/workflows/ci.yml"));
    assert_eq!(
        got.head_repository.map(|r| r.id),
        Some(RepositoryId(run.repository_id))
    );
    assert!(got.updated_at.is_some());

    gh.set_api_outage(true);
    let err = app
        .workflow_run(&run.repository, RunId(run.run_id), INSTALLATION)
        .await
        .unwrap_err();
    assert!(matches!(err, GithubError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn workflow_files_are_fetched_at_a_commit_and_checked() {
    let (gh, app) = app().await;
    let run = RunSpec::default();
    let caller = "on: push\njobs:\n  call:\n    uses: ./.github/workflows/reuse.yml\n";
    let reuse = "on: workflow_call\njobs:\n  up:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: runproof/upload-action@v1\n";
    gh.set_file(
        &run.repository,
        ".github/workflows/ci.yml",
        &run.sha,
        caller,
    );
    gh.set_file(
        &run.repository,
        ".github/workflows/reuse.yml",
        &run.sha,
        reuse,
    );
    let text = app
        .file_at(
            &run.repository,
            ".github/workflows/ci.yml",
            &run.sha,
            INSTALLATION,
        )
        .await
        .unwrap();
    assert_eq!(text.as_deref(), Some(caller));
    let other = "a".repeat(40);
    assert_eq!(
        app.file_at(
            &run.repository,
            ".github/workflows/ci.yml",
            &other,
            INSTALLATION
        )
        .await
        .unwrap(),
        None,
        "another commit has no such file"
    );
    assert!(matches!(
        app.file_at(&run.repository, "../x", &run.sha, INSTALLATION)
            .await,
        Err(GithubError::Config(_))
    ));
    let outcome = check_workflow(".github/workflows/ci.yml", "runproof/upload-action", |p| {
        let app = &app;
        let (repo, sha) = (run.repository.clone(), run.sha.clone());
        async move { app.file_at(&repo, &p, &sha, INSTALLATION).await }
    })
    .await
    .unwrap();
    assert_eq!(outcome, WorkflowCheck::Uses);
    assert_eq!(gh.api_requests("contents"), 4);
}
