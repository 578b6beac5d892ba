//! A small HTTP getter with a size cap, a timeout and same-origin redirects only.

use std::time::Duration;

use url::Url;

use crate::url_rules::same_origin;

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Connection failure, timeout, or a refused redirect.
    #[error("request failed: {0}")]
    Transport(String),
    /// A non-2xx status.
    #[error("status {0}")]
    Status(u16),
    /// The body exceeded the cap.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
}

/// An HTTP client for fetching small documents (discovery, JWKS) from fixed origins.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
}

impl HttpFetcher {
    /// A client with the given total timeout. Redirects are followed only within the
    /// same origin, at most three times.
    ///
    /// # Errors
    /// [`FetchError::Transport`] when the TLS backend cannot be set up.
    pub fn new(timeout: Duration) -> Result<Self, FetchError> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let same = attempt
                .previous()
                .first()
                .is_some_and(|first| same_origin(first, attempt.url()));
            if attempt.previous().len() > 3 || !same {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(policy)
            .user_agent(concat!("runproof/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        Ok(Self { client })
    }

    /// GETs `url` and returns at most `max_bytes` of body.
    ///
    /// # Errors
    /// [`FetchError`] on transport failure, a non-2xx status (including a redirect that
    /// was not followed), or a body over the cap.
    pub async fn get_capped(&self, url: &Url, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        let mut resp = self
            .client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if resp
            .content_length()
            .is_some_and(|len| len > max_bytes as u64)
        {
            return Err(FetchError::TooLarge(max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Transport(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > max_bytes {
                return Err(FetchError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
