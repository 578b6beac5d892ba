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

    // The refresh margin is five minutes. A token with 5.5 minutes left is reused...
    let installation = InstallationId(901);
    gh.add_installation(901, "other-org", 9920, &[(2_000_001, "other-org/repo")]);
    gh.set_access_token_ttl(Some(330));
    let first = app.installation_token(installation).await.unwrap();
    let again = app.installation_token(installation).await.unwrap();
    assert_eq!(first.expose(), again.expose(), "reused before the margin");
    assert_eq!(gh.access_tokens_issued(), 2);
    // ...one with 4.5 minutes left is replaced at each use, and the new one works.
    let installation = InstallationId(902);
    gh.add_installation(902, "third-org", 9921, &[(3_000_001, "third-org/repo")]);
    gh.set_access_token_ttl(Some(270));
    let first = app.installation_token(installation).await.unwrap();
    let second = app.installation_token(installation).await.unwrap();
    assert_ne!(
        first.expose(),
        second.expose(),
        "replaced within the margin"
    );
    assert_eq!(gh.access_tokens_issued(), 4);
    let repo = app
        .repository("third-org/repo", installation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repo.id, RepositoryId(3_000_001));
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

/// An App with two installations on two organizations.
async fn app_with_two_installations() -> (FakeGithub, GithubApp) {
    let (gh, app) = app().await;
    gh.add_installation(901, "other-org", 9920, &[(2_000_001, "other-org/repo")]);
    (gh, app)
}

#[tokio::test]
async fn rule_one_installation_at_its_rate_limit_does_not_hold_back_another() {
    let (gh, app) = app_with_two_installations().await;
    gh.set_installation_rate_limited(900, Some(3000));
    let err = app
        .repository("octo-org/octo-repo", InstallationId(900))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GithubError::RateLimited { retry_after } if retry_after > 60),
        "{err:?}"
    );
    // Right after: installation 901 is served.
    let repo = app
        .repository("other-org/repo", InstallationId(901))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repo.id, RepositoryId(2_000_001));
    // 900 waits its limit out without asking GitHub again.
    let before = gh.api_requests("repository");
    let err = app
        .repository("octo-org/octo-repo", InstallationId(900))
        .await
        .unwrap_err();
    assert!(matches!(err, GithubError::RateLimited { .. }), "{err:?}");
    assert_eq!(gh.api_requests("repository"), before);
}

#[tokio::test]
async fn rule_a_spent_github_token_does_not_hold_back_other_tokens() {
    let (gh, _app) = app().await;
    let rest = RestClient::new(&gh.base_url(), Duration::from_secs(5)).unwrap();
    let spent = gh.issue_github_token(&[(1_296_269, "octo-org/octo-repo")], 9919);
    let fresh = gh.issue_github_token(&[(2_000_001, "other-org/repo")], 9920);
    gh.set_token_rate_limited(&spent, Some(3000));
    let err = installation_repositories(&rest, &Secret::new(spent.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, GithubError::RateLimited { .. }), "{err:?}");
    let seen = installation_repositories(&rest, &Secret::new(fresh))
        .await
        .unwrap();
    assert_eq!(seen.repositories[0].id, RepositoryId(2_000_001));
    let before = gh.api_requests("installation_repositories");
    assert!(matches!(
        installation_repositories(&rest, &Secret::new(spent)).await,
        Err(GithubError::RateLimited { .. })
    ));
    assert_eq!(
        gh.api_requests("installation_repositories"),
        before,
        "the spent token waits"
    );
}

#[tokio::test]
async fn rule_the_app_jwt_limit_holds_back_only_app_jwt_calls() {
    let (gh, app) = app_with_two_installations().await;
    // An installation token is cached before the App's limit is reached.
    app.repository("octo-org/octo-repo", InstallationId(900))
        .await
        .unwrap()
        .unwrap();
    gh.set_app_jwt_rate_limited(Some(3000));
    let err = app
        .repository_installation("octo-org/octo-repo")
        .await
        .unwrap_err();
    assert!(matches!(err, GithubError::RateLimited { .. }), "{err:?}");
    // Calls with the installation token go on.
    let repo = app
        .repository("octo-org/octo-repo", InstallationId(900))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(repo.id, RepositoryId(1_296_269));
    // A new installation token needs the App JWT: held back, without asking GitHub.
    let before = gh.api_requests("access_tokens");
    let err = app
        .repository("other-org/repo", InstallationId(901))
        .await
        .unwrap_err();
    assert!(matches!(err, GithubError::RateLimited { .. }), "{err:?}");
    assert_eq!(gh.api_requests("access_tokens"), before);
    // GITHUB_TOKEN checks are other credentials.
    let token = gh.issue_github_token(&[(1_296_269, "octo-org/octo-repo")], 9919);
    assert!(
        installation_repositories(app.rest(), &Secret::new(token))
            .await
            .is_ok()
    );
}
