//! Installation binding: a verified identity counts only for a repository where the App
//! is installed (and not suspended). Decisions compare ids.
//!
//! The truth comes from `installation` and `installation_repositories` webhooks, stored
//! in the database. A repository the database does not know is looked up with the App
//! JWT (`GET /repos/{owner}/{repo}/installation`), then confirmed by id with an
//! installation token (`GET /repos/{owner}/{repo}`): a renamed or recreated repository,
//! whose name now belongs to another id, is not installed. Lookups are cached in memory
//! (positive 10 minutes, negative 1 minute). When GitHub cannot answer and nothing is
//! known, the answer is `503 upstream_unavailable`, never a guess.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use runproof_core::{ErrorCode, InstallationId, RepositoryId, RunIdentity};
use runproof_github::{GithubApp, GithubError};
use runproof_store::RepositorySelection;

use crate::{ApiError, AppState};

const POSITIVE_TTL: Duration = Duration::from_secs(600);
const NEGATIVE_TTL: Duration = Duration::from_secs(60);

/// The App's credentials and the lookup cache.
#[derive(Debug)]
pub struct Binding {
    /// The App.
    pub app: GithubApp,
    /// Repository id → installation (None: not installed), with when it expires.
    cache: Mutex<HashMap<RepositoryId, (Option<InstallationId>, Instant)>>,
}

impl Binding {
    /// Binding through this App.
    #[must_use]
    pub fn new(app: GithubApp) -> Self {
        Self {
            app,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, repo: RepositoryId) -> Option<Option<InstallationId>> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(&repo)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| *v)
    }

    fn remember(&self, repo: RepositoryId, value: Option<InstallationId>) {
        let ttl = if value.is_some() {
            POSITIVE_TTL
        } else {
            NEGATIVE_TTL
        };
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() > 100_000 {
            cache.retain(|_, (_, until)| *until > Instant::now());
        }
        cache.insert(repo, (value, Instant::now() + ttl));
    }
}

fn not_installed(identity: &RunIdentity) -> ApiError {
    ApiError::new(
        ErrorCode::NotInstalled,
        format!(
            "the App is not installed on repository {} (id {})",
            identity.repository, identity.repository_id
        ),
    )
}

pub(crate) fn upstream(e: &GithubError) -> ApiError {
    tracing::warn!(error = %e, "GitHub API unavailable");
    ApiError::new(
        ErrorCode::UpstreamUnavailable,
        "GitHub cannot be asked right now; retry later",
    )
    .retry_after(e.retry_after().unwrap_or(5))
}

/// Checks that the identity's repository belongs to a live installation of the App and
/// records the installation id in the identity. Does nothing when binding is off.
pub(crate) async fn bind(state: &AppState, identity: &mut RunIdentity) -> Result<(), ApiError> {
    let Some(binding) = state.binding.as_ref() else {
        return Ok(());
    };
    let store = &state.store;
    if let Some(b) = store
        .repository_binding(identity.repository_id)
        .await
        .map_err(|e| ApiError::storage(&e))?
    {
        if b.deleted || b.removed || b.suspended || b.account_id != identity.repository_owner_id {
            return Err(not_installed(identity));
        }
        identity.installation_id = Some(b.installation_id);
        return Ok(());
    }
    let account = store
        .installation_for_account(identity.repository_owner_id)
        .await
        .map_err(|e| ApiError::storage(&e))?;
    if let Some((inst, false)) = account
        && inst.repository_selection == RepositorySelection::All
    {
        if inst.suspended {
            return Err(not_installed(identity));
        }
        identity.installation_id = Some(inst.id);
        return Ok(());
    }
    let found = match binding.cached(identity.repository_id) {
        Some(found) => found,
        None => {
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
) -> Result<Option<InstallationId>, ApiError> {
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
