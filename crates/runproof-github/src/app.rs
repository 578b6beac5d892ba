//! The GitHub App's own credentials: App JWT, installation tokens, and the few REST calls
//! runproof makes with them. Also the `GITHUB_TOKEN` check.
//!
//! Every call has a timeout; rate-limit answers (`Retry-After`, `X-RateLimit-Remaining: 0`
//! with `X-RateLimit-Reset`) become [`GithubError::RateLimited`] and make later calls with
//! the same credential wait out the limit instead of hammering GitHub. GitHub counts limits
//! per credential, and so does the client ([`Credential`]): the App's JWT, each
//! installation, each `GITHUB_TOKEN`. One tenant's spent token never holds back another's
//! calls. Server errors and transport failures are retried twice with a short backoff.
//! Nothing here decides; callers map errors so that an outage is never a wrong accept or a
//! wrong reject.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use runproof_core::{InstallationId, RepositoryId, RunId, Secret};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::types::{
    AccessToken, ContentFile, Installation, InstallationRepositories, Repository, WorkflowRun,
    parse_timestamp,
};

/// How long an App JWT lives (GitHub allows at most 10 minutes).
const APP_JWT_LIFETIME: i64 = 540;
/// How far `iat` is backdated, against clock drift.
const APP_JWT_BACKDATE: i64 = 60;
/// A cached App JWT or installation token is replaced this long before it expires.
const REFRESH_MARGIN_JWT: i64 = 60;
const REFRESH_MARGIN_TOKEN: i64 = 300;
/// The largest response body read from the API.
const MAX_API_BYTES: usize = 1024 * 1024;
/// The most credentials remembered as rate limited at once; past it, the limits that end
/// soonest are forgotten first (a forgotten one costs one more call, answered 403 again).
const MAX_LIMITED_CREDENTIALS: usize = 10_000;

/// Why a call to GitHub's API did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GithubError {
    /// 401: the credential was refused.
    #[error("GitHub refused the credentials")]
    Unauthorized,
    /// 404.
    #[error("not found")]
    NotFound,
    /// 403 that is not a rate limit.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A primary or secondary rate limit; retry after this many seconds.
    #[error("rate limited for {retry_after} s")]
    RateLimited {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// GitHub could not be reached, timed out, or answered 5xx.
    #[error("GitHub is unavailable: {0}")]
    Unavailable(String),
    /// An answer runproof cannot read.
    #[error("unexpected answer from GitHub: {0}")]
    Unexpected(String),
    /// The App's credentials are unusable.
    #[error("App credentials: {0}")]
    Config(String),
    /// An answer longer than runproof reads: a definite answer, not an outage.
    #[error("GitHub's answer is longer than {limit} bytes")]
    TooLarge {
        /// The most bytes read of one answer.
        limit: usize,
    },
}

impl GithubError {
    /// Seconds a client should wait before retrying, for errors that are temporary.
    #[must_use]
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } => Some((*retry_after).max(1)),
            Self::Unavailable(_) => Some(5),
            _ => None,
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The credential a call is made with, which is also the rate limit it counts against.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// The App's JWT: one limit for the App.
    App(&'a Secret),
    /// An installation access token: one limit per installation.
    Installation(InstallationId, &'a Secret),
    /// Any other token, such as a run's `GITHUB_TOKEN`: one limit per token.
    Token(&'a Secret),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::App(_) => f.write_str("App(<redacted>)"),
            Self::Installation(id, _) => write!(f, "Installation({id}, <redacted>)"),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

impl Credential<'_> {
    fn header(&self) -> String {
        match self {
            Self::App(jwt) => format!("Bearer {}", jwt.expose()),
            Self::Installation(_, token) | Self::Token(token) => {
                format!("token {}", token.expose())
            }
        }
    }
}

/// Whose rate limit a call counts against. A token is known by a keyed hash only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LimitKey {
    App,
    Installation(InstallationId),
    Token(u64),
}

/// Until when each credential is rate limited (Unix seconds), bounded.
#[derive(Debug, Default)]
struct RateLimits {
    /// Keys the token hash with this process's random key: the map never holds a token,
    /// and no one outside can aim a token at another's entry.
    hasher: std::collections::hash_map::RandomState,
    until: Mutex<HashMap<LimitKey, i64>>,
}

impl RateLimits {
    fn key(&self, credential: &Credential<'_>) -> LimitKey {
        match credential {
            Credential::App(_) => LimitKey::App,
            Credential::Installation(id, _) => LimitKey::Installation(*id),
            Credential::Token(token) => LimitKey::Token(self.hasher.hash_one(token.expose())),
        }
    }

    fn check(&self, key: LimitKey, now: i64) -> Result<(), GithubError> {
        let until = self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match until.get(&key) {
            Some(&t) if t > now => Err(GithubError::RateLimited {
                retry_after: u64::try_from(t - now).unwrap_or(1),
            }),
            _ => Ok(()),
        }
    }

    fn block(&self, key: LimitKey, secs: u64, now: i64) {
        let mut until = self
            .until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let end = now.saturating_add(i64::try_from(secs).unwrap_or(3600));
        let entry = until.entry(key).or_insert(end);
        *entry = (*entry).max(end);
        if until.len() > MAX_LIMITED_CREDENTIALS {
            until.retain(|_, t| *t > now);
        }
        while until.len() > MAX_LIMITED_CREDENTIALS {
            let Some(soonest) = until.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k) else {
                break;
            };
            until.remove(&soonest);
        }
    }
}

/// A thin REST client for `api_url` with timeouts, size caps, retries and rate-limit
/// memory per credential.
#[derive(Debug)]
pub struct RestClient {
    http: reqwest::Client,
    base: Url,
    /// Per credential, the Unix time before which no call is made with it, after a
    /// rate-limit answer.
    limits: RateLimits,
}

impl RestClient {
    /// A client for `api_url` (`https://api.github.com`, or a loopback fake in tests).
    ///
    /// # Errors
    /// [`GithubError::Config`] when the URL is not acceptable.
    pub fn new(api_url: &str, timeout: Duration) -> Result<Self, GithubError> {
        let base =
            crate::check_issuer_url(api_url).map_err(|e| GithubError::Config(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("runproof/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GithubError::Config(e.to_string()))?;
        Ok(Self {
            http,
            base,
            limits: RateLimits::default(),
        })
    }

    fn url(&self, path: &str) -> Result<Url, GithubError> {
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}")).map_err(|e| GithubError::Config(e.to_string()))
    }

    /// Sends `method path` with `credential` and decodes the JSON answer. Nothing is sent
    /// while that credential is rate limited.
    ///
    /// # Errors
    /// [`GithubError`] for every non-2xx answer or failure.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        credential: Credential<'_>,
    ) -> Result<T, GithubError> {
        let url = self.url(path)?;
        let key = self.limits.key(&credential);
        let mut delays = [Duration::from_millis(200), Duration::from_millis(600)].into_iter();
        loop {
            self.limits.check(key, now())?;
            let result = self
                .once::<T>(method.clone(), url.clone(), &credential, key)
                .await;
            match result {
                Err(GithubError::Unavailable(reason)) => match delays.next() {
                    Some(d) => {
                        tracing::debug!(%reason, "GitHub call failed; retrying");
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(GithubError::Unavailable(reason)),
                },
                Err(GithubError::RateLimited { retry_after }) if retry_after <= 1 => {
                    match delays.next() {
                        Some(_) => {
                            tokio::time::sleep(Duration::from_secs(retry_after.max(1))).await
                        }
                        None => return Err(GithubError::RateLimited { retry_after }),
                    }
                }
                other => return other,
            }
        }
    }

    async fn once<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: Url,
        credential: &Credential<'_>,
        key: LimitKey,
    ) -> Result<T, GithubError> {
        let mut auth = HeaderValue::from_str(&credential.header())
            .map_err(|_| GithubError::Config("credential is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let resp = self
            .http
            .request(method, url)
            .header("authorization", auth)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .send()
            .await
            .map_err(|e| GithubError::Unavailable(e.without_url().to_string()))?;
        let status = resp.status();
        if let Some(retry_after) = rate_limit(status, resp.headers()) {
            self.limits.block(key, retry_after, now());
            return Err(GithubError::RateLimited { retry_after });
        }
        let body = read_capped(resp).await?;
        match status {
            s if s.is_success() => serde_json::from_slice(&body)
                .map_err(|e| GithubError::Unexpected(format!("{s}: {e}"))),
            StatusCode::UNAUTHORIZED => Err(GithubError::Unauthorized),
            StatusCode::NOT_FOUND => Err(GithubError::NotFound),
            StatusCode::FORBIDDEN => Err(GithubError::Forbidden(message(&body))),
            s if s.is_server_error() => Err(GithubError::Unavailable(format!("status {s}"))),
            s => Err(GithubError::Unexpected(format!(
                "status {s}: {}",
                message(&body)
            ))),
        }
    }
}

fn message(body: &[u8]) -> String {
    serde_json::from_slice::<crate::types::ErrorBody>(body)
        .map(|e| e.message)
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// Reads GitHub's rate-limit signals: `Retry-After`, or an exhausted
/// `X-RateLimit-Remaining` with `X-RateLimit-Reset`, on a 403 or 429.
fn rate_limit(status: StatusCode, headers: &HeaderMap) -> Option<u64> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let Some(secs) = num("retry-after") {
        return Some(u64::try_from(secs.max(1)).unwrap_or(1));
    }
    if num("x-ratelimit-remaining") == Some(0) {
        let wait = num("x-ratelimit-reset").map_or(60, |reset| reset - now());
        return Some(u64::try_from(wait.clamp(1, 3600)).unwrap_or(60));
    }
    (status == StatusCode::TOO_MANY_REQUESTS).then_some(60)
}

async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, GithubError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| GithubError::Unavailable(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_API_BYTES {
            return Err(GithubError::TooLarge {
                limit: MAX_API_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[derive(Serialize)]
struct AppClaims {
    iat: i64,
    exp: i64,
    iss: String,
}

/// A cached credential and its expiry.
struct Cached {
    value: Secret,
    expires_at: i64,
}

/// The GitHub App: signs App JWTs and obtains installation tokens, caching both.
pub struct GithubApp {
    rest: RestClient,
    app_id: u64,
    key: EncodingKey,
    jwt: Mutex<Option<Cached>>,
    tokens: Mutex<HashMap<InstallationId, Cached>>,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("app_id", &self.app_id)
            .finish_non_exhaustive()
    }
}

impl GithubApp {
    /// An App with this id and PEM private key (PKCS#1 or PKCS#8), talking to `api_url`.
    ///
    /// # Errors
    /// [`GithubError::Config`] when the key or URL is unusable.
    pub fn new(
        api_url: &str,
        app_id: u64,
        private_key_pem: &Secret,
        timeout: Duration,
    ) -> Result<Self, GithubError> {
        if app_id == 0 {
            return Err(GithubError::Config("app_id must be set".into()));
        }
        let key = EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes())
            .map_err(|_| GithubError::Config("the private key is not an RSA PEM key".into()))?;
        Ok(Self {
            rest: RestClient::new(api_url, timeout)?,
            app_id,
            key,
            jwt: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The REST client, for calls made with other credentials.
    #[must_use]
    pub fn rest(&self) -> &RestClient {
        &self.rest
    }

    /// The App JWT: `iss` = app id, `iat` backdated 60 s, 9 minutes of life; reused until
    /// a minute before it expires.
    ///
    /// # Errors
    /// [`GithubError::Config`] when signing fails.
    pub fn app_jwt(&self) -> Result<Secret, GithubError> {
        let now = now();
        let mut cached = self
            .jwt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = cached
            .as_ref()
            .filter(|c| c.expires_at - now > REFRESH_MARGIN_JWT)
        {
            return Ok(c.value.clone());
        }
        let claims = AppClaims {
            iat: now - APP_JWT_BACKDATE,
            exp: now + APP_JWT_LIFETIME,
            iss: self.app_id.to_string(),
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| GithubError::Config(format!("cannot sign the App JWT: {e}")))?;
        let value = Secret::new(jwt);
        *cached = Some(Cached {
            value: value.clone(),
            expires_at: claims.exp,
        });
        Ok(value)
    }

    /// `GET /repos/{owner}/{repo}/installation` with the App JWT. `None` when the App is
    /// not installed on that repository.
    ///
    /// # Errors
    /// [`GithubError`] other than 404.
    pub async fn repository_installation(
        &self,
        full_name: &str,
    ) -> Result<Option<Installation>, GithubError> {
        let path = format!("/repos/{}/installation", repo_path(full_name)?);
        let jwt = self.app_jwt()?;
        match self
            .rest
            .call::<Installation>(reqwest::Method::GET, &path, Credential::App(&jwt))
            .await
        {
            Ok(i) => Ok(Some(i)),
            Err(GithubError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// An installation access token, cached until five minutes before it expires.
    ///
    /// # Errors
    /// [`GithubError`] when GitHub refuses or is unavailable.
    pub async fn installation_token(&self, id: InstallationId) -> Result<Secret, GithubError> {
        let now = now();
        {
            let tokens = self
                .tokens
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(c) = tokens
                .get(&id)
                .filter(|c| c.expires_at - now > REFRESH_MARGIN_TOKEN)
            {
                return Ok(c.value.clone());
            }
        }
        let jwt = self.app_jwt()?;
        let token: AccessToken = self
            .rest
            .call(
                reqwest::Method::POST,
                &format!("/app/installations/{id}/access_tokens"),
                Credential::App(&jwt),
            )
            .await?;
        let expires_at = parse_timestamp(&token.expires_at)
            .ok_or_else(|| GithubError::Unexpected("expires_at is not RFC 3339".into()))?;
        let value = Secret::new(token.token);
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                id,
                Cached {
                    value: value.clone(),
                    expires_at,
                },
            );
        Ok(value)
    }

    /// `GET /repos/{owner}/{repo}` with an installation token. `None` on 404.
    ///
    /// # Errors
    /// [`GithubError`] other than 404.
    pub async fn repository(
        &self,
        full_name: &str,
        installation: InstallationId,
    ) -> Result<Option<Repository>, GithubError> {
        let token = self.installation_token(installation).await?;
        let path = format!("/repos/{}", repo_path(full_name)?);
        match self
            .rest
            .call::<Repository>(
                reqwest::Method::GET,
                &path,
                Credential::Installation(installation, &token),
            )
            .await
        {
            Ok(r) => Ok(Some(r)),
            Err(GithubError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl GithubApp {
    /// Calls `path` with an installation token; `None` on 404.
    async fn get_as_installation<T: DeserializeOwned>(
        &self,
        path: &str,
        installation: InstallationId,
    ) -> Result<Option<T>, GithubError> {
        let token = self.installation_token(installation).await?;
        match self
            .rest
            .call::<T>(
                reqwest::Method::GET,
                path,
                Credential::Installation(installation, &token),
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(GithubError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /repositories/{id}/installation` with the App JWT: the installation that
    /// covers the repository with this id, found by id (names may have moved). `None`
    /// when the App is not installed there.
    ///
    /// # Errors
    /// [`GithubError`] other than 404.
    pub async fn repository_installation_by_id(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<Installation>, GithubError> {
        let jwt = self.app_jwt()?;
        match self
            .rest
            .call::<Installation>(
                reqwest::Method::GET,
                &format!("/repositories/{repository_id}/installation"),
                Credential::App(&jwt),
            )
            .await
        {
            Ok(i) => Ok(Some(i)),
            Err(GithubError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /repositories/{id}` with an installation token. `None` on 404.
    ///
    /// # Errors
    /// [`GithubError`] other than 404.
    pub async fn repository_by_id(
        &self,
        repository_id: RepositoryId,
        installation: InstallationId,
    ) -> Result<Option<Repository>, GithubError> {
        self.get_as_installation(&format!("/repositories/{repository_id}"), installation)
            .await
    }

    /// `GET /repos/{owner}/{repo}/actions/runs/{run_id}` with an installation token (its
    /// latest attempt). `None` on 404.
    ///
    /// # Errors
    /// [`GithubError`] other than 404.
    pub async fn workflow_run(
        &self,
        full_name: &str,
        run_id: RunId,
        installation: InstallationId,
    ) -> Result<Option<WorkflowRun>, GithubError> {
        let path = format!("/repos/{}/actions/runs/{run_id}", repo_path(full_name)?);
        self.get_as_installation(&path, installation).await
    }

    /// A file's text at a commit: `GET /repos/{owner}/{repo}/contents/{path}?ref={sha}`
    /// with an installation token. `None` when there is no such file (or it is a
    /// directory, or too large for the contents API).
    ///
    /// # Errors
    /// [`GithubError::Config`] for a path or commit that must not reach a URL;
    /// [`GithubError`] other than 404.
    pub async fn file_at(
        &self,
        full_name: &str,
        path: &str,
        sha: &str,
        installation: InstallationId,
    ) -> Result<Option<String>, GithubError> {
        if !crate::workflow::is_safe_path(path) {
            return Err(GithubError::Config(format!("`{path}` is not a safe path")));
        }
        if !runproof_core::claims::is_commit_sha(sha) {
            return Err(GithubError::Config("the ref is not a commit id".into()));
        }
        let url = format!("/repos/{}/contents/{path}?ref={sha}", repo_path(full_name)?);
        let Some(file) = self
            .get_as_installation::<serde_json::Value>(&url, installation)
            .await?
        else {
            return Ok(None);
        };
        // A directory answers with a JSON array.
        let Ok(file) = serde_json::from_value::<ContentFile>(file) else {
            return Ok(None);
        };
        if file.kind != "file" || file.encoding.as_deref() != Some("base64") {
            return Ok(None);
        }
        let packed: String = file
            .content
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(packed)
            .map_err(|e| GithubError::Unexpected(format!("content is not base64: {e}")))?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| GithubError::Unexpected("the file is not UTF-8".into()))
    }
}

/// `GET /installation/repositories` with a run's `GITHUB_TOKEN` (the `github_token` mode).
///
/// # Errors
/// [`GithubError::Unauthorized`] for a bad or expired token; others as they come.
pub async fn installation_repositories(
    rest: &RestClient,
    github_token: &Secret,
) -> Result<InstallationRepositories, GithubError> {
    rest.call(
        reqwest::Method::GET,
        "/installation/repositories?per_page=2",
        Credential::Token(github_token),
    )
    .await
}

/// Checks `owner/name` and returns it for a URL path.
fn repo_path(full_name: &str) -> Result<&str, GithubError> {
    let ok = full_name.split_once('/').is_some_and(|(o, r)| {
        let part = |s: &str| {
            !s.is_empty()
                && s.len() <= 100
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        part(o) && part(r)
    });
    if ok {
        Ok(full_name)
    } else {
        Err(GithubError::Config(format!(
            "`{full_name}` is not owner/name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_checked_before_they_reach_a_url() {
        for ok in ["octo-org/octo-repo", "a/b.c", "A_1/x-y"] {
            assert!(repo_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "octo", "a/b/c", "../x", "a/..", "a/b?x=1", "a/b#f", "/b", "a/", "a/b c",
        ] {
            assert!(repo_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rate_limit_memory_is_bounded_and_forgets_the_soonest_first() {
        let limits = RateLimits::default();
        let now = 1_000;
        limits.block(LimitKey::App, 3600, now);
        for i in 0..u64::try_from(MAX_LIMITED_CREDENTIALS).unwrap() + 50 {
            limits.block(LimitKey::Token(i), 60, now);
        }
        assert!(
            limits.until.lock().unwrap().len() <= MAX_LIMITED_CREDENTIALS,
            "bounded"
        );
        assert!(
            limits.check(LimitKey::App, now).is_err(),
            "the longest stays"
        );
        assert!(
            limits
                .check(LimitKey::Installation(InstallationId(1)), now)
                .is_ok()
        );
        assert!(limits.check(LimitKey::App, now + 3600).is_ok(), "and ends");
    }

    #[test]
    fn tokens_are_remembered_by_a_keyed_hash() {
        let limits = RateLimits::default();
        let (a, b) = (Secret::new("ghs_a".into()), Secret::new("ghs_b".into()));
        let key_a = limits.key(&Credential::Token(&a));
        assert_eq!(key_a, limits.key(&Credential::Token(&a)));
        assert_ne!(key_a, limits.key(&Credential::Token(&b)));
        assert_eq!(
            limits.key(&Credential::Installation(InstallationId(7), &a)),
            LimitKey::Installation(InstallationId(7))
        );
        assert!(!format!("{:?}", Credential::Token(&a)).contains("ghs_a"));
    }

    #[test]
    fn rate_limit_headers_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit(StatusCode::FORBIDDEN, &h), None);
        h.insert("retry-after", HeaderValue::from_static("30"));
        assert_eq!(rate_limit(StatusCode::FORBIDDEN, &h), Some(30));
        assert_eq!(rate_limit(StatusCode::OK, &h), None);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let reset = (now() + 120).to_string();
        h.insert("x-ratelimit-reset", HeaderValue::from_str(&reset).unwrap());
        let wait = rate_limit(StatusCode::FORBIDDEN, &h).unwrap();
        assert!((110..=121).contains(&wait), "{wait}");
        assert_eq!(
            rate_limit(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new()),
            Some(60)
        );
    }
}
