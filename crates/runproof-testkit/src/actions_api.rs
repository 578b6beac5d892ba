//! The fake REST routes of the webhook mode's active confirmation and workflow check:
//! repositories and their installation by id, workflow runs, and file contents (at a
//! commit, or on the default branch by repository id).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::http::{api_route, github_error};
use crate::shapes::{InstallationShape, repository_json};
use crate::state::Shared;

/// Route keys for [`crate::FakeGithub::api_requests`].
pub(crate) const ROUTE_REPOSITORY_BY_ID: &str = "repository_by_id";
pub(crate) const ROUTE_REPOSITORY_INSTALLATION_BY_ID: &str = "repository_installation_by_id";
pub(crate) const ROUTE_WORKFLOW_RUN: &str = "workflow_run";
pub(crate) const ROUTE_CONTENTS: &str = "contents";
pub(crate) const ROUTE_CONTENTS_BY_ID: &str = "contents_by_id";

const DOCS_RUN: &str = "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run";
const DOCS_CONTENTS: &str = "https://docs.github.com/rest/repos/contents#get-repository-content";
const DOCS_REPOSITORY: &str = "https://docs.github.com/rest/repos/repos#get-a-repository";
const DOCS_INSTALLATION: &str = "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app";

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/repositories/{id}", get(repository_by_id))
        .route(
            "/repositories/{id}/installation",
            get(repository_installation_by_id),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}",
            get(workflow_run),
        )
        .route("/repos/{owner}/{repo}/contents/{*path}", get(contents))
        .route("/repositories/{id}/contents/{*path}", get(contents_by_id))
}

fn not_found(docs: &str) -> Response {
    github_error(StatusCode::NOT_FOUND, "Not Found", docs)
}

async fn repository_by_id(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    api_route(&shared, ROUTE_REPOSITORY_BY_ID, &headers, |api, ctx| {
        let visible = match api.authenticate_token(&headers, ctx.now) {
            Ok(v) => v,
            Err(refusal) => return refusal.into_response(),
        };
        let id = id.parse::<u64>().ok();
        match visible.iter().find(|r| Some(r.id) == id) {
            Some(r) => axum::Json(repository_json(
                &ctx.api_url,
                r.id,
                &r.full_name,
                r.owner_id,
            ))
            .into_response(),
            None => not_found(DOCS_REPOSITORY),
        }
    })
}

async fn repository_installation_by_id(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    api_route(
        &shared,
        ROUTE_REPOSITORY_INSTALLATION_BY_ID,
        &headers,
        |api, ctx| {
            let app_id = match api.authenticate_app(&headers, ctx.now) {
                Ok(id) => id,
                Err(refusal) => return refusal.into_response(),
            };
            let id = id.parse::<u64>().ok();
            let found = api
                .installations
                .iter()
                .find(|(_, inst)| inst.repositories.iter().any(|r| Some(r.id) == id));
            match found {
                Some((&installation_id, inst)) => axum::Json(
                    InstallationShape {
                        api: &ctx.api_url,
                        id: installation_id,
                        account_login: &inst.account_login,
                        account_id: inst.account_id,
                        app_id,
                        created_at: inst.created_at,
                        suspended_at: inst.suspended_at,
                    }
                    .to_json(),
                )
                .into_response(),
                None => not_found(DOCS_INSTALLATION),
            }
        },
    )
}

async fn workflow_run(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo, run_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    api_route(&shared, ROUTE_WORKFLOW_RUN, &headers, |api, ctx| {
        let visible = match api.authenticate_token(&headers, ctx.now) {
            Ok(v) => v,
            Err(refusal) => return refusal.into_response(),
        };
        let full_name = format!("{owner}/{repo}");
        if !visible
            .iter()
            .any(|r| r.full_name.eq_ignore_ascii_case(&full_name))
        {
            return not_found(DOCS_RUN);
        }
        let key = (
            full_name.to_ascii_lowercase(),
            run_id.parse::<u64>().unwrap_or(0),
        );
        match api.runs.get(&key) {
            Some(run) => axum::Json(run.clone()).into_response(),
            None => not_found(DOCS_RUN),
        }
    })
}

async fn contents(
    State(shared): State<Arc<Shared>>,
    Path((owner, repo, path)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    api_route(&shared, ROUTE_CONTENTS, &headers, |api, ctx| {
        let visible = match api.authenticate_token(&headers, ctx.now) {
            Ok(v) => v,
            Err(refusal) => return refusal.into_response(),
        };
        let full_name = format!("{owner}/{repo}");
        let Some(repository) = visible
            .iter()
            .find(|r| r.full_name.eq_ignore_ascii_case(&full_name))
        else {
            return not_found(DOCS_CONTENTS);
        };
        let git_ref = query.get("ref").cloned().unwrap_or_default();
        let key = (
            repository.full_name.to_ascii_lowercase(),
            path.clone(),
            git_ref.clone(),
        );
        let Some(text) = api.files.get(&key) else {
            return not_found(DOCS_CONTENTS);
        };
        axum::Json(content_json(
            &ctx.api_url,
            &repository.full_name,
            &path,
            &git_ref,
            text,
        ))
        .into_response()
    })
}

/// `GET /repositories/{id}/contents/{path}`: without `ref`, the file on the default
/// branch ([`crate::FakeGithub::set_default_branch_file`]); with `ref`, the file at that
/// commit ([`crate::FakeGithub::set_file`]), as GitHub serves them.
async fn contents_by_id(
    State(shared): State<Arc<Shared>>,
    Path((id, path)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    api_route(&shared, ROUTE_CONTENTS_BY_ID, &headers, |api, ctx| {
        let visible = match api.authenticate_token(&headers, ctx.now) {
            Ok(v) => v,
            Err(refusal) => return refusal.into_response(),
        };
        let id = id.parse::<u64>().ok();
        let Some(repository) = visible.iter().find(|r| Some(r.id) == id) else {
            return not_found(DOCS_CONTENTS);
        };
        let (text, git_ref) = match query.get("ref") {
            Some(git_ref) => (
                api.files.get(&(
                    repository.full_name.to_ascii_lowercase(),
                    path.clone(),
                    git_ref.clone(),
                )),
                git_ref.clone(),
            ),
            None => (
                api.default_branch_files.get(&(repository.id, path.clone())),
                "main".to_owned(),
            ),
        };
        let Some(text) = text else {
            return not_found(DOCS_CONTENTS);
        };
        axum::Json(content_json(
            &ctx.api_url,
            &repository.full_name,
            &path,
            &git_ref,
            text,
        ))
        .into_response()
    })
}

/// A file as the contents API returns it: base64 with a line break every 60 characters,
/// the git blob sha, and GitHub's links.
fn content_json(api: &str, full_name: &str, path: &str, git_ref: &str, text: &str) -> Value {
    let encoded = STANDARD.encode(text.as_bytes());
    let mut content = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % 60 == 0 {
            content.push('\n');
        }
        content.push(c);
    }
    content.push('\n');
    // The blob id git computes: SHA-1 over "blob {len}\0{bytes}"; here SHA-256, cut to
    // 40 digits, which looks the same and needs no SHA-1.
    let mut hasher = sha2::Sha256::new();
    hasher.update(format!("blob {}\0", text.len()).as_bytes());
    hasher.update(text.as_bytes());
    let sha = hex::encode(hasher.finalize());
    let sha = sha.get(..40).unwrap_or(&sha).to_owned();
    let name = path.rsplit('/').next().unwrap_or(path);
    let url = format!("{api}/repos/{full_name}/contents/{path}?ref={git_ref}");
    let html_url = format!("https://github.com/{full_name}/blob/{git_ref}/{path}");
    let git_url = format!("{api}/repos/{full_name}/git/blobs/{sha}");
    json!({
        "type": "file",
        "encoding": "base64",
        "size": text.len(),
        "name": name,
        "path": path,
        "content": content,
        "sha": sha,
        "url": url,
        "git_url": git_url,
        "html_url": html_url,
        "download_url": format!("https://raw.githubusercontent.com/{full_name}/{git_ref}/{path}"),
        "_links": {"self": url, "git": git_url, "html": html_url},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_base64_in_lines_of_60() {
        let text = "x".repeat(100);
        let v = content_json(
            "http://api",
            "o/r",
            ".github/workflows/ci.yml",
            "abc",
            &text,
        );
        let content = v["content"].as_str().unwrap_or_default();
        let lines: Vec<&str> = content.lines().collect();
        assert_eq!(lines[0].len(), 60);
        let joined: String = lines.concat();
        assert_eq!(STANDARD.decode(joined).unwrap_or_default(), text.as_bytes());
        assert_eq!(v["name"], "ci.yml");
        assert_eq!(v["sha"].as_str().map(str::len), Some(40));
    }
}
