//! Self-defence: a cap on requests in flight, and a per-IP rate limit for requests that carry
//! no credentials (no `Authorization` header). Both answer `429 rate_limited` with
//! `Retry-After`, at once, so the server keeps serving everyone else.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use runproof_core::ErrorCode;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// The length of a rate-limit window.
const WINDOW: Duration = Duration::from_secs(60);
/// Most addresses tracked at once; expired windows are dropped first.
const MAX_TRACKED: usize = 100_000;

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Most requests served at once; more answer `429`. 0: no cap.
    pub max_connections: usize,
    /// Requests without `Authorization` accepted per client IP per minute. 0: no limit.
    pub unauthenticated_per_ip_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            unauthenticated_per_ip_per_minute: 600,
        }
    }
}

/// The state of the limits of one router.
pub(crate) struct Limiter {
    in_flight: Option<Arc<Semaphore>>,
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Limiter {
    pub(crate) fn new(config: &LimitsConfig) -> Arc<Self> {
        Arc::new(Self {
            in_flight: (config.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(config.max_connections))),
            per_minute: config.unauthenticated_per_ip_per_minute,
            windows: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a request from `ip`; the seconds to wait when it is over the limit.
    fn over_limit(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        if self.per_minute == 0 {
            return None;
        }
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED && !windows.contains_key(&ip) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_TRACKED {
                windows.clear();
            }
        }
        let entry = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= self.per_minute {
            let left = WINDOW.saturating_sub(now.duration_since(entry.0));
            return Some(left.as_secs().max(1));
        }
        entry.1 += 1;
        None
    }
}

/// The middleware: the in-flight cap for every request, then the per-IP limit for requests
/// without credentials. Health probes are exempt, and so are signed GitHub deliveries:
/// GitHub sends them from shared addresses and does not retry a refused one, and their
/// `X-Hub-Signature-256` is verified before anything is parsed.
pub(crate) async fn enforce(
    State(limiter): State<Arc<Limiter>>,
    request: Request,
    next: Next,
) -> Response {
    let _permit = match &limiter.in_flight {
        Some(sem) => match Arc::clone(sem).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                metrics::counter!("runproof_rate_limited_total", "limit" => "connections")
                    .increment(1);
                return ApiError::new(ErrorCode::RateLimited, "the server is busy")
                    .retry_after(1)
                    .into_response();
            }
        },
        None => None,
    };
    let probe = matches!(request.uri().path(), "/healthz" | "/readyz")
        || (request.uri().path() == "/v1/github/webhooks"
            && request.headers().contains_key("x-hub-signature-256"));
    if !probe && !request.headers().contains_key(header::AUTHORIZATION) {
        let ip = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Some(ip) = ip
            && let Some(wait) = limiter.over_limit(ip, Instant::now())
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
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_per_ip_and_reset() {
        let l = Limiter::new(&LimitsConfig {
            max_connections: 0,
            unauthenticated_per_ip_per_minute: 2,
        });
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let t = Instant::now();
        assert_eq!(l.over_limit(a, t), None);
        assert_eq!(l.over_limit(a, t), None);
        assert_eq!(l.over_limit(a, t), Some(60));
        assert_eq!(l.over_limit(b, t), None);
        assert_eq!(l.over_limit(a, t + WINDOW), None);
    }
}
