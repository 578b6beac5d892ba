//! The synthetic event log both 1,000,000-event benches fill: the store's
//! (`benches/events.rs`) and the console's (`runproof-server/benches/console.rs`, which
//! includes this file by path). Reproducible draws: the same seed gives the same log.
// Each bench uses a part of what is here.
#![allow(dead_code)]

use runproof_core::{RepositoryId, RunId, UnixTime};
use runproof_store::{EventKind, EventOutcome, NewEvent, UploadId};

/// Events per `insert_events` call, as the event writer sends them.
pub(crate) const BATCH: usize = 256;
/// The repositories events are spread over, from [`FIRST_REPOSITORY`].
pub(crate) const REPOSITORIES: u64 = 200;
pub(crate) const FIRST_REPOSITORY: u64 = 1_296_000;
/// The code whose refusals name their repository (only a verified token does).
pub(crate) const TARGET_CODE: &str = "rule_mismatch";
pub(crate) const CODES: [&str; 10] = [
    "missing_credentials",
    "bad_signature",
    "token_expired",
    "audience_mismatch",
    "policy_denied",
    "rule_mismatch",
    "replayed_token",
    "rate_limited",
    "invalid_request",
    "payload_too_large",
];
/// How often each code is drawn (out of the sum): a few codes make most refusals.
pub(crate) const CODE_WEIGHTS: [u64; 10] = [30, 8, 12, 4, 10, 20, 3, 6, 5, 2];
pub(crate) const MODES: [&str; 4] = ["oidc", "session", "github_token", "webhook"];
pub(crate) const MODE_WEIGHTS: [u64; 4] = [60, 25, 10, 5];

/// xorshift64*: reproducible draws without a dependency.
pub(crate) struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn weighted<T: Copy>(&mut self, items: &[T], weights: &[u64]) -> T {
        let mut draw = self.below(weights.iter().sum());
        for (item, w) in items.iter().zip(weights) {
            if draw < *w {
                return *item;
            }
            draw -= w;
        }
        items[items.len() - 1]
    }
}

/// The events, in time order, one batch at a time.
pub(crate) struct Events {
    rng: Rng,
    total: u64,
    next: u64,
    start: i64,
    span: i64,
    last_upload: Option<UploadId>,
    /// The first upload drawn in the second half of the log.
    pub(crate) target_upload: Option<UploadId>,
}

impl Events {
    /// `total` events from `start` over `span` seconds, always drawn alike.
    pub(crate) fn new(total: u64, start: i64, span: i64) -> Self {
        Self {
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            total,
            next: 0,
            start,
            span,
            last_upload: None,
            target_upload: None,
        }
    }

    fn event(&mut self) -> NewEvent {
        let i = self.next;
        self.next += 1;
        let at =
            self.start + i64::try_from(i).unwrap() * self.span / i64::try_from(self.total).unwrap();
        let r = self.rng.below(REPOSITORIES);
        let repository_id = RepositoryId(FIRST_REPOSITORY + r);
        let run_id = RunId(9_000_000_000 + self.rng.below(1_000_000));
        let workflow = format!("octo-org/repo-{r}/.github/workflows/ci.yml@refs/heads/main");
        let source = format!("192.0.2.{}", self.rng.below(250) + 1);
        let kind = self.rng.weighted(
            &[
                EventKind::Upload,
                EventKind::Session,
                EventKind::Webhook,
                EventKind::Push,
                EventKind::Pending,
                EventKind::Rules,
            ],
            &[70, 10, 10, 7, 2, 1],
        );
        let mut e = match kind {
            EventKind::Upload | EventKind::Session => {
                let outcome = self.rng.weighted(
                    &[
                        EventOutcome::Accepted,
                        EventOutcome::Refused,
                        EventOutcome::Failed,
                    ],
                    &[80, 18, 2],
                );
                let mut e = NewEvent::new(UnixTime(at), kind, outcome);
                e.route = Some(
                    if kind == EventKind::Upload {
                        "POST /v1/uploads"
                    } else {
                        "POST /v1/sessions"
                    }
                    .into(),
                );
                e.mode = Some(self.rng.weighted(&MODES, &MODE_WEIGHTS).into());
                match outcome {
                    EventOutcome::Accepted => {
                        e.repository_id = Some(repository_id);
                        e.run_id = Some(run_id);
                        e.workflow = Some(workflow);
                        if kind == EventKind::Upload {
                            let id = UploadId::generate();
                            e.detail = Some(format!("verified {id}"));
                            e.upload_id = Some(id.clone());
                            if self.target_upload.is_none() && i >= self.total / 2 {
                                self.target_upload = Some(id.clone());
                            }
                            self.last_upload = Some(id);
                        }
                    }
                    EventOutcome::Refused => {
                        let code = self.rng.weighted(&CODES, &CODE_WEIGHTS);
                        e.code = Some(code.into());
                        e.detail = Some(format!("the request was refused: {code}"));
                        if code == TARGET_CODE {
                            e.rule = Some("release tags".into());
                            e.mismatches = Some(serde_json::json!([
                                {"field": "ref", "expected": ["refs/tags/v*"], "actual": "refs/heads/main"}
                            ]));
                            e.repository_id = Some(repository_id);
                            e.run_id = Some(run_id);
                            e.workflow = Some(workflow);
                        }
                    }
                    _ => {
                        e.code = Some("upstream_unavailable".into());
                        e.detail = Some("GitHub's keys could not be fetched".into());
                    }
                }
                e
            }
            EventKind::Webhook => {
                let outcome = self.rng.weighted(
                    &[
                        EventOutcome::Received,
                        EventOutcome::Duplicate,
                        EventOutcome::Refused,
                    ],
                    &[90, 7, 3],
                );
                let mut e = NewEvent::new(UnixTime(at), kind, outcome);
                e.route = Some("POST /v1/github/webhooks".into());
                e.detail = Some(format!("workflow_run {}", uuid::Uuid::new_v4()));
                if outcome == EventOutcome::Refused {
                    e.code = Some("bad_signature".into());
                }
                e
            }
            EventKind::Push | EventKind::Pending => {
                let outcome = match kind {
                    EventKind::Pending => EventOutcome::Settled,
                    _ if self.rng.below(10) == 0 => EventOutcome::Failed,
                    _ => EventOutcome::Delivered,
                };
                let mut e = NewEvent::new(UnixTime(at), kind, outcome);
                e.upload_id.clone_from(&self.last_upload);
                e.repository_id = Some(repository_id);
                e.detail = Some(format!(
                    "upload.verified of {}, attempt 1",
                    self.last_upload.as_ref().map_or("", UploadId::as_str)
                ));
                e
            }
            _ => {
                let mut e = NewEvent::new(UnixTime(at), kind, EventOutcome::Changed);
                e.route = Some("PUT /v1/repositories/{id}/rules".into());
                e.repository_id = Some(repository_id);
                e.detail = Some("set 1 rules".into());
                e
            }
        };
        e.source.get_or_insert(source);
        e
    }

    /// The next batch of [`BATCH`] events (fewer at the end), or `None` when all are drawn.
    pub(crate) fn batch(&mut self) -> Option<Vec<NewEvent>> {
        let left = self.total - self.next;
        (left > 0).then(|| (0..left.min(BATCH as u64)).map(|_| self.event()).collect())
    }
}
