//! The JWKS key cache against the fake GitHub and small ad-hoc servers, all on 127.0.0.1.
//!
//! Every test names the rule it checks (from DESIGN.md "Rules that hold in every mode" and
//! the issue's "Keys" part). Where time has to pass, cooldowns are short (hundreds of
//! milliseconds) and every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt as _;
use runproof_core::KeySet;
use runproof_github::{IssuerConfig, KeyCache, KeyCacheConfig, KeyError, UrlError};
use runproof_testkit::{FakeGithub, TestKey, jwks_json};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A kid that no server publishes.
const UNKNOWN_KID: &str = "no-such-kid";
/// The JWKS size cap the issue asks for.
const JWKS_CAP: usize = 256 * 1024;
/// Generous upper bound for anything that must "return quickly".
const QUICK: Duration = Duration::from_millis(2500);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn config(cooldown: Duration) -> KeyCacheConfig {
    KeyCacheConfig {
        unknown_kid_cooldown: cooldown,
        timeout: Duration::from_secs(2),
        ..KeyCacheConfig::default()
    }
}

fn cache_for(issuer: &str, jwks_url: Option<String>, config: KeyCacheConfig) -> KeyCache {
    KeyCache::new(
        &[IssuerConfig {
            issuer: issuer.to_owned(),
            jwks_url,
        }],
        config,
    )
    .unwrap()
}

async fn fake() -> FakeGithub {
    FakeGithub::start().await.unwrap()
}

/// Rotates off the async threads: RSA generation is slow in debug builds.
async fn rotate(gh: &FakeGithub, retire_old: bool) -> TestKey {
    let gh = gh.clone();
    tokio::task::spawn_blocking(move || gh.rotate_key(retire_old))
        .await
        .unwrap()
        .unwrap()
}

async fn test_key(kid: &str) -> TestKey {
    let kid = kid.to_owned();
    tokio::task::spawn_blocking(move || TestKey::generate(kid))
        .await
        .unwrap()
        .unwrap()
}

fn jwks_bytes(keys: &[&TestKey]) -> Vec<u8> {
    serde_json::to_vec(&jwks_json(keys)).unwrap()
}

/// Binds 127.0.0.1:0 and returns the listener with its `http://127.0.0.1:PORT` base.
async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// Serves `app` until the test's runtime shuts down.
fn serve(listener: TcpListener, app: Router) {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

fn redirect(status: StatusCode, location: &str) -> Response {
    (status, [(header::LOCATION, location.to_owned())]).into_response()
}

/// What a small scripted issuer shares with its handlers.
struct Scripted {
    base: String,
    /// Where the "elsewhere" redirects point (another origin).
    elsewhere: String,
    discovery: Value,
    jwks: Vec<u8>,
    jwks_hits: AtomicU64,
    discovery_hits: AtomicU64,
    slow: AtomicBool,
}

impl Scripted {
    fn jwks_hits(&self) -> u64 {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

/// A small issuer on 127.0.0.1:
/// - `/.well-known/openid-configuration`: `discovery(base)` (3 s late while `slow`);
/// - `/jwks`: `jwks` (3 s late while `slow`), counted;
/// - `/redirect/{code}/elsewhere`: `code` to `elsewhere` (another origin);
/// - `/redirect/{code}/here`, `/redirect-absolute`, `/redirect-localhost`: to `/jwks`,
///   relatively, absolutely on the same origin, and on `localhost` (another host name);
/// - `/loop`: redirects to itself;
/// - `/drip`: 200 at once, then one byte every 100 ms, forever;
/// - `/chunked/{pad}`: `jwks` padded with spaces to `pad` bytes, chunked, no length;
/// - `/stall/{len}`: 200, `len` spaces at once, then nothing, never ending;
/// - `/endless`: 200 and spaces forever, chunked.
async fn scripted(
    discovery: impl FnOnce(&str) -> Value,
    jwks: Vec<u8>,
    elsewhere: &str,
) -> Arc<Scripted> {
    let (listener, base) = bind().await;
    let shared = Arc::new(Scripted {
        discovery: discovery(&base),
        base,
        elsewhere: elsewhere.to_owned(),
        jwks,
        jwks_hits: AtomicU64::new(0),
        discovery_hits: AtomicU64::new(0),
        slow: AtomicBool::new(false),
    });
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(s): State<Arc<Scripted>>| async move {
                s.discovery_hits.fetch_add(1, Ordering::SeqCst);
                if s.slow.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                axum::Json(s.discovery.clone()).into_response()
            }),
        )
        .route(
            "/jwks",
            get(|State(s): State<Arc<Scripted>>| async move {
                s.jwks_hits.fetch_add(1, Ordering::SeqCst);
                if s.slow.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                json_response(s.jwks.clone())
            }),
        )
        .route(
            "/redirect/{code}/elsewhere",
            get(
                |State(s): State<Arc<Scripted>>, Path(code): Path<u16>| async move {
                    redirect(StatusCode::from_u16(code).unwrap(), &s.elsewhere)
                },
            ),
        )
        .route(
            "/redirect/{code}/here",
            get(|Path(code): Path<u16>| async move {
                redirect(StatusCode::from_u16(code).unwrap(), "/jwks")
            }),
        )
        .route(
            "/redirect-absolute",
            get(|State(s): State<Arc<Scripted>>| async move {
                redirect(StatusCode::FOUND, &format!("{}/jwks", s.base))
            }),
        )
        .route(
            "/redirect-localhost",
            get(|State(s): State<Arc<Scripted>>| async move {
                let port = s.base.rsplit(':').next().unwrap_or_default().to_owned();
                redirect(StatusCode::FOUND, &format!("http://localhost:{port}/jwks"))
            }),
        )
        .route(
            "/loop",
            get(|| async { redirect(StatusCode::FOUND, "/loop") }),
        )
        .route(
            "/drip",
            get(|| async {
                let drip = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok::<_, std::io::Error>(Bytes::from_static(b" ")), ()))
                });
                json_response_stream(Body::from_stream(drip))
            }),
        )
        .route(
            "/chunked/{pad}",
            get(
                |State(s): State<Arc<Scripted>>, Path(pad): Path<usize>| async move {
                    let mut body = s.jwks.clone();
                    if body.len() < pad {
                        body.resize(pad, b' ');
                    }
                    let chunks: Vec<Result<Bytes, std::io::Error>> = body
                        .chunks(16 * 1024)
                        .map(|c| Ok(Bytes::copy_from_slice(c)))
                        .collect();
                    json_response_stream(Body::from_stream(futures_util::stream::iter(chunks)))
                },
            ),
        )
        .route(
            "/stall/{len}",
            get(|Path(len): Path<usize>| async move {
                let head = Bytes::from(vec![b' '; len]);
                let stall = futures_util::stream::iter([Ok::<_, std::io::Error>(head)])
                    .chain(futures_util::stream::pending());
                json_response_stream(Body::from_stream(stall))
            }),
        )
        .route(
            "/endless",
            get(|| async {
                let spaces = Bytes::from(vec![b' '; 16 * 1024]);
                let endless = futures_util::stream::repeat_with(move || {
                    Ok::<_, std::io::Error>(spaces.clone())
                });
                json_response_stream(Body::from_stream(endless))
            }),
        )
        .with_state(Arc::clone(&shared));
    serve(listener, app);
    shared
}

fn json_response_stream(body: Body) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// Builds a discovery document from the server's base URL.
type DocFn = Box<dyn FnOnce(&str) -> Value>;

/// A discovery document that is correct for `base`.
fn honest_discovery(base: &str) -> Value {
    json!({ "issuer": base, "jwks_uri": format!("{base}/jwks") })
}

#[track_caller]
fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, KeyError>, issuer: &str) {
    match result {
        Err(KeyError::Unavailable { issuer: got, .. }) => assert_eq!(got, issuer),
        other => panic!("expected KeyError::Unavailable, got {other:?}"),
    }
}

/// Runs `fut` and checks that it finished within [`QUICK`].
async fn quickly<T>(fut: impl Future<Output = T>) -> T {
    let start = Instant::now();
    let out = fut.await;
    let took = start.elapsed();
    assert!(took < QUICK, "took {took:?}");
    out
}

/// Polls `cond` every 10 ms for at most 2 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `n` tasks released together by a barrier, each calling `keys_for(issuer, kid)`.
async fn burst(
    cache: &Arc<KeyCache>,
    issuer: &str,
    kid: &str,
    n: usize,
) -> Vec<Result<Arc<KeySet>, KeyError>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (cache, barrier) = (Arc::clone(cache), Arc::clone(&barrier));
            let (issuer, kid) = (issuer.to_owned(), kid.to_owned());
            tokio::spawn(async move {
                barrier.wait().await;
                cache.keys_for(&issuer, &kid).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

// ---------------------------------------------------------------------------------------
// 1-2. Discovery and caching
// ---------------------------------------------------------------------------------------

/// Rule: `jwks_uri` is found through `<issuer>/.well-known/openid-configuration`, and keys
/// are cached (a second lookup makes no request).
#[tokio::test]
async fn rule_discovery_finds_jwks_and_keys_are_cached() {
    let gh = fake().await;
    let iss = gh.issuer();
    let kid = gh.current_key().kid().to_owned();
    // Zero cooldown: only the cache can explain the absence of a second request.
    let cache = cache_for(&iss, None, config(Duration::ZERO));
    assert!(!cache.has_keys(&iss), "nothing is fetched before first use");
    assert_eq!((gh.discovery_requests(), gh.jwks_requests()), (0, 0));

    let keys = cache.keys_for(&iss, &kid).await.unwrap();
    assert!(keys.contains(&kid));
    assert_eq!((gh.discovery_requests(), gh.jwks_requests()), (1, 1));
    assert!(cache.has_keys(&iss));

    for _ in 0..3 {
        let again = cache.keys_for(&iss, &kid).await.unwrap();
        assert!(again.contains(&kid));
    }
    assert_eq!((gh.discovery_requests(), gh.jwks_requests()), (1, 1));
}

/// Rule: a configured `jwks_url` is used as is; discovery is skipped.
#[tokio::test]
async fn rule_configured_jwks_url_skips_discovery() {
    let gh = fake().await;
    let iss = gh.issuer();
    let kid = gh.current_key().kid().to_owned();
    let cache = cache_for(&iss, Some(gh.jwks_url()), config(Duration::ZERO));

    let keys = cache.keys_for(&iss, &kid).await.unwrap();
    assert!(keys.contains(&kid));
    cache.refresh_all().await;
    assert!(cache.keys_for(&iss, &kid).await.unwrap().contains(&kid));
    assert_eq!(gh.discovery_requests(), 0);
    assert_eq!(gh.jwks_requests(), 2);
}

// ---------------------------------------------------------------------------------------
// 3. Rotation
// ---------------------------------------------------------------------------------------

/// Rule: an unknown `kid` triggers one refresh; after GitHub rotates, the new kid is found
/// (and the old one, still published, keeps working).
#[tokio::test]
async fn rule_unknown_kid_after_rotation_triggers_exactly_one_refresh() {
    let gh = fake().await;
    let iss = gh.issuer();
    let old = gh.current_key();
    let cache = cache_for(&iss, None, config(Duration::ZERO));
    assert!(
        cache
            .keys_for(&iss, old.kid())
            .await
            .unwrap()
            .contains(old.kid())
    );
    let (d0, j0) = (gh.discovery_requests(), gh.jwks_requests());

    let new = rotate(&gh, false).await;
    let keys = cache.keys_for(&iss, new.kid()).await.unwrap();
    assert!(keys.contains(new.kid()));
    assert!(
        keys.contains(old.kid()),
        "the replaced key is still published"
    );
    assert_eq!(gh.jwks_requests(), j0 + 1);
    assert_eq!(gh.discovery_requests(), d0 + 1);

    // Both are now served from the cache.
    assert!(
        cache
            .keys_for(&iss, new.kid())
            .await
            .unwrap()
            .contains(new.kid())
    );
    assert!(
        cache
            .keys_for(&iss, old.kid())
            .await
            .unwrap()
            .contains(old.kid())
    );
    assert_eq!(gh.jwks_requests(), j0 + 1);
}

/// Rule: a refresh replaces the cached set, so a key GitHub withdrew stops being served.
#[tokio::test]
async fn rule_retired_key_leaves_the_cache_on_refresh() {
    let gh = fake().await;
    let iss = gh.issuer();
    let old = gh.current_key();
    let cache = cache_for(&iss, Some(gh.jwks_url()), config(Duration::ZERO));
    cache.keys_for(&iss, old.kid()).await.unwrap();

    let new = rotate(&gh, true).await;
    let keys = cache.keys_for(&iss, new.kid()).await.unwrap();
    assert!(keys.contains(new.kid()));
    assert!(!keys.contains(old.kid()));
    assert_eq!(gh.jwks_requests(), 2);
}

// ---------------------------------------------------------------------------------------
// 4. Single flight
// ---------------------------------------------------------------------------------------

/// Rule: the unknown-`kid` refresh is single-flight: 32 concurrent lookups make one fetch,
/// on a cold cache and on a warm one (after the cooldown has passed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rule_single_flight_32_concurrent_lookups_make_one_fetch() {
    let gh = fake().await;
    let iss = gh.issuer();
    let kid = gh.current_key().kid().to_owned();
    let cooldown = Duration::from_millis(300);
    let cache = Arc::new(cache_for(&iss, None, config(cooldown)));

    // Cold cache.
    for result in burst(&cache, &iss, &kid, 32).await {
        assert!(result.unwrap().contains(&kid));
    }
    assert_eq!((gh.discovery_requests(), gh.jwks_requests()), (1, 1));

    // Warm cache, unknown kid, cooldown over.
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    for result in burst(&cache, &iss, UNKNOWN_KID, 32).await {
        let keys = result.unwrap();
        assert!(!keys.contains(UNKNOWN_KID));
        assert!(keys.contains(&kid), "the cached set is returned");
    }
    assert_eq!((gh.discovery_requests(), gh.jwks_requests()), (2, 2));
}

/// Rule: single flight holds on its own, without the cooldown: with a zero cooldown and a
/// JWKS that takes 300 ms, 32 concurrent lookups of an unknown kid still make one fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rule_single_flight_without_cooldown_while_fetch_is_slow() {
    let key = test_key("slow-key").await;
    let slow_server = scripted_delay(&key, Duration::from_millis(300)).await;
    let slow_iss = slow_server.0.clone();
    let slow_cache = Arc::new(cache_for(
        &slow_iss,
        Some(format!("{slow_iss}/jwks")),
        config(Duration::ZERO),
    ));
    // Cold cache: the first lookup fetches, the 31 others wait for it.
    for result in burst(&slow_cache, &slow_iss, UNKNOWN_KID, 32).await {
        assert!(result.unwrap().contains("slow-key"));
    }
    assert_eq!(slow_server.1.load(Ordering::SeqCst), 1);

    // And with keys cached: one more fetch for the whole burst.
    for result in burst(&slow_cache, &slow_iss, UNKNOWN_KID, 32).await {
        assert!(result.unwrap().contains("slow-key"));
    }
    assert_eq!(slow_server.1.load(Ordering::SeqCst), 2);
}

/// A JWKS-only server at `/jwks` answering after `delay`; returns its base and hit count.
async fn scripted_delay(key: &TestKey, delay: Duration) -> (String, Arc<AtomicU64>) {
    let (listener, base) = bind().await;
    let hits = Arc::new(AtomicU64::new(0));
    let body = jwks_bytes(&[key]);
    let counter = Arc::clone(&hits);
    let app = Router::new().route(
        "/jwks",
        get(move || {
            let (body, counter) = (body.clone(), Arc::clone(&counter));
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                json_response(body)
            }
        }),
    );
    serve(listener, app);
    (base, hits)
}

// ---------------------------------------------------------------------------------------
// 5. Cooldown
// ---------------------------------------------------------------------------------------

/// Rule: an unknown `kid` triggers no refresh when one happened less than the cooldown
/// ago (the cached set is returned); once the cooldown has passed, it triggers one.
#[tokio::test]
async fn rule_unknown_kid_cooldown_bounds_refreshes() {
    let gh = fake().await;
    let iss = gh.issuer();
    let kid = gh.current_key().kid().to_owned();
    let cooldown = Duration::from_millis(500);
    let cache = cache_for(&iss, Some(gh.jwks_url()), config(cooldown));
    assert_eq!(cache.config().unknown_kid_cooldown, cooldown);

    cache.keys_for(&iss, &kid).await.unwrap();
    assert_eq!(gh.jwks_requests(), 1);

    // Within the cooldown: no request, the cached set.
    for _ in 0..5 {
        let keys = cache.keys_for(&iss, UNKNOWN_KID).await.unwrap();
        assert!(!keys.contains(UNKNOWN_KID));
        assert!(keys.contains(&kid));
    }
    assert_eq!(gh.jwks_requests(), 1);

    // After it: exactly one fetch, then quiet again.
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    let keys = cache.keys_for(&iss, UNKNOWN_KID).await.unwrap();
    assert!(!keys.contains(UNKNOWN_KID));
    assert_eq!(gh.jwks_requests(), 2);
    cache.keys_for(&iss, UNKNOWN_KID).await.unwrap();
    assert_eq!(gh.jwks_requests(), 2);
}

/// Rule: the cooldown also bounds retries while nothing is cached and the issuer is down
/// (a failed fetch is not retried by every request).
#[tokio::test]
async fn rule_cooldown_bounds_retries_of_a_failed_fetch() {
    let gh = fake().await;
    let iss = gh.issuer();
    let kid = gh.current_key().kid().to_owned();
    let cooldown = Duration::from_millis(500);
    let cache = cache_for(&iss, Some(gh.jwks_url()), config(cooldown));
    gh.set_outage(true);

    assert_unavailable(cache.keys_for(&iss, &kid).await, &iss);
    assert_unavailable(cache.keys_for(&iss, &kid).await, &iss);
    assert_eq!(gh.jwks_requests(), 1);

    gh.set_outage(false);
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    assert!(cache.keys_for(&iss, &kid).await.unwrap().contains(&kid));
    assert_eq!(gh.jwks_requests(), 2);
}

// ---------------------------------------------------------------------------------------
// 6. Outage
// ---------------------------------------------------------------------------------------

/// Rule: while the issuer is down, cached keys keep working; with nothing cached, keys
/// are unavailable (fail closed); once it is back, keys are fetched again.
#[tokio::test]
async fn rule_outage_keeps_serving_cached_keys() {
    let gh = fake().await;
    let iss = gh.issuer();
    let kid = gh.current_key().kid().to_owned();
    let cache = cache_for(&iss, None, config(Duration::ZERO));
    cache.keys_for(&iss, &kid).await.unwrap();

    gh.set_outage(true);
    assert!(cache.keys_for(&iss, &kid).await.unwrap().contains(&kid));

    // An unknown kid tries to refresh (and fails): the cached set comes back, no error.
    let discovery_before = gh.discovery_requests();
    let keys = cache.keys_for(&iss, UNKNOWN_KID).await.unwrap();
    assert!(!keys.contains(UNKNOWN_KID));
    assert!(keys.contains(&kid));
    assert_eq!(
        gh.discovery_requests(),
        discovery_before + 1,
        "a refresh was tried"
    );

    // A scheduled refresh during the outage keeps the keys too.
    cache.refresh_all().await;
    assert!(cache.has_keys(&iss));
    assert!(cache.keys_for(&iss, &kid).await.unwrap().contains(&kid));

    // Nothing cached: unavailable, with discovery and with a configured jwks_url.
    let cold = cache_for(&iss, None, config(Duration::ZERO));
    assert_unavailable(cold.keys_for(&iss, &kid).await, &iss);
    let cold_direct = cache_for(&iss, Some(gh.jwks_url()), config(Duration::ZERO));
    assert_unavailable(cold_direct.keys_for(&iss, &kid).await, &iss);
    assert!(!cold.has_keys(&iss) && !cold_direct.has_keys(&iss));

    // Back up: the cold caches recover.
    gh.set_outage(false);
    assert!(cold.keys_for(&iss, &kid).await.unwrap().contains(&kid));
    assert!(
        cold_direct
            .keys_for(&iss, &kid)
            .await
            .unwrap()
            .contains(&kid)
    );
}

// ---------------------------------------------------------------------------------------
// 7. Bad key sets
// ---------------------------------------------------------------------------------------

/// Rule: a garbled, empty or oversized (> 256 KiB) key set is never cached: cached keys
/// are kept, and with nothing cached the keys are unavailable.
#[tokio::test]
async fn rule_bad_jwks_never_replaces_cached_keys() {
    let gh = fake().await;
    let iss = gh.issuer();
    let key = gh.current_key();
    let kid = key.kid().to_owned();

    // A valid JWKS padded with whitespace past the cap: only the size is wrong.
    let mut oversized = jwks_bytes(&[&key]);
    oversized.resize(JWKS_CAP + 1, b' ');
    let bad: [(&str, Vec<u8>); 6] = [
        ("html", b"<html>".to_vec()),
        ("empty body", Vec::new()),
        ("empty set", br#"{"keys":[]}"#.to_vec()),
        (
            "no usable key",
            br#"{"keys":[{"kty":"EC","kid":"ec","crv":"P-256","x":"AA","y":"AA"}]}"#.to_vec(),
        ),
        ("not a jwks", br#"{"foo":1}"#.to_vec()),
        ("oversized", oversized),
    ];

    for (what, body) in bad {
        gh.set_jwks_override(None);
        let cache = cache_for(&iss, Some(gh.jwks_url()), config(Duration::ZERO));
        cache.keys_for(&iss, &kid).await.unwrap();

        gh.set_jwks_override(Some(body));
        let before = gh.jwks_requests();
        cache.refresh_all().await;
        assert_eq!(gh.jwks_requests(), before + 1, "{what}: refresh was made");
        assert!(cache.has_keys(&iss), "{what}");
        let keys = cache.keys_for(&iss, &kid).await.unwrap();
        assert!(keys.contains(&kid), "{what}: cached keys kept");

        // An unknown kid refreshes again and still gets the cached set.
        let keys = cache.keys_for(&iss, UNKNOWN_KID).await.unwrap();
        assert!(keys.contains(&kid), "{what}");
        assert_eq!(gh.jwks_requests(), before + 2, "{what}");

        // Nothing cached: unavailable, and still nothing cached afterwards.
        let cold = cache_for(&iss, Some(gh.jwks_url()), config(Duration::ZERO));
        assert_unavailable(cold.keys_for(&iss, &kid).await, &iss);
        cold.refresh_all().await;
        assert!(!cold.has_keys(&iss), "{what}: a bad set is never cached");
    }
}

/// Rule: the size cap is 256 KiB: a valid set of exactly that size is accepted.
#[tokio::test]
async fn rule_jwks_exactly_at_the_cap_is_accepted() {
    let gh = fake().await;
    let iss = gh.issuer();
    let key = gh.current_key();
    let mut at_cap = jwks_bytes(&[&key]);
    at_cap.resize(JWKS_CAP, b' ');
    gh.set_jwks_override(Some(at_cap));
    let cache = cache_for(&iss, Some(gh.jwks_url()), config(Duration::ZERO));
    assert!(
        cache
            .keys_for(&iss, key.kid())
            .await
            .unwrap()
            .contains(key.kid())
    );
}

/// Rule: the size cap holds for bodies without a `Content-Length` (chunked), including a
/// body that never ends: the cached keys are kept and the call returns.
#[tokio::test]
async fn rule_chunked_oversized_and_endless_jwks_are_capped() {
    let key = test_key("chunk-key").await;
    let server = scripted(honest_discovery, jwks_bytes(&[&key]), "http://127.0.0.1:9").await;
    let iss = server.base.clone();

    // Control: a chunked body under the cap is accepted.
    let ok = cache_for(
        &iss,
        Some(format!("{iss}/chunked/0")),
        config(Duration::ZERO),
    );
    assert!(
        ok.keys_for(&iss, "chunk-key")
            .await
            .unwrap()
            .contains("chunk-key")
    );

    for path in [format!("chunked/{}", JWKS_CAP + 1), "endless".to_owned()] {
        let cold = cache_for(&iss, Some(format!("{iss}/{path}")), config(Duration::ZERO));
        assert_unavailable(quickly(cold.keys_for(&iss, "chunk-key")).await, &iss);
        assert!(!cold.has_keys(&iss), "{path}");
    }

    // Over the cap, then silence: only the streaming cap (not the timeout, 5 s here, nor
    // the parser) can end this call quickly.
    let patient = KeyCacheConfig {
        timeout: Duration::from_secs(5),
        ..config(Duration::ZERO)
    };
    let cold = cache_for(&iss, Some(format!("{iss}/stall/{}", JWKS_CAP + 1)), patient);
    assert_unavailable(quickly(cold.keys_for(&iss, "chunk-key")).await, &iss);
}

// ---------------------------------------------------------------------------------------
// 8. Discovery must stay on the issuer
// ---------------------------------------------------------------------------------------

/// Rule: the discovered `jwks_uri` must be on the issuer's host (scheme, host and port);
/// and the discovery document must name the configured issuer.
#[tokio::test]
async fn rule_discovered_jwks_uri_must_be_on_the_issuer() {
    let gh = fake().await;
    let key = test_key("k1").await;
    let jwks = jwks_bytes(&[&key]);
    let gh_jwks = gh.jwks_url();

    // Control: an honest document works, so the refusals below are about the document.
    let honest = scripted(honest_discovery, jwks.clone(), "http://127.0.0.1:9").await;
    let cache = cache_for(&honest.base, None, config(Duration::ZERO));
    assert!(
        cache
            .keys_for(&honest.base, "k1")
            .await
            .unwrap()
            .contains("k1")
    );
    assert_eq!(honest.jwks_hits(), 1);

    let cases: Vec<(&str, DocFn)> = vec![
        (
            "another port (the fake GitHub, which serves real keys)",
            Box::new(move |base: &str| json!({ "issuer": base, "jwks_uri": gh_jwks })),
        ),
        (
            "another loopback host, same port",
            Box::new(|base: &str| {
                let other = base.replace("127.0.0.1", "127.0.0.2");
                json!({ "issuer": base, "jwks_uri": format!("{other}/jwks") })
            }),
        ),
        (
            "localhost instead of 127.0.0.1",
            Box::new(|base: &str| {
                let other = base.replace("127.0.0.1", "localhost");
                json!({ "issuer": base, "jwks_uri": format!("{other}/jwks") })
            }),
        ),
        (
            "plain http elsewhere",
            Box::new(|base: &str| json!({ "issuer": base, "jwks_uri": "http://example.com/jwks" })),
        ),
        (
            "another issuer named",
            Box::new(|base: &str| {
                json!({ "issuer": "https://token.actions.githubusercontent.com",
                        "jwks_uri": format!("{base}/jwks") })
            }),
        ),
        (
            "issuer with a trailing slash",
            Box::new(
                |base: &str| json!({ "issuer": format!("{base}/"), "jwks_uri": format!("{base}/jwks") }),
            ),
        ),
        (
            "no jwks_uri",
            Box::new(|base: &str| json!({ "issuer": base })),
        ),
        (
            "jwks_uri not a URL",
            Box::new(|base: &str| json!({ "issuer": base, "jwks_uri": "/jwks" })),
        ),
    ];
    for (what, doc) in cases {
        let server = scripted(doc, jwks.clone(), "http://127.0.0.1:9").await;
        let cache = cache_for(&server.base, None, config(Duration::ZERO));
        assert_unavailable(cache.keys_for(&server.base, "k1").await, &server.base);
        assert_eq!(server.discovery_hits.load(Ordering::SeqCst), 1, "{what}");
        assert_eq!(server.jwks_hits(), 0, "{what}: the JWKS was not fetched");
        assert!(!cache.has_keys(&server.base), "{what}");
    }
    assert_eq!(
        gh.jwks_requests(),
        0,
        "keys were never fetched from another origin"
    );
}

// ---------------------------------------------------------------------------------------
// 9. Redirects
// ---------------------------------------------------------------------------------------

/// Rule: a redirect to another origin is refused (for the JWKS and for discovery);
/// redirects within the issuer's origin are followed, a redirect loop is bounded.
#[tokio::test]
async fn rule_redirect_to_another_origin_is_refused() {
    let gh = fake().await;
    let key = test_key("k1").await;
    let server = scripted(honest_discovery, jwks_bytes(&[&key]), &gh.jwks_url()).await;
    let iss = server.base.clone();
    let lookup = |path: &str| {
        let cache = cache_for(&iss, Some(format!("{iss}{path}")), config(Duration::ZERO));
        let iss = iss.clone();
        async move { cache.keys_for(&iss, "k1").await }
    };

    // Same origin: followed (relative and absolute Location).
    for path in [
        "/redirect/302/here",
        "/redirect/307/here",
        "/redirect-absolute",
    ] {
        assert!(lookup(path).await.unwrap().contains("k1"), "{path}");
    }
    assert_eq!(server.jwks_hits(), 3);

    // Another origin: not followed, whatever the status.
    for code in [301, 302, 303, 307, 308] {
        assert_unavailable(lookup(&format!("/redirect/{code}/elsewhere")).await, &iss);
    }
    // Same server, another host name: another origin too.
    assert_unavailable(lookup("/redirect-localhost").await, &iss);
    assert_eq!(server.jwks_hits(), 3);
    assert_eq!(gh.jwks_requests(), 0, "the other origin was never asked");

    // A loop ends.
    assert_unavailable(quickly(lookup("/loop")).await, &iss);
}

/// Rule: a discovery document redirected to another origin is refused too.
#[tokio::test]
async fn rule_discovery_redirect_to_another_origin_is_refused() {
    let gh = fake().await;
    let kid = gh.current_key().kid().to_owned();
    let (listener, iss) = bind().await;
    let target = format!("{}/.well-known/openid-configuration", gh.issuer());
    let app = Router::new().route(
        "/.well-known/openid-configuration",
        get(move || {
            let target = target.clone();
            async move { redirect(StatusCode::FOUND, &target) }
        }),
    );
    serve(listener, app);

    let cache = cache_for(&iss, None, config(Duration::ZERO));
    assert_unavailable(cache.keys_for(&iss, &kid).await, &iss);
    assert_eq!((gh.discovery_requests(), gh.jwks_requests()), (0, 0));
}

// ---------------------------------------------------------------------------------------
// 10. Timeouts
// ---------------------------------------------------------------------------------------

/// Rule: requests are time-limited: an issuer that answers late (headers, discovery, or a
/// body that trickles) runs into the timeout; cached keys are then still served.
#[tokio::test]
async fn rule_slow_issuer_runs_into_timeouts() {
    let key = test_key("k1").await;
    let server = scripted(honest_discovery, jwks_bytes(&[&key]), "http://127.0.0.1:9").await;
    let iss = server.base.clone();
    let fast = KeyCacheConfig {
        unknown_kid_cooldown: Duration::ZERO,
        timeout: Duration::from_millis(300),
        ..KeyCacheConfig::default()
    };

    // Warm a cache while the server is quick.
    let warm = cache_for(&iss, None, fast);
    warm.keys_for(&iss, "k1").await.unwrap();

    server.slow.store(true, Ordering::SeqCst);
    // JWKS slow (configured jwks_url), discovery slow, body trickling.
    for jwks_url in [
        Some(format!("{iss}/jwks")),
        None,
        Some(format!("{iss}/drip")),
    ] {
        let cold = cache_for(&iss, jwks_url.clone(), fast);
        assert_unavailable(quickly(cold.keys_for(&iss, "k1")).await, &iss);
        assert!(!cold.has_keys(&iss), "{jwks_url:?}");
    }

    // The warm cache tries to refresh for an unknown kid, times out, serves what it has.
    let keys = quickly(warm.keys_for(&iss, UNKNOWN_KID)).await.unwrap();
    assert!(keys.contains("k1"));
    quickly(warm.refresh_all()).await;
    assert!(warm.keys_for(&iss, "k1").await.unwrap().contains("k1"));
}

// ---------------------------------------------------------------------------------------
// 11. Configuration checks
// ---------------------------------------------------------------------------------------

fn new_cache(issuer: &str, jwks_url: Option<&str>) -> Result<KeyCache, KeyError> {
    KeyCache::new(
        &[IssuerConfig {
            issuer: issuer.to_owned(),
            jwks_url: jwks_url.map(str::to_owned),
        }],
        KeyCacheConfig::default(),
    )
}

/// Rule: `http://` issuers are accepted only for loopback hosts; a configured `jwks_url`
/// must be on the issuer's host.
#[test]
fn rule_new_refuses_insecure_issuers_and_foreign_jwks_urls() {
    for ok in [
        "https://token.actions.githubusercontent.com",
        "https://token.actions.githubusercontent.com/octo-enterprise",
        "https://token.actions.octo.ghe.com",
        "https://ghes.example.com/_services/token",
        "http://127.0.0.1:8080",
        "http://localhost:3000",
        "http://[::1]:9000",
    ] {
        assert!(new_cache(ok, None).is_ok(), "{ok}");
    }
    for insecure in [
        "http://token.actions.githubusercontent.com",
        "http://10.0.0.1:8080",
        "http://localhost.evil.com",
        "http://127.0.0.1.nip.io",
    ] {
        let err = new_cache(insecure, None).unwrap_err();
        assert!(
            matches!(err, KeyError::Url(UrlError::InsecureScheme(_))),
            "{insecure}: {err:?}"
        );
    }
    for bad in [
        "ftp://127.0.0.1",
        "file:///etc/passwd",
        "not a url",
        "https://user:pw@token.actions.githubusercontent.com",
        "https://token.actions.githubusercontent.com/#x",
        "https://token.actions.githubusercontent.com/?x=1",
    ] {
        let err = new_cache(bad, None).unwrap_err();
        assert!(matches!(err, KeyError::Url(_)), "{bad}: {err:?}");
    }

    let gh = "https://token.actions.githubusercontent.com";
    assert!(
        new_cache(
            gh,
            Some("https://token.actions.githubusercontent.com/.well-known/jwks")
        )
        .is_ok()
    );
    for foreign in [
        "https://evil.example/.well-known/jwks",
        "https://token.actions.githubusercontent.com.evil.example/.well-known/jwks",
        "https://token.actions.githubusercontent.com:8443/.well-known/jwks",
        "http://token.actions.githubusercontent.com/.well-known/jwks",
        "http://127.0.0.1/.well-known/jwks",
    ] {
        let err = new_cache(gh, Some(foreign)).unwrap_err();
        assert!(matches!(err, KeyError::Url(_)), "{foreign}: {err:?}");
    }
    // Loopback: the port is part of the origin.
    assert!(new_cache("http://127.0.0.1:1000", Some("http://127.0.0.1:1000/jwks")).is_ok());
    assert!(matches!(
        new_cache("http://127.0.0.1:1000", Some("http://127.0.0.1:1001/jwks")),
        Err(KeyError::Url(_))
    ));

    // One bad issuer among good ones refuses the whole configuration.
    let mixed = KeyCache::new(
        &[
            IssuerConfig {
                issuer: gh.to_owned(),
                jwks_url: None,
            },
            IssuerConfig {
                issuer: "http://issuer.example".to_owned(),
                jwks_url: None,
            },
        ],
        KeyCacheConfig::default(),
    );
    assert!(matches!(mixed, Err(KeyError::Url(_))));
}

/// Rule: runproof never fetches keys for an issuer that configuration does not name, even
/// one differing only by a trailing slash.
#[tokio::test]
async fn rule_unconfigured_issuer_is_never_fetched() {
    let gh = fake().await;
    let kid = gh.current_key().kid().to_owned();
    let cache = cache_for(&gh.issuer(), None, config(Duration::ZERO));
    for other in [
        "https://token.actions.githubusercontent.com".to_owned(),
        format!("{}/", gh.issuer()),
        gh.issuer().replace("127.0.0.1", "localhost"),
    ] {
        assert_eq!(
            cache.keys_for(&other, &kid).await.unwrap_err(),
            KeyError::UnknownIssuer
        );
        assert!(!cache.has_keys(&other));
    }
    assert_eq!((gh.discovery_requests(), gh.jwks_requests()), (0, 0));
}

// ---------------------------------------------------------------------------------------
// 12. Background refresh
// ---------------------------------------------------------------------------------------

/// Rule: keys are refreshed in the background every `refresh_interval`; the refresher
/// picks up rotations by itself, keeps the keys through an outage, and stops when aborted.
#[tokio::test]
async fn rule_background_refresher_fetches_repeatedly() {
    let gh = fake().await;
    let iss = gh.issuer();
    let cfg = KeyCacheConfig {
        refresh_interval: Duration::from_millis(100),
        // Long: lookups below never refresh by themselves, only the refresher does.
        unknown_kid_cooldown: Duration::from_secs(60),
        timeout: Duration::from_secs(2),
    };
    assert_eq!(
        KeyCacheConfig::default().refresh_interval,
        Duration::from_secs(600)
    );
    let cache = Arc::new(cache_for(&iss, None, cfg));
    let task = cache.spawn_refresher();

    eventually("three background fetches", || gh.jwks_requests() >= 3).await;
    assert!(cache.has_keys(&iss));

    // A rotation shows up without any unknown-kid refresh.
    let new = rotate(&gh, true).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cache
        .keys_for(&iss, new.kid())
        .await
        .unwrap()
        .contains(new.kid())
    {
        assert!(
            Instant::now() < deadline,
            "the refresher did not pick up the rotation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // An outage: the refresher keeps trying, the keys stay.
    gh.set_outage(true);
    // Discovery answers 503 first, so it is the counter that moves.
    let during = gh.discovery_requests();
    eventually("refreshes during the outage", || {
        gh.discovery_requests() >= during + 2
    })
    .await;
    assert!(
        cache
            .keys_for(&iss, new.kid())
            .await
            .unwrap()
            .contains(new.kid())
    );
    gh.set_outage(false);

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopped = gh.jwks_requests();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gh.jwks_requests(), stopped, "no fetch after abort");
}
