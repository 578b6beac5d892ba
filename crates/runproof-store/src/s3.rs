//! Blobs on an S3-compatible object store (AWS S3, MinIO, Ceph, R2, ...).
//!
//! Layout under the configured prefix:
//! - `blobs/<id>`: committed bodies.
//! - `tmp/<uuid>`: the body of a large upload between its completion and its copy to
//!   `blobs/`, and `ping` probes. Never read from.
//!
//! S3 makes an object visible only whole, on a single PUT or on
//! CompleteMultipartUpload, so nothing is visible before commit:
//! - A body smaller than one part stays in memory and is PUT to `blobs/<id>` on commit.
//! - A larger one streams as a multipart upload in fixed-size parts, with a bounded number
//!   in flight. Its id is only known at commit, so it goes to `tmp/<uuid>`; commit
//!   completes the upload, copies the object server-side to `blobs/<id>` and deletes it
//!   from `tmp/`.
//!
//! Aborting or dropping a writer aborts its multipart upload (on drop, in a background
//! task). A crash can still leave incomplete multipart uploads (invisible, but billed) and
//! objects in `tmp/`: [`S3BlobStore::open`] deletes `tmp/` objects older than a day, and
//! the bucket should have a lifecycle rule that aborts incomplete multipart uploads after a
//! day (the S3 API offers no cheap way for us to find them).

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ClientOptions, GetOptions, GetRange, MultipartUpload, ObjectStore,
    ObjectStoreExt, PutPayload,
};
use runproof_core::Secret;
use tokio::task::JoinSet;

use crate::blob::{BlobError, BlobStore, BlobWriter, ReadStream, Smallest};
use crate::model::UploadId;

/// Size of each part of a multipart upload, and the most a body buffers before one starts.
/// S3 wants parts of at least 5 MiB (but the last) and at most 10,000 of them.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload being sent at once. With the part being filled, memory per writer
/// stays under `(MAX_PARTS_IN_FLIGHT + 1) * PART_SIZE`.
const MAX_PARTS_IN_FLIGHT: usize = 2;
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
    /// bucket, a bad prefix or endpoint, an `http://` endpoint without `allow_http`).
    pub async fn open(config: S3Config) -> Result<Self, BlobError> {
        let prefix = parse_prefix(&config.prefix)?;
        if config.bucket.is_empty() {
            return Err(invalid_config("no S3 bucket configured"));
        }
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
            prefix,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(delete_stale_tmp(Arc::clone(&inner)));
        }
        Ok(Self { inner })
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
            buffer: BytesMut::new(),
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
}

/// A body being written: buffered up to one part, then a multipart upload to `staging`.
struct S3BlobWriter {
    store: Arc<Inner>,
    /// `tmp/<uuid>`: where a multipart upload goes.
    staging: Path,
    /// The part being filled (or the whole body while it is smaller than a part).
    buffer: BytesMut,
    /// Bytes accepted so far.
    len: u64,
    /// Started when the first part is full.
    upload: Option<Box<dyn MultipartUpload>>,
    /// Parts being sent.
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
    /// Sends the full buffer as the next part, starting the upload if needed, once fewer
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
        let upload = self.upload.as_mut().ok_or_else(closed)?;
        let part = std::mem::take(&mut self.buffer).freeze();
        // Part numbers are assigned here, in call order, whatever order the tasks end in.
        self.parts.spawn(upload.put_part(PutPayload::from(part)));
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

    /// Appends to the buffer, growing it geometrically but never past one part.
    fn buffer_extend(&mut self, bytes: &[u8]) {
        let needed = self.buffer.len() + bytes.len();
        if needed > self.buffer.capacity() {
            let target = needed.max(self.buffer.capacity() * 2).min(PART_SIZE);
            self.buffer.reserve(target - self.buffer.len());
        }
        self.buffer.extend_from_slice(bytes);
    }

    async fn commit_inner(&mut self, id: &UploadId) -> Result<(), BlobError> {
        let dest = self.store.blob_path(id).ok_or_else(invalid_id)?;
        if self.broken {
            return Err(broken());
        }
        if self.upload.is_none() {
            // Smaller than a part: one PUT, visible whole or not at all.
            let body = std::mem::take(&mut self.buffer).freeze();
            self.store
                .store
                .put(&dest, PutPayload::from(body))
                .await
                .map_err(store_error)?;
            self.finished = true;
            return Ok(());
        }
        if !self.buffer.is_empty() {
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
        self.buffer = BytesMut::new();
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
            let n = (PART_SIZE - self.buffer.len()).min(rest.len());
            let (head, tail) = rest.split_at(n);
            self.buffer_extend(head);
            rest = tail;
            if self.buffer.len() == PART_SIZE {
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
