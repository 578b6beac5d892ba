//! Signed pushes to the App: the outbox worker.
//!
//! Each verified (or, if configured, rejected or expired) upload enqueues a push (a
//! push, in the HTTP contract's words: `[delivery]`, `/v1/deliveries`) in
//! the same transaction that changes the upload, so nothing committed is lost. The worker
//! claims due pushes with a lease (so one worker makes each attempt, even with several
//! replicas), POSTs them with a per-request timeout, and retries failures with
//! exponential backoff and jitter up to a cap on attempts; then the push is `failed`
//! and stays visible until it is retried through the API.
//!
//! The body is signed exactly as GitHub signs webhooks: `X-Runproof-Signature-256:
//! sha256=<hex HMAC-SHA256>` over the raw body, so an App's existing GitHub-webhook
//! verification code works unchanged. The body carries a `timestamp`, so a receiver can
//! refuse an old push replayed at it.

use std::sync::Arc;
use std::time::Duration;

use runproof_core::{Secret, UnixTime};
use runproof_store::{NewPush, PushRecord, Store, UploadRecord};
use serde_json::json;

use crate::clock::Clock;

/// Where and how verified uploads are pushed.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The App's endpoint.
    pub url: String,
    /// Signing secrets; the first signs, the others are for the App's side of rotation.
    pub secrets: Vec<Secret>,
    /// Events to push: `upload.verified`, `upload.rejected`, `upload.expired`.
    pub events: Vec<String>,
    /// The most attempts before a push is `failed`.
    pub max_attempts: u32,
    /// Timeout of each attempt.
    pub timeout: Duration,
    /// The first retry delay; each further one doubles, up to `max_backoff`.
    pub base_backoff: Duration,
    /// The longest retry delay.
    pub max_backoff: Duration,
    /// The base URL the App reaches runproof at, for `content_url`.
    pub public_url: String,
}

impl PushConfig {
    /// A push of `event` about `record`, when that event is configured.
    #[must_use]
    pub fn push_for(&self, event: &str, record: &UploadRecord) -> Option<NewPush> {
        if !self.events.iter().any(|e| e == event) {
            return None;
        }
        let content_url = format!(
            "{}/v1/uploads/{}/content",
            self.public_url.trim_end_matches('/'),
            record.id
        );
        Some(NewPush {
            id: uuid::Uuid::new_v4().to_string(),
            event: event.to_owned(),
            upload_id: record.id.to_string(),
            payload: json!({
                "event": event,
                "upload": record,
                "content_url": content_url,
            }),
        })
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(20)));
        let capped = exp.min(self.max_backoff);
        // Up to 25% jitter, so failing pushes do not retry in lockstep.
        let jitter = capped.mul_f64(f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 1024.0);
        capped + jitter
    }
}

/// The body as sent: the stored payload plus the push id and the time of sending.
fn body_of(record: &PushRecord, now: UnixTime) -> Vec<u8> {
    let mut payload = record.payload.clone();
    if let Some(obj) = payload.as_object_mut() {
        obj.insert("delivery_id".into(), json!(record.id));
        obj.insert("timestamp".into(), json!(now.0));
    }
    serde_json::to_vec(&payload).unwrap_or_default()
}

/// Sends one attempt. `Ok` on a 2xx answer.
async fn attempt(
    http: &reqwest::Client,
    config: &PushConfig,
    record: &PushRecord,
    now: UnixTime,
) -> Result<(), String> {
    let body = body_of(record, now);
    let Some(secret) = config.secrets.first() else {
        return Err("no delivery secret is configured".into());
    };
    let signature = runproof_core::webhook::sign(secret, &body);
    let resp = http
        .post(&config.url)
        .timeout(config.timeout)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("runproof/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-runproof-event", &record.event)
        .header("x-runproof-delivery", &record.id)
        .header("x-runproof-signature-256", signature)
        .body(body)
        .send()
        .await
        .map_err(|e| send_error(e, &config.url))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

/// The most causes of a failed send that are recorded.
const MAX_CAUSES: usize = 8;

/// A failed send as it is recorded: reqwest's message and each cause below it (`error
/// sending request: client error (Connect): tcp connect error: Connection refused`), so
/// an operator sees why. The URL's user information, query and fragment (where a
/// credential may sit) never appear.
fn send_error(e: reqwest::Error, url: &str) -> String {
    let e = e.without_url();
    let mut parts = vec![e.to_string()];
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        if parts.len() >= MAX_CAUSES {
            break;
        }
        let text = c.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cause = c.source();
    }
    redact_url_secrets(&parts.join(": "), url)
}

/// `text` with every part of `url` that may hold a credential replaced: the whole URL by
/// its scheme, host, port and path, then `user:password@`, `?query` and `#fragment`.
fn redact_url_secrets(text: &str, url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return text.replace(url, "[the delivery URL]");
    };
    let mut shown = parsed.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    let mut text = text.replace(url, shown.as_str());
    text = text.replace(parsed.as_str(), shown.as_str());
    let mut secrets = Vec::new();
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let user = parsed.username();
        secrets.push(match parsed.password() {
            Some(password) => format!("{user}:{password}@"),
            None => format!("{user}@"),
        });
    }
    if let Some(query) = parsed.query().filter(|q| !q.is_empty()) {
        secrets.push(format!("?{query}"));
        secrets.push(query.to_owned());
    }
    if let Some(fragment) = parsed.fragment().filter(|f| !f.is_empty()) {
        secrets.push(format!("#{fragment}"));
    }
    if let Some(password) = parsed.password().filter(|p| p.len() >= 8) {
        secrets.push(password.to_owned());
    }
    for secret in secrets {
        text = text.replace(&secret, "[redacted]");
    }
    text
}

/// What the push worker works on: the outbox in the store, the clock, and the signal of
/// this process's own new pushes.
pub(crate) struct Outbox {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) push_wake: Arc<tokio::sync::Notify>,
    /// Where attempts are recorded (the event log).
    pub(crate) events: crate::event_queue::EventSink,
}

/// Runs the worker until the task is aborted. It claims due pushes whenever this
/// process enqueues one, whenever another replica does (when the store reports it, as
/// PostgreSQL does), and at least every second.
pub(crate) fn spawn_worker(
    state: Arc<Outbox>,
    config: PushConfig,
) -> Option<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?;
    Some(tokio::spawn(async move {
        // Pushes enqueued by other replicas (PostgreSQL LISTEN/NOTIFY); `None` when
        // the backend cannot tell, and then polling alone finds them.
        let mut remote = state.store.outbox_notifications().await;
        loop {
            let progressed = run_once(&state, &config, &http).await;
            if !progressed {
                let closed = tokio::select! {
                    () = state.push_wake.notified() => false,
                    woke = next_remote_wake(&mut remote) => woke.is_none(),
                    () = tokio::time::sleep(Duration::from_secs(1)) => false,
                };
                if closed {
                    tracing::debug!("outbox notifications ended; polling only");
                    remote = None;
                }
            }
        }
    }))
}

/// The next wake-up from another replica; pending forever without a channel, `None` when
/// the channel closed.
async fn next_remote_wake(remote: &mut Option<tokio::sync::mpsc::Receiver<()>>) -> Option<()> {
    match remote {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Claims and attempts the due pushes once. Returns whether any was claimed.
pub(crate) async fn run_once(state: &Outbox, config: &PushConfig, http: &reqwest::Client) -> bool {
    let now = state.clock.now();
    // Long enough for one attempt; short, so a crashed worker's claims come back soon.
    let lease = i64::try_from(config.timeout.as_secs()).unwrap_or(30) * 2 + 5;
    let claimed = match state.store.claim_pushes(now, lease, 16).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot claim deliveries");
            return false;
        }
    };
    if claimed.is_empty() {
        return false;
    }
    let attempts = claimed.iter().map(|record| async move {
        let now = state.clock.now();
        let result = attempt(http, config, record, now).await;
        let outcome = match &result {
            Ok(()) => state.store.complete_push(&record.id, now).await,
            Err(error) => {
                let attempts = record.attempts + 1;
                let next = (attempts < config.max_attempts).then(|| {
                    let wait = config.backoff(attempts);
                    now.plus(i64::try_from(wait.as_secs()).unwrap_or(3600).max(1))
                });
                tracing::info!(delivery = %record.id, attempts, %error, final_failure = next.is_none(), "delivery attempt failed");
                state.store.fail_push(&record.id, error, next, now).await
            }
        };
        let label = if result.is_ok() { "delivered" } else { "failed_attempt" };
        metrics::counter!("runproof_deliveries_total", "outcome" => label).increment(1);
        let mut event = runproof_store::NewEvent::new(
            now,
            runproof_store::EventKind::Push,
            match &result {
                Ok(()) => runproof_store::EventOutcome::Delivered,
                Err(_) => runproof_store::EventOutcome::Failed,
            },
        );
        let attempt_no = record.attempts + 1;
        event.upload_id = runproof_store::UploadId::parse(&record.upload_id);
        event.detail = Some(match &result {
            Ok(()) => format!(
                "{} {} of {}, attempt {attempt_no}",
                record.id, record.event, record.upload_id
            ),
            Err(error) => format!(
                "{} {} of {}, attempt {attempt_no}: {error}",
                record.id, record.event, record.upload_id
            ),
        });
        state.events.push(event);
        if let Err(e) = outcome {
            tracing::warn!(error = %e, delivery = %record.id, "cannot record a delivery attempt");
        }
    });
    futures_util::future::join_all(attempts).await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_a_recorded_push_error_holds_no_url_secret() {
        let url = "https://app:s3cr3t-password@app.example/hook?token=s3cr3t-query#frag";
        let text = format!(
            "error sending request for url ({url}): token=s3cr3t-query: app:s3cr3t-password@x"
        );
        let shown = redact_url_secrets(&text, url);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("https://app.example/hook"), "{shown}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_recorded_with_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://user:s3cr3t-password@127.0.0.1:{port}/hook?key=s3cr3t-query");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let e = http.post(&url).send().await.unwrap_err();
        let recorded = send_error(e, &url);
        assert!(
            recorded.to_lowercase().contains("connection refused"),
            "{recorded}"
        );
        assert!(!recorded.contains("s3cr3t"), "{recorded}");
    }
}
