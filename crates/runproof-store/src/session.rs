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
    /// Uploads started so far.
    pub uploads_used: u64,
    /// Bytes stored so far.
    pub bytes_used: u64,
}

/// The outcome of asking a session for one more upload.
// `Granted` carries a whole identity and the other variants nothing: one short-lived
// value per upload request, so its size does not matter, and callers destructure the
// identity directly.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionUse {
    /// Granted: the identity, and how many bytes this upload may still take.
    Granted {
        /// The identity to attach.
        identity: RunIdentity,
        /// Bytes left in the session before this upload.
        bytes_left: u64,
    },
    /// No such session, or revoked.
    Unknown,
    /// The session has expired.
    Expired,
    /// The upload count or byte budget is spent.
    Exhausted,
}

/// Why a session that [`crate::Store::use_session`] did not grant was refused, from its
/// stored row (if any): absent or revoked, then expired, then exhausted.
pub(crate) fn refusal(record: Option<&SessionRecord>, now: UnixTime) -> SessionUse {
    match record {
        None => SessionUse::Unknown,
        Some(r) if r.revoked => SessionUse::Unknown,
        Some(r) if r.expires_at.0 <= now.0 => SessionUse::Expired,
        // Counts only grow, so a row that looks usable here was exhausted when the
        // update ran, or was created since; either way this attempt is refused.
        Some(_) => SessionUse::Exhausted,
    }
}
