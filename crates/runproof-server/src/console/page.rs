//! What every console handler shares: its error answer and rendering a page.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::view;

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
