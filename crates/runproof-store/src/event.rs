//! The event log: one row per decision (an upload accepted or refused, a session opened
//! or refused, …), kept for a bounded time and a bounded number of rows.
//!
//! The store checks nothing about an event's meaning: the service decides what to record
//! and never hands it a secret. Text fields are cut to bounds here so that no caller can
//! make a row unbounded.

use runproof_core::{RepositoryId, RunId, UnixTime};

use crate::model::UploadId;

/// The most characters kept of an event's text fields (route, code, rule, workflow,
/// source, detail); longer values are cut.
pub const MAX_EVENT_TEXT_CHARS: usize = 512;

/// The most bytes kept of an event's `mismatches` (as JSON); larger values are dropped
/// (replaced by `null`).
pub const MAX_EVENT_MISMATCHES_BYTES: usize = 16 * 1024;

/// What an event describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// An upload, in any mode.
    Upload,
    /// An upload session opened or refused.
    Session,
    /// A webhook delivery received, duplicate or refused.
    Webhook,
    /// A pending upload settled.
    Pending,
    /// A push to the App delivered or failed.
    Push,
    /// A repository's trust rules changed.
    Rules,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 6] = [
        EventKind::Upload,
        EventKind::Session,
        EventKind::Webhook,
        EventKind::Pending,
        EventKind::Push,
        EventKind::Rules,
    ];

    /// The kind as stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Upload => "upload",
            EventKind::Session => "session",
            EventKind::Webhook => "webhook",
            EventKind::Pending => "pending",
            EventKind::Push => "push",
            EventKind::Rules => "rules",
        }
    }

    /// Parses a kind as stored and shown.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// How a decision went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventOutcome {
    /// Accepted (an upload stored, a session opened).
    Accepted,
    /// Refused, with a code.
    Refused,
    /// Received (a webhook delivery applied).
    Received,
    /// A duplicate (a webhook delivery seen before).
    Duplicate,
    /// Delivered (a push).
    Delivered,
    /// Failed: a push not delivered, or a request the server could not decide (a `5xx`).
    Failed,
    /// Settled (a pending upload verified, rejected or expired: the detail says which).
    Settled,
    /// Changed (trust rules set or deleted).
    Changed,
}

impl EventOutcome {
    /// Every outcome.
    pub const ALL: [EventOutcome; 8] = [
        EventOutcome::Accepted,
        EventOutcome::Refused,
        EventOutcome::Received,
        EventOutcome::Duplicate,
        EventOutcome::Delivered,
        EventOutcome::Failed,
        EventOutcome::Settled,
        EventOutcome::Changed,
    ];

    /// The outcome as stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Accepted => "accepted",
            EventOutcome::Refused => "refused",
            EventOutcome::Received => "received",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Delivered => "delivered",
            EventOutcome::Failed => "failed",
            EventOutcome::Settled => "settled",
            EventOutcome::Changed => "changed",
        }
    }

    /// Parses an outcome as stored and shown.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// When it happened.
    pub at: UnixTime,
    /// What it describes.
    pub kind: EventKind,
    /// The route of the request, if any (`POST /v1/uploads`).
    pub route: Option<String>,
    /// The upload mode, if any (`oidc`, `session`, `github_token`, `webhook`).
    pub mode: Option<String>,
    /// How it went.
    pub outcome: EventOutcome,
    /// The error code of a refusal, if any.
    pub code: Option<String>,
    /// The trust rule concerned, if any.
    pub rule: Option<String>,
    /// What did not match, as JSON, if anything.
    pub mismatches: Option<serde_json::Value>,
    /// The repository, when known (for a refusal: only from a verified token).
    pub repository_id: Option<RepositoryId>,
    /// The run, when known.
    pub run_id: Option<RunId>,
    /// The workflow (`workflow_ref`), when known.
    pub workflow: Option<String>,
    /// The address the request came from, if any.
    pub source: Option<String>,
    /// More, never a secret (an upload id, a message).
    pub detail: Option<String>,
    /// The upload the event concerns, if any.
    pub upload_id: Option<UploadId>,
}

impl NewEvent {
    /// An event of `kind` with `outcome` at `at`, every other field empty.
    #[must_use]
    pub fn new(at: UnixTime, kind: EventKind, outcome: EventOutcome) -> Self {
        Self {
            at,
            kind,
            route: None,
            mode: None,
            outcome,
            code: None,
            rule: None,
            mismatches: None,
            repository_id: None,
            run_id: None,
            workflow: None,
            source: None,
            detail: None,
            upload_id: None,
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Its position: later events have larger ids.
    pub id: u64,
    /// The event.
    pub event: NewEvent,
}

/// Filters of [`crate::Store::list_events`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events of this kind.
    pub kind: Option<EventKind>,
    /// Only events with this outcome.
    pub outcome: Option<EventOutcome>,
    /// Only events with this code.
    pub code: Option<String>,
    /// Only events of this repository.
    pub repository_id: Option<RepositoryId>,
    /// Only events at or after this time.
    pub since: Option<UnixTime>,
    /// Only events of this upload.
    pub upload_id: Option<UploadId>,
}

/// The length of one [`EventHour`], in seconds.
pub const EVENT_HOUR_SECONDS: i64 = 3600;

/// How many events of one kind and outcome happened in one hour with one mode and code:
/// a row of [`crate::Store::event_hours`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHour {
    /// The start of the hour.
    pub hour: UnixTime,
    /// The events' mode, if they had one.
    pub mode: Option<String>,
    /// The events' code, if they had one.
    pub code: Option<String>,
    /// How many.
    pub count: u64,
}

/// What [`crate::Store::event_counts`] splits its counts by: one series per mode, or one
/// per code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventSplit {
    /// By the events' mode (`code` is `None` in each row).
    Mode,
    /// By the events' code (`mode` is `None` in each row).
    Code,
}

/// The start of the hour `at` falls in (the earliest time there is, for an hour that
/// would start before it).
#[must_use]
pub fn event_hour(at: UnixTime) -> UnixTime {
    UnixTime(at.0.saturating_sub(at.0.rem_euclid(EVENT_HOUR_SECONDS)))
}

/// An opaque position in the event log: the id of the last event of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor(pub u64);

impl EventCursor {
    /// The cursor as sent to clients.
    #[must_use]
    pub fn encode(&self) -> String {
        format!("e{}", self.0)
    }

    /// Parses a cursor sent by a client.
    #[must_use]
    pub fn decode(s: &str) -> Option<Self> {
        let digits = s.strip_prefix('e')?;
        if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits
            .parse::<u64>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok())
            .map(Self)
    }
}

/// `s` cut to [`MAX_EVENT_TEXT_CHARS`] characters.
pub(crate) fn bounded_text(s: &str) -> &str {
    match s.char_indices().nth(MAX_EVENT_TEXT_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_outcomes_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        for o in EventOutcome::ALL {
            assert_eq!(EventOutcome::parse(o.as_str()), Some(o));
        }
        assert_eq!(EventKind::parse("Upload"), None);
        assert_eq!(EventOutcome::parse(""), None);
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let c = EventCursor(42);
        assert_eq!(EventCursor::decode(&c.encode()), Some(c));
        for junk in [
            "",
            "e",
            "42",
            "e-1",
            "e1x",
            "e99999999999999999999",
            "e9223372036854775808",
        ] {
            assert_eq!(EventCursor::decode(junk), None, "{junk}");
        }
    }

    #[test]
    fn hours_start_on_the_hour() {
        assert_eq!(event_hour(UnixTime(7_199)), UnixTime(3_600));
        assert_eq!(event_hour(UnixTime(7_200)), UnixTime(7_200));
        assert_eq!(event_hour(UnixTime(-1)), UnixTime(-3_600));
        assert_eq!(event_hour(UnixTime(i64::MIN)), UnixTime(i64::MIN));
    }

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_EVENT_TEXT_CHARS + 5);
        assert_eq!(bounded_text(&long).chars().count(), MAX_EVENT_TEXT_CHARS);
        assert_eq!(bounded_text("short"), "short");
    }
}
