//! Trust rules applied to a verified, bound run: the App's layer, from its configuration.
//!
//! Every mode checks it once its identity is verified and bound to an installation: an
//! OIDC upload, a session when it is opened (a session's uploads carry the identity checked
//! then, and the rules do not change while the server runs), a `GITHUB_TOKEN` upload, and a
//! pending upload when GitHub vouches for its run. An empty layer adds no constraint. The
//! matching itself is `runproof_core::rules`; the repository's layer is not read yet.

use runproof_core::RunIdentity;
use runproof_core::rules::{Layer, evaluate_all};

use crate::error::ServiceError;
use crate::service::Service;

/// Checks `identity` against the App's rules.
///
/// # Errors
/// [`ServiceError::PolicyRule`] naming the nearest rule, when the layer holds rules and
/// none matches.
pub(crate) fn check(service: &Service, identity: &RunIdentity) -> Result<(), ServiceError> {
    let verdict = evaluate_all(&[(Layer::App, &service.trust_rules)], identity);
    match verdict.refusal() {
        None => Ok(()),
        Some((layer, nearest)) => {
            metrics::counter!("runproof_trust_rule_refusals_total", "layer" => layer.as_str())
                .increment(1);
            Err(ServiceError::PolicyRule {
                layer,
                index: nearest.index,
                rule: (!nearest.name.is_empty()).then(|| nearest.name.clone()),
                mismatches: nearest.mismatches.clone(),
            })
        }
    }
}
