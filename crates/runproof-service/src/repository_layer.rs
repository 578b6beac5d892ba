//! The repository's layer of trust rules as a decision sees it ([`RepositoryLayer`],
//! [`RuleSource`]), and what of each source was read recently: the rules set through the
//! API ([`RulesCache`]) and the repository files ([`RepositoryFiles`]).
//!
//! Below the service: it holds these caches, and `repository_rules` and
//! `repository_file` fill and read them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use runproof_core::RepositoryId;
use runproof_core::rules::{Mismatch, TrustRule};
use tokio::time::Instant;

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
    pub(crate) fn lookup(
        &self,
        repository_id: RepositoryId,
        now: Instant,
    ) -> Result<RepositoryLayer, u64> {
        let state = self.state();
        match state.entries.get(&repository_id) {
            Some((read_at, layer)) if now.duration_since(*read_at) < CACHE_TTL => Ok(layer.clone()),
            _ => Err(state.generation),
        }
    }

    /// Keeps `layer`, read at `read_at`, unless a local write happened since `generation`.
    pub(crate) fn insert(
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
    pub(crate) fn invalidate(&self, repository_id: RepositoryId) {
        let mut state = self.state();
        state.generation = state.generation.wrapping_add(1);
        state.entries.remove(&repository_id);
    }
}

/// How long a repository's file (or its absence) is used before it is read again.
pub(crate) const FRESH_TTL: Duration = Duration::from_secs(600);
/// How old a copy may be and still be used while GitHub cannot answer.
pub(crate) const STALE_LIMIT: Duration = Duration::from_secs(3600);
/// The most repositories whose file is kept.
pub(crate) const MAX_ENTRIES: usize = 10_000;
/// The most fetches of repository files at once.
pub(crate) const MAX_CONCURRENT_FETCHES: usize = 8;

/// What a repository's file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileRules {
    /// The default branch has no such file: the API's rules apply.
    Absent,
    /// The file's rules: the repository's layer.
    Rules(Arc<[TrustRule]>),
    /// The file cannot be used: every run of the repository is refused, for this reason.
    Broken(String),
}

#[derive(Debug)]
struct Entry {
    rules: FileRules,
    fetched: Instant,
}

/// The configured path and the per-repository cache of what the file says.
#[derive(Debug)]
pub(crate) struct RepositoryFiles {
    /// The file's path in each repository, such as `.github/runproof.yml`.
    pub(crate) path: String,
    cache: Mutex<HashMap<RepositoryId, Entry>>,
    /// Moves on every invalidation, so that a fetch that began before it is not cached.
    pub(crate) generation: AtomicU64,
    pub(crate) fetches: tokio::sync::Semaphore,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RepositoryFiles {
    pub(crate) fn new(path: String) -> Self {
        Self {
            path,
            cache: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            fetches: tokio::sync::Semaphore::new(MAX_CONCURRENT_FETCHES),
        }
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The cached answer, if any, and whether it is still fresh.
    pub(crate) fn cached(&self, repository: RepositoryId) -> Option<(FileRules, bool)> {
        let cache = lock(&self.cache);
        let entry = cache.get(&repository)?;
        let age = entry.fetched.elapsed();
        (age < STALE_LIMIT).then(|| (entry.rules.clone(), age < FRESH_TTL))
    }

    /// Keeps an answer, unless the cache was invalidated since its fetch began.
    pub(crate) fn remember(&self, repository: RepositoryId, rules: FileRules, generation: u64) {
        let mut cache = lock(&self.cache);
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if cache.len() >= MAX_ENTRIES && !cache.contains_key(&repository) {
            cache.retain(|_, e| e.fetched.elapsed() < FRESH_TTL);
            if cache.len() >= MAX_ENTRIES
                && let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, e)| e.fetched)
                    .map(|(id, _)| *id)
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            repository,
            Entry {
                rules,
                fetched: Instant::now(),
            },
        );
    }

    /// Drops a repository's copy: its file may have changed.
    pub(crate) fn forget(&self, repository: RepositoryId) {
        let mut cache = lock(&self.cache);
        self.generation.fetch_add(1, Ordering::SeqCst);
        cache.remove(&repository);
    }

    /// Drops every copy.
    pub(crate) fn forget_all(&self) {
        let mut cache = lock(&self.cache);
        self.generation.fetch_add(1, Ordering::SeqCst);
        cache.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod file_cache_tests {
    use super::*;

    #[test]
    fn rule_an_invalidation_during_a_fetch_keeps_its_answer_out_of_the_cache() {
        let files = RepositoryFiles::new(".github/runproof.yml".into());
        let repo = RepositoryId(7);
        let before = files.generation.load(Ordering::SeqCst);
        files.forget(repo);
        files.remember(repo, FileRules::Absent, before);
        assert_eq!(files.cached(repo), None, "fetched before the push");
        let now = files.generation.load(Ordering::SeqCst);
        files.remember(repo, FileRules::Absent, now);
        assert_eq!(files.cached(repo), Some((FileRules::Absent, true)));
        files.forget_all();
        assert_eq!(files.cached(repo), None);
    }

    #[test]
    fn a_copy_past_its_ttl_is_kept_only_for_outages_and_not_for_ever() {
        let files = RepositoryFiles::new("f".into());
        let repo = RepositoryId(7);
        let at = |age: Duration| Instant::now().checked_sub(age).unwrap();
        let put = |fetched| {
            lock(&files.cache).insert(
                repo,
                Entry {
                    rules: FileRules::Absent,
                    fetched,
                },
            );
        };
        put(at(FRESH_TTL + Duration::from_secs(1)));
        assert_eq!(
            files.cached(repo),
            Some((FileRules::Absent, false)),
            "stale: read again, used only if GitHub cannot answer"
        );
        put(at(STALE_LIMIT + Duration::from_secs(1)));
        assert_eq!(files.cached(repo), None, "too old to use at all");
    }

    #[test]
    fn the_cache_is_bounded() {
        let files = RepositoryFiles::new("f".into());
        for id in 0..u64::try_from(MAX_ENTRIES).unwrap() + 10 {
            files.remember(RepositoryId(id), FileRules::Absent, 0);
        }
        assert!(lock(&files.cache).len() <= MAX_ENTRIES);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod rules_cache_tests {
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
