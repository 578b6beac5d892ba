//! Blobs on the local filesystem.
//!
//! Layout under the root directory:
//! - `tmp/`: bodies being written, one uniquely named file each. Never read from.
//! - `blobs/<xx>/<id>`: committed bodies, where `xx` is the id's last two hex digits.
//! - `lock`: held shared by every open store, exclusively while `tmp/` is cleaned.
//! - `.runproof-namespace`: the marker naming the database that owns these blobs.
//!
//! A body reaches `blobs/` only by a rename after it is complete and fsynced, so a crash
//! leaves at most a stray file in `tmp/`, which the next [`LocalBlobStore::open`] deletes.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::fs::{File, OpenOptions};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufWriter};
use tokio_util::io::ReaderStream;

use crate::blob::{BlobError, BlobStore, BlobWriter, ReadStream, Smallest, oversized_marker};
use crate::model::UploadId;
use crate::namespace::{MARKER_NAME, MAX_MARKER_BYTES};

/// Write buffer per blob being written: bounds memory per upload.
const WRITE_BUFFER: usize = 256 * 1024;
/// Largest chunk a read stream yields.
const READ_CHUNK: usize = 64 * 1024;

/// A [`BlobStore`] in a directory of the local filesystem.
///
/// Cloning is cheap and shares the directory lock.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    /// Held (shared) for the store's lifetime so that another store opened on the same
    /// root does not clean `tmp/` under our in-flight writes.
    _lock: std::fs::File,
}

impl LocalBlobStore {
    /// Opens the store rooted at `root`, creating `root/blobs/` and `root/tmp/` when
    /// missing, and deletes what a crash left in `root/tmp/` (unless another store on
    /// the same root is open, whose writes may be in flight).
    ///
    /// # Errors
    /// [`BlobError`] when the directories cannot be created, locked or cleaned.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = root.into();
        let inner = blocking(move || open_blocking(root)).await?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.inner.root
    }
}

fn open_blocking(root: PathBuf) -> Result<Inner, BlobError> {
    let blobs = root.join("blobs");
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&blobs).map_err(io_error)?;
    std::fs::create_dir_all(&tmp).map_err(io_error)?;
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(root.join("lock"))
        .map_err(io_error)?;
    match lock.try_lock() {
        Ok(()) => {
            clean_dir(&tmp)?;
            lock.unlock().map_err(io_error)?;
        }
        // Another open store holds the lock: its temporary files may be in flight.
        Err(std::fs::TryLockError::WouldBlock) => {}
        Err(std::fs::TryLockError::Error(e)) => return Err(io_error(e)),
    }
    lock.lock_shared().map_err(io_error)?;
    Ok(Inner {
        root,
        blobs,
        tmp,
        _lock: lock,
    })
}

/// Deletes everything in `dir`.
fn clean_dir(dir: &Path) -> Result<(), BlobError> {
    let mut removed = 0_u64;
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let path = entry.path();
        let result = if entry.file_type().map_err(io_error)?.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
    }
    if removed > 0 {
        tracing::info!(removed, dir = %dir.display(), "deleted partial uploads left by a crash");
    }
    Ok(())
}

impl Inner {
    /// Where blob `id` lives. `None` for a non-canonical id, so that a hand-built
    /// [`UploadId`] can never name a path outside `blobs/`.
    fn blob_path(&self, id: &UploadId) -> Option<PathBuf> {
        let id = UploadId::parse(id.as_str())?;
        let s = id.as_str();
        // The last digits are random in a UUIDv7; the first ones are a timestamp that
        // would put years of uploads in one directory.
        let shard = s.get(s.len() - 2..)?;
        Some(self.blobs.join(shard).join(s))
    }
}

/// Maps an I/O error, singling out a full disk or exhausted quota.
fn io_error(e: io::Error) -> BlobError {
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || is_full_errno(&e)
    {
        BlobError::Full
    } else {
        BlobError::Io(e)
    }
}

#[cfg(target_os = "linux")]
fn is_full_errno(e: &io::Error) -> bool {
    // ENOSPC, EDQUOT: should std stop mapping them to the kinds above.
    matches!(e.raw_os_error(), Some(28 | 122))
}

#[cfg(not(target_os = "linux"))]
fn is_full_errno(_: &io::Error) -> bool {
    false
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlobError::Io(io::Error::other(e)))?
}

/// Makes a directory's entries (a rename, a new subdirectory) durable.
async fn sync_dir(dir: PathBuf) -> Result<(), BlobError> {
    blocking(move || {
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error)
    })
    .await
}

/// Walks `blobs/<xx>/` for [`BlobStore::list_committed`]. The directory order is
/// arbitrary, so it reads every entry and keeps the `limit` smallest ids; only those
/// candidates are `stat`ed.
fn list_committed_blocking(
    blobs: &Path,
    modified_before: std::time::SystemTime,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<UploadId>, BlobError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut smallest = Smallest::new(limit);
    for shard in std::fs::read_dir(blobs).map_err(io_error)? {
        let shard = shard.map_err(io_error)?;
        let shard_name = shard.file_name();
        let Some(shard_name) = shard_name.to_str() else {
            continue;
        };
        let is_shard = shard_name.len() == 2
            && shard_name
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        // `file_type` does not follow symbolic links, so a link is never walked into.
        if !is_shard || !shard.file_type().map_err(io_error)?.is_dir() {
            continue;
        }
        let entries = match std::fs::read_dir(shard.path()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error)?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(UploadId::parse) else {
                continue;
            };
            // Only where `blob_path` puts this id: a stray file elsewhere is not a blob,
            // and deleting by id would remove the file at the proper place instead.
            if !id.as_str().ends_with(shard_name)
                || after.is_some_and(|after| id.as_str() <= after)
                || !smallest.would_keep(id.as_str())
            {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Deleted since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(e)),
            };
            if meta.is_file() && meta.modified().map_err(io_error)? < modified_before {
                smallest.offer(id);
            }
        }
    }
    Ok(smallest.into_sorted())
}

fn invalid_id() -> BlobError {
    BlobError::Io(io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a canonical upload id",
    ))
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn begin(&self) -> Result<Box<dyn BlobWriter>, BlobError> {
        let tmp_path = self
            .inner
            .tmp
            .join(format!("{}.part", uuid::Uuid::new_v4()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .await
            .map_err(io_error)?;
        Ok(Box::new(LocalBlobWriter {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            tmp_path,
            store: Arc::clone(&self.inner),
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
        let mut file = match File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(io_error(e)),
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).await.map_err(io_error)?;
        }
        let reader = file.take(len.unwrap_or(u64::MAX));
        Ok(Box::pin(ReaderStream::with_capacity(reader, READ_CHUNK)))
    }

    async fn delete(&self, id: &UploadId) -> Result<(), BlobError> {
        let Some(path) = self.inner.blob_path(id) else {
            return Ok(());
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn exists(&self, id: &UploadId) -> Result<bool, BlobError> {
        let Some(path) = self.inner.blob_path(id) else {
            return Ok(false);
        };
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn ping(&self) -> Result<(), BlobError> {
        let probe = self
            .inner
            .tmp
            .join(format!("ping-{}.probe", uuid::Uuid::new_v4()));
        let written = tokio::fs::write(&probe, b"ping").await.map_err(io_error);
        let removed = tokio::fs::remove_file(&probe).await;
        written?;
        removed.map_err(io_error)
    }

    async fn list_committed(
        &self,
        modified_before: std::time::SystemTime,
        after: Option<&UploadId>,
        limit: usize,
    ) -> Result<Vec<UploadId>, BlobError> {
        let inner = Arc::clone(&self.inner);
        let after = after.map(|id| id.as_str().to_owned());
        blocking(move || {
            list_committed_blocking(&inner.blobs, modified_before, after.as_deref(), limit)
        })
        .await
    }

    async fn read_marker(&self) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.inner.root.join(MARKER_NAME);
        blocking(move || read_marker_blocking(&path)).await
    }

    async fn claim_marker(&self, marker: &[u8]) -> Result<Vec<u8>, BlobError> {
        let inner = Arc::clone(&self.inner);
        let marker = marker.to_vec();
        blocking(move || claim_marker_blocking(&inner, &marker)).await
    }
}

/// The marker at `path`, if any, read up to one byte past the most a marker can be.
fn read_marker_blocking(path: &Path) -> Result<Option<Vec<u8>>, BlobError> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_MARKER_BYTES as u64 + 1),
        &mut bytes,
    )
    .map_err(io_error)?;
    if bytes.len() > MAX_MARKER_BYTES {
        return Err(oversized_marker());
    }
    Ok(Some(bytes))
}

/// Writes the marker whole to `tmp/`, then links it into place, which fails when a marker
/// exists: of two stores claiming at once, one marker wins whole.
fn claim_marker_blocking(inner: &Inner, marker: &[u8]) -> Result<Vec<u8>, BlobError> {
    let dest = inner.root.join(MARKER_NAME);
    let staged = inner
        .tmp
        .join(format!("marker-{}", uuid::Uuid::new_v4().hyphenated()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&staged)
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, marker)?;
            file.sync_all()
        });
    let linked = written.and_then(|()| std::fs::hard_link(&staged, &dest));
    if let Err(e) = std::fs::remove_file(&staged)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, file = %staged.display(), "cannot remove a staged marker");
    }
    match linked {
        Ok(()) => std::fs::File::open(&inner.root)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(e)),
    }
    read_marker_blocking(&dest)?.ok_or_else(|| {
        BlobError::Io(io::Error::other(
            "the namespace marker vanished right after it was written",
        ))
    })
}

/// A body being written to `tmp/`.
struct LocalBlobWriter {
    /// `None` once handed to `commit`.
    file: Option<BufWriter<File>>,
    tmp_path: PathBuf,
    store: Arc<Inner>,
    /// Set once the temporary file is renamed or removed, so `Drop` leaves it alone.
    finished: bool,
}

impl LocalBlobWriter {
    async fn commit_inner(&mut self, id: &UploadId) -> Result<(), BlobError> {
        let dest = self.store.blob_path(id).ok_or_else(invalid_id)?;
        let shard = dest.parent().ok_or_else(invalid_id)?.to_path_buf();
        let mut file = self.file.take().ok_or_else(closed)?;
        file.flush().await.map_err(io_error)?;
        let file = file.into_inner();
        file.sync_all().await.map_err(io_error)?;
        drop(file);

        match tokio::fs::create_dir(&shard).await {
            // A new shard's own entry in `blobs/` must be durable too.
            Ok(()) => sync_dir(self.store.blobs.clone()).await?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(e)),
        }
        tokio::fs::rename(&self.tmp_path, &dest)
            .await
            .map_err(io_error)?;
        self.finished = true;
        if let Err(e) = sync_dir(shard).await {
            // Not known durable: withdraw it rather than leave an orphan the caller
            // will not record.
            if let Err(rm) = tokio::fs::remove_file(&dest).await {
                tracing::warn!(error = %rm, blob = %dest.display(), "cannot remove blob after failed commit");
            }
            return Err(e);
        }
        Ok(())
    }

    async fn discard(&mut self) {
        drop(self.file.take());
        if self.finished {
            return;
        }
        match tokio::fs::remove_file(&self.tmp_path).await {
            Ok(()) => self.finished = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.finished = true,
            // Leave `finished` unset: `Drop` tries once more.
            Err(e) => {
                tracing::warn!(error = %e, file = %self.tmp_path.display(), "cannot remove partial upload");
            }
        }
    }
}

fn closed() -> BlobError {
    BlobError::Io(io::Error::other("blob writer already closed"))
}

#[async_trait]
impl BlobWriter for LocalBlobWriter {
    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        let file = self.file.as_mut().ok_or_else(closed)?;
        file.write_all(chunk).await.map_err(io_error)
    }

    async fn commit(mut self: Box<Self>, id: &UploadId) -> Result<(), BlobError> {
        let result = self.commit_inner(id).await;
        if result.is_err() {
            self.discard().await;
        }
        result
    }

    async fn abort(mut self: Box<Self>) {
        self.discard().await;
    }
}

impl Drop for LocalBlobWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Dropped mid-upload (client gone, task cancelled): no async context to rely
        // on, and unlinking one file is quick.
        drop(self.file.take());
        if let Err(e) = std::fs::remove_file(&self.tmp_path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, file = %self.tmp_path.display(), "cannot remove partial upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tempfile::TempDir;

    use super::*;
    use crate::testsuite;

    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(entries(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suite() {
        let dir = TempDir::new().unwrap();
        let store = LocalBlobStore::open(dir.path()).await.unwrap();
        testsuite::blob_suite(Arc::new(store.clone())).await;
        // Everything the suite wrote was committed or discarded.
        assert!(entries(&dir.path().join("tmp")).is_empty());
    }

    #[tokio::test]
    async fn abort_and_drop_leave_nothing() {
        let dir = TempDir::new().unwrap();
        let store = LocalBlobStore::open(dir.path()).await.unwrap();

        let mut writer = store.begin().await.unwrap();
        writer.write(&[7; 300_000]).await.unwrap();
        assert_eq!(entries(&dir.path().join("tmp")).len(), 1);
        writer.abort().await;

        let mut writer = store.begin().await.unwrap();
        writer.write(&[7; 300_000]).await.unwrap();
        drop(writer);

        store.ping().await.unwrap();
        assert!(entries(&dir.path().join("tmp")).is_empty());
        assert!(entries(&dir.path().join("blobs")).is_empty());
    }

    #[tokio::test]
    async fn commit_places_the_blob_under_blobs() {
        let dir = TempDir::new().unwrap();
        let store = LocalBlobStore::open(dir.path()).await.unwrap();
        let id = testsuite::put(&store, &[b"abc"]).await.unwrap();
        let s = id.as_str();
        let want = dir.path().join("blobs").join(&s[s.len() - 2..]).join(s);
        assert_eq!(entries(&dir.path().join("blobs")), vec![want.clone()]);
        assert_eq!(std::fs::read(want).unwrap(), b"abc");
        assert!(entries(&dir.path().join("tmp")).is_empty());
    }

    #[tokio::test]
    async fn a_failed_commit_discards_the_bytes() {
        let dir = TempDir::new().unwrap();
        let store = LocalBlobStore::open(dir.path()).await.unwrap();
        let mut writer = store.begin().await.unwrap();
        writer.write(b"abc").await.unwrap();
        let bad = UploadId("../../escape".into());
        let err = writer.commit(&bad).await.unwrap_err();
        assert!(matches!(err, BlobError::Io(ref e) if e.kind() == io::ErrorKind::InvalidInput));
        assert!(entries(dir.path()).iter().all(|p| p.ends_with("lock")));
    }

    #[tokio::test]
    async fn hand_built_ids_never_leave_blobs() {
        let dir = TempDir::new().unwrap();
        let store = LocalBlobStore::open(dir.path().join("root")).await.unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        for bad in ["../secret", "../../secret", "", "A1B2", "/etc/passwd"] {
            let id = UploadId(bad.into());
            assert!(matches!(
                store.read(&id, 0, None).await,
                Err(BlobError::NotFound)
            ));
            assert!(!store.exists(&id).await.unwrap());
            store.delete(&id).await.unwrap();
        }
        assert!(dir.path().join("secret").exists());
        // Uppercase is a valid UUID but not canonical, so not a blob name either.
        let id = testsuite::put(&store, &[b"x"]).await.unwrap();
        let upper = UploadId(id.as_str().to_uppercase());
        assert!(!store.exists(&upper).await.unwrap());
    }

    #[tokio::test]
    async fn reopening_cleans_stray_temporary_files() {
        let dir = TempDir::new().unwrap();
        let store = LocalBlobStore::open(dir.path()).await.unwrap();
        let id = testsuite::put(&store, &[b"kept"]).await.unwrap();
        drop(store);
        // What a crash mid-upload leaves behind.
        std::fs::write(dir.path().join("tmp/crashed.part"), b"half").unwrap();
        std::fs::create_dir(dir.path().join("tmp/odd")).unwrap();
        std::fs::write(dir.path().join("tmp/odd/x"), b"x").unwrap();

        let store = LocalBlobStore::open(dir.path()).await.unwrap();
        assert!(
            std::fs::read_dir(dir.path().join("tmp"))
                .unwrap()
                .next()
                .is_none()
        );
        assert_eq!(
            testsuite::read_to_vec(&store, &id, 0, None).await.unwrap(),
            b"kept"
        );
    }

    #[tokio::test]
    async fn a_second_open_keeps_in_flight_writes_of_the_first() {
        let dir = TempDir::new().unwrap();
        let first = LocalBlobStore::open(dir.path()).await.unwrap();
        let mut writer = first.begin().await.unwrap();
        writer.write(b"in flight").await.unwrap();

        let second = LocalBlobStore::open(dir.path()).await.unwrap();
        let id = UploadId::generate();
        writer.commit(&id).await.unwrap();
        assert_eq!(
            testsuite::read_to_vec(&second, &id, 0, None).await.unwrap(),
            b"in flight"
        );
    }

    fn set_mtime(path: &Path, time: std::time::SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    #[tokio::test]
    async fn list_committed_honours_the_cutoff_and_skips_foreign_names() {
        use std::time::{Duration, SystemTime};

        let dir = TempDir::new().unwrap();
        let store = LocalBlobStore::open(dir.path()).await.unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let long_ago = now - 2 * hour;
        let path_of = |id: &UploadId| {
            let s = id.as_str();
            dir.path().join("blobs").join(&s[s.len() - 2..]).join(s)
        };

        let old = testsuite::put(&store, &[b"old"]).await.unwrap();
        set_mtime(&path_of(&old), long_ago);
        let fresh = testsuite::put(&store, &[b"fresh"]).await.unwrap();

        // Old entries that are not blobs: none is listed, none is touched.
        let shard = path_of(&old).parent().unwrap().to_path_buf();
        let stray = UploadId::generate();
        let other_shard = if stray.as_str().ends_with("00") {
            "01"
        } else {
            "00"
        };
        std::fs::create_dir_all(dir.path().join("blobs").join(other_shard)).unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/zz")).unwrap();
        let foreign = [
            shard.join("notes.txt"),
            shard.join(stray.as_str().to_uppercase()),
            dir.path()
                .join("blobs")
                .join(other_shard)
                .join(stray.as_str()),
            dir.path().join("blobs/zz").join(stray.as_str()),
            dir.path().join("blobs").join(stray.as_str()),
            dir.path().join("tmp").join(stray.as_str()),
        ];
        for path in &foreign {
            std::fs::write(path, b"not ours").unwrap();
            set_mtime(path, long_ago);
        }
        // A directory named like a blob of this shard.
        let shard_name = shard.file_name().unwrap().to_str().unwrap().to_owned();
        let dir_id = std::iter::repeat_with(UploadId::generate)
            .find(|id| id.as_str().ends_with(&shard_name))
            .unwrap();
        std::fs::create_dir(shard.join(dir_id.as_str())).unwrap();

        let listed = store.list_committed(now - hour, None, 100).await.unwrap();
        assert_eq!(listed, vec![old.clone()]);
        let mut both = vec![old.clone(), fresh.clone()];
        both.sort_by(|a, b| a.0.cmp(&b.0));
        let listed = store.list_committed(now + hour, None, 100).await.unwrap();
        assert_eq!(listed, both);
        assert!(
            store
                .list_committed(long_ago, None, 100)
                .await
                .unwrap()
                .is_empty(),
            "the cutoff is exclusive"
        );
        assert!(
            store
                .list_committed(now + hour, None, 0)
                .await
                .unwrap()
                .is_empty()
        );
        for path in &foreign {
            assert!(path.exists(), "{}", path.display());
        }
    }

    #[test]
    fn full_disks_are_told_apart() {
        assert!(matches!(
            io_error(io::Error::from(io::ErrorKind::StorageFull)),
            BlobError::Full
        ));
        assert!(matches!(
            io_error(io::Error::from(io::ErrorKind::QuotaExceeded)),
            BlobError::Full
        ));
        assert!(matches!(
            io_error(io::Error::from_raw_os_error(28)),
            BlobError::Full
        ));
        assert!(matches!(
            io_error(io::Error::from(io::ErrorKind::PermissionDenied)),
            BlobError::Io(_)
        ));
    }
}
