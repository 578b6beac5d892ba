//! Talking to the server: the HTTP client, answers read bounded and checked (size, JSON,
//! canonical ids, known statuses), refusals read as problems, and the retry policy.

use std::time::Duration;

use backon::BackoffBuilder as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::error::{AnswerError, ClientError, Refused};

/// The most bytes read from any JSON answer of the server or of the runner's token endpoint.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Builds the HTTP client used by uploads.
///
/// # Errors
/// When the TLS backend cannot be set up.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(timeout)
        .user_agent(concat!("runproof/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClientError::HttpClient)
}

/// Reads an answer's body, at most [`MAX_ANSWER_BYTES`] of it.
pub(crate) async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, AnswerError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| AnswerError::Read(e.without_url()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(AnswerError::TooLarge {
                limit: MAX_ANSWER_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AnswerError> {
    serde_json::from_slice(body).map_err(|e| AnswerError::Malformed {
        line: e.line(),
        column: e.column(),
    })
}

/// Reads a JSON answer of at most [`MAX_ANSWER_BYTES`].
pub(crate) async fn read_json<T: DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, AnswerError> {
    parse_json(&read_bounded(resp).await?)
}

#[derive(Deserialize)]
struct Problem {
    code: Option<String>,
    detail: Option<String>,
}

/// The refusal in a non-success answer: its problem's `code` and `detail`, empty when the
/// body is not a problem.
pub(crate) async fn refusal(status: u16, resp: reqwest::Response) -> Refused {
    let problem = read_json::<Problem>(resp).await.ok();
    Refused {
        status,
        code: problem
            .as_ref()
            .and_then(|p| p.code.clone())
            .unwrap_or_default(),
        detail: problem.and_then(|p| p.detail).unwrap_or_default(),
    }
}

/// Reads an id that must be a canonical UUID: anything else (another spelling, a line
/// break, a workflow command) never reaches an output, a log or a URL.
pub(crate) fn canonical_uuid<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
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

/// The delays between attempts: exponential from 500 ms to 30 s, with jitter.
pub(crate) fn retry_delays(attempts: usize) -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .with_max_times(attempts.saturating_sub(1))
        .build()
}

/// Whether a status is worth another attempt: the server is busy or failed, not refusing.
pub(crate) fn retryable(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408
}

/// The server's `Retry-After` in seconds, at most a minute.
pub(crate) fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(60)))
}
