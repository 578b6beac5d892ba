//! Explaining a token: every check an OIDC upload makes, each with its outcome, and
//! every trust rule with what of it the run does not match.
//!
//! An explanation has no side effects an upload could see: the token's `jti` is neither
//! claimed in the replay guard nor spent in the store (whether it is spent already is
//! read), and nothing is written. Installation binding runs exactly as an upload's does:
//! the store's installations, else the lookup cache, else one GitHub lookup spent from
//! the same budget, whose answer is cached as an upload's would be (an upload after it
//! gets the same answer, without asking GitHub again). The `action` check
//! (`[policy] require_action`) reads the calling workflow as an upload does, through the
//! same cache of workflow checks.
//!
//! A token that fails a check is an answer, not an error: the explanation says which
//! check failed and why. Only what prevents an answer is an error: the issuer's keys or
//! GitHub unavailable, the lookup budget spent, the store failing.

use runproof_core::rules::{Layer, LayerOutcome, Mismatch, evaluate, explain as explain_layer};
use runproof_core::{PolicyRule, RunIdentity, UnixTime, UnverifiedToken, VerifyError};
use runproof_github::KeyError;
use serde::Serialize;

use crate::binding::bind;
use crate::error::ServiceError;
use crate::repository_rules::{self, RepositoryLayer};
use crate::service::Service;
use crate::workflow_check::{self, ActionVerdict};

/// Every check, in the order an upload makes them.
pub const CHECKS: [&str; 13] = [
    "token",
    "issuer",
    "signature",
    "audience",
    "times",
    "events",
    "runner",
    "repositories",
    "replay",
    "installation",
    "app_rules",
    "repository_rules",
    "action",
];

/// The checks [`runproof_core::Verifier::verify`] makes after the issuer, in its order.
const VERIFY_CHECKS: [&str; 6] = [
    "signature",
    "audience",
    "times",
    "events",
    "runner",
    "repositories",
];

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Its name, one of [`CHECKS`].
    pub check: &'static str,
    /// Whether the token passed it (`false` also when it was not reached).
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// One trust rule and how the run fared against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleExplanation {
    /// The rule's layer.
    pub layer: Layer,
    /// The rule's name (empty when it has none).
    pub name: String,
    /// Whether the run matches it.
    pub matched: bool,
    /// What of it the run does not match.
    pub mismatches: Vec<Mismatch>,
}

/// What an upload with the token would meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Whether every check passes.
    pub allowed: bool,
    /// The verified run identity (bound to its installation when that check passes);
    /// `None` when the token does not verify.
    pub identity: Option<RunIdentity>,
    /// Each check of [`CHECKS`], in order.
    pub checks: Vec<Check>,
    /// Each rule of each layer, in order (none when the token does not verify).
    pub rules: Vec<RuleExplanation>,
}

/// The checks so far.
#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn ok(&mut self, check: &'static str, detail: impl Into<String>) {
        self.0.push(Check {
            check,
            ok: true,
            detail: detail.into(),
        });
    }

    fn fail(&mut self, check: &'static str, detail: impl Into<String>) {
        self.0.push(Check {
            check,
            ok: false,
            detail: detail.into(),
        });
    }

    /// Fails `check` and marks every later one as not reached.
    fn stop(mut self, check: &'static str, detail: impl Into<String>) -> Explanation {
        self.fail(check, detail);
        let reached = self.0.len();
        for later in CHECKS.iter().skip(reached) {
            self.fail(later, format!("not checked: `{check}` failed"));
        }
        Explanation {
            allowed: false,
            identity: None,
            checks: self.0,
            rules: Vec::new(),
        }
    }
}

/// Which check a verification error belongs to.
fn check_of(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::UntrustedIssuer { .. } => "issuer",
        VerifyError::WrongAudience { .. } => "audience",
        VerifyError::Expired { .. } | VerifyError::NotYetValid { .. } => "times",
        VerifyError::Policy(PolicyRule::DeniedEvent { .. } | PolicyRule::MissingEvent) => "events",
        VerifyError::Policy(PolicyRule::RunnerNotGithubHosted) => "runner",
        VerifyError::Policy(_) => "repositories",
        _ => "signature",
    }
}

/// Explains what an upload with `raw` would meet at `at` (default: now), without
/// consuming its `jti` or storing anything.
///
/// # Errors
/// Only when no answer can be given now: [`ServiceError::Upstream`] (the issuer's keys or
/// GitHub), [`ServiceError::RateLimited`] (the lookup budget), [`ServiceError::Storage`].
pub async fn explain(
    service: &Service,
    raw: &str,
    at: Option<UnixTime>,
) -> Result<Explanation, ServiceError> {
    let mut checks = Checks::default();
    let token = match UnverifiedToken::parse(raw) {
        Ok(token) => token,
        Err(e) => return Ok(checks.stop("token", e.to_string())),
    };
    let issuer = match service.verifier.precheck(&token) {
        Ok(issuer) => issuer,
        Err(e @ VerifyError::UnsupportedAlgorithm { .. }) => {
            return Ok(checks.stop("token", e.to_string()));
        }
        Err(e) => {
            checks.ok("token", "a compact JWS signed with RS256");
            return Ok(checks.stop("issuer", e.to_string()));
        }
    };
    checks.ok("token", "a compact JWS signed with RS256");
    let keys = match service
        .keys
        .keys_for(issuer, token.kid().unwrap_or_default())
        .await
    {
        Ok(keys) => keys,
        Err(KeyError::Unavailable { .. }) => {
            return Err(ServiceError::upstream(
                "the issuer's keys cannot be fetched right now; retry later",
                10,
            ));
        }
        Err(_) => {
            return Ok(checks.stop("issuer", VerifyError::untrusted_issuer(issuer).to_string()));
        }
    };
    checks.ok("issuer", format!("{issuer} is a configured issuer"));
    let now = at.unwrap_or_else(|| service.clock.now());
    let verified = match service.verifier.verify(token, &keys, now) {
        Ok(verified) => verified,
        Err(e) => {
            let failed = check_of(&e);
            for passed in VERIFY_CHECKS.iter().take_while(|c| **c != failed) {
                checks.ok(passed, "passed");
            }
            return Ok(checks.stop(failed, e.to_string()));
        }
    };
    checks.ok(
        "signature",
        "the signature verifies; every required claim is present",
    );
    checks.ok("audience", "the configured audience");
    checks.ok(
        "times",
        format!(
            "valid at {} (issued at {}, expires at {})",
            now.rfc3339(),
            verified.issued_at.rfc3339(),
            verified.expires_at.rfc3339()
        ),
    );
    checks.ok("events", "the event is not denied");
    checks.ok("runner", "the runner is allowed");
    checks.ok("repositories", "the owner and the repository are allowed");

    let mut identity = verified.identity;
    if !service.settings.replay_protection {
        checks.ok("replay", "replay protection is off");
    } else if service
        .store
        .jti_is_spent(&identity.issuer, &verified.jti)
        .await?
    {
        checks.fail(
            "replay",
            "this token was already used; request a fresh one for each upload",
        );
    } else {
        checks.ok(
            "replay",
            "the token's jti is unused (explaining does not use it)",
        );
    }

    match bind(service.binding.as_ref(), &*service.store, &mut identity).await {
        Ok(()) => match identity.installation_id {
            Some(id) => checks.ok("installation", format!("installation {id}")),
            None => checks.ok("installation", "binding is off: no App credentials are set"),
        },
        Err(e @ ServiceError::NotInstalled { .. }) => checks.fail("installation", e.to_string()),
        Err(e) => return Err(e),
    }

    let rules = &service.trust_rules;
    match evaluate(rules, &identity) {
        LayerOutcome::Unconstrained => checks.ok("app_rules", "no App rules: no constraint"),
        LayerOutcome::Matched { index, name } => {
            checks.ok(
                "app_rules",
                format!("rule {} matches", rule_label(index, &name)),
            );
        }
        LayerOutcome::Refused { nearest } => {
            let fields: Vec<&str> = nearest
                .mismatches
                .iter()
                .map(|m| m.field.as_str())
                .collect();
            checks.fail(
                "app_rules",
                format!(
                    "no App rule matches; the nearest, rule {}, differs in {}",
                    rule_label(nearest.index, &nearest.name),
                    fields.join(", ")
                ),
            );
        }
    }
    let repository_rules = explain_repository_layer(service, &identity, &mut checks).await?;

    match (service.require_action.as_deref(), identity.installation_id) {
        (None, _) => checks.ok("action", "require_action is off"),
        (Some(_), None) if service.binding.is_some() => {
            checks.fail("action", "not checked: `installation` failed");
        }
        (Some(_), _) => match workflow_check::verdict(service, &identity).await? {
            ActionVerdict::Off => checks.ok("action", "require_action is off"),
            ActionVerdict::Uses(detail) => checks.ok("action", detail),
            ActionVerdict::Refused(detail, _) => checks.fail("action", detail),
        },
    }

    let mut rules: Vec<RuleExplanation> = explain_layer(rules, &identity)
        .into_iter()
        .map(|r| RuleExplanation {
            layer: Layer::App,
            name: r.name,
            matched: r.matched,
            mismatches: r.mismatches,
        })
        .collect();
    rules.extend(repository_rules);
    Ok(Explanation {
        allowed: checks.0.iter().all(|c| c.ok),
        identity: Some(identity),
        checks: checks.0,
        rules,
    })
}

/// The `repository_rules` check and the repository's rules, as an upload would apply
/// them ([`repository_rules::layer`], through its cache: nothing is written).
async fn explain_repository_layer(
    service: &Service,
    identity: &RunIdentity,
    checks: &mut Checks,
) -> Result<Vec<RuleExplanation>, ServiceError> {
    let (source, rules) = match repository_rules::layer(service, identity).await? {
        RepositoryLayer::Rules { source, rules } => (source, rules),
        RepositoryLayer::Broken { source, reason } => {
            checks.fail(
                "repository_rules",
                format!(
                    "the repository's rules {} cannot be used, so every run is refused: \
                     {reason}",
                    source.describe()
                ),
            );
            return Ok(vec![RuleExplanation {
                layer: Layer::Repository,
                name: format!("the repository's rules {}", source.describe()),
                matched: false,
                mismatches: vec![RepositoryLayer::broken_mismatch(&source, &reason)],
            }]);
        }
    };
    match evaluate(&rules, identity) {
        LayerOutcome::Unconstrained => {
            checks.ok("repository_rules", "no repository rules: no constraint");
        }
        LayerOutcome::Matched { index, name } => checks.ok(
            "repository_rules",
            format!(
                "rule {} of the repository's rules {} matches",
                rule_label(index, &name),
                source.describe()
            ),
        ),
        LayerOutcome::Refused { nearest } => {
            let fields: Vec<&str> = nearest
                .mismatches
                .iter()
                .map(|m| m.field.as_str())
                .collect();
            checks.fail(
                "repository_rules",
                format!(
                    "no repository rule ({}) matches; the nearest, rule {}, differs in {}",
                    source.describe(),
                    rule_label(nearest.index, &nearest.name),
                    fields.join(", ")
                ),
            );
        }
    }
    Ok(explain_layer(&rules, identity)
        .into_iter()
        .map(|r| RuleExplanation {
            layer: Layer::Repository,
            name: r.name,
            matched: r.matched,
            mismatches: r.mismatches,
        })
        .collect())
}

/// `"name"`, or the rule's position from 1 when it has no name.
fn rule_label(index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("{}", index + 1)
    } else {
        format!("{name:?}")
    }
}
