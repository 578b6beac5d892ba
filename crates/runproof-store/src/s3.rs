//! Blobs on an S3-compatible object store (AWS S3, MinIO, Ceph, R2, ...).
//!
//! Layout under the configured prefix:
//! - `blobs/<id>`: committed bodies.
//! - `tmp/<uuid>`: the body of a large upload between its completion and its copy to
//!   `blobs/`, and `ping` probes. Never read from.
//! - `.runproof-namespace`: the marker naming the database that owns these blobs.
//!
//! S3 makes an object visible only whole, on a single PUT or on
//! CompleteMultipartUpload, so nothing is visible before commit:
//! - A body smaller than one part is buffered and PUT to `blobs/<id>` on commit.
//! - A larger one streams as a multipart upload in fixed-size parts, with a bounded number
//!   in flight. Its id is only known at commit, so it goes to `tmp/<uuid>`; commit
//!   completes the upload, copies the object server-side to `blobs/<id>` and deletes it
//!   from `tmp/`.
//!
//! Memory: every writer of a store shares one budget ([`S3Config::max_buffer_bytes`]).
//! A part being filled takes memory from it in blocks, only when the budget has room at
//! once; otherwise the part goes to an unnamed temporary file (deleted by the system when
//! closed, even on a crash) and is read back, under the budget, to be sent. A client
//! that stalls therefore holds budget only for what it already sent, never waits for
//! it, and can never make another writer wait for it either: bytes read back from disk
//! take their memory from a share of the budget that only sends hold, which the store
//! releases, not the clients.
//!
//! Aborting or dropping a writer aborts its multipart upload (on drop, in a background
//! task). A crash can still leave incomplete multipart uploads (invisible, but billed) and
//! objects in `tmp/`: [`S3BlobStore::open`] deletes `tmp/` objects older than a day, and
//! the bucket should have a lifecycle rule that aborts incomplete multipart uploads after a
//! day (the S3 API offers no cheap way for us to find them).

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore,
    ObjectStoreExt, PutMode, PutOptions, PutPayload,
};
use runproof_core::Secret;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::blob::{BlobError, BlobStore, BlobWriter, ReadStream, Smallest, oversized_marker};
use crate::model::UploadId;
use crate::namespace::{MARKER_NAME, MAX_MARKER_BYTES};

/// Size of each part of a multipart upload, and the most a body buffers before one starts.
/// S3 wants parts of at least 5 MiB (but the last) and at most 10,000 of them.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload being sent at once. With the part being filled, memory per writer
/// stays under `(MAX_PARTS_IN_FLIGHT + 1) * PART_SIZE`.
const MAX_PARTS_IN_FLIGHT: usize = 2;
/// The first block of memory a part takes: most bodies are small.
const FIRST_BLOCK: usize = 64 * 1024;
/// The largest block of memory a part takes at once; `PART_SIZE` is a multiple of it.
const BLOCK: usize = 1024 * 1024;
/// The default of [`S3Config::max_buffer_bytes`].
pub const DEFAULT_MAX_BUFFER_BYTES: u64 = 256 * 1024 * 1024;
/// The least [`S3Config::max_buffer_bytes`]: room for a part being filled and another
/// being sent.
pub const MIN_BUFFER_BYTES: u64 = 2 * PART_SIZE as u64;
/// The largest object a single S3 CopyObject accepts: the bound on a multipart body.
const MAX_BLOB_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// How long a request may wait for the server: for response headers (so also for a part
/// to upload), and between two chunks of a response body while it is read. There is no
/// overall request timeout, so that a large blob can stream out to a slow client.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// `tmp/` objects older than this are left by a crash, not by an upload in progress (an
/// object completed by multipart upload is dated from the upload's start).
const STALE_TMP: Duration = Duration::from_secs(24 * 60 * 60);

/// Where an [`S3BlobStore`] keeps blobs and how it reaches the store.
///
/// Fields left `None` are taken from the environment (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` or `AWS_DEFAULT_REGION`,
/// `AWS_ENDPOINT_URL`, ...) or, for credentials, from the usual AWS providers (web
/// identity, container and instance metadata). `Debug` never shows the secret key.
#[derive(Debug, Clone, Default)]
pub struct S3Config {
    /// The bucket's name.
    pub bucket: String,
    /// Key prefix under which blobs live, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// The endpoint URL, for stores other than AWS (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    pub region: Option<String>,
    /// The access key id.
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<Secret>,
    /// Allows a plain `http://` endpoint (`AWS_ALLOW_HTTP=true` also does).
    pub allow_http: bool,
    /// The most memory that the part buffers of every upload in progress hold together,
    /// in bytes ([`DEFAULT_MAX_BUFFER_BYTES`] when `None`; at least
    /// [`MIN_BUFFER_BYTES`]). Past it, parts being filled go to temporary files.
    pub max_buffer_bytes: Option<u64>,
    /// Where those temporary files go; the system's temporary directory when `None`. On
    /// a memory-backed file system (`tmpfs`) they count against memory: choose a disk.
    pub spill_dir: Option<PathBuf>,
}

impl S3Config {
    /// A configuration for `s3://<bucket>` or `s3://<bucket>/<prefix>`; everything else
    /// comes from the environment.
    ///
    /// # Errors
    /// [`BlobError::Io`] of kind `InvalidInput` when `url` is not of that form or the
    /// prefix is not a valid key prefix.
    pub fn from_url(url: &str) -> Result<Self, BlobError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid_config("an S3 URL starts with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty()
            || bucket
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "?#@:\\".contains(c))
        {
            return Err(invalid_config("not a valid bucket name in the S3 URL"));
        }
        let prefix = prefix.trim_matches('/');
        parse_prefix(prefix)?;
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            ..Self::default()
        })
    }
}

/// A [`BlobStore`] on an S3-compatible object store.
///
/// Cloning is cheap and shares the HTTP connection pool.
#[derive(Clone)]
pub struct S3BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    store: AmazonS3,
    bucket: String,
    prefix: Path,
    blobs: Path,
    tmp: Path,
    /// `<prefix>/.runproof-namespace`.
    marker: Path,
    /// Memory for the part buffers of every writer.
    budget: Arc<Budget>,
}

/// How much of its memory budget an [`S3BlobStore`] holds in part buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BufferUsage {
    /// The budget: [`S3Config::max_buffer_bytes`].
    pub budget: u64,
    /// Bytes of part buffers held now, by parts being filled or sent.
    pub held: u64,
    /// The most bytes ever held at once since the store was opened.
    pub peak: u64,
    /// Parts that went to a temporary file because the budget had no room for them.
    pub spilled_parts: u64,
}

/// Memory for part buffers, shared by every writer of one store.
#[derive(Debug)]
struct Budget {
    /// Blocks of parts being filled. Taken only when free at once (else the part spills),
    /// so no writer ever waits for what a stalled client holds; a block's share moves
    /// with its bytes when the part is sent.
    filling: Arc<Semaphore>,
    /// Spilled parts read back to be sent. Waited for: only sends hold it, and the
    /// store, not a client, paces them.
    sending: Arc<Semaphore>,
    total: u64,
    held: AtomicU64,
    peak: AtomicU64,
    spilled_parts: AtomicU64,
    spill_dir: PathBuf,
}

impl Budget {
    fn new(total: u64, spill_dir: PathBuf) -> Self {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let sending = (total / 4).max(PART_SIZE);
        Self {
            filling: Arc::new(Semaphore::new(total.saturating_sub(sending))),
            sending: Arc::new(Semaphore::new(sending)),
            total: total as u64,
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            spilled_parts: AtomicU64::new(0),
            spill_dir,
        }
    }

    /// `bytes` for a block of a part being filled, if free now.
    fn try_fill(self: &Arc<Self>, bytes: usize) -> Option<Lease> {
        let permits = u32::try_from(bytes).ok()?;
        let permit = Arc::clone(&self.filling)
            .try_acquire_many_owned(permits)
            .ok()?;
        Some(self.lease(permit, bytes))
    }

    /// `bytes` (at most a part) to read a spilled part back, once free.
    async fn send(self: &Arc<Self>, bytes: usize) -> Result<Lease, BlobError> {
        let permits = u32::try_from(bytes).map_err(|_| closed())?;
        let permit = Arc::clone(&self.sending)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| closed())?;
        Ok(self.lease(permit, bytes))
    }

    fn lease(self: &Arc<Self>, permit: OwnedSemaphorePermit, bytes: usize) -> Lease {
        let bytes = bytes as u64;
        let held = self.held.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(held, Ordering::Relaxed);
        metrics::gauge!("runproof_s3_buffer_bytes").set(held as f64);
        Lease {
            _permit: permit,
            bytes,
            budget: Arc::clone(self),
        }
    }

    fn usage(&self) -> BufferUsage {
        BufferUsage {
            budget: self.total,
            held: self.held.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            spilled_parts: self.spilled_parts.load(Ordering::Relaxed),
        }
    }
}

/// A share of the budget, held as long as the bytes it pays for; given back on drop.
struct Lease {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    budget: Arc<Budget>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let held = self
            .budget
            .held
            .fetch_sub(self.bytes, Ordering::Relaxed)
            .saturating_sub(self.bytes);
        metrics::gauge!("runproof_s3_buffer_bytes").set(held as f64);
    }
}

/// The size of the next block of a part holding `part_len` bytes: doubling from
/// [`FIRST_BLOCK`] to [`BLOCK`], so that a small body takes little and blocks end exactly
/// at the part's end.
fn next_block(part_len: usize) -> usize {
    part_len.clamp(FIRST_BLOCK, BLOCK).min(PART_SIZE - part_len)
}

impl std::fmt::Debug for S3BlobStore {
    // By hand: the client's own `Debug` is not ours to vouch for (credentials).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.inner.bucket)
            .field("prefix", &self.inner.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

impl S3BlobStore {
    /// Builds the client from the environment overridden by `config`, and starts
    /// deleting, in the background, what a crash left in `<prefix>/tmp/` (objects older
    /// than a day).
    ///
    /// It does not contact the store otherwise; [`BlobStore::ping`] checks that it is
    /// reachable and writable.
    ///
    /// # Errors
    /// [`BlobError::Io`] of kind `InvalidInput` when the configuration is invalid (no
    /// bucket, a bad prefix or endpoint, an `http://` endpoint without `allow_http`, a
    /// buffer budget under [`MIN_BUFFER_BYTES`]), or [`BlobError`] when no temporary file
    /// can be created in the spill directory.
    pub async fn open(config: S3Config) -> Result<Self, BlobError> {
        let prefix = parse_prefix(&config.prefix)?;
        if config.bucket.is_empty() {
            return Err(invalid_config("no S3 bucket configured"));
        }
        let max_buffer_bytes = config.max_buffer_bytes.unwrap_or(DEFAULT_MAX_BUFFER_BYTES);
        if max_buffer_bytes < MIN_BUFFER_BYTES {
            return Err(invalid_config(
                "the S3 buffer budget must be at least 16 MiB (two parts)",
            ));
        }
        let spill_dir = config.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
        let probe_dir = spill_dir.clone();
        tokio::task::spawn_blocking(move || tempfile::tempfile_in(&probe_dir).map(drop))
            .await
            .map_err(|e| BlobError::Io(io::Error::other(e)))?
            .map_err(|e| {
                BlobError::Io(io::Error::new(
                    e.kind(),
                    format!(
                        "cannot create a temporary file in the S3 spill directory {}: {e}",
                        spill_dir.display()
                    ),
                ))
            })?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_client_options(client_options(config.allow_http));
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        // Refused at request time otherwise, and only as a vague builder error.
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        let http_allowed = builder
            .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
            .is_some_and(|v| {
                ["1", "true", "on", "yes", "y"].contains(&v.to_ascii_lowercase().as_str())
            });
        if endpoint.is_some_and(|e| e.to_ascii_lowercase().starts_with("http://")) && !http_allowed
        {
            return Err(invalid_config(
                "an http:// S3 endpoint needs allow_http (or AWS_ALLOW_HTTP=true)",
            ));
        }
        let store = builder
            .build()
            .map_err(|e| BlobError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let inner = Arc::new(Inner {
            store,
            bucket: config.bucket,
            blobs: prefix.clone().join("blobs"),
            tmp: prefix.clone().join("tmp"),
            marker: prefix.clone().join(MARKER_NAME),
            prefix,
            budget: Arc::new(Budget::new(max_buffer_bytes, spill_dir)),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(delete_stale_tmp(Arc::clone(&inner)));
        }
        Ok(Self { inner })
    }
}

impl S3BlobStore {
    /// How much of the buffer budget its writers hold, and have held at most.
    #[must_use]
    pub fn buffer_usage(&self) -> BufferUsage {
        self.inner.budget.usage()
    }
}

/// Client options: those set in the environment (`AWS_PROXY_URL`, `AWS_TIMEOUT`, ...),
/// over our defaults. Built here because the builder's own would replace them.
fn client_options(allow_http: bool) -> ClientOptions {
    let mut options = ClientOptions::new()
        .with_timeout_disabled()
        .with_read_timeout(READ_TIMEOUT);
    for (key, value) in std::env::vars_os() {
        let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        if let Some(name) = key.strip_prefix("aws_")
            && let Ok(key) = name.parse::<ClientConfigKey>()
        {
            options = options.with_config(key, value);
        }
    }
    if allow_http {
        options = options.with_allow_http(true);
    }
    options
}

fn parse_prefix(prefix: &str) -> Result<Path, BlobError> {
    Path::parse(prefix).map_err(|e| BlobError::Io(io::Error::new(io::ErrorKind::InvalidInput, e)))
}

fn invalid_config(message: &'static str) -> BlobError {
    BlobError::Io(io::Error::new(io::ErrorKind::InvalidInput, message))
}

/// Deletes `tmp/` objects a crash left behind. Best effort: failures are logged.
async fn delete_stale_tmp(inner: Arc<Inner>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cutoff = i64::try_from(now.saturating_sub(STALE_TMP.as_secs())).unwrap_or(i64::MAX);
    let mut listing = inner.store.list(Some(&inner.tmp));
    let mut removed = 0_u64;
    while let Some(meta) = listing.next().await {
        let meta = match meta {
            Ok(meta) => meta,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the S3 tmp/ prefix to clean it");
                return;
            }
        };
        if meta.last_modified.timestamp() >= cutoff {
            continue;
        }
        match inner.store.delete(&meta.location).await {
            Ok(()) => removed += 1,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(error = %e, key = %meta.location, "cannot delete a stale S3 tmp/ object");
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "deleted partial uploads left in S3 tmp/ by a crash"
        );
    }
}

impl Inner {
    /// Where blob `id` lives. `None` for a non-canonical id, so that a hand-built
    /// [`UploadId`] can never name a key outside `blobs/`.
    fn blob_path(&self, id: &UploadId) -> Option<Path> {
        let id = UploadId::parse(id.as_str())?;
        Some(self.blobs.clone().join(id.as_str()))
    }

    /// The id of a committed blob's key: one segment under `blobs/`, a canonical id.
    fn blob_id(&self, location: &Path) -> Option<UploadId> {
        let mut parts = location.prefix_match(&self.blobs)?;
        let name = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        UploadId::parse(name.as_ref())
    }

    /// The namespace marker, if any, refused when larger than a marker can be.
    async fn read_marker(&self) -> Result<Option<Vec<u8>>, BlobError> {
        let result = match self
            .store
            .get_opts(&self.marker, GetOptions::default())
            .await
        {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        if result.meta.size > MAX_MARKER_BYTES as u64 {
            return Err(oversized_marker());
        }
        let bytes = result.bytes().await.map_err(store_error)?;
        if bytes.len() > MAX_MARKER_BYTES {
            return Err(oversized_marker());
        }
        Ok(Some(bytes.to_vec()))
    }

    fn fresh_tmp(&self, kind: &str) -> Path {
        self.tmp
            .clone()
            .join(format!("{kind}{}", uuid::Uuid::new_v4().hyphenated()))
    }
}

/// Maps an error, keeping "not found" apart: for operations on a blob's own key.
fn blob_error(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        e => store_error(e),
    }
}

/// Maps an error of an operation where "not found" means something else is missing
/// (the bucket, the multipart upload).
fn store_error(e: object_store::Error) -> BlobError {
    BlobError::Io(io::Error::other(e))
}

fn invalid_id() -> BlobError {
    BlobError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a canonical upload id",
    ))
}

/// An object's modification time; one dated before 1970 counts as 1970.
fn modified_at(meta: &object_store::ObjectMeta) -> SystemTime {
    let secs = u64::try_from(meta.last_modified.timestamp()).unwrap_or(0);
    let nanos = meta.last_modified.timestamp_subsec_nanos();
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .unwrap_or(UNIX_EPOCH)
}

fn empty_stream() -> ReadStream {
    Box::pin(futures_util::stream::empty())
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn begin(&self) -> Result<Box<dyn BlobWriter>, BlobError> {
        Ok(Box::new(S3BlobWriter {
            staging: self.inner.fresh_tmp(""),
            store: Arc::clone(&self.inner),
            blocks: Vec::new(),
            spill: None,
            part_len: 0,
            spilled: false,
            len: 0,
            upload: None,
            parts: JoinSet::new(),
            staged: false,
            broken: false,
            finished: false,
        }))
    }

    async fn read(
        &self,
        id: &UploadId,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ReadStream, BlobError> {
        let path = self.inner.blob_path(id).ok_or(BlobError::NotFound)?;
        if len == Some(0) {
            self.inner.store.head(&path).await.map_err(blob_error)?;
            return Ok(empty_stream());
        }
        let range = match (offset, len) {
            (0, None) => None,
            (offset, Some(len)) => Some(match offset.checked_add(len) {
                Some(end) => GetRange::Bounded(offset..end),
                None => GetRange::Offset(offset),
            }),
            (offset, None) => Some(GetRange::Offset(offset)),
        };
        let ranged = range.is_some();
        let options = GetOptions {
            range,
            ..GetOptions::default()
        };
        match self.inner.store.get_opts(&path, options).await {
            Ok(result) => Ok(Box::pin(result.into_stream().map_err(io::Error::from))),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            // A range starting at or past the end is refused (416); for us it reads
            // nothing. Only a HEAD tells that case from other failures.
            Err(e) if ranged => match self.inner.store.head(&path).await {
                Ok(meta) if offset >= meta.size => Ok(empty_stream()),
                Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
                Ok(_) | Err(_) => Err(store_error(e)),
            },
            Err(e) => Err(store_error(e)),
        }
    }

    async fn delete(&self, id: &UploadId) -> Result<(), BlobError> {
        let Some(path) = self.inner.blob_path(id) else {
            return Ok(());
        };
        match self.inner.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn exists(&self, id: &UploadId) -> Result<bool, BlobError> {
        let Some(path) = self.inner.blob_path(id) else {
            return Ok(false);
        };
        match self.inner.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn ping(&self) -> Result<(), BlobError> {
        let probe = self.inner.fresh_tmp("ping-");
        self.inner
            .store
            .put(&probe, PutPayload::from_static(b"ping"))
            .await
            .map_err(store_error)?;
        match self.inner.store.delete(&probe).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn list_committed(
        &self,
        modified_before: SystemTime,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadId>, BlobError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut listing = match after {
            Some(after) => {
                let offset = self.inner.blob_path(after).ok_or_else(invalid_id)?;
                self.inner
                    .store
                    .list_with_offset(Some(&self.inner.blobs), &offset)
            }
            None => self.inner.store.list(Some(&self.inner.blobs)),
        };
        let mut smallest = Smallest::new(limit);
        // S3 lists keys in ascending order, so a full page ends the listing; a store that
        // does not (S3 Express) is read to the end.
        let mut ascending = true;
        let mut previous: Option<Path> = None;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(store_error)?;
            if previous.as_ref().is_some_and(|p| meta.location <= *p) {
                ascending = false;
            }
            if let Some(id) = self.inner.blob_id(&meta.location)
                && after.is_none_or(|after| id.as_str() > after.as_str())
                && modified_at(&meta) < modified_before
            {
                smallest.offer(id);
                if ascending && smallest.is_full() {
                    break;
                }
            }
            previous = Some(meta.location);
        }
        Ok(smallest.into_sorted())
    }

    async fn read_marker(&self) -> Result<Option<Vec<u8>>, BlobError> {
        self.inner.read_marker().await
    }

    async fn claim_marker(&self, marker: &[u8]) -> Result<Vec<u8>, BlobError> {
        let path = &self.inner.marker;
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = || PutPayload::from(marker.to_vec());
        match self.inner.store.put_opts(path, payload(), create).await {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            // Conditional writes turned off (`AWS_CONDITIONAL_PUT=disabled`): look first.
            Err(object_store::Error::NotImplemented { .. }) => {
                if self.inner.read_marker().await?.is_none() {
                    self.inner
                        .store
                        .put(path, payload())
                        .await
                        .map_err(store_error)?;
                }
            }
            Err(e) => return Err(store_error(e)),
        }
        self.inner.read_marker().await?.ok_or_else(|| {
            BlobError::Io(io::Error::other(
                "the namespace marker vanished right after it was written",
            ))
        })
    }
}

/// A body being written: buffered up to one part, then a multipart upload to `staging`.
struct S3BlobWriter {
    store: Arc<Inner>,
    /// `tmp/<uuid>`: where a multipart upload goes.
    staging: Path,
    /// The part being filled (or the whole body while it is smaller than a part), while
    /// it is in memory: full blocks but the last, each with its share of the budget.
    blocks: Vec<(BytesMut, Lease)>,
    /// The temporary file a part goes to when the budget has no room for it; kept, and
    /// emptied, for the next part that spills.
    spill: Option<std::fs::File>,
    /// Bytes in the part being filled.
    part_len: usize,
    /// The part being filled is in `spill`, not in `blocks`.
    spilled: bool,
    /// Bytes accepted so far.
    len: u64,
    /// Started when the first part is full.
    upload: Option<Box<dyn MultipartUpload>>,
    /// Parts being sent, each with the budget its bytes hold until it is sent.
    parts: JoinSet<object_store::Result<()>>,
    /// The multipart upload is complete: `staging` is an object to delete.
    staged: bool,
    /// A write failed or was cancelled midway: the body is not what the caller wrote, so
    /// the writer can only be aborted.
    broken: bool,
    /// Committed or cleaned up: `Drop` has nothing to do.
    finished: bool,
}

impl S3BlobWriter {
    /// Sends the full part as the next one, starting the upload if needed, once fewer
    /// than [`MAX_PARTS_IN_FLIGHT`] parts are in flight.
    async fn send_part(&mut self) -> Result<(), BlobError> {
        if self.upload.is_none() {
            let upload = self
                .store
                .store
                .put_multipart(&self.staging)
                .await
                .map_err(store_error)?;
            self.upload = Some(upload);
        }
        self.wait_for_parts(MAX_PARTS_IN_FLIGHT - 1).await?;
        let (payload, leases) = self.take_part().await?;
        let upload = self.upload.as_mut().ok_or_else(closed)?;
        // Part numbers are assigned here, in call order, whatever order the tasks end in.
        let sending = upload.put_part(payload);
        self.parts.spawn(async move {
            let result = sending.await;
            drop(leases);
            result
        });
        Ok(())
    }

    /// Waits until at most `max` parts are in flight.
    async fn wait_for_parts(&mut self, max: usize) -> Result<(), BlobError> {
        while self.parts.len() > max {
            match self.parts.join_next().await {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(store_error(e)),
                Some(Err(e)) => return Err(BlobError::Io(io::Error::other(e))),
                None => break,
            }
        }
        Ok(())
    }

    /// Appends to the part being filled (the caller keeps it within [`PART_SIZE`]): in
    /// memory while the budget has room, then in the spill file.
    async fn append(&mut self, mut bytes: &[u8]) -> Result<(), BlobError> {
        if !self.spilled {
            while !bytes.is_empty() {
                let room = self
                    .blocks
                    .last()
                    .map_or(0, |(block, _)| block.capacity() - block.len());
                if room == 0 {
                    let size = next_block(self.part_len);
                    let Some(lease) = self.store.budget.try_fill(size) else {
                        break;
                    };
                    self.blocks.push((BytesMut::with_capacity(size), lease));
                    continue;
                }
                let (head, tail) = bytes.split_at(room.min(bytes.len()));
                if let Some((block, _)) = self.blocks.last_mut() {
                    block.extend_from_slice(head);
                }
                self.part_len += head.len();
                bytes = tail;
            }
            if bytes.is_empty() {
                return Ok(());
            }
            // No room: this part goes to disk, with what it holds in memory so far.
            self.store
                .budget
                .spilled_parts
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("runproof_s3_spilled_parts_total").increment(1);
            self.spilled = true;
            let (mut data, leases): (Vec<Bytes>, Vec<Lease>) = std::mem::take(&mut self.blocks)
                .into_iter()
                .map(|(block, lease)| (block.freeze(), lease))
                .unzip();
            data.push(Bytes::copy_from_slice(bytes));
            self.part_len += bytes.len();
            let written = self.spill_write(data).await;
            drop(leases);
            return written;
        }
        self.part_len += bytes.len();
        self.spill_write(vec![Bytes::copy_from_slice(bytes)]).await
    }

    /// Appends `data` to the spill file, creating it on first use, off the async threads.
    async fn spill_write(&mut self, data: Vec<Bytes>) -> Result<(), BlobError> {
        let file = self.spill.take();
        let dir = self.store.budget.spill_dir.clone();
        let file = tokio::task::spawn_blocking(move || {
            let mut file = match file {
                Some(file) => file,
                None => tempfile::tempfile_in(&dir)?,
            };
            for bytes in &data {
                file.write_all(bytes)?;
            }
            Ok::<_, io::Error>(file)
        })
        .await
        .map_err(|e| BlobError::Io(io::Error::other(e)))?
        .map_err(spill_error)?;
        self.spill = Some(file);
        Ok(())
    }

    /// Takes the part being filled, to be sent, with the budget its bytes hold: a part in
    /// memory as it is, a spilled one read back once the budget for sending has room.
    async fn take_part(&mut self) -> Result<(PutPayload, Vec<Lease>), BlobError> {
        let len = std::mem::take(&mut self.part_len);
        if !std::mem::take(&mut self.spilled) {
            let (blocks, leases): (Vec<Bytes>, Vec<Lease>) = std::mem::take(&mut self.blocks)
                .into_iter()
                .map(|(block, lease)| (block.freeze(), lease))
                .unzip();
            return Ok((blocks.into_iter().collect(), leases));
        }
        let lease = self.store.budget.send(len).await?;
        let mut file = self.spill.take().ok_or_else(closed)?;
        let (file, part) = tokio::task::spawn_blocking(move || {
            file.seek(SeekFrom::Start(0))?;
            let mut part = vec![0; len];
            file.read_exact(&mut part)?;
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            Ok::<_, io::Error>((file, part))
        })
        .await
        .map_err(|e| BlobError::Io(io::Error::other(e)))?
        .map_err(spill_error)?;
        self.spill = Some(file);
        Ok((PutPayload::from(part), vec![lease]))
    }

    async fn commit_inner(&mut self, id: &UploadId) -> Result<(), BlobError> {
        let dest = self.store.blob_path(id).ok_or_else(invalid_id)?;
        if self.broken {
            return Err(broken());
        }
        if self.upload.is_none() {
            // Smaller than a part: one PUT, visible whole or not at all.
            let (body, leases) = self.take_part().await?;
            self.store
                .store
                .put(&dest, body)
                .await
                .map_err(store_error)?;
            drop(leases);
            self.finished = true;
            return Ok(());
        }
        if self.part_len > 0 {
            self.send_part().await?;
        }
        self.wait_for_parts(0).await?;
        let upload = self.upload.as_mut().ok_or_else(closed)?;
        upload.complete().await.map_err(store_error)?;
        self.upload = None;
        self.staged = true;
        self.store
            .store
            .copy(&self.staging, &dest)
            .await
            .map_err(store_error)?;
        self.finished = true;
        match self.store.store.delete(&self.staging).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            // Committed all the same; `open` deletes it after a day.
            Err(e) => {
                tracing::warn!(error = %e, key = %self.staging, "cannot delete a committed upload's tmp/ object");
            }
        }
        Ok(())
    }

    /// Takes what must be cleaned up on the store, leaving nothing for `Drop`.
    fn take_leftovers(&mut self) -> Leftovers {
        self.finished = true;
        self.blocks = Vec::new();
        self.spill = None;
        Leftovers {
            store: Arc::clone(&self.store),
            parts: std::mem::take(&mut self.parts),
            upload: self.upload.take(),
            staging: std::mem::replace(&mut self.staged, false).then(|| self.staging.clone()),
        }
    }
}

/// What an uncommitted writer leaves on the store.
struct Leftovers {
    store: Arc<Inner>,
    parts: JoinSet<object_store::Result<()>>,
    upload: Option<Box<dyn MultipartUpload>>,
    staging: Option<Path>,
}

impl Leftovers {
    fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.upload.is_none() && self.staging.is_none()
    }

    /// Aborts the multipart upload and deletes the staged object. Best effort: failures
    /// are logged (the lifecycle rule and `open` catch what remains).
    async fn clean(mut self) {
        // Let parts in flight land first: S3 may keep a part that arrives after the abort.
        while self.parts.join_next().await.is_some() {}
        if let Some(mut upload) = self.upload.take()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(error = %e, "cannot abort a multipart upload");
        }
        if let Some(path) = self.staging.take() {
            match self.store.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(error = %e, key = %path, "cannot delete a tmp/ object"),
            }
        }
    }
}

fn closed() -> BlobError {
    BlobError::Io(io::Error::other("blob writer already closed"))
}

fn spill_error(e: io::Error) -> BlobError {
    BlobError::Io(io::Error::new(e.kind(), format!("S3 spill file: {e}")))
}

fn broken() -> BlobError {
    BlobError::Io(io::Error::other(
        "an earlier write to this blob failed or was cancelled",
    ))
}

#[async_trait]
impl BlobWriter for S3BlobWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        if self.broken || self.finished {
            return Err(broken());
        }
        let chunk_len = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        let len = self.len.saturating_add(chunk_len);
        if len > MAX_BLOB_SIZE {
            return Err(BlobError::Io(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "blob larger than the 5 GiB an S3 copy allows",
            )));
        }
        // Cleared only once the whole chunk is in: a failure or a cancellation midway
        // leaves it set.
        self.broken = true;
        let mut rest = chunk;
        while !rest.is_empty() {
            let n = (PART_SIZE - self.part_len).min(rest.len());
            let (head, tail) = rest.split_at(n);
            self.append(head).await?;
            rest = tail;
            if self.part_len == PART_SIZE {
                self.send_part().await?;
            }
        }
        self.len = len;
        self.broken = false;
        Ok(())
    }

    async fn commit(mut self: Box<Self>, id: &UploadId) -> Result<(), BlobError> {
        let result = self.commit_inner(id).await;
        if result.is_err() {
            self.take_leftovers().clean().await;
        }
        result
    }

    async fn abort(mut self: Box<Self>) {
        self.take_leftovers().clean().await;
    }
}

impl Drop for S3BlobWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let leftovers = self.take_leftovers();
        if leftovers.is_empty() {
            return;
        }
        // Dropped mid-upload (client gone, task cancelled): cleaning up takes requests,
        // so it runs in the background.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(leftovers.clean());
            }
            Err(_) => tracing::warn!(
                "blob writer dropped outside a runtime: its multipart upload is left to the bucket's lifecycle rule"
            ),
        }
    }
}
