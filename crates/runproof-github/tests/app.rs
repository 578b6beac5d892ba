//! The App's credentials against the fake GitHub, which checks every App JWT.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use runproof_core::{InstallationId, RepositoryId, Secret};
use runproof_github::{GithubApp, GithubError, RestClient, installation_repositories};
use runproof_testkit::FakeGithub;

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
async fn app_jwt_is_reused_and_accepted_by_the_fake() {
    let (gh, app) = app().await;
    let a = app.app_jwt().unwrap();
    let b = app.app_jwt().unwrap();
    assert_eq!(a.expose(), b.expose(), "reused until close to expiry");
    let inst = app
        .repository_installation("octo-org/octo-repo")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inst.id, InstallationId(900));
    assert_eq!(
        gh.last_app_jwt_error(),
        None,
        "iss, lifetime and signature were accepted"
    );
    assert_eq!(
        app.repository_installation("octo-org/absent")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn installation_tokens_are_cached_until_close_to_expiry() {
    let (gh, app) = app().await;
    for _ in 0..3 {
        let repo = app
            .repository("octo-org/octo-repo", InstallationId(900))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(repo.id, RepositoryId(1_296_269));
    }
    assert_eq!(gh.access_tokens_issued(), 1);
}

#[tokio::test]
async fn rate_limits_are_waited_out_not_hammered() {
    let (gh, app) = app().await;
    gh.set_rate_limited(Some(120));
    let err = app
        .repository_installation("octo-org/octo-repo")
        .await
        .unwrap_err();
    assert!(
        matches!(err, GithubError::RateLimited { retry_after } if (100..=120).contains(&retry_after)),
        "{err:?}"
    );
    let before = gh.api_requests("repo_installation");
    let err = app
        .repository_installation("octo-org/octo-repo")
        .await
        .unwrap_err();
    assert!(matches!(err, GithubError::RateLimited { .. }));
    assert_eq!(
        gh.api_requests("repo_installation"),
        before,
        "no call while the limit lasts"
    );
}

#[tokio::test]
async fn outages_are_retried_then_reported_unavailable() {
    let (gh, app) = app().await;
    gh.set_api_outage(true);
    let err = app
        .repository_installation("octo-org/octo-repo")
        .await
        .unwrap_err();
    assert!(matches!(err, GithubError::Unavailable(_)), "{err:?}");
    assert_eq!(
        gh.api_requests("repo_installation"),
        3,
        "the first try and two retries"
    );
}

#[tokio::test]
async fn a_github_token_is_checked_with_github() {
    let (gh, _app) = app().await;
    let rest = RestClient::new(&gh.base_url(), Duration::from_secs(5)).unwrap();
    let token = gh.issue_github_token(&[(1_296_269, "octo-org/octo-repo")], 9919);
    let seen = installation_repositories(&rest, &Secret::new(token.clone()))
        .await
        .unwrap();
    assert_eq!(seen.total_count, 1);
    assert_eq!(seen.repositories[0].id, RepositoryId(1_296_269));
    gh.revoke_token(&token);
    let err = installation_repositories(&rest, &Secret::new(token))
        .await
        .unwrap_err();
    assert_eq!(err, GithubError::Unauthorized);
}

#[tokio::test]
async fn an_unusable_key_is_a_configuration_error() {
    let err = GithubApp::new(
        "https://api.github.com",
        1,
        &Secret::new("not a key".into()),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(matches!(err, GithubError::Config(_)));
    let err = GithubApp::new(
        "http://api.example.com",
        1,
        &Secret::new(String::new()),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(matches!(err, GithubError::Config(_)));
}
