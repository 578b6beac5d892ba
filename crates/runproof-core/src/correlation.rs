//! Webhook mode: does a run that GitHub vouches for approve a pending upload?
//!
//! A pending upload carries a *claim*: the repository id, run id, attempt and commit the
//! client named in `X-Runproof-Run` / `X-Runproof-Sha`, unverified. GitHub vouches for
//! *facts* about a run, either in a signed `workflow_run` webhook or in an answer of its
//! REST API to an installation token. [`decide`] compares the two under the configured
//! rules and says whether to approve, reject (with the rule that refused) or keep waiting.
//!
//! Before the body is read, [`screen`] compares the claim with what is already known of
//! the run and refuses a claim that can never be approved (so that it is neither stored
//! nor counted), and says which of the attempt's uploads count against its quota.
//!
//! Pure: the caller passes the upload's arrival time; nothing here reads a clock.
//!
//! What an approval proves: the claimed attempt of a run with that id and commit had
//! started in that repository when the upload was received (at most
//! [`START_SKEW_SECONDS`] earlier, for clocks), and had not been over for longer than the
//! grace period. It does not prove that the bytes came from it.

use crate::ids::{RepositoryId, RunId};
use crate::policy::Policy;
use crate::time::UnixTime;

/// How long before an attempt's `run_started_at` an upload may have been received and
/// still be approved, in seconds: the clocks of GitHub and of runproof's host may differ.
pub const START_SKEW_SECONDS: i64 = 60;

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
    /// When this attempt started (`run_started_at`). `None` when GitHub did not say,
    /// which approves nothing: the attempt cannot be shown to have existed.
    pub run_started_at: Option<UnixTime>,
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
    /// The claim names another commit than the run's (the same for every attempt). The
    /// run's commit is not said: it may be private.
    #[error("the claimed commit is not the commit of the run")]
    OtherCommit,
    /// The upload was received before the attempt it claims had started.
    #[error(
        "the upload was received {early_by} s before the run attempt started \
         (at most {START_SKEW_SECONDS} s are allowed for clocks)"
    )]
    BeforeAttemptStarted {
        /// Seconds between the upload's arrival and the attempt's start.
        early_by: i64,
    },
    /// The claimed attempt was followed by a later one that started more than the grace
    /// period ago, so the claimed attempt was over by then.
    #[error(
        "attempt {attempt} was followed by attempt {latest}, which started more than the \
         grace period ago"
    )]
    AttemptSuperseded {
        /// The attempt claimed.
        attempt: u32,
        /// The later attempt known.
        latest: u32,
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
/// 1. *same run*: repository id, run id and attempt must equal the claim's; else wait
///    (these facts are about another run or attempt);
/// 2. *same commit*: the head sha must equal the claim's; else reject (a run's commit
///    never changes, so the claim can never be approved);
/// 3. *attempt started*: the attempt's `run_started_at` must be known (else wait: a
///    later event may carry it; the upload expires otherwise), and the upload must have
///    been received no earlier than [`START_SKEW_SECONDS`] before it; else reject;
/// 4. *forks*: `head_repository_id` must equal `repository_id` unless `allow_forks`;
/// 5. *events*: the run's event must not be denied by policy;
/// 6. *grace period*: the upload must arrive no later than `grace_period_seconds`
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
        return Decision::Reject(RejectReason::OtherCommit);
    }
    let Some(started) = facts.run_started_at else {
        return Decision::Wait;
    };
    if let Some(reason) = before_start(started, uploaded_at) {
        return Decision::Reject(reason);
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

fn before_start(started: UnixTime, uploaded_at: UnixTime) -> Option<RejectReason> {
    let early_by = started.0.saturating_sub(uploaded_at.0);
    (early_by > START_SKEW_SECONDS).then_some(RejectReason::BeforeAttemptStarted { early_by })
}

/// Which uploads claiming an attempt could still be approved, so count against its
/// quota: those naming the run's commit, received no earlier than `not_before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Countable {
    /// The run's commit.
    pub head_sha: String,
    /// The attempt's start less [`START_SKEW_SECONDS`], when the attempt is known.
    pub not_before: Option<UnixTime>,
}

/// What to do with an upload before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screening {
    /// Nothing known refuses the claim. With `Some`, the run is known and only the
    /// attempt's uploads that could still be approved count against its quota; with
    /// `None`, the run is unknown and every upload claiming the attempt that is pending
    /// or verified counts.
    Admit(Option<Countable>),
    /// The claim can never be approved: refuse it before the body, count nothing.
    Refuse(RejectReason),
}

/// Screens a claim received at `now` against every fact known of its run (`known` may
/// hold facts of other runs, which are ignored), before the body is read.
///
/// An attempt is *known* when facts of that very attempt are at hand. A run is known when
/// facts of any of its attempts are. Rules:
/// 1. *unknown run*: admit; nothing narrows the count;
/// 2. *same commit*: a known run's commit is the same for every attempt, so a claim
///    naming another one is refused, whatever the attempt;
/// 3. *known attempt*: refused when received more than [`START_SKEW_SECONDS`] before
///    it started; otherwise admitted, and only its uploads with the run's commit received
///    since its start (less the skew) count;
/// 4. *attempt not known*: it may start later, or its event may be late, so it is
///    admitted (uploads with the run's commit count) unless a later attempt is known to
///    have started more than the grace period ago: a re-run starts only once the attempt
///    before it is over, so the claimed one was over for longer than the grace period.
#[must_use]
pub fn screen(claim: &RunClaim, known: &[RunFacts], rules: Rules<'_>, now: UnixTime) -> Screening {
    let mut run = known
        .iter()
        .filter(|f| f.repository_id == claim.repository_id && f.run_id == claim.run_id)
        .peekable();
    if run.peek().is_none() {
        return Screening::Admit(None);
    }
    let mut this_attempt = None;
    let mut later: Option<(u32, UnixTime)> = None;
    for f in run {
        if f.head_sha != claim.head_sha {
            return Screening::Refuse(RejectReason::OtherCommit);
        }
        if f.run_attempt == claim.run_attempt {
            this_attempt = Some(f);
        } else if let Some(started) = f.run_started_at
            && f.run_attempt > claim.run_attempt
            && later.is_none_or(|(_, s)| started > s)
        {
            later = Some((f.run_attempt, started));
        }
    }
    let not_before = match this_attempt {
        Some(f) => match f.run_started_at {
            Some(started) => {
                if let Some(reason) = before_start(started, now) {
                    return Screening::Refuse(reason);
                }
                Some(started.minus(START_SKEW_SECONDS))
            }
            None => None,
        },
        None => {
            if let Some((latest, started)) = later
                && now.0.saturating_sub(started.0) > rules.grace_period_seconds
            {
                return Screening::Refuse(RejectReason::AttemptSuperseded {
                    attempt: claim.run_attempt,
                    latest,
                });
            }
            None
        }
    };
    Screening::Admit(Some(Countable {
        head_sha: claim.head_sha.clone(),
        not_before,
    }))
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
            run_started_at: Some(T0.minus(100)),
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
                Decision::Reject(RejectReason::OtherCommit),
            ),
            case(
                "attempt started: start unknown waits (fail closed)",
                |f| f.run_started_at = None,
                Decision::Wait,
            ),
            case(
                "attempt started: received more than the skew before it",
                |f| f.run_started_at = Some(T0.plus(START_SKEW_SECONDS + 1)),
                Decision::Reject(RejectReason::BeforeAttemptStarted {
                    early_by: START_SKEW_SECONDS + 1,
                }),
            ),
            case(
                "attempt started: received within the skew before it",
                |f| f.run_started_at = Some(T0.plus(START_SKEW_SECONDS)),
                Decision::Approve,
            ),
            case(
                "attempt started: checked before the other rules",
                |f| {
                    f.run_started_at = Some(T0.plus(3600));
                    f.head_repository_id = Some(RepositoryId(99));
                },
                Decision::Reject(RejectReason::BeforeAttemptStarted { early_by: 3600 }),
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
                "order: a fork of another commit is refused for the commit (checked first)",
                |f| {
                    f.head_sha = "c".repeat(40);
                    f.head_repository_id = Some(RepositoryId(99));
                },
                Decision::Reject(RejectReason::OtherCommit),
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

    /// An upload received before the attempt it claims existed is never approved, even
    /// by a signed event of that attempt (any action), and a missing start approves
    /// nothing.
    #[test]
    fn rule_upload_before_its_attempt_started_is_rejected() {
        let policy = Policy::default();
        let rules = Rules {
            policy: &policy,
            allow_forks: false,
            grace_period_seconds: 600,
        };
        let mut f = facts();
        f.run_attempt = 7;
        let mut c = claim();
        c.run_attempt = 7;
        // A maintainer re-runs the run an hour after the claim was received.
        f.run_started_at = Some(T0.plus(3600));
        assert_eq!(
            decide(&c, &f, rules, T0),
            Decision::Reject(RejectReason::BeforeAttemptStarted { early_by: 3600 })
        );
        f.run_started_at = None;
        assert_eq!(decide(&c, &f, rules, T0), Decision::Wait);
        f.run_started_at = Some(T0.minus(5));
        assert_eq!(decide(&c, &f, rules, T0), Decision::Approve);
    }

    /// Before the body: a known run refuses another commit (whatever the attempt) and an
    /// attempt superseded long ago; an attempt not yet known is admitted; only uploads
    /// that could still be approved are counted.
    #[test]
    fn rule_screen_refuses_claims_that_can_never_be_approved() {
        let policy = Policy::default();
        let rules = Rules {
            policy: &policy,
            allow_forks: false,
            grace_period_seconds: 600,
        };
        let attempt = |n: u32, started: Option<UnixTime>| RunFacts {
            run_attempt: n,
            run_started_at: started,
            ..facts()
        };
        let claiming = |n: u32, sha: &str| RunClaim {
            run_attempt: n,
            head_sha: sha.into(),
            ..claim()
        };
        let counted = |not_before: Option<UnixTime>| {
            Screening::Admit(Some(Countable {
                head_sha: SHA.into(),
                not_before,
            }))
        };
        let other_run = RunFacts {
            run_id: RunId(31),
            head_sha: "d".repeat(40),
            ..facts()
        };
        let cases: Vec<(&str, RunClaim, Vec<RunFacts>, Screening)> = vec![
            (
                "unknown run: admitted, nothing narrows the count",
                claiming(1, SHA),
                vec![other_run.clone()],
                Screening::Admit(None),
            ),
            (
                "same commit: another commit of a known attempt",
                claiming(1, &"b".repeat(40)),
                vec![attempt(1, Some(T0.minus(10)))],
                Screening::Refuse(RejectReason::OtherCommit),
            ),
            (
                "same commit: another commit of an attempt not yet known",
                claiming(2, &"b".repeat(40)),
                vec![attempt(1, Some(T0.minus(10)))],
                Screening::Refuse(RejectReason::OtherCommit),
            ),
            (
                "known attempt: counted since its start less the skew",
                claiming(1, SHA),
                vec![attempt(1, Some(T0.minus(10))), other_run],
                counted(Some(T0.minus(10 + START_SKEW_SECONDS))),
            ),
            (
                "known attempt: received before it started",
                claiming(1, SHA),
                vec![attempt(1, Some(T0.plus(START_SKEW_SECONDS + 5)))],
                Screening::Refuse(RejectReason::BeforeAttemptStarted {
                    early_by: START_SKEW_SECONDS + 5,
                }),
            ),
            (
                "known attempt without a start: admitted, counted by commit",
                claiming(1, SHA),
                vec![attempt(1, None)],
                counted(None),
            ),
            (
                "attempt not yet known: the next one may start later",
                claiming(2, SHA),
                vec![attempt(1, Some(T0.minus(10_000)))],
                counted(None),
            ),
            (
                "attempt not yet known: an earlier one, superseded recently",
                claiming(1, SHA),
                vec![attempt(2, Some(T0.minus(600)))],
                counted(None),
            ),
            (
                "attempt not yet known: an earlier one, superseded long ago",
                claiming(1, SHA),
                vec![
                    attempt(3, Some(T0.minus(601))),
                    attempt(2, Some(T0.minus(900))),
                ],
                Screening::Refuse(RejectReason::AttemptSuperseded {
                    attempt: 1,
                    latest: 3,
                }),
            ),
        ];
        for (rule, c, known, want) in cases {
            assert_eq!(screen(&c, &known, rules, T0), want, "rule: {rule}");
        }
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
