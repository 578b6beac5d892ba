//! `runproof upload`: the Action side. Gets an OIDC token the way the Actions toolkit
//! does, then streams each file with its `Content-Digest`, retrying with a fresh token
//! and a fresh stream.
//!
//! It runs inside other people's workflows, next to their tokens, so it trusts neither the
//! server nor the workspace:
//! - an audience the server announces is requested only when its host is the server's;
//! - a file is uploaded only when it is a regular file under the base directory, reached
//!   without a symlink, and the file opened is the file checked;
//! - what the server answers is bounded in size, ids must be canonical UUIDs, and every
//!   string it sends is escaped for where it is printed (logs, `$GITHUB_OUTPUT`, the step
//!   summary).

use std::borrow::Cow;
use std::io::IsTerminal as _;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use backon::BackoffBuilder as _;
use futures_util::StreamExt as _;
use runproof_core::digest::format_content_digest;
use runproof_core::name::UploadName;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

/// The most bytes read from any JSON answer of the server or of the runner's token endpoint.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The most characters of a server's string (a problem's `detail`, a `reason`) printed.
const MAX_SHOWN_CHARS: usize = 1000;

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
    /// When they are absent, with the fix: `permissions: id-token: write`.
    pub fn from_env() -> anyhow::Result<Self> {
        let url = std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL")
            .ok()
            .filter(|v| !v.is_empty());
        let token = std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
            .ok()
            .filter(|v| !v.is_empty());
        match (url, token) {
            (Some(request_url), Some(request_token)) => Ok(Self::Actions {
                request_url,
                request_token,
            }),
            _ => bail!(
                "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set, so no OIDC token can be requested.\n\
                 Give the job `permissions: id-token: write` (and `contents: read`) in the workflow.\n\
                 Pull requests from forks never get these variables; use another mode there."
            ),
        }
    }

    /// Requests a fresh token for `audience`.
    ///
    /// # Errors
    /// When the endpoint cannot be reached or answers without a token.
    pub async fn token(&self, http: &reqwest::Client, audience: &str) -> anyhow::Result<String> {
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
            .map_err(|e| anyhow::anyhow!("token request failed: {}", e.without_url()))?;
        let status = resp.status();
        if !status.is_success() {
            bail!("the runner refused the token request with status {status}");
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            value: String,
        }
        let body: TokenResponse = read_json(resp)
            .await
            .context("the token response has no `value`")?;
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
    /// When one is missing, naming it.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!("{name} is not set (it is set on every GitHub Actions runner)")
                })
        };
        Ok(Self {
            run: format!(
                "{}/{}/{}",
                var("GITHUB_REPOSITORY_ID")?,
                var("GITHUB_RUN_ID")?,
                std::env::var("GITHUB_RUN_ATTEMPT")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "1".into())
            ),
            sha: var("GITHUB_SHA")?,
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

/// Files larger than this open a session even alone, so retries outlive the OIDC token.
pub const SESSION_SIZE_THRESHOLD: u64 = 64 * 1024 * 1024;

/// What `upload_all_report` did: the files uploaded, and the error that stopped it.
#[derive(Debug)]
pub struct UploadReport {
    /// Files uploaded, in order.
    pub uploaded: Vec<Uploaded>,
    /// Why it stopped before the last file, if it did.
    pub error: Option<anyhow::Error>,
}

#[derive(Deserialize)]
struct OpenedSession {
    token: String,
}

/// Opens an upload session with a fresh OIDC token. `Ok(None)` when the server has no
/// sessions (an older server): the caller then uses an OIDC token per upload.
///
/// # Errors
/// When the server refuses the token or cannot be reached.
pub async fn open_session(
    http: &reqwest::Client,
    base: &str,
    audience: &str,
    tokens: &TokenSource,
) -> anyhow::Result<Option<SessionToken>> {
    let token = tokens.token(http, audience).await?;
    let resp = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot open a session: {}", e.without_url()))?;
    let status = resp.status();
    if status.as_u16() == 404 {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(Refused::from_response(status.as_u16(), resp).await.into());
    }
    let opened: OpenedSession = read_json(resp).await.context("unexpected session answer")?;
    Ok(Some(SessionToken(opened.token)))
}

/// Refuses plain `http://` to anything but loopback (the credentials are bearer tokens),
/// and a user or password in the URL.
///
/// # Errors
/// When the URL is not acceptable.
pub fn check_server_url(url: &str) -> anyhow::Result<()> {
    let shown = log_safe(url);
    let parsed = url::Url::parse(url).with_context(|| format!("`{shown}` is not a URL"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        bail!("`{shown}`: a URL with a user or password is not accepted");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                bail!("`{shown}`: use https; tokens must not travel in the clear")
            }
        }
        other => bail!("`{shown}`: unsupported scheme `{}`", log_safe(other)),
    }
}

/// An audience that the server announced but that is not the server's own.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server at {} announces the audience `{}`, whose host is not the server's ({}): no token is requested for it. \
     A server may only announce an audience of its own host; if this one is right, pass it explicitly with --audience \
     (the Action's `audience` input)",
    log_safe(.server_url),
    log_safe(.audience),
    log_safe(.server_host)
)]
pub struct ForeignAudience {
    /// The server's URL.
    pub server_url: String,
    /// The server URL's host.
    pub server_host: String,
    /// What the server announced.
    pub audience: String,
}

/// Accepts an audience discovered from the server only when it is a URL whose host is the
/// server URL's host: otherwise a hostile server could have the job's OIDC token minted for
/// another service (a cloud provider's STS) and receive it.
///
/// # Errors
/// [`ForeignAudience`], before any token is requested.
pub fn check_discovered_audience(server_url: &str, audience: &str) -> Result<(), ForeignAudience> {
    let server_host = url::Url::parse(server_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let audience_host = url::Url::parse(audience)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    match audience_host {
        Some(host) if !server_host.is_empty() && host.eq_ignore_ascii_case(&server_host) => Ok(()),
        _ => Err(ForeignAudience {
            server_url: server_url.to_owned(),
            server_host,
            audience: audience.to_owned(),
        }),
    }
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
    /// When one is missing, naming it.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    if name == "GITHUB_TOKEN" {
                        "GITHUB_TOKEN is not set: pass it to the step with `env: GITHUB_TOKEN: ${{ github.token }}`".to_owned()
                    } else {
                        format!("{name} is not set (it is set on every GitHub Actions runner)")
                    }
                })
        };
        Ok(Self {
            token: var("GITHUB_TOKEN")?,
            repository: var("GITHUB_REPOSITORY")?,
            run: format!(
                "{}/{}/{}",
                var("GITHUB_REPOSITORY_ID")?,
                var("GITHUB_RUN_ID")?,
                std::env::var("GITHUB_RUN_ATTEMPT")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| "1".into())
            ),
            sha: var("GITHUB_SHA")?,
        })
    }
}

/// What to upload and where.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// The runproof server's base URL.
    pub url: String,
    /// The audience to request; discovered from `/.well-known/runproof` when `None`, and then
    /// accepted only when its host is the server's.
    pub audience: Option<String>,
    /// The directory that files must be under, and that names are relative to; the working
    /// directory when `None`.
    pub base: Option<PathBuf>,
    /// Files to upload.
    pub files: Vec<PathBuf>,
    /// Attempts per request (discovery, each file), the first included.
    pub attempts: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Show a progress bar (only on a TTY).
    pub progress: bool,
}

/// The server's answer for one file.
#[derive(Debug, Clone, Deserialize)]
pub struct Uploaded {
    /// The upload's id: always a canonical UUID (lowercase, hyphenated), or the answer was
    /// refused.
    #[serde(deserialize_with = "canonical_uuid")]
    pub id: String,
    /// `verified`, `pending`, `rejected` or `expired`: any other answer is refused.
    pub status: String,
    /// The size the server counted.
    pub size: u64,
    /// The SHA-256 the server computed.
    pub sha256: String,
    /// The file's name: the one sent, or the answer was refused.
    pub name: String,
    /// Why it was rejected, if it was.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Reads an id that must be a canonical UUID: anything else (another spelling, a line
/// break, a workflow command) never reaches an output, a log or a URL.
fn canonical_uuid<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    if is_canonical_uuid(&raw) {
        Ok(raw)
    } else {
        Err(serde::de::Error::custom(
            "the id is not a canonical UUID (lowercase, hyphenated)",
        ))
    }
}

/// Whether `s` is a UUID written the canonical way: 36 characters, lowercase hex, hyphens at
/// 8-4-4-4-12.
#[must_use]
pub fn is_canonical_uuid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok_and(|u| u.hyphenated().to_string() == s)
}

/// Whether `status` is one of an upload's statuses: only those are printed.
#[must_use]
pub fn is_known_status(status: &str) -> bool {
    matches!(status, "verified" | "pending" | "rejected" | "expired")
}

/// A refusal by the server: its status and stable code. Its `Display` escapes what the
/// server wrote.
#[derive(Debug, thiserror::Error)]
#[error("{status} {}: {}", log_safe(.code), log_safe(.detail))]
pub struct Refused {
    /// The HTTP status.
    pub status: u16,
    /// The stable `code`, as the server wrote it.
    pub code: String,
    /// The server's explanation, as it wrote it.
    pub detail: String,
}

impl Refused {
    async fn from_response(status: u16, resp: reqwest::Response) -> Self {
        let problem = read_json::<Problem>(resp).await.ok();
        Self {
            status,
            code: problem
                .as_ref()
                .and_then(|p| p.code.clone())
                .unwrap_or_default(),
            detail: problem.and_then(|p| p.detail).unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct Problem {
    code: Option<String>,
    detail: Option<String>,
}

#[derive(Deserialize)]
struct WellKnown {
    audience: String,
}

/// Reads an answer's body, at most [`MAX_ANSWER_BYTES`] of it.
async fn read_bounded(mut resp: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            bail!("the answer is larger than {MAX_ANSWER_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        // serde's message can quote the input: keep its position only.
        anyhow::anyhow!(
            "unexpected answer (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

/// Reads a JSON answer of at most [`MAX_ANSWER_BYTES`].
async fn read_json<T: DeserializeOwned>(resp: reqwest::Response) -> anyhow::Result<T> {
    parse_json(&read_bounded(resp).await?)
}

/// Builds the HTTP client used by uploads.
///
/// # Errors
/// When the TLS backend cannot be set up.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(timeout)
        .user_agent(concat!("runproof/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

/// The delays between attempts: exponential from 500 ms to 30 s, with jitter.
fn retry_delays(attempts: usize) -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .with_max_times(attempts.saturating_sub(1))
        .build()
}

fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)))
}

/// Asks the server which audience to request, retrying a `429`, `408`, `5xx` or an
/// unreachable server like an upload. The answer is not checked here: see
/// [`check_discovered_audience`].
///
/// # Errors
/// When the server cannot be reached after `attempts`, refuses, or answers oddly.
pub async fn discover_audience(
    http: &reqwest::Client,
    base: &str,
    attempts: usize,
) -> anyhow::Result<String> {
    let url = format!("{}/.well-known/runproof", base.trim_end_matches('/'));
    let shown = log_safe(&url).into_owned();
    let mut delays = retry_delays(attempts);
    loop {
        let (error, wait) = match http.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => {
                return Ok(read_json::<WellKnown>(resp)
                    .await
                    .with_context(|| format!("unexpected answer from {shown}"))?
                    .audience);
            }
            Ok(resp) if retryable(resp.status()) => (
                anyhow::anyhow!("{shown} answered {}", resp.status()),
                retry_after(&resp),
            ),
            Ok(resp) => bail!("{shown} answered {}", resp.status()),
            Err(e) => (
                anyhow::anyhow!("cannot reach {shown}: {}", e.without_url()),
                None,
            ),
        };
        match delays.next() {
            Some(delay) => {
                let delay = wait.map_or(delay, |w| w.max(delay));
                eprintln!("{error:#}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            None => return Err(error.context("giving up on the server's audience")),
        }
    }
}

// --- local files -------------------------------------------------------------------------

/// A local file checked for upload: a regular file under the base directory, reached without
/// following any symlink. Every open checks that the file opened is the file checked.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// The path as given, for messages.
    pub path: PathBuf,
    /// The upload name: the path relative to the base directory, `/`-separated.
    pub name: String,
    /// The size when checked.
    pub size: u64,
    /// The base directory joined with the name's segments.
    full: PathBuf,
    /// (device, inode) of the file checked, where the platform has them.
    identity: Option<(u64, u64)>,
}

/// Why a local file is not uploaded. Each names the path (escaped for a log).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileRefused {
    /// A symlink is on the path: symlinks are never followed.
    #[error(
        "{}: {} is a symlink; symlinks are never followed, so nothing outside the base directory can be uploaded through one",
        shown(.path),
        shown(.link)
    )]
    Symlink {
        /// The path as given.
        path: PathBuf,
        /// The symlink.
        link: PathBuf,
    },
    /// The path leads outside the base directory.
    #[error(
        "{}: outside {} (files must be under the base directory: --base, or the working directory)",
        shown(.path),
        shown(.base)
    )]
    Outside {
        /// The path as given.
        path: PathBuf,
        /// The base directory.
        base: PathBuf,
    },
    /// Not a regular file (a directory, a FIFO, a socket, a device).
    #[error("{}: not a regular file (a {kind})", shown(.path))]
    NotRegular {
        /// The path as given.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// Its name relative to the base cannot be an upload name.
    #[error("{}: cannot be named for the server: {reason}", shown(.path))]
    BadName {
        /// The path as given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// What was opened is not what was checked: it was replaced, or a directory on its path
    /// was.
    #[error("{}: changed since it was checked (replaced, or a directory on its path was); not uploaded", shown(.path))]
    Changed {
        /// The path as given.
        path: PathBuf,
    },
    /// It cannot be read.
    #[error("{}: {source}", shown(.path))]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn shown(path: &Path) -> String {
    log_safe(&path.to_string_lossy()).into_owned()
}

fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "device";
        }
    }
    "special file"
}

impl LocalFile {
    /// Checks `path` (relative to the working directory, or absolute) against `base` (an
    /// absolute directory): every component below `base` is looked at without following it,
    /// and must be a directory, the last a regular file.
    ///
    /// # Errors
    /// [`FileRefused`], naming the path.
    pub fn check(base: &Path, path: &Path) -> Result<Self, FileRefused> {
        let io = |source| FileRefused::Io {
            path: path.to_owned(),
            source,
        };
        let cwd = std::env::current_dir().map_err(io)?;
        let base_given = cwd.join(base);
        let base = std::fs::canonicalize(&base_given).map_err(|source| FileRefused::Io {
            path: base_given.clone(),
            source,
        })?;
        let absolute = cwd.join(path);
        let outside = || FileRefused::Outside {
            path: path.to_owned(),
            base: base.clone(),
        };
        let relative = absolute
            .strip_prefix(&base)
            .or_else(|_| absolute.strip_prefix(&base_given))
            .map_err(|_| outside())?;
        let mut full = base.clone();
        let mut segments: Vec<&std::ffi::OsStr> = Vec::new();
        let mut last: Option<std::fs::Metadata> = None;
        for component in relative.components() {
            if let Some(meta) = &last
                && !meta.is_dir()
                && !matches!(component, Component::CurDir)
            {
                return Err(FileRefused::NotRegular {
                    path: path.to_owned(),
                    kind: "path through a file",
                });
            }
            match component {
                Component::CurDir => {}
                Component::ParentDir => {
                    if segments.pop().is_none() {
                        return Err(outside());
                    }
                    full.pop();
                    last = Some(std::fs::symlink_metadata(&full).map_err(io)?);
                }
                Component::Normal(segment) => {
                    segments.push(segment);
                    full.push(segment);
                    let meta = std::fs::symlink_metadata(&full).map_err(io)?;
                    if meta.file_type().is_symlink() {
                        return Err(FileRefused::Symlink {
                            path: path.to_owned(),
                            link: full,
                        });
                    }
                    last = Some(meta);
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside()),
            }
        }
        let meta = match last {
            Some(meta) if !segments.is_empty() => meta,
            _ => {
                return Err(FileRefused::NotRegular {
                    path: path.to_owned(),
                    kind: "directory",
                });
            }
        };
        if !meta.is_file() {
            return Err(FileRefused::NotRegular {
                path: path.to_owned(),
                kind: kind_of(meta.file_type()),
            });
        }
        let mut parts = Vec::with_capacity(segments.len());
        for segment in &segments {
            parts.push(segment.to_str().ok_or_else(|| FileRefused::BadName {
                path: path.to_owned(),
                reason: "it is not valid UTF-8".into(),
            })?);
        }
        let name = parts.join("/");
        UploadName::parse(&name).map_err(|e| FileRefused::BadName {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            path: path.to_owned(),
            name,
            size: meta.len(),
            full,
            identity: identity(&meta),
        })
    }

    /// Opens the file without following a symlink in its last component (and without
    /// blocking on a FIFO), and checks that it is the regular file that was checked.
    ///
    /// # Errors
    /// [`FileRefused`] when it is no longer that file.
    pub fn open(&self) -> Result<std::fs::File, FileRefused> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        }
        let file = options.open(&self.full).map_err(|source| {
            #[cfg(unix)]
            if source.raw_os_error() == Some(libc::ELOOP) {
                return FileRefused::Symlink {
                    path: self.path.clone(),
                    link: self.full.clone(),
                };
            }
            FileRefused::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        let meta = file.metadata().map_err(|source| FileRefused::Io {
            path: self.path.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(FileRefused::NotRegular {
                path: self.path.clone(),
                kind: kind_of(meta.file_type()),
            });
        }
        if identity(&meta) != self.identity {
            return Err(FileRefused::Changed {
                path: self.path.clone(),
            });
        }
        Ok(file)
    }
}

/// Checks every file against `base` (the working directory when `None`), before anything is
/// sent.
///
/// # Errors
/// The first [`FileRefused`].
pub fn check_files(base: Option<&Path>, files: &[PathBuf]) -> Result<Vec<LocalFile>, FileRefused> {
    let base = base.unwrap_or_else(|| Path::new("."));
    files.iter().map(|f| LocalFile::check(base, f)).collect()
}

async fn hash_file(file: &LocalFile) -> anyhow::Result<(u64, [u8; 32])> {
    let mut reader = tokio::fs::File::from_std(file.open()?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok((size, hasher.finalize().into()))
}

// --- uploads -----------------------------------------------------------------------------

enum Attempt {
    Done(Uploaded),
    Retry(anyhow::Error, Option<Duration>),
    Fatal(anyhow::Error),
}

/// Uploads every file, one after another.
///
/// # Errors
/// On the first file that cannot be uploaded after all attempts, or that the server
/// refuses for good (a 4xx other than 429).
pub async fn upload_all(opts: &UploadOptions, auth: &Auth) -> anyhow::Result<Vec<Uploaded>> {
    let report = upload_all_report(opts, auth).await;
    match report.error {
        Some(e) => Err(e),
        None => Ok(report.uploaded),
    }
}

/// Uploads every file, one after another, and reports what was done even on failure.
///
/// Every file is checked first (see [`LocalFile::check`]) and the audience settled, before
/// any token is requested. With an OIDC token source and more than one file (or a file over
/// [`SESSION_SIZE_THRESHOLD`]), it opens an upload session and uses it for every file and
/// every retry; a session that expires midway is replaced once per file.
pub async fn upload_all_report(opts: &UploadOptions, auth: &Auth) -> UploadReport {
    let mut report = UploadReport {
        uploaded: Vec::new(),
        error: None,
    };
    if let Err(e) = upload_into(opts, auth, &mut report.uploaded).await {
        report.error = Some(e);
    }
    report
}

async fn upload_into(
    opts: &UploadOptions,
    auth: &Auth,
    done: &mut Vec<Uploaded>,
) -> anyhow::Result<()> {
    check_server_url(&opts.url)?;
    let files = check_files(opts.base.as_deref(), &opts.files)?;
    let http = http_client(opts.timeout)?;
    let base = opts.url.trim_end_matches('/').to_owned();
    let audience = match (&opts.audience, auth) {
        (Some(a), _) if a.trim().is_empty() => bail!("the audience given is empty"),
        (Some(a), _) => a.clone(),
        (None, Auth::Oidc(_)) => {
            let announced = discover_audience(&http, &base, opts.attempts).await?;
            check_discovered_audience(&opts.url, &announced)?;
            announced
        }
        (None, _) => String::new(),
    };
    let mut current = auth.clone();
    if let Auth::Oidc(tokens) = auth {
        let large = files.iter().any(|f| f.size > SESSION_SIZE_THRESHOLD);
        if (files.len() > 1 || large)
            && let Some(session) = open_session(&http, &base, &audience, tokens).await?
        {
            current = Auth::Session(session);
        }
    }
    for file in &files {
        let mut result = upload_one(&http, &base, &audience, &current, file, opts).await;
        if let (Err(e), Auth::Oidc(tokens), Auth::Session(_)) = (&result, auth, &current) {
            let expired = e
                .downcast_ref::<Refused>()
                .is_some_and(|r| r.code == "token_expired" || r.code == "invalid_session");
            if expired && let Some(session) = open_session(&http, &base, &audience, tokens).await? {
                current = Auth::Session(session);
                result = upload_one(&http, &base, &audience, &current, file, opts).await;
            }
        }
        let uploaded = result?;
        eprintln!(
            "uploaded {} ({} bytes) as {} [{}]",
            log_safe(&file.name),
            uploaded.size,
            uploaded.id,
            uploaded.status
        );
        done.push(uploaded);
    }
    Ok(())
}

async fn upload_one(
    http: &reqwest::Client,
    base: &str,
    audience: &str,
    auth: &Auth,
    file: &LocalFile,
    opts: &UploadOptions,
) -> anyhow::Result<Uploaded> {
    let (size, sha256) = hash_file(file).await?;
    let idempotency_key = uuid::Uuid::new_v4().to_string();
    let mut delays = retry_delays(opts.attempts);
    let shown = log_safe(&file.name).into_owned();
    loop {
        let attempt = attempt_upload(
            http,
            base,
            audience,
            auth,
            file,
            size,
            &sha256,
            &idempotency_key,
            opts,
        )
        .await;
        match attempt {
            Attempt::Done(u) => {
                if u.sha256 != hex::encode(sha256) || u.size != size {
                    bail!("the server recorded different bytes for {shown}");
                }
                if u.name != file.name {
                    bail!("the server recorded another name for {shown}");
                }
                if !is_known_status(&u.status) {
                    bail!("the server answered an unknown status for {shown}");
                }
                return Ok(u);
            }
            Attempt::Fatal(e) => return Err(e),
            Attempt::Retry(e, retry_after) => match delays.next() {
                Some(delay) => {
                    let delay = retry_after.map_or(delay, |r| r.max(delay));
                    eprintln!("upload of {shown} failed ({e:#}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e.context(format!("giving up on {shown}"))),
            },
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn attempt_upload(
    http: &reqwest::Client,
    base: &str,
    audience: &str,
    auth: &Auth,
    file: &LocalFile,
    size: u64,
    sha256: &[u8; 32],
    idempotency_key: &str,
    opts: &UploadOptions,
) -> Attempt {
    let credentials = match auth {
        Auth::Oidc(tokens) => match tokens.token(http, audience).await {
            Ok(t) => vec![("authorization", format!("Bearer {t}"))],
            Err(e) => return Attempt::Retry(e, None),
        },
        Auth::Session(session) => vec![("authorization", format!("Bearer {}", session.0))],
        Auth::GithubToken(g) => vec![
            ("authorization", format!("token {}", g.token)),
            ("x-runproof-repository", g.repository.clone()),
            ("x-runproof-run", g.run.clone()),
            ("x-runproof-sha", g.sha.clone()),
        ],
        Auth::Pending(p) => vec![
            ("x-runproof-run", p.run.clone()),
            ("x-runproof-sha", p.sha.clone()),
        ],
    };
    let opened = match file.open() {
        Ok(f) => tokio::fs::File::from_std(f),
        Err(e) => return Attempt::Fatal(e.into()),
    };
    let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(log_safe(&file.name).into_owned());
        bar
    });
    let progress = bar.clone();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(opened, 256 * 1024).inspect(move |chunk| {
            if let (Some(bar), Ok(chunk)) = (&progress, chunk) {
                bar.inc(chunk.len() as u64);
            }
        });
    let encoded: String = url::form_urlencoded::byte_serialize(file.name.as_bytes()).collect();
    let mut request = http.post(format!("{base}/v1/uploads?name={encoded}"));
    for (name, value) in credentials {
        request = request.header(name, value);
    }
    let result = request
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .header("content-digest", format_content_digest(sha256))
        .header("idempotency-key", idempotency_key)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let resp = match result {
        Ok(r) => r,
        Err(e) => return Attempt::Retry(anyhow::anyhow!("{}", e.without_url()), None),
    };
    let status = resp.status();
    if status.is_success() {
        // A cut answer is retried (the idempotency key makes it the same upload); an answer
        // that arrived whole but cannot be trusted is not.
        return match read_bounded(resp).await {
            Ok(body) => match parse_json::<Uploaded>(&body) {
                Ok(u) => Attempt::Done(u),
                Err(e) => Attempt::Fatal(e.context("the server's answer to the upload is refused")),
            },
            Err(e) => Attempt::Retry(e.context("unreadable answer"), None),
        };
    }
    let wait = retry_after(&resp);
    let refused = Refused::from_response(status.as_u16(), resp).await;
    if retryable(status) {
        Attempt::Retry(refused.into(), wait)
    } else {
        Attempt::Fatal(refused.into())
    }
}

// --- what is printed ---------------------------------------------------------------------

/// `text` made safe for a log line: control characters (line breaks included), Unicode line
/// separators and bidirectional controls become `\u{…}`, a leading `::` (a workflow command)
/// is broken, and the length is bounded.
#[must_use]
pub fn log_safe(text: &str) -> Cow<'_, str> {
    let risky = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    let starts_command = text.trim_start().starts_with("::");
    if !starts_command && !text.chars().any(risky) && text.chars().count() <= MAX_SHOWN_CHARS {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.chars().enumerate() {
        if i >= MAX_SHOWN_CHARS {
            out.push('…');
            break;
        }
        if risky(c) || (starts_command && c == ':' && out.trim_start().is_empty()) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A multi-line message made safe for a log: each line as [`log_safe`] makes it, line breaks
/// kept.
#[must_use]
pub fn log_lines_safe(text: &str) -> String {
    text.split('\n')
        .map(|line| log_safe(line).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` as the content of a Markdown table cell: every ASCII punctuation character
/// backslash-escaped (no cell break, link, image, HTML, emphasis or code span can start), and
/// control characters replaced, so the cell stays one cell of one row.
#[must_use]
pub fn markdown_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars().take(MAX_SHOWN_CHARS) {
        if c.is_ascii_punctuation() {
            out.push('\\');
            out.push(c);
        } else if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.push('\u{fffd}');
        } else {
            out.push(c);
        }
    }
    out
}

/// One `$GITHUB_OUTPUT` entry in the delimiter form (`name<<DELIMITER`), with a random
/// delimiter that the value does not contain, so no value can end the entry early or add
/// another output.
///
/// # Errors
/// When the name is not a plain output name.
pub fn output_entry(name: &str, value: &str) -> anyhow::Result<String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("`{}` is not an output name", log_safe(name));
    }
    // A random UUID cannot be in the value unless the value was made to hold it: then pick
    // another; a few tries are more than enough.
    for _ in 0..8 {
        let delimiter = format!("ghadelimiter_{}", uuid::Uuid::new_v4());
        if !value.contains(&delimiter) {
            return Ok(format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
        }
    }
    bail!("no delimiter found for the output `{name}`")
}

/// Writes `upload-ids` to `$GITHUB_OUTPUT` and a table to `$GITHUB_STEP_SUMMARY`, when set.
///
/// # Errors
/// When either file cannot be appended to.
pub fn write_github_files(uploads: &[Uploaded]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let append = |var: &str, text: &str| -> anyhow::Result<()> {
        if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open ${var}"))?;
            f.write_all(text.as_bytes())?;
        }
        Ok(())
    };
    // Ids were checked as canonical UUIDs when the answers were read; checked again here
    // because this is where an id would do harm.
    let mut ids = Vec::with_capacity(uploads.len());
    for u in uploads {
        if !is_canonical_uuid(&u.id) {
            bail!("an upload id is not a canonical UUID");
        }
        ids.push(u.id.as_str());
    }
    append(
        "GITHUB_OUTPUT",
        &output_entry("upload-ids", &ids.join(","))?,
    )?;
    let mut summary = String::from(
        "### runproof uploads\n\n| file | size | sha256 | id | status |\n|---|---:|---|---|---|\n",
    );
    for u in uploads {
        let sha256: String = u
            .sha256
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(12)
            .collect();
        summary.push_str(&format!(
            "| {} | {} | `{sha256}` | `{}` | {} |\n",
            markdown_cell(&u.name),
            u.size,
            u.id,
            markdown_cell(&u.status)
        ));
    }
    append("GITHUB_STEP_SUMMARY", &summary)
}

// --- pending uploads ---------------------------------------------------------------------

/// Where a pending upload ended up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UploadStatus {
    /// The upload's id: a canonical UUID.
    #[serde(deserialize_with = "canonical_uuid")]
    pub id: String,
    /// `verified`, `pending`, `rejected` or `expired`: any other answer is refused.
    pub status: String,
    /// Why it was rejected or expired, as the server wrote it (escape it to print it).
    #[serde(default)]
    pub reason: Option<String>,
}

impl UploadStatus {
    /// Whether the status is final and not a success.
    #[must_use]
    pub fn failed(&self) -> bool {
        matches!(self.status.as_str(), "rejected" | "expired")
    }
}

/// Polls `GET /v1/uploads/{id}/status` (public) for each upload until none is pending or
/// `timeout` passes, with exponential backoff from `first_delay` up to 30 s. Returns the
/// last status of each.
///
/// # Errors
/// When an id is not a canonical UUID, or the server cannot be reached at the end, or
/// answers oddly.
pub async fn wait_for_outcome(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    timeout: Duration,
    first_delay: Duration,
) -> anyhow::Result<Vec<UploadStatus>> {
    if ids.iter().any(|id| !is_canonical_uuid(id)) {
        bail!("an upload id is not a canonical UUID");
    }
    let base = base.trim_end_matches('/');
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = first_delay.max(Duration::from_millis(50));
    let mut last: Vec<Option<UploadStatus>> = vec![None; ids.len()];
    loop {
        let mut error = None;
        for (id, slot) in ids.iter().zip(last.iter_mut()) {
            if slot.as_ref().is_some_and(|s| s.status != "pending") {
                continue;
            }
            let url = format!("{base}/v1/uploads/{id}/status");
            let shown = log_safe(&url);
            match http.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => {
                    match read_json::<UploadStatus>(resp).await {
                        Ok(s) if s.id == *id && is_known_status(&s.status) => {
                            *slot = Some(s);
                        }
                        Ok(_) => error = Some(anyhow::anyhow!("unexpected status answer")),
                        Err(e) => error = Some(e.context("unexpected status answer")),
                    }
                }
                Ok(resp) => error = Some(anyhow::anyhow!("{shown} answered {}", resp.status())),
                Err(e) => {
                    error = Some(anyhow::anyhow!("cannot reach {shown}: {}", e.without_url()));
                }
            }
        }
        let done = last
            .iter()
            .all(|s| s.as_ref().is_some_and(|s| s.status != "pending"));
        let now = tokio::time::Instant::now();
        if done || now >= deadline {
            if let Some(e) = error.filter(|_| last.iter().any(Option::is_none)) {
                return Err(e);
            }
            return Ok(last
                .into_iter()
                .zip(ids)
                .map(|(s, id)| {
                    s.unwrap_or_else(|| UploadStatus {
                        id: id.clone(),
                        status: "pending".into(),
                        reason: None,
                    })
                })
                .collect());
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_server_url_with_user_info_is_never_loopback() {
        for bad in [
            "http://127.0.0.1:@evil.invalid/",
            "http://127.0.0.1@evil.invalid/",
            "http://localhost:x@evil.invalid",
            "https://user:pass@runproof.example.com",
            "http://localhost.evil.invalid",
            "http://127.0.0.1.evil.invalid",
            "ftp://127.0.0.1/",
        ] {
            assert!(check_server_url(bad).is_err(), "{bad}");
        }
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost/",
            "http://[::1]:1/",
            "https://runproof.example.com",
        ] {
            assert!(check_server_url(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rule_discovered_audience_host_is_the_server_host() {
        let server = "https://runproof.example.com:8443/base";
        for bad in [
            "sts.amazonaws.com",
            "https://sts.amazonaws.com",
            "https://runproof.example.com.evil.invalid",
            "https://evil.invalid/runproof.example.com",
            "https://runproof.example.com@evil.invalid",
            "api://AzureADTokenExchange",
            "",
        ] {
            assert!(
                check_discovered_audience(server, bad).is_err(),
                "{bad:?} must be refused"
            );
        }
        for ok in [
            "https://runproof.example.com",
            "https://RunProof.Example.com/tenant",
            "http://runproof.example.com:1",
        ] {
            assert!(check_discovered_audience(server, ok).is_ok(), "{ok}");
        }
        let err = check_discovered_audience("http://127.0.0.1:1", "sts.amazonaws.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--audience"), "{err}");
    }

    #[test]
    fn rule_ids_are_canonical_uuids_only() {
        assert!(is_canonical_uuid("01900000-0000-7000-8000-000000000001"));
        for bad in [
            "01900000-0000-7000-8000-000000000001\n::warning::injected\nupload-ids=pwned",
            "01900000-0000-7000-8000-00000000000A",
            "{01900000-0000-7000-8000-000000000001}",
            "urn:uuid:01900000-0000-7000-8000-000000000001",
            "01900000000070008000000000000001",
            " 01900000-0000-7000-8000-000000000001",
            "",
        ] {
            assert!(!is_canonical_uuid(bad), "{bad:?}");
        }
        let answer = r#"{"id": "01900000-0000-7000-8000-000000000001\n::warning::x", "status": "verified", "size": 1, "sha256": "00", "name": "a"}"#;
        assert!(serde_json::from_str::<Uploaded>(answer).is_err());
    }

    #[test]
    fn rule_log_lines_cannot_start_a_workflow_command() {
        for hostile in [
            "x\n::warning::injected",
            "::error::pwned",
            "  ::add-mask::x",
            "a\r::set-output name=x::y",
            "\u{1b}[2K::warning::erase",
            "x\u{2028}::warning::y",
        ] {
            let safe = log_safe(hostile);
            assert!(!safe.contains(['\n', '\r', '\u{1b}', '\u{2028}']), "{safe}");
            assert!(!safe.trim_start().starts_with("::"), "{safe}");
        }
        let lines = log_lines_safe("error: one\n::warning::two\nthree");
        assert!(
            lines.lines().all(|l| !l.trim_start().starts_with("::")),
            "{lines}"
        );
        assert_eq!(lines.lines().count(), 3);
        assert_eq!(log_safe("plain text: fine"), "plain text: fine");
        assert!(log_safe(&"x".repeat(5000)).chars().count() <= MAX_SHOWN_CHARS + 1);
    }

    #[test]
    fn rule_markdown_cells_stay_one_cell_of_one_row() {
        let cell = markdown_cell("a|b\n| x | y |\n<img src=x>[link](https://evil)`code`\\|");
        assert!(!cell.contains(['\n', '\r']), "{cell}");
        // Every ASCII punctuation character comes escaped: no pipe, tag, link or code span.
        let mut chars = cell.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                assert!(
                    chars.next().is_some_and(|e| e.is_ascii_punctuation()),
                    "{cell}"
                );
            } else {
                assert!(!c.is_ascii_punctuation(), "unescaped {c:?} in {cell}");
            }
        }
        assert_eq!(markdown_cell("report one"), "report one");
    }

    #[test]
    fn rule_outputs_use_the_delimiter_form() {
        let entry = output_entry("upload-ids", "a\nupload-ids=pwned").unwrap();
        let mut lines = entry.lines();
        let head = lines.next().unwrap();
        let delimiter = head.strip_prefix("upload-ids<<").unwrap();
        assert!(delimiter.starts_with("ghadelimiter_") && delimiter.len() > 20);
        assert_eq!(entry.lines().filter(|l| *l == delimiter).count(), 1);
        assert!(entry.ends_with(&format!("\n{delimiter}\n")));
        assert!(output_entry("a\nb", "x").is_err());
        assert!(output_entry("a=b", "x").is_err());
    }
}
