//! `runproof upload`: the Action side. Gets an OIDC token the way the Actions toolkit
//! does, then streams each file with its `Content-Digest`, retrying with a fresh token
//! and a fresh stream.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use backon::BackoffBuilder as _;
use futures_util::StreamExt as _;
use runproof_core::digest::format_content_digest;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

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
        let body: TokenResponse = resp
            .json()
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
        let problem = resp.json::<Problem>().await.ok();
        return Err(Refused {
            status: status.as_u16(),
            code: problem
                .as_ref()
                .and_then(|p| p.code.clone())
                .unwrap_or_default(),
            detail: problem.and_then(|p| p.detail).unwrap_or_default(),
        }
        .into());
    }
    let opened: OpenedSession = resp.json().await.context("unexpected session answer")?;
    Ok(Some(SessionToken(opened.token)))
}

/// Refuses plain `http://` to anything but loopback: the credentials are bearer tokens.
///
/// # Errors
/// When the URL is not acceptable.
pub fn check_server_url(url: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).with_context(|| format!("`{url}` is not a URL"))?;
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
                bail!("`{url}`: use https; tokens must not travel in the clear")
            }
        }
        other => bail!("`{url}`: unsupported scheme `{other}`"),
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
    /// The audience to request; discovered from `/.well-known/runproof` when `None`.
    pub audience: Option<String>,
    /// Files to upload.
    pub files: Vec<PathBuf>,
    /// Attempts per file, the first included.
    pub attempts: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Show a progress bar (only on a TTY).
    pub progress: bool,
}

/// The server's answer for one file.
#[derive(Debug, Clone, Deserialize)]
pub struct Uploaded {
    /// The upload's id.
    pub id: String,
    /// `verified` or `pending`.
    pub status: String,
    /// The size the server counted.
    pub size: u64,
    /// The SHA-256 the server computed.
    pub sha256: String,
    /// The file's name.
    pub name: String,
    /// Why it was rejected, if it was.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A refusal by the server: its status and stable code.
#[derive(Debug, thiserror::Error)]
#[error("{status} {code}: {detail}")]
pub struct Refused {
    /// The HTTP status.
    pub status: u16,
    /// The stable `code`.
    pub code: String,
    /// The server's explanation.
    pub detail: String,
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

/// Asks the server which audience to request.
///
/// # Errors
/// When the server cannot be reached or answers oddly.
pub async fn discover_audience(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let url = format!("{}/.well-known/runproof", base.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !resp.status().is_success() {
        bail!("{url} answered {}", resp.status());
    }
    Ok(resp
        .json::<WellKnown>()
        .await
        .context("unexpected /.well-known/runproof")?
        .audience)
}

async fn hash_file(path: &Path) -> anyhow::Result<(u64, [u8; 32])> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok((size, hasher.finalize().into()))
}

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
/// With an OIDC token source and more than one file (or a file over
/// [`SESSION_SIZE_THRESHOLD`]), it opens an upload session and uses it for every file
/// and every retry; a session that expires midway is replaced once per file.
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
    let http = http_client(opts.timeout)?;
    let base = opts.url.trim_end_matches('/').to_owned();
    let audience = match (&opts.audience, auth) {
        (Some(a), _) => a.clone(),
        (None, Auth::Oidc(_)) => discover_audience(&http, &base).await?,
        (None, _) => String::new(),
    };
    let mut current = auth.clone();
    if let Auth::Oidc(tokens) = auth {
        let mut large = false;
        for f in &opts.files {
            let len = tokio::fs::metadata(f)
                .await
                .with_context(|| format!("cannot read {}", f.display()))?
                .len();
            large |= len > SESSION_SIZE_THRESHOLD;
        }
        if (opts.files.len() > 1 || large)
            && let Some(session) = open_session(&http, &base, &audience, tokens).await?
        {
            current = Auth::Session(session);
        }
    }
    for path in &opts.files {
        let mut result = upload_one(&http, &base, &audience, &current, path, opts).await;
        if let (Err(e), Auth::Oidc(tokens), Auth::Session(_)) = (&result, auth, &current) {
            let expired = e
                .downcast_ref::<Refused>()
                .is_some_and(|r| r.code == "token_expired" || r.code == "invalid_session");
            if expired && let Some(session) = open_session(&http, &base, &audience, tokens).await? {
                current = Auth::Session(session);
                result = upload_one(&http, &base, &audience, &current, path, opts).await;
            }
        }
        let uploaded = result?;
        eprintln!(
            "uploaded {} ({} bytes) as {} [{}]",
            path.display(),
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
    path: &Path,
    opts: &UploadOptions,
) -> anyhow::Result<Uploaded> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable file name", path.display()))?
        .to_owned();
    let (size, sha256) = hash_file(path).await?;
    let idempotency_key = uuid::Uuid::new_v4().to_string();
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .with_max_times(opts.attempts.saturating_sub(1))
        .build();
    loop {
        let attempt = attempt_upload(
            http,
            base,
            audience,
            auth,
            path,
            &name,
            size,
            &sha256,
            &idempotency_key,
            opts,
        )
        .await;
        match attempt {
            Attempt::Done(u) => {
                if u.sha256 != hex::encode(sha256) || u.size != size {
                    bail!("the server recorded different bytes for {}", path.display());
                }
                return Ok(u);
            }
            Attempt::Fatal(e) => return Err(e),
            Attempt::Retry(e, retry_after) => match delays.next() {
                Some(delay) => {
                    let delay = retry_after.map_or(delay, |r| r.max(delay));
                    eprintln!(
                        "upload of {} failed ({e:#}); retrying in {delay:?}",
                        path.display()
                    );
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e.context(format!("giving up on {}", path.display()))),
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
    path: &Path,
    name: &str,
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
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => {
            return Attempt::Fatal(
                anyhow::Error::new(e).context(format!("cannot open {}", path.display())),
            );
        }
    };
    let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_message(name.to_owned());
        bar
    });
    let progress = bar.clone();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).inspect(move |chunk| {
            if let (Some(bar), Ok(chunk)) = (&progress, chunk) {
                bar.inc(chunk.len() as u64);
            }
        });
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
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
        return match resp.json::<Uploaded>().await {
            Ok(u) => Attempt::Done(u),
            Err(e) => Attempt::Retry(
                anyhow::anyhow!("unreadable answer: {}", e.without_url()),
                None,
            ),
        };
    }
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)));
    let problem = resp.json::<Problem>().await.ok();
    let refused = Refused {
        status: status.as_u16(),
        code: problem
            .as_ref()
            .and_then(|p| p.code.clone())
            .unwrap_or_default(),
        detail: problem.and_then(|p| p.detail).unwrap_or_default(),
    };
    if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
        Attempt::Retry(refused.into(), retry_after)
    } else {
        Attempt::Fatal(refused.into())
    }
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
    let ids: Vec<&str> = uploads.iter().map(|u| u.id.as_str()).collect();
    append("GITHUB_OUTPUT", &format!("upload-ids={}\n", ids.join(",")))?;
    let mut summary = String::from(
        "### runproof uploads\n\n| file | size | sha256 | id | status |\n|---|---:|---|---|---|\n",
    );
    for u in uploads {
        summary.push_str(&format!(
            "| {} | {} | `{}` | `{}` | {} |\n",
            u.name.replace('|', "\\|"),
            u.size,
            u.sha256.get(..12).unwrap_or(&u.sha256),
            u.id,
            u.status
        ));
    }
    append("GITHUB_STEP_SUMMARY", &summary)
}

/// Where a pending upload ended up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UploadStatus {
    /// The upload's id.
    pub id: String,
    /// `verified`, `pending`, `rejected` or `expired`.
    pub status: String,
    /// Why it was rejected or expired.
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
/// When the server cannot be reached at the end, or answers oddly.
pub async fn wait_for_outcome(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    timeout: Duration,
    first_delay: Duration,
) -> anyhow::Result<Vec<UploadStatus>> {
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
            match http.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => match resp.json::<UploadStatus>().await {
                    Ok(s) => *slot = Some(s),
                    Err(e) => {
                        error = Some(anyhow::anyhow!(
                            "unexpected status answer: {}",
                            e.without_url()
                        ))
                    }
                },
                Ok(resp) => error = Some(anyhow::anyhow!("{url} answered {}", resp.status())),
                Err(e) => error = Some(anyhow::anyhow!("cannot reach {url}: {}", e.without_url())),
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
