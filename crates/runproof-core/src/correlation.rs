//! Webhook mode: does a run that GitHub vouches for approve a pending upload?
//!
//! A pending upload carries a *claim*: the repository id, run id, attempt and commit the
//! client named in `X-Runproof-Run` / `X-Runproof-Sha`, unverified. GitHub vouches for
//! *facts* about a run, either in a signed `workflow_run` webhook or in an answer of its
//! REST API to an installation token. [`decide`] compares the two under the configured
//! rules and says whether to approve, reject (with the rule that refused) or keep waiting.
//!
//! Pure: the caller passes the upload's arrival time; nothing here reads a clock.
//!
//! What an approval proves: a run with that id and commit existed at that time in that
//! repository. It does not prove that the bytes came from it.

use crate::ids::{RepositoryId, RunId};
use crate::policy::Policy;
use crate::time::UnixTime;

/// The run a pending upload claims to come from (the client's word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunClaim {
    /// The repository id the client named.
    pub repository_id: RepositoryId,
    /// The run id the client named.
    pub run_id: RunId,
    /// The attempt the client named.
    pub run_attempt: u32,
    /// The commit the client named.
    pub head_sha: String,
}

/// What GitHub says about a run attempt (from a signed webhook or the REST API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts {
    /// The repository the run belongs to (the base repository).
    pub repository_id: RepositoryId,
    /// The run id.
    pub run_id: RunId,
    /// The attempt.
    pub run_attempt: u32,
    /// The commit the run is for.
    pub head_sha: String,
    /// The repository of the head commit; differs from `repository_id` for fork runs.
    /// `None` when GitHub did not say, which counts as a fork (fail closed).
    pub head_repository_id: Option<RepositoryId>,
    /// The event that triggered the run.
    pub event: String,
    /// When the run completed, if it has.
    pub completed_at: Option<UnixTime>,
}

/// The rules of `[webhook_mode]` that [`decide`] applies.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The policy: its `denied_events` apply to the run's event.
    pub policy: &'a Policy,
    /// Accept runs whose head commit lives in another repository (a fork).
    pub allow_forks: bool,
    /// How long after a run completed an upload may still arrive, in seconds.
    pub grace_period_seconds: i64,
}

/// Why a pending upload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectReason {
    /// The run's head commit lives in another repository and forks are not allowed.
    #[error("the run is from a fork (head repository {} is not repository {base})", head.map_or_else(|| "unknown".to_owned(), |h| h.to_string()))]
    Fork {
        /// The base repository.
        base: RepositoryId,
        /// The head repository, if GitHub named one.
        head: Option<RepositoryId>,
    },
    /// The run's event is denied by policy.
    #[error("runs triggered by `{event}` are denied by policy")]
    DeniedEvent {
        /// The event.
        event: String,
    },
    /// The upload arrived more than the grace period after the run completed.
    #[error("the upload arrived {late_by} s after the run completed (grace period {grace} s)")]
    TooLate {
        /// Seconds between completion and arrival.
        late_by: i64,
        /// The grace period.
        grace: i64,
    },
    /// The workflow does not use the required action (the workflow check).
    #[error("the workflow {path} at {sha} does not use {action}")]
    ActionNotUsed {
        /// The workflow file.
        path: String,
        /// The commit.
        sha: String,
        /// The action required.
        action: String,
    },
    /// The workflow could not be checked for good (unparseable, unknown path).
    #[error("the workflow cannot be checked: {0}")]
    WorkflowUnreadable(String),
    /// The repository is not where the App is installed.
    #[error("the App is not installed on repository {0}")]
    NotInstalled(RepositoryId),
    /// The repository is outside the policy's allow-lists.
    #[error("{0}")]
    Policy(String),
}

/// What to do with a pending upload given a run's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// GitHub vouches for the claimed run: approve.
    Approve,
    /// GitHub vouches for the run, and a rule refuses it.
    Reject(RejectReason),
    /// These facts do not settle the claim (another run, attempt or commit): keep the
    /// upload pending, for another webhook or until it expires.
    Wait,
}

/// Decides a pending upload that arrived at `uploaded_at`, claiming `claim`, given what
/// GitHub says about a run.
///
/// Rules, in order:
/// 1. *same run*: repository id, run id and attempt must equal the claim's; else wait;
/// 2. *same commit*: the head sha must equal the claim's; else wait (the upload then
///    expires: a run's commit never changes, but a wrong claim must not tell the
///    claimant which part was wrong);
/// 3. *forks*: `head_repository_id` must equal `repository_id` unless `allow_forks`;
/// 4. *events*: the run's event must not be denied by policy;
/// 5. *grace period*: the upload must arrive no later than `grace_period_seconds`
///    after the run completed (runs not completed always pass).
#[must_use]
pub fn decide(
    claim: &RunClaim,
    facts: &RunFacts,
    rules: Rules<'_>,
    uploaded_at: UnixTime,
) -> Decision {
    if facts.repository_id != claim.repository_id
        || facts.run_id != claim.run_id
        || facts.run_attempt != claim.run_attempt
    {
        return Decision::Wait;
    }
    if facts.head_sha != claim.head_sha {
        return Decision::Wait;
    }
    if !rules.allow_forks && facts.head_repository_id != Some(facts.repository_id) {
        return Decision::Reject(RejectReason::Fork {
            base: facts.repository_id,
            head: facts.head_repository_id,
        });
    }
    if rules.policy.check_event(Some(&facts.event)).is_err() {
        return Decision::Reject(RejectReason::DeniedEvent {
            event: facts.event.clone(),
        });
    }
    if let Some(done) = facts.completed_at {
        let late_by = uploaded_at.0.saturating_sub(done.0);
        if late_by > rules.grace_period_seconds {
            return Decision::Reject(RejectReason::TooLate {
                late_by,
                grace: rules.grace_period_seconds,
            });
        }
    }
    Decision::Approve
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
    const T0: UnixTime = UnixTime(1_700_000_000);

    fn claim() -> RunClaim {
        RunClaim {
            repository_id: RepositoryId(10),
            run_id: RunId(30),
            run_attempt: 1,
            head_sha: SHA.into(),
        }
    }

    fn facts() -> RunFacts {
        RunFacts {
            repository_id: RepositoryId(10),
            run_id: RunId(30),
            run_attempt: 1,
            head_sha: SHA.into(),
            head_repository_id: Some(RepositoryId(10)),
            event: "push".into(),
            completed_at: None,
        }
    }

    struct Case {
        rule: &'static str,
        facts: RunFacts,
        allow_forks: bool,
        uploaded_at: UnixTime,
        want: Decision,
    }

    fn case(rule: &'static str, edit: impl FnOnce(&mut RunFacts), want: Decision) -> Case {
        let mut f = facts();
        edit(&mut f);
        Case {
            rule,
            facts: f,
            allow_forks: false,
            uploaded_at: T0,
            want,
        }
    }

    #[test]
    fn rules_table() {
        let policy = Policy::default();
        let cases = vec![
            case(
                "same run: everything matches, in progress",
                |_| {},
                Decision::Approve,
            ),
            case(
                "same run: other repository id",
                |f| f.repository_id = RepositoryId(11),
                Decision::Wait,
            ),
            case(
                "same run: other run id",
                |f| f.run_id = RunId(31),
                Decision::Wait,
            ),
            case(
                "same run: other attempt",
                |f| f.run_attempt = 2,
                Decision::Wait,
            ),
            case(
                "same commit: other sha",
                |f| f.head_sha = "b".repeat(40),
                Decision::Wait,
            ),
            case(
                "forks: head repository differs",
                |f| f.head_repository_id = Some(RepositoryId(99)),
                Decision::Reject(RejectReason::Fork {
                    base: RepositoryId(10),
                    head: Some(RepositoryId(99)),
                }),
            ),
            case(
                "forks: head repository unknown fails closed",
                |f| f.head_repository_id = None,
                Decision::Reject(RejectReason::Fork {
                    base: RepositoryId(10),
                    head: None,
                }),
            ),
            Case {
                allow_forks: true,
                ..case(
                    "forks: allowed when configured",
                    |f| f.head_repository_id = Some(RepositoryId(99)),
                    Decision::Approve,
                )
            },
            case(
                "events: pull_request_target denied",
                |f| f.event = "pull_request_target".into(),
                Decision::Reject(RejectReason::DeniedEvent {
                    event: "pull_request_target".into(),
                }),
            ),
            case(
                "events: workflow_run denied",
                |f| f.event = "workflow_run".into(),
                Decision::Reject(RejectReason::DeniedEvent {
                    event: "workflow_run".into(),
                }),
            ),
            case(
                "events: pull_request allowed",
                |f| f.event = "pull_request".into(),
                Decision::Approve,
            ),
            case(
                "grace period: completed just within it",
                |f| f.completed_at = Some(T0.minus(600)),
                Decision::Approve,
            ),
            case(
                "grace period: completed after the upload arrived",
                |f| f.completed_at = Some(T0.plus(30)),
                Decision::Approve,
            ),
            case(
                "grace period: completed too long before",
                |f| f.completed_at = Some(T0.minus(601)),
                Decision::Reject(RejectReason::TooLate {
                    late_by: 601,
                    grace: 600,
                }),
            ),
            case(
                "order: a fork of another commit waits (the commit is checked first)",
                |f| {
                    f.head_sha = "c".repeat(40);
                    f.head_repository_id = Some(RepositoryId(99));
                },
                Decision::Wait,
            ),
        ];
        for c in cases {
            let rules = Rules {
                policy: &policy,
                allow_forks: c.allow_forks,
                grace_period_seconds: 600,
            };
            assert_eq!(
                decide(&claim(), &c.facts, rules, c.uploaded_at),
                c.want,
                "rule: {}",
                c.rule
            );
        }
    }

    #[test]
    fn rule_denied_events_follow_the_configured_policy() {
        let policy = Policy {
            denied_events: vec!["schedule".into()],
            ..Policy::default()
        };
        let rules = Rules {
            policy: &policy,
            allow_forks: false,
            grace_period_seconds: 600,
        };
        let mut f = facts();
        f.event = "schedule".into();
        assert!(matches!(
            decide(&claim(), &f, rules, T0),
            Decision::Reject(RejectReason::DeniedEvent { .. })
        ));
        f.event = "workflow_run".into();
        assert_eq!(decide(&claim(), &f, rules, T0), Decision::Approve);
    }

    #[test]
    fn reasons_read_well() {
        let r = RejectReason::TooLate {
            late_by: 700,
            grace: 600,
        };
        assert_eq!(
            r.to_string(),
            "the upload arrived 700 s after the run completed (grace period 600 s)"
        );
        let r = RejectReason::Fork {
            base: RepositoryId(1),
            head: Some(RepositoryId(2)),
        };
        assert!(r.to_string().contains("fork"), "{r}");
    }
}
