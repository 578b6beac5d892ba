//! Two replicas: two real `runproof serve --config` processes sharing one PostgreSQL
//! schema and one S3 bucket, behind no load balancer (each test picks the replica).
//!
//! Everything else runs in the test process, on loopback: an S3 server (`s3s-fs` over a
//! temporary directory), a fake GitHub (OIDC issuer, App API) and the App's delivery
//! receiver. Needs `RUNPROOF_TEST_DATABASE_URL` (each test uses a schema of its own,
//! dropped at the end); without it, every test says it was skipped.
//!
//! What is checked, each across the two replicas:
//! - a token accepted by one is `token_replayed` at the other (also when both get it at
//!   once);
//! - a webhook redelivered to the other has no second effect (also when both get it at
//!   once);
//! - an upload made through one is readable through the other (small, and multipart);
//! - each outbox delivery is made by one worker, not both;
//! - killing one (SIGKILL) in the middle of uploads loses no acknowledged upload, and the
//!   other delivers them.
//! - a repository's trust rules set through one bind uploads at the other: at once when it
//!   has not read them, within its cache's 10 seconds when it has.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proc;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use runproof_testkit::{
    FakeGithub, WebhookSender, installation_repositories_payload, sign_webhook,
};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use proc::{Replica, Schema};

const AUDIENCE: &str = "https://runproof.replicas.test";
const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 77;
const BUCKET: &str = "runproof-replicas";
const ACCESS_KEY: &str = "AKIDREPLICATEST";
const SECRET_KEY: &str = "replica-test-secret-key";
const API_KEY: &str = "rpk_replica_test_0123456789";
const WEBHOOK_SECRET: &str = "whsec_replica_test_0123456789";
const DELIVERY_SECRET: &str = "dsec_replica_test_0123456789";
const MIB: usize = 1024 * 1024;

/// Repositories as `(id, "owner/name")`.
type Repos<'a> = &'a [(u64, &'a str)];

fn database_url() -> Option<String> {
    match std::env::var("RUNPROOF_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "RUNPROOF_TEST_DATABASE_URL is not set, and with CI=true the replica tests must run"
            );
            println!("SKIPPED: replica tests need PostgreSQL (RUNPROOF_TEST_DATABASE_URL)");
            None
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared services, in this process.

/// An S3 server (`s3s-fs`) on 127.0.0.1 over a temporary directory.
struct S3Server {
    _root: TempDir,
    endpoint: String,
    task: JoinHandle<()>,
}

impl S3Server {
    async fn start() -> Self {
        let root = TempDir::new().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
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
        Self {
            _root: root,
            endpoint,
            task,
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the App's receiver saw: per delivery id, the hits and the upload it was about.
#[derive(Default)]
struct Seen {
    by_delivery: HashMap<String, (u32, String)>,
    bad_signatures: u32,
}

/// The App's endpoint for signed pushes.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(Arc::clone(&seen));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, seen, task }
    }

    /// Upload id → the delivery ids that carried it.
    fn deliveries_by_upload(&self) -> HashMap<String, Vec<String>> {
        let seen = self.seen.lock().unwrap();
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (delivery, (_, upload)) in &seen.by_delivery {
            out.entry(upload.clone())
                .or_default()
                .push(delivery.clone());
        }
        out
    }

    /// Waits until every upload in `ids` has been delivered at least once.
    async fn await_all(&self, ids: &[String], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let by_upload = self.deliveries_by_upload();
            let missing: Vec<&String> = ids
                .iter()
                .filter(|id| !by_upload.contains_key(*id))
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} uploads not delivered within {within:?}: {missing:?}",
                missing.len(),
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("x-runproof-signature-256")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut seen = seen.lock().unwrap();
    if signature != sign_webhook(DELIVERY_SECRET.as_bytes(), &body) {
        seen.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let delivery = headers
        .get("x-runproof-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
    let upload = payload["upload"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let entry = seen.by_delivery.entry(delivery).or_insert((0, upload));
    entry.0 += 1;
    StatusCode::OK
}

// ---------------------------------------------------------------------------------------
// The replicas: real processes ([`proc::Replica`]).

/// Two replicas and everything they share.
struct Cluster {
    replicas: Vec<Replica>,
    github: FakeGithub,
    receiver: Receiver,
    http: reqwest::Client,
    _s3: S3Server,
    _schema: Schema,
    _dir: TempDir,
}

impl Cluster {
    async fn start(database_url: &str) -> Self {
        let dir = TempDir::new().unwrap();
        let schema = Schema {
            url: database_url.to_owned(),
            name: format!("rp_replicas_{}", uuid::Uuid::new_v4().simple()),
        };
        let s3 = S3Server::start().await;
        let receiver = Receiver::start().await;
        let github = FakeGithub::start().await.unwrap();
        let app = github.register_app(APP_ID).unwrap();
        let run = github.run();
        github.add_installation(
            INSTALLATION,
            &run.repository_owner,
            run.repository_owner_id,
            &[(run.repository_id, &run.repository)],
        );
        let key = dir.path().join("app.pem");
        std::fs::write(&key, &app.private_key_pem).unwrap();
        // One prefix per test: the bucket is the test's anyway, this checks prefixes work.
        let config = format!(
            r#"database_url = "{database_url}"
blob_store = "s3://{BUCKET}/deploy/{prefix}"
api_keys = ["{API_KEY}"]

[database]
schema = "{schema}"
max_connections = 8
statement_timeout_seconds = 10
connect_timeout_seconds = 5

[s3]
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
allow_http = true

[oidc]
audience = "{AUDIENCE}"
[[oidc.issuers]]
issuer = "{issuer}"

[github]
api_url = "{api}"
app_id = {APP_ID}
private_key_file = '{key}'
webhook_secrets = ["{WEBHOOK_SECRET}"]
timeout_seconds = 5

[delivery]
url = "{receiver}"
secrets = ["{DELIVERY_SECRET}"]
timeout_seconds = 5
backoff_seconds = 1
max_backoff_seconds = 2
"#,
            prefix = uuid::Uuid::new_v4().simple(),
            schema = schema.name,
            endpoint = s3.endpoint,
            issuer = github.issuer(),
            api = github.base_url(),
            key = key.display(),
            receiver = receiver.url,
        );
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        // Both at once: they race to create the schema and migrate it.
        let mut replicas = vec![
            Replica::spawn(dir.path(), "a", &config),
            Replica::spawn(dir.path(), "b", &config),
        ];
        let mut cluster = Self {
            replicas: Vec::new(),
            github,
            receiver,
            http,
            _s3: s3,
            _schema: schema,
            _dir: dir,
        };
        for r in &mut replicas {
            r.await_ready(&cluster.http).await;
        }
        cluster.replicas = replicas;
        cluster
    }

    fn url(&self, replica: usize) -> &str {
        &self.replicas[replica].url
    }

    fn token(&self) -> String {
        self.github.token(AUDIENCE).unwrap()
    }

    /// `POST /v1/uploads`: the status and the JSON answer.
    async fn upload(&self, replica: usize, token: &str, body: Vec<u8>) -> (u16, Value) {
        upload_to(&self.http, self.url(replica), token, body.into())
            .await
            .unwrap()
    }

    /// `GET /v1/uploads/{id}` with the API key.
    async fn record(&self, replica: usize, id: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/v1/uploads/{id}", self.url(replica)))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// `GET /v1/uploads/{id}/content`: the SHA-256 (hex) of what came back.
    async fn content_sha256(&self, replica: usize, id: &str) -> String {
        let resp = self
            .http
            .get(format!("{}/v1/uploads/{id}/content", self.url(replica)))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "content of {id}");
        hex::encode(Sha256::digest(resp.bytes().await.unwrap()))
    }

    /// Every upload record, through `replica`, following the cursor.
    async fn list_all(&self, replica: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let mut url = format!("{}/v1/uploads?limit=100", self.url(replica));
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: Value = self
                .http
                .get(url)
                .bearer_auth(API_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.extend(page["uploads"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
        panic!("listing did not end");
    }

    fn webhooks(&self, replica: usize) -> WebhookSender {
        WebhookSender::new(
            format!("{}/v1/github/webhooks", self.url(replica)),
            WEBHOOK_SECRET.as_bytes(),
        )
    }

    /// The `runproof_deliveries_total{outcome="delivered"}` counter of a replica.
    async fn delivered_metric(&self, replica: usize) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url(replica)))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("runproof_deliveries_total") && l.contains("\"delivered\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for r in &self.replicas {
                eprintln!("--- log of replica {} ---\n{}", r.name, r.log_tail(60));
            }
        }
        // Before the schema is dropped.
        for r in &mut self.replicas {
            r.kill();
        }
    }
}

async fn upload_to(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    body: reqwest::Body,
) -> reqwest::Result<(u16, Value)> {
    let resp = http
        .post(format!("{base}/v1/uploads?name=replica.bin"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

fn random_body(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_used_at_one_replica_is_replayed_at_the_other() {
    let Some(db) = database_url() else { return };
    let c = Cluster::start(&db).await;

    for (first, second) in [(0, 1), (1, 0)] {
        let token = c.token();
        let (status, body) = c.upload(first, &token, b"first use".to_vec()).await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = c.upload(second, &token, b"second use".to_vec()).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["code"], "token_replayed", "{body}");
    }

    // The same token at both replicas at once: exactly one wins.
    for round in 0..8 {
        let token = c.token();
        let (a, b) = tokio::join!(
            c.upload(0, &token, format!("race {round} at a").into_bytes()),
            c.upload(1, &token, format!("race {round} at b").into_bytes()),
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 401], "round {round}: {a:?} {b:?}");
        let loser = if a.0 == 401 { &a.1 } else { &b.1 };
        assert_eq!(loser["code"], "token_replayed", "{loser}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_redelivered_to_the_other_replica_has_no_second_effect() {
    let Some(db) = database_url() else { return };
    let c = Cluster::start(&db).await;
    let run = c.github.run();
    let repo = [(run.repository_id, run.repository.as_str())];
    let event = "installation_repositories";
    let body_of = |action: &str| {
        let (added, removed): (Repos<'_>, Repos<'_>) = if action == "added" {
            (&repo, &[])
        } else {
            (&[], &repo)
        };
        serde_json::to_vec(&installation_repositories_payload(
            action,
            INSTALLATION,
            &run.repository_owner,
            run.repository_owner_id,
            added,
            removed,
        ))
        .unwrap()
    };
    let send = |replica: usize, delivery: String, body: Vec<u8>| {
        let sender = c.webhooks(replica);
        async move {
            let signature = sign_webhook(WEBHOOK_SECRET.as_bytes(), &body);
            let (status, text) = sender
                .send_raw(event, &delivery, &body, Some(&signature))
                .await
                .unwrap();
            assert_eq!(status, 200, "{text}");
            serde_json::from_str::<Value>(&text).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    // The repository is removed (through a), then added again (through b): both replicas
    // see each change, since the truth is in the database.
    let removed = body_of("removed");
    let removal = uuid::Uuid::new_v4().to_string();
    assert_eq!(send(0, removal.clone(), removed.clone()).await, "processed");
    for replica in [0, 1] {
        let (status, body) = c
            .upload(replica, &c.token(), b"while removed".to_vec())
            .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["code"], "not_installed", "{body}");
    }
    assert_eq!(
        send(1, uuid::Uuid::new_v4().to_string(), body_of("added")).await,
        "processed"
    );
    for replica in [0, 1] {
        let (status, body) = c.upload(replica, &c.token(), b"added again".to_vec()).await;
        assert_eq!(status, 201, "{body}");
    }

    // GitHub redelivers the old removal, to the other replica (and to the first): it is a
    // duplicate, and the repository stays installed.
    assert_eq!(send(1, removal.clone(), removed.clone()).await, "duplicate");
    assert_eq!(send(0, removal, removed).await, "duplicate");
    for replica in [0, 1] {
        let (status, body) = c
            .upload(replica, &c.token(), b"after redelivery".to_vec())
            .await;
        assert_eq!(status, 201, "the redelivery had an effect: {body}");
    }

    // One new delivery sent to both replicas at once: processed exactly once.
    for _ in 0..5 {
        let id = uuid::Uuid::new_v4().to_string();
        let body = body_of("added");
        let (a, b) = tokio::join!(send(0, id.clone(), body.clone()), send(1, id, body));
        let mut outcomes = [a, b];
        outcomes.sort();
        assert_eq!(outcomes, ["duplicate", "processed"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_through_one_replica_is_readable_through_the_other() {
    let Some(db) = database_url() else { return };
    let c = Cluster::start(&db).await;
    // Small bodies go in one PUT; 12 MiB is a multipart upload (8 MiB parts).
    let mut ids = Vec::new();
    for (through, len) in [(0, 1000), (1, 1000), (1, 12 * MIB), (0, 12 * MIB + 3)] {
        let body = random_body(len);
        let (status, record) = c.upload(through, &c.token(), body.clone()).await;
        assert_eq!(status, 201, "{record}");
        let id = record["id"].as_str().unwrap().to_owned();
        let other = 1 - through;
        let (status, read) = c.record(other, &id).await;
        assert_eq!(status, 200, "{read}");
        assert_eq!(read["sha256"], sha256_hex(&body));
        assert_eq!(read["size"], len);
        assert_eq!(read["status"], "verified");
        assert_eq!(read["identity"]["installation_id"], INSTALLATION);
        assert_eq!(c.content_sha256(other, &id).await, sha256_hex(&body));
        ids.push(id);
    }
    for replica in [0, 1] {
        let listed: Vec<String> = c
            .list_all(replica)
            .await
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        for id in &ids {
            assert!(listed.contains(id), "{id} not listed by replica {replica}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_outbox_delivery_is_made_by_one_worker() {
    let Some(db) = database_url() else { return };
    let c = Cluster::start(&db).await;
    const UPLOADS: usize = 24;
    let tokens: Vec<String> = (0..UPLOADS).map(|_| c.token()).collect();
    // Four at a time, alternating replicas: both enqueue, both workers compete.
    let results: Vec<(u16, Value)> = futures_util::stream::iter(tokens.iter().enumerate())
        .map(|(i, t)| {
            let c = &c;
            async move {
                c.upload(i % 2, t, format!("delivery {i}").into_bytes())
                    .await
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let ids: Vec<String> = results
        .iter()
        .map(|(status, record)| {
            assert_eq!(*status, 201, "{record}");
            record["id"].as_str().unwrap().to_owned()
        })
        .collect();
    c.receiver.await_all(&ids, Duration::from_secs(60)).await;
    // Longer than a worker's poll interval: a second delivery would have come by now.
    tokio::time::sleep(Duration::from_secs(3)).await;

    {
        let seen = c.receiver.seen.lock().unwrap();
        assert_eq!(seen.bad_signatures, 0);
        assert_eq!(seen.by_delivery.len(), UPLOADS, "one delivery per upload");
        for (delivery, (hits, upload)) in &seen.by_delivery {
            assert_eq!(
                *hits, 1,
                "delivery {delivery} (upload {upload}) was made {hits} times"
            );
            assert!(ids.contains(upload), "{upload}");
        }
    }
    let (a, b) = (c.delivered_metric(0).await, c.delivered_metric(1).await);
    println!("deliveries made by replica a: {a}, by replica b: {b}");
    assert_eq!(a + b, UPLOADS as u64, "the workers' own counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_replica_in_the_middle_of_uploads_loses_no_acknowledged_upload() {
    let Some(db) = database_url() else { return };
    let mut c = Cluster::start(&db).await;
    let victim = c.url(0).to_owned();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let interrupted = Arc::new(AtomicUsize::new(0));
    let refused: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));

    // Eight clients upload to the victim: fast 1 KiB bodies, and bodies of 256 KiB sent
    // slowly, so that some are always mid-body.
    let mut clients = Vec::new();
    for client in 0..8 {
        let (http, github, victim) = (c.http.clone(), c.github.clone(), victim.clone());
        let (acked, interrupted, refused, stop) = (
            Arc::clone(&acked),
            Arc::clone(&interrupted),
            Arc::clone(&refused),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            for i in 0..500 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let slow = client % 2 == 1;
                let data = random_body(if slow { 256 * 1024 } else { 1024 });
                let sha = sha256_hex(&data);
                let body = if slow {
                    let chunks: Vec<Bytes> =
                        data.chunks(16 * 1024).map(Bytes::copy_from_slice).collect();
                    let stream = futures_util::stream::iter(chunks).then(|chunk| async move {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Ok::<Bytes, std::io::Error>(chunk)
                    });
                    reqwest::Body::wrap_stream(stream)
                } else {
                    data.into()
                };
                let token = github.token(AUDIENCE).unwrap();
                match upload_to(&http, &victim, &token, body).await {
                    Ok((201, record)) => {
                        assert_eq!(record["sha256"], sha.as_str());
                        let id = record["id"].as_str().unwrap().to_owned();
                        acked.lock().unwrap().push((id, sha));
                    }
                    Ok((status, body)) => {
                        refused
                            .lock()
                            .unwrap()
                            .push(format!("{client}/{i}: {status} {body}"));
                    }
                    Err(e) => {
                        // The victim died under this request, or was already dead.
                        if !e.is_connect() {
                            interrupted.fetch_add(1, Ordering::SeqCst);
                        }
                        return;
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 30 {
        assert!(Instant::now() < deadline, "uploads are too slow to start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.replicas[0].kill();
    let killed_at = acked.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("clients stop after the kill")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    println!(
        "acknowledged: {} ({killed_at} when killed), interrupted: {}",
        acked.len(),
        interrupted.load(Ordering::SeqCst)
    );
    assert!(
        refused.is_empty(),
        "the victim refused uploads: {refused:?}"
    );
    assert!(
        interrupted.load(Ordering::SeqCst) >= 1,
        "no upload was in flight at the kill"
    );

    // Every acknowledged upload is there, whole, through the survivor.
    for (id, sha) in &acked {
        let (status, record) = c.record(1, id).await;
        assert_eq!(status, 200, "acknowledged upload {id} lost: {record}");
        assert_eq!(record["sha256"], sha.as_str(), "{id}");
        assert_eq!(record["status"], "verified");
        assert_eq!(&c.content_sha256(1, id).await, sha, "{id}");
    }
    // Nothing half-written looks whole: whatever is listed has its full content.
    let listed = c.list_all(1).await;
    assert!(listed.len() >= acked.len());
    for record in &listed {
        let id = record["id"].as_str().unwrap();
        assert_eq!(
            c.content_sha256(1, id).await,
            record["sha256"].as_str().unwrap(),
            "{id}"
        );
    }
    // And the survivor's worker delivers them all, including the ones the victim had
    // claimed when it died (their lease runs out).
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    c.receiver.await_all(&ids, Duration::from_secs(90)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repository_rules_set_through_one_replica_bind_the_other() {
    let Some(db) = database_url() else { return };
    let c = Cluster::start(&db).await;
    let repo = c.github.run().repository_id;

    // Replica b reads the repository's layer (none) and caches it.
    let (status, body) = c.upload(1, &c.token(), b"before".to_vec()).await;
    assert_eq!(status, 201, "{body}");

    let rules = serde_json::json!({"rules": [{"name": "release tags", "refs": ["refs/tags/v*"]}]});
    let resp = c
        .http
        .put(format!("{}/v1/repositories/{repo}/rules", c.url(0)))
        .bearer_auth(API_KEY)
        .json(&rules)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Replica a applies them at once.
    let (status, body) = c.upload(0, &c.token(), b"at a".to_vec()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "policy_denied", "{body}");

    // Replica b reads them from the database at once, and applies them to uploads once
    // its cached copy expires (10 s): bounded here at 30 tries a second apart.
    let stored: Value = c
        .http
        .get(format!("{}/v1/repositories/{repo}/rules", c.url(1)))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored, rules);
    let mut refused = None;
    for _ in 0..30 {
        let (status, body) = c.upload(1, &c.token(), b"at b".to_vec()).await;
        if status == 403 {
            refused = Some(body);
            break;
        }
        assert_eq!(status, 201, "{body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let body = refused.expect("replica b never applied the rules set through replica a");
    assert_eq!(body["code"], "policy_denied", "{body}");
    assert_eq!(body["mismatches"][0]["field"], "ref", "{body}");
}
