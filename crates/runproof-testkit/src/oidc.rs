//! The fake issuer's routes: OIDC discovery, the JWKS and the Actions token-request
//! endpoint, answering from [`Shared`]'s keys and run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::key::jwks_json;
use crate::state::Shared;

/// The claims GitHub's discovery document lists, in its order.
const CLAIMS_SUPPORTED: &[&str] = &[
    "sub",
    "aud",
    "exp",
    "iat",
    "iss",
    "jti",
    "nbf",
    "ref",
    "sha",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "enterprise",
    "enterprise_id",
    "run_id",
    "run_number",
    "run_attempt",
    "actor",
    "actor_id",
    "workflow",
    "workflow_ref",
    "workflow_sha",
    "head_ref",
    "base_ref",
    "event_name",
    "ref_type",
    "ref_protected",
    "environment",
    "environment_node_id",
    "job_workflow_ref",
    "job_workflow_sha",
    "repository_visibility",
    "runner_environment",
    "issuer_scope",
    "check_run_id",
];

/// The issuer's routes, to be merged into the fake's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks", get(jwks))
        .route("/_apis/token", get(token_request))
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
        "issuer unavailable",
    )
        .into_response()
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.discovery_requests.fetch_add(1, Ordering::SeqCst);
    if shared.is_down() {
        return unavailable();
    }
    let issuer = shared.issuer();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks"),
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": CLAIMS_SUPPORTED,
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
    if shared.is_down() {
        return unavailable();
    }
    let (published, override_body) = {
        let state = shared.lock();
        (state.published(), state.jwks_override.clone())
    };
    match override_body {
        Some(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        None => axum::Json(jwks_json(&published.iter().collect::<Vec<_>>())).into_response(),
    }
}

async fn token_request(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !bearer_matches(&headers, &shared.request_token) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    let (key, run) = {
        let state = shared.lock();
        (state.current.clone(), state.run.clone())
    };
    let audience = match query.get("audience") {
        Some(aud) if !aud.is_empty() => aud.clone(),
        // GitHub's default audience when the client names none.
        _ => format!("https://github.com/{}", run.repository_owner),
    };
    let claims = run.claims(&shared.issuer(), &audience, shared.now());
    match key.sign_claims(&Value::Object(claims)) {
        Ok(jwt) => axum::Json(json!({ "value": jwt })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "fake GitHub could not sign a token");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, token)) => scheme.eq_ignore_ascii_case("bearer") && token.trim() == expected,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "t"));
        for (value, ok) in [
            ("bearer t", true),
            ("Bearer t", true),
            ("BEARER t", true),
            ("Bearer u", false),
            ("Basic t", false),
            ("t", false),
            ("Bearer ", false),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer_matches(&headers, "t"), ok, "{value}");
        }
    }
}
