//! Self-defence: a cap on requests in flight, per-address and per-repository rate limits for
//! requests without credentials, a limit on failed credentials per address, and the budgets
//! of webhook deliveries whose signatures are not checked yet. All answer
//! `429 rate_limited` with `Retry-After`, at once, so the server keeps serving everyone else.
//! The caps on open connections and the connection deadlines live in the accept loop
//! ([`crate::listener`]).
//!
//! An address is the client's: the peer's own, or the one a trusted proxy forwards
//! (`[limits] trusted_proxies`); an IPv6 address counts by its /64, the block one host
//! usually holds. A request without credentials names a repository through `X-Runproof-Run`
//! (the webhook mode); the per-repository limit bounds what anyone, from any number of
//! addresses, can make the server do in one repository's name.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use runproof_core::ErrorCode;
use runproof_core::ids::RepositoryId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use runproof_service::rate::{AddressKey, Windows};

use crate::error::ApiError;

/// What a webhook delivery with a bad signature counts against its address's per-IP limit:
/// a sender that forges signatures is limited after a few tries.
const BAD_SIGNATURE_WEIGHT: u32 = 10;
/// The most bytes of webhook deliveries buffered at once, before their signatures are
/// checked, in KiB (64 MiB): a bound on what concurrent forged deliveries can hold.
const WEBHOOK_BUFFER_KIB: usize = 64 * 1024;
/// The part of [`WEBHOOK_BUFFER_KIB`] one address may hold (32 MiB): more than GitHub's
/// largest delivery (25 MiB), less than the whole budget.
const WEBHOOK_BUFFER_KIB_PER_ADDRESS: usize = 32 * 1024;
/// Most entries of `X-Forwarded-For` or `Forwarded` read, from the right.
const MAX_FORWARDED_HOPS: usize = 32;

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Most open connections; at the cap, new connections wait in the listen backlog.
    /// 0: no cap.
    pub max_connections: usize,
    /// Most open connections from one client address (IPv6: one /64); more are closed at
    /// once. Trusted proxies are exempt. 0: no cap.
    pub max_connections_per_address: usize,
    /// The longest a client may take to send a request's head, in seconds, counted from
    /// the connection's start for its first request: also the longest a connection may
    /// stay with no request in progress (HTTP/1 keep-alive, HTTP/2 with no open stream).
    /// 0: no deadline.
    pub header_timeout_seconds: u64,
    /// The longest a webhook delivery may take to send its body, in seconds (at least 1).
    /// GitHub sends a delivery at once.
    pub webhook_body_timeout_seconds: u64,
    /// Most webhook deliveries from one address whose signatures are not checked yet;
    /// more answer `429`. 0: no cap.
    pub max_unverified_deliveries_per_address: usize,
    /// Most requests served at once; more answer `429`. `/healthz` and `/readyz` are never
    /// refused by it. 0: no cap.
    pub max_requests_in_flight: usize,
    /// Requests without credentials, and failed credentials, accepted per client address
    /// per minute. 0: no limit.
    pub unauthenticated_per_ip_per_minute: u32,
    /// Uploads without credentials accepted per minute that name one repository in
    /// `X-Runproof-Run`, from all addresses together. 0: no limit.
    pub unauthenticated_per_repository_per_minute: u32,
    /// Proxies whose forwarded client address is believed. Empty: the peer's address is
    /// the client's.
    pub trusted_proxies: Vec<IpBlock>,
    /// The header the trusted proxies write the client's address into.
    pub forwarded_header: ForwardedHeader,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_address: 128,
            header_timeout_seconds: 30,
            webhook_body_timeout_seconds: 10,
            max_unverified_deliveries_per_address: 64,
            max_requests_in_flight: 512,
            unauthenticated_per_ip_per_minute: 600,
            unauthenticated_per_repository_per_minute: 300,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
        }
    }
}

/// A block of addresses, such as `10.0.0.0/8`, `2001:db8::/32` or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    /// The first address of the block (host bits cleared).
    network: IpAddr,
    /// The length of the prefix, in bits.
    prefix: u8,
}

/// A value that is not an address block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpBlockError {
    /// Neither `ADDRESS` nor `ADDRESS/PREFIX` with a prefix no longer than the address.
    #[error("`{input}` is not an IP address or a block such as 10.0.0.0/8")]
    Invalid {
        /// The value as written.
        input: String,
    },
}

impl IpBlock {
    /// Whether `ip` is in the block. An IPv4 address written as IPv6 (`::ffff:a.b.c.d`)
    /// counts as IPv4.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        IpBlock::new(ip.to_canonical(), self.prefix).is_some_and(|b| b.network == self.network)
    }

    fn new(ip: IpAddr, prefix: u8) -> Option<Self> {
        let network = match ip {
            IpAddr::V4(a) => {
                let shift = 32u32.checked_sub(u32::from(prefix))?;
                let mask = u32::MAX.checked_shl(shift).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let shift = 128u32.checked_sub(u32::from(prefix))?;
                let mask = u128::MAX.checked_shl(shift).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Some(Self { network, prefix })
    }
}

impl FromStr for IpBlock {
    type Err = IpBlockError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || IpBlockError::Invalid {
            input: s.to_owned(),
        };
        let (address, prefix) = match s.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (s.trim(), None),
        };
        let ip = IpAddr::from_str(address)
            .map_err(|_| invalid())?
            .to_canonical();
        let full = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| invalid())?,
            None => full,
        };
        if prefix > full {
            return Err(invalid());
        }
        IpBlock::new(ip, prefix).ok_or_else(invalid)
    }
}

impl std::fmt::Display for IpBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> serde::Deserialize<'de> for IpBlock {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The header a trusted proxy writes the client's address into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

/// A name that is not `x-forwarded-for` or `forwarded`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the forwarded header is `x-forwarded-for` or `forwarded`, not `{0}`")]
pub struct ForwardedHeaderError(String);

impl FromStr for ForwardedHeader {
    type Err = ForwardedHeaderError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("x-forwarded-for") {
            Ok(Self::XForwardedFor)
        } else if s.eq_ignore_ascii_case("forwarded") {
            Ok(Self::Forwarded)
        } else {
            Err(ForwardedHeaderError(s.to_owned()))
        }
    }
}

impl<'de> serde::Deserialize<'de> for ForwardedHeader {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether `ip` belongs to a trusted proxy.
pub(crate) fn is_trusted(trusted: &[IpBlock], ip: IpAddr) -> bool {
    trusted.iter().any(|block| block.contains(ip))
}

/// The client's address: the peer's, unless the peer is a trusted proxy. Then the forwarded
/// entries are read from the right (each appended by the hop before it) for as long as the
/// hop that wrote them is trusted: the first untrusted hop is the client. An entry that is
/// not an address stops the walk at the hop that wrote it.
pub(crate) fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpBlock],
    forwarded: ForwardedHeader,
) -> IpAddr {
    let mut client = peer.to_canonical();
    if !is_trusted(trusted, client) {
        return client;
    }
    let name = match forwarded {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let entries: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.iter().rev().take(MAX_FORWARDED_HOPS) {
        let hop = match forwarded {
            ForwardedHeader::XForwardedFor => parse_hop(entry.trim()),
            ForwardedHeader::Forwarded => forwarded_for(entry),
        };
        match hop {
            Some(hop) => client = hop.to_canonical(),
            None => break,
        }
        if !is_trusted(trusted, client) {
            break;
        }
    }
    client
}

/// An address as a proxy writes it: `192.0.2.1`, `2001:db8::1`, `192.0.2.1:4711` or
/// `[2001:db8::1]:4711`.
fn parse_hop(s: &str) -> Option<IpAddr> {
    IpAddr::from_str(s)
        .ok()
        .or_else(|| SocketAddr::from_str(s).ok().map(|a| a.ip()))
}

/// The `for=` address of one element of `Forwarded`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        let bare = value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(value);
        parse_hop(bare)
    })
}

/// Middleware: the GitHub lookups a request causes are counted against its client's
/// address (as the limits resolved it, else the peer's).
pub(crate) async fn remember_client(request: Request, next: Next) -> Response {
    match client_ip(request.extensions()) {
        Some(ip) => runproof_service::binding::for_client(ip, next.run(request)).await,
        None => next.run(request).await,
    }
}

/// A request's client address, as the limits resolved it (see [`client_address`]), else
/// the peer's.
pub(crate) fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions.get::<ClientAddress>().map(|c| c.0).or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    })
}

/// The client's address, as the limits saw it, in the request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddress(pub(crate) IpAddr);

/// Amounts held per address (deliveries, KiB), each under a cap. An address is tracked
/// only while it holds something, so the map is bounded by what is in progress.
pub(crate) struct Shares {
    cap: usize,
    held: Mutex<HashMap<AddressKey, usize>>,
}

impl Shares {
    /// Shares of at most `cap` per address; 0: no cap.
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: if cap == 0 { usize::MAX } else { cap },
            held: Mutex::new(HashMap::new()),
        })
    }

    /// `n` for `key`, or `None` when that would take `key` over the cap.
    pub(crate) fn take(self: &Arc<Self>, key: AddressKey, n: usize) -> Option<Share> {
        let mut share = Share {
            shares: Arc::clone(self),
            key,
            n: 0,
        };
        share.grow(n).then_some(share)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<AddressKey, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one holder took of an address's share; given back on drop.
pub(crate) struct Share {
    shares: Arc<Shares>,
    key: AddressKey,
    n: usize,
}

impl Share {
    /// Takes `n` more, unless that goes over the address's cap.
    fn grow(&mut self, n: usize) -> bool {
        let mut held = self.shares.held();
        let now = held.get(&self.key).copied().unwrap_or(0);
        match now.checked_add(n) {
            Some(total) if total <= self.shares.cap => {
                held.insert(self.key, total);
                self.n = self.n.saturating_add(n);
                true
            }
            _ => false,
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if self.n == 0 {
            return;
        }
        let mut held = self.shares.held();
        if let Some(now) = held.get_mut(&self.key) {
            *now = now.saturating_sub(self.n);
            if *now == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// The state of the limits of one router.
pub(crate) struct Limiter {
    in_flight: Option<Arc<Semaphore>>,
    per_ip: Windows<AddressKey>,
    failed_credentials: Windows<AddressKey>,
    per_repository: Windows<RepositoryId>,
    trusted_proxies: Vec<IpBlock>,
    forwarded_header: ForwardedHeader,
    /// Webhook deliveries per address whose signatures are not checked yet.
    deliveries: Arc<Shares>,
    /// KiB of webhook deliveries buffered per address before their signatures are checked.
    delivery_kib: Arc<Shares>,
    /// KiB of webhook deliveries buffered before their signatures are checked, in all.
    webhook_buffer: Arc<Semaphore>,
    /// What kind of request each is.
    classify: Classify,
}

impl Limiter {
    pub(crate) fn new(config: &LimitsConfig, classify: Classify) -> Arc<Self> {
        Arc::new(Self {
            classify,
            in_flight: (config.max_requests_in_flight > 0)
                .then(|| Arc::new(Semaphore::new(config.max_requests_in_flight))),
            per_ip: Windows::new(config.unauthenticated_per_ip_per_minute),
            failed_credentials: Windows::new(config.unauthenticated_per_ip_per_minute),
            per_repository: Windows::new(config.unauthenticated_per_repository_per_minute),
            trusted_proxies: config.trusted_proxies.clone(),
            forwarded_header: config.forwarded_header,
            deliveries: Shares::new(config.max_unverified_deliveries_per_address),
            delivery_kib: Shares::new(WEBHOOK_BUFFER_KIB_PER_ADDRESS),
            webhook_buffer: Arc::new(Semaphore::new(WEBHOOK_BUFFER_KIB)),
        })
    }
}

/// What the webhook receiver may ask of the limits for a delivery that claims a signature.
#[derive(Clone)]
pub(crate) struct WebhookGuard {
    limiter: Arc<Limiter>,
    key: AddressKey,
    /// The delivery's place among its address's unverified deliveries, given back once the
    /// signature is checked.
    slot: Arc<Mutex<Option<Share>>>,
}

impl WebhookGuard {
    /// A bad signature counts against the sender's address; the seconds to wait when the
    /// address was over its limit already.
    pub(crate) fn strike(&self) -> Option<u64> {
        let now = Instant::now();
        let wait = self.limiter.per_ip.blocked(self.key, now);
        self.limiter.per_ip.add(self.key, BAD_SIGNATURE_WEIGHT, now);
        wait
    }

    /// The signature is checked: the delivery no longer counts as unverified.
    pub(crate) fn verified(&self) {
        let slot = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(slot);
    }

    /// An empty buffer for the delivery's body, grown as bytes arrive.
    pub(crate) fn buffer(&self) -> WebhookBuffer {
        WebhookBuffer {
            limiter: Arc::clone(&self.limiter),
            key: self.key,
            global: None,
            local: None,
            kib: 0,
        }
    }
}

/// Room held for one delivery's bytes before its signature is checked, out of its
/// address's share and the shared budget. Only bytes received are held, not those a
/// `Content-Length` announces: a delivery that announces 25 MiB and sends one byte holds
/// one KiB.
pub(crate) struct WebhookBuffer {
    limiter: Arc<Limiter>,
    key: AddressKey,
    global: Option<OwnedSemaphorePermit>,
    local: Option<Share>,
    kib: usize,
}

impl WebhookBuffer {
    /// Room for `bytes` in all; `false` when the address's share or the budget is spent.
    pub(crate) fn grow_to(&mut self, bytes: usize) -> bool {
        let kib = bytes.div_ceil(1024);
        let Some(more) = kib.checked_sub(self.kib).filter(|more| *more > 0) else {
            return true;
        };
        let Ok(permits) = u32::try_from(more) else {
            return false;
        };
        let Ok(permit) = Arc::clone(&self.limiter.webhook_buffer).try_acquire_many_owned(permits)
        else {
            return false;
        };
        let grown = match &mut self.local {
            Some(local) => local.grow(more),
            None => {
                self.local = self.limiter.delivery_kib.take(self.key, more);
                self.local.is_some()
            }
        };
        if !grown {
            return false;
        }
        match &mut self.global {
            Some(global) => global.merge(permit),
            None => self.global = Some(permit),
        }
        self.kib = self.kib.saturating_add(more);
        true
    }
}

/// The repository an upload without credentials names, if its `X-Runproof-Run` parses.
/// One that does not parse is refused later, by the handler, as `invalid_request`. Other
/// requests name no repository: only uploads spend a repository's quotas.
/// What the limits need to know of a request, as the routes tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestClass {
    /// A webhook delivery that claims a signature.
    SignedWebhook,
    /// An upload without credentials that names its repository.
    UploadFor(RepositoryId),
    /// Anything else.
    Other,
}

/// Tells a request's [`RequestClass`].
pub(crate) type Classify = fn(&Request) -> RequestClass;

fn rate_limited(limit: &'static str, detail: impl Into<String>, wait: u64) -> Response {
    metrics::counter!("runproof_rate_limited_total", "limit" => limit).increment(1);
    ApiError::new(ErrorCode::RateLimited, detail)
        .retry_after(wait)
        .into_response()
}

/// The middleware. Health probes pass first, never held back by any limit. A delivery that
/// claims a GitHub signature takes a place among its address's unverified deliveries (it is
/// not counted otherwise: GitHub sends from shared addresses and does not retry a refused
/// delivery); the receiver reads it within its deadline and budget, checks the signature
/// even when its address is over the limit, and counts a bad one. Then the in-flight cap
/// for every request. A request with credentials is refused while its address has too many
/// failed ones, and counted when it fails (`401`); one without is counted per address, and
/// an upload also per repository.
pub(crate) async fn enforce(
    State(limiter): State<Arc<Limiter>>,
    mut request: Request,
    next: Next,
) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| {
            client_address(
                c.0.ip(),
                request.headers(),
                &limiter.trusted_proxies,
                limiter.forwarded_header,
            )
        });
    if let Some(client) = client {
        request.extensions_mut().insert(ClientAddress(client));
    }
    let key = client.map(AddressKey::from);
    let class = (limiter.classify)(&request);
    let signed_delivery = class == RequestClass::SignedWebhook;
    if signed_delivery && let Some(key) = key {
        let Some(slot) = limiter.deliveries.take(key, 1) else {
            return rate_limited(
                "webhook",
                "too many deliveries from this address are being received; retry",
                1,
            );
        };
        request.extensions_mut().insert(WebhookGuard {
            limiter: Arc::clone(&limiter),
            key,
            slot: Arc::new(Mutex::new(Some(slot))),
        });
    }
    let _permit = match &limiter.in_flight {
        Some(sem) => match Arc::clone(sem).try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => return rate_limited("in_flight", "the server is busy", 1),
        },
        None => None,
    };
    if signed_delivery {
        return next.run(request).await;
    }
    if request.headers().contains_key(header::AUTHORIZATION) {
        if let Some(key) = key
            && let Some(wait) = limiter.failed_credentials.blocked(key, Instant::now())
        {
            return rate_limited(
                "failed_credentials",
                "too many failed credentials from this address",
                wait,
            );
        }
        let response = next.run(request).await;
        if response.status() == StatusCode::UNAUTHORIZED
            && let Some(key) = key
        {
            let now = Instant::now();
            limiter.failed_credentials.add(key, 1, now);
            limiter.per_ip.add(key, 1, now);
        }
        return response;
    }
    if let Some(key) = key
        && let Some(wait) = limiter.per_ip.over_limit(key, Instant::now())
    {
        return rate_limited(
            "unauthenticated",
            "too many requests without credentials from this address",
            wait,
        );
    }
    if let RequestClass::UploadFor(repository) = class
        && let Some(wait) = limiter
            .per_repository
            .over_limit(repository, Instant::now())
    {
        return rate_limited(
            "repository",
            format!("too many uploads without credentials for repository {repository}"),
            wait,
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> AddressKey {
        AddressKey::from(IpAddr::from_str(s).unwrap())
    }

    fn guard(limiter: &Arc<Limiter>, ip: &str) -> WebhookGuard {
        WebhookGuard {
            limiter: Arc::clone(limiter),
            key: key(ip),
            slot: Arc::new(Mutex::new(None)),
        }
    }

    #[test]
    fn webhook_bytes_before_the_signature_check_share_one_budget() {
        let limiter = Limiter::new(&LimitsConfig::default(), |_| RequestClass::Other);
        let half = WEBHOOK_BUFFER_KIB_PER_ADDRESS * 1024;
        let mut a = guard(&limiter, "192.0.2.1").buffer();
        let mut b = guard(&limiter, "192.0.2.2").buffer();
        assert!(a.grow_to(half));
        assert!(b.grow_to(half));
        let mut c = guard(&limiter, "192.0.2.3").buffer();
        assert!(!c.grow_to(1), "the budget is spent");
        drop(a);
        assert!(c.grow_to(25 * 1024 * 1024));
    }

    #[test]
    fn rule_one_address_holds_at_most_its_share_of_the_webhook_budget() {
        let limiter = Limiter::new(&LimitsConfig::default(), |_| RequestClass::Other);
        let attacker = guard(&limiter, "192.0.2.66");
        // Announced lengths hold nothing: only bytes received are held.
        let mut slow: Vec<WebhookBuffer> = (0..3).map(|_| attacker.buffer()).collect();
        for buffer in &mut slow {
            assert!(buffer.grow_to(1));
        }
        assert!(slow[0].grow_to(25 * 1024 * 1024));
        assert!(
            !slow[1].grow_to(25 * 1024 * 1024),
            "over the address's share"
        );
        assert!(slow[2].grow_to(7 * 1024 * 1024 - 2048));
        // Another address still has room for GitHub's largest delivery.
        assert!(
            guard(&limiter, "140.82.115.1")
                .buffer()
                .grow_to(25 * 1024 * 1024)
        );
        // A refused buffer gave nothing away: dropping everything empties the budget.
        drop(slow);
        assert_eq!(
            limiter.webhook_buffer.available_permits(),
            WEBHOOK_BUFFER_KIB
        );
        assert!(limiter.delivery_kib.held().is_empty());
    }

    #[test]
    fn strikes_count_several_requests() {
        let limiter = Limiter::new(
            &LimitsConfig {
                unauthenticated_per_ip_per_minute: 20,
                ..LimitsConfig::default()
            },
            |_| RequestClass::Other,
        );
        let ip = key("127.0.0.1");
        let guard = guard(&limiter, "127.0.0.1");
        assert_eq!(limiter.per_ip.blocked(ip, Instant::now()), None);
        assert_eq!(guard.strike(), None);
        assert_eq!(guard.strike(), None);
        assert!(guard.strike().is_some(), "over the limit before the third");
        assert!(limiter.per_ip.over_limit(ip, Instant::now()).is_some());
    }

    #[test]
    fn unverified_deliveries_are_capped_per_address() {
        let shares = Shares::new(2);
        let a = key("192.0.2.1");
        let first = shares.take(a, 1).unwrap();
        let _second = shares.take(a, 1).unwrap();
        assert!(shares.take(a, 1).is_none());
        assert!(shares.take(key("192.0.2.2"), 1).is_some());
        drop(first);
        assert!(shares.take(a, 1).is_some());
    }

    #[test]
    fn address_blocks_parse_and_match() {
        let block = |s: &str| IpBlock::from_str(s).unwrap();
        assert!(block("10.0.0.0/8").contains(IpAddr::from([10, 200, 3, 4])));
        assert!(!block("10.0.0.0/8").contains(IpAddr::from([11, 0, 0, 1])));
        assert!(block("10.9.9.9/8").contains(IpAddr::from([10, 0, 0, 1])));
        assert!(block("192.0.2.7").contains(IpAddr::from([192, 0, 2, 7])));
        assert!(!block("192.0.2.7").contains(IpAddr::from([192, 0, 2, 8])));
        assert!(block("192.0.2.7").contains("::ffff:192.0.2.7".parse().unwrap()));
        assert!(block("2001:db8::/32").contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!block("2001:db8::/32").contains("2001:db9::1".parse().unwrap()));
        assert!(block("0.0.0.0/0").contains(IpAddr::from([8, 8, 8, 8])));
        assert!(!block("0.0.0.0/0").contains("2001:db8::1".parse().unwrap()));
        assert_eq!(block("10.1.2.3/8").to_string(), "10.0.0.0/8");
        for bad in [
            "",
            "x",
            "10.0.0.0/33",
            "10.0.0.0/-1",
            "10.0.0.0/",
            "::/129",
            "10.0.0/8",
        ] {
            assert!(IpBlock::from_str(bad).is_err(), "{bad}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn rule_a_forwarded_address_is_believed_only_from_trusted_proxies() {
        let trusted = [
            IpBlock::from_str("10.0.0.0/8").unwrap(),
            IpBlock::from_str("2001:db8:ff::/48").unwrap(),
        ];
        let ip = |s: &str| IpAddr::from_str(s).unwrap();
        let xff = ForwardedHeader::XForwardedFor;
        let client = |peer: &str, h: &HeaderMap| client_address(ip(peer), h, &trusted, xff);
        let spoofed = headers(&[("x-forwarded-for", "198.51.100.1")]);
        // An untrusted peer is the client whatever it says.
        assert_eq!(client("203.0.113.9", &spoofed), ip("203.0.113.9"));
        // A trusted proxy's last entry is the client; entries to its left are the client's
        // own claims and are not believed.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, 198.51.100.1")]);
        assert_eq!(client("10.0.0.5", &h), ip("198.51.100.1"));
        // Through several trusted proxies, the rightmost untrusted hop; several header
        // lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4, 198.51.100.1"),
            ("x-forwarded-for", "10.1.1.1, [2001:db8:ff::7]:443"),
        ]);
        assert_eq!(client("10.0.0.5", &h), ip("198.51.100.1"));
        // A proxy that says nothing, or garbage, leaves the proxy as the client.
        assert_eq!(client("10.0.0.5", &HeaderMap::new()), ip("10.0.0.5"));
        let h = headers(&[("x-forwarded-for", "1.2.3.4, unknown")]);
        assert_eq!(client("10.0.0.5", &h), ip("10.0.0.5"));
        // Only the configured header is read.
        let h = headers(&[("forwarded", "for=198.51.100.1")]);
        assert_eq!(client("10.0.0.5", &h), ip("10.0.0.5"));
        // Nothing trusted: nothing believed.
        assert_eq!(
            client_address(ip("10.0.0.5"), &spoofed, &[], xff),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn the_forwarded_header_of_rfc_7239() {
        let trusted = [IpBlock::from_str("10.0.0.0/8").unwrap()];
        let ip = |s: &str| IpAddr::from_str(s).unwrap();
        let client = |value: &str| {
            client_address(
                ip("10.0.0.5"),
                &headers(&[("forwarded", value)]),
                &trusted,
                ForwardedHeader::Forwarded,
            )
        };
        assert_eq!(client("for=198.51.100.1"), ip("198.51.100.1"));
        assert_eq!(
            client("for=1.2.3.4, For=\"[2001:db8:cafe::17]:4711\";proto=https"),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            client("for=1.2.3.4;by=10.0.0.5, proto=https;for=198.51.100.1:80"),
            ip("198.51.100.1")
        );
        assert_eq!(client("for=1.2.3.4, for=_hidden"), ip("10.0.0.5"));
        assert_eq!(
            ForwardedHeader::from_str("Forwarded"),
            Ok(ForwardedHeader::Forwarded)
        );
        assert!(ForwardedHeader::from_str("x-real-ip").is_err());
    }
}
