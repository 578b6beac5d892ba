//! `S3BlobStore` against a real S3 server: `s3s-fs`, run in-process on loopback over a
//! temporary directory, so that no environment or external service is needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use runproof_core::Secret;
use runproof_core::UnixTime;
use runproof_store::testsuite::{self, read_to_vec};
use runproof_store::{
    BlobError, BlobStore, BlobWriter, MARKER_NAME, MIN_BUFFER_BYTES, NamespaceError, S3BlobStore,
    S3Config, Site, SqliteStore, UploadId, bind_namespace, check_namespace,
};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::net::TcpListener;

const BUCKET: &str = "runproof-test";
const PREFIX: &str = "deploy/one";
const ACCESS_KEY: &str = "AKIDRUNPROOFTEST";
const SECRET_KEY: &str = "runproof-test-secret-key";
const MIB: usize = 1024 * 1024;

/// An S3 server on 127.0.0.1 storing into a temporary directory; it stops with the test's
/// runtime.
struct Server {
    root: TempDir,
    endpoint: String,
}

impl Server {
    async fn start() -> Self {
        let root = TempDir::new().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Self { root, endpoint }
    }

    fn config(&self) -> S3Config {
        S3Config {
            bucket: BUCKET.into(),
            prefix: PREFIX.into(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(Secret::new(SECRET_KEY.into())),
            allow_http: true,
            max_buffer_bytes: None,
            spill_dir: None,
        }
    }

    async fn store(&self) -> S3BlobStore {
        S3BlobStore::open(self.config()).await.unwrap()
    }

    /// Objects in the bucket, as paths relative to it.
    fn objects(&self) -> Vec<String> {
        let bucket = self.root.path().join(BUCKET);
        let mut out: Vec<String> = files(&bucket)
            .iter()
            .map(|p| p.strip_prefix(&bucket).unwrap().display().to_string())
            .collect();
        out.sort();
        out
    }

    /// State s3s-fs keeps for multipart uploads not completed or aborted: parts
    /// (`.upload_id-<id>.part-<n>`), upload records (`.upload-<id>.json`) and metadata.
    fn incomplete_uploads(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload") || name.contains(".upload-"))
            .collect()
    }

    /// Waits for background cleanup to leave no incomplete upload.
    async fn await_no_incomplete_uploads(&self) {
        for _ in 0..200 {
            if self.incomplete_uploads().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("incomplete uploads left: {:?}", self.incomplete_uploads());
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Byte `i` of the test pattern: not periodic in any power of two.
fn pattern(i: usize) -> u8 {
    u8::try_from((i * 7 + i / 251) % 256).unwrap()
}

async fn write_pattern(store: &dyn BlobStore, size: usize) -> Box<dyn runproof_store::BlobWriter> {
    let mut writer = store.begin().await.unwrap();
    let mut written = 0;
    let mut step = 0;
    while written < size {
        let len = [1, 65_537, 1_000_003, 3 * MIB][step % 4].min(size - written);
        step += 1;
        let chunk: Vec<u8> = (written..written + len).map(pattern).collect();
        writer.write(&chunk).await.unwrap();
        written += len;
    }
    writer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite() {
    let server = Server::start().await;
    let store = server.store().await;
    testsuite::blob_suite(Arc::new(store.clone())).await;
    // The suite's writers were committed, aborted or dropped: no staging object, no
    // multipart upload left behind (dropped ones are cleaned in the background).
    server.await_no_incomplete_uploads().await;
    let left = server.objects();
    assert!(
        left.iter()
            .all(|k| k.starts_with(&format!("{PREFIX}/blobs/"))
                || *k == format!("{PREFIX}/{MARKER_NAME}")),
        "{left:?}"
    );
}

/// Issue 11: two deployments with databases of their own but one S3 prefix delete each
/// other's blobs. The second to bind the prefix is refused, naming both databases; a
/// prefix of its own in the same bucket is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_an_s3_prefix_belongs_to_one_database() {
    let server = Server::start().await;
    let dir = TempDir::new().unwrap();
    let sqlite = |name: &str| {
        let url = format!("sqlite://{}", dir.path().join(name).display());
        async move { SqliteStore::open(&url).await.unwrap() }
    };
    let (first, second) = (sqlite("first.db").await, sqlite("second.db").await);
    let site = |database: &str, prefix: &str| Site {
        database: database.into(),
        schema: None,
        blob_store: format!("s3://{BUCKET}/{prefix}"),
    };
    let now = UnixTime(1_700_000_000);
    let store = server.store().await;
    let bound = bind_namespace(&first, &store, &site("sqlite:///first.db", PREFIX), now)
        .await
        .unwrap();
    assert!(
        server
            .objects()
            .contains(&format!("{PREFIX}/{MARKER_NAME}")),
        "{:?}",
        server.objects()
    );
    let err = bind_namespace(&second, &store, &site("sqlite:///second.db", PREFIX), now)
        .await
        .unwrap_err();
    assert!(matches!(err, NamespaceError::Claimed { .. }), "{err:?}");
    let message = err.to_string();
    for needle in ["sqlite:///first.db", "sqlite:///second.db", &bound.id] {
        assert!(message.contains(needle), "{needle}: {message}");
    }

    let mut config = server.config();
    config.prefix = "deploy/two".into();
    let own = S3BlobStore::open(config).await.unwrap();
    bind_namespace(
        &second,
        &own,
        &site("sqlite:///second.db", "deploy/two"),
        now,
    )
    .await
    .unwrap();
    assert_eq!(check_namespace(&first, &store).await.unwrap(), bound);
    assert!(matches!(
        check_namespace(&second, &store).await,
        Err(NamespaceError::Claimed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_live_under_the_prefix() {
    let server = Server::start().await;
    let store = server.store().await;
    let id = testsuite::put(&store, &[b"abc"]).await.unwrap();
    assert_eq!(server.objects(), vec![format!("{PREFIX}/blobs/{id}")]);

    let writer = write_pattern(&store, 9 * MIB).await;
    let big = UploadId::generate();
    writer.commit(&big).await.unwrap();
    let mut want = vec![
        format!("{PREFIX}/blobs/{id}"),
        format!("{PREFIX}/blobs/{big}"),
    ];
    want.sort();
    assert_eq!(server.objects(), want, "the tmp/ copy is gone");
    assert!(server.incomplete_uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_blob_round_trips_with_ranges() {
    let server = Server::start().await;
    let store = server.store().await;
    let size = 40 * MIB;
    let writer = write_pattern(&store, size).await;
    let id = UploadId::generate();
    writer.commit(&id).await.unwrap();
    assert!(server.incomplete_uploads().is_empty());

    // Whole, streamed.
    let whole = read_to_vec(&store, &id, 0, None).await.unwrap();
    assert_eq!(whole.len(), size);
    let want: Vec<u8> = (0..size).map(pattern).collect();
    assert_eq!(
        Sha256::digest(&whole),
        Sha256::digest(&want),
        "whole blob differs"
    );

    // Ranges across part boundaries (parts are 8 MiB) and at the end.
    let cases: [(usize, Option<usize>); 6] = [
        (8 * MIB - 3, Some(6)),
        (16 * MIB - 1, Some(2 * MIB + 2)),
        (0, Some(1)),
        (size - 4, None),
        (size - 4, Some(100)),
        (size, None),
    ];
    for (offset, len) in cases {
        let got = read_to_vec(&store, &id, offset as u64, len.map(|l| l as u64))
            .await
            .unwrap();
        let end = len.map_or(size, |l| (offset + l).min(size));
        assert!(
            got == want[offset..end],
            "offset {offset} len {len:?}: {} bytes",
            got.len()
        );
    }
    drop(whole);

    // And the suite's own large-blob check, through multipart too.
    testsuite::large_blob_streams_through(&store, size).await;
    store.delete(&id).await.unwrap();
    assert!(server.objects().is_empty());
}

/// Writes bytes `from..to` of the pattern, in chunks of the sizes a client sends.
async fn write_range(writer: &mut dyn BlobWriter, from: usize, to: usize) {
    let mut at = from;
    while at < to {
        let len = (64 * 1024).min(to - at);
        let chunk: Vec<u8> = (at..at + len).map(pattern).collect();
        writer.write(&chunk).await.unwrap();
        at += len;
    }
}

/// Issue 11, finding 7: every upload in progress buffered up to a part (and two more in
/// flight) in memory, with no bound over all of them. Stalled bodies that each sent part
/// of a part must hold no more than the budget together, and the uploads must still
/// complete, byte for byte, once their clients go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_s3_part_buffers_share_one_memory_budget() {
    const WRITERS: usize = 16;
    const STALLED_AT: usize = 3 * MIB + 17;
    const SIZE: usize = 10 * MIB + 5;
    let server = Server::start().await;
    let spill = TempDir::new().unwrap();
    let mut config = server.config();
    config.max_buffer_bytes = Some(MIN_BUFFER_BYTES);
    config.spill_dir = Some(spill.path().to_path_buf());
    let store = S3BlobStore::open(config).await.unwrap();

    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let mut writer = store.begin().await.unwrap();
        write_range(writer.as_mut(), 0, STALLED_AT).await;
        writers.push(writer);
    }
    let stalled = store.buffer_usage();
    eprintln!(
        "{WRITERS} uploads stalled at {STALLED_AT} bytes: {stalled:?} ({} bytes asked)",
        WRITERS * STALLED_AT
    );
    assert!(
        stalled.peak <= stalled.budget,
        "{WRITERS} stalled uploads held {} bytes, over the budget of {}",
        stalled.peak,
        stalled.budget
    );
    assert!(stalled.spilled_parts > 0, "{stalled:?}");

    // The clients go on, all at once: every upload completes, intact.
    let mut tasks = tokio::task::JoinSet::new();
    for mut writer in writers {
        tasks.spawn(async move {
            write_range(writer.as_mut(), STALLED_AT, SIZE).await;
            let id = UploadId::generate();
            writer.commit(&id).await.unwrap();
            id
        });
    }
    let want = Sha256::digest((0..SIZE).map(pattern).collect::<Vec<u8>>());
    let mut done = 0;
    while let Some(id) = tasks.join_next().await {
        let id = id.unwrap();
        let body = read_to_vec(&store, &id, 0, None).await.unwrap();
        assert_eq!(body.len(), SIZE);
        assert_eq!(Sha256::digest(&body), want, "blob {id} differs");
        done += 1;
    }
    assert_eq!(done, WRITERS);
    let after = store.buffer_usage();
    eprintln!("after completion: {after:?}");
    assert!(after.peak <= after.budget, "{after:?}");
    assert_eq!(after.held, 0, "every part buffer is given back");
    server.await_no_incomplete_uploads().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_or_drop_midway_leaves_nothing() {
    let server = Server::start().await;
    let store = server.store().await;

    // Two full parts sent, a third being filled.
    let writer = write_pattern(&store, 20 * MIB).await;
    assert!(
        !server.incomplete_uploads().is_empty(),
        "a multipart upload is under way"
    );
    writer.abort().await;
    assert!(server.objects().is_empty(), "{:?}", server.objects());
    assert!(
        server.incomplete_uploads().is_empty(),
        "{:?}",
        server.incomplete_uploads()
    );

    let writer = write_pattern(&store, 20 * MIB).await;
    drop(writer);
    server.await_no_incomplete_uploads().await;
    assert!(server.objects().is_empty(), "{:?}", server.objects());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_discards_the_upload() {
    let server = Server::start().await;
    let store = server.store().await;
    for size in [100, 9 * MIB] {
        let writer = write_pattern(&store, size).await;
        let err = writer
            .commit(&UploadId("../../escape".into()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BlobError::Io(ref e) if e.kind() == std::io::ErrorKind::InvalidInput),
            "{err:?}"
        );
        assert!(server.objects().is_empty(), "{:?}", server.objects());
        assert!(server.incomplete_uploads().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_built_ids_never_leave_blobs() {
    let server = Server::start().await;
    let store = server.store().await;
    let victim = testsuite::put(&store, &[b"v"]).await.unwrap();
    let sneaky = format!("../blobs/{victim}");
    for bad in [sneaky.as_str(), "", "A1B2", "/etc/passwd", "..", "../tmp"] {
        let id = UploadId(bad.into());
        assert!(matches!(
            store.read(&id, 0, None).await,
            Err(BlobError::NotFound)
        ));
        assert!(!store.exists(&id).await.unwrap());
        store.delete(&id).await.unwrap();
    }
    let upper = UploadId(victim.as_str().to_uppercase());
    assert!(!store.exists(&upper).await.unwrap());
    assert!(store.exists(&victim).await.unwrap());
}

fn set_mtime(path: &Path, time: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_committed_honours_the_cutoff_and_skips_foreign_keys() {
    use std::time::SystemTime;

    let server = Server::start().await;
    let store = server.store().await;
    let bucket = server.root.path().join(BUCKET);
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let long_ago = now - 2 * hour;

    let old = testsuite::put(&store, &[b"old"]).await.unwrap();
    set_mtime(&bucket.join(format!("{PREFIX}/blobs/{old}")), long_ago);
    let writer = write_pattern(&store, 9 * MIB).await;
    let old_multipart = UploadId::generate();
    writer.commit(&old_multipart).await.unwrap();
    set_mtime(
        &bucket.join(format!("{PREFIX}/blobs/{old_multipart}")),
        long_ago,
    );
    let fresh = testsuite::put(&store, &[b"fresh"]).await.unwrap();

    // Old objects that are not blobs under this prefix: never listed, never touched.
    let stray = UploadId::generate();
    let foreign = [
        format!("{PREFIX}/blobs/notes.txt"),
        format!("{PREFIX}/blobs/{}", stray.as_str().to_uppercase()),
        format!("{PREFIX}/blobs/{stray}/nested"),
        format!("{PREFIX}/tmp/{}", UploadId::generate()),
        format!("{PREFIX}/{}", UploadId::generate()),
        format!("deploy/other/blobs/{}", UploadId::generate()),
    ];
    for key in &foreign {
        let path = bucket.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"not ours").unwrap();
        set_mtime(&path, long_ago);
    }

    let mut want = vec![old.clone(), old_multipart.clone()];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    let listed = store.list_committed(now - hour, None, 100).await.unwrap();
    assert_eq!(listed, want);
    let first = store.list_committed(now - hour, None, 1).await.unwrap();
    assert_eq!(first, want[..1]);
    let second = store
        .list_committed(now - hour, first.last(), 1)
        .await
        .unwrap();
    assert_eq!(second, want[1..]);
    assert!(
        store
            .list_committed(now - hour, second.last(), 1)
            .await
            .unwrap()
            .is_empty()
    );

    let mut all = vec![old, old_multipart, fresh];
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let listed = store.list_committed(now + hour, None, 100).await.unwrap();
    assert_eq!(listed, all);
    assert!(
        store
            .list_committed(long_ago - hour, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let objects = server.objects();
    for key in &foreign {
        assert!(objects.contains(key), "{key} is left alone: {objects:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_ping() {
    let server = Server::start().await;
    let mut config = server.config();
    config.secret_access_key = Some(Secret::new("wrong".into()));
    let store = S3BlobStore::open(config).await.unwrap();
    assert!(matches!(store.ping().await, Err(BlobError::Io(_))));
    assert!(matches!(
        store.exists(&UploadId::generate()).await,
        Err(BlobError::Io(_))
    ));
}

#[tokio::test]
async fn config_from_url_and_redacted_debug() {
    let config = S3Config::from_url("s3://my-bucket/some/prefix/").unwrap();
    assert_eq!(config.bucket, "my-bucket");
    assert_eq!(config.prefix, "some/prefix");
    assert_eq!(config.endpoint, None);
    assert!(!config.allow_http);
    let config = S3Config::from_url("s3://my-bucket").unwrap();
    assert_eq!(
        (config.bucket.as_str(), config.prefix.as_str()),
        ("my-bucket", "")
    );
    for bad in [
        "my-bucket",
        "https://my-bucket/x",
        "s3://",
        "s3:///prefix",
        "s3://a/b//c",
        "s3://user@host/x",
    ] {
        assert!(S3Config::from_url(bad).is_err(), "{bad}");
    }

    let mut config = S3Config::from_url("s3://b/p").unwrap();
    config.access_key_id = Some("AKID".into());
    config.secret_access_key = Some(Secret::new("hunter2-secret".into()));
    assert!(!format!("{config:?}").contains("hunter2"));
    config.endpoint = Some("http://127.0.0.1:1".into());
    config.allow_http = true;
    let store = S3BlobStore::open(config).await.unwrap();
    let debug = format!("{store:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("\"b\""), "{debug}");

    let mut config = S3Config::from_url("s3://b").unwrap();
    config.endpoint = Some("http://127.0.0.1:1".into());
    let err = S3BlobStore::open(config).await.unwrap_err();
    assert!(err.to_string().contains("allow_http"), "{err}");

    let config = S3Config {
        prefix: "x".into(),
        ..S3Config::default()
    };
    assert!(S3BlobStore::open(config).await.is_err(), "no bucket");
}
