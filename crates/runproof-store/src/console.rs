//! What the operator console reads that no other caller needs: its figures at a glance,
//! and the filters of its push list.

use crate::model::UploadId;
use crate::outbox::PushStatus;

/// The counts the console's overview shows ([`crate::Store::console_counts`]). Each is
/// served by an index, so it stays cheap however many rows there are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsoleCounts {
    /// Uploads waiting for GitHub to vouch for their run (status pending).
    pub pending_uploads: u64,
    /// Pushes whose every attempt failed, waiting for a manual retry.
    pub failed_pushes: u64,
    /// Pushes waiting for their next attempt.
    pub pending_pushes: u64,
    /// Installations of the App that are not deleted.
    pub installations: u64,
    /// Repositories listed (not removed) by an installation that is not deleted.
    pub repositories: u64,
}

/// Filters of [`crate::Store::list_pushes_page`]; the default lists every push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushFilter {
    /// Only pushes with this status.
    pub status: Option<PushStatus>,
    /// Only pushes announcing this upload.
    pub upload_id: Option<UploadId>,
}
