//! Installation binding: a verified identity counts only for a repository where the App
//! is installed (and not suspended). Decisions compare ids.
//!
//! The truth comes from `installation` and `installation_repositories` webhooks, stored
//! in the database and ordered by each event's own time. A repository the database does
//! not know, or whose state it cannot settle (a relaxation of the same second as the
//! restriction it follows), is looked up with the App JWT
//! (`GET /repos/{owner}/{repo}/installation`), then confirmed by id with an installation
//! token (`GET /repos/{owner}/{repo}`): a renamed or recreated repository, whose name now
//! belongs to another id, is not installed. Lookups are cached in memory (positive 10
//! minutes, negative 1 minute). When GitHub cannot answer and nothing is known, the answer
//! is `503 upstream_unavailable`, never a guess.
//!
//! Anyone can make the server look something up: with no credentials at all in the
//! webhook mode (active confirmation), or with a genuine token of any repository. Lookups
//! are therefore budgeted per client address (IPv6 by /64), per repository and in all,
//! and answers that something does not exist (repository not installed, run not found)
//! are remembered for a minute. Over the budget, a request gets `429` and an active
//! confirmation is skipped (the upload waits for its webhook).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use runproof_core::{InstallationId, RepositoryId, RunId, RunIdentity};
use runproof_github::types::{Installation, Repository, WorkflowRun};
use runproof_github::{GithubApp, GithubError};
use runproof_store::{RepositorySelection, Store};

use crate::error::ServiceError;
use crate::rate::{AddressKey, Windows};

const POSITIVE_TTL: Duration = Duration::from_secs(600);
const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Entries kept in each cache and budget table; expired ones are dropped first.
const MAX_ENTRIES: usize = 100_000;

tokio::task_local! {
    /// The address of the client whose request is being served, for the lookup budget.
    static CLIENT: IpAddr;
}

/// Runs `request` with its lookups counted against `client`'s address (as the HTTP
/// layer's limits resolved it).
pub async fn for_client<F: std::future::Future>(client: IpAddr, request: F) -> F::Output {
    CLIENT.scope(client, request).await
}

/// How many GitHub lookups requests may cause per minute. A lookup is one decision (a
/// binding, or one active confirmation) and takes at most a few calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupBudget {
    /// From one client address (IPv6 addresses by /64).
    pub per_address: u32,
    /// In the name of one repository, from all addresses together.
    pub per_repository: u32,
    /// In all.
    pub overall: u32,
}

impl Default for LookupBudget {
    fn default() -> Self {
        Self {
            per_address: 30,
            per_repository: 30,
            overall: 600,
        }
    }
}

/// The budget's state: all three windows, checked and spent together.
struct Budget {
    per_address: Windows<AddressKey>,
    per_repository: Windows<RepositoryId>,
    overall: Windows<()>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget").finish_non_exhaustive()
    }
}

impl Budget {
    fn new(limits: LookupBudget) -> Self {
        Self {
            per_address: Windows::with_capacity(limits.per_address, MAX_ENTRIES),
            per_repository: Windows::with_capacity(limits.per_repository, MAX_ENTRIES),
            overall: Windows::with_capacity(limits.overall, 1),
        }
    }

    /// Spends one lookup for `repository` (and the client, when there is one), or says
    /// how long to wait.
    fn spend(&mut self, client: Option<IpAddr>, repository: RepositoryId) -> Result<(), u64> {
        let now = Instant::now();
        let client = client.map(AddressKey::from);
        let wait = [
            client.and_then(|ip| self.per_address.blocked(ip, now)),
            self.per_repository.blocked(repository, now),
            self.overall.blocked((), now),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        if let Some(ip) = client {
            self.per_address.add(ip, 1, now);
        }
        self.per_repository.add(repository, 1, now);
        self.overall.add((), 1, now);
        Ok(())
    }
}

/// Values kept until a deadline, bounded.
#[derive(Debug)]
struct Expiring<K, V> {
    entries: HashMap<K, (V, Instant)>,
}

impl<K: Eq + Hash, V: Clone> Expiring<K, V> {
    fn new() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }

    fn get(&self, key: &K) -> Option<V> {
        self.entries
            .get(key)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone())
    }

    fn put(&mut self, key: K, value: V, ttl: Duration) {
        let now = Instant::now();
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.retain(|_, (_, until)| *until > now);
        }
        if self.entries.len() < MAX_ENTRIES {
            self.entries.insert(key, (value, now + ttl));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The App's credentials, the lookup caches and the lookup budget.
#[derive(Debug)]
pub struct Binding {
    /// The App.
    pub app: GithubApp,
    /// Repository id → installation (None: not installed).
    cache: Mutex<Expiring<RepositoryId, Option<InstallationId>>>,
    /// Runs GitHub said it does not know, by (lower-case `owner/name`, run id).
    absent_runs: Mutex<Expiring<(String, RunId), ()>>,
    /// Lookups left in the current windows.
    budget: Mutex<Budget>,
}

impl Binding {
    /// Binding through this App, with the lookup budget of [`LookupBudget::default`].
    #[must_use]
    pub fn new(app: GithubApp) -> Self {
        Self {
            app,
            cache: Mutex::new(Expiring::new()),
            absent_runs: Mutex::new(Expiring::new()),
            budget: Mutex::new(Budget::new(LookupBudget::default())),
        }
    }

    fn cached(&self, repo: RepositoryId) -> Option<Option<InstallationId>> {
        lock(&self.cache).get(&repo)
    }

    fn remember(&self, repo: RepositoryId, value: Option<InstallationId>) {
        let ttl = if value.is_some() {
            POSITIVE_TTL
        } else {
            NEGATIVE_TTL
        };
        lock(&self.cache).put(repo, value, ttl);
    }

    /// Spends one lookup in `repository`'s name, for the client being served. Lookups made
    /// outside a client's request are not budgeted: settling after a signed webhook delivery is
    /// paced by GitHub, and the sweeper by the pending quotas, and refusing them would only
    /// leave uploads pending that GitHub has vouched for.
    fn spend(&self, repository: RepositoryId) -> Result<(), u64> {
        let Ok(client) = CLIENT.try_with(|ip| *ip) else {
            return Ok(());
        };
        let spent = lock(&self.budget).spend(Some(client), repository);
        if spent.is_err() {
            metrics::counter!("runproof_github_lookups_refused_total").increment(1);
        }
        spent
    }

    /// The App's lookups for one decision about `repository`, within the budget.
    #[must_use]
    pub fn lookups(&self, repository: RepositoryId) -> Lookups<'_> {
        Lookups {
            binding: self,
            repository,
            spent: AtomicBool::new(false),
        }
    }
}

/// The App's lookups for one decision about one repository (an active confirmation):
/// the first call that reaches GitHub spends one lookup of the budget for them all, and
/// "not installed" and "no such run" answers are remembered for a minute. Over the
/// budget, a call fails with [`GithubError::RateLimited`] without reaching GitHub.
#[derive(Debug)]
pub struct Lookups<'a> {
    binding: &'a Binding,
    repository: RepositoryId,
    spent: AtomicBool,
}

impl Lookups<'_> {
    fn spend(&self) -> Result<(), GithubError> {
        if self.spent.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.binding.spend(self.repository).map_err(|wait| {
            self.spent.store(false, Ordering::SeqCst);
            GithubError::RateLimited { retry_after: wait }
        })
    }

    /// As [`GithubApp::repository_installation_by_id`].
    ///
    /// # Errors
    /// As that, and [`GithubError::RateLimited`] over the budget.
    pub async fn repository_installation_by_id(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<Installation>, GithubError> {
        if self.binding.cached(repository_id) == Some(None) {
            return Ok(None);
        }
        self.spend()?;
        let found = self
            .binding
            .app
            .repository_installation_by_id(repository_id)
            .await?;
        if found.is_none() {
            self.binding.remember(repository_id, None);
        }
        Ok(found)
    }

    /// As [`GithubApp::repository_by_id`].
    ///
    /// # Errors
    /// As that, and [`GithubError::RateLimited`] over the budget.
    pub async fn repository_by_id(
        &self,
        repository_id: RepositoryId,
        installation: InstallationId,
    ) -> Result<Option<Repository>, GithubError> {
        self.spend()?;
        self.binding
            .app
            .repository_by_id(repository_id, installation)
            .await
    }

    /// As [`GithubApp::workflow_run`].
    ///
    /// # Errors
    /// As that, and [`GithubError::RateLimited`] over the budget.
    pub async fn workflow_run(
        &self,
        full_name: &str,
        run_id: RunId,
        installation: InstallationId,
    ) -> Result<Option<WorkflowRun>, GithubError> {
        let key = (full_name.to_ascii_lowercase(), run_id);
        if lock(&self.binding.absent_runs).get(&key).is_some() {
            return Ok(None);
        }
        self.spend()?;
        let found = self
            .binding
            .app
            .workflow_run(full_name, run_id, installation)
            .await?;
        if found.is_none() {
            lock(&self.binding.absent_runs).put(key, (), NEGATIVE_TTL);
        }
        Ok(found)
    }
}

fn not_installed(identity: &RunIdentity) -> ServiceError {
    ServiceError::NotInstalled {
        repository_id: identity.repository_id,
        detail: format!(
            "the App is not installed on repository {} (id {})",
            identity.repository, identity.repository_id
        ),
    }
}

/// GitHub could not answer: `upstream_unavailable`, logged with its cause.
pub fn upstream(e: &GithubError) -> ServiceError {
    ServiceError::from(e)
}

/// Checks that the identity's repository belongs to a live installation of the App and
/// records the installation id in the identity. Does nothing when binding is off.
pub async fn bind(
    binding: Option<&Binding>,
    store: &dyn Store,
    identity: &mut RunIdentity,
) -> Result<(), ServiceError> {
    let Some(binding) = binding else {
        return Ok(());
    };
    if let Some(b) = store.repository_binding(identity.repository_id).await? {
        if b.account_id != identity.repository_owner_id || b.is_refused() {
            return Err(not_installed(identity));
        }
        if b.is_active() {
            identity.installation_id = Some(b.installation_id);
            return Ok(());
        }
        // Unsettled: only GitHub can tell.
        return look_up(binding, identity).await;
    }
    let account = store
        .installation_for_account(identity.repository_owner_id)
        .await?;
    if let Some(known) = account
        && !known.deleted
        && known.installation.repository_selection == RepositorySelection::All
    {
        if !known.installation.suspended {
            identity.installation_id = Some(known.installation.id);
            return Ok(());
        }
        if !known.unsettled {
            return Err(not_installed(identity));
        }
    }
    look_up(binding, identity).await
}

/// Asks GitHub (within the budget) unless a recent answer is cached.
async fn look_up(binding: &Binding, identity: &mut RunIdentity) -> Result<(), ServiceError> {
    let found = match binding.cached(identity.repository_id) {
        Some(found) => found,
        None => {
            binding.spend(identity.repository_id).map_err(|wait| {
                ServiceError::rate_limited("too many installation lookups; retry later", wait)
            })?;
            let found = lookup(&binding.app, identity).await?;
            binding.remember(identity.repository_id, found);
            found
        }
    };
    match found {
        Some(id) => {
            identity.installation_id = Some(id);
            Ok(())
        }
        None => Err(not_installed(identity)),
    }
}

async fn lookup(
    app: &GithubApp,
    identity: &RunIdentity,
) -> Result<Option<InstallationId>, ServiceError> {
    let Some(inst) = app
        .repository_installation(&identity.repository)
        .await
        .map_err(|e| upstream(&e))?
    else {
        return Ok(None);
    };
    if inst.suspended_at.is_some() {
        return Ok(None);
    }
    match app.repository(&identity.repository, inst.id).await {
        Ok(Some(repo))
            if repo.id == identity.repository_id
                && repo.owner.id == identity.repository_owner_id =>
        {
            Ok(Some(inst.id))
        }
        Ok(_) => {
            tracing::info!(
                repository = %identity.repository,
                repository_id = %identity.repository_id,
                "the repository name now belongs to another id"
            );
            Ok(None)
        }
        Err(GithubError::Forbidden(_) | GithubError::NotFound) => Ok(None),
        Err(e) => Err(upstream(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(per_address: u32, per_repository: u32, overall: u32) -> Budget {
        Budget::new(LookupBudget {
            per_address,
            per_repository,
            overall,
        })
    }

    #[test]
    fn rule_lookups_are_budgeted_per_address_per_repository_and_overall() {
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let mut by_address = budget(2, 100, 100);
        assert!(by_address.spend(Some(a), RepositoryId(1)).is_ok());
        assert!(by_address.spend(Some(a), RepositoryId(2)).is_ok());
        let wait = by_address.spend(Some(a), RepositoryId(3)).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(
            by_address.spend(Some(b), RepositoryId(3)).is_ok(),
            "another address"
        );
        assert!(by_address.spend(None, RepositoryId(3)).is_ok(), "no client");

        let mut by_repository = budget(100, 2, 100);
        assert!(by_repository.spend(Some(a), RepositoryId(1)).is_ok());
        assert!(by_repository.spend(Some(b), RepositoryId(1)).is_ok());
        assert!(by_repository.spend(None, RepositoryId(1)).is_err());
        assert!(by_repository.spend(Some(a), RepositoryId(2)).is_ok());

        let mut overall = budget(100, 100, 2);
        assert!(overall.spend(Some(a), RepositoryId(1)).is_ok());
        assert!(overall.spend(Some(b), RepositoryId(2)).is_ok());
        assert!(overall.spend(None, RepositoryId(3)).is_err());
    }

    #[test]
    fn a_refused_lookup_spends_nothing() {
        let a: IpAddr = [127, 0, 0, 1].into();
        let mut b = budget(1, 1, 100);
        assert!(b.spend(Some(a), RepositoryId(1)).is_ok());
        assert!(b.spend(Some(a), RepositoryId(2)).is_err(), "address spent");
        assert!(
            b.spend(None, RepositoryId(2)).is_ok(),
            "repository 2 was not charged for the refusal"
        );
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::from(one), AddressKey::from(two));
        assert_ne!(AddressKey::from(one), AddressKey::from(other));
        let mut b = budget(1, 100, 100);
        assert!(b.spend(Some(one), RepositoryId(1)).is_ok());
        assert!(b.spend(Some(two), RepositoryId(2)).is_err());
        assert!(b.spend(Some(other), RepositoryId(3)).is_ok());
    }
}
