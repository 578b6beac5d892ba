//! The repository's layer of trust rules: set through the API by the App on its users'
//! behalf ([`put`], [`get`], [`delete`]), and read for every decision ([`layer`]).
//!
//! - A layer is checked with `runproof_core::rules::validate_layer` before it is stored;
//!   one that breaks a bound is refused ([`ServiceError::InvalidRules`]: `invalid_request`)
//!   and nothing changes.
//! - A repository without rules, or with an empty list, adds no constraint.
//! - A source that exists but cannot be used (stored rules that no longer decode or no
//!   longer pass the bounds of this release; a repository file that does not parse)
//!   is a [`RepositoryLayer::Broken`]: it refuses every run of the repository with a
//!   `mismatches` entry that says why. It never fails open.
//!
//! Cache: each repository's rules set through the API are kept in memory for
//! [`CACHE_TTL`] (at most [`CACHE_ENTRIES`] repositories), so that an upload does not
//! read the database each time. A [`put`] or [`delete`] on this process takes effect at
//! once (the entry is dropped, and a read that began before the write does not put the
//! older rules back). On other replicas sharing the database, a change takes effect when
//! their entry expires: within [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use runproof_core::rules::{Mismatch, TrustRule, validate_layer};
use runproof_core::{RepositoryId, RunIdentity};
use runproof_store::StoreError;
use tokio::time::Instant;

use crate::error::ServiceError;
use crate::service::Service;

/// How long a repository's rules read from the database are used before they are read
/// again: the longest another replica's change takes to reach this one.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// The most repositories whose rules are cached at once.
pub const CACHE_ENTRIES: usize = 10_000;

/// Where a repository's layer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleSource {
    /// Set through the API (`PUT /v1/repositories/{id}/rules`).
    Api,
    /// A file on the repository's default branch, at this path.
    File(String),
}

impl RuleSource {
    /// The name a refusal's `mismatches` entry gives this source: `repository_rules` or
    /// `repository_file`.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::Api => "repository_rules",
            Self::File(_) => "repository_file",
        }
    }

    /// What the source is, for explanations.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Api => "set through the API".to_owned(),
            Self::File(path) => format!("from {path} on the default branch"),
        }
    }
}

/// A repository's layer of trust rules, as a decision sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepositoryLayer {
    /// Rules to match (none: no constraint).
    Rules {
        /// Where they come from.
        source: RuleSource,
        /// The layer, in order; already within the bounds of
        /// `runproof_core::rules::validate_layer`.
        rules: Arc<[TrustRule]>,
    },
    /// A source that exists but cannot be used: every run of the repository is refused.
    Broken {
        /// Which source.
        source: RuleSource,
        /// Why it cannot be used, fit to show the caller.
        reason: String,
    },
}

impl RepositoryLayer {
    /// No rules: no constraint.
    #[must_use]
    pub fn unconstrained() -> Self {
        Self::Rules {
            source: RuleSource::Api,
            rules: Arc::from(Vec::new()),
        }
    }

    /// The refusal of a [`RepositoryLayer::Broken`] layer as a `mismatches` entry: the
    /// source's field, what it expects, and why it cannot be used.
    #[must_use]
    pub fn broken_mismatch(source: &RuleSource, reason: &str) -> Mismatch {
        let expected = match source {
            RuleSource::Api => "rules that decode and keep to this release's bounds".to_owned(),
            RuleSource::File(path) => format!("{path} that parses and keeps to the bounds"),
        };
        Mismatch {
            field: source.field().to_owned(),
            expected: vec![expected],
            actual: Some(reason.to_owned()),
        }
    }
}

/// Recently read layers, per repository.
#[derive(Debug, Default)]
pub(crate) struct RulesCache {
    inner: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    /// Each repository's layer and when it was read.
    entries: HashMap<RepositoryId, (Instant, RepositoryLayer)>,
    /// Grows at each local write, so that a read begun before a write does not cache what
    /// it read.
    generation: u64,
}

impl RulesCache {
    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The layer of `repository_id` read less than [`CACHE_TTL`] ago, or the generation
    /// to hand to [`RulesCache::insert`] after reading it.
    fn lookup(&self, repository_id: RepositoryId, now: Instant) -> Result<RepositoryLayer, u64> {
        let state = self.state();
        match state.entries.get(&repository_id) {
            Some((read_at, layer)) if now.duration_since(*read_at) < CACHE_TTL => Ok(layer.clone()),
            _ => Err(state.generation),
        }
    }

    /// Keeps `layer`, read at `read_at`, unless a local write happened since `generation`.
    fn insert(
        &self,
        repository_id: RepositoryId,
        layer: RepositoryLayer,
        read_at: Instant,
        generation: u64,
    ) {
        let mut state = self.state();
        if state.generation != generation {
            return;
        }
        if state.entries.len() >= CACHE_ENTRIES && !state.entries.contains_key(&repository_id) {
            state
                .entries
                .retain(|_, (at, _)| read_at.duration_since(*at) < CACHE_TTL);
            if state.entries.len() >= CACHE_ENTRIES {
                let victim = state.entries.keys().next().copied();
                if let Some(victim) = victim {
                    state.entries.remove(&victim);
                }
            }
        }
        state.entries.insert(repository_id, (read_at, layer));
    }

    /// Forgets `repository_id`'s layer: it was just written here.
    fn invalidate(&self, repository_id: RepositoryId) {
        let mut state = self.state();
        state.generation = state.generation.wrapping_add(1);
        state.entries.remove(&repository_id);
    }
}

/// Refuses the id 0, which no repository has.
fn check_id(repository_id: RepositoryId) -> Result<(), ServiceError> {
    if repository_id.get() == 0 {
        return Err(ServiceError::invalid(
            "a repository id is a positive integer",
        ));
    }
    Ok(())
}

/// Replaces the rules of `repository_id` with `rules`, after checking their bounds, and
/// returns them as stored. An empty list is stored as an empty layer (no constraint).
///
/// # Errors
/// [`ServiceError::InvalidRules`] when the layer breaks a bound, `invalid_request` for the
/// id 0, or [`ServiceError::Storage`].
pub async fn put(
    service: &Service,
    repository_id: RepositoryId,
    rules: Vec<TrustRule>,
) -> Result<Vec<TrustRule>, ServiceError> {
    check_id(repository_id)?;
    validate_layer(&rules).map_err(ServiceError::InvalidRules)?;
    let stored = service
        .store
        .put_repository_rules(repository_id, &rules, service.clock.now())
        .await;
    // Also when the write failed: its outcome may be unknown.
    service.repository_rules.invalidate(repository_id);
    metrics::counter!("runproof_repository_rules_writes_total", "op" => "put").increment(1);
    Ok(stored?.rules)
}

/// The rules set through the API for `repository_id`, read from the database (empty when
/// none are set).
///
/// # Errors
/// `invalid_request` for the id 0, or [`ServiceError::Storage`] (also when the stored
/// rules no longer decode).
pub async fn get(
    service: &Service,
    repository_id: RepositoryId,
) -> Result<Vec<TrustRule>, ServiceError> {
    check_id(repository_id)?;
    Ok(service
        .store
        .repository_rules(repository_id)
        .await?
        .map(|r| r.rules)
        .unwrap_or_default())
}

/// Deletes the rules set through the API for `repository_id`. Returns `true` when there
/// were some.
///
/// # Errors
/// `invalid_request` for the id 0, or [`ServiceError::Storage`].
pub async fn delete(service: &Service, repository_id: RepositoryId) -> Result<bool, ServiceError> {
    check_id(repository_id)?;
    let deleted = service.store.delete_repository_rules(repository_id).await;
    service.repository_rules.invalidate(repository_id);
    metrics::counter!("runproof_repository_rules_writes_total", "op" => "delete").increment(1);
    Ok(deleted?)
}

/// The repository's layer for `identity`'s repository, as every decision applies it.
///
/// # Errors
/// [`ServiceError::Storage`] when the database cannot answer now (a transient failure:
/// nothing is decided). Rules that cannot be used are not an error but a
/// [`RepositoryLayer::Broken`] layer, which refuses.
pub(crate) async fn layer(
    service: &Service,
    identity: &RunIdentity,
) -> Result<RepositoryLayer, ServiceError> {
    // A repository with the file (`[policy] repository_file`) uses the file.
    if let Some(layer) = crate::repository_file::layer(service, identity).await? {
        return Ok(layer);
    }
    api_layer(service, identity.repository_id).await
}

/// The layer set through the API, through the cache.
async fn api_layer(
    service: &Service,
    repository_id: RepositoryId,
) -> Result<RepositoryLayer, ServiceError> {
    let cache = &service.repository_rules;
    let generation = match cache.lookup(repository_id, Instant::now()) {
        Ok(layer) => return Ok(layer),
        Err(generation) => generation,
    };
    let read_at = Instant::now();
    let layer = match service.store.repository_rules(repository_id).await {
        Ok(None) => RepositoryLayer::unconstrained(),
        Ok(Some(stored)) => match validate_layer(&stored.rules) {
            Ok(()) => RepositoryLayer::Rules {
                source: RuleSource::Api,
                rules: Arc::from(stored.rules),
            },
            Err(e) => broken_api(repository_id, &e.to_string()),
        },
        Err(StoreError::Corrupt(e)) => broken_api(repository_id, &e.to_string()),
        Err(e) => return Err(e.into()),
    };
    cache.insert(repository_id, layer.clone(), read_at, generation);
    Ok(layer)
}

fn broken_api(repository_id: RepositoryId, why: &str) -> RepositoryLayer {
    tracing::warn!(repository_id = %repository_id, why, "stored repository rules cannot be used");
    RepositoryLayer::Broken {
        source: RuleSource::Api,
        reason: format!("the stored rules cannot be used: {why}; set them again"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rules(name: &str) -> RepositoryLayer {
        RepositoryLayer::Rules {
            source: RuleSource::Api,
            rules: Arc::from(vec![TrustRule {
                name: name.into(),
                ..TrustRule::default()
            }]),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cached_layers_expire_after_the_ttl() {
        let cache = RulesCache::default();
        let repo = RepositoryId(7);
        let generation = cache.lookup(repo, Instant::now()).unwrap_err();
        cache.insert(repo, rules("a"), Instant::now(), generation);
        assert_eq!(cache.lookup(repo, Instant::now()).unwrap(), rules("a"));
        tokio::time::advance(CACHE_TTL).await;
        assert!(cache.lookup(repo, Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn rule_a_local_write_is_seen_at_once() {
        let cache = RulesCache::default();
        let repo = RepositoryId(7);
        let generation = cache.lookup(repo, Instant::now()).unwrap_err();
        cache.insert(repo, rules("old"), Instant::now(), generation);
        cache.invalidate(repo);
        assert!(cache.lookup(repo, Instant::now()).is_err(), "dropped");

        // A read that began before a write does not put what it read back.
        let before = cache.lookup(repo, Instant::now()).unwrap_err();
        cache.invalidate(repo);
        cache.insert(repo, rules("old"), Instant::now(), before);
        assert!(cache.lookup(repo, Instant::now()).is_err(), "not cached");
    }

    #[tokio::test(start_paused = true)]
    async fn rule_the_cache_holds_a_bounded_number_of_repositories() {
        let cache = RulesCache::default();
        for id in 1..=(CACHE_ENTRIES as u64 + 10) {
            let repo = RepositoryId(id);
            let generation = cache.lookup(repo, Instant::now()).unwrap_err();
            cache.insert(repo, rules("a"), Instant::now(), generation);
        }
        assert!(cache.state().entries.len() <= CACHE_ENTRIES);
        let last = RepositoryId(CACHE_ENTRIES as u64 + 10);
        assert!(
            cache.lookup(last, Instant::now()).is_ok(),
            "the newest stays"
        );
    }

    #[test]
    fn a_broken_source_names_its_field() {
        let m = RepositoryLayer::broken_mismatch(
            &RuleSource::File(".github/runproof.yml".into()),
            "line 3: unknown field `ref`",
        );
        assert_eq!(m.field, "repository_file");
        assert_eq!(m.actual.as_deref(), Some("line 3: unknown field `ref`"));
        assert_eq!(
            RepositoryLayer::broken_mismatch(&RuleSource::Api, "x").field,
            "repository_rules"
        );
    }
}
