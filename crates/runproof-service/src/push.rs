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
        .map_err(|e| e.without_url().to_string())?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the App answered {status}"))
    }
}

/// What the push worker works on: the outbox in the store, the clock, and the signal of
/// this process's own new pushes.
pub(crate) struct Outbox {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) push_wake: Arc<tokio::sync::Notify>,
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
        if let Err(e) = outcome {
            tracing::warn!(error = %e, delivery = %record.id, "cannot record a delivery attempt");
        }
    });
    futures_util::future::join_all(attempts).await;
    true
}
