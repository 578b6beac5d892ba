//! Recorded GitHub REST responses (PyGithub's and an ExVCR cassette, read in place) are
//! served on loopback and read through the client's own calls and types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use runproof_core::{InstallationId, OwnerId, RepositoryId, Secret};
use runproof_github::types::{AccessToken, Installation, Repository};
use runproof_github::{Credential, GithubError, RestClient, installation_repositories};
use serde_json::Value;

fn dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/realworld/rest_responses");
    assert!(d.is_dir(), "{} is missing", d.display());
    Some(d)
}

/// (method, path with query) → (status, body)
type Recorded = HashMap<(String, String), (u16, String)>;

fn load(dir: &std::path::Path) -> Recorded {
    let mut map = Recorded::new();
    for entry in std::fs::read_dir(dir.join("pygithub-replaydata/extracted")).unwrap() {
        let v: Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        map.insert(
            (
                v["method"].as_str().unwrap().to_uppercase(),
                v["path"].as_str().unwrap().to_owned(),
            ),
            (
                v["status"].as_u64().unwrap() as u16,
                v["response_body_raw"].as_str().unwrap_or("").to_owned(),
            ),
        );
    }
    for entry in std::fs::read_dir(dir.join("nicolasblanco-github-exvcr")).unwrap() {
        let v: Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        for rec in v.as_array().unwrap() {
            let url = url::Url::parse(rec["request"]["url"].as_str().unwrap()).unwrap();
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            map.insert(
                (
                    rec["request"]["method"].as_str().unwrap().to_uppercase(),
                    path,
                ),
                (
                    rec["response"]["status_code"].as_u64().unwrap() as u16,
                    rec["response"]["body"].as_str().unwrap().to_owned(),
                ),
            );
        }
    }
    // PyGithub recorded `GET /installation/repositories` without a query; the client asks
    // with `?per_page=2`, and GitHub's answer for these two repositories is the same page.
    // Served at that path only, so a client asking anything else is answered 418.
    let recorded = map
        .remove(&("GET".to_owned(), "/installation/repositories".to_owned()))
        .unwrap();
    map.insert(
        (
            "GET".to_owned(),
            "/installation/repositories?per_page=2".to_owned(),
        ),
        recorded,
    );
    map
}

async fn serve(recorded: Recorded) -> String {
    let recorded = Arc::new(recorded);
    let app = axum::Router::new().fallback(move |req: Request<Body>| {
        let recorded = recorded.clone();
        async move {
            let key = (
                req.method().as_str().to_owned(),
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
            );
            let (status, body) = recorded
                .get(&key)
                .cloned()
                .unwrap_or((418, format!("not recorded: {key:?}")));
            Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .header("content-type", "application/json; charset=utf-8")
                .body(Body::from(body))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn recorded_responses_parse_with_the_clients_types() {
    let Some(dir) = dir() else { return };
    let base = serve(load(&dir)).await;
    let rest = RestClient::new(&base, Duration::from_secs(5)).unwrap();
    let get = reqwest::Method::GET;
    let (x, t) = (Secret::new("x".into()), Secret::new("t".into()));

    let inst: Installation = rest
        .call(
            get.clone(),
            "/repos/ammarmallik/test-runner/installation",
            Credential::App(&x),
        )
        .await
        .unwrap();
    assert_eq!(inst.id, InstallationId(30_614_431));
    assert_eq!(inst.account.as_ref().unwrap().id, OwnerId(29_196_434));
    assert_eq!(inst.suspended_at, None);

    // `/orgs/GithubApp-Test-Org/installation` is recorded twice (200 and 401); the 401 has its own test.
    for path in ["/app/installations/30614487", "/app/installations/241102"] {
        let inst: Installation = rest
            .call(get.clone(), path, Credential::App(&x))
            .await
            .unwrap();
        assert!(inst.account.is_some(), "{path}");
    }

    let token: AccessToken = rest
        .call(
            reqwest::Method::POST,
            "/app/installations/36541767/access_tokens",
            Credential::App(&x),
        )
        .await
        .unwrap();
    assert!(runproof_github::types::parse_timestamp(&token.expires_at).is_some());
    assert!(
        !format!("{token:?}").contains(&token.token),
        "the token is redacted in Debug"
    );

    let repos = installation_repositories(&rest, &Secret::new("t".into()))
        .await
        .unwrap();
    assert_eq!(repos.total_count, 2);
    assert_eq!(repos.repositories.len(), 2);
    let cassette: runproof_github::types::InstallationRepositories = rest
        .call(
            get.clone(),
            "/installation/repositories?per_page=30&page=1",
            Credential::Token(&t),
        )
        .await
        .unwrap();
    assert_eq!(cassette.total_count, 1);

    let repo: Repository = rest
        .call(
            get.clone(),
            "/repos/WorkflowCI/github",
            Credential::Token(&t),
        )
        .await
        .unwrap();
    assert_eq!(repo.id, RepositoryId(132_843_536));
    assert_eq!(repo.full_name, "WorkflowCI/github");

    let not_found = rest
        .call::<Installation>(
            get.clone(),
            "/orgs/GithubApp-Test-Org-404/installation",
            Credential::App(&x),
        )
        .await;
    assert_eq!(not_found.unwrap_err(), GithubError::NotFound);
    let expired = rest
        .call::<Installation>(
            get.clone(),
            "/orgs/GithubApp-Test-Org/installation?expired",
            Credential::App(&x),
        )
        .await;
    assert!(
        matches!(expired.unwrap_err(), GithubError::Unexpected(_)),
        "an unrecorded path is not mistaken for success"
    );
}

#[tokio::test]
async fn recorded_401_for_an_expired_app_jwt_is_unauthorized() {
    let Some(dir) = dir() else { return };
    let raw: Value = serde_json::from_slice(
        &std::fs::read(dir.join("pygithub-replaydata/extracted/GithubIntegration.testGetInstallationWithExpiredJWT.0.json")).unwrap(),
    )
    .unwrap();
    let mut map = Recorded::new();
    map.insert(
        ("GET".into(), "/orgs/x/installation".into()),
        (
            raw["status"].as_u64().unwrap() as u16,
            raw["response_body_raw"].as_str().unwrap().to_owned(),
        ),
    );
    let base = serve(map).await;
    let rest = RestClient::new(&base, Duration::from_secs(5)).unwrap();
    let x = Secret::new("x".into());
    let err = rest
        .call::<Installation>(
            reqwest::Method::GET,
            "/orgs/x/installation",
            Credential::App(&x),
        )
        .await
        .unwrap_err();
    assert_eq!(err, GithubError::Unauthorized);
}
