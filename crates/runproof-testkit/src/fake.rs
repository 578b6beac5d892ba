use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::{RunSpec, TestKey, TestkitError, jwks_json};

/// The claims GitHub's discovery document lists, in its order.
const CLAIMS_SUPPORTED: &[&str] = &[
    "sub",
    "aud",
    "exp",
    "iat",
    "iss",
    "jti",
    "nbf",
    "ref",
    "sha",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "enterprise",
    "enterprise_id",
    "run_id",
    "run_number",
    "run_attempt",
    "actor",
    "actor_id",
    "workflow",
    "workflow_ref",
    "workflow_sha",
    "head_ref",
    "base_ref",
    "event_name",
    "ref_type",
    "ref_protected",
    "environment",
    "environment_node_id",
    "job_workflow_ref",
    "job_workflow_sha",
    "repository_visibility",
    "runner_environment",
    "issuer_scope",
    "check_run_id",
];

/// A fake GitHub on `127.0.0.1`: OIDC discovery, JWKS and the Actions token-request
/// endpoint, all backed by in-memory state the test controls.
///
/// Clones share the same server. The server stops on [`FakeGithub::shutdown`] or when
/// the last clone is dropped.
#[derive(Clone)]
pub struct FakeGithub {
    handle: Arc<Handle>,
}

/// Owned by the clones only (not by the server task), so dropping the last clone
/// drops `shutdown` and the server notices.
struct Handle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
}

/// State the HTTP handlers see.
struct Shared {
    addr: SocketAddr,
    request_token: String,
    outage: AtomicBool,
    time_offset: AtomicI64,
    jwks_requests: AtomicU64,
    discovery_requests: AtomicU64,
    state: Mutex<MutableState>,
}

struct MutableState {
    current: TestKey,
    /// Keys rotated out but still published, newest first.
    previous: Vec<TestKey>,
    run: RunSpec,
    jwks_override: Option<Vec<u8>>,
}

impl FakeGithub {
    /// Binds `127.0.0.1:0`, generates one signing key (kid: 40 upper-case hex digits)
    /// and serves in a background tokio task. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`TestkitError::Listen`] if the port cannot be bound, key errors as
    /// [`TestKey::generate`].
    pub async fn start() -> Result<FakeGithub, TestkitError> {
        // RSA generation takes long enough in debug builds to stall a current-thread runtime.
        let key = tokio::task::spawn_blocking(TestKey::generate_with_thumbprint_kid)
            .await
            .map_err(|e| TestkitError::Task(e.to_string()))??;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(TestkitError::Listen)?;
        let addr = listener.local_addr().map_err(TestkitError::Listen)?;
        let request_token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let shared = Arc::new(Shared {
            addr,
            request_token,
            outage: AtomicBool::new(false),
            time_offset: AtomicI64::new(0),
            jwks_requests: AtomicU64::new(0),
            discovery_requests: AtomicU64::new(0),
            state: Mutex::new(MutableState {
                current: key,
                previous: Vec::new(),
                run: RunSpec::default(),
                jwks_override: None,
            }),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/.well-known/jwks", get(jwks))
            .route("/_apis/token", get(token_request))
            .with_state(Arc::clone(&shared));
        let (shutdown, mut stop) = watch::channel(false);
        tokio::spawn(async move {
            let signal = async move {
                // Resolves on `shutdown()` and also when the sender is dropped.
                let _ = stop.wait_for(|down| *down).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::warn!(%error, "fake GitHub server stopped with an error");
            }
        });
        tracing::debug!(%addr, "fake GitHub listening");
        Ok(FakeGithub {
            handle: Arc::new(Handle { shared, shutdown }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// The bound loopback address.
    pub fn addr(&self) -> SocketAddr {
        self.shared().addr
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The OIDC issuer URL: the same as [`FakeGithub::base_url`].
    pub fn issuer(&self) -> String {
        self.base_url()
    }

    /// The issuer + `/.well-known/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks", self.issuer())
    }

    /// The value `ACTIONS_ID_TOKEN_REQUEST_URL` would have: it already carries a query
    /// string, so clients append `&audience=...`.
    pub fn token_request_url(&self) -> String {
        format!("{}/_apis/token?api-version=2.0", self.base_url())
    }

    /// The value `ACTIONS_ID_TOKEN_REQUEST_TOKEN` would have (random per server).
    pub fn token_request_token(&self) -> String {
        self.shared().request_token.clone()
    }

    /// The key that signs new tokens.
    pub fn current_key(&self) -> TestKey {
        self.shared().lock().current.clone()
    }

    /// Every key the JWKS publishes, current first.
    pub fn published_keys(&self) -> Vec<TestKey> {
        self.shared().lock().published()
    }

    /// Generates a new key and makes it current. The replaced key stays in the JWKS (as
    /// GitHub does during rotation); with `retire_old`, every older key is withdrawn and
    /// only the new one is published.
    ///
    /// # Errors
    /// As [`TestKey::generate`]; the published keys are unchanged then.
    pub fn rotate_key(&self, retire_old: bool) -> Result<TestKey, TestkitError> {
        let key = TestKey::generate_with_thumbprint_kid()?;
        let mut state = self.shared().lock();
        let old = std::mem::replace(&mut state.current, key.clone());
        if retire_old {
            state.previous.clear();
        } else {
            state.previous.insert(0, old);
        }
        Ok(key)
    }

    /// While on, discovery and JWKS answer 503 (the issuer is down). The token-request
    /// endpoint keeps working.
    pub fn set_outage(&self, down: bool) {
        self.shared().outage.store(down, Ordering::SeqCst);
    }

    /// Replaces the run that new tokens describe.
    pub fn set_run(&self, run: RunSpec) {
        self.shared().lock().run = run;
    }

    /// The run that new tokens describe.
    pub fn run(&self) -> RunSpec {
        self.shared().lock().run.clone()
    }

    /// GitHub-shaped claims for the current run, for `audience`. Ids are JSON strings;
    /// `jti` is a fresh uuid v4 on every call; `iat` is now (real unix time plus the
    /// configured offset), `nbf = iat - 5`, `exp = iat + 300`.
    pub fn claims(&self, audience: &str) -> Map<String, Value> {
        let run = self.run();
        run.claims(&self.issuer(), audience, self.shared().now())
    }

    /// Signs `claims` as given with the current key, under GitHub's header shape
    /// (`typ`, `alg`, `kid`, `x5t`).
    ///
    /// # Errors
    /// As [`TestKey::sign`].
    pub fn mint(&self, claims: &Map<String, Value>) -> Result<String, TestkitError> {
        self.current_key()
            .sign_claims(&Value::Object(claims.clone()))
    }

    /// Shorthand for `mint(&claims(audience))`.
    ///
    /// # Errors
    /// As [`TestKey::sign`].
    pub fn token(&self, audience: &str) -> Result<String, TestkitError> {
        self.mint(&self.claims(audience))
    }

    /// Shifts the clock used for `iat`/`nbf`/`exp` by `secs` (negative: the past).
    pub fn set_time_offset(&self, secs: i64) {
        self.shared().time_offset.store(secs, Ordering::SeqCst);
    }

    /// How many JWKS GETs were served, including those answered 503 during an outage.
    pub fn jwks_requests(&self) -> u64 {
        self.shared().jwks_requests.load(Ordering::SeqCst)
    }

    /// How many discovery GETs were served, including those answered 503 during an outage.
    pub fn discovery_requests(&self) -> u64 {
        self.shared().discovery_requests.load(Ordering::SeqCst)
    }

    /// Serves `body` verbatim with status 200 as the JWKS instead of the real keys
    /// (for garbage or oversized key-set tests); `None` restores the real JWKS.
    /// An outage still wins over the override.
    pub fn set_jwks_override(&self, body: Option<Vec<u8>>) {
        self.shared().lock().jwks_override = body;
    }

    /// Stops accepting connections; in-flight requests finish. Idempotent.
    pub fn shutdown(&self) {
        self.handle.shutdown.send_replace(true);
    }
}

impl fmt::Debug for FakeGithub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGithub")
            .field("addr", &self.addr())
            .field("current_kid", &self.current_key().kid())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, MutableState> {
        // Every update is a single assignment, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        real.saturating_add(self.time_offset.load(Ordering::SeqCst))
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn is_down(&self) -> bool {
        self.outage.load(Ordering::SeqCst)
    }
}

impl MutableState {
    fn published(&self) -> Vec<TestKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .cloned()
            .collect()
    }
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
        "issuer unavailable",
    )
        .into_response()
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Response {
    shared.discovery_requests.fetch_add(1, Ordering::SeqCst);
    if shared.is_down() {
        return unavailable();
    }
    let issuer = shared.issuer();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks"),
        "subject_types_supported": ["public", "pairwise"],
        "response_types_supported": ["id_token"],
        "claims_supported": CLAIMS_SUPPORTED,
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid"],
    }))
    .into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
    if shared.is_down() {
        return unavailable();
    }
    let (published, override_body) = {
        let state = shared.lock();
        (state.published(), state.jwks_override.clone())
    };
    match override_body {
        Some(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        None => axum::Json(jwks_json(&published.iter().collect::<Vec<_>>())).into_response(),
    }
}

async fn token_request(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !bearer_matches(&headers, &shared.request_token) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response();
    }
    let (key, run) = {
        let state = shared.lock();
        (state.current.clone(), state.run.clone())
    };
    let audience = match query.get("audience") {
        Some(aud) if !aud.is_empty() => aud.clone(),
        // GitHub's default audience when the client names none.
        _ => format!("https://github.com/{}", run.repository_owner),
    };
    let claims = run.claims(&shared.issuer(), &audience, shared.now());
    match key.sign_claims(&Value::Object(claims)) {
        Ok(jwt) => axum::Json(json!({ "value": jwt })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "fake GitHub could not sign a token");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    match value.split_once(' ') {
        Some((scheme, token)) => scheme.eq_ignore_ascii_case("bearer") && token.trim() == expected,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        assert!(!bearer_matches(&headers, "t"));
        for (value, ok) in [
            ("bearer t", true),
            ("Bearer t", true),
            ("BEARER t", true),
            ("Bearer u", false),
            ("Basic t", false),
            ("t", false),
            ("Bearer ", false),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(bearer_matches(&headers, "t"), ok, "{value}");
        }
    }
}
