//! Where uploads are committed: the commit pipeline, the replay guard in memory, and the
//! size below which a body lives in the database.

use std::sync::Arc;

use runproof_store::{CommitPipeline, PipelineSettings, Store, StoreError};

use crate::replay::{DEFAULT_CAPACITY, ReplayGuard};

/// The default `[storage] inline_max_bytes`.
pub const DEFAULT_INLINE_MAX_BYTES: u64 = 64 * 1024;

/// The largest `[storage] inline_max_bytes` allowed: an inline body is held in memory
/// whole until it is committed.
pub const MAX_INLINE_MAX_BYTES: u64 = 1024 * 1024;

/// The commit pipeline and the replay guard of one server.
#[derive(Debug)]
pub struct Commits {
    pub(crate) pipeline: CommitPipeline,
    pub(crate) replay: ReplayGuard,
    /// Bodies up to this size go into the database with their record; 0: none do.
    pub(crate) inline_max_bytes: u64,
}

impl Commits {
    /// Starts the commit pipeline over `store` (on the current Tokio runtime), with
    /// bodies up to `inline_max_bytes` (at most [`MAX_INLINE_MAX_BYTES`]) inline. The
    /// replay guard starts incomplete until the latest `jti` the database holds expires.
    ///
    /// # Errors
    /// [`StoreError`] when the database cannot tell its latest `jti`.
    pub async fn start(store: Arc<dyn Store>, inline_max_bytes: u64) -> Result<Self, StoreError> {
        let latest = store.latest_jti_expiry().await?;
        let settings = PipelineSettings {
            writers: store.parallel_writes(),
            ..PipelineSettings::default()
        };
        Ok(Self {
            pipeline: CommitPipeline::start(store, settings),
            replay: ReplayGuard::new(DEFAULT_CAPACITY, latest.map_or(0, |t| t.0)),
            inline_max_bytes: inline_max_bytes.min(MAX_INLINE_MAX_BYTES),
        })
    }
}
