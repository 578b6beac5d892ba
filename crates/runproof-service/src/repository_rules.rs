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

use std::sync::Arc;

use runproof_core::rules::{TrustRule, validate_layer};
use runproof_core::{RepositoryId, RunIdentity};
use runproof_store::StoreError;
use tokio::time::Instant;

use crate::error::ServiceError;
pub use crate::repository_layer::{CACHE_ENTRIES, CACHE_TTL, RepositoryLayer, RuleSource};
use crate::service::Service;

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
/// returns them as stored. An empty list is stored as an empty layer (no constraint). The
/// event log records the change with `source`, the address the request came from.
///
/// # Errors
/// [`ServiceError::InvalidRules`] when the layer breaks a bound, `invalid_request` for the
/// id 0, or [`ServiceError::Storage`].
pub async fn put(
    service: &Service,
    repository_id: RepositoryId,
    rules: Vec<TrustRule>,
    source: Option<String>,
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
    let stored = stored?;
    rules_changed(
        service,
        repository_id,
        format!("set {} rules", stored.rules.len()),
        "PUT /v1/repositories/{repository_id}/rules",
        source,
    );
    Ok(stored.rules)
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
/// were some. The event log records the change with `source`, as [`put`] does.
///
/// # Errors
/// `invalid_request` for the id 0, or [`ServiceError::Storage`].
pub async fn delete(
    service: &Service,
    repository_id: RepositoryId,
    source: Option<String>,
) -> Result<bool, ServiceError> {
    check_id(repository_id)?;
    let deleted = service.store.delete_repository_rules(repository_id).await;
    service.repository_rules.invalidate(repository_id);
    metrics::counter!("runproof_repository_rules_writes_total", "op" => "delete").increment(1);
    let deleted = deleted?;
    if deleted {
        rules_changed(
            service,
            repository_id,
            "deleted".to_owned(),
            "DELETE /v1/repositories/{repository_id}/rules",
            source,
        );
    }
    Ok(deleted)
}

/// Records in the event log that the rules of `repository_id` changed.
fn rules_changed(
    service: &Service,
    repository_id: RepositoryId,
    detail: String,
    route: &str,
    source: Option<String>,
) {
    let mut event = runproof_store::NewEvent::new(
        service.clock.now(),
        runproof_store::EventKind::Rules,
        runproof_store::EventOutcome::Changed,
    );
    event.repository_id = Some(repository_id);
    event.detail = Some(detail);
    event.route = Some(route.to_owned());
    event.source = source;
    service.record(event);
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
