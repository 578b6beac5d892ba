//! The push outbox: signed pushes to the App, written in the same transaction as the
//! upload change they announce, and delivered at least once by a worker.

use runproof_core::UnixTime;
use serde::{Deserialize, Serialize};

/// A push to enqueue with an upload change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPush {
    /// The push's id (`X-Runproof-Delivery`), a UUID.
    pub id: String,
    /// `upload.verified`, `upload.rejected` or `upload.expired`.
    pub event: String,
    /// The upload it announces.
    pub upload_id: String,
    /// The JSON body, without the timestamp that is added at each attempt.
    pub payload: serde_json::Value,
}

/// Where a push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    /// Waiting for its next attempt.
    Pending,
    /// The App answered 2xx.
    Delivered,
    /// Every attempt failed; it waits for a manual retry.
    Failed,
}

impl PushStatus {
    /// The status as stored and sent.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored or requested status.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A stored push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// The push's id.
    pub id: String,
    /// The event.
    pub event: String,
    /// The upload it announces.
    pub upload_id: String,
    /// Where it stands.
    pub status: PushStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// When it was enqueued.
    pub created_at: UnixTime,
    /// When the next attempt is due.
    pub next_attempt_at: UnixTime,
    /// The body, without the per-attempt timestamp.
    pub payload: serde_json::Value,
}
