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

use std::sync::Arc;
use std::sync::atomic::Ordering;

use runproof_core::RunIdentity;
use runproof_github::repository_file::{
    FileFetchError, PushEvent, default_branch_file, parse_rules_file, push_may_change,
};

use crate::error::ServiceError;
pub(crate) use crate::repository_layer::FileRules;
use crate::repository_rules::{RepositoryLayer, RuleSource};
use crate::service::Service;

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
