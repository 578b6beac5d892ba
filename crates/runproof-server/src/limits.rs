//! Self-defence: a cap on requests in flight, and per-IP and per-repository rate limits for
//! requests that carry no credentials (no `Authorization` header). All answer
//! `429 rate_limited` with `Retry-After`, at once, so the server keeps serving everyone else.
//! The cap on open connections and the header deadline live in the accept loop
//! ([`crate::listener`]).
//!
//! A request without credentials names a repository through `X-Runproof-Run` (the webhook
//! mode). The per-repository limit bounds what anyone, from any number of addresses, can
//! make the server do in one repository's name.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use runproof_core::ErrorCode;
use runproof_core::ids::RepositoryId;
use runproof_core::run_header::RunHeader;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// The length of a rate-limit window.
const WINDOW: Duration = Duration::from_secs(60);
/// Most addresses (or repositories) tracked at once; expired windows are dropped first.
const MAX_TRACKED: usize = 100_000;
/// What a webhook delivery with a bad signature counts against its address's per-IP limit:
/// a sender that forges signatures is limited after a few tries.
const BAD_SIGNATURE_WEIGHT: u32 = 10;
/// The most bytes of webhook deliveries buffered at once, before their signatures are
/// checked, in KiB (64 MiB): a bound on what concurrent forged deliveries can hold.
const WEBHOOK_BUFFER_KIB: usize = 64 * 1024;

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Most open connections; at the cap, new connections wait in the listen backlog.
    /// 0: no cap.
    pub max_connections: usize,
    /// The longest a client may take to send a request's head, in seconds, also the
    /// longest a keep-alive connection may stay idle. 0: no deadline.
    pub header_timeout_seconds: u64,
    /// Most requests served at once; more answer `429`. 0: no cap.
    pub max_requests_in_flight: usize,
    /// Requests without `Authorization` accepted per client IP per minute. 0: no limit.
    pub unauthenticated_per_ip_per_minute: u32,
    /// Requests without `Authorization` accepted per minute that name one repository in
    /// `X-Runproof-Run`, from all addresses together. 0: no limit.
    pub unauthenticated_per_repository_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout_seconds: 30,
            max_requests_in_flight: 512,
            unauthenticated_per_ip_per_minute: 600,
            unauthenticated_per_repository_per_minute: 300,
        }
    }
}

/// Fixed one-minute windows counting requests per key.
struct Windows<K> {
    per_minute: u32,
    counts: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Eq + Hash> Windows<K> {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request for `key`; the seconds to wait when it is over the limit.
    fn over_limit(&self, key: K, now: Instant) -> Option<u64> {
        self.count(key, 1, now, true)
    }

    /// The seconds to wait when `key` is over the limit already; counts nothing.
    fn blocked(&self, key: K, now: Instant) -> Option<u64> {
        self.count(key, 0, now, true)
    }

    /// Counts `n` requests for `key` whatever the limit.
    fn add(&self, key: K, n: u32, now: Instant) {
        let _ = self.count(key, n, now, false);
    }

    fn count(&self, key: K, n: u32, now: Instant, check: bool) -> Option<u64> {
        if self.per_minute == 0 {
            return None;
        }
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if counts.len() >= MAX_TRACKED && !counts.contains_key(&key) {
            counts.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if counts.len() >= MAX_TRACKED {
                counts.clear();
            }
        }
        let entry = counts.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if check && entry.1 >= self.per_minute {
            let left = WINDOW.saturating_sub(now.duration_since(entry.0));
            return Some(left.as_secs().max(1));
        }
        entry.1 = entry.1.saturating_add(n);
        None
    }
}

/// The state of the limits of one router.
pub(crate) struct Limiter {
    in_flight: Option<Arc<Semaphore>>,
    per_ip: Windows<IpAddr>,
    per_repository: Windows<RepositoryId>,
    webhook_buffer: Arc<Semaphore>,
}

impl Limiter {
    pub(crate) fn new(config: &LimitsConfig) -> Arc<Self> {
        Arc::new(Self {
            in_flight: (config.max_requests_in_flight > 0)
                .then(|| Arc::new(Semaphore::new(config.max_requests_in_flight))),
            per_ip: Windows::new(config.unauthenticated_per_ip_per_minute),
            per_repository: Windows::new(config.unauthenticated_per_repository_per_minute),
            webhook_buffer: Arc::new(Semaphore::new(WEBHOOK_BUFFER_KIB)),
        })
    }
}

/// What the webhook receiver may ask of the limits for a delivery that claims a signature.
#[derive(Clone)]
pub(crate) struct WebhookGuard {
    limiter: Arc<Limiter>,
    ip: Option<IpAddr>,
}

impl WebhookGuard {
    /// A bad signature counts against the sender's address.
    pub(crate) fn strike(&self) {
        if let Some(ip) = self.ip {
            self.limiter
                .per_ip
                .add(ip, BAD_SIGNATURE_WEIGHT, Instant::now());
        }
    }

    /// Room to buffer `bytes` of a delivery before its signature is checked; `None` while
    /// other deliveries hold the whole budget.
    pub(crate) fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).ok()?;
        Arc::clone(&self.limiter.webhook_buffer)
            .try_acquire_many_owned(kib)
            .ok()
    }
}

/// The repository a request without credentials names, if its `X-Runproof-Run` parses.
/// One that does not parse is refused later, by the handler, as `invalid_request`.
fn named_repository(request: &Request) -> Option<RepositoryId> {
    let value = request.headers().get("x-runproof-run")?.to_str().ok()?;
    RunHeader::parse(value).ok().map(|run| run.repository_id)
}

/// The middleware: the in-flight cap for every request, then the per-IP and the
/// per-repository limits for requests without credentials. Health probes are exempt. So are
/// deliveries that claim a GitHub signature, while their address is not over its limit:
/// GitHub sends them from shared addresses and does not retry a refused one. They are not
/// counted; the receiver counts those whose signature fails, and bounds the bytes buffered
/// before the check ([`WebhookGuard`]).
pub(crate) async fn enforce(
    State(limiter): State<Arc<Limiter>>,
    mut request: Request,
    next: Next,
) -> Response {
    let _permit = match &limiter.in_flight {
        Some(sem) => match Arc::clone(sem).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                metrics::counter!("runproof_rate_limited_total", "limit" => "in_flight")
                    .increment(1);
                return ApiError::new(ErrorCode::RateLimited, "the server is busy")
                    .retry_after(1)
                    .into_response();
            }
        },
        None => None,
    };
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let signed_delivery = request.uri().path() == "/v1/github/webhooks"
        && request.headers().contains_key("x-hub-signature-256");
    if signed_delivery {
        if let Some(ip) = ip
            && let Some(wait) = limiter.per_ip.blocked(ip, Instant::now())
        {
            metrics::counter!("runproof_rate_limited_total", "limit" => "unauthenticated")
                .increment(1);
            return ApiError::new(
                ErrorCode::RateLimited,
                "too many requests without valid credentials from this address",
            )
            .retry_after(wait)
            .into_response();
        }
        request.extensions_mut().insert(WebhookGuard {
            limiter: Arc::clone(&limiter),
            ip,
        });
    }
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz") || signed_delivery;
    if !probe && !request.headers().contains_key(header::AUTHORIZATION) {
        if let Some(ip) = ip
            && let Some(wait) = limiter.per_ip.over_limit(ip, Instant::now())
        {
            metrics::counter!("runproof_rate_limited_total", "limit" => "unauthenticated")
                .increment(1);
            return ApiError::new(
                ErrorCode::RateLimited,
                "too many requests without credentials from this address",
            )
            .retry_after(wait)
            .into_response();
        }
        if let Some(repository) = named_repository(&request)
            && let Some(wait) = limiter
                .per_repository
                .over_limit(repository, Instant::now())
        {
            metrics::counter!("runproof_rate_limited_total", "limit" => "repository").increment(1);
            return ApiError::new(
                ErrorCode::RateLimited,
                format!("too many requests without credentials for repository {repository}"),
            )
            .retry_after(wait)
            .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_per_key_and_reset() {
        let w = Windows::new(2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let t = Instant::now();
        assert_eq!(w.over_limit(a, t), None);
        assert_eq!(w.over_limit(a, t), None);
        assert_eq!(w.over_limit(a, t), Some(60));
        assert_eq!(w.over_limit(b, t), None);
        assert_eq!(w.over_limit(a, t + WINDOW), None);
    }

    #[test]
    fn webhook_bytes_before_the_signature_check_share_one_budget() {
        let limiter = Limiter::new(&LimitsConfig::default());
        let guard = WebhookGuard {
            limiter,
            ip: Some([127, 0, 0, 1].into()),
        };
        let all = guard.reserve(WEBHOOK_BUFFER_KIB * 1024).unwrap();
        assert!(guard.reserve(1).is_none(), "the budget is spent");
        drop(all);
        assert!(guard.reserve(25 * 1024 * 1024).is_some());
    }

    #[test]
    fn strikes_count_several_requests() {
        let limiter = Limiter::new(&LimitsConfig {
            unauthenticated_per_ip_per_minute: 20,
            ..LimitsConfig::default()
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        let guard = WebhookGuard {
            limiter: Arc::clone(&limiter),
            ip: Some(ip),
        };
        let t = Instant::now();
        assert_eq!(limiter.per_ip.blocked(ip, t), None);
        guard.strike();
        guard.strike();
        assert!(limiter.per_ip.blocked(ip, Instant::now()).is_some());
        assert!(limiter.per_ip.over_limit(ip, Instant::now()).is_some());
    }

    #[test]
    fn zero_means_no_limit() {
        let w = Windows::new(0);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(w.over_limit(RepositoryId(7), t), None);
        }
    }

    #[test]
    fn the_named_repository_comes_from_a_parsable_run_header() {
        let request = |value: &str| {
            Request::builder()
                .header("x-runproof-run", value)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        assert_eq!(
            named_repository(&request("123/456/1")),
            Some(RepositoryId(123))
        );
        assert_eq!(named_repository(&request("not a run")), None);
    }
}
