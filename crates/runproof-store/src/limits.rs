//! The store's fixed bounds and the values other crates compare with.

/// The most records one [`crate::Store::list_uploads`] (or [`crate::Store::list_pushes`]) call
/// returns; larger limits are clamped.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The longest [`crate::PushRecord::last_error`] kept, in characters; longer errors are cut.
pub const MAX_PUSH_ERROR_CHARS: usize = 500;

/// Ids looked up per statement by [`crate::Store::ids_without_upload`].
pub(crate) const ID_BATCH: usize = 1000;

/// The most attempts of one run that [`crate::Store::workflow_run_attempts`] returns.
pub const MAX_RUN_ATTEMPTS_LISTED: u32 = 100;

/// The reason recorded with a pending upload resolved as [`crate::UploadStatus::Expired`]
/// because its time to wait for its run ran out.
pub const PENDING_EXPIRED_REASON: &str = "pending_ttl elapsed";
