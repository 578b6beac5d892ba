//! One [`BlobStore`] over both places a body can live: the database (small bodies,
//! stored with their record, see [`crate::UploadWrite::body`]) and a blob store (the
//! rest). Readers, the collector and deletion go through it and need not know which.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::blob::{BlobError, BlobStore, BlobWriter, ReadStream};
use crate::error::StoreError;
use crate::model::UploadId;
use crate::store::Store;

/// Bodies in the database first, then in `blobs`.
///
/// - [`BlobStore::begin`] writes to `blobs`: a body is inlined by the commit pipeline,
///   never through a writer.
/// - [`BlobStore::read`], [`BlobStore::exists`]: the inline body when there is one,
///   else the blob.
/// - [`BlobStore::delete`]: both, the blob first (so that it goes even while the database
///   is unreachable).
/// - [`BlobStore::list_committed`] and the namespace marker: `blobs` only. An inline
///   body is never unreferenced: it is stored in its record's transaction and goes
///   with it.
pub struct InlineBodies {
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
}

impl InlineBodies {
    /// Bodies in `store`'s database, then in `blobs`.
    #[must_use]
    pub fn new(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>) -> Self {
        Self { store, blobs }
    }
}

impl std::fmt::Debug for InlineBodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineBodies").finish_non_exhaustive()
    }
}

fn unavailable(e: &StoreError) -> BlobError {
    BlobError::Io(std::io::Error::other(e.to_string()))
}

#[async_trait]
impl BlobStore for InlineBodies {
    async fn begin(&self) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.blobs.begin().await
    }

    async fn read(
        &self,
        id: &UploadId,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ReadStream, BlobError> {
        let Some(body) = self
            .store
            .inline_body(id)
            .await
            .map_err(|e| unavailable(&e))?
        else {
            return self.blobs.read(id, offset, len).await;
        };
        let total = body.len() as u64;
        let start = offset.min(total);
        let end = len.map_or(total, |len| start.saturating_add(len).min(total));
        let mut body = Bytes::from(body);
        // Both within 0..=total, which fits usize: it is a Vec's length.
        let part = body.split_off(usize::try_from(start).unwrap_or(body.len()));
        let part = part.slice(..usize::try_from(end - start).unwrap_or(part.len()));
        Ok(Box::pin(futures_util::stream::once(async move {
            Ok::<_, std::io::Error>(part)
        })))
    }

    async fn delete(&self, id: &UploadId) -> Result<(), BlobError> {
        // Both, each whatever the other's fate: a blob is deleted even while the database
        // is unreachable (a failed upload's body must not wait for it).
        let blob = self.blobs.delete(id).await;
        let inline = self.store.delete_inline_body(id).await;
        blob?;
        inline.map(|_| ()).map_err(|e| unavailable(&e))
    }

    async fn exists(&self, id: &UploadId) -> Result<bool, BlobError> {
        let inline = self
            .store
            .inline_body(id)
            .await
            .map_err(|e| unavailable(&e))?;
        if inline.is_some() {
            return Ok(true);
        }
        self.blobs.exists(id).await
    }

    async fn ping(&self) -> Result<(), BlobError> {
        self.blobs.ping().await
    }

    async fn list_committed(
        &self,
        modified_before: SystemTime,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadId>, BlobError> {
        self.blobs
            .list_committed(modified_before, after, limit)
            .await
    }

    async fn read_marker(&self) -> Result<Option<Vec<u8>>, BlobError> {
        self.blobs.read_marker().await
    }

    async fn claim_marker(&self, marker: &[u8]) -> Result<Vec<u8>, BlobError> {
        self.blobs.claim_marker(marker).await
    }
}
