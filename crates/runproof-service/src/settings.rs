//! Settings of the decisions: limits, timeouts, and each mode's own.

use std::time::Duration;

use crate::commits::DEFAULT_INLINE_MAX_BYTES;

/// The default for how old an unreferenced blob must be before the collector deletes it:
/// an hour.
pub const DEFAULT_ORPHAN_BLOB_GRACE: Duration = Duration::from_secs(60 * 60);

/// Settings of the service's decisions.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The largest upload body accepted, in bytes.
    pub max_upload_bytes: u64,
    /// Whether each `jti` is accepted only once.
    pub replay_protection: bool,
    /// The longest a client may take to send an upload body (a pending upload's
    /// reservation lives this long, and a minute more).
    pub body_timeout: Duration,
    /// How old an unreferenced blob must be before the collector deletes it. It must
    /// exceed the longest time between a blob's commit and its record's insert.
    pub orphan_blob_grace: Duration,
    /// Bodies up to this size are stored in the database, in their record's transaction.
    pub inline_max_bytes: u64,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 100 * 1024 * 1024,
            replay_protection: true,
            body_timeout: Duration::from_secs(600),
            orphan_blob_grace: DEFAULT_ORPHAN_BLOB_GRACE,
            inline_max_bytes: DEFAULT_INLINE_MAX_BYTES,
        }
    }
}

/// Limits of the sessions a server opens.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// How long a session lives.
    pub ttl: Duration,
    /// The most uploads one session may make.
    pub max_uploads: u64,
    /// The most bytes one session may upload in all.
    pub max_bytes: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(1800),
            max_uploads: 1000,
            max_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}
