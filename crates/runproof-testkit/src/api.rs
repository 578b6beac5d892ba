//! The fake GitHub REST API for Apps: installations, installation access tokens,
//! `GET /installation/repositories`, `GET /repos/{owner}/{repo}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::http::{Refusal, api_route, github_error, insert_header, refusal};
use crate::shapes::{InstallationShape, installation_permissions, repository_json, rfc3339};
use crate::state::{ACCESS_TOKEN_TTL, Grant, Installation, Shared};

/// Route keys for [`crate::FakeGithub::api_requests`].
pub(crate) const ROUTE_REPO_INSTALLATION: &str = "repo_installation";
pub(crate) const ROUTE_ACCESS_TOKENS: &str = "access_tokens";
pub(crate) const ROUTE_INSTALLATION_REPOSITORIES: &str = "installation_repositories";
pub(crate) const ROUTE_REPOSITORY: &str = "repository";

const DOCS_REPO_INSTALLATION: &str = "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app";
const DOCS_ACCESS_TOKENS: &str =
    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";
const DOCS_REPOSITORY: &str = "https://docs.github.com/rest/repos/repos#get-a-repository";
const DOCS_INSTALLATION_REPOSITORIES: &str = "https://docs.github.com/rest/apps/installations#list-repositories-accessible-to-the-app-installation";

/// The REST routes, to be merged into the fake's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/repos/{owner}/{repo}/installation", get(repo_installation))
        .route(
            "/app/installations/{id}/access_tokens",
            post(create_access_token),
        )
        .route("/installation/repositories", get(installation_repositories))
        .route("/repos/{owner}/{repo}", get(repository))
}

/// A fresh `ghs_` token: 36 random alphanumerics, like GitHub's installation tokens.
pub(crate) fn new_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 36];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Unreachable in practice; uuids are random enough for a fake.
        let fallback = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        bytes.copy_from_slice(fallback.as_bytes().get(..36).unwrap_or(&[b'0'; 36]));
    }
    let token: String = bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect();
    format!("ghs_{token}")
}

async fn repo_installation(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    api_route(&shared, ROUTE_REPO_INSTALLATION, &headers, |api, ctx| {
        let app_id = match api.authenticate_app(&headers, ctx.now) {
            Ok(id) => id,
            Err(refusal) => return refusal.into_response(),
        };
        let full_name = format!("{owner}/{repo}");
        let found = api.installations.iter().find(|(_, inst)| {
            inst.repositories
                .iter()
                .any(|r| r.full_name.eq_ignore_ascii_case(&full_name))
        });
        match found {
            Some((&id, inst)) => axum::Json(
                InstallationShape {
                    api: &ctx.api_url,
                    id,
                    account_login: &inst.account_login,
                    account_id: inst.account_id,
                    app_id,
                    created_at: inst.created_at,
                    suspended_at: inst.suspended_at,
                }
                .to_json(),
            )
            .into_response(),
            None => github_error(StatusCode::NOT_FOUND, "Not Found", DOCS_REPO_INSTALLATION),
        }
    })
}

/// Which repositories an access-token request narrows to; `None` means all.
fn requested_repositories(body: &[u8], inst: &Installation) -> Result<Option<Vec<u64>>, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            DOCS_ACCESS_TOKENS,
        ));
    };
    let inaccessible = || {
        refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
            DOCS_ACCESS_TOKENS,
        )
    };
    let mut ids = Vec::new();
    let mut narrowed = false;
    if let Some(list) = request.get("repository_ids").and_then(Value::as_array) {
        narrowed = true;
        for id in list {
            let id = id.as_u64().ok_or_else(inaccessible)?;
            if !inst.repositories.iter().any(|r| r.id == id) {
                return Err(inaccessible());
            }
            ids.push(id);
        }
    }
    if let Some(list) = request.get("repositories").and_then(Value::as_array) {
        narrowed = true;
        for name in list {
            let name = name.as_str().ok_or_else(inaccessible)?;
            let repo = inst
                .repositories
                .iter()
                .find(|r| {
                    let (_, short) = crate::shapes::split_full_name(&r.full_name);
                    short.eq_ignore_ascii_case(name) || r.full_name.eq_ignore_ascii_case(name)
                })
                .ok_or_else(inaccessible)?;
            ids.push(repo.id);
        }
    }
    Ok(narrowed.then_some(ids))
}

async fn create_access_token(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api_route(&shared, ROUTE_ACCESS_TOKENS, &headers, |api, ctx| {
        if let Err(refusal) = api.authenticate_app(&headers, ctx.now) {
            return refusal.into_response();
        }
        let Some((installation_id, inst)) = id
            .parse::<u64>()
            .ok()
            .and_then(|id| Some((id, api.installations.get(&id)?.clone())))
        else {
            return github_error(StatusCode::NOT_FOUND, "Not Found", DOCS_ACCESS_TOKENS);
        };
        if inst.suspended_at.is_some() {
            return github_error(
                StatusCode::FORBIDDEN,
                "This installation has been suspended",
                DOCS_ACCESS_TOKENS,
            );
        }
        let repository_ids = match requested_repositories(&body, &inst) {
            Ok(ids) => ids,
            Err(refusal) => return refusal.into_response(),
        };
        let token = new_token();
        let expires_at = ctx
            .now
            .saturating_add(api.access_token_ttl.unwrap_or(ACCESS_TOKEN_TTL));
        let mut answer = json!({
            "token": token,
            "expires_at": rfc3339(expires_at),
            "permissions": installation_permissions(),
            "repository_selection": "selected",
        });
        if let (Some(ids), Value::Object(map)) = (&repository_ids, &mut answer) {
            let repositories: Vec<Value> = inst
                .repositories
                .iter()
                .filter(|r| ids.contains(&r.id))
                .map(|r| repository_json(&ctx.api_url, r.id, &r.full_name, inst.account_id))
                .collect();
            map.insert("repositories".to_owned(), Value::Array(repositories));
        }
        api.tokens.insert(
            token,
            Grant::Installation {
                installation_id,
                repository_ids,
                expires_at,
            },
        );
        api.access_tokens_issued = api.access_tokens_issued.saturating_add(1);
        (StatusCode::CREATED, axum::Json(answer)).into_response()
    })
}

fn query_number(query: &HashMap<String, String>, key: &str, default: usize) -> usize {
    query
        .get(key)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default)
}

async fn installation_repositories(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    api_route(
        &shared,
        ROUTE_INSTALLATION_REPOSITORIES,
        &headers,
        |api, ctx| {
            let visible = match api.authenticate_token(&headers, ctx.now) {
                Ok(visible) => visible,
                Err(refusal) => return refusal.into_response(),
            };
            if ["per_page", "page"]
                .iter()
                .any(|key| query.get(*key).is_some_and(|v| v.parse::<usize>().is_err()))
            {
                return github_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid request.",
                    DOCS_INSTALLATION_REPOSITORIES,
                );
            }
            let per_page = query_number(&query, "per_page", 30).clamp(1, 100);
            let page = query_number(&query, "page", 1).max(1);
            let total = visible.len();
            let repositories: Vec<Value> = visible
                .iter()
                .skip(per_page.saturating_mul(page - 1))
                .take(per_page)
                .map(|r| repository_json(&ctx.api_url, r.id, &r.full_name, r.owner_id))
                .collect();
            let last = total.div_ceil(per_page).max(1);
            let mut response = axum::Json(json!({
                "total_count": total,
                "repository_selection": "selected",
                "repositories": repositories,
            }))
            .into_response();
            if page < last {
                let url = |p: usize| {
                    format!(
                        "<{}/installation/repositories?per_page={per_page}&page={p}>",
                        ctx.api_url
                    )
                };
                let link = format!(
                    "{}; rel=\"next\", {}; rel=\"last\"",
                    url(page + 1),
                    url(last)
                );
                insert_header(response.headers_mut(), "link", link);
            }
            response
        },
    )
}

async fn repository(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    api_route(&shared, ROUTE_REPOSITORY, &headers, |api, ctx| {
        let visible = match api.authenticate_token(&headers, ctx.now) {
            Ok(visible) => visible,
            Err(refusal) => return refusal.into_response(),
        };
        let full_name = format!("{owner}/{repo}");
        match visible
            .iter()
            .find(|r| r.full_name.eq_ignore_ascii_case(&full_name))
        {
            Some(r) => axum::Json(repository_json(
                &ctx.api_url,
                r.id,
                &r.full_name,
                r.owner_id,
            ))
            .into_response(),
            None => github_error(StatusCode::NOT_FOUND, "Not Found", DOCS_REPOSITORY),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_look_like_github_installation_tokens() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 40);
        assert!(a.starts_with("ghs_"));
        assert!(a[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
