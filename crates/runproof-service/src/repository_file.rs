//! The repository file (`[policy] repository_file`): a repository's layer of trust rules
//! read from a file on its default branch, cached per repository.
//!
//! - Where it comes from: `GET /repositories/{id}/contents/{path}` with the installation's
//!   token and no `ref`, so GitHub serves the default branch
//!   ([`runproof_github::repository_file`]). Neither the run's commit nor its branch is
//!   read: a pull request cannot change the rules its own run is held to.
//! - What it says: the file's rules (the repository's layer, whatever the API holds); no
//!   file (the API's rules apply); or a broken file (it does not parse, breaks a bound,
//!   has an unknown field, is too large, or the App may not read it), which refuses every
//!   run of the repository with a reason, never failing open.
//! - Caching: each answer, the absence of a file and a broken file alike, is kept for
//!   [`FRESH_TTL`], for at most [`MAX_ENTRIES`] repositories. A signed `push` webhook to
//!   the default branch that may have changed the file drops the repository's copy
//!   ([`after_push`]); pushes to other branches, tags and pull requests change nothing.
//!   Each replica keeps its own cache and only the one the webhook reaches drops its copy:
//!   the others follow within [`FRESH_TTL`].
//! - GitHub down: a copy up to [`STALE_LIMIT`] old is used; with none, the answer is
//!   `503 upstream_unavailable`, never a guess. At most [`MAX_CONCURRENT_FETCHES`] fetches
//!   run at once, and one that waited reads what the one before it fetched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runproof_core::RepositoryId;
use runproof_core::RunIdentity;
use runproof_core::rules::TrustRule;
use runproof_github::repository_file::{
    FileFetchError, PushEvent, default_branch_file, parse_rules_file, push_may_change,
};

use crate::error::ServiceError;
use crate::repository_rules::{RepositoryLayer, RuleSource};
use crate::service::Service;

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
    path: String,
    cache: Mutex<HashMap<RepositoryId, Entry>>,
    /// Moves on every invalidation, so that a fetch that began before it is not cached.
    generation: AtomicU64,
    fetches: tokio::sync::Semaphore,
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
    fn cached(&self, repository: RepositoryId) -> Option<(FileRules, bool)> {
        let cache = lock(&self.cache);
        let entry = cache.get(&repository)?;
        let age = entry.fetched.elapsed();
        (age < STALE_LIMIT).then(|| (entry.rules.clone(), age < FRESH_TTL))
    }

    /// Keeps an answer, unless the cache was invalidated since its fetch began.
    fn remember(&self, repository: RepositoryId, rules: FileRules, generation: u64) {
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

/// What the repository file of `identity`'s repository says; `None` when no
/// `repository_file` is configured. `identity` is bound to its installation.
///
/// # Errors
/// [`ServiceError::Upstream`] when GitHub cannot answer and no copy is kept.
pub(crate) async fn rules(
    service: &Service,
    identity: &RunIdentity,
) -> Result<Option<FileRules>, ServiceError> {
    let Some(files) = service.repository_files.as_ref() else {
        return Ok(None);
    };
    let repository = identity.repository_id;
    if let Some((rules, true)) = files.cached(repository) {
        return Ok(Some(rules));
    }
    let (Some(binding), Some(installation)) = (service.binding.as_ref(), identity.installation_id)
    else {
        // Refused at startup; never read as "no file".
        return Ok(Some(FileRules::Broken(format!(
            "{} cannot be read: the App's credentials or the repository's installation are unknown",
            files.path
        ))));
    };
    let _permit = files
        .fetches
        .acquire()
        .await
        .map_err(|_| ServiceError::TaskFailed)?;
    // Whoever held the permit before may have fetched it.
    if let Some((rules, true)) = files.cached(repository) {
        return Ok(Some(rules));
    }
    let generation = files.generation.load(Ordering::SeqCst);
    let fetched = default_branch_file(&binding.app, repository, installation, &files.path).await;
    let rules = match fetched {
        Ok(None) => FileRules::Absent,
        Ok(Some(text)) => match parse_rules_file(&text) {
            Ok(rules) => FileRules::Rules(Arc::from(rules)),
            Err(e) => FileRules::Broken(e.to_string()),
        },
        Err(FileFetchError::Unavailable(e)) => {
            if let Some((stale, _)) = files.cached(repository) {
                tracing::warn!(error = %e, %repository, "GitHub unavailable; using the repository file read before");
                return Ok(Some(stale));
            }
            return Err(ServiceError::from(&e));
        }
        Err(e) => FileRules::Broken(e.to_string()),
    };
    if let FileRules::Broken(why) = &rules {
        tracing::info!(%repository, reason = %why, "the repository file refuses every run");
    }
    files.remember(repository, rules.clone(), generation);
    Ok(Some(rules))
}

/// The repository's layer from its file, for [`crate::repository_rules::layer`]: `None`
/// when no `repository_file` is configured or the repository has no such file (the API's
/// rules apply then).
///
/// # Errors
/// As [`rules`].
pub(crate) async fn layer(
    service: &Service,
    identity: &RunIdentity,
) -> Result<Option<RepositoryLayer>, ServiceError> {
    let source = || RuleSource::File(service.repository_file().unwrap_or_default().to_owned());
    Ok(match rules(service, identity).await? {
        None | Some(FileRules::Absent) => None,
        Some(FileRules::Rules(rules)) => Some(RepositoryLayer::Rules {
            source: source(),
            rules,
        }),
        Some(FileRules::Broken(reason)) => Some(RepositoryLayer::Broken {
            source: source(),
            reason,
        }),
    })
}

/// After a signed `push` delivery: drops the copy of the pushed repository's file when the
/// push may have changed it on the default branch. A payload that cannot be read drops
/// every copy.
pub(crate) fn after_push(service: &Service, body: &[u8]) {
    let Some(files) = service.repository_files.as_ref() else {
        return;
    };
    match serde_json::from_slice::<PushEvent>(body) {
        Ok(push) => {
            if push_may_change(&push, &files.path) {
                tracing::info!(repository = %push.repository.id, "the repository file may have changed; reading it again");
                files.forget(push.repository.id);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable push payload; every repository file is read again");
            files.forget_all();
        }
    }
}

#[cfg(test)]
mod tests {
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
