//! The fake's in-memory state, shared by every route: the OIDC issuer's keys and run,
//! and the REST API's Apps, installations, tokens, runs, files and switches.
//!
//! It sits below every other module of the fake: it knows no routes and no HTTP.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::key::TestKey;
use crate::run::RunSpec;

/// Lifetime of installation access tokens, as on GitHub.
pub(crate) const ACCESS_TOKEN_TTL: i64 = 3600;

/// State the HTTP handlers see.
pub(crate) struct Shared {
    /// The bound loopback address: the issuer and the API's base URL.
    pub(crate) addr: SocketAddr,
    /// The `ACTIONS_ID_TOKEN_REQUEST_TOKEN` the token-request endpoint expects.
    pub(crate) request_token: String,
    /// Discovery and JWKS answer 503 while set.
    pub(crate) outage: AtomicBool,
    /// Seconds added to real time for `iat`/`nbf`/`exp` and App JWT checks.
    pub(crate) time_offset: AtomicI64,
    /// JWKS GETs served, for cache tests.
    pub(crate) jwks_requests: AtomicU64,
    /// Discovery GETs served, for cache tests.
    pub(crate) discovery_requests: AtomicU64,
    /// The issuer's keys and the run new tokens describe.
    pub(crate) state: Mutex<MutableState>,
    /// The REST API's state.
    pub(crate) api: Mutex<ApiState>,
}

/// The issuer's keys and the run new tokens describe.
pub(crate) struct MutableState {
    /// The key that signs new tokens.
    pub(crate) current: TestKey,
    /// Keys rotated out but still published, newest first.
    pub(crate) previous: Vec<TestKey>,
    /// The run new tokens describe.
    pub(crate) run: RunSpec,
    /// A body served verbatim as the JWKS instead of the real keys.
    pub(crate) jwks_override: Option<Vec<u8>>,
}

/// A repository an installation covers.
#[derive(Clone, Debug)]
pub(crate) struct Repo {
    pub(crate) id: u64,
    pub(crate) full_name: String,
}

impl Repo {
    pub(crate) fn new(id: u64, full_name: &str) -> Repo {
        Repo {
            id,
            full_name: full_name.to_owned(),
        }
    }
}

/// An installation of "the App" (any registered App sees every installation).
#[derive(Clone, Debug)]
pub(crate) struct Installation {
    pub(crate) account_login: String,
    pub(crate) account_id: u64,
    pub(crate) repositories: Vec<Repo>,
    pub(crate) created_at: i64,
    pub(crate) suspended_at: Option<i64>,
}

/// What a token may see.
#[derive(Clone, Debug)]
pub(crate) enum Grant {
    /// An installation access token: the installation's repositories now (optionally
    /// narrowed to some ids at issue time), while the installation exists, is not
    /// suspended and the token has not expired.
    Installation {
        installation_id: u64,
        repository_ids: Option<Vec<u64>>,
        expires_at: i64,
    },
    /// A run's `GITHUB_TOKEN`: exactly these repositories until revoked.
    Fixed {
        repositories: Vec<Repo>,
        owner_id: u64,
    },
}

/// Mutable REST state, behind [`Shared`]'s API mutex.
#[derive(Default)]
pub(crate) struct ApiState {
    pub(crate) apps: HashMap<u64, TestKey>,
    pub(crate) installations: BTreeMap<u64, Installation>,
    pub(crate) tokens: HashMap<String, Grant>,
    pub(crate) counters: HashMap<String, u64>,
    pub(crate) last_jwt_error: Option<String>,
    pub(crate) app_jwt_uses: u64,
    pub(crate) access_tokens_issued: u64,
    /// Lifetime of the installation tokens issued from now on; [`ACCESS_TOKEN_TTL`] when unset.
    pub(crate) access_token_ttl: Option<i64>,
    pub(crate) outage: bool,
    pub(crate) rate_limited: Option<u64>,
    /// Primary rate limits per credential: seconds until reset, by token.
    pub(crate) limited_tokens: HashMap<String, u64>,
    /// Primary rate limits of installations: every token of the installation is limited.
    pub(crate) limited_installations: HashMap<u64, u64>,
    /// The primary rate limit of App JWTs (every App).
    pub(crate) limited_app_jwt: Option<u64>,
    /// Workflow runs by (lower-case `owner/name`, run id): GitHub's run objects.
    pub(crate) runs: HashMap<(String, u64), Value>,
    /// File contents by (lower-case `owner/name`, path, commit).
    pub(crate) files: HashMap<(String, String, String), String>,
    /// Files on each repository's default branch, by (repository id, path): what
    /// `GET /repositories/{id}/contents/{path}` serves without a `ref`.
    pub(crate) default_branch_files: HashMap<(u64, String), String>,
}

impl Shared {
    /// Fresh state: `key` signs, the run is [`RunSpec::default`], no App, no installation.
    pub(crate) fn new(addr: SocketAddr, request_token: String, key: TestKey) -> Shared {
        Shared {
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
            api: Mutex::new(ApiState::default()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, MutableState> {
        // Every update is a single assignment, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The REST API state. Handlers never panic while holding it, and each update
    /// leaves it consistent, so a poisoned lock is still usable.
    pub(crate) fn api(&self) -> MutexGuard<'_, ApiState> {
        self.api.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        real.saturating_add(self.time_offset.load(Ordering::SeqCst))
    }

    pub(crate) fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn is_down(&self) -> bool {
        self.outage.load(Ordering::SeqCst)
    }
}

impl MutableState {
    pub(crate) fn published(&self) -> Vec<TestKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .cloned()
            .collect()
    }
}
