//! How an upload proves its run: an OIDC token requested from the runner the way the Actions
//! toolkit does, an upload session opened with one, the run's `GITHUB_TOKEN`, or no
//! credentials at all (a pending claim). Every credential is redacted in `Debug`.

use serde::Deserialize;

use crate::error::ClientError;
use crate::http::{read_json, refusal};

/// Where OIDC tokens come from.
#[derive(Clone)]
pub enum TokenSource {
    /// The runner's token-request endpoint (`ACTIONS_ID_TOKEN_REQUEST_URL`/`_TOKEN`).
    Actions {
        /// `ACTIONS_ID_TOKEN_REQUEST_URL`, which already carries a query string.
        request_url: String,
        /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN`.
        request_token: String,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource::Actions(<redacted>)")
    }
}

impl TokenSource {
    /// Reads the runner's variables.
    ///
    /// # Errors
    /// [`ClientError::NoOidcVariables`] when they are absent, with the fix:
    /// `permissions: id-token: write`.
    pub fn from_env() -> Result<Self, ClientError> {
        match (
            optional_var("ACTIONS_ID_TOKEN_REQUEST_URL"),
            optional_var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
        ) {
            (Some(request_url), Some(request_token)) => Ok(Self::Actions {
                request_url,
                request_token,
            }),
            _ => Err(ClientError::NoOidcVariables),
        }
    }

    /// Requests a fresh token for `audience`.
    ///
    /// # Errors
    /// When the endpoint cannot be reached or answers without a token.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        audience: &str,
    ) -> Result<String, ClientError> {
        let Self::Actions {
            request_url,
            request_token,
        } = self;
        let sep = if request_url.contains('?') { '&' } else { '?' };
        let encoded: String = url::form_urlencoded::byte_serialize(audience.as_bytes()).collect();
        let resp = http
            .get(format!("{request_url}{sep}audience={encoded}"))
            .header("authorization", format!("bearer {request_token}"))
            .header("accept", "application/json; api-version=2.0")
            .send()
            .await
            .map_err(|e| ClientError::TokenRequest(e.without_url()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ClientError::TokenRefused(status));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            value: String,
        }
        let body: TokenResponse = read_json(resp).await.map_err(ClientError::TokenAnswer)?;
        Ok(body.value)
    }
}

/// How uploads are authenticated.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A fresh OIDC token for each attempt (the default, and the strongest).
    Oidc(TokenSource),
    /// The run's `GITHUB_TOKEN` (the `github_token` mode; weaker, see the threat model).
    GithubToken(GithubTokenAuth),
    /// An upload session opened with an OIDC token (`rpst_…`).
    Session(SessionToken),
    /// No credentials: the run is named in headers and the upload is held pending until
    /// GitHub vouches for the run (the `webhook` mode; see the threat model).
    Pending(PendingClaim),
}

/// What the `webhook` mode sends instead of credentials.
#[derive(Debug, Clone)]
pub struct PendingClaim {
    /// `<repository_id>/<run_id>/<run_attempt>`.
    pub run: String,
    /// The commit.
    pub sha: String,
}

impl PendingClaim {
    /// Reads `GITHUB_REPOSITORY_ID`, `GITHUB_RUN_ID`, `GITHUB_RUN_ATTEMPT` (1 when absent)
    /// and `GITHUB_SHA`, as a runner sets them.
    ///
    /// # Errors
    /// [`ClientError::MissingVariable`] when one is missing, naming it.
    pub fn from_env() -> Result<Self, ClientError> {
        Ok(Self {
            run: run_from_env()?,
            sha: runner_var("GITHUB_SHA")?,
        })
    }
}

/// A session token, redacted in `Debug`.
#[derive(Clone)]
pub struct SessionToken(pub String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

#[derive(Deserialize)]
struct OpenedSession {
    token: String,
}

/// Opens an upload session with a fresh OIDC token. `Ok(None)` when the server has no
/// sessions (an older server): the caller then uses an OIDC token per upload.
///
/// # Errors
/// When the server refuses the token ([`ClientError::Refused`]) or cannot be reached.
pub async fn open_session(
    http: &reqwest::Client,
    base: &str,
    audience: &str,
    tokens: &TokenSource,
) -> Result<Option<SessionToken>, ClientError> {
    let token = tokens.token(http, audience).await?;
    let resp = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| ClientError::SessionUnreachable(e.without_url()))?;
    let status = resp.status();
    if status.as_u16() == 404 {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(refusal(status.as_u16(), resp).await.into());
    }
    let opened: OpenedSession = read_json(resp).await.map_err(ClientError::SessionAnswer)?;
    Ok(Some(SessionToken(opened.token)))
}

/// What the `github_token` mode sends.
#[derive(Clone)]
pub struct GithubTokenAuth {
    /// The run's `GITHUB_TOKEN`.
    pub token: String,
    /// `owner/name`.
    pub repository: String,
    /// `<repository_id>/<run_id>/<run_attempt>`.
    pub run: String,
    /// The commit.
    pub sha: String,
}

impl std::fmt::Debug for GithubTokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubTokenAuth")
            .field("token", &"<redacted>")
            .field("repository", &self.repository)
            .field("run", &self.run)
            .field("sha", &self.sha)
            .finish()
    }
}

impl GithubTokenAuth {
    /// Reads `GITHUB_TOKEN`, `GITHUB_REPOSITORY`, `GITHUB_REPOSITORY_ID`, `GITHUB_RUN_ID`,
    /// `GITHUB_RUN_ATTEMPT` and `GITHUB_SHA`, as a runner sets them.
    ///
    /// # Errors
    /// [`ClientError::NoGithubToken`] or [`ClientError::MissingVariable`] when one is
    /// missing, naming it.
    pub fn from_env() -> Result<Self, ClientError> {
        Ok(Self {
            token: optional_var("GITHUB_TOKEN").ok_or(ClientError::NoGithubToken)?,
            repository: runner_var("GITHUB_REPOSITORY")?,
            run: run_from_env()?,
            sha: runner_var("GITHUB_SHA")?,
        })
    }
}

/// A variable's value, `None` when it is unset or empty.
fn optional_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A variable that every runner sets.
fn runner_var(name: &'static str) -> Result<String, ClientError> {
    optional_var(name).ok_or(ClientError::MissingVariable { name })
}

/// `<repository_id>/<run_id>/<run_attempt>` from the runner's variables; the attempt is 1
/// when absent.
fn run_from_env() -> Result<String, ClientError> {
    Ok(format!(
        "{}/{}/{}",
        runner_var("GITHUB_REPOSITORY_ID")?,
        runner_var("GITHUB_RUN_ID")?,
        optional_var("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into())
    ))
}
