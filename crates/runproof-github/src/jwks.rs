//! The key cache: discovery, fetch, background refresh, refresh on unknown `kid`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use runproof_core::KeySet;
use runproof_core::keys::MAX_JWKS_BYTES;
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::fetch::{FetchError, HttpFetcher};
use crate::url_rules::{UrlError, check_issuer_url, same_origin};

/// The largest discovery document accepted, in bytes.
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;

/// One configured issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    /// The issuer, exactly as tokens carry it in `iss`.
    pub issuer: String,
    /// Where its JWKS lives; discovered from the issuer when `None`.
    pub jwks_url: Option<String>,
}

/// Timing and size bounds of a [`KeyCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCacheConfig {
    /// How often keys are refreshed in the background.
    pub refresh_interval: Duration,
    /// The least time between two refreshes triggered by unknown `kid`s.
    pub unknown_kid_cooldown: Duration,
    /// Timeout of each HTTP request to the issuer.
    pub timeout: Duration,
}

impl Default for KeyCacheConfig {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(600),
            unknown_kid_cooldown: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why keys could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The issuer is not configured (callers check issuers first; this is a guard).
    #[error("issuer is not configured")]
    UnknownIssuer,
    /// The issuer's keys could not be fetched and none are cached.
    #[error("keys of {issuer} are unavailable: {reason}")]
    Unavailable {
        /// The issuer.
        issuer: String,
        /// What went wrong, without secrets.
        reason: String,
    },
    /// A configured URL is not acceptable.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] FetchError),
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    /// When the last refresh was attempted, successful or not.
    last_attempt: Option<Instant>,
    /// Counts attempts, so a waiter can tell that someone else refreshed meanwhile.
    generation: u64,
}

struct Issuer {
    name: String,
    url: Url,
    jwks_url: Option<Url>,
    state: RwLock<State>,
    /// Held while refreshing, so concurrent misses make one request (single flight).
    refreshing: tokio::sync::Mutex<()>,
}

/// Cached signing keys of every configured issuer.
pub struct KeyCache {
    issuers: HashMap<String, Issuer>,
    config: KeyCacheConfig,
    http: HttpFetcher,
    /// Holds keys given at construction and never fetches ([`Self::fixed`]).
    fixed: bool,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish()
    }
}

impl KeyCache {
    /// A cache for these issuers. Nothing is fetched until first use or [`Self::refresh_all`].
    ///
    /// # Errors
    /// [`KeyError::Url`] when an issuer or JWKS URL is not acceptable (see
    /// [`check_issuer_url`]), or when a configured `jwks_url` is not on the issuer's host.
    pub fn new(issuers: &[IssuerConfig], config: KeyCacheConfig) -> Result<Self, KeyError> {
        let mut map = HashMap::new();
        for cfg in issuers {
            let url = check_issuer_url(&cfg.issuer)?;
            let jwks_url = cfg.jwks_url.as_deref().map(check_issuer_url).transpose()?;
            if let Some(j) = jwks_url.as_ref().filter(|j| !same_origin(&url, j)) {
                return Err(UrlError::Invalid(format!(
                    "{j} (jwks_url must be on the issuer's host)"
                ))
                .into());
            }
            map.insert(
                cfg.issuer.clone(),
                Issuer {
                    name: cfg.issuer.clone(),
                    url,
                    jwks_url,
                    state: RwLock::new(State::default()),
                    refreshing: tokio::sync::Mutex::new(()),
                },
            );
        }
        Ok(Self {
            issuers: map,
            config,
            http: HttpFetcher::new(config.timeout)?,
            fixed: false,
        })
    }

    /// A cache holding these keys for good, each under its issuer: nothing is ever
    /// fetched, and [`Self::refresh_all`] keeps them. For verifying offline against a JWKS
    /// file, such as `runproof verify-token --jwks`.
    ///
    /// # Errors
    /// [`KeyError::Url`] when an issuer is not a URL.
    pub fn fixed(keys: impl IntoIterator<Item = (String, KeySet)>) -> Result<Self, KeyError> {
        let config = KeyCacheConfig::default();
        let mut map = HashMap::new();
        for (issuer, set) in keys {
            let url = Url::parse(&issuer).map_err(|_| UrlError::Invalid(issuer.clone()))?;
            map.insert(
                issuer.clone(),
                Issuer {
                    name: issuer,
                    url,
                    jwks_url: None,
                    state: RwLock::new(State {
                        keys: Some(Arc::new(set)),
                        ..State::default()
                    }),
                    refreshing: tokio::sync::Mutex::new(()),
                },
            );
        }
        Ok(Self {
            issuers: map,
            config,
            http: HttpFetcher::new(config.timeout)?,
            fixed: true,
        })
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> KeyCacheConfig {
        self.config
    }

    /// Keys of `issuer` that should contain `kid`.
    ///
    /// Cached keys are returned when they hold `kid`. Otherwise one refresh is made,
    /// shared by all concurrent callers, unless the last one was less than the cooldown
    /// ago. If the refresh fails, the cached keys are returned (the verifier then reports
    /// the `kid` as unknown).
    ///
    /// # Errors
    /// [`KeyError::Unavailable`] when nothing is cached and the issuer cannot be reached;
    /// [`KeyError::UnknownIssuer`] for an issuer not configured.
    pub async fn keys_for(&self, issuer: &str, kid: &str) -> Result<Arc<KeySet>, KeyError> {
        let entry = self.issuers.get(issuer).ok_or(KeyError::UnknownIssuer)?;
        if self.fixed {
            return read(&entry.state)
                .keys
                .clone()
                .ok_or_else(|| unavailable(entry, "no keys were given"));
        }
        let (cached, generation, recent) = {
            let state = read(&entry.state);
            let recent = state
                .last_attempt
                .is_some_and(|t| t.elapsed() < self.config.unknown_kid_cooldown);
            (state.keys.clone(), state.generation, recent)
        };
        if let Some(keys) = &cached {
            if keys.contains(kid) || recent {
                return Ok(keys.clone());
            }
        } else if recent {
            return Err(unavailable(entry, "the last fetch failed moments ago"));
        }

        let _guard = entry.refreshing.lock().await;
        {
            let state = read(&entry.state);
            if state.generation != generation {
                // Someone else refreshed while this call waited: use their result.
                return state
                    .keys
                    .clone()
                    .ok_or_else(|| unavailable(entry, "the last fetch failed"));
            }
        }
        match self.refresh_locked(entry, "unknown_kid").await {
            Ok(keys) => Ok(keys),
            Err(reason) => cached.ok_or_else(|| unavailable(entry, &reason)),
        }
    }

    /// Refreshes every issuer's keys now. Failures keep the cached keys.
    pub async fn refresh_all(&self) {
        if self.fixed {
            return;
        }
        for entry in self.issuers.values() {
            let _guard = entry.refreshing.lock().await;
            let _ = self.refresh_locked(entry, "scheduled").await;
        }
    }

    /// Runs [`Self::refresh_all`] at once and then every `refresh_interval`, until the
    /// returned task is aborted.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(cache.config.refresh_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                cache.refresh_all().await;
            }
        })
    }

    /// Whether keys of `issuer` are cached.
    #[must_use]
    pub fn has_keys(&self, issuer: &str) -> bool {
        self.issuers
            .get(issuer)
            .is_some_and(|e| read(&e.state).keys.is_some())
    }

    async fn refresh_locked(
        &self,
        entry: &Issuer,
        trigger: &'static str,
    ) -> Result<Arc<KeySet>, String> {
        let result = self.fetch_keys(entry).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("runproof_jwks_refresh_total", "trigger" => trigger, "outcome" => outcome)
            .increment(1);
        let mut state = write(&entry.state);
        state.last_attempt = Some(Instant::now());
        state.generation += 1;
        match result {
            Ok(keys) => {
                let keys = Arc::new(keys);
                state.keys = Some(keys.clone());
                tracing::debug!(issuer = %entry.name, keys = keys.len(), "refreshed JWKS");
                Ok(keys)
            }
            Err(reason) => {
                tracing::warn!(issuer = %entry.name, %reason, "JWKS refresh failed; keeping cached keys");
                Err(reason)
            }
        }
    }

    async fn fetch_keys(&self, entry: &Issuer) -> Result<KeySet, String> {
        let jwks_url = match &entry.jwks_url {
            Some(u) => u.clone(),
            None => self.discover(entry).await?,
        };
        let body = self
            .http
            .get_capped(&jwks_url, MAX_JWKS_BYTES)
            .await
            .map_err(|e| format!("JWKS: {e}"))?;
        KeySet::from_jwks_json(&body).map_err(|e| e.to_string())
    }

    async fn discover(&self, entry: &Issuer) -> Result<Url, String> {
        let base = entry.url.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}/.well-known/openid-configuration"))
            .map_err(|e| e.to_string())?;
        let body = self
            .http
            .get_capped(&url, MAX_DISCOVERY_BYTES)
            .await
            .map_err(|e| format!("discovery: {e}"))?;
        parse_discovery(&entry.name, &entry.url, &body).map_err(|e| format!("discovery: {e}"))
    }
}

/// Reads an OpenID discovery document and returns its `jwks_uri`, which must be an
/// acceptable URL on the issuer's origin; the document must name `issuer` exactly.
///
/// # Errors
/// A sentence saying what is wrong with the document.
pub fn parse_discovery(issuer: &str, issuer_url: &Url, body: &[u8]) -> Result<Url, String> {
    if body.len() > MAX_DISCOVERY_BYTES {
        return Err("the document is too large".into());
    }
    let doc: Discovery =
        serde_json::from_slice(body).map_err(|_| "not a valid document".to_owned())?;
    if doc.issuer != issuer {
        return Err("the document names another issuer".into());
    }
    let jwks = check_issuer_url(&doc.jwks_uri).map_err(|e| e.to_string())?;
    if !same_origin(issuer_url, &jwks) {
        return Err("jwks_uri is not on the issuer's host".into());
    }
    Ok(jwks)
}

fn unavailable(entry: &Issuer, reason: &str) -> KeyError {
    KeyError::Unavailable {
        issuer: entry.name.clone(),
        reason: reason.to_owned(),
    }
}

fn read(lock: &RwLock<State>) -> std::sync::RwLockReadGuard<'_, State> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(lock: &RwLock<State>) -> std::sync::RwLockWriteGuard<'_, State> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB: &str = "https://token.actions.githubusercontent.com";

    #[test]
    fn realworld_discovery_documents_parse() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/realworld/discovery");
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (fixtures in the repository)", dir.display()));
        let mut parsed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let body = std::fs::read(&path).unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let issuer = doc["issuer"].as_str().unwrap();
            let url = Url::parse(issuer).unwrap();
            let jwks = parse_discovery(issuer, &url, &body).unwrap();
            assert!(same_origin(&url, &jwks), "{}", path.display());
            assert_eq!(
                parse_discovery(GITHUB, &Url::parse(GITHUB).unwrap(), &body).is_ok(),
                issuer == GITHUB
            );
            parsed += 1;
        }
        assert!(parsed >= 2);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]
        #[test]
        fn discovery_parsing_never_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let url = Url::parse(GITHUB).unwrap();
            let _ = parse_discovery(GITHUB, &url, &body);
        }
    }

    /// A discovery document's issuer: GitHub's own, near misses of it, or anything; and
    /// whether it is GitHub's.
    fn issuer() -> impl proptest::strategy::Strategy<Value = (String, bool)> {
        use proptest::prelude::*;
        prop_oneof![
            3 => Just((GITHUB.to_owned(), true)),
            3 => prop::sample::select(vec![
                "https://token.actions.githubusercontent.com/",
                "http://token.actions.githubusercontent.com",
                "https://TOKEN.actions.githubusercontent.com",
                "https://token.actions.githubusercontent.com ",
                "https://token.actions.githubusercontent.com.evil.example",
                "https://token.actions.githubusercontent.com/octo-enterprise",
                "https://vstoken.actions.githubusercontent.com",
                "",
            ])
            .prop_map(|s| (s.to_owned(), false)),
            1 => "\\PC{0,40}".prop_map(|s: String| {
                let ok = s == GITHUB;
                (s, ok)
            }),
        ]
    }

    /// A `jwks_uri`, and whether it is an acceptable URL on GitHub's origin.
    fn jwks_uri() -> impl proptest::strategy::Strategy<Value = (String, bool)> {
        use proptest::prelude::*;
        let good = prop::sample::select(vec![
            "https://token.actions.githubusercontent.com/.well-known/jwks",
            "https://token.actions.githubusercontent.com:443/.well-known/jwks",
            "https://TOKEN.actions.githubusercontent.com/.well-known/jwks",
            "https://token.actions.githubusercontent.com/",
        ]);
        let bad = prop::sample::select(vec![
            "http://token.actions.githubusercontent.com/.well-known/jwks",
            "https://token.actions.githubusercontent.com:8443/.well-known/jwks",
            "https://evil.example/.well-known/jwks",
            "https://token.actions.githubusercontent.com.evil.example/.well-known/jwks",
            "https://user@token.actions.githubusercontent.com/.well-known/jwks",
            "https://token.actions.githubusercontent.com/.well-known/jwks?x=1",
            "https://token.actions.githubusercontent.com/.well-known/jwks#k",
            "/.well-known/jwks",
            "file:///etc/passwd",
            "",
        ]);
        prop_oneof![
            3 => good.prop_map(|s| (s.to_owned(), true)),
            3 => bad.prop_map(|s| (s.to_owned(), false)),
            1 => "\\PC{0,80}".prop_map(|s: String| (s, false)),
        ]
    }

    /// A discovery document built as JSON: the two fields (either may be missing or of
    /// another type), maybe other members; and whether GitHub's issuer must accept it.
    fn document() -> impl proptest::strategy::Strategy<Value = (Vec<u8>, bool)> {
        use proptest::prelude::*;
        (issuer(), jwks_uri(), 0..8u8, any::<bool>()).prop_map(
            |((iss, iss_ok), (jwks, jwks_ok), shape, extra)| {
                let mut doc = serde_json::Map::new();
                let ok = match shape {
                    0 => {
                        doc.insert("jwks_uri".into(), jwks.into());
                        false
                    }
                    1 => {
                        doc.insert("issuer".into(), iss.into());
                        false
                    }
                    2 => {
                        doc.insert("issuer".into(), serde_json::json!([iss]));
                        doc.insert("jwks_uri".into(), jwks.into());
                        false
                    }
                    _ => {
                        doc.insert("issuer".into(), iss.into());
                        doc.insert("jwks_uri".into(), jwks.into());
                        iss_ok && jwks_ok
                    }
                };
                if extra {
                    doc.insert(
                        "id_token_signing_alg_values_supported".into(),
                        serde_json::json!(["RS256"]),
                    );
                }
                (serde_json::Value::Object(doc).to_string().into_bytes(), ok)
            },
        )
    }

    #[test]
    fn discovery_accepts_exactly_the_issuer_with_keys_on_its_origin() {
        use proptest::test_runner::{Config, TestCaseError, TestRunner};
        let url = Url::parse(GITHUB).unwrap();
        let (accepted, refused) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
        let mut runner = TestRunner::new(Config::with_cases(4_000));
        runner
            .run(&document(), |(body, ok)| {
                let got = parse_discovery(GITHUB, &url, &body);
                if got.is_ok() != ok {
                    return Err(TestCaseError::fail(format!(
                        "{}: {got:?}",
                        String::from_utf8_lossy(&body)
                    )));
                }
                if let Ok(jwks) = got {
                    if !same_origin(&url, &jwks) {
                        return Err(TestCaseError::fail(format!("{jwks} is elsewhere")));
                    }
                    accepted.set(accepted.get() + 1);
                } else {
                    refused.set(refused.get() + 1);
                }
                Ok(())
            })
            .unwrap();
        // Both sides of the rule were reached, each often (about 11% are accepted).
        let (accepted, refused) = (accepted.get(), refused.get());
        assert!(
            accepted >= 100 && refused >= 100,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// Fixed keys are what was given, whatever the `kid` asked, and nothing is fetched:
    /// the issuer's host is never reached (offline tests have no network).
    #[tokio::test]
    async fn fixed_keys_are_returned_without_fetching() {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/realworld/oidc/jwks_2025-06_crates.io.json");
        let set = KeySet::from_jwks_json(&std::fs::read(&path).unwrap()).unwrap();
        let len = set.len();
        let cache = KeyCache::fixed([(GITHUB.to_owned(), set)]).unwrap();
        cache.refresh_all().await;
        assert!(cache.has_keys(GITHUB));
        for kid in ["", "no-such-kid"] {
            assert_eq!(cache.keys_for(GITHUB, kid).await.unwrap().len(), len);
        }
        assert_eq!(
            cache
                .keys_for("https://elsewhere.example", "")
                .await
                .unwrap_err(),
            KeyError::UnknownIssuer
        );
        assert!(KeyCache::fixed([("not a url".to_owned(), KeySet::default())]).is_err());
    }
}
