//! The operator console at `/ui/`: server-rendered pages over the service and the store,
//! signed in with an API key.
//!
//! What it shows is mostly written by outsiders (upload names, workflow names, refs,
//! actors, webhook fields), so every page is an askama template that escapes HTML by
//! default, no page carries a script, and every answer has a strict
//! `Content-Security-Policy` (no inline script or style, no framing). Uploaded content is
//! only ever offered as an attachment. State-changing forms carry a CSRF token tied to the
//! session, and the session cookie is `HttpOnly` and `SameSite=Strict`.
//!
//! Threat model in brief: without a session every page redirects to sign-in; sign-in
//! compares the key in constant time and is rate-limited per address; a session is a
//! random token whose hash the store keeps, so signing out ends it on every replica.

pub(crate) mod chart;
mod pages;
mod session;
mod view;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::state::AppState;

pub(crate) use session::SignIn;

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

/// What a console handler answers when it does not render its page.
#[derive(Debug)]
pub(crate) enum PageError {
    /// No session (or an expired one): go and sign in, then come back to this path.
    SignIn { next: String },
    /// A page that says what went wrong, with this status.
    Status(StatusCode, String),
}

impl PageError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::Status(StatusCode::BAD_REQUEST, message.into())
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::Status(StatusCode::NOT_FOUND, message.into())
    }
}

impl From<runproof_store::StoreError> for PageError {
    fn from(e: runproof_store::StoreError) -> Self {
        tracing::warn!(error = %e, "console: the store failed");
        Self::Status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the database is not answering; try again shortly".to_owned(),
        )
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "console: a page did not render");
        Self::Status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be rendered".to_owned(),
        )
    }
}

/// The page a [`PageError::Status`] renders.
#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn { next } => {
                let target = format!("/ui/sign-in?next={}", view::query_escape(&next));
                Redirect::to(&target).into_response()
            }
            Self::Status(status, message) => {
                let page = ErrorPage {
                    status: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or("Error"),
                    message: &message,
                };
                match page.render() {
                    Ok(html) => (status, axum::response::Html(html)).into_response(),
                    Err(_) => (status, message).into_response(),
                }
            }
        }
    }
}

/// Renders `page` as an HTML answer.
pub(crate) fn html(page: &impl Template) -> Result<Response, PageError> {
    Ok(axum::response::Html(page.render()?).into_response())
}
