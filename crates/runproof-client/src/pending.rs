//! Pending uploads (the `webhook` mode): polling each one's public status until GitHub has
//! vouched for its run, or it was rejected or expired.

use std::time::Duration;

use serde::Deserialize;

use crate::error::ClientError;
use crate::http::{is_canonical_uuid, is_known_status, read_json};

/// Where a pending upload ended up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UploadStatus {
    /// The upload's id: a canonical UUID.
    #[serde(deserialize_with = "crate::http::canonical_uuid")]
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
) -> Result<Vec<UploadStatus>, ClientError> {
    if ids.iter().any(|id| !is_canonical_uuid(id)) {
        return Err(ClientError::NotCanonicalId);
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
            match http.get(&url).send().await {
                Ok(resp) if resp.status().is_success() => {
                    match read_json::<UploadStatus>(resp).await {
                        Ok(s) if s.id == *id && is_known_status(&s.status) => {
                            *slot = Some(s);
                        }
                        Ok(_) => error = Some(ClientError::StatusAnswer(None)),
                        Err(e) => error = Some(ClientError::StatusAnswer(Some(e))),
                    }
                }
                Ok(resp) => {
                    error = Some(ClientError::Answered {
                        url,
                        status: resp.status(),
                    });
                }
                Err(e) => {
                    error = Some(ClientError::Unreachable {
                        url,
                        error: e.without_url(),
                    });
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
