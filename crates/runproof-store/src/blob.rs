//! Blob storage: bodies stream in, become visible only when committed, stream out.

use std::collections::BinaryHeap;
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::model::UploadId;

/// A stream of a blob's bytes.
pub type ReadStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No blob with this key.
    #[error("blob not found")]
    NotFound,
    /// The disk is full or over quota.
    #[error("storage full")]
    Full,
    /// Any other I/O failure.
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Where upload bodies live.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Starts writing a new blob. Nothing is visible until [`BlobWriter::commit`].
    ///
    /// # Errors
    /// [`BlobError`] when the temporary file cannot be created.
    async fn begin(&self) -> Result<Box<dyn BlobWriter>, BlobError>;

    /// Streams a committed blob from byte `offset`, at most `len` bytes (all when `None`).
    ///
    /// # Errors
    /// [`BlobError::NotFound`] or an I/O error.
    async fn read(
        &self,
        id: &UploadId,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ReadStream, BlobError>;

    /// Deletes a committed blob. Deleting a missing blob succeeds.
    ///
    /// # Errors
    /// [`BlobError`] on I/O failure.
    async fn delete(&self, id: &UploadId) -> Result<(), BlobError>;

    /// Whether a committed blob exists.
    ///
    /// # Errors
    /// [`BlobError`] on I/O failure.
    async fn exists(&self, id: &UploadId) -> Result<bool, BlobError>;

    /// Checks that storage is writable.
    ///
    /// # Errors
    /// [`BlobError`] when it is not.
    async fn ping(&self) -> Result<(), BlobError>;

    /// Ids of committed blobs last modified before `modified_before`, ascending, greater
    /// than `after` when given, at most `limit`: pass the last id of one page as `after`
    /// to get the next. Bodies not yet committed are never listed, and neither is an
    /// entry whose name is not a canonical upload id.
    ///
    /// # Errors
    /// [`BlobError`] when the listing fails.
    async fn list_committed(
        &self,
        modified_before: SystemTime,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadId>, BlobError>;

    /// The namespace marker ([`crate::MARKER_NAME`]): which database this blob store
    /// belongs to; `None` when there is none.
    ///
    /// # Errors
    /// [`BlobError`] when it cannot be read, or is larger than
    /// [`crate::MAX_MARKER_BYTES`].
    async fn read_marker(&self) -> Result<Option<Vec<u8>>, BlobError>;

    /// Writes `marker` as the namespace marker unless there is one (atomically where the
    /// store allows), and returns the marker in place afterwards: `marker`, or the one
    /// found.
    ///
    /// # Errors
    /// [`BlobError`] when it cannot be written or read back.
    async fn claim_marker(&self, marker: &[u8]) -> Result<Vec<u8>, BlobError>;
}

/// The error for a marker larger than [`crate::MAX_MARKER_BYTES`].
pub(crate) fn oversized_marker() -> BlobError {
    BlobError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "the namespace marker is larger than a marker can be",
    ))
}

/// A blob being written. Dropping it without committing discards the bytes.
#[async_trait]
pub trait BlobWriter: Send {
    /// Appends bytes.
    ///
    /// # Errors
    /// [`BlobError`] on I/O failure (including a full disk).
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError>;

    /// Makes the blob durable and visible under `id`: flush, fsync, rename, fsync the dir.
    ///
    /// # Errors
    /// [`BlobError`] on I/O failure; the temporary bytes are then discarded.
    async fn commit(self: Box<Self>, id: &UploadId) -> Result<(), BlobError>;

    /// Discards the bytes written so far.
    async fn abort(self: Box<Self>);
}

/// The `limit` smallest ids offered, for listings that do not come sorted.
#[derive(Debug)]
pub(crate) struct Smallest {
    limit: usize,
    heap: BinaryHeap<String>,
}

impl Smallest {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            heap: BinaryHeap::new(),
        }
    }

    /// Whether `id` would be kept: worth the cost of checking it further.
    pub(crate) fn would_keep(&self, id: &str) -> bool {
        self.heap.len() < self.limit || self.heap.peek().is_some_and(|max| id < max.as_str())
    }

    /// Whether `limit` ids are held.
    pub(crate) fn is_full(&self) -> bool {
        self.heap.len() >= self.limit
    }

    pub(crate) fn offer(&mut self, id: UploadId) {
        if self.would_keep(id.as_str()) {
            self.heap.push(id.0);
            if self.heap.len() > self.limit {
                self.heap.pop();
            }
        }
    }

    pub(crate) fn into_sorted(self) -> Vec<UploadId> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(UploadId)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smallest_keeps_the_limit_smallest_in_order() {
        let mut smallest = Smallest::new(3);
        for id in ["e", "b", "f", "a", "d", "c", "a2"] {
            smallest.offer(UploadId(id.into()));
        }
        assert!(smallest.is_full());
        assert!(!smallest.would_keep("b"));
        assert!(smallest.would_keep("a3"));
        let ids: Vec<String> = smallest.into_sorted().into_iter().map(|id| id.0).collect();
        assert_eq!(ids, ["a", "a2", "b"]);

        let mut none = Smallest::new(0);
        none.offer(UploadId("a".into()));
        assert!(none.is_full());
        assert!(none.into_sorted().is_empty());
    }
}
