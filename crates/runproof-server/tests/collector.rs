//! The collector of unreferenced blobs, on SQLite and local blobs, with a clock the test
//! sets: what a crash between a blob's commit and its record's insert leaves is deleted
//! once older than the grace, and nothing else is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runproof_core::{Policy, RunIdentity, Secret, UnixTime, Verifier, VerifierConfig};
use runproof_github::{KeyCache, KeyCacheConfig};
use runproof_server::{AppState, ServerConfig};
use runproof_service::{
    Clock, CollectReport, CollectorConfig, Service, collect_unreferenced_blobs,
};
use runproof_store::{
    BlobError, LocalBlobStore, Mode, NewUpload, PendingRun, Site, SqliteStore, UploadId,
    UploadStatus, bind_namespace,
};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const API_KEY: &str = "collector-test-api-key-0123456789";
const HOUR: Duration = Duration::from_secs(3600);

/// A clock the test sets.
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(Ordering::SeqCst))
    }
}

struct Fixture {
    root: PathBuf,
    state: Arc<AppState>,
    service: Arc<Service>,
    /// What the state's clock says, as a system time.
    now: SystemTime,
    _dir: TempDir,
}

impl Fixture {
    /// A database and blobs of its own, bound to each other as `runproof serve` binds them.
    async fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let root = dir.path().to_path_buf();
        let f = Self::on(dir, &root).await;
        bind_namespace(
            &**f.service.store(),
            &**f.service.blobs(),
            &site(&root.join("db.sqlite"), &root),
            UnixTime(1_700_000_000),
        )
        .await
        .unwrap();
        f
    }

    /// A database of its own (in `dir`), blobs in `blob_root`, bound to nothing.
    async fn on(dir: TempDir, blob_root: &Path) -> Self {
        let root = blob_root.to_path_buf();
        let db = dir.path().join("db.sqlite");
        let store = SqliteStore::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let blobs = LocalBlobStore::open(&root).await.unwrap();
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let keys = KeyCache::new(
            &[],
            KeyCacheConfig {
                refresh_interval: Duration::from_secs(600),
                unknown_kid_cooldown: Duration::ZERO,
                timeout: Duration::from_secs(2),
            },
        )
        .unwrap();
        let store: Arc<dyn runproof_store::Store> = Arc::new(store);
        let verifier = Verifier::new(VerifierConfig {
            issuers: Vec::new(),
            audience: "https://runproof.test".into(),
            leeway_seconds: 60,
            policy: Policy::default(),
        });
        let service = Service::builder(verifier, Arc::new(keys), store, Arc::new(blobs))
            .clock(Arc::new(TestClock(AtomicI64::new(
                i64::try_from(secs).unwrap(),
            ))))
            .build()
            .await
            .unwrap();
        let service = Arc::new(service);
        let state = Arc::new(AppState::new(
            Arc::clone(&service),
            ServerConfig {
                api_keys: vec![Secret::new(API_KEY.into())],
                ..ServerConfig::default()
            },
        ));
        Self {
            root,
            state,
            service,
            now: UNIX_EPOCH + Duration::from_secs(secs),
            _dir: dir,
        }
    }

    fn blob_path(&self, id: &UploadId) -> PathBuf {
        let s = id.as_str();
        self.root.join("blobs").join(&s[s.len() - 2..]).join(s)
    }

    /// Commits `body` as blob `id`, last modified `mtime_age` before now.
    async fn commit(&self, id: &UploadId, body: &[u8], mtime_age: Duration) {
        let mut writer = self.service.blobs().begin().await.unwrap();
        writer.write(body).await.unwrap();
        writer.commit(id).await.unwrap();
        set_mtime(&self.blob_path(id), self.now - mtime_age);
    }

    async fn insert(&self, id: &UploadId, body: &[u8], status: UploadStatus) {
        let pending = status != UploadStatus::Verified;
        let repository_id = 4_242;
        let upload = NewUpload {
            id: id.clone(),
            status: if pending {
                UploadStatus::Pending
            } else {
                UploadStatus::Verified
            },
            mode: if pending { Mode::Webhook } else { Mode::Oidc },
            name: "results.sarif".into(),
            size: u64::try_from(body.len()).unwrap(),
            sha256: Sha256::digest(body).into(),
            content_type: None,
            created_at: UnixTime(1_700_000_000),
            verified_at: (!pending).then_some(UnixTime(1_700_000_001)),
            identity: identity(repository_id),
            reason: None,
            idempotency_key: None,
            pushes: Vec::new(),
            pending_run: pending.then(|| PendingRun {
                repository_id: runproof_core::RepositoryId(repository_id),
                run_id: runproof_core::RunId(77),
                run_attempt: 1,
                head_sha: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4".into(),
            }),
            pending_reservation: None,
        };
        self.service.store().insert_upload(&upload).await.unwrap();
        if matches!(status, UploadStatus::Rejected | UploadStatus::Expired) {
            let resolved = self
                .service
                .store()
                .resolve_pending(
                    id,
                    status,
                    None,
                    Some("policy"),
                    UnixTime(1_700_000_100),
                    &[],
                )
                .await
                .unwrap();
            assert!(resolved);
        }
    }

    async fn collect(&self, config: &CollectorConfig, after: Option<&UploadId>) -> CollectReport {
        collect_unreferenced_blobs(&self.service, config, after).await
    }

    async fn exists(&self, id: &UploadId) -> bool {
        self.service.blobs().exists(id).await.unwrap()
    }
}

fn site(database: &Path, blobs: &Path) -> Site {
    Site {
        database: format!("sqlite://{}", database.display()),
        schema: None,
        blob_store: format!("file://{}", blobs.display()),
    }
}

fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// A UUIDv7 id generated `age` before `now` (plus `ms` milliseconds, to order several).
fn id_aged(now: SystemTime, age: Duration, ms: u64) -> UploadId {
    let at = (now - age + Duration::from_millis(ms))
        .duration_since(UNIX_EPOCH)
        .unwrap();
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, at.as_secs(), at.subsec_nanos());
    UploadId(uuid::Uuid::new_v7(ts).hyphenated().to_string())
}

fn identity(repository_id: u64) -> RunIdentity {
    serde_json::from_value(serde_json::json!({
        "issuer": "https://token.actions.githubusercontent.com",
        "repository": "octo-org/octo-repo",
        "repository_id": repository_id,
        "repository_owner": "octo-org",
        "repository_owner_id": 9_919,
        "run_id": 77,
        "run_attempt": 1,
        "sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
        "ref": "refs/heads/main",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main",
        "event_name": "push",
        "actor": "octocat",
        "runner_environment": "github-hosted",
    }))
    .unwrap()
}

async fn read(fixture: &Fixture, id: &UploadId) -> Vec<u8> {
    use futures_util::StreamExt;
    let mut stream = fixture.service.blobs().read(id, 0, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn collector_deletes_an_old_blob_without_a_record() {
    let f = Fixture::new().await;
    let orphan = id_aged(f.now, 2 * HOUR, 0);
    f.commit(&orphan, b"left by a crash", 2 * HOUR).await;

    let report = f.collect(&CollectorConfig::default(), None).await;
    assert_eq!(
        report,
        CollectReport {
            listed: 1,
            deleted: 1,
            errors: 0,
            resume_after: None,
        }
    );
    assert!(!f.exists(&orphan).await);
    assert!(matches!(
        f.service.blobs().read(&orphan, 0, None).await,
        Err(BlobError::NotFound)
    ));
    assert!(
        runproof_server::metrics_handle()
            .render()
            .contains("runproof_unreferenced_blobs_deleted_total")
    );
    // Nothing left: a second run does nothing.
    assert_eq!(
        f.collect(&CollectorConfig::default(), None).await,
        CollectReport::default()
    );
}

#[tokio::test]
async fn rule_collector_never_deletes_a_referenced_or_fresh_blob() {
    let f = Fixture::new().await;
    let old = 2 * HOUR;
    let fresh = Duration::from_secs(60);
    // (rule, id, mtime age, record)
    let rows: Vec<(&str, UploadId, Duration, Option<UploadStatus>)> = vec![
        (
            "an accepted upload keeps its blob",
            id_aged(f.now, old, 1),
            old,
            Some(UploadStatus::Verified),
        ),
        (
            "a pending upload keeps its blob",
            id_aged(f.now, old, 2),
            old,
            Some(UploadStatus::Pending),
        ),
        (
            "a rejected upload's blob is the sweeper's, not the collector's",
            id_aged(f.now, old, 3),
            old,
            Some(UploadStatus::Rejected),
        ),
        (
            "an expired upload's blob is the sweeper's, not the collector's",
            id_aged(f.now, old, 4),
            old,
            Some(UploadStatus::Expired),
        ),
        (
            "a blob modified within the grace may still get its record",
            id_aged(f.now, old, 5),
            fresh,
            None,
        ),
        (
            "a blob whose id was generated within the grace may still get its record",
            id_aged(f.now, fresh, 0),
            old,
            None,
        ),
        (
            "a blob named by an id that carries no time is not ours to judge",
            UploadId(uuid::Uuid::new_v4().hyphenated().to_string()),
            old,
            None,
        ),
    ];
    for (rule, id, mtime_age, record) in &rows {
        let body = format!("body: {rule}");
        f.commit(id, body.as_bytes(), *mtime_age).await;
        if let Some(status) = record {
            f.insert(id, body.as_bytes(), *status).await;
        }
    }
    // An old file in a shard whose name is not an id.
    let shard = f.blob_path(&rows[0].1).parent().unwrap().to_path_buf();
    let foreign = shard.join("notes.txt");
    std::fs::write(&foreign, b"not a blob").unwrap();
    set_mtime(&foreign, f.now - old);

    let report = f.collect(&CollectorConfig::default(), None).await;
    assert_eq!(report.deleted, 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    for (rule, id, _, _) in &rows {
        assert!(f.exists(id).await, "{rule}");
        assert_eq!(
            read(&f, id).await,
            format!("body: {rule}").as_bytes(),
            "{rule}"
        );
    }
    assert!(foreign.exists(), "a foreign name is never deleted");

    // The accepted and the pending upload still read back through the API.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = runproof_server::router(Arc::clone(&f.state))
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for (rule, id, _, _) in &rows[..2] {
        let resp = http
            .get(format!("{url}/v1/uploads/{id}/content"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{rule}");
        assert_eq!(
            resp.bytes().await.unwrap(),
            format!("body: {rule}").as_bytes(),
            "{rule}"
        );
    }
    server.abort();
}

#[tokio::test]
async fn collector_resumes_past_referenced_blobs() {
    let f = Fixture::new().await;
    let old = 2 * HOUR;
    let referenced: Vec<UploadId> = (0..3).map(|i| id_aged(f.now, old, i)).collect();
    for id in &referenced {
        f.commit(id, b"kept", old).await;
        f.insert(id, b"kept", UploadStatus::Verified).await;
    }
    let orphan = id_aged(f.now, old, 10);
    f.commit(&orphan, b"orphan", old).await;
    let config = CollectorConfig {
        max_blobs_per_run: 2,
        ..CollectorConfig::default()
    };

    let first = f.collect(&config, None).await;
    assert_eq!((first.listed, first.deleted), (2, 0));
    assert_eq!(first.resume_after.as_ref(), Some(&referenced[1]));
    assert!(f.exists(&orphan).await);

    let second = f.collect(&config, first.resume_after.as_ref()).await;
    assert_eq!((second.listed, second.deleted), (2, 1));
    assert!(!f.exists(&orphan).await);

    let third = f.collect(&config, second.resume_after.as_ref()).await;
    assert_eq!(third, CollectReport::default(), "the pass is over");
    for id in &referenced {
        assert!(f.exists(id).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_collecting_at_once_agree() {
    let f = Fixture::new().await;
    let old = 2 * HOUR;
    let orphans: Vec<UploadId> = (0..20).map(|i| id_aged(f.now, old, i)).collect();
    for id in &orphans {
        f.commit(id, b"orphan", old).await;
    }
    let kept = id_aged(f.now, old, 100);
    f.commit(&kept, b"kept", old).await;
    f.insert(&kept, b"kept", UploadStatus::Verified).await;

    let config = CollectorConfig::default();
    let (a, b) = tokio::join!(f.collect(&config, None), f.collect(&config, None));
    assert_eq!((a.errors, b.errors), (0, 0), "{a:?} {b:?}");
    assert!(a.deleted + b.deleted >= 20, "{a:?} {b:?}");
    for id in &orphans {
        assert!(!f.exists(id).await);
    }
    assert_eq!(read(&f, &kept).await, b"kept");
}

/// Issue 11: two deployments with databases of their own that share one blob directory
/// deleted each other's live blobs, which have no record in the other's database. A
/// collector whose database is not the one the blob store's marker names deletes nothing,
/// whether its database was never bound or is bound to a namespace of its own.
#[tokio::test]
async fn rule_the_collector_never_deletes_another_databases_blobs() {
    let owner = Fixture::new().await;
    let old = 2 * HOUR;
    let live = id_aged(owner.now, old, 1);
    owner.commit(&live, b"the owner's upload", old).await;
    owner
        .insert(&live, b"the owner's upload", UploadStatus::Verified)
        .await;

    let other = Fixture::on(TempDir::new().unwrap(), &owner.root).await;
    let report = other.collect(&CollectorConfig::default(), None).await;
    assert_eq!((report.listed, report.deleted), (0, 0), "{report:?}");
    assert_eq!(report.errors, 1, "{report:?}");
    assert!(other.exists(&live).await, "never bound: nothing deleted");

    // Bound to a namespace of its own (its own marker was never written here).
    other
        .service
        .store()
        .bind_namespace("another-namespace", "file:///elsewhere", UnixTime(1))
        .await
        .unwrap();
    let report = other.collect(&CollectorConfig::default(), None).await;
    assert_eq!((report.deleted, report.errors), (0, 1), "{report:?}");
    assert!(
        other.exists(&live).await,
        "another namespace: nothing deleted"
    );
    assert_eq!(read(&owner, &live).await, b"the owner's upload");

    // The owner still collects its own orphans.
    let orphan = id_aged(owner.now, old, 2);
    owner.commit(&orphan, b"orphan", old).await;
    let report = owner.collect(&CollectorConfig::default(), None).await;
    assert_eq!((report.deleted, report.errors), (1, 0), "{report:?}");
    assert!(owner.exists(&live).await);
}
