//! Why a store operation failed.

use crate::model::UploadRecord;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with the same idempotency scope and key exists.
    #[error("an upload with this idempotency key exists")]
    Conflict(Box<UploadRecord>),
    /// The database could not be reached or failed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be decoded (a bug or a corrupted database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A value cannot be stored (such as an integer beyond the database's range).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// The database was asked to commit and no answer came back (the connection was lost
    /// while the `COMMIT` was in flight): the change may be stored or not. Look before
    /// undoing anything that a stored change would need.
    #[error("commit outcome unknown: {0}")]
    CommitUnknown(String),
    /// The commit pipeline's queue is full: nothing was stored; retry shortly.
    #[error("the commit queue is full")]
    Busy,
}

impl StoreError {
    /// The same error for another write of a batch that failed as a whole.
    pub(crate) fn for_each_write(&self) -> StoreError {
        match self {
            StoreError::CommitUnknown(msg) => StoreError::CommitUnknown(msg.clone()),
            StoreError::Unavailable(msg) => StoreError::Unavailable(msg.clone()),
            StoreError::Busy => StoreError::Busy,
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}
