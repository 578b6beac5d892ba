//! The values the store keeps.

use runproof_core::{RepositoryId, RunId, RunIdentity, UnixTime};

use crate::outbox::NewPush;
use serde::{Deserialize, Serialize};

/// An upload's id: a UUIDv7 in its hyphenated form, so ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UploadId(pub String);

impl UploadId {
    /// A fresh, time-ordered id.
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().hyphenated().to_string())
    }

    /// Parses an id given by a client; only canonical UUIDs are accepted.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        let u = uuid::Uuid::try_parse(s).ok()?;
        let canonical = u.hyphenated().to_string();
        (canonical == s).then_some(Self(canonical))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the id was generated: the millisecond timestamp a UUIDv7 carries. `None`
    /// for any other kind of UUID, or text that is not one.
    #[must_use]
    pub fn generated_at(&self) -> Option<std::time::SystemTime> {
        let u = uuid::Uuid::try_parse(&self.0).ok()?;
        if u.get_version() != Some(uuid::Version::SortRand) {
            return None;
        }
        let (secs, nanos) = u.get_timestamp()?.to_unix();
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reservation's id: a random UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReservationId(pub String);

impl ReservationId {
    /// A fresh id.
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    /// Verified: its identity is proven.
    Verified,
    /// Held until GitHub vouches for its run (webhook mode).
    Pending,
    /// Refused after it was held.
    Rejected,
    /// Held too long without approval.
    Expired,
}

impl UploadStatus {
    /// The status as stored and sent.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Pending => "pending",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    /// Parses a stored or requested status.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "verified" => Some(Self::Verified),
            "pending" => Some(Self::Pending),
            "rejected" => Some(Self::Rejected),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// How an upload was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// An OIDC token sent with the upload.
    Oidc,
    /// A session token obtained by exchanging an OIDC token.
    Session,
    /// The run's `GITHUB_TOKEN`, checked against GitHub's API.
    GithubToken,
    /// A signed `workflow_run` webhook.
    Webhook,
}

impl Mode {
    /// The mode as stored and sent.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Session => "session",
            Self::GithubToken => "github_token",
            Self::Webhook => "webhook",
        }
    }

    /// Parses a stored mode.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "oidc" => Some(Self::Oidc),
            "session" => Some(Self::Session),
            "github_token" => Some(Self::GithubToken),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// An upload to insert: its blob is already committed under `id`.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// The id, also the blob's key.
    pub id: UploadId,
    /// Its status at insertion.
    pub status: UploadStatus,
    /// How it was verified.
    pub mode: Mode,
    /// The client's name for it (validated).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
    /// The client's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// When it was received.
    pub created_at: UnixTime,
    /// When it was verified, if it is.
    pub verified_at: Option<UnixTime>,
    /// The verified run identity.
    pub identity: RunIdentity,
    /// Why it was rejected, if it was.
    pub reason: Option<String>,
    /// The client's `Idempotency-Key`, if any; unique within the upload's
    /// [`IdempotencyScope`] (its mode and identity as received).
    pub idempotency_key: Option<String>,
    /// Pushes announcing this upload, enqueued in the same transaction as the record
    /// (none when an idempotency conflict stores nothing).
    pub pushes: Vec<NewPush>,
    /// The run a `pending` upload claims to come from (webhook mode), kept for
    /// correlation with `workflow_run` webhooks and per-run quotas.
    pub pending_run: Option<PendingRun>,
    /// The reservation of room in the pending quotas this upload consumes: deleted in
    /// the insert's transaction, so that from then on the upload's own size counts.
    pub pending_reservation: Option<ReservationId>,
}

impl NewUpload {
    /// The record this upload has once inserted: what a push enqueued in the same
    /// transaction announces. The conformance suite checks that it equals the record the
    /// store reads back.
    #[must_use]
    pub fn record(&self) -> UploadRecord {
        let at = |t: UnixTime| {
            time::OffsetDateTime::from_unix_timestamp(t.0)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        };
        UploadRecord {
            id: self.id.clone(),
            status: self.status,
            mode: self.mode,
            name: self.name.clone(),
            size: self.size,
            sha256: hex::encode(self.sha256),
            content_type: self.content_type.clone(),
            created_at: at(self.created_at),
            verified_at: self.verified_at.map(at),
            identity: self.identity.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// The run an unauthenticated upload claims (webhook mode), as the client declared it;
/// nothing here is verified until a signed webhook for the same run arrives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PendingRun {
    /// The repository id the client named.
    pub repository_id: RepositoryId,
    /// The run id the client named.
    pub run_id: RunId,
    /// The run attempt the client named.
    pub run_attempt: u32,
    /// The commit sha the client named.
    pub head_sha: String,
}

/// Who may be answered with an upload found by its `Idempotency-Key`: the whole identity
/// proven when the upload was received (how, by which issuer, for which repository, run
/// and attempt). A key is unique within its scope, and a replay answers only a request
/// of the same scope, so that a key never carries a record across trust levels (a
/// stranger's pending upload and a verified one of the same repository never meet).
///
/// Computed once, from the mode and identity of the upload as inserted; it does not
/// follow the identity when a pending upload is approved later.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyScope(String);

impl IdempotencyScope {
    /// The scope of a request verified by `mode` as `identity`.
    #[must_use]
    pub fn new(mode: Mode, identity: &RunIdentity) -> Self {
        let attempt = identity
            .run_attempt
            .map_or_else(|| "-".to_owned(), |a| a.to_string());
        // The issuer last: every field before it is a word without spaces, so no two
        // identities share a text. Migration 0006 builds the same text for older rows.
        Self(format!(
            "{} {} {} {attempt} {}",
            mode.as_str(),
            identity.repository_id,
            identity.run_id,
            identity.issuer
        ))
    }

    /// The scope as stored.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored upload, as the read API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The id.
    pub id: UploadId,
    /// Where it stands.
    pub status: UploadStatus,
    /// How it was verified.
    pub mode: Mode,
    /// The client's name for it.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// The client's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// When it was received, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// When it was verified, RFC 3339.
    #[serde(with = "time::serde::rfc3339::option")]
    pub verified_at: Option<time::OffsetDateTime>,
    /// The verified run identity.
    pub identity: RunIdentity,
    /// Why it was rejected, if it was.
    pub reason: Option<String>,
}

/// Filters of [`crate::Store::list_uploads`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only records with this status.
    pub status: Option<UploadStatus>,
    /// Only records of this repository.
    pub repository_id: Option<RepositoryId>,
    /// Only records verified this way.
    pub mode: Option<Mode>,
    /// Only records received at or after this time (`created_at`).
    pub since: Option<UnixTime>,
    /// Only records received before this time (`created_at`).
    pub until: Option<UnixTime>,
}

/// An opaque position in a listing: the id of the last record of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub UploadId);

impl Cursor {
    /// The cursor as sent to clients.
    #[must_use]
    pub fn encode(&self) -> String {
        self.0.0.clone()
    }

    /// Parses a cursor sent by a client.
    #[must_use]
    pub fn decode(s: &str) -> Option<Self> {
        UploadId::parse(s).map(Self)
    }
}

/// The namespace a database records.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NamespaceRecord {
    /// The namespace id, made at the first binding.
    pub id: String,
    /// The blob store it was last bound to, as [`crate::Site::blob_store`] describes it.
    pub blob_store: String,
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::UploadId;

    #[test]
    fn generated_at_reads_the_time_of_a_uuidv7_only() {
        let before = SystemTime::now() - Duration::from_millis(1);
        let at = UploadId::generate().generated_at().unwrap();
        assert!(at >= before && at <= SystemTime::now(), "{at:?}");

        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_700_000_000, 5_000_000);
        let old = UploadId(uuid::Uuid::new_v7(ts).hyphenated().to_string());
        assert_eq!(
            old.generated_at(),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5_000_000))
        );

        let v4 = UploadId(uuid::Uuid::new_v4().hyphenated().to_string());
        assert_eq!(v4.generated_at(), None);
        assert_eq!(UploadId("not-an-id".into()).generated_at(), None);
    }
}
