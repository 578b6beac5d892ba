//! Trust rules applied to a verified, bound run: the App's layer, from its configuration,
//! and the repository's layer ([`crate::repository_rules`]).
//!
//! Every mode checks both once its identity is verified and bound to an installation: an
//! OIDC upload, a session when it is opened and at each of its uploads (the repository's
//! rules may change while the session lives), a `GITHUB_TOKEN` upload, and a pending
//! upload when GitHub vouches for its run. A run must match at least one rule of each
//! non-empty layer; an empty layer adds no constraint. The App's layer is checked first
//! (it needs no read), and its refusal is the one reported when both refuse. A repository
//! layer that cannot be used refuses. The matching itself is `runproof_core::rules`.

use runproof_core::RunIdentity;
use runproof_core::rules::{Layer, Mismatch, RuleReport, evaluate_all};

use crate::error::ServiceError;
use crate::repository_rules::{self, RepositoryLayer};
use crate::service::Service;

/// Checks `identity` against the App's rules, then the repository's.
///
/// # Errors
/// [`ServiceError::PolicyRule`] naming the nearest rule, when a layer holds rules and
/// none matches, or when the repository's layer cannot be used (its `mismatches` say
/// why); [`ServiceError::Storage`] when the repository's rules cannot be read now.
pub(crate) async fn check(service: &Service, identity: &RunIdentity) -> Result<(), ServiceError> {
    let app = evaluate_all(&[(Layer::App, &service.trust_rules)], identity);
    if let Some((layer, nearest)) = app.refusal() {
        return Err(refused(layer, nearest));
    }
    match repository_rules::layer(service, identity).await? {
        RepositoryLayer::Rules { rules, .. } => {
            let verdict = evaluate_all(&[(Layer::Repository, &rules)], identity);
            match verdict.refusal() {
                None => Ok(()),
                Some((layer, nearest)) => Err(refused(layer, nearest)),
            }
        }
        RepositoryLayer::Broken { source, reason } => {
            count(Layer::Repository);
            Err(broken(&source, &reason))
        }
    }
}

fn count(layer: Layer) {
    metrics::counter!("runproof_trust_rule_refusals_total", "layer" => layer.as_str()).increment(1);
}

fn refused(layer: Layer, nearest: &RuleReport) -> ServiceError {
    count(layer);
    ServiceError::PolicyRule {
        layer,
        index: nearest.index,
        rule: (!nearest.name.is_empty()).then(|| nearest.name.clone()),
        mismatches: nearest.mismatches.clone(),
    }
}

/// The refusal of a repository layer that cannot be used.
pub(crate) fn broken(source: &repository_rules::RuleSource, reason: &str) -> ServiceError {
    let mismatch: Mismatch = RepositoryLayer::broken_mismatch(source, reason);
    ServiceError::PolicyRule {
        layer: Layer::Repository,
        index: 0,
        rule: Some(format!("the repository's rules {}", source.describe())),
        mismatches: vec![mismatch],
    }
}
