//! Signing in and out of the console, sessions and CSRF tokens.
//!
//! A session is 32 random bytes sent as the `runproof_console` cookie, after a tag of the
//! API key that opened it; the store keeps only the cookie's SHA-256, with an expiry, so
//! every replica sees a sign-out at once, and a session ends when its key is removed from
//! `api_keys`. The CSRF token
//! of a session is derived from its secret token (`SHA-256("runproof-console-csrf\0" ‖
//! token)`): a page in another origin can neither read the cookie nor compute the token.
//! The sign-in form itself is guarded the same way by a short-lived
//! `runproof_console_signin` cookie, so another site cannot sign a browser in with its own
//! key.

use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use cookie::{Cookie, SameSite};
use runproof_core::UnixTime;
use runproof_service::rate::{AddressKey, Windows};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::page::{PageError, html};
use crate::limits::client_ip;
use crate::state::AppState;

/// The session cookie.
const SESSION_COOKIE: &str = "runproof_console";
/// The sign-in form's CSRF cookie.
const SIGN_IN_COOKIE: &str = "runproof_console_signin";
/// How long a sign-in form stays usable.
const SIGN_IN_FORM_SECONDS: i64 = 600;

/// Sign-in attempts per address, in one-minute windows.
pub(crate) struct SignIn {
    attempts: Windows<AddressKey>,
}

impl SignIn {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            attempts: Windows::with_capacity(per_minute.max(1), 10_000),
        }
    }
}

/// A signed-in request: its session's token hash and CSRF token.
pub(crate) struct Session {
    token_hash: String,
    /// The token every state-changing form of this session carries.
    pub(crate) csrf: String,
}

impl Session {
    /// Refuses a form whose CSRF token is not this session's.
    pub(crate) fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        if bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes())) {
            Ok(())
        } else {
            Err(PageError::Status(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or not this session's: reload the page and \
                 try again"
                    .to_owned(),
            ))
        }
    }
}

fn random_token() -> Result<String, PageError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| {
        PageError::Status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no randomness available".to_owned(),
        )
    })?;
    Ok(hex::encode(bytes))
}

/// The tag of an API key in the session cookie: 16 hex digits of a domain-separated
/// SHA-256, so that a session lives only while the key that opened it is configured.
fn key_tag(key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"runproof-console-key\0");
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

/// Whether a session cookie (`<key tag>.<64 hex digits>`) is well formed and was opened
/// with one of `keys`; every key's tag is compared, in constant time.
fn opened_with_a_current_key(keys: &[runproof_core::Secret], cookie: &str) -> bool {
    let Some((tag, token)) = cookie.split_once('.') else {
        return false;
    };
    if tag.len() != 16 || token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    keys.iter().fold(false, |acc, key| {
        bool::from(
            key_tag(key.expose().as_bytes())
                .as_bytes()
                .ct_eq(tag.as_bytes()),
        ) | acc
    })
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn csrf_of(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"runproof-console-csrf\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

/// The value of cookie `name` in the request, if any.
fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A path under `/ui/` to return to after sign-in; anything else becomes `/ui/`, so the
/// sign-in never redirects off the console.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with("/ui/")
                && !p.contains("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control) =>
        {
            p.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

fn set_cookie(response: &mut Response, cookie: &Cookie<'_>) {
    if let Ok(v) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn build_cookie(
    state: &AppState,
    name: &'static str,
    value: String,
    max_age: i64,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/ui/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config.ui.secure_cookies)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build()
}

impl FromRequestParts<Arc<AppState>> for Session {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let next = parts
            .uri
            .path_and_query()
            .map_or("/ui/", |p| p.as_str())
            .to_owned();
        let Some(token) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Err(PageError::SignIn { next });
        };
        if !opened_with_a_current_key(&state.config.api_keys, token) {
            return Err(PageError::SignIn { next });
        }
        let token_hash = token_hash(token);
        let now = state.service.clock().now();
        if !state
            .service
            .store()
            .console_session_valid(&token_hash, now)
            .await?
        {
            return Err(PageError::SignIn { next });
        }
        Ok(Self {
            csrf: csrf_of(token),
            token_hash,
        })
    }
}

#[derive(Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignInPage<'a> {
    csrf: &'a str,
    next: &'a str,
    error: Option<&'a str>,
}

/// Renders the sign-in form with a fresh form token in its cookie.
fn sign_in_form(
    state: &AppState,
    next: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, PageError> {
    let csrf = random_token()?;
    let mut response = html(&SignInPage {
        csrf: &csrf,
        next,
        error,
    })?;
    *response.status_mut() = status;
    set_cookie(
        &mut response,
        &build_cookie(state, SIGN_IN_COOKIE, csrf, SIGN_IN_FORM_SECONDS),
    );
    Ok(response)
}

/// `GET /ui/sign-in`.
pub(crate) async fn sign_in_page(
    State(state): State<Arc<AppState>>,
    Query(query): Query<SignInQuery>,
) -> Result<Response, PageError> {
    sign_in_form(
        &state,
        &local_path(query.next.as_deref()),
        StatusCode::OK,
        None,
    )
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

/// Counts a sign-in attempt by how it ended, in `runproof_console_sign_ins_total`.
fn sign_in_counted(outcome: &'static str) {
    metrics::counter!("runproof_console_sign_ins_total", "outcome" => outcome).increment(1);
}

/// `POST /ui/sign-in`: an API key, compared with every configured key in constant time.
pub(crate) async fn sign_in(
    State(state): State<Arc<AppState>>,
    Extension(limits): Extension<Arc<SignIn>>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, PageError> {
    let next = local_path(form.next.as_deref());
    if let Some(ip) = client_ip(&extensions)
        && let Some(wait) = limits
            .attempts
            .over_limit(AddressKey::from(ip), Instant::now())
    {
        sign_in_counted("rate_limited");
        let mut response = sign_in_form(
            &state,
            &next,
            StatusCode::TOO_MANY_REQUESTS,
            Some("too many sign-in attempts from this address: wait a minute and try again"),
        )?;
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(response);
    }
    let form_token = cookie_value(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if form_token.is_empty() || !bool::from(form_token.as_bytes().ct_eq(form.csrf.as_bytes())) {
        sign_in_counted("bad_form");
        return sign_in_form(
            &state,
            &next,
            StatusCode::FORBIDDEN,
            Some("the sign-in form expired or came from elsewhere: sign in again"),
        );
    }
    let matched = state
        .config
        .api_keys
        .iter()
        .fold(false, |acc, key| key.ct_eq(form.key.as_bytes()) | acc);
    if !matched {
        tracing::info!("console: a sign-in with a wrong key was refused");
        sign_in_counted("wrong_key");
        return sign_in_form(
            &state,
            &next,
            StatusCode::UNAUTHORIZED,
            Some("that is not one of this server's API keys (api_keys)"),
        );
    }
    let token = format!("{}.{}", key_tag(form.key.as_bytes()), random_token()?);
    let now = state.service.clock().now();
    let ttl = i64::try_from(state.config.ui.session_ttl.as_secs()).unwrap_or(i64::MAX);
    state
        .service
        .store()
        .create_console_session(
            &token_hash(&token),
            now,
            UnixTime(now.0.saturating_add(ttl)),
        )
        .await?;
    sign_in_counted("signed_in");
    let mut response = Redirect::to(&next).into_response();
    set_cookie(
        &mut response,
        &build_cookie(&state, SESSION_COOKIE, token, ttl),
    );
    set_cookie(
        &mut response,
        &build_cookie(&state, SIGN_IN_COOKIE, String::new(), 0),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// `POST /ui/sign-out`: ends the session everywhere and clears the cookie.
pub(crate) async fn sign_out(
    State(state): State<Arc<AppState>>,
    session: Session,
    Form(form): Form<CsrfForm>,
) -> Result<Response, PageError> {
    session.check_csrf(&form.csrf)?;
    state
        .service
        .store()
        .delete_console_session(&session.token_hash)
        .await?;
    let mut response = Redirect::to("/ui/sign-in").into_response();
    set_cookie(
        &mut response,
        &build_cookie(&state, SESSION_COOKIE, String::new(), 0),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_sign_in_returns_only_to_console_paths() {
        for (next, expected) in [
            (
                Some("/ui/uploads?status=pending"),
                "/ui/uploads?status=pending",
            ),
            (Some("https://evil.example/"), "/ui/"),
            (Some("//evil.example/ui/"), "/ui/"),
            (Some("/ui//evil.example"), "/ui/"),
            (Some("/ui/\\evil"), "/ui/"),
            (Some("/v1/uploads"), "/ui/"),
            (Some("/ui/\r\nSet-Cookie: x"), "/ui/"),
            (None, "/ui/"),
        ] {
            assert_eq!(local_path(next), expected, "{next:?}");
        }
    }

    #[test]
    fn rule_a_session_ends_when_its_key_is_removed() {
        let a = runproof_core::Secret::new("key-a-0123456789".into());
        let b = runproof_core::Secret::new("key-b-0123456789".into());
        let token = "ab".repeat(32);
        let cookie = format!("{}.{token}", key_tag(b"key-a-0123456789"));
        assert!(opened_with_a_current_key(std::slice::from_ref(&a), &cookie));
        assert!(opened_with_a_current_key(&[b.clone(), a.clone()], &cookie));
        assert!(
            !opened_with_a_current_key(std::slice::from_ref(&b), &cookie),
            "key a was removed"
        );
        assert!(!opened_with_a_current_key(&[], &cookie));
        for bad in [
            token.clone(),
            format!("{}.{}", key_tag(b"key-a-0123456789"), &token[..63]),
            format!("{}.{}", &key_tag(b"key-a-0123456789")[..15], token),
            format!("{}.{}x", key_tag(b"key-a-0123456789"), &token[..63]),
        ] {
            assert!(
                !opened_with_a_current_key(std::slice::from_ref(&a), &bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_from_the_token() {
        let a = csrf_of("a");
        assert_ne!(a, csrf_of("b"));
        assert_ne!(a, token_hash("a"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("runproof_console_signin=x; runproof_console=abc"),
        );
        assert_eq!(cookie_value(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie_value(&headers, SIGN_IN_COOKIE), Some("x"));
        assert_eq!(cookie_value(&headers, "other"), None);
    }
}
