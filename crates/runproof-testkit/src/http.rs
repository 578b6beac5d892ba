//! What every fake REST route shares: GitHub's error bodies, the `Authorization`
//! credential, and [`api_route`], which counts a request, applies the outage and
//! rate-limit switches and adds GitHub's rate-limit headers.
//!
//! It depends on [`crate::state`] only; the routes depend on it.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::{ApiState, Grant, Shared};

pub(crate) const DOCS_REST: &str = "https://docs.github.com/rest";
const DOCS_RATE_LIMIT: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";
const DOCS_SECONDARY_RATE_LIMIT: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";

/// Per-request context.
pub(crate) struct Ctx {
    pub(crate) api_url: String,
    pub(crate) now: i64,
}

/// An error answer with GitHub's body: `message`, `documentation_url`, `status`.
pub(crate) fn github_error(status: StatusCode, message: &str, docs: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "message": message,
            "documentation_url": docs,
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

/// An error answer, small enough to travel in `Result`s.
pub(crate) struct Refusal {
    status: StatusCode,
    message: &'static str,
    docs: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        github_error(self.status, self.message, self.docs)
    }
}

/// A [`Refusal`] with GitHub's body, for [`github_error`].
pub(crate) fn refusal(status: StatusCode, message: &'static str, docs: &'static str) -> Refusal {
    Refusal {
        status,
        message,
        docs,
    }
}

/// Sets a header; a value that is not a valid header value is left out.
pub(crate) fn insert_header(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// GitHub's answer to a credential past its primary rate limit: `403`,
/// `X-RateLimit-Remaining: 0` and the reset time, no `Retry-After`.
fn primary_rate_limit(now: i64, reset_in: u64) -> Response {
    let mut response = github_error(
        StatusCode::FORBIDDEN,
        "API rate limit exceeded for installation. If you reach out to GitHub Support for help, please include the request ID.",
        DOCS_RATE_LIMIT,
    );
    let headers = response.headers_mut();
    insert_header(headers, "x-ratelimit-limit", 5000);
    insert_header(headers, "x-ratelimit-remaining", 0);
    insert_header(
        headers,
        "x-ratelimit-reset",
        now.saturating_add(i64::try_from(reset_in).unwrap_or(i64::MAX)),
    );
    insert_header(headers, "x-ratelimit-used", 5000);
    insert_header(headers, "x-ratelimit-resource", "core");
    response
}

impl ApiState {
    /// How long the credential of this request is rate limited, if it is: a limited
    /// token, a token of a limited installation, or an App JWT while JWTs are limited.
    fn credential_limit(&self, headers: &HeaderMap) -> Option<u64> {
        let credential = credential(headers, &["token", "bearer"])?;
        if let Some(secs) = self.limited_tokens.get(credential) {
            return Some(*secs);
        }
        match self.tokens.get(credential) {
            Some(Grant::Installation {
                installation_id, ..
            }) => self.limited_installations.get(installation_id).copied(),
            Some(Grant::Fixed { .. }) => None,
            None => self
                .limited_app_jwt
                .filter(|_| credential.split('.').count() == 3),
        }
    }
}

/// Counts the request, applies the outage and rate-limit switches (global, then the
/// request's credential's), runs `handler` under the API lock and adds GitHub's
/// rate-limit headers to what it returns.
pub(crate) fn api_route(
    shared: &Shared,
    route: &str,
    headers: &HeaderMap,
    handler: impl FnOnce(&mut ApiState, &Ctx) -> Response,
) -> Response {
    let ctx = Ctx {
        api_url: shared.issuer(),
        now: shared.now(),
    };
    let mut api = shared.api();
    *api.counters.entry(route.to_owned()).or_default() += 1;
    if api.outage {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"message": "Service Unavailable"})),
        )
            .into_response();
    }
    if let Some(retry_after) = api.rate_limited {
        let mut response = github_error(
            StatusCode::FORBIDDEN,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            DOCS_SECONDARY_RATE_LIMIT,
        );
        let headers = response.headers_mut();
        insert_header(headers, "retry-after", retry_after);
        insert_header(headers, "x-ratelimit-limit", 5000);
        insert_header(headers, "x-ratelimit-remaining", 0);
        insert_header(
            headers,
            "x-ratelimit-reset",
            ctx.now
                .saturating_add(i64::try_from(retry_after).unwrap_or(i64::MAX)),
        );
        insert_header(headers, "x-ratelimit-used", 5000);
        insert_header(headers, "x-ratelimit-resource", "core");
        return response;
    }
    if let Some(reset_in) = api.credential_limit(headers) {
        return primary_rate_limit(ctx.now, reset_in);
    }
    let mut response = handler(&mut api, &ctx);
    drop(api);
    let headers = response.headers_mut();
    insert_header(headers, "x-ratelimit-limit", 5000);
    insert_header(headers, "x-ratelimit-remaining", 4999);
    insert_header(headers, "x-ratelimit-reset", ctx.now.saturating_add(3600));
    insert_header(headers, "x-ratelimit-used", 1);
    insert_header(headers, "x-ratelimit-resource", "core");
    response
}

/// The credential after `scheme` (case-insensitive) in `Authorization`, if any.
pub(crate) fn credential<'h>(headers: &'h HeaderMap, schemes: &[&str]) -> Option<&'h str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let credential = credential.trim();
    (schemes.iter().any(|s| scheme.eq_ignore_ascii_case(s)) && !credential.is_empty())
        .then_some(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_schemes() {
        let mut headers = HeaderMap::new();
        assert_eq!(credential(&headers, &["token"]), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Token abc"));
        assert_eq!(credential(&headers, &["token", "bearer"]), Some("abc"));
        assert_eq!(credential(&headers, &["bearer"]), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(credential(&headers, &["bearer"]), None);
    }
}
