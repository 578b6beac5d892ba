//! What one upload stores in one transaction, and what became of it: the unit of
//! [`Store::commit_uploads`](crate::Store::commit_uploads) and of the commit pipeline.

use bytes::Bytes;
use runproof_core::UnixTime;

use crate::model::{NewUpload, UploadRecord};

/// A `jti` spent by the upload it comes with, durable in the same commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedJti {
    /// The token's issuer.
    pub issuer: String,
    /// The token's id.
    pub jti: String,
    /// When the entry may be forgotten (the token's expiry plus leeway).
    pub expires_at: UnixTime,
}

/// Everything one upload stores, in one transaction.
#[derive(Debug)]
pub struct UploadWrite {
    /// The record, its pushes and the pending reservation it consumes.
    pub upload: NewUpload,
    /// The `jti` the upload spends, if its credential had one.
    pub jti: Option<UsedJti>,
    /// The body, when small enough to live in the database; `None` when it is in the
    /// blob store under the upload's id.
    pub body: Option<Bytes>,
}

impl UploadWrite {
    pub(crate) fn inline_len(&self) -> usize {
        self.body.as_ref().map_or(0, Bytes::len)
    }
}

/// What became of one write of a batch.
#[derive(Debug)]
#[non_exhaustive]
pub enum Committed {
    /// Stored, as this record.
    Inserted(UploadRecord),
    /// An upload of the same idempotency scope and key was there first: nothing of this
    /// write was stored but its `jti`, which stays spent.
    Existing(UploadRecord),
    /// The `jti` was spent already (by another replica, or before a restart): nothing
    /// of this write was stored.
    Replayed,
}
