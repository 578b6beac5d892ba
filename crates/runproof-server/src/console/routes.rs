//! The console's routes, its security headers and its stylesheet.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::state::AppState;

use super::pages;
use super::session::{self, SignIn};

/// The `Content-Security-Policy` of every console answer: nothing but our own stylesheet
/// and forms posting to ourselves; no script at all, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The console's stylesheet, served from the binary.
const STYLESHEET: &str = include_str!("../../static/console.css");

/// The console's routes, under `/ui/`. `/ui` alone redirects to `/ui/`.
pub(crate) fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    let sign_in = Arc::new(SignIn::new(state.config.ui.sign_in_per_minute));
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route(
            "/ui/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/uploads", get(pages::uploads))
        .route("/ui/uploads/{id}", get(pages::upload))
        .route("/ui/uploads/{id}/content", get(pages::content))
        .route("/ui/refusals", get(pages::refusals))
        .route("/ui/explain", get(pages::explain_page).post(pages::explain))
        .route("/ui/pushes", get(pages::pushes))
        .route("/ui/pushes/{id}/retry", post(pages::retry_push))
        .route("/ui/installations", get(pages::installations))
        .route("/ui/installations/{id}", get(pages::installation))
        .route("/ui/repositories/{id}", get(pages::repository))
        .route("/ui/events", get(pages::events))
        .route("/ui/static/console.css", get(stylesheet))
        .route("/ui/{*rest}", get(pages::not_found))
        .layer(axum::Extension(sign_in))
        .layer(axum::middleware::from_fn(security_headers))
}

/// Adds the console's security headers to every answer, error pages and redirects too.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLESHEET,
    )
        .into_response()
}
