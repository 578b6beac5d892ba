//! Blob storage: bodies stream in, become visible only when committed, stream out.

use std::pin::Pin;

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

pub use crate::local::LocalBlobStore;
