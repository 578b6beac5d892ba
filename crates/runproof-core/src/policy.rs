//! Policy applied to a verified run identity.
//!
//! Every rule denies by default where the identity lacks what the rule needs: a token
//! without `event_name` is refused, and `require_github_hosted_runner` refuses a token
//! without `runner_environment`. The two allow-lists are the one documented exception to
//! "empty means deny": empty means "any repository the App is installed on", because
//! installation binding is the gate they narrow.

use serde::Deserialize;

use crate::claims::RunIdentity;
use crate::error::PolicyRule;
use crate::ids::{OwnerId, RepositoryId};

/// The events denied unless configured otherwise: both run with the base repository's
/// privileges on code an outsider may control.
pub const DEFAULT_DENIED_EVENTS: [&str; 2] = ["pull_request_target", "workflow_run"];

/// The `[policy]` section: what a verified run must also satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Events whose runs are refused.
    pub denied_events: Vec<String>,
    /// Refuse runs that did not run on a GitHub-hosted runner.
    pub require_github_hosted_runner: bool,
    /// When non-empty, only these repository owners are accepted.
    pub allowed_repository_owner_ids: Vec<OwnerId>,
    /// When non-empty, only these repositories are accepted.
    pub allowed_repository_ids: Vec<RepositoryId>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            denied_events: DEFAULT_DENIED_EVENTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
            require_github_hosted_runner: false,
            allowed_repository_owner_ids: Vec::new(),
            allowed_repository_ids: Vec::new(),
        }
    }
}

impl Policy {
    /// Checks an identity against every rule.
    ///
    /// # Errors
    /// The first [`PolicyRule`] the identity breaks.
    pub fn check(&self, identity: &RunIdentity) -> Result<(), PolicyRule> {
        self.check_event(identity.event_name.as_deref())?;
        if self.require_github_hosted_runner
            && identity.runner_environment.as_deref() != Some("github-hosted")
        {
            return Err(PolicyRule::RunnerNotGithubHosted);
        }
        self.check_repository(identity.repository_owner_id, identity.repository_id)
    }

    /// Checks the event rule alone (webhook mode reads the event from a payload).
    ///
    /// # Errors
    /// [`PolicyRule::MissingEvent`] or [`PolicyRule::DeniedEvent`].
    pub fn check_event(&self, event: Option<&str>) -> Result<(), PolicyRule> {
        let event = event.ok_or(PolicyRule::MissingEvent)?;
        if self.denied_events.iter().any(|d| d == event) {
            return Err(PolicyRule::DeniedEvent {
                event: event.to_owned(),
            });
        }
        Ok(())
    }

    /// Checks the two allow-lists.
    ///
    /// # Errors
    /// [`PolicyRule::OwnerNotAllowed`] or [`PolicyRule::RepositoryNotAllowed`].
    pub fn check_repository(&self, owner: OwnerId, repo: RepositoryId) -> Result<(), PolicyRule> {
        if !self.allowed_repository_owner_ids.is_empty()
            && !self.allowed_repository_owner_ids.contains(&owner)
        {
            return Err(PolicyRule::OwnerNotAllowed { owner_id: owner.0 });
        }
        if !self.allowed_repository_ids.is_empty() && !self.allowed_repository_ids.contains(&repo) {
            return Err(PolicyRule::RepositoryNotAllowed {
                repository_id: repo.0,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::ExtraClaims;
    use crate::ids::RunId;

    fn identity() -> RunIdentity {
        RunIdentity {
            issuer: "https://issuer".into(),
            repository: "o/r".into(),
            repository_id: RepositoryId(10),
            repository_owner: Some("o".into()),
            repository_owner_id: OwnerId(20),
            repository_visibility: None,
            enterprise: None,
            enterprise_id: None,
            run_id: RunId(30),
            run_attempt: Some(1),
            check_run_id: None,
            sha: "a".repeat(40),
            git_ref: None,
            ref_type: None,
            ref_protected: None,
            workflow_ref: None,
            workflow_sha: None,
            job_workflow_ref: None,
            job_workflow_sha: None,
            event_name: Some("push".into()),
            actor: None,
            actor_id: None,
            runner_environment: Some("github-hosted".into()),
            environment: None,
            extra_claims: ExtraClaims::default(),
            installation_id: None,
            unverified: Vec::new(),
        }
    }

    #[test]
    fn rule_denied_events_default_denies_pull_request_target_and_workflow_run() {
        let p = Policy::default();
        assert!(p.check(&identity()).is_ok());
        for event in DEFAULT_DENIED_EVENTS {
            let mut id = identity();
            id.event_name = Some(event.into());
            assert_eq!(
                p.check(&id),
                Err(PolicyRule::DeniedEvent {
                    event: event.into()
                })
            );
        }
    }

    #[test]
    fn rule_missing_event_fails_closed() {
        let mut id = identity();
        id.event_name = None;
        assert_eq!(Policy::default().check(&id), Err(PolicyRule::MissingEvent));
    }

    #[test]
    fn rule_github_hosted_runner_fails_closed_when_absent() {
        let p = Policy {
            require_github_hosted_runner: true,
            ..Policy::default()
        };
        assert!(p.check(&identity()).is_ok());
        for env in [Some("self-hosted"), None] {
            let mut id = identity();
            id.runner_environment = env.map(Into::into);
            assert_eq!(p.check(&id), Err(PolicyRule::RunnerNotGithubHosted));
        }
    }

    #[test]
    fn rule_allow_lists_compare_ids_and_deny_outside_them() {
        let p = Policy {
            allowed_repository_owner_ids: vec![OwnerId(20)],
            allowed_repository_ids: vec![RepositoryId(10)],
            ..Policy::default()
        };
        assert!(p.check(&identity()).is_ok());
        let mut id = identity();
        id.repository_owner_id = OwnerId(21);
        assert_eq!(
            p.check(&id),
            Err(PolicyRule::OwnerNotAllowed { owner_id: 21 })
        );
        let mut id = identity();
        id.repository_id = RepositoryId(11);
        assert_eq!(
            p.check(&id),
            Err(PolicyRule::RepositoryNotAllowed { repository_id: 11 })
        );
        let mut id = identity();
        id.repository = "someone/else".into();
        assert!(p.check(&id).is_ok(), "names never decide");
    }
}
