//! Upload sessions: a run identity's short-lived credential, stored by hash only.

use runproof_core::{RunIdentity, UnixTime};

/// A session to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The hex SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    /// The identity the session is scoped to.
    pub identity: RunIdentity,
    /// When it was opened.
    pub created_at: UnixTime,
    /// When it stops working.
    pub expires_at: UnixTime,
    /// The most uploads it may make.
    pub max_uploads: u64,
    /// The most bytes it may upload in all.
    pub max_bytes: u64,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The identity the session is scoped to.
    pub identity: RunIdentity,
    /// When it stops working.
    pub expires_at: UnixTime,
    /// Whether it was revoked.
    pub revoked: bool,
    /// The most uploads it may make.
    pub max_uploads: u64,
    /// The most bytes it may upload in all.
    pub max_bytes: u64,
    /// Uploads stored or in progress (reserved) so far.
    pub uploads_used: u64,
    /// Bytes stored or reserved so far.
    pub bytes_used: u64,
}

/// The bytes one upload asks of a session's budget, before its body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionAsk {
    /// Exactly this many (a declared `Content-Length`): all of them, or nothing.
    Exactly(u64),
    /// As many as are left, up to this many (a body of unknown length, capped); at least
    /// one byte must be left.
    UpTo(u64),
}

impl SessionAsk {
    /// The bytes wanted, and the fewest that still grant, as SQL integers.
    pub(crate) fn bounds(self) -> (i64, i64) {
        let sql = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        match self {
            Self::Exactly(n) => (sql(n), sql(n)),
            Self::UpTo(n) => (sql(n), sql(n.min(1))),
        }
    }
}

/// The outcome of asking a session for one more upload.
// `Granted` carries a whole identity and the other variants little: one short-lived
// value per upload request, so its size does not matter, and callers destructure the
// identity directly.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionUse {
    /// Granted: the identity, and the bytes now reserved for this upload (taken from the
    /// budget, with one upload, until released).
    Granted {
        /// The identity to attach.
        identity: RunIdentity,
        /// Bytes reserved for this upload.
        reserved: u64,
    },
    /// No such session, or revoked.
    Unknown,
    /// The session has expired.
    Expired,
    /// The upload count is spent, or no byte is left.
    Exhausted,
    /// Uploads and bytes are left, but fewer bytes than asked for.
    NoRoom {
        /// Bytes left when the refusal was read.
        bytes_left: u64,
    },
}

/// Why a session that [`crate::Store::reserve_session`] did not grant was refused, from
/// its stored row (if any): absent or revoked, then expired, then exhausted, then short
/// of bytes.
pub(crate) fn refusal(record: Option<&SessionRecord>, now: UnixTime) -> SessionUse {
    match record {
        None => SessionUse::Unknown,
        Some(r) if r.revoked => SessionUse::Unknown,
        Some(r) if r.expires_at.0 <= now.0 => SessionUse::Expired,
        Some(r) if r.uploads_used >= r.max_uploads || r.bytes_used >= r.max_bytes => {
            SessionUse::Exhausted
        }
        // Read after the update, so a release in between may make room: this attempt is
        // refused all the same, and a retry may be granted.
        Some(r) => SessionUse::NoRoom {
            bytes_left: r.max_bytes.saturating_sub(r.bytes_used),
        },
    }
}
