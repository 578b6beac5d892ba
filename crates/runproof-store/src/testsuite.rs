//! Conformance tests that every [`Store`] and [`BlobStore`] backend must pass.
//!
//! Built for this crate's tests and, with the `testsuite` feature, for other crates and
//! backends. The functions panic on failure, as tests do.
//!
//! They never assume an empty database: each run uses fresh repository ids, issuers and
//! `jti`s, so they can run against a shared, long-lived server (such as CI's PostgreSQL).
// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, RunIdentity, UnixTime};
use sha2::{Digest, Sha256};

use crate::{
    BlobError, BlobStore, Committed, CountableClaims, Cursor, IdempotencyScope, Installation,
    InstalledRepository, KnownInstallation, ListFilter, Mode, NewPush, NewSession, NewUpload,
    PendingLimits, PendingReservation, PendingRun, PushRecord, PushStatus, RepositoryBinding,
    RepositorySelection, ReservationId, Reserved, SessionAsk, SessionUse, Store, StoreError,
    UploadId, UploadStatus, UploadWrite, UsedJti, WebhookDelivery, WebhookEffect,
    WorkflowRunRecord,
};

mod console;
pub use console::*;

/// A repository id no other run of the suite uses (random, below 2^52).
#[must_use]
pub fn unique_repository_id() -> RepositoryId {
    RepositoryId((uuid::Uuid::new_v4().as_u64_pair().0 >> 12) | 1)
}

/// A random id below 2^52, so that it fits every backend's integers.
fn unique_u64() -> u64 {
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 12) | 1
}

/// An installation id no other run of the suite uses.
#[must_use]
pub fn unique_installation_id() -> InstallationId {
    InstallationId(unique_u64())
}

/// An account (owner) id no other run of the suite uses.
#[must_use]
pub fn unique_owner_id() -> OwnerId {
    OwnerId(unique_u64())
}

/// A webhook delivery of `event` with a fresh id, received at `received_at`.
#[must_use]
pub fn webhook_delivery(event: &str, received_at: i64) -> WebhookDelivery {
    WebhookDelivery {
        id: uuid::Uuid::new_v4().hyphenated().to_string(),
        event: event.into(),
        received_at: UnixTime(received_at),
    }
}

/// An installation with selected repositories on a fresh account.
#[must_use]
pub fn installation(id: InstallationId) -> Installation {
    Installation {
        id,
        account_id: unique_owner_id(),
        account_login: "octo-org".into(),
        repository_selection: RepositorySelection::Selected,
        suspended: false,
        as_of: None,
    }
}

/// A `requested` workflow run attempt of `repository_id` updated at `updated_at`.
#[must_use]
pub fn workflow_run(
    repository_id: RepositoryId,
    run_id: RunId,
    updated_at: i64,
) -> WorkflowRunRecord {
    WorkflowRunRecord {
        repository_id,
        run_id,
        run_attempt: 1,
        head_sha: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4".into(),
        head_repository_id: Some(repository_id),
        event: "push".into(),
        status: "requested".into(),
        conclusion: None,
        path: ".github/workflows/ci.yml".into(),
        installation_id: Some(unique_installation_id()),
        repository_full_name: "octo-org/octo-repo".into(),
        owner_id: OwnerId(9_919),
        run_started_at: Some(UnixTime(updated_at)),
        updated_at: UnixTime(updated_at),
        completed_at: None,
        received_at: UnixTime(updated_at + 1),
    }
}

/// A plausible verified identity for `repository_id`.
#[must_use]
pub fn identity(repository_id: RepositoryId) -> RunIdentity {
    // Built from JSON so that optional fields added to the core later need no change here.
    serde_json::from_value(serde_json::json!({
        "issuer": "https://token.actions.githubusercontent.com",
        "repository": "octo-org/octo-repo",
        "repository_id": repository_id.get(),
        "repository_owner": "octo-org",
        "repository_owner_id": 9_919,
        "run_id": 1_234_567_890_u64,
        "run_attempt": 1,
        "sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4",
        "ref": "refs/heads/main",
        "workflow_ref": "octo-org/octo-repo/.github/workflows/ci.yml@refs/heads/main",
        "event_name": "push",
        "actor": "octocat",
        "runner_environment": "github-hosted",
        "installation_id": 42,
    }))
    .expect("identity fixture")
}

/// A verified upload of `repository_id` with a fresh id and no idempotency key.
#[must_use]
pub fn new_upload(repository_id: RepositoryId) -> NewUpload {
    NewUpload {
        id: UploadId::generate(),
        status: UploadStatus::Verified,
        mode: Mode::Oidc,
        name: "results.sarif".into(),
        size: 11,
        sha256: Sha256::digest(b"hello world").into(),
        content_type: Some("application/sarif+json".into()),
        created_at: UnixTime(1_700_000_000),
        verified_at: Some(UnixTime(1_700_000_001)),
        identity: identity(repository_id),
        reason: None,
        idempotency_key: None,
        pushes: Vec::new(),
        pending_run: None,
        pending_reservation: None,
    }
}

/// A run that no other run of the suite uses, attempt 1 of `repository_id`.
#[must_use]
pub fn pending_run(repository_id: RepositoryId) -> PendingRun {
    PendingRun {
        repository_id,
        run_id: RunId(unique_u64()),
        run_attempt: 1,
        head_sha: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4".into(),
    }
}

/// A pending (webhook mode) upload claiming `run`, received at `created_at`.
#[must_use]
pub fn pending_upload(run: &PendingRun, created_at: i64) -> NewUpload {
    let mut upload = new_upload(run.repository_id);
    upload.status = UploadStatus::Pending;
    upload.mode = Mode::Webhook;
    upload.created_at = UnixTime(created_at);
    upload.verified_at = None;
    upload.reason = Some("waiting for workflow_run".into());
    upload.pending_run = Some(run.clone());
    upload
}

/// A push of `event` announcing `upload_id`, with a fresh id.
#[must_use]
pub fn new_push(upload_id: &UploadId, event: &str) -> NewPush {
    NewPush {
        id: uuid::Uuid::new_v4().hyphenated().to_string(),
        event: event.into(),
        upload_id: upload_id.to_string(),
        payload: serde_json::json!({
            "event": event,
            "upload": {"id": upload_id.as_str(), "status": "verified"},
        }),
    }
}

/// A session of `repository_id` with a fresh token hash, opened at `created_at`.
#[must_use]
pub fn new_session(
    repository_id: RepositoryId,
    created_at: i64,
    expires_at: i64,
    max_uploads: u64,
    max_bytes: u64,
) -> NewSession {
    NewSession {
        token_hash: hex::encode(Sha256::digest(uuid::Uuid::new_v4().as_bytes())),
        identity: identity(repository_id),
        created_at: UnixTime(created_at),
        expires_at: UnixTime(expires_at),
        max_uploads,
        max_bytes,
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// A recorded namespace id never changes; binding the same id again moves it to another
/// blob store. (The database may be bound already by an earlier run.)
pub async fn namespace_id_is_recorded_once(store: &dyn Store) {
    let first = store
        .bind_namespace(&unique("ns"), "file:///first", UnixTime(1_700_000_000))
        .await
        .unwrap();
    assert_eq!(store.namespace().await.unwrap().as_ref(), Some(&first));
    let other = store
        .bind_namespace(&unique("ns"), "file:///other", UnixTime(1_700_000_001))
        .await
        .unwrap();
    assert_eq!(other, first, "another id changes nothing");
    let moved = store
        .bind_namespace(&first.id, "s3://bucket/moved", UnixTime(1_700_000_002))
        .await
        .unwrap();
    assert_eq!(moved.id, first.id);
    assert_eq!(moved.blob_store, "s3://bucket/moved");
    assert_eq!(store.namespace().await.unwrap(), Some(moved));
}

/// Two rules using every kind of field: ids, patterns, a flag, exact lists and claims.
fn sample_rules() -> Vec<runproof_core::rules::TrustRule> {
    let strings = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect());
    vec![
        runproof_core::rules::TrustRule {
            name: "release uploads".into(),
            repository_owner_ids: Some(vec![OwnerId(650_001)]),
            repository_ids: Some(vec![RepositoryId(740_001)]),
            workflows: strings(&[".github/workflows/release.yml"]),
            job_workflows: strings(&["app-org/upload/.github/workflows/upload.yml@refs/tags/v*"]),
            refs: strings(&["refs/heads/main", "refs/tags/v*"]),
            ref_protected: Some(true),
            environments: strings(&["production"]),
            events: strings(&["push", "release"]),
            runner_environments: strings(&["github-hosted"]),
            claims: Some(std::collections::BTreeMap::from([(
                "repo_property_team".to_owned(),
                "infra".to_owned(),
            )])),
        },
        runproof_core::rules::TrustRule::default(),
    ]
}

/// A repository's rules are stored whole, replaced whole, kept apart from every other
/// repository's, and deleted once; an empty layer is stored as such.
pub async fn repository_rules_are_replaced_and_deleted(store: &dyn Store) {
    let (repo, other) = (unique_repository_id(), unique_repository_id());
    assert_eq!(store.repository_rules(repo).await.unwrap(), None);
    assert!(!store.delete_repository_rules(repo).await.unwrap());

    let rules = sample_rules();
    let stored = store
        .put_repository_rules(repo, &rules, UnixTime(1_700_000_000))
        .await
        .unwrap();
    assert_eq!(stored.repository_id, repo);
    assert_eq!(stored.rules, rules);
    assert_eq!(stored.updated_at, UnixTime(1_700_000_000));
    assert_eq!(store.repository_rules(repo).await.unwrap(), Some(stored));
    assert_eq!(
        store.repository_rules(other).await.unwrap(),
        None,
        "another repository has none"
    );

    let fewer = vec![rules[1].clone()];
    store
        .put_repository_rules(repo, &fewer, UnixTime(1_700_000_100))
        .await
        .unwrap();
    let read = store.repository_rules(repo).await.unwrap().unwrap();
    assert_eq!(read.rules, fewer, "a write replaces, never merges");
    assert_eq!(read.updated_at, UnixTime(1_700_000_100));

    store
        .put_repository_rules(other, &[], UnixTime(1_700_000_200))
        .await
        .unwrap();
    let empty = store.repository_rules(other).await.unwrap().unwrap();
    assert!(empty.rules.is_empty(), "an empty layer is stored as empty");

    assert!(store.delete_repository_rules(repo).await.unwrap());
    assert!(!store.delete_repository_rules(repo).await.unwrap());
    assert_eq!(store.repository_rules(repo).await.unwrap(), None);
    assert!(
        store.repository_rules(other).await.unwrap().is_some(),
        "a delete touches one repository"
    );
}

/// An id beyond the database's integers is the caller's error, never stored.
pub async fn rule_repository_rules_ids_beyond_the_database_are_invalid(store: &dyn Store) {
    let huge = RepositoryId(u64::MAX);
    let put = store
        .put_repository_rules(huge, &sample_rules(), UnixTime(1_700_000_000))
        .await;
    assert!(matches!(put, Err(StoreError::Invalid(_))), "{put:?}");
    assert!(matches!(
        store.repository_rules(huge).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.delete_repository_rules(huge).await,
        Err(StoreError::Invalid(_))
    ));
}

fn write(upload: NewUpload, jti: Option<(&str, &str)>, body: Option<&'static [u8]>) -> UploadWrite {
    UploadWrite {
        upload,
        jti: jti.map(|(issuer, jti)| UsedJti {
            issuer: issuer.into(),
            jti: jti.into(),
            expires_at: UnixTime(4_000_000_000),
        }),
        body: body.map(bytes::Bytes::from_static),
    }
}

/// One batch, one transaction, and yet each write has its own outcome: a spent `jti`
/// (before, or earlier in the batch) and an idempotency key met fail only their own
/// write, a duplicate id only its own; the rest is stored with its pushes and body.
pub async fn rule_a_batch_commits_each_write_with_its_own_outcome(store: &dyn Store) {
    let repo = unique_repository_id();
    let issuer = unique("https://issuer");
    let (fresh, spent) = (unique("jti"), unique("jti"));
    assert!(
        store
            .consume_jti(&issuer, &spent, UnixTime(4_000_000_000))
            .await
            .unwrap()
    );
    let mut keyed = new_upload(repo);
    keyed.idempotency_key = Some(unique("key"));
    let existing = store.insert_upload(&keyed).await.unwrap();
    let taken = store.insert_upload(&new_upload(repo)).await.unwrap();

    let mut stored = new_upload(repo);
    stored.pushes.push(new_push(&stored.id, "upload.verified"));
    let stored_id = stored.id.clone();
    let push_id = stored.pushes[0].id.clone();
    let replayed = new_upload(repo);
    let replayed_id = replayed.id.clone();
    let twice = new_upload(repo);
    let twice_id = twice.id.clone();
    let mut again = new_upload(repo);
    again.idempotency_key.clone_from(&keyed.idempotency_key);
    let again_id = again.id.clone();
    let mut duplicate = new_upload(repo);
    duplicate.id = taken.id.clone();
    let plain = new_upload(repo);
    let plain_id = plain.id.clone();

    let writes = vec![
        write(stored, Some((&issuer, &fresh)), Some(b"inline body")),
        write(replayed, Some((&issuer, &spent)), Some(b"never stored")),
        write(twice, Some((&issuer, &fresh)), None),
        write(again, None, None),
        write(duplicate, None, None),
        write(plain, None, None),
    ];
    let outcomes = store.commit_uploads(&writes).await.unwrap();
    assert_eq!(outcomes.len(), writes.len());
    let mut outcomes = outcomes.into_iter();
    match outcomes.next().unwrap() {
        Ok(Committed::Inserted(record)) => assert_eq!(record.id, stored_id),
        other => panic!("the fresh write: {other:?}"),
    }
    assert!(matches!(outcomes.next().unwrap(), Ok(Committed::Replayed)));
    assert!(
        matches!(outcomes.next().unwrap(), Ok(Committed::Replayed)),
        "rule: a jti spent earlier in the same batch"
    );
    match outcomes.next().unwrap() {
        Ok(Committed::Existing(record)) => assert_eq!(record.id, existing.id),
        other => panic!("the idempotent write: {other:?}"),
    }
    assert!(matches!(
        outcomes.next().unwrap(),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        outcomes.next().unwrap(),
        Ok(Committed::Inserted(_))
    ));

    assert!(store.get_upload(&stored_id).await.unwrap().is_some());
    assert!(store.get_upload(&plain_id).await.unwrap().is_some());
    for gone in [&replayed_id, &twice_id, &again_id] {
        assert!(store.get_upload(gone).await.unwrap().is_none(), "{gone}");
    }
    assert_eq!(
        store.inline_body(&stored_id).await.unwrap().as_deref(),
        Some(&b"inline body"[..])
    );
    assert_eq!(store.inline_body(&plain_id).await.unwrap(), None);
    assert!(
        find_push(store, &push_id).await.is_some(),
        "the delivery is enqueued with its upload"
    );
    assert!(store.jti_is_spent(&issuer, &fresh).await.unwrap());
    assert!(!store.jti_is_spent(&issuer, &unique("jti")).await.unwrap());
    assert!(store.latest_jti_expiry().await.unwrap() >= Some(UnixTime(4_000_000_000)));
    // A later batch with the jti now spent.
    let late = store
        .commit_uploads(&[write(new_upload(repo), Some((&issuer, &fresh)), None)])
        .await
        .unwrap();
    assert!(matches!(late.as_slice(), [Ok(Committed::Replayed)]));
}

/// Batches committing at once, each with an upload spending the same `jti`: exactly one
/// upload is stored, on any backend (the database's unique key decides).
pub async fn rule_concurrent_batches_spend_a_jti_once(store: Arc<dyn Store>) {
    let repo = unique_repository_id();
    let issuer = unique("https://issuer");
    let jti = unique("jti");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        let (issuer, jti) = (issuer.clone(), jti.clone());
        tasks.push(tokio::spawn(async move {
            let writes = vec![
                write(new_upload(repo), Some((&issuer, &jti)), Some(b"x")),
                write(new_upload(repo), None, None),
            ];
            store.commit_uploads(&writes).await.unwrap()
        }));
    }
    let mut inserted = 0;
    let mut others = 0;
    for task in tasks {
        let outcomes = task.await.unwrap();
        match &outcomes[0] {
            Ok(Committed::Inserted(_)) => inserted += 1,
            Ok(Committed::Replayed) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(outcomes[1], Ok(Committed::Inserted(_))),
            "rule: the other write of each batch is stored whatever the first's fate"
        );
        others += 1;
    }
    assert_eq!((inserted, others), (1, 8));
}

/// An inline body is read back whole and deleted once.
pub async fn inline_bodies_are_read_and_deleted(store: &dyn Store) {
    let upload = new_upload(unique_repository_id());
    let id = upload.id.clone();
    let outcomes = store
        .commit_uploads(&[write(upload, None, Some(b"0123456789"))])
        .await
        .unwrap();
    assert!(matches!(outcomes.as_slice(), [Ok(Committed::Inserted(_))]));
    assert_eq!(
        store.inline_body(&id).await.unwrap().as_deref(),
        Some(&b"0123456789"[..])
    );
    assert!(store.delete_inline_body(&id).await.unwrap());
    assert!(!store.delete_inline_body(&id).await.unwrap());
    assert_eq!(store.inline_body(&id).await.unwrap(), None);
    assert!(
        store.get_upload(&id).await.unwrap().is_some(),
        "the record stays"
    );
}

/// The position `store` gives the last verified upload of `repository_id` (`0` for none).
async fn last_position(store: &dyn Store, repository_id: RepositoryId) -> u64 {
    let mut after = 0;
    for _ in 0..1000 {
        let (page, next) = store
            .list_verified_after(Some(repository_id), after, 1000)
            .await
            .unwrap();
        if page.is_empty() {
            return next;
        }
        after = next;
    }
    panic!("more than a million uploads in one repository");
}

/// A verified upload of `repository_id` verified at `verified_at`.
fn verified_at(repository_id: RepositoryId, verified_at: i64) -> NewUpload {
    let mut upload = new_upload(repository_id);
    upload.verified_at = Some(UnixTime(verified_at));
    upload
}

/// Verified uploads list in the order they became verified, not the order they were
/// received: a pending upload verified later comes after the uploads verified before
/// it; one rejected never comes. An empty page gives back the position it was asked for.
pub async fn rule_verified_uploads_list_in_the_order_they_became_verified(store: &dyn Store) {
    let repo = unique_repository_id();
    let t = 4_600_000_000;
    let run = pending_run(repo);
    let pending = pending_upload(&run, t);
    let refused = pending_upload(&run, t);
    store.insert_upload(&pending).await.unwrap();
    store.insert_upload(&refused).await.unwrap();
    let first = store
        .insert_upload(&verified_at(repo, t + 1))
        .await
        .unwrap();
    let batch = vec![
        write(verified_at(repo, t + 2), None, Some(b"one")),
        write(pending_upload(&pending_run(repo), t), None, None),
        write(verified_at(repo, t + 3), None, None),
    ];
    let mut batched = Vec::new();
    for outcome in store.commit_uploads(&batch).await.unwrap() {
        match outcome.unwrap() {
            Committed::Inserted(record) if record.status == UploadStatus::Verified => {
                batched.push(record.id);
            }
            Committed::Inserted(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        store
            .resolve_pending(
                &pending.id,
                UploadStatus::Verified,
                Some(&identity(repo)),
                None,
                UnixTime(t + 5),
                &[],
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .resolve_pending(
                &refused.id,
                UploadStatus::Rejected,
                None,
                Some("no such run"),
                UnixTime(t + 5),
                &[],
            )
            .await
            .unwrap()
    );
    let last = store
        .insert_upload(&verified_at(repo, t + 10))
        .await
        .unwrap();
    let expected = vec![
        first.id.clone(),
        batched[0].clone(),
        batched[1].clone(),
        pending.id.clone(),
        last.id.clone(),
    ];

    // Page by page, one at a time: each page's position is above the one before.
    let mut after = 0;
    let mut positions = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..20 {
        let (page, next) = store
            .list_verified_after(Some(repo), after, 1)
            .await
            .unwrap();
        if page.is_empty() {
            assert_eq!(next, after, "an empty page keeps the position");
            break;
        }
        assert_eq!(page.len(), 1);
        assert!(next > after, "positions grow: {next} after {after}");
        assert_eq!(page[0].status, UploadStatus::Verified);
        positions.push(next);
        seen.push(page[0].id.clone());
        after = next;
    }
    assert_eq!(seen, expected);
    let resolved = store.get_upload(&pending.id).await.unwrap().unwrap();
    assert_eq!(resolved.status, UploadStatus::Verified);

    // Without the repository filter, the same order among every repository's uploads.
    let (page, next) = store
        .list_verified_after(None, positions[0] - 1, 1000)
        .await
        .unwrap();
    let ours: Vec<UploadId> = page
        .iter()
        .filter(|r| r.identity.repository_id == repo)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(ours, expected);
    assert!(next >= after);

    // A later upload comes after every earlier one, and nothing else changed.
    assert_eq!(last_position(store, repo).await, after);
    let later = store.insert_upload(&new_upload(repo)).await.unwrap();
    let (page, next) = store
        .list_verified_after(Some(repo), after, 10)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![later.id]
    );
    assert!(next > after);
    let (page, again) = store
        .list_verified_after(Some(repo), next, 10)
        .await
        .unwrap();
    assert!(page.is_empty());
    assert_eq!(again, next);
    assert!(matches!(
        store.list_verified_after(None, u64::MAX, 10).await,
        Err(StoreError::Invalid(_))
    ));
}

/// Uploads verified while nobody lists have no position yet: the first listing numbers
/// them, in the order they were verified (whichever way: an insert, a batch, a pending
/// upload resolved), not the order they were received; later uploads come after them.
pub async fn rule_unlisted_uploads_are_numbered_in_verification_order(store: &dyn Store) {
    let repo = unique_repository_id();
    let t = 4_700_000_000;
    let run = pending_run(repo);
    let pending = pending_upload(&run, t);
    store.insert_upload(&pending).await.unwrap();
    let fourth = store
        .insert_upload(&verified_at(repo, t + 4))
        .await
        .unwrap();
    let mut batched = Vec::new();
    for outcome in store
        .commit_uploads(&[
            write(verified_at(repo, t + 3), None, Some(b"three")),
            write(verified_at(repo, t + 1), None, None),
        ])
        .await
        .unwrap()
    {
        match outcome.unwrap() {
            Committed::Inserted(record) => batched.push(record.id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        store
            .resolve_pending(
                &pending.id,
                UploadStatus::Verified,
                Some(&identity(repo)),
                None,
                UnixTime(t + 2),
                &[],
            )
            .await
            .unwrap()
    );
    let expected = vec![
        batched[1].clone(),
        pending.id.clone(),
        batched[0].clone(),
        fourth.id.clone(),
    ];
    let (page, next) = store
        .list_verified_after(Some(repo), 0, 1000)
        .await
        .unwrap();
    let ids: Vec<UploadId> = page.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        ids, expected,
        "numbered by the first listing, oldest verified first"
    );
    // The positions stay: listed again from the start, the same order; one verified
    // now, even if earlier by its clock, comes after them.
    let (again, same) = store
        .list_verified_after(Some(repo), 0, 1000)
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(same, next);
    let late = store.insert_upload(&verified_at(repo, t)).await.unwrap();
    let (page, after) = store
        .list_verified_after(Some(repo), next, 1000)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![late.id]
    );
    assert!(after > next);
}

/// More uploads waiting for a position than one listing numbers (1 000): they are
/// listed across listings, each exactly once, in the order they were verified, by a
/// poller that follows the cursor it is given.
pub async fn rule_a_backlog_beyond_one_numbering_is_listed_exactly_once(store: &dyn Store) {
    let repo = unique_repository_id();
    let t = 4_800_000_000;
    let count = 1_100;
    let mut expected = Vec::with_capacity(count);
    let uploads: Vec<NewUpload> = (0..count)
        .map(|i| verified_at(repo, t + i64::try_from(i).unwrap()))
        .collect();
    for chunk in uploads.chunks(200) {
        let writes: Vec<UploadWrite> = chunk
            .iter()
            .map(|upload| write(upload.clone(), None, None))
            .collect();
        for outcome in store.commit_uploads(&writes).await.unwrap() {
            match outcome.unwrap() {
                Committed::Inserted(record) => expected.push(record.id),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    for limit in [1000, 300] {
        let mut after = 0;
        let mut seen = Vec::new();
        for _ in 0..100 {
            let (page, next) = store
                .list_verified_after(Some(repo), after, limit)
                .await
                .unwrap();
            assert!(next >= after);
            if page.is_empty() && seen.len() >= count {
                break;
            }
            seen.extend(page.into_iter().map(|r| r.id));
            after = next;
        }
        assert_eq!(
            seen, expected,
            "each once, in verification order (limit {limit})"
        );
    }
}

/// A poller following the positions while uploads are committed concurrently, one by one,
/// in batches and as pending uploads verified later, sees each verified upload exactly
/// once: a position never becomes visible before a lower one.
pub async fn rule_a_poller_misses_no_upload_verified_concurrently(store: Arc<dyn Store>) {
    let repo = unique_repository_id();
    let writers = 6;
    let rounds = 15;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..rounds {
                match w % 3 {
                    0 => ids.push(store.insert_upload(&new_upload(repo)).await.unwrap().id),
                    1 => {
                        let writes = vec![
                            write(new_upload(repo), None, None),
                            write(new_upload(repo), None, Some(b"x")),
                        ];
                        for outcome in store.commit_uploads(&writes).await.unwrap() {
                            match outcome.unwrap() {
                                Committed::Inserted(record) => ids.push(record.id),
                                other => panic!("unexpected {other:?}"),
                            }
                        }
                    }
                    _ => {
                        let pending = pending_upload(&pending_run(repo), 4_600_000_000);
                        store.insert_upload(&pending).await.unwrap();
                        assert!(
                            store
                                .resolve_pending(
                                    &pending.id,
                                    UploadStatus::Verified,
                                    None,
                                    None,
                                    UnixTime(4_600_000_001),
                                    &[],
                                )
                                .await
                                .unwrap()
                        );
                        ids.push(pending.id);
                    }
                }
            }
            ids
        }));
    }
    let mut after = 0;
    let mut seen = Vec::new();
    let poll = |after: u64| {
        let store = Arc::clone(&store);
        async move {
            store
                .list_verified_after(Some(repo), after, 7)
                .await
                .unwrap()
        }
    };
    while !tasks.iter().all(tokio::task::JoinHandle::is_finished) {
        let (page, next) = poll(after).await;
        assert!(next >= after);
        seen.extend(page.into_iter().map(|r| r.id));
        after = next;
        tokio::task::yield_now().await;
    }
    let mut written = HashSet::new();
    for task in tasks {
        written.extend(task.await.unwrap());
    }
    for _ in 0..1000 {
        let (page, next) = poll(after).await;
        if page.is_empty() {
            break;
        }
        seen.extend(page.into_iter().map(|r| r.id));
        after = next;
    }
    let distinct: HashSet<UploadId> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), seen.len(), "no upload is seen twice");
    assert_eq!(distinct, written, "every verified upload is seen");
}

/// An upload event of `repository_id` at `at` with `outcome` and `code`.
fn upload_event(
    repository_id: RepositoryId,
    at: i64,
    outcome: crate::EventOutcome,
    code: Option<&str>,
) -> crate::NewEvent {
    let mut e = crate::NewEvent::new(UnixTime(at), crate::EventKind::Upload, outcome);
    e.route = Some("POST /v1/uploads".into());
    e.mode = Some("oidc".into());
    e.code = code.map(Into::into);
    e.repository_id = Some(repository_id);
    e
}

/// Events round-trip, list newest first, filter by each field and page with a cursor.
pub async fn events_list_newest_first_with_filters_and_pages(store: &dyn Store) {
    use crate::{EventFilter, EventKind, EventOutcome};
    let repo = unique_repository_id();
    let by_repo = EventFilter {
        repository_id: Some(repo),
        ..EventFilter::default()
    };
    let mut full = upload_event(
        repo,
        1_700_000_000,
        EventOutcome::Refused,
        Some("rule_mismatch"),
    );
    full.rule = Some("main".into());
    full.mismatches = Some(serde_json::json!([{"claim": "ref", "expected": "refs/heads/main"}]));
    full.run_id = Some(RunId(77));
    full.workflow = Some("octo/app/.github/workflows/ci.yml@refs/heads/main".into());
    full.source = Some("192.0.2.1".into());
    full.detail = Some("x".repeat(crate::MAX_EVENT_TEXT_CHARS + 10));
    full.upload_id = Some(UploadId::generate());
    let mut session = crate::NewEvent::new(
        UnixTime(1_700_000_100),
        EventKind::Session,
        EventOutcome::Accepted,
    );
    session.repository_id = Some(repo);
    let events = vec![
        full.clone(),
        session,
        upload_event(repo, 1_700_000_200, EventOutcome::Accepted, None),
        upload_event(
            repo,
            1_700_000_300,
            EventOutcome::Refused,
            Some("bad_signature"),
        ),
    ];
    assert_eq!(store.insert_events(&events).await.unwrap(), 4);
    assert_eq!(store.insert_events(&[]).await.unwrap(), 0);

    let (all, next) = store.list_events(&by_repo, 10, None).await.unwrap();
    assert_eq!(next, None);
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let times: Vec<i64> = all.iter().map(|r| r.event.at.0).collect();
    assert_eq!(
        times,
        [1_700_000_300, 1_700_000_200, 1_700_000_100, 1_700_000_000]
    );
    let stored = &all[3].event;
    assert_eq!(
        stored.detail.as_ref().unwrap().len(),
        crate::MAX_EVENT_TEXT_CHARS
    );
    let mut expected = full;
    expected.detail = stored.detail.clone();
    assert_eq!(stored, &expected);

    let refused = EventFilter {
        outcome: Some(EventOutcome::Refused),
        ..by_repo.clone()
    };
    let (page, _) = store.list_events(&refused, 10, None).await.unwrap();
    assert_eq!(page.len(), 2);
    let code = EventFilter {
        code: Some("bad_signature".into()),
        ..by_repo.clone()
    };
    let (page, _) = store.list_events(&code, 10, None).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].event.at.0, 1_700_000_300);
    let kind = EventFilter {
        kind: Some(EventKind::Session),
        ..by_repo.clone()
    };
    let (page, _) = store.list_events(&kind, 10, None).await.unwrap();
    assert_eq!(page.len(), 1);
    let since = EventFilter {
        since: Some(UnixTime(1_700_000_200)),
        ..by_repo.clone()
    };
    let (page, _) = store.list_events(&since, 10, None).await.unwrap();
    assert_eq!(page.len(), 2);

    let (first, cursor) = store.list_events(&by_repo, 3, None).await.unwrap();
    assert_eq!(first.len(), 3);
    let cursor = cursor.expect("a second page");
    let (second, end) = store.list_events(&by_repo, 3, Some(cursor)).await.unwrap();
    assert_eq!(end, None);
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, all[3].id);
    let other = EventFilter {
        repository_id: Some(unique_repository_id()),
        ..EventFilter::default()
    };
    assert!(
        store
            .list_events(&other, 10, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

/// Purging removes events older than the cutoff, then the oldest beyond the row bound.
pub async fn events_are_purged_by_age_and_by_count(store: &dyn Store) {
    use crate::{EventFilter, EventOutcome};
    let repo = unique_repository_id();
    let by_repo = EventFilter {
        repository_id: Some(repo),
        ..EventFilter::default()
    };
    let now = 1_900_000_000;
    let events: Vec<_> = [1_000, 2_000, now, now + 1, now + 2]
        .into_iter()
        .map(|at| upload_event(repo, at, EventOutcome::Accepted, None))
        .collect();
    store.insert_events(&events).await.unwrap();
    assert!(store.purge_events(UnixTime(1_500), u64::MAX).await.unwrap() >= 1);
    let (left, _) = store.list_events(&by_repo, 10, None).await.unwrap();
    let times: Vec<i64> = left.iter().map(|r| r.event.at.0).collect();
    assert_eq!(times, [now + 2, now + 1, now, 2_000]);
    // These are the newest events of the database: the bound keeps the two latest.
    assert!(store.purge_events(UnixTime(1_500), 2).await.unwrap() >= 2);
    let (left, _) = store.list_events(&by_repo, 10, None).await.unwrap();
    let times: Vec<i64> = left.iter().map(|r| r.event.at.0).collect();
    assert_eq!(times, [now + 2, now + 1]);
}

/// An event of `kind` with `outcome` at `at`, with `mode` and `code`.
fn event_at(
    at: i64,
    kind: crate::EventKind,
    outcome: crate::EventOutcome,
    mode: Option<&str>,
    code: Option<&str>,
) -> crate::NewEvent {
    let mut e = crate::NewEvent::new(UnixTime(at), kind, outcome);
    e.mode = mode.map(Into::into);
    e.code = code.map(Into::into);
    e
}

/// The hourly counts of `events` of `kind` and `outcome` at or after the hour of `since`,
/// worked out one event at a time, as [`Store::event_hours`] answers them.
fn expected_hours(
    events: &[crate::NewEvent],
    since: i64,
    kind: crate::EventKind,
    outcome: crate::EventOutcome,
) -> Vec<crate::EventHour> {
    let mut counts: std::collections::BTreeMap<(i64, String, String), u64> = Default::default();
    let from = crate::event_hour(UnixTime(since)).0;
    for e in events {
        let hour = crate::event_hour(e.at).0;
        if e.kind == kind && e.outcome == outcome && hour >= from {
            let mode = e.mode.clone().unwrap_or_default();
            let code = e.code.clone().unwrap_or_default();
            *counts.entry((hour, mode, code)).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|((hour, mode, code), count)| crate::EventHour {
            hour: UnixTime(hour),
            mode: (!mode.is_empty()).then_some(mode),
            code: (!code.is_empty()).then_some(code),
            count,
        })
        .collect()
}

/// The hourly counts equal the events inserted, by hour, mode and code, across batches
/// (a later batch adds to the hours an earlier one counted); the hour `since` falls in
/// is counted whole, earlier hours are not; no mode or code reads back as `None`.
pub async fn event_hours_count_the_events_by_hour_mode_and_code(store: &dyn Store) {
    use crate::{EventKind, EventOutcome};
    // 1_800_000_000 is a multiple of 3600: the start of an hour.
    let base: i64 = 1_800_000_000;
    let modes = [Some("oidc"), Some("session"), None];
    let codes = [None, Some("bad_signature"), Some("rule_mismatch")];
    let mut events = Vec::new();
    for i in 0..120i64 {
        let outcome = if i % 3 == 0 {
            EventOutcome::Refused
        } else {
            EventOutcome::Accepted
        };
        let code = if outcome == EventOutcome::Refused {
            codes[usize::try_from(i / 3).unwrap() % 3]
        } else {
            None
        };
        let kind = if i % 10 == 9 {
            EventKind::Session
        } else {
            EventKind::Upload
        };
        let mode = modes[usize::try_from(i).unwrap() % 3];
        // 94 seconds apart: four hours, each with events of every kind of row.
        events.push(event_at(base + i * 47 * 60 / 30, kind, outcome, mode, code));
    }
    // A code beyond the text bound is counted as stored: cut.
    let long = "c".repeat(crate::MAX_EVENT_TEXT_CHARS + 3);
    let mut cut = event_at(
        base + 10,
        EventKind::Upload,
        EventOutcome::Refused,
        None,
        Some(&long),
    );
    store.insert_events(&events[..50]).await.unwrap();
    store.insert_events(&events[50..]).await.unwrap();
    store
        .insert_events(std::slice::from_ref(&cut))
        .await
        .unwrap();
    cut.code = Some("c".repeat(crate::MAX_EVENT_TEXT_CHARS));
    events.push(cut);

    for (kind, outcome) in [
        (EventKind::Upload, EventOutcome::Accepted),
        (EventKind::Upload, EventOutcome::Refused),
        (EventKind::Session, EventOutcome::Accepted),
        (EventKind::Push, EventOutcome::Failed),
    ] {
        for since in [0, base, base + 3599, base + 3600, base + 2 * 3600 + 1] {
            let got = store
                .event_hours(UnixTime(since), kind, outcome)
                .await
                .unwrap();
            assert_eq!(
                got,
                expected_hours(&events, since, kind, outcome),
                "{kind:?} {outcome:?} since {since}"
            );
            assert!(got.windows(2).all(|w| w[0].hour <= w[1].hour), "by hour");
        }
    }
    let all = store
        .event_hours(UnixTime(0), EventKind::Upload, EventOutcome::Accepted)
        .await
        .unwrap();
    assert!(all.iter().any(|h| h.mode.is_none() && h.code.is_none()));
    let total: u64 = all.iter().map(|h| h.count).sum();
    let inserted = events
        .iter()
        .filter(|e| e.kind == EventKind::Upload && e.outcome == EventOutcome::Accepted)
        .count();
    assert_eq!(total, u64::try_from(inserted).unwrap());
}

/// A chart's counts are the hourly counts summed by mode or by code into buckets, each
/// bucket starting at a multiple of its length; a bucket that is not whole hours is
/// refused.
pub async fn event_counts_sum_the_hours_by_bucket_and_split(store: &dyn Store) {
    use crate::{EventKind, EventOutcome, EventSplit};
    let base: i64 = 1_800_000_000;
    let modes = [Some("oidc"), Some("session"), None];
    let codes = [None, Some("bad_signature"), Some("policy_denied")];
    let mut events = Vec::new();
    for i in 0..200i64 {
        let outcome = if i % 2 == 0 {
            EventOutcome::Refused
        } else {
            EventOutcome::Accepted
        };
        let at = base - 5 * 3600 + i * 157;
        let mode = modes[usize::try_from(i).unwrap() % 3];
        let code = codes[usize::try_from(i / 2).unwrap() % 3];
        events.push(event_at(at, EventKind::Upload, outcome, mode, code));
    }
    store.insert_events(&events).await.unwrap();
    for (outcome, split) in [
        (EventOutcome::Accepted, EventSplit::Mode),
        (EventOutcome::Refused, EventSplit::Code),
        (EventOutcome::Refused, EventSplit::Mode),
    ] {
        for bucket in [3600u32, 4 * 3600, 24 * 3600] {
            for since in [0, base - 4 * 3600 + 1] {
                let hours = store
                    .event_hours(UnixTime(since), EventKind::Upload, outcome)
                    .await
                    .unwrap();
                let mut expected: std::collections::BTreeMap<(i64, Option<String>), u64> =
                    std::collections::BTreeMap::new();
                for h in hours {
                    let start = h.hour.0 - h.hour.0.rem_euclid(i64::from(bucket));
                    let label = match split {
                        EventSplit::Mode => h.mode,
                        _ => h.code,
                    };
                    *expected.entry((start, label)).or_default() += h.count;
                }
                let got = store
                    .event_counts(UnixTime(since), EventKind::Upload, outcome, split, bucket)
                    .await
                    .unwrap();
                let got_map: std::collections::BTreeMap<(i64, Option<String>), u64> = got
                    .iter()
                    .map(|h| {
                        let label = match split {
                            EventSplit::Mode => {
                                assert_eq!(h.code, None);
                                h.mode.clone()
                            }
                            _ => {
                                assert_eq!(h.mode, None);
                                h.code.clone()
                            }
                        };
                        ((h.hour.0, label), h.count)
                    })
                    .collect();
                assert_eq!(got.len(), got_map.len(), "one row per bucket and label");
                assert_eq!(got_map, expected, "{outcome:?} {split:?} {bucket} {since}");
                assert!(got.windows(2).all(|w| w[0].hour <= w[1].hour), "by bucket");
            }
        }
    }
    for bad in [0u32, 1800, 5400] {
        assert!(
            store
                .event_counts(
                    UnixTime(0),
                    EventKind::Upload,
                    EventOutcome::Accepted,
                    EventSplit::Mode,
                    bad
                )
                .await
                .is_err(),
            "{bad}"
        );
    }
}

/// Purging drops the hourly counts of the hours that ended before the age bound, and
/// only by age: the hour the bound falls in stays whole, and the row bound removes no
/// count.
pub async fn event_hours_are_purged_by_age_only(store: &dyn Store) {
    use crate::{EventKind, EventOutcome};
    let hour = 3600;
    let base = 1_900_000_000 - 1_900_000_000 % hour;
    let at = [
        base - 3 * hour,
        base - 2 * hour + 5,
        base - hour + 10,
        base + 1,
        base + 2,
        base + hour + 3,
    ];
    let events: Vec<_> = at
        .iter()
        .map(|&at| {
            event_at(
                at,
                EventKind::Upload,
                EventOutcome::Accepted,
                Some("oidc"),
                None,
            )
        })
        .collect();
    store.insert_events(&events).await.unwrap();
    // The bound falls 20 seconds into the hour before `base`: that hour's count stays
    // whole, though its one event is purged; older hours go.
    let before = base - hour + 20;
    store.purge_events(UnixTime(before), 2).await.unwrap();
    let hours = store
        .event_hours(UnixTime(0), EventKind::Upload, EventOutcome::Accepted)
        .await
        .unwrap();
    let got: Vec<(i64, u64)> = hours.iter().map(|h| (h.hour.0, h.count)).collect();
    assert_eq!(got, [(base - hour, 1), (base, 2), (base + hour, 1)]);
    // The row bound kept two events, yet the counts still hold every event of those hours.
    let (left, _) = store
        .list_events(&crate::EventFilter::default(), 10, None)
        .await
        .unwrap();
    assert_eq!(left.len(), 2);
    // Once the bound passes every hour, nothing is counted.
    store
        .purge_events(UnixTime(base + 2 * hour), u64::MAX)
        .await
        .unwrap();
    assert!(
        store
            .event_hours(UnixTime(0), EventKind::Upload, EventOutcome::Accepted)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Events name their upload, and list by it, newest first and in pages.
pub async fn events_are_listed_by_upload(store: &dyn Store) {
    use crate::{EventFilter, EventKind, EventOutcome};
    let (a, b) = (UploadId::generate(), UploadId::generate());
    let repo = unique_repository_id();
    let mut events = Vec::new();
    for i in 0..7 {
        let mut e = upload_event(repo, 1_700_000_000 + i, EventOutcome::Accepted, None);
        e.upload_id = Some(if i % 2 == 0 { a.clone() } else { b.clone() });
        events.push(e);
    }
    let mut push = crate::NewEvent::new(
        UnixTime(1_700_000_100),
        EventKind::Push,
        EventOutcome::Delivered,
    );
    push.upload_id = Some(a.clone());
    push.detail = Some(a.to_string());
    events.push(push.clone());
    events.push(upload_event(
        repo,
        1_700_000_200,
        EventOutcome::Accepted,
        None,
    ));
    store.insert_events(&events).await.unwrap();

    let of_a = EventFilter {
        upload_id: Some(a.clone()),
        ..EventFilter::default()
    };
    let (page, next) = store.list_events(&of_a, 10, None).await.unwrap();
    assert_eq!(next, None);
    let times: Vec<i64> = page.iter().map(|r| r.event.at.0).collect();
    assert_eq!(
        times,
        [
            1_700_000_100,
            1_700_000_006,
            1_700_000_004,
            1_700_000_002,
            1_700_000_000
        ]
    );
    assert!(page.iter().all(|r| r.event.upload_id.as_ref() == Some(&a)));
    assert_eq!(page[0].event, push);
    let (first, cursor) = store.list_events(&of_a, 3, None).await.unwrap();
    let (second, end) = store.list_events(&of_a, 3, cursor).await.unwrap();
    assert_eq!(end, None);
    let paged: Vec<u64> = first.iter().chain(&second).map(|r| r.id).collect();
    let whole: Vec<u64> = page.iter().map(|r| r.id).collect();
    assert_eq!(paged, whole);
    let push_of_a = EventFilter {
        kind: Some(EventKind::Push),
        ..of_a.clone()
    };
    assert_eq!(
        store
            .list_events(&push_of_a, 10, None)
            .await
            .unwrap()
            .0
            .len(),
        1
    );
    let of_b = EventFilter {
        upload_id: Some(b),
        ..EventFilter::default()
    };
    assert_eq!(store.list_events(&of_b, 10, None).await.unwrap().0.len(), 3);
    let of_none = EventFilter {
        upload_id: Some(UploadId::generate()),
        ..EventFilter::default()
    };
    assert!(
        store
            .list_events(&of_none, 10, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    let by_repo = EventFilter {
        repository_id: Some(repo),
        ..EventFilter::default()
    };
    let (latest, _) = store.list_events(&by_repo, 1, None).await.unwrap();
    assert_eq!(latest[0].event.upload_id, None);
}

/// Declares the store conformance suite as tests, one `#[tokio::test]` per case, each
/// named after its case (`jti_is_consumed_once`, …), so that every case passes or fails
/// on its own.
///
/// `$harness` is an `async fn(Case)` of the invoking crate: it opens a fresh store,
/// runs the [`Case`](crate::testsuite::Case) on it with
/// [`Case::run`](crate::testsuite::Case::run), then cleans up. It may also return
/// without running the case, when its backend is not available. Invoke the macro once
/// per backend, each in a module of its own:
///
/// ```ignore
/// mod sqlite_memory {
///     async fn harness(case: runproof_store::testsuite::Case) {
///         let store = runproof_store::open_store("sqlite::memory:", Default::default())
///             .await
///             .unwrap();
///         case.run(store).await;
///     }
///     runproof_store::store_conformance!(harness);
/// }
/// ```
///
/// The invoking crate needs `tokio` with its `macros` and `rt-multi-thread` features.
/// The list below is the one list of cases: every backend runs all of them.
#[macro_export]
macro_rules! store_conformance {
    ($harness:path $(,)?) => {
        $crate::store_conformance!(@cases tests $harness);
    };
    // Hands the cases to the arm named `$then`, with `$args`.
    (@cases $then:ident $($args:tt)*) => {
        $crate::store_conformance! { @$then [$($args)*]
            #[tokio::test]
            async fn ping_succeeds();
            #[tokio::test]
            async fn jti_is_consumed_once();
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_jti_has_one_winner();
            #[tokio::test]
            async fn purge_removes_only_expired_jtis();
            #[tokio::test]
            async fn insert_then_get_round_trips();
            #[tokio::test]
            async fn idempotency_key_conflict_returns_existing();
            #[tokio::test]
            async fn rule_idempotency_keys_never_cross_scopes();
            #[tokio::test]
            async fn duplicate_id_is_refused();
            #[tokio::test]
            async fn list_filters_by_status_and_repository();
            #[tokio::test]
            async fn list_paginates_newest_first();
            #[tokio::test]
            async fn redelivery_has_no_second_effect();
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_webhook_deliveries_have_one_winner();
            #[tokio::test]
            async fn failed_webhook_delivery_applies_nothing();
            #[tokio::test]
            async fn installation_binding_lifecycle();
            #[tokio::test]
            async fn binding_prefers_an_active_installation();
            #[tokio::test]
            async fn installation_for_account_is_the_latest();
            #[tokio::test]
            async fn rule_late_installation_deliveries_never_revive_access();
            #[tokio::test]
            async fn workflow_run_keeps_the_latest_and_never_regresses();
            #[tokio::test]
            async fn purge_forgets_old_webhook_deliveries();
            #[tokio::test]
            async fn purge_forgets_old_workflow_runs();
            #[tokio::test]
            async fn session_grants_up_to_max_uploads();
            #[tokio::test]
            async fn session_bytes_are_reserved_then_released();
            #[tokio::test]
            async fn session_expires();
            #[tokio::test]
            async fn revoked_and_unknown_sessions_are_unknown();
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_session_uses_respect_the_limit();
            #[tokio::test]
            async fn purge_forgets_expired_sessions();
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn outbox_claims_each_push_once();
            #[tokio::test]
            async fn outbox_failures_retry_and_give_up();
            #[tokio::test]
            async fn outbox_rolls_back_with_the_upload();
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_claimers_share_the_outbox();
            #[tokio::test]
            async fn pending_uploads_correlate_and_resolve_once();
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_resolutions_have_one_winner();
            #[tokio::test]
            async fn expire_pending_and_blobs_to_delete();
            #[tokio::test]
            async fn pending_quotas_count_uploads();
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn rule_parallel_pending_reservations_never_exceed_the_quotas();
            #[tokio::test]
            async fn pending_reservations_are_consumed_refunded_or_expire();
            #[tokio::test]
            async fn run_quota_counts_only_claims_that_could_be_approved();
            #[tokio::test]
            async fn workflow_run_attempts_list_the_highest_first();
            #[tokio::test]
            async fn ids_without_upload_counts_every_status();
            #[tokio::test]
            async fn namespace_id_is_recorded_once();
            #[tokio::test]
            async fn rule_a_batch_commits_each_write_with_its_own_outcome();
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn rule_concurrent_batches_spend_a_jti_once();
            #[tokio::test]
            async fn inline_bodies_are_read_and_deleted();
            #[tokio::test]
            async fn repository_rules_are_replaced_and_deleted();
            #[tokio::test]
            async fn rule_repository_rules_ids_beyond_the_database_are_invalid();
            #[tokio::test]
            async fn rule_verified_uploads_list_in_the_order_they_became_verified();
            #[tokio::test]
            async fn rule_unlisted_uploads_are_numbered_in_verification_order();
            #[tokio::test]
            async fn rule_a_backlog_beyond_one_numbering_is_listed_exactly_once();
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn rule_a_poller_misses_no_upload_verified_concurrently();
            #[tokio::test]
            async fn events_list_newest_first_with_filters_and_pages();
            #[tokio::test]
            async fn events_are_purged_by_age_and_by_count();
            #[tokio::test]
            async fn event_hours_count_the_events_by_hour_mode_and_code();
            #[tokio::test]
            async fn event_hours_are_purged_by_age_only();
            #[tokio::test]
            async fn event_counts_sum_the_hours_by_bucket_and_split();
            #[tokio::test]
            async fn events_are_listed_by_upload();
            #[tokio::test]
            async fn console_sessions_expire_and_are_deleted();
            #[tokio::test]
            async fn console_sessions_are_purged_once_expired();
            #[tokio::test]
            async fn console_counts_follow_uploads_pushes_and_installations();
            #[tokio::test]
            async fn installations_list_in_id_order_without_the_deleted();
            #[tokio::test]
            async fn installation_repositories_list_in_id_order_without_the_removed();
            #[tokio::test]
            async fn repositories_with_rules_are_picked_out();
            #[tokio::test]
            async fn list_filters_by_mode_and_time();
            #[tokio::test]
            async fn push_pages_list_newest_first_by_status_and_upload();
        }
    };
    (@tests [$harness:path] $($(#[$attr:meta])* async fn $name:ident();)*) => {
        $(
            $(#[$attr])*
            async fn $name() {
                $harness($crate::testsuite::Case::new(
                    ::core::stringify!($name),
                    |store| async move {
                        $crate::testsuite::$name($crate::testsuite::CaseArg::from_store(&store))
                            .await;
                    },
                ))
                .await;
            }
        )*
    };
    (@names [] $($(#[$attr:meta])* async fn $name:ident();)*) => {
        &[$(::core::stringify!($name)),*]
    };
    (@sequence [$store:ident] $($(#[$attr:meta])* async fn $name:ident();)*) => {
        $($crate::testsuite::$name($crate::testsuite::CaseArg::from_store(&$store)).await;)*
    };
}

/// The names of the cases [`store_conformance!`](crate::store_conformance) declares, in
/// its order.
pub const STORE_CASES: &[&str] = crate::store_conformance!(@cases names);

/// One case of the store conformance suite, handed by
/// [`store_conformance!`](crate::store_conformance) to a backend's harness.
pub struct Case {
    name: &'static str,
    run: Box<dyn FnOnce(Arc<dyn Store>) -> BoxFuture<'static, ()> + Send>,
}

impl Case {
    /// The case `name`, which `run` performs on a store. Called by
    /// [`store_conformance!`](crate::store_conformance).
    pub fn new<F, Fut>(name: &'static str, run: F) -> Self
    where
        F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name,
            run: Box::new(move |store| Box::pin(run(store))),
        }
    }

    /// The case's name, which is also its test's.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs the case on `store`; the future panics when the case fails. It is `'static`
    /// and `Send`, so a harness may spawn it to clean up after a failure too.
    pub fn run(self, store: Arc<dyn Store>) -> BoxFuture<'static, ()> {
        (self.run)(store)
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a case function takes: the store borrowed, or shared by cases that spawn tasks.
pub trait CaseArg<'a> {
    /// The argument for `store`.
    fn from_store(store: &'a Arc<dyn Store>) -> Self;
}

impl<'a> CaseArg<'a> for &'a dyn Store {
    fn from_store(store: &'a Arc<dyn Store>) -> Self {
        &**store
    }
}

impl CaseArg<'_> for Arc<dyn Store> {
    fn from_store(store: &Arc<dyn Store>) -> Self {
        Arc::clone(store)
    }
}

/// Runs every case of [`store_conformance!`](crate::store_conformance) in sequence on
/// `store`, stopping at the first failure. Prefer the macro, which makes each case a
/// test of its own.
pub async fn store_suite(store: Arc<dyn Store>) {
    crate::store_conformance!(@cases sequence store);
}

/// The store answers a ping.
pub async fn ping_succeeds(store: &dyn Store) {
    store.ping().await.expect("ping");
}

/// A `jti` is accepted once per issuer; the same `jti` of another issuer is distinct.
pub async fn jti_is_consumed_once(store: &dyn Store) {
    let issuer = unique("https://issuer.example");
    let jti = unique("jti");
    let exp = UnixTime(4_000_000_000);
    assert!(store.consume_jti(&issuer, &jti, exp).await.unwrap());
    assert!(!store.consume_jti(&issuer, &jti, exp).await.unwrap());
    assert!(
        !store
            .consume_jti(&issuer, &jti, exp.plus(100))
            .await
            .unwrap()
    );
    let other = unique("https://other.example");
    assert!(store.consume_jti(&other, &jti, exp).await.unwrap());
}

/// Of 16 concurrent consumers of one `jti`, exactly one wins.
pub async fn concurrent_jti_has_one_winner(store: Arc<dyn Store>) {
    let issuer = unique("https://issuer.example");
    let jti = unique("jti");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, issuer, jti) = (Arc::clone(&store), issuer.clone(), jti.clone());
            tokio::spawn(async move {
                store
                    .consume_jti(&issuer, &jti, UnixTime(4_000_000_000))
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        if task.await.expect("task").expect("consume_jti") {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "exactly one concurrent consumer must win");
}

/// Purging forgets expired entries (which may then be used again) and keeps the rest,
/// including one expiring exactly at `now`.
pub async fn purge_removes_only_expired_jtis(store: &dyn Store) {
    let issuer = unique("https://issuer.example");
    let now = UnixTime(1_000_000_000);
    let (old, edge, live) = (unique("old"), unique("edge"), unique("live"));
    assert!(
        store
            .consume_jti(&issuer, &old, now.minus(1))
            .await
            .unwrap()
    );
    assert!(store.consume_jti(&issuer, &edge, now).await.unwrap());
    assert!(
        store
            .consume_jti(&issuer, &live, now.plus(300))
            .await
            .unwrap()
    );
    let purged = store.purge_expired_jtis(now).await.unwrap();
    assert!(purged >= 1, "purged {purged}");
    assert!(
        store
            .consume_jti(&issuer, &old, now.plus(300))
            .await
            .unwrap()
    );
    assert!(!store.consume_jti(&issuer, &edge, now).await.unwrap());
    assert!(!store.consume_jti(&issuer, &live, now).await.unwrap());
}

/// What is inserted comes back unchanged, from the insert and from `get_upload`.
pub async fn insert_then_get_round_trips(store: &dyn Store) {
    let mut upload = new_upload(unique_repository_id());
    upload.status = UploadStatus::Pending;
    upload.mode = Mode::Webhook;
    upload.verified_at = None;
    upload.content_type = None;
    upload.reason = Some("waiting for workflow_run".into());
    upload.size = u64::from(u32::MAX) + 7;
    let inserted = store.insert_upload(&upload).await.unwrap();
    assert_eq!(inserted.id, upload.id);
    assert_eq!(inserted.status, UploadStatus::Pending);
    assert_eq!(inserted.mode, Mode::Webhook);
    assert_eq!(inserted.name, upload.name);
    assert_eq!(inserted.size, upload.size);
    assert_eq!(inserted.sha256, hex::encode(upload.sha256));
    assert_eq!(inserted.content_type, None);
    assert_eq!(inserted.created_at.unix_timestamp(), upload.created_at.0);
    assert_eq!(inserted.verified_at, None);
    assert_eq!(inserted.identity, upload.identity);
    assert_eq!(inserted.reason, upload.reason);

    let got = store.get_upload(&upload.id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&inserted));
    assert_eq!(upload.record(), inserted, "the record a push announces");

    let verified = new_upload(unique_repository_id());
    let record = store.insert_upload(&verified).await.unwrap();
    assert_eq!(verified.record(), record, "the record a push announces");
    assert_eq!(
        record.verified_at.map(time::OffsetDateTime::unix_timestamp),
        verified.verified_at.map(|t| t.0)
    );
    assert_eq!(record.content_type, verified.content_type);

    assert_eq!(store.get_upload(&UploadId::generate()).await.unwrap(), None);
}

/// A second insert with the same idempotency scope and key returns the first record as a
/// conflict; the same key in another repository is independent.
pub async fn idempotency_key_conflict_returns_existing(store: &dyn Store) {
    let repo = unique_repository_id();
    let key = unique("key");
    let mut first = new_upload(repo);
    first.idempotency_key = Some(key.clone());
    let stored = store.insert_upload(&first).await.unwrap();
    let scope = IdempotencyScope::new(first.mode, &first.identity);

    let mut again = new_upload(repo);
    again.idempotency_key = Some(key.clone());
    again.name = "other.sarif".into();
    match store.insert_upload(&again).await {
        Err(StoreError::Conflict(existing)) => assert_eq!(*existing, stored),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_upload(&again.id).await.unwrap(), None);
    assert_eq!(
        store.find_by_idempotency_key(&scope, &key).await.unwrap(),
        Some(stored)
    );
    assert_eq!(
        store
            .find_by_idempotency_key(&scope, "absent")
            .await
            .unwrap(),
        None
    );

    let mut elsewhere = new_upload(unique_repository_id());
    elsewhere.idempotency_key = Some(key);
    store.insert_upload(&elsewhere).await.unwrap();

    // Without a key, uploads never conflict.
    store.insert_upload(&new_upload(repo)).await.unwrap();
    store.insert_upload(&new_upload(repo)).await.unwrap();
}

/// A key is scoped to the whole identity an upload was received with (mode, issuer,
/// repository, run, attempt): the same key in the same repository under any other scope
/// neither conflicts nor is found, so a stranger's pending upload never answers a
/// verified request, nor the other way round; and a pending upload keeps its scope after
/// it is approved.
pub async fn rule_idempotency_keys_never_cross_scopes(store: &dyn Store) {
    let repo = unique_repository_id();
    let key = unique("key");
    let run = pending_run(repo);
    let mut pending = pending_upload(&run, 1_700_000_000);
    pending.identity.issuer = "unverified".into();
    pending.identity.run_id = run.run_id;
    pending.idempotency_key = Some(key.clone());
    let pending_scope = IdempotencyScope::new(pending.mode, &pending.identity);
    let stranger = store.insert_upload(&pending).await.unwrap();

    let mut verified = new_upload(repo);
    verified.identity.run_id = run.run_id;
    verified.idempotency_key = Some(key.clone());
    let verified_scope = IdempotencyScope::new(verified.mode, &verified.identity);
    assert_ne!(pending_scope, verified_scope);
    let genuine = store
        .insert_upload(&verified)
        .await
        .expect("a verified upload is not answered by a stranger's record");
    assert_ne!(genuine.id, stranger.id);
    assert_eq!(
        store
            .find_by_idempotency_key(&verified_scope, &key)
            .await
            .unwrap(),
        Some(genuine.clone())
    );
    assert_eq!(
        store
            .find_by_idempotency_key(&pending_scope, &key)
            .await
            .unwrap(),
        Some(stranger.clone())
    );

    // Each field of the scope separates: mode, issuer, run, attempt.
    let mut variants = Vec::new();
    let mut v = verified.clone();
    v.mode = Mode::Session;
    variants.push(v);
    let mut v = verified.clone();
    v.identity.issuer = "https://attacker.example".into();
    variants.push(v);
    let mut v = verified.clone();
    v.identity.run_id = RunId(unique_u64());
    variants.push(v);
    let mut v = verified.clone();
    v.identity.run_attempt = Some(2);
    variants.push(v);
    let mut v = verified.clone();
    v.identity.run_attempt = None;
    variants.push(v);
    for mut v in variants {
        let scope = IdempotencyScope::new(v.mode, &v.identity);
        assert_eq!(
            store.find_by_idempotency_key(&scope, &key).await.unwrap(),
            None,
            "{scope:?}"
        );
        v.id = UploadId::generate();
        let record = store.insert_upload(&v).await.expect("another scope");
        assert_ne!(record.id, genuine.id);
    }

    // Approval rewrites the identity, not the scope it was received with.
    let approved = identity(repo);
    assert!(
        store
            .resolve_pending(
                &stranger.id,
                UploadStatus::Verified,
                Some(&approved),
                None,
                UnixTime(1_700_000_100),
                &[],
            )
            .await
            .unwrap()
    );
    let found = store
        .find_by_idempotency_key(&pending_scope, &key)
        .await
        .unwrap()
        .expect("still found by its own scope");
    assert_eq!(found.id, stranger.id);
    assert_eq!(found.status, UploadStatus::Verified);
    assert_eq!(
        store
            .find_by_idempotency_key(&verified_scope, &key)
            .await
            .unwrap()
            .map(|r| r.id),
        Some(genuine.id)
    );
}

/// Inserting an id twice is refused and leaves the first record alone.
pub async fn duplicate_id_is_refused(store: &dyn Store) {
    let upload = new_upload(unique_repository_id());
    let stored = store.insert_upload(&upload).await.unwrap();
    let mut twin = upload.clone();
    twin.name = "twin".into();
    let err = store.insert_upload(&twin).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.get_upload(&upload.id).await.unwrap(), Some(stored));
}

/// Listing filters by status, by repository id, and by both.
pub async fn list_filters_by_status_and_repository(store: &dyn Store) {
    let (a, b) = (unique_repository_id(), unique_repository_id());
    let mut pending_a = new_upload(a);
    pending_a.status = UploadStatus::Pending;
    let verified_a = new_upload(a);
    let verified_b = new_upload(b);
    for u in [&pending_a, &verified_a, &verified_b] {
        store.insert_upload(u).await.unwrap();
    }
    let ids = |filter: ListFilter| async move {
        let (page, _) = store.list_uploads(&filter, 1000, None).await.unwrap();
        page.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };

    let only_a = ListFilter {
        repository_id: Some(a),
        ..ListFilter::default()
    };
    assert_eq!(
        ids(only_a).await,
        vec![verified_a.id.clone(), pending_a.id.clone()]
    );
    let pending_of_a = ListFilter {
        status: Some(UploadStatus::Pending),
        repository_id: Some(a),
        ..ListFilter::default()
    };
    assert_eq!(ids(pending_of_a).await, vec![pending_a.id.clone()]);
    let rejected_of_b = ListFilter {
        status: Some(UploadStatus::Rejected),
        repository_id: Some(b),
        ..ListFilter::default()
    };
    assert!(ids(rejected_of_b).await.is_empty());

    let (pending, _) = store
        .list_uploads(
            &ListFilter {
                status: Some(UploadStatus::Pending),
                ..ListFilter::default()
            },
            1000,
            None,
        )
        .await
        .unwrap();
    assert!(pending.iter().all(|r| r.status == UploadStatus::Pending));
    assert!(pending.iter().any(|r| r.id == pending_a.id));
    assert!(!pending.iter().any(|r| r.id == verified_a.id));

    let (all, _) = store
        .list_uploads(&ListFilter::default(), 1000, None)
        .await
        .unwrap();
    assert!(all.iter().any(|r| r.id == verified_b.id));
}

/// 25 records with pages of 10 come back as 10, 10, 5, newest first, no duplicates;
/// limits are clamped to at least one.
pub async fn list_paginates_newest_first(store: &dyn Store) {
    let repo = unique_repository_id();
    let mut inserted = Vec::new();
    for i in 0..25 {
        let mut upload = new_upload(repo);
        upload.created_at = UnixTime(1_700_000_000 + i);
        store.insert_upload(&upload).await.unwrap();
        inserted.push(upload.id);
    }
    let filter = ListFilter {
        repository_id: Some(repo),
        ..ListFilter::default()
    };
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let (page, next) = store
            .list_uploads(&filter, 10, cursor.as_ref())
            .await
            .unwrap();
        sizes.push(page.len());
        seen.extend(page.into_iter().map(|r| r.id));
        match next {
            // The cursor survives a round trip through its client form.
            Some(next) => cursor = Some(Cursor::decode(&next.encode()).expect("cursor")),
            None => break,
        }
        assert!(sizes.len() < 10, "pagination does not end");
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    let unique_ids: HashSet<_> = seen.iter().collect();
    assert_eq!(unique_ids.len(), 25, "no duplicates");
    let newest_first: Vec<_> = inserted.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let (one, next) = store.list_uploads(&filter, 0, None).await.unwrap();
    assert_eq!(one.len(), 1, "a zero limit is clamped to one");
    assert!(next.is_some());
    let (all, next) = store.list_uploads(&filter, u32::MAX, None).await.unwrap();
    assert_eq!(all.len(), 25);
    assert!(next.is_none());
}

/// Applies `effects` as a fresh delivery received at `received_at`, which must be new.
async fn apply(store: &dyn Store, received_at: i64, effects: Vec<WebhookEffect>) {
    let applied = store
        .apply_webhook(&webhook_delivery("installation", received_at), &effects)
        .await
        .unwrap();
    assert!(applied, "a fresh delivery is applied");
}

/// The store's view of `installation`.
fn known(installation: &Installation, deleted: bool, unsettled: bool) -> Option<KnownInstallation> {
    Some(KnownInstallation {
        installation: installation.clone(),
        deleted,
        unsettled,
    })
}

/// `installation` as of `at`, suspended or not.
fn installation_at(installation: &Installation, suspended: bool, at: i64) -> Installation {
    Installation {
        suspended,
        as_of: Some(UnixTime(at)),
        ..installation.clone()
    }
}

/// A redelivery (same delivery id) returns `false` and changes nothing, whatever its
/// effects.
pub async fn redelivery_has_no_second_effect(store: &dyn Store) {
    let inst = installation(unique_installation_id());
    let first = webhook_delivery("installation", 1_700_000_000);
    let effects = [WebhookEffect::UpsertInstallation(inst.clone())];
    assert!(store.apply_webhook(&first, &effects).await.unwrap());
    assert!(!store.apply_webhook(&first, &effects).await.unwrap());

    let mut again = first.clone();
    again.received_at = UnixTime(1_700_000_100);
    let other = [
        WebhookEffect::UpsertInstallation(installation_at(&inst, true, 1_700_000_100)),
        WebhookEffect::DeleteInstallation(inst.id),
    ];
    assert!(!store.apply_webhook(&again, &other).await.unwrap());
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        known(&inst, false, false)
    );

    // An empty or oversized id is refused rather than deduplicated with others.
    let mut empty = webhook_delivery("installation", 1_700_000_000);
    empty.id = String::new();
    let err = store.apply_webhook(&empty, &other).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    empty.id = "x".repeat(crate::MAX_WEBHOOK_DELIVERY_ID_LEN + 1);
    let err = store.apply_webhook(&empty, &other).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        known(&inst, false, false)
    );
}

/// Of 16 concurrent applications of one delivery, exactly one returns `true`, and only
/// its effects are applied.
pub async fn concurrent_webhook_deliveries_have_one_winner(store: Arc<dyn Store>) {
    let base = installation(unique_installation_id());
    let shared = webhook_delivery("installation", 1_700_000_000);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, shared) = (Arc::clone(&store), shared.clone());
            let mut inst = base.clone();
            inst.account_login = format!("login-{i}");
            tokio::spawn(async move {
                let effects = [WebhookEffect::UpsertInstallation(inst)];
                store
                    .apply_webhook(&shared, &effects)
                    .await
                    .map(|won| (i, won))
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (i, won) = task.await.expect("task").expect("apply_webhook");
        if won {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent delivery must win");
    let stored = store.get_installation(base.id).await.unwrap().unwrap();
    assert!(!stored.deleted);
    assert_eq!(
        stored.installation.account_login,
        format!("login-{}", winners[0])
    );
}

/// When an effect fails, nothing of the delivery is kept, its id included: a retry
/// applies it.
pub async fn failed_webhook_delivery_applies_nothing(store: &dyn Store) {
    let inst = installation(unique_installation_id());
    let d = webhook_delivery("installation", 1_700_000_000);
    let bad = [
        WebhookEffect::UpsertInstallation(inst.clone()),
        WebhookEffect::AddRepositories {
            installation_id: inst.id,
            // Beyond any SQL integer.
            repositories: vec![InstalledRepository {
                id: RepositoryId(u64::MAX),
                full_name: "octo-org/too-big".into(),
            }],
            as_of: None,
        },
    ];
    let err = store.apply_webhook(&d, &bad).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.get_installation(inst.id).await.unwrap(), None);

    let good = [WebhookEffect::UpsertInstallation(inst.clone())];
    assert!(store.apply_webhook(&d, &good).await.unwrap());
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        known(&inst, false, false)
    );
}

/// A repository's binding follows its installation through creation, suspension,
/// removal, re-adding and deletion, each event later than the one before; an unknown
/// repository has none.
pub async fn installation_binding_lifecycle(store: &dyn Store) {
    let inst = installation_at(
        &installation(unique_installation_id()),
        false,
        1_600_000_000,
    );
    let (repo, sibling) = (unique_repository_id(), unique_repository_id());
    let listed = |id| InstalledRepository {
        id,
        full_name: format!("octo-org/repo-{id}"),
    };
    let binding = |suspended, deleted, removed| {
        Some(RepositoryBinding {
            installation_id: inst.id,
            account_id: inst.account_id,
            suspended,
            deleted,
            removed,
            unsettled: false,
        })
    };
    assert_eq!(store.repository_binding(repo).await.unwrap(), None);
    assert_eq!(store.get_installation(inst.id).await.unwrap(), None);

    // installation.created
    apply(
        store,
        1_700_000_000,
        vec![
            WebhookEffect::UpsertInstallation(inst.clone()),
            WebhookEffect::AddRepositories {
                installation_id: inst.id,
                repositories: vec![listed(repo), listed(sibling)],
                as_of: inst.as_of,
            },
        ],
    )
    .await;
    let got = store.repository_binding(repo).await.unwrap();
    assert_eq!(got, binding(false, false, false));
    assert!(got.unwrap().is_active());
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        known(&inst, false, false)
    );

    // installation.suspend, then installation.unsuspend
    let suspended = installation_at(&inst, true, 1_600_000_010);
    apply(
        store,
        1_700_000_010,
        vec![WebhookEffect::UpsertInstallation(suspended.clone())],
    )
    .await;
    let got = store.repository_binding(repo).await.unwrap();
    assert_eq!(got, binding(true, false, false));
    assert!(got.as_ref().unwrap().is_refused());
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        known(&suspended, false, false)
    );
    apply(
        store,
        1_700_000_020,
        vec![WebhookEffect::UpsertInstallation(installation_at(
            &inst,
            false,
            1_600_000_020,
        ))],
    )
    .await;
    assert_eq!(
        store.repository_binding(repo).await.unwrap(),
        binding(false, false, false)
    );

    // installation_repositories.removed, then .added
    let remove = WebhookEffect::RemoveRepositories {
        installation_id: inst.id,
        repository_ids: vec![repo],
        as_of: Some(UnixTime(1_600_000_030)),
    };
    apply(store, 1_700_000_030, vec![remove]).await;
    let got = store.repository_binding(repo).await.unwrap();
    assert_eq!(got, binding(false, false, true));
    assert!(got.unwrap().is_refused());
    assert_eq!(
        store.repository_binding(sibling).await.unwrap(),
        binding(false, false, false)
    );
    let add = WebhookEffect::AddRepositories {
        installation_id: inst.id,
        repositories: vec![listed(repo)],
        as_of: Some(UnixTime(1_600_000_040)),
    };
    apply(store, 1_700_000_040, vec![add]).await;
    assert_eq!(
        store.repository_binding(repo).await.unwrap(),
        binding(false, false, false)
    );

    // A repository removed without ever being listed is known as removed.
    let stranger = unique_repository_id();
    let remove = WebhookEffect::RemoveRepositories {
        installation_id: inst.id,
        repository_ids: vec![stranger],
        as_of: None,
    };
    apply(store, 1_700_000_045, vec![remove]).await;
    assert_eq!(
        store.repository_binding(stranger).await.unwrap(),
        binding(false, false, true)
    );

    // installation.deleted: the row stays as a tombstone.
    apply(
        store,
        1_700_000_050,
        vec![WebhookEffect::DeleteInstallation(inst.id)],
    )
    .await;
    let got = store.repository_binding(repo).await.unwrap();
    assert_eq!(got, binding(false, true, false));
    assert!(got.unwrap().is_refused());
    let stored = store.get_installation(inst.id).await.unwrap().unwrap();
    assert!(stored.deleted);

    // An upsert updates the fields but never revives a deleted installation.
    let mut updated = installation_at(&inst, false, 1_600_000_060);
    updated.account_login = "renamed-org".into();
    updated.repository_selection = RepositorySelection::All;
    apply(
        store,
        1_700_000_060,
        vec![WebhookEffect::UpsertInstallation(updated.clone())],
    )
    .await;
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        known(&updated, true, false)
    );
    assert_eq!(
        store.repository_binding(repo).await.unwrap(),
        binding(false, true, false)
    );
}

/// Installation deliveries applied out of order: each state is ordered by its event's own
/// time, never by arrival. A late `created`, `unsuspend`, `added` or selection of every
/// repository never revives access that a later event removed; at the same second, or
/// without a time, a removal or suspension is applied at once and a relaxation leaves the
/// stricter state, unsettled, for the reader to confirm with GitHub.
pub async fn rule_late_installation_deliveries_never_revive_access(store: &dyn Store) {
    let base = installation(unique_installation_id());
    let (repo, other) = (unique_repository_id(), unique_repository_id());
    let listed = |id| InstalledRepository {
        id,
        full_name: format!("octo-org/repo-{id}"),
    };
    let at = |t| Some(UnixTime(t));
    let created = installation_at(&base, false, 100);
    let suspended = installation_at(&base, true, 200);
    let binding = || store.repository_binding(repo);

    // suspend (t=200) arrives first, then the created (t=100) it followed: still suspended.
    apply(
        store,
        1_700_000_000,
        vec![WebhookEffect::UpsertInstallation(suspended.clone())],
    )
    .await;
    apply(
        store,
        1_700_000_001,
        vec![
            WebhookEffect::UpsertInstallation(created.clone()),
            WebhookEffect::AddRepositories {
                installation_id: base.id,
                repositories: vec![listed(repo), listed(other)],
                as_of: at(100),
            },
        ],
    )
    .await;
    let got = store.get_installation(base.id).await.unwrap().unwrap();
    assert!(
        got.installation.suspended && !got.unsettled,
        "a late created does not unsuspend: {got:?}"
    );
    assert!(binding().await.unwrap().unwrap().is_refused());

    // unsuspend (t=300), then a late delivery carrying the suspended state (t=200).
    apply(
        store,
        1_700_000_002,
        vec![WebhookEffect::UpsertInstallation(installation_at(
            &base, false, 300,
        ))],
    )
    .await;
    apply(
        store,
        1_700_000_003,
        vec![WebhookEffect::UpsertInstallation(suspended.clone())],
    )
    .await;
    assert!(binding().await.unwrap().unwrap().is_active(), "unsuspended");

    // removed (t=400) arrives before the added (t=350) that preceded it: removed.
    apply(
        store,
        1_700_000_004,
        vec![WebhookEffect::RemoveRepositories {
            installation_id: base.id,
            repository_ids: vec![repo],
            as_of: at(400),
        }],
    )
    .await;
    apply(
        store,
        1_700_000_005,
        vec![WebhookEffect::AddRepositories {
            installation_id: base.id,
            repositories: vec![listed(repo)],
            as_of: at(350),
        }],
    )
    .await;
    let got = binding().await.unwrap().unwrap();
    assert!(got.removed && got.is_refused(), "a late added: {got:?}");

    // An added of the same second as the removal: the order is unknown. The removal
    // stays, unsettled; a removal of the same second again settles it at once.
    let add_now = WebhookEffect::AddRepositories {
        installation_id: base.id,
        repositories: vec![listed(repo)],
        as_of: at(400),
    };
    apply(store, 1_700_000_006, vec![add_now.clone()]).await;
    let got = binding().await.unwrap().unwrap();
    assert!(got.removed && got.unsettled && !got.is_active() && !got.is_refused());
    apply(
        store,
        1_700_000_007,
        vec![WebhookEffect::RemoveRepositories {
            installation_id: base.id,
            repository_ids: vec![repo],
            as_of: at(400),
        }],
    )
    .await;
    assert!(binding().await.unwrap().unwrap().is_refused());
    // Without a time, an added cannot be ordered either.
    apply(
        store,
        1_700_000_008,
        vec![WebhookEffect::AddRepositories {
            installation_id: base.id,
            repositories: vec![listed(repo)],
            as_of: None,
        }],
    )
    .await;
    let got = binding().await.unwrap().unwrap();
    assert!(got.removed && got.unsettled, "{got:?}");
    // A later added settles it.
    apply(
        store,
        1_700_000_009,
        vec![WebhookEffect::AddRepositories {
            installation_id: base.id,
            repositories: vec![listed(repo)],
            as_of: at(500),
        }],
    )
    .await;
    assert!(binding().await.unwrap().unwrap().is_active());

    // An unsuspend of the same second as the suspension (GitHub's unsuspend payloads can
    // carry the suspension's `updated_at`): suspended, unsettled. A suspension of that
    // second still settles at once.
    apply(
        store,
        1_700_000_010,
        vec![WebhookEffect::UpsertInstallation(installation_at(
            &base, true, 600,
        ))],
    )
    .await;
    apply(
        store,
        1_700_000_011,
        vec![WebhookEffect::UpsertInstallation(installation_at(
            &base, false, 600,
        ))],
    )
    .await;
    let got = store.get_installation(base.id).await.unwrap().unwrap();
    assert!(got.installation.suspended && got.unsettled, "{got:?}");
    let b = binding().await.unwrap().unwrap();
    assert!(b.suspended && b.unsettled && !b.is_refused());
    let sibling = store.repository_binding(other).await.unwrap().unwrap();
    assert!(
        sibling.unsettled,
        "every repository of the installation: {sibling:?}"
    );

    // Selection: a late "all" does not widen a later "selected"; the account's
    // installation then covers only the repositories it lists.
    let account = unique_owner_id();
    let mut wide = installation(unique_installation_id());
    wide.account_id = account;
    let narrow = Installation {
        repository_selection: RepositorySelection::Selected,
        as_of: at(800),
        ..wide.clone()
    };
    let all = Installation {
        repository_selection: RepositorySelection::All,
        as_of: at(700),
        ..wide.clone()
    };
    apply(
        store,
        1_700_000_012,
        vec![WebhookEffect::UpsertInstallation(narrow)],
    )
    .await;
    apply(
        store,
        1_700_000_013,
        vec![WebhookEffect::UpsertInstallation(all)],
    )
    .await;
    let got = store
        .installation_for_account(account)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.installation.repository_selection,
        RepositorySelection::Selected
    );
    assert_eq!(got.installation.as_of, at(800));

    // A deleted installation stays deleted whatever comes later, and is never unsettled.
    apply(
        store,
        1_700_000_014,
        vec![WebhookEffect::DeleteInstallation(base.id)],
    )
    .await;
    apply(
        store,
        1_700_000_015,
        vec![
            WebhookEffect::UpsertInstallation(installation_at(&base, false, 900)),
            add_now,
        ],
    )
    .await;
    let got = binding().await.unwrap().unwrap();
    assert!(got.deleted && got.is_refused(), "{got:?}");
}

/// When two installations list a repository, the binding is the active one, whichever
/// was updated last.
pub async fn binding_prefers_an_active_installation(store: &dyn Store) {
    let (old, new) = (
        installation(unique_installation_id()),
        installation(unique_installation_id()),
    );
    let repo = unique_repository_id();
    let listed = || {
        vec![InstalledRepository {
            id: repo,
            full_name: "octo-org/moved".into(),
        }]
    };
    for (inst, at) in [(&old, 1_700_000_000), (&new, 1_700_000_010)] {
        apply(
            store,
            at,
            vec![
                WebhookEffect::UpsertInstallation(inst.clone()),
                WebhookEffect::AddRepositories {
                    installation_id: inst.id,
                    repositories: listed(),
                    as_of: None,
                },
            ],
        )
        .await;
    }
    // The old installation is deleted last: still the new one is preferred.
    apply(
        store,
        1_700_000_020,
        vec![WebhookEffect::DeleteInstallation(old.id)],
    )
    .await;
    let got = store.repository_binding(repo).await.unwrap().unwrap();
    assert_eq!(got.installation_id, new.id);
    assert!(got.is_active());

    // The new one loses the repository; the deleted old one cannot come back with it.
    apply(
        store,
        1_700_000_030,
        vec![WebhookEffect::RemoveRepositories {
            installation_id: new.id,
            repository_ids: vec![repo],
            as_of: None,
        }],
    )
    .await;
    let got = store.repository_binding(repo).await.unwrap().unwrap();
    assert!(!got.is_active());
    apply(
        store,
        1_700_000_040,
        vec![WebhookEffect::UpsertInstallation(old.clone())],
    )
    .await;
    let got = store.repository_binding(repo).await.unwrap().unwrap();
    assert!(
        !got.is_active(),
        "a replayed upsert does not revive a deleted installation"
    );
}

/// An account's installation is its live one, else its latest; other accounts' are never
/// returned.
pub async fn installation_for_account_is_the_latest(store: &dyn Store) {
    let account = unique_owner_id();
    assert_eq!(store.installation_for_account(account).await.unwrap(), None);
    let mut first = installation(unique_installation_id());
    first.account_id = account;
    first.repository_selection = RepositorySelection::All;
    apply(
        store,
        1_700_000_000,
        vec![WebhookEffect::UpsertInstallation(first.clone())],
    )
    .await;
    assert_eq!(
        store.installation_for_account(account).await.unwrap(),
        known(&first, false, false)
    );
    apply(
        store,
        1_700_000_010,
        vec![WebhookEffect::DeleteInstallation(first.id)],
    )
    .await;
    assert_eq!(
        store.installation_for_account(account).await.unwrap(),
        known(&first, true, false)
    );

    let mut second = installation(unique_installation_id());
    second.account_id = account;
    apply(
        store,
        1_700_000_020,
        vec![WebhookEffect::UpsertInstallation(second.clone())],
    )
    .await;
    assert_eq!(
        store.installation_for_account(account).await.unwrap(),
        known(&second, false, false)
    );
    // A late delivery for the deleted one does not hide the live one.
    apply(
        store,
        1_700_000_025,
        vec![WebhookEffect::UpsertInstallation(first.clone())],
    )
    .await;
    assert_eq!(
        store
            .installation_for_account(account)
            .await
            .unwrap()
            .map(|k| k.installation.id),
        Some(second.id)
    );
    let elsewhere = installation(unique_installation_id());
    apply(
        store,
        1_700_000_030,
        vec![WebhookEffect::UpsertInstallation(elsewhere.clone())],
    )
    .await;
    let got = store
        .installation_for_account(account)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(got.installation.id, elsewhere.id);
}

/// A workflow run is replaced by a later `updated_at` (or, at the same one, by a later
/// status), never by an earlier one, and never from `completed` back to running;
/// attempts are kept apart.
pub async fn workflow_run_keeps_the_latest_and_never_regresses(store: &dyn Store) {
    let repo = unique_repository_id();
    let run_id = RunId(unique_u64());
    let get = |attempt| store.get_workflow_run(repo, run_id, attempt);
    let upsert = |run: &WorkflowRunRecord| {
        apply(
            store,
            run.received_at.0,
            vec![WebhookEffect::UpsertWorkflowRun(run.clone())],
        )
    };
    assert_eq!(get(1).await.unwrap(), None);

    let requested = workflow_run(repo, run_id, 1_700_000_100);
    upsert(&requested).await;
    assert_eq!(get(1).await.unwrap(), Some(requested.clone()));

    let mut in_progress = workflow_run(repo, run_id, 1_700_000_110);
    in_progress.status = "in_progress".into();
    in_progress.head_repository_id = None;
    in_progress.installation_id = None;
    in_progress.run_started_at = None;
    upsert(&in_progress).await;
    assert_eq!(get(1).await.unwrap(), Some(in_progress.clone()));

    // A stale event (earlier updated_at) is ignored.
    let mut stale = workflow_run(repo, run_id, 1_700_000_105);
    stale.status = "queued".into();
    upsert(&stale).await;
    assert_eq!(get(1).await.unwrap(), Some(in_progress.clone()));

    let mut completed = workflow_run(repo, run_id, 1_700_000_120);
    completed.status = "completed".into();
    completed.conclusion = Some("success".into());
    completed.completed_at = Some(UnixTime(1_700_000_120));
    upsert(&completed).await;
    assert_eq!(get(1).await.unwrap(), Some(completed.clone()));

    // Never back from completed, even with a later updated_at.
    let mut late = workflow_run(repo, run_id, 1_700_000_130);
    late.status = "in_progress".into();
    upsert(&late).await;
    assert_eq!(get(1).await.unwrap(), Some(completed.clone()));

    // Another attempt is another record; at equal updated_at the later status wins and
    // the earlier one does not come back.
    let mut second = workflow_run(repo, run_id, 1_700_000_200);
    second.run_attempt = 2;
    second.status = "in_progress".into();
    upsert(&second).await;
    let mut second_done = second.clone();
    second_done.status = "completed".into();
    second_done.conclusion = Some("failure".into());
    second_done.received_at = UnixTime(1_700_000_202);
    upsert(&second_done).await;
    upsert(&second).await;
    assert_eq!(get(2).await.unwrap(), Some(second_done));
    assert_eq!(get(1).await.unwrap(), Some(completed));
    assert_eq!(get(3).await.unwrap(), None);
    assert_eq!(
        store
            .get_workflow_run(unique_repository_id(), run_id, 1)
            .await
            .unwrap(),
        None
    );
}

/// Purging forgets deliveries received before the cutoff (they may then be applied
/// again) and keeps the rest, including one received exactly at the cutoff.
pub async fn purge_forgets_old_webhook_deliveries(store: &dyn Store) {
    // Far in the past, so that other tests' deliveries are never purged.
    let cutoff = 2_000;
    let (old, edge, live) = (
        webhook_delivery("ping", cutoff - 1),
        webhook_delivery("ping", cutoff),
        webhook_delivery("ping", cutoff + 1),
    );
    for d in [&old, &edge, &live] {
        assert!(store.apply_webhook(d, &[]).await.unwrap());
    }
    let purged = store
        .purge_webhook_deliveries(UnixTime(cutoff))
        .await
        .unwrap();
    assert!(purged >= 1, "purged {purged}");
    assert!(store.apply_webhook(&old, &[]).await.unwrap());
    assert!(!store.apply_webhook(&edge, &[]).await.unwrap());
    assert!(!store.apply_webhook(&live, &[]).await.unwrap());
}

/// Purging forgets workflow runs last received before the cutoff and keeps the rest,
/// including one received exactly at the cutoff.
pub async fn purge_forgets_old_workflow_runs(store: &dyn Store) {
    // Far in the past, so that other tests' runs are never purged.
    let cutoff = 3_000;
    let repo = unique_repository_id();
    let runs: Vec<WorkflowRunRecord> = [cutoff - 2, cutoff - 1, cutoff]
        .into_iter()
        .map(|t| workflow_run(repo, RunId(unique_u64()), t - 1))
        .collect();
    for run in &runs {
        apply(
            store,
            run.received_at.0,
            vec![WebhookEffect::UpsertWorkflowRun(run.clone())],
        )
        .await;
    }
    let purged = store.purge_workflow_runs(UnixTime(cutoff)).await.unwrap();
    assert!(purged >= 2, "purged {purged}");
    let get = |r: &WorkflowRunRecord| store.get_workflow_run(repo, r.run_id, 1);
    assert_eq!(get(&runs[0]).await.unwrap(), None);
    assert_eq!(get(&runs[1]).await.unwrap(), None);
    assert!(get(&runs[2]).await.unwrap().is_some());
}

/// A session grants exactly `max_uploads` uploads, each with its identity and the bytes
/// it asked for; then it is exhausted. A token hash cannot be reused.
pub async fn session_grants_up_to_max_uploads(store: &dyn Store) {
    let repo = unique_repository_id();
    let session = new_session(repo, 1_000, 1_000_000, 3, 1_000);
    store.create_session(&session).await.unwrap();
    let now = UnixTime(2_000);
    for _ in 0..3 {
        match store
            .reserve_session(&session.token_hash, now, SessionAsk::UpTo(100))
            .await
            .unwrap()
        {
            SessionUse::Granted { identity, reserved } => {
                assert_eq!(identity, session.identity);
                assert_eq!(reserved, 100);
            }
            other => panic!("expected a grant, got {other:?}"),
        }
    }
    for _ in 0..2 {
        assert_eq!(
            store
                .reserve_session(&session.token_hash, now, SessionAsk::Exactly(0))
                .await
                .unwrap(),
            SessionUse::Exhausted
        );
    }
    let record = store
        .get_session(&session.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (record.uploads_used, record.bytes_used),
        (3, 300),
        "refusals take nothing"
    );
    assert_eq!(record.max_uploads, 3);
    assert_eq!(record.identity, session.identity);
    assert_eq!(record.expires_at, session.expires_at);
    assert!(!record.revoked);

    let err = store.create_session(&session).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // Limits beyond the database's integers mean "no limit".
    let unlimited = new_session(repo, 1_000, 1_000_000, u64::MAX, u64::MAX);
    store.create_session(&unlimited).await.unwrap();
    assert!(matches!(
        store
            .reserve_session(&unlimited.token_hash, now, SessionAsk::Exactly(1 << 40))
            .await
            .unwrap(),
        SessionUse::Granted { reserved, .. } if reserved == 1 << 40
    ));
}

/// Bytes are taken when an upload is admitted, exactly or up to a cap, never beyond the
/// budget; what is given back can be taken again; counts never go below zero.
pub async fn session_bytes_are_reserved_then_released(store: &dyn Store) {
    let session = new_session(unique_repository_id(), 1_000, 1_000_000, 10, 100);
    store.create_session(&session).await.unwrap();
    let now = UnixTime(2_000);
    let hash = &session.token_hash;
    let reserve = |ask| store.reserve_session(hash, now, ask);
    let reserved = |u: SessionUse| match u {
        SessionUse::Granted { reserved, .. } => reserved,
        other => panic!("expected a grant, got {other:?}"),
    };
    let used = || async {
        let r = store.get_session(hash).await.unwrap().unwrap();
        (r.uploads_used, r.bytes_used)
    };
    assert_eq!(
        reserved(reserve(SessionAsk::Exactly(60)).await.unwrap()),
        60
    );
    assert_eq!(used().await, (1, 60));
    assert_eq!(
        reserve(SessionAsk::Exactly(41)).await.unwrap(),
        SessionUse::NoRoom { bytes_left: 40 },
        "an exact ask is all or nothing"
    );
    assert_eq!(used().await, (1, 60), "a refusal takes nothing");
    assert_eq!(
        reserved(reserve(SessionAsk::UpTo(50)).await.unwrap()),
        40,
        "an ask up to a cap takes what is left"
    );
    assert_eq!(used().await, (2, 100));
    for ask in [
        SessionAsk::UpTo(1),
        SessionAsk::UpTo(50),
        SessionAsk::Exactly(1),
    ] {
        assert_eq!(
            reserve(ask).await.unwrap(),
            SessionUse::Exhausted,
            "{ask:?}"
        );
    }
    assert_eq!(
        reserved(reserve(SessionAsk::Exactly(0)).await.unwrap()),
        0,
        "an empty body needs no byte"
    );
    assert_eq!(used().await, (3, 100));

    store.release_session(hash, 1, 30).await.unwrap();
    assert_eq!(used().await, (2, 70));
    assert_eq!(
        reserved(reserve(SessionAsk::Exactly(30)).await.unwrap()),
        30
    );
    assert_eq!(used().await, (3, 100));
    store.release_session(hash, 0, 0).await.unwrap();
    assert_eq!(used().await, (3, 100));
    store
        .release_session(hash, u64::MAX, u64::MAX)
        .await
        .unwrap();
    assert_eq!(used().await, (0, 0), "never below zero");

    // Unknown sessions are left alone.
    store.release_session("absent", 1, 5).await.unwrap();
    assert_eq!(store.get_session("absent").await.unwrap(), None);

    // Budgets beyond the database's integers: everything that fits, then nothing.
    let max = i64::MAX.unsigned_abs();
    let big = new_session(unique_repository_id(), 1_000, 1_000_000, 10, u64::MAX);
    store.create_session(&big).await.unwrap();
    let reserve_big = |ask| store.reserve_session(&big.token_hash, now, ask);
    assert_eq!(
        reserved(reserve_big(SessionAsk::Exactly(max - 1)).await.unwrap()),
        max - 1
    );
    assert_eq!(
        reserve_big(SessionAsk::Exactly(u64::MAX)).await.unwrap(),
        SessionUse::NoRoom { bytes_left: 1 }
    );
    assert_eq!(
        reserved(reserve_big(SessionAsk::UpTo(u64::MAX)).await.unwrap()),
        1
    );
    assert_eq!(
        reserve_big(SessionAsk::UpTo(u64::MAX)).await.unwrap(),
        SessionUse::Exhausted
    );
    let r = store.get_session(&big.token_hash).await.unwrap().unwrap();
    assert_eq!(r.bytes_used, max);
}

/// A session works until just before `expires_at`, then is expired, even with uploads
/// left; an exhausted session past its expiry reads as expired.
pub async fn session_expires(store: &dyn Store) {
    let session = new_session(unique_repository_id(), 1_000, 1_010, 5, 1_000);
    store.create_session(&session).await.unwrap();
    let hash = &session.token_hash;
    assert!(matches!(
        store
            .reserve_session(hash, UnixTime(1_009), SessionAsk::Exactly(1))
            .await
            .unwrap(),
        SessionUse::Granted { .. }
    ));
    for at in [1_010, 1_011, 9_999] {
        assert_eq!(
            store
                .reserve_session(hash, UnixTime(at), SessionAsk::Exactly(1))
                .await
                .unwrap(),
            SessionUse::Expired
        );
    }
    let spent = new_session(unique_repository_id(), 1_000, 1_010, 0, 1_000);
    store.create_session(&spent).await.unwrap();
    assert_eq!(
        store
            .reserve_session(&spent.token_hash, UnixTime(1_005), SessionAsk::Exactly(1))
            .await
            .unwrap(),
        SessionUse::Exhausted
    );
    assert_eq!(
        store
            .reserve_session(&spent.token_hash, UnixTime(1_010), SessionAsk::Exactly(1))
            .await
            .unwrap(),
        SessionUse::Expired
    );
}

/// A revoked session is unknown (revoking twice says so); so is a hash never stored.
pub async fn revoked_and_unknown_sessions_are_unknown(store: &dyn Store) {
    let session = new_session(unique_repository_id(), 1_000, 1_000_000, 5, 1_000);
    store.create_session(&session).await.unwrap();
    let hash = &session.token_hash;
    let now = UnixTime(2_000);
    assert!(matches!(
        store
            .reserve_session(hash, now, SessionAsk::Exactly(1))
            .await
            .unwrap(),
        SessionUse::Granted { .. }
    ));
    assert!(store.revoke_session(hash).await.unwrap());
    assert!(!store.revoke_session(hash).await.unwrap());
    assert_eq!(
        store
            .reserve_session(hash, now, SessionAsk::Exactly(1))
            .await
            .unwrap(),
        SessionUse::Unknown
    );
    // Revoked wins over expired.
    assert_eq!(
        store
            .reserve_session(hash, UnixTime(2_000_000), SessionAsk::Exactly(1))
            .await
            .unwrap(),
        SessionUse::Unknown
    );
    assert!(store.get_session(hash).await.unwrap().unwrap().revoked);

    let absent = unique("absent-session");
    assert_eq!(
        store
            .reserve_session(&absent, now, SessionAsk::Exactly(1))
            .await
            .unwrap(),
        SessionUse::Unknown
    );
    assert!(!store.revoke_session(&absent).await.unwrap());
    assert_eq!(store.get_session(&absent).await.unwrap(), None);
}

/// Concurrent reservations never take more than the budget, in bytes or in uploads: 32
/// concurrent asks of 90 bytes from 1 000 get exactly 11 grants (990 bytes), then asks up
/// to a cap share the last 10 bytes; 32 concurrent asks from a session of 10 uploads get
/// exactly 10.
pub async fn concurrent_session_uses_respect_the_limit(store: Arc<dyn Store>) {
    async fn race(
        store: &Arc<dyn Store>,
        hash: &str,
        asks: Vec<SessionAsk>,
    ) -> (Vec<u64>, Vec<SessionUse>) {
        let tasks: Vec<_> = asks
            .into_iter()
            .map(|ask| {
                let (store, hash) = (Arc::clone(store), hash.to_owned());
                tokio::spawn(
                    async move { store.reserve_session(&hash, UnixTime(2_000), ask).await },
                )
            })
            .collect();
        let (mut granted, mut refused) = (Vec::new(), Vec::new());
        for task in tasks {
            match task.await.expect("task").expect("reserve_session") {
                SessionUse::Granted { reserved, .. } => granted.push(reserved),
                other => refused.push(other),
            }
        }
        (granted, refused)
    }
    let bytes = new_session(unique_repository_id(), 1_000, 1_000_000, 100, 1_000);
    store.create_session(&bytes).await.unwrap();
    let (granted, refused) =
        race(&store, &bytes.token_hash, vec![SessionAsk::Exactly(90); 32]).await;
    assert_eq!(granted, vec![90; 11], "rule: session byte budget");
    assert!(
        refused
            .iter()
            .all(|r| matches!(r, SessionUse::NoRoom { .. })),
        "{refused:?}"
    );
    let (granted, refused) = race(&store, &bytes.token_hash, vec![SessionAsk::UpTo(90); 8]).await;
    assert_eq!(granted, vec![10], "the last bytes go to one ask");
    assert!(
        refused.iter().all(|r| *r == SessionUse::Exhausted),
        "{refused:?}"
    );
    let record = store.get_session(&bytes.token_hash).await.unwrap().unwrap();
    assert_eq!((record.uploads_used, record.bytes_used), (12, 1_000));

    let count = new_session(unique_repository_id(), 1_000, 1_000_000, 10, 1_000);
    store.create_session(&count).await.unwrap();
    let (granted, refused) =
        race(&store, &count.token_hash, vec![SessionAsk::Exactly(10); 32]).await;
    assert_eq!(granted.len(), 10, "rule: session upload count");
    assert!(
        refused.iter().all(|r| *r == SessionUse::Exhausted),
        "{refused:?}"
    );
    let record = store.get_session(&count.token_hash).await.unwrap().unwrap();
    assert_eq!((record.uploads_used, record.bytes_used), (10, 100));
}

/// Purging deletes sessions expired before the cutoff and keeps the rest, including
/// one expiring exactly at the cutoff.
pub async fn purge_forgets_expired_sessions(store: &dyn Store) {
    // Far in the past, so that other tests' sessions are never purged.
    let cutoff = 500;
    let repo = unique_repository_id();
    let old = new_session(repo, 1, cutoff - 1, 1, 1);
    let edge = new_session(repo, 1, cutoff, 1, 1);
    let live = new_session(repo, 1, cutoff + 1, 1, 1);
    for s in [&old, &edge, &live] {
        store.create_session(s).await.unwrap();
    }
    let purged = store.purge_sessions(UnixTime(cutoff)).await.unwrap();
    assert!(purged >= 1, "purged {purged}");
    assert_eq!(store.get_session(&old.token_hash).await.unwrap(), None);
    assert!(store.get_session(&edge.token_hash).await.unwrap().is_some());
    assert!(store.get_session(&live.token_hash).await.unwrap().is_some());
}

/// The push with this id, found among the newest (test pushes are created in
/// the far future, so they are the newest).
async fn find_push(store: &dyn Store, id: &str) -> Option<PushRecord> {
    store
        .list_pushes(None, crate::MAX_PAGE_SIZE)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == id)
}

/// Whether a claim at `now` (a long lease) returns push `id`.
async fn claims(store: &dyn Store, now: i64, id: &str) -> bool {
    store
        .claim_pushes(UnixTime(now), 600, crate::MAX_PAGE_SIZE)
        .await
        .unwrap()
        .iter()
        .any(|d| d.id == id)
}

/// A push enqueued with its upload is listed as pending, is claimed by one of two
/// concurrent claimers only, not again while leased, again once the lease has run out,
/// and never again once delivered.
pub async fn outbox_claims_each_push_once(store: Arc<dyn Store>) {
    let t = 4_100_000_000;
    let mut upload = new_upload(unique_repository_id());
    upload.created_at = UnixTime(t);
    let push = new_push(&upload.id, "upload.verified");
    upload.pushes = vec![push.clone()];
    store.insert_upload(&upload).await.unwrap();

    let listed = find_push(&*store, &push.id).await.unwrap();
    let want = PushRecord {
        id: push.id.clone(),
        event: push.event.clone(),
        upload_id: upload.id.to_string(),
        status: PushStatus::Pending,
        attempts: 0,
        last_error: None,
        created_at: UnixTime(t),
        next_attempt_at: UnixTime(t),
        payload: push.payload.clone(),
    };
    assert_eq!(listed, want);
    let pending = store
        .list_pushes(Some(PushStatus::Pending), crate::MAX_PAGE_SIZE)
        .await
        .unwrap();
    assert!(pending.iter().all(|d| d.status == PushStatus::Pending));
    assert!(pending.iter().any(|d| d.id == push.id));

    assert!(!claims(&*store, t - 1, &push.id).await, "not yet due");
    assert!(
        store
            .claim_pushes(UnixTime(t), 600, 0)
            .await
            .unwrap()
            .is_empty(),
        "a zero limit claims nothing"
    );

    let claim = |store: Arc<dyn Store>| async move {
        store
            .claim_pushes(UnixTime(t), 60, crate::MAX_PAGE_SIZE)
            .await
            .unwrap()
    };
    let (a, b) = tokio::join!(claim(Arc::clone(&store)), claim(Arc::clone(&store)));
    let got: Vec<_> = a.iter().chain(&b).filter(|d| d.id == push.id).collect();
    assert_eq!(got.len(), 1, "exactly one claimer gets it");
    assert_eq!(*got[0], want, "a claim changes nothing visible");

    assert!(!claims(&*store, t, &push.id).await, "leased");
    assert!(!claims(&*store, t + 60, &push.id).await, "lease ends after");
    assert!(claims(&*store, t + 61, &push.id).await, "lease ran out");

    store
        .complete_push(&push.id, UnixTime(t + 62))
        .await
        .unwrap();
    let done = find_push(&*store, &push.id).await.unwrap();
    assert_eq!(done.status, PushStatus::Delivered);
    assert_eq!(done.attempts, 1);
    assert!(!claims(&*store, t + 100_000, &push.id).await);
    // Retrying a delivered push changes nothing.
    let again = store
        .retry_push(&push.id, UnixTime(t + 100_000))
        .await
        .unwrap();
    assert_eq!(again, Some(done));
}

/// A failed attempt with a next time keeps the push pending until then; without
/// one it fails for good (listed as failed) until a manual retry makes it due again.
pub async fn outbox_failures_retry_and_give_up(store: &dyn Store) {
    let t = 4_200_000_000;
    let mut upload = new_upload(unique_repository_id());
    upload.created_at = UnixTime(t);
    let push = new_push(&upload.id, "upload.verified");
    upload.pushes = vec![push.clone()];
    store.insert_upload(&upload).await.unwrap();
    let id = push.id.as_str();

    assert!(claims(store, t, id).await);
    let long_error = "é".repeat(crate::MAX_PUSH_ERROR_CHARS + 100);
    store
        .fail_push(id, &long_error, Some(UnixTime(t + 100)), UnixTime(t + 1))
        .await
        .unwrap();
    let failed_once = find_push(store, id).await.unwrap();
    assert_eq!(failed_once.status, PushStatus::Pending);
    assert_eq!(failed_once.attempts, 1);
    assert_eq!(failed_once.next_attempt_at, UnixTime(t + 100));
    let kept = failed_once.last_error.unwrap();
    assert_eq!(kept.chars().count(), crate::MAX_PUSH_ERROR_CHARS);
    assert!(long_error.starts_with(&kept));

    assert!(!claims(store, t + 99, id).await, "not before its next time");
    assert!(
        claims(store, t + 100, id).await,
        "the failure ended the lease"
    );
    store
        .fail_push(id, "HTTP 500", None, UnixTime(t + 101))
        .await
        .unwrap();
    let failed = find_push(store, id).await.unwrap();
    assert_eq!(failed.status, PushStatus::Failed);
    assert_eq!(failed.attempts, 2);
    assert_eq!(failed.last_error.as_deref(), Some("HTTP 500"));
    let listed = store
        .list_pushes(Some(PushStatus::Failed), crate::MAX_PAGE_SIZE)
        .await
        .unwrap();
    assert!(listed.iter().all(|d| d.status == PushStatus::Failed));
    assert!(listed.iter().any(|d| d.id == id));
    assert!(!claims(store, t + 100_000, id).await, "failed is final");

    let retried = store
        .retry_push(id, UnixTime(t + 200_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retried.status, PushStatus::Pending);
    assert_eq!(retried.attempts, 2, "a retry keeps the count");
    assert_eq!(retried.next_attempt_at, UnixTime(t + 200_000));
    assert!(!claims(store, t + 199_999, id).await);
    assert!(claims(store, t + 200_000, id).await);
    store
        .complete_push(id, UnixTime(t + 200_001))
        .await
        .unwrap();
    let done = find_push(store, id).await.unwrap();
    assert_eq!((done.status, done.attempts), (PushStatus::Delivered, 3));

    assert_eq!(
        store
            .retry_push(&unique("absent"), UnixTime(t))
            .await
            .unwrap(),
        None
    );
    // Listing is newest first and honours its limit.
    let newest = store.list_pushes(None, 2).await.unwrap();
    assert!(newest.len() <= 2);
    assert!(
        newest
            .windows(2)
            .all(|w| (w[0].created_at.0, &w[0].id) >= (w[1].created_at.0, &w[1].id))
    );
    assert_eq!(store.list_pushes(None, 0).await.unwrap().len(), 1);
}

/// Pushes share their upload's fate: an idempotency conflict enqueues nothing, and
/// a push that cannot be stored (a duplicate id) stores no upload either.
pub async fn outbox_rolls_back_with_the_upload(store: &dyn Store) {
    let t = 4_300_000_000;
    let repo = unique_repository_id();
    let key = unique("key");
    let mut first = new_upload(repo);
    first.created_at = UnixTime(t);
    first.idempotency_key = Some(key.clone());
    let kept = new_push(&first.id, "upload.verified");
    first.pushes = vec![kept.clone()];
    store.insert_upload(&first).await.unwrap();

    let mut again = new_upload(repo);
    again.created_at = UnixTime(t);
    again.idempotency_key = Some(key);
    let dropped = new_push(&again.id, "upload.verified");
    again.pushes = vec![dropped.clone()];
    assert!(matches!(
        store.insert_upload(&again).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(find_push(store, &kept.id).await.is_some());
    assert_eq!(
        store.retry_push(&dropped.id, UnixTime(t)).await.unwrap(),
        None,
        "the conflicting upload enqueued nothing"
    );

    let mut clash = new_upload(unique_repository_id());
    clash.created_at = UnixTime(t);
    let fresh = new_push(&clash.id, "upload.verified");
    clash.pushes = vec![fresh.clone(), kept.clone()];
    let err = store.insert_upload(&clash).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.get_upload(&clash.id).await.unwrap(), None);
    assert_eq!(
        store.retry_push(&fresh.id, UnixTime(t)).await.unwrap(),
        None
    );
    let original = find_push(store, &kept.id).await.unwrap();
    assert_eq!(original.upload_id, first.id.to_string());
}

/// 8 concurrent claimers over 50 due pushes: each push is claimed exactly once.
pub async fn concurrent_claimers_share_the_outbox(store: Arc<dyn Store>) {
    let t = 4_400_000_000;
    let mut ids = HashSet::new();
    for _ in 0..5 {
        let mut upload = new_upload(unique_repository_id());
        upload.created_at = UnixTime(t);
        upload.pushes = (0..10)
            .map(|_| new_push(&upload.id, "upload.verified"))
            .collect();
        ids.extend(upload.pushes.iter().map(|d| d.id.clone()));
        store.insert_upload(&upload).await.unwrap();
    }
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store
                        .claim_pushes(UnixTime(t), 600, 3)
                        .await
                        .expect("claim_pushes");
                    assert!(batch.len() <= 3, "the limit holds");
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|d| d.id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.expect("task"));
    }
    let ours: Vec<_> = claimed.iter().filter(|id| ids.contains(*id)).collect();
    assert_eq!(ours.len(), 50, "no delivery is claimed twice or missed");
    let distinct: HashSet<_> = ours.into_iter().collect();
    assert_eq!(distinct.len(), 50);
}

/// Pending uploads are found by the run they claim (only pending ones, only that
/// attempt); resolving one applies once, with its pushes, and a second resolution
/// changes nothing.
pub async fn pending_uploads_correlate_and_resolve_once(store: &dyn Store) {
    let t = 4_500_000_000;
    let repo = unique_repository_id();
    let run = pending_run(repo);
    let mut other_sha = run.clone();
    other_sha.head_sha = "0".repeat(40);
    let mut attempt_2 = run.clone();
    attempt_2.run_attempt = 2;
    let a = pending_upload(&run, t);
    let b = pending_upload(&other_sha, t);
    let c = pending_upload(&attempt_2, t);
    let mut verified = pending_upload(&run, t);
    verified.status = UploadStatus::Verified;
    for u in [&a, &b, &c, &verified] {
        store.insert_upload(u).await.unwrap();
    }
    let found = store
        .pending_uploads_for_run(repo, run.run_id, 1)
        .await
        .unwrap();
    let got: Vec<_> = found
        .iter()
        .map(|(r, p)| (r.id.clone(), p.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (a.id.clone(), run.clone()),
            (b.id.clone(), other_sha.clone())
        ]
    );
    assert_eq!(found[0].0.status, UploadStatus::Pending);
    assert_eq!(
        store
            .pending_uploads_for_run(repo, run.run_id, 2)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .pending_uploads_for_run(unique_repository_id(), run.run_id, 1)
            .await
            .unwrap()
            .is_empty()
    );

    // Approve `a` with the identity the webhook vouches for.
    let mut vouched = identity(repo);
    vouched.actor = Some("webhook-actor".into());
    let first = new_push(&a.id, "upload.verified");
    let now = UnixTime(t + 10);
    assert!(
        store
            .resolve_pending(
                &a.id,
                UploadStatus::Verified,
                Some(&vouched),
                None,
                now,
                std::slice::from_ref(&first),
            )
            .await
            .unwrap()
    );
    let record = store.get_upload(&a.id).await.unwrap().unwrap();
    assert_eq!(record.status, UploadStatus::Verified);
    assert_eq!(record.identity, vouched);
    assert_eq!(record.reason, None);
    assert_eq!(
        record.verified_at.map(time::OffsetDateTime::unix_timestamp),
        Some(now.0)
    );
    let enqueued = find_push(store, &first.id).await.unwrap();
    assert_eq!(
        (
            enqueued.status,
            enqueued.created_at,
            enqueued.next_attempt_at
        ),
        (PushStatus::Pending, now, now)
    );

    // Once resolved: no second effect, no second push.
    let second = new_push(&a.id, "upload.rejected");
    assert!(
        !store
            .resolve_pending(
                &a.id,
                UploadStatus::Rejected,
                None,
                Some("late"),
                UnixTime(t + 20),
                std::slice::from_ref(&second),
            )
            .await
            .unwrap()
    );
    assert_eq!(store.get_upload(&a.id).await.unwrap(), Some(record));
    assert_eq!(store.retry_push(&second.id, now).await.unwrap(), None);

    // Reject `b` (its sha does not match): the identity stays, no verification time.
    assert!(
        store
            .resolve_pending(
                &b.id,
                UploadStatus::Rejected,
                None,
                Some("head_sha mismatch"),
                UnixTime(t + 30),
                &[],
            )
            .await
            .unwrap()
    );
    let rejected = store.get_upload(&b.id).await.unwrap().unwrap();
    assert_eq!(rejected.status, UploadStatus::Rejected);
    assert_eq!(rejected.identity, b.identity);
    assert_eq!(rejected.reason.as_deref(), Some("head_sha mismatch"));
    assert_eq!(rejected.verified_at, None);
    assert!(
        store
            .pending_uploads_for_run(repo, run.run_id, 1)
            .await
            .unwrap()
            .is_empty()
    );

    // A verified upload is not pending; an unknown one does not exist.
    for id in [&verified.id, &UploadId::generate()] {
        assert!(
            !store
                .resolve_pending(id, UploadStatus::Rejected, None, None, now, &[])
                .await
                .unwrap()
        );
    }
    let err = store
        .resolve_pending(&c.id, UploadStatus::Pending, None, None, now, &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(
        store.get_upload(&c.id).await.unwrap().unwrap().status,
        UploadStatus::Pending
    );
}

/// Of 16 concurrent resolutions of one pending upload, exactly one applies, and only
/// its push is enqueued.
pub async fn concurrent_resolutions_have_one_winner(store: Arc<dyn Store>) {
    let t = 4_600_000_000;
    let upload = pending_upload(&pending_run(unique_repository_id()), t);
    store.insert_upload(&upload).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            let id = upload.id.clone();
            let push = new_push(&id, "upload.verified");
            tokio::spawn(async move {
                let status = if i % 2 == 0 {
                    UploadStatus::Verified
                } else {
                    UploadStatus::Rejected
                };
                let won = store
                    .resolve_pending(
                        &id,
                        status,
                        None,
                        None,
                        UnixTime(t + 1),
                        std::slice::from_ref(&push),
                    )
                    .await
                    .expect("resolve_pending");
                (won, status, push.id)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for task in tasks {
        let (won, status, push) = task.await.expect("task");
        if won {
            winners.push((status, push));
        } else {
            losers.push(push);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one resolution applies");
    let (status, push) = &winners[0];
    assert_eq!(
        store.get_upload(&upload.id).await.unwrap().unwrap().status,
        *status
    );
    assert!(find_push(&*store, push).await.is_some());
    for push in losers {
        assert!(find_push(&*store, &push).await.is_none());
    }
}

/// Pending uploads expire once (resolved as expired, as the sweeper does), others stay
/// pending; rejected and expired uploads' blobs are listed for deletion until marked
/// deleted.
pub async fn expire_pending_and_blobs_to_delete(store: &dyn Store) {
    // Far in the past, so that other tests' pending uploads never expire here.
    let cutoff = 3_000;
    let run = pending_run(unique_repository_id());
    let old: Vec<_> = (0..3)
        .map(|i| pending_upload(&run, cutoff - 10 + i))
        .collect();
    let edge = pending_upload(&run, cutoff);
    for u in old.iter().chain([&edge]) {
        store.insert_upload(u).await.unwrap();
    }
    let old_ids: Vec<_> = old.iter().map(|u| u.id.clone()).collect();
    for id in &old_ids {
        for first in [true, false] {
            let changed = store
                .resolve_pending(
                    id,
                    UploadStatus::Expired,
                    None,
                    Some(crate::PENDING_EXPIRED_REASON),
                    UnixTime(cutoff + 100),
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(changed, first, "{id} expires once");
        }
        let record = store.get_upload(id).await.unwrap().unwrap();
        assert_eq!(record.status, UploadStatus::Expired);
        assert_eq!(
            record.reason.as_deref(),
            Some(crate::PENDING_EXPIRED_REASON)
        );
        assert!(record.verified_at.is_none());
    }
    assert_eq!(
        store.get_upload(&edge.id).await.unwrap().unwrap().status,
        UploadStatus::Pending
    );

    // An expired upload cannot be resolved any more.
    assert!(
        !store
            .resolve_pending(
                &old_ids[0],
                UploadStatus::Verified,
                None,
                None,
                UnixTime(cutoff),
                &[],
            )
            .await
            .unwrap()
    );

    let rejected = pending_upload(&run, cutoff + 1);
    store.insert_upload(&rejected).await.unwrap();
    assert!(
        store
            .resolve_pending(
                &rejected.id,
                UploadStatus::Rejected,
                None,
                Some("policy"),
                UnixTime(cutoff + 2),
                &[],
            )
            .await
            .unwrap()
    );
    let verified = new_upload(unique_repository_id());
    store.insert_upload(&verified).await.unwrap();

    let listed = store.blobs_to_delete(crate::MAX_PAGE_SIZE).await.unwrap();
    for id in old_ids.iter().chain([&rejected.id]) {
        assert!(listed.contains(id), "{id} is listed");
    }
    assert!(!listed.contains(&edge.id), "pending keeps its blob");
    assert!(!listed.contains(&verified.id), "verified keeps its blob");
    assert_eq!(store.blobs_to_delete(0).await.unwrap().len(), 1);

    for id in old_ids.iter().chain([&rejected.id]) {
        store.mark_blob_deleted(id).await.unwrap();
    }
    store
        .mark_blob_deleted(&UploadId::generate())
        .await
        .unwrap();
    let listed = store.blobs_to_delete(crate::MAX_PAGE_SIZE).await.unwrap();
    for id in old_ids.iter().chain([&rejected.id]) {
        assert!(!listed.contains(id), "{id} is no longer listed");
    }
    // The records stay.
    assert_eq!(
        store
            .get_upload(&rejected.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        UploadStatus::Rejected
    );
}

/// Pending usage counts a repository's pending uploads and bytes (by the run they
/// claim); the total counts every repository's; a run's count includes every status.
pub async fn pending_quotas_count_uploads(store: &dyn Store) {
    let t = 4_700_000_000;
    let repo = unique_repository_id();
    assert_eq!(store.pending_usage(repo).await.unwrap(), (0, 0));
    let total_before = store.pending_total().await.unwrap();

    let run = pending_run(repo);
    let mut attempt_2 = run.clone();
    attempt_2.run_attempt = 2;
    let mut small = pending_upload(&run, t);
    small.size = 10;
    let mut large = pending_upload(&attempt_2, t);
    large.size = 20;
    let mut verified = pending_upload(&run, t);
    verified.status = UploadStatus::Verified;
    verified.size = 1_000;
    // Another repository's pending upload counts in the total only.
    let mut elsewhere = pending_upload(&pending_run(unique_repository_id()), t);
    elsewhere.size = 5;
    for u in [&small, &large, &verified, &elsewhere] {
        store.insert_upload(u).await.unwrap();
    }
    assert_eq!(store.pending_usage(repo).await.unwrap(), (2, 30));
    let total = store.pending_total().await.unwrap();
    assert_eq!(
        (total.0 - total_before.0, total.1 - total_before.1),
        (3, 35)
    );
    assert_eq!(store.run_upload_count(repo, run.run_id).await.unwrap(), 3);

    assert!(
        store
            .resolve_pending(
                &small.id,
                UploadStatus::Rejected,
                None,
                None,
                UnixTime(t + 1),
                &[],
            )
            .await
            .unwrap()
    );
    assert_eq!(store.pending_usage(repo).await.unwrap(), (1, 20));
    let total = store.pending_total().await.unwrap();
    assert_eq!(
        (total.0 - total_before.0, total.1 - total_before.1),
        (2, 25)
    );
    assert_eq!(
        store.run_upload_count(repo, run.run_id).await.unwrap(),
        3,
        "every status counts"
    );
    assert_eq!(
        store
            .run_upload_count(repo, RunId(unique_u64()))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .run_upload_count(unique_repository_id(), run.run_id)
            .await
            .unwrap(),
        0
    );
}

/// Quotas that never refuse, for tests that look at one quota only.
#[must_use]
pub fn roomy_limits() -> PendingLimits {
    PendingLimits {
        max_uploads_per_run: u64::MAX,
        max_pending_bytes_per_repository: u64::MAX >> 2,
        max_pending_uploads: u64::MAX,
        max_pending_bytes: u64::MAX >> 2,
    }
}

/// A reservation of `declared` bytes (or of a body of unknown length, up to 1 MiB)
/// claiming `run`, taken at `at` and expiring an hour later.
#[must_use]
pub fn reservation(
    run: &PendingRun,
    declared: Option<u64>,
    limits: PendingLimits,
    at: i64,
) -> PendingReservation {
    PendingReservation {
        id: ReservationId::generate(),
        claim: run.clone(),
        declared_bytes: declared,
        max_bytes: 1024 * 1024,
        limits,
        countable: None,
        created_at: UnixTime(at),
        expires_at: UnixTime(at + 3600),
    }
}

/// 20 concurrent reservations of 900 bytes against 1000 pending bytes per repository:
/// exactly one is granted, and once consumed the repository holds 900 bytes, not more.
/// Then 20 concurrent bodies of unknown length share the 1000 bytes left in a fresh
/// repository without going over.
pub async fn rule_parallel_pending_reservations_never_exceed_the_quotas(store: Arc<dyn Store>) {
    let t = 5_000_000_000;
    let repo = unique_repository_id();
    let limits = PendingLimits {
        max_pending_bytes_per_repository: 1000,
        ..roomy_limits()
    };
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            let r = reservation(&pending_run(repo), Some(900), limits, t);
            tokio::spawn(async move { (store.reserve_pending(&r).await, r) })
        })
        .collect();
    let mut granted = Vec::new();
    for task in tasks {
        let (outcome, r) = task.await.expect("task");
        match outcome.expect("reserve_pending") {
            Reserved::Granted { bytes } => {
                assert_eq!(bytes, 900);
                granted.push(r);
            }
            Reserved::RepositoryFull { pending_bytes } => assert_eq!(pending_bytes, 900),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(granted.len(), 1, "one 900-byte body fits in 1000 bytes");
    let r = &granted[0];
    let mut upload = pending_upload(&r.claim, t);
    upload.size = 900;
    upload.pending_reservation = Some(r.id.clone());
    store.insert_upload(&upload).await.unwrap();
    assert_eq!(store.pending_usage(repo).await.unwrap(), (1, 900));
    let more = reservation(&pending_run(repo), Some(101), limits, t);
    assert_eq!(
        store.reserve_pending(&more).await.unwrap(),
        Reserved::RepositoryFull { pending_bytes: 900 },
        "the upload's 900 bytes count once the reservation is consumed"
    );

    // Bodies of unknown length: each takes what is left (at most max_bytes).
    let fresh = unique_repository_id();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            let mut r = reservation(&pending_run(fresh), None, limits, t);
            r.max_bytes = 300;
            tokio::spawn(async move { store.reserve_pending(&r).await })
        })
        .collect();
    let mut reserved = 0;
    for task in tasks {
        match task.await.expect("task").expect("reserve_pending") {
            Reserved::Granted { bytes } => {
                assert!((1..=300).contains(&bytes), "{bytes}");
                reserved += bytes;
            }
            Reserved::RepositoryFull { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(reserved, 1000, "300 + 300 + 300 + 100, never more");
}

/// A reservation counts in every pending sum until it is consumed by an insert,
/// refunded, or expires; overall uploads and bytes are bounded like a repository's.
pub async fn pending_reservations_are_consumed_refunded_or_expire(store: &dyn Store) {
    let t = 5_100_000_000;
    let repo = unique_repository_id();
    let run = pending_run(repo);
    let (uploads, bytes) = store.pending_total().await.unwrap();
    let limits = PendingLimits {
        max_uploads_per_run: 3,
        max_pending_bytes_per_repository: 100,
        max_pending_uploads: uploads + 3,
        max_pending_bytes: bytes + 150,
    };
    let a = reservation(&run, Some(60), limits, t);
    assert_eq!(
        store.reserve_pending(&a).await.unwrap(),
        Reserved::Granted { bytes: 60 }
    );
    // Unknown length: what is left of the repository's 100 bytes.
    let b = reservation(&run, None, limits, t);
    assert_eq!(
        store.reserve_pending(&b).await.unwrap(),
        Reserved::Granted { bytes: 40 }
    );
    let c = reservation(&run, Some(1), limits, t);
    assert_eq!(
        store.reserve_pending(&c).await.unwrap(),
        Reserved::RepositoryFull { pending_bytes: 100 }
    );
    // A refund makes room again; refunding twice, or something unknown, does nothing.
    store.release_pending(&b.id).await.unwrap();
    let mut same_id = reservation(&run, Some(1), limits, t);
    same_id.id = a.id.clone();
    assert!(matches!(
        store.reserve_pending(&same_id).await,
        Err(StoreError::Invalid(_))
    ));
    store.release_pending(&b.id).await.unwrap();
    store
        .release_pending(&ReservationId::generate())
        .await
        .unwrap();
    let d = reservation(&run, Some(40), limits, t);
    assert_eq!(
        store.reserve_pending(&d).await.unwrap(),
        Reserved::Granted { bytes: 40 }
    );
    // The attempt now has two live reservations; a third claim of it is one too many
    // once an upload of it exists.
    let mut upload = pending_upload(&run, t);
    upload.size = 10;
    upload.pending_reservation = Some(d.id.clone());
    store.insert_upload(&upload).await.unwrap();
    assert_eq!(store.pending_usage(repo).await.unwrap(), (1, 10));
    let e = reservation(&run, Some(1), limits, t);
    assert_eq!(
        store.reserve_pending(&e).await.unwrap(),
        Reserved::Granted { bytes: 1 }
    );
    let f = reservation(&run, Some(1), limits, t);
    assert_eq!(
        store.reserve_pending(&f).await.unwrap(),
        Reserved::RunFull { count: 3 }
    );
    // Overall: three uploads at once (a, the upload, e), then 150 bytes.
    let elsewhere = reservation(&pending_run(unique_repository_id()), Some(1), limits, t);
    assert_eq!(
        store.reserve_pending(&elsewhere).await.unwrap(),
        Reserved::TooManyUploads
    );
    store.release_pending(&e.id).await.unwrap();
    let big = reservation(&pending_run(unique_repository_id()), Some(81), limits, t);
    assert_eq!(
        store.reserve_pending(&big).await.unwrap(),
        Reserved::TooManyBytes,
        "60 + 10 + 81 > 150"
    );
    // Once expired (a crash while reading the body), a reservation stops counting.
    let later = reservation(&run, Some(90), limits, a.expires_at.0);
    assert_eq!(
        store.reserve_pending(&later).await.unwrap(),
        Reserved::Granted { bytes: 90 }
    );
    store.release_pending(&later.id).await.unwrap();
    assert_eq!(
        store.pending_total().await.unwrap(),
        (uploads + 1, bytes + 10)
    );
}

/// The per-attempt quota counts only uploads that could still be approved: pending or
/// verified, of that attempt, naming the run's commit, received since the attempt
/// started (when those are known); rejected uploads and other attempts never count.
pub async fn run_quota_counts_only_claims_that_could_be_approved(store: &dyn Store) {
    let t = 5_200_000_000;
    let run = pending_run(unique_repository_id());
    let mut wrong_sha = run.clone();
    wrong_sha.head_sha = "1".repeat(40);
    let mut attempt_2 = run.clone();
    attempt_2.run_attempt = 2;
    let mut uploads = vec![
        pending_upload(&wrong_sha, t),
        pending_upload(&wrong_sha, t),
        pending_upload(&attempt_2, t),
        pending_upload(&run, t - 100),
        pending_upload(&run, t),
    ];
    let mut verified = pending_upload(&run, t);
    verified.status = UploadStatus::Verified;
    let rejected = pending_upload(&run, t);
    uploads.push(verified);
    uploads.push(rejected.clone());
    for u in &uploads {
        store.insert_upload(u).await.unwrap();
    }
    assert!(
        store
            .resolve_pending(
                &rejected.id,
                UploadStatus::Rejected,
                None,
                None,
                UnixTime(t),
                &[]
            )
            .await
            .unwrap()
    );
    let limits = PendingLimits {
        max_uploads_per_run: 3,
        ..roomy_limits()
    };
    // The run unknown: every pending or verified claim of the attempt counts (5).
    let unknown = reservation(&run, Some(1), limits, t);
    assert_eq!(
        store.reserve_pending(&unknown).await.unwrap(),
        Reserved::RunFull { count: 5 }
    );
    // The run known: the commit narrows it to 3, the attempt's start to 2.
    let mut by_commit = reservation(&run, Some(1), limits, t);
    by_commit.countable = Some(CountableClaims {
        head_sha: run.head_sha.clone(),
        not_before: None,
    });
    assert_eq!(
        store.reserve_pending(&by_commit).await.unwrap(),
        Reserved::RunFull { count: 3 }
    );
    let mut since_start = by_commit.clone();
    since_start.id = ReservationId::generate();
    since_start.countable = Some(CountableClaims {
        head_sha: run.head_sha.clone(),
        not_before: Some(UnixTime(t - 50)),
    });
    assert_eq!(
        store.reserve_pending(&since_start).await.unwrap(),
        Reserved::Granted { bytes: 1 }
    );
    // That reservation counts too: a third is one too many.
    let mut third = since_start.clone();
    third.id = ReservationId::generate();
    assert_eq!(
        store.reserve_pending(&third).await.unwrap(),
        Reserved::RunFull { count: 3 }
    );
    store.release_pending(&since_start.id).await.unwrap();
}

/// The recorded attempts of a run come highest first, and only that run's.
pub async fn workflow_run_attempts_list_the_highest_first(store: &dyn Store) {
    let repo = unique_repository_id();
    let run_id = RunId(unique_u64());
    let mut effects = Vec::new();
    for attempt in [2, 1, 3] {
        let mut run = workflow_run(repo, run_id, 1_700_000_000 + i64::from(attempt));
        run.run_attempt = attempt;
        effects.push(WebhookEffect::UpsertWorkflowRun(run));
    }
    let mut other = workflow_run(repo, RunId(unique_u64()), 1_700_000_000);
    other.run_attempt = 9;
    effects.push(WebhookEffect::UpsertWorkflowRun(other));
    apply(store, 1_700_000_010, effects).await;
    let attempts: Vec<u32> = store
        .workflow_run_attempts(repo, run_id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.run_attempt)
        .collect();
    assert_eq!(attempts, [3, 2, 1]);
    let first = &store.workflow_run_attempts(repo, run_id).await.unwrap()[2];
    assert_eq!(first.run_started_at, Some(UnixTime(1_700_000_001)));
    assert!(
        store
            .workflow_run_attempts(unique_repository_id(), run_id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// An upload of any status, blob deleted or not, has a record: only ids that no record
/// has are reported, in the order given, however many are asked about at once.
pub async fn ids_without_upload_counts_every_status(store: &dyn Store) {
    let repo = unique_repository_id();
    let verified = new_upload(repo);
    store.insert_upload(&verified).await.unwrap();
    let run = pending_run(repo);
    let pending = pending_upload(&run, 1_700_000_000);
    let rejected = pending_upload(&run, 1_700_000_000);
    let expired = pending_upload(&run, 1_700_000_000);
    let swept = pending_upload(&run, 1_700_000_000);
    for upload in [&pending, &rejected, &expired, &swept] {
        store.insert_upload(upload).await.unwrap();
    }
    for (upload, status) in [
        (&rejected, UploadStatus::Rejected),
        (&expired, UploadStatus::Expired),
        (&swept, UploadStatus::Rejected),
    ] {
        let now = UnixTime(1_700_000_100);
        let resolved = store
            .resolve_pending(&upload.id, status, None, Some("policy"), now, &[])
            .await
            .unwrap();
        assert!(resolved);
    }
    store.mark_blob_deleted(&swept.id).await.unwrap();

    let known: Vec<UploadId> = [&verified, &pending, &rejected, &expired, &swept]
        .iter()
        .map(|u| u.id.clone())
        .collect();
    assert!(store.ids_without_upload(&known).await.unwrap().is_empty());
    assert!(store.ids_without_upload(&[]).await.unwrap().is_empty());

    let (a, b) = (UploadId::generate(), UploadId::generate());
    let odd = [
        UploadId("not-an-id".into()),
        UploadId("'; DROP TABLE uploads; --".into()),
        UploadId(format!("\"{}", verified.id)),
        UploadId(verified.id.as_str().to_uppercase()),
    ];
    let mut asked = vec![
        b.clone(),
        verified.id.clone(),
        a.clone(),
        pending.id.clone(),
    ];
    asked.extend(odd.iter().cloned());
    asked.extend([rejected.id.clone(), b.clone()]);
    let mut want = vec![b.clone(), a.clone()];
    want.extend(odd.iter().cloned());
    want.push(b.clone());
    assert_eq!(store.ids_without_upload(&asked).await.unwrap(), want);

    // More ids than one statement takes, known ones among them.
    let mut many: Vec<UploadId> = (0..2_500).map(|_| UploadId::generate()).collect();
    let unknown = many.clone();
    for (i, id) in known.iter().enumerate() {
        many.insert(i * 500, id.clone());
    }
    assert_eq!(store.ids_without_upload(&many).await.unwrap(), unknown);
    assert!(store.get_upload(&verified.id).await.unwrap().is_some());
}

/// Reads a whole range of a blob into memory (test sizes only).
///
/// # Errors
/// The error of [`BlobStore::read`] or of the stream.
pub async fn read_to_vec(
    store: &dyn BlobStore,
    id: &UploadId,
    offset: u64,
    len: Option<u64>,
) -> Result<Vec<u8>, BlobError> {
    let mut stream = store.read(id, offset, len).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Writes `chunks` and commits them under a fresh id.
///
/// # Errors
/// The error of the failing [`BlobStore`] call.
pub async fn put(store: &dyn BlobStore, chunks: &[&[u8]]) -> Result<UploadId, BlobError> {
    let mut writer = store.begin().await?;
    for chunk in chunks {
        writer.write(chunk).await?;
    }
    let id = UploadId::generate();
    writer.commit(&id).await?;
    Ok(id)
}

/// Runs every [`BlobStore`] test.
pub async fn blob_suite(store: Arc<dyn BlobStore>) {
    store.ping().await.expect("ping");
    blob_round_trips_with_ranges(&*store).await;
    uncommitted_blobs_are_invisible(&*store).await;
    missing_blobs_are_not_found(&*store).await;
    delete_removes_a_blob(&*store).await;
    interleaved_writers_stay_apart(&*store).await;
    large_blob_streams_through(&*store, 20 * 1024 * 1024).await;
    committed_blobs_list_in_id_order(&*store).await;
    namespace_marker_is_written_once(&*store).await;
}

/// The namespace marker is written only when absent: the first claim wins, whole. Needs a
/// blob store without a marker.
pub async fn namespace_marker_is_written_once(store: &dyn BlobStore) {
    assert_eq!(store.read_marker().await.unwrap(), None);
    let first = br#"{"namespace": "first", "database": "sqlite:///a.db"}"#;
    let second = br#"{"namespace": "second", "database": "sqlite:///b.db"}"#;
    assert_eq!(store.claim_marker(first).await.unwrap(), first);
    assert_eq!(store.claim_marker(second).await.unwrap(), first);
    assert_eq!(
        store.read_marker().await.unwrap().as_deref(),
        Some(&first[..])
    );
}

/// Committed bytes read back whole and by `offset`/`len` ranges.
pub async fn blob_round_trips_with_ranges(store: &dyn BlobStore) {
    let id = put(store, &[b"hello ", b"", b"world"]).await.unwrap();
    assert!(store.exists(&id).await.unwrap());
    let cases: [(u64, Option<u64>, &[u8]); 8] = [
        (0, None, b"hello world"),
        (6, None, b"world"),
        (0, Some(5), b"hello"),
        (3, Some(4), b"lo w"),
        (10, Some(100), b"d"),
        (11, None, b""),
        (100, Some(5), b""),
        (0, Some(0), b""),
    ];
    for (offset, len, want) in cases {
        let got = read_to_vec(store, &id, offset, len).await.unwrap();
        assert_eq!(got, want, "offset {offset} len {len:?}");
    }
    let empty = put(store, &[]).await.unwrap();
    assert!(
        read_to_vec(store, &empty, 0, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Aborted and dropped writers leave nothing readable.
pub async fn uncommitted_blobs_are_invisible(store: &dyn BlobStore) {
    let mut writer = store.begin().await.unwrap();
    writer.write(b"partial").await.unwrap();
    writer.abort().await;

    let mut writer = store.begin().await.unwrap();
    writer.write(b"partial").await.unwrap();
    drop(writer);

    // Neither had an id; a fresh one must not exist either.
    let id = UploadId::generate();
    assert!(!store.exists(&id).await.unwrap());
}

/// Reading a missing blob is `NotFound`; deleting it succeeds.
pub async fn missing_blobs_are_not_found(store: &dyn BlobStore) {
    let id = UploadId::generate();
    assert!(!store.exists(&id).await.unwrap());
    assert!(matches!(
        store.read(&id, 0, None).await,
        Err(BlobError::NotFound)
    ));
    store.delete(&id).await.unwrap();
}

/// After `delete`, a blob is gone.
pub async fn delete_removes_a_blob(store: &dyn BlobStore) {
    let id = put(store, &[b"bytes"]).await.unwrap();
    store.delete(&id).await.unwrap();
    assert!(!store.exists(&id).await.unwrap());
    assert!(matches!(
        store.read(&id, 0, None).await,
        Err(BlobError::NotFound)
    ));
    store.delete(&id).await.unwrap();
}

/// Two writers open at once keep their bytes apart.
pub async fn interleaved_writers_stay_apart(store: &dyn BlobStore) {
    let mut a = store.begin().await.unwrap();
    let mut b = store.begin().await.unwrap();
    a.write(b"a1").await.unwrap();
    b.write(b"b1").await.unwrap();
    a.write(b"a2").await.unwrap();
    b.write(b"b2").await.unwrap();
    let (ida, idb) = (UploadId::generate(), UploadId::generate());
    b.commit(&idb).await.unwrap();
    a.commit(&ida).await.unwrap();
    assert_eq!(read_to_vec(store, &ida, 0, None).await.unwrap(), b"a1a2");
    assert_eq!(read_to_vec(store, &idb, 0, None).await.unwrap(), b"b1b2");
}

/// `size` bytes written in uneven chunks stream back intact, hashed on the fly rather
/// than held in memory.
pub async fn large_blob_streams_through(store: &dyn BlobStore, size: usize) {
    let pattern: Vec<u8> = (0..=255u8).cycle().take(100_003).collect();
    let mut writer = store.begin().await.unwrap();
    let mut hasher = Sha256::new();
    let mut written = 0;
    let mut step = 0;
    while written < size {
        // Uneven chunk sizes, both below and above any internal buffer.
        let len = [1, 4096, 65_537, 100_003, 300_000][step % 5].min(size - written);
        step += 1;
        let chunk: Vec<u8> = pattern
            .iter()
            .cycle()
            .skip(written % pattern.len())
            .take(len)
            .copied()
            .collect();
        hasher.update(&chunk);
        writer.write(&chunk).await.unwrap();
        written += len;
    }
    let want = hasher.finalize();
    let id = UploadId::generate();
    writer.commit(&id).await.unwrap();

    let mut stream = store.read(&id, 0, None).await.unwrap();
    let mut hasher = Sha256::new();
    let mut read = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 1024 * 1024, "chunks stay bounded");
        read += chunk.len();
        hasher.update(&chunk);
    }
    assert_eq!(read, size);
    assert_eq!(hasher.finalize(), want);

    if size >= 10 {
        let offset = u64::try_from(size - 10).unwrap();
        let tail = read_to_vec(store, &id, offset, Some(5)).await.unwrap();
        let expect: Vec<u8> = (size - 10..size - 5)
            .map(|i| pattern[i % pattern.len()])
            .collect();
        assert_eq!(tail, expect);
    }
    store.delete(&id).await.unwrap();
}

/// Committed blobs are listed in ascending id order, page by page after a cursor, and
/// only those modified before the cutoff; uncommitted bodies never are.
pub async fn committed_blobs_list_in_id_order(store: &dyn BlobStore) {
    use std::time::{Duration, SystemTime};

    let day = Duration::from_secs(24 * 60 * 60);
    let later = SystemTime::now() + day;
    let ids = [
        put(store, &[b"one"]).await.unwrap(),
        put(store, &[b"two"]).await.unwrap(),
        put(store, &[b"three"]).await.unwrap(),
    ];
    let mut uncommitted = store.begin().await.unwrap();
    uncommitted.write(b"in flight").await.unwrap();

    let all = store.list_committed(later, None, 100_000).await.unwrap();
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "ascending: {all:?}"
    );
    for id in &ids {
        assert!(all.contains(id), "{id} is listed");
    }
    let mut sorted = ids.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut pages = Vec::new();
    let mut after: Option<UploadId> = None;
    loop {
        let page = store
            .list_committed(later, after.as_ref(), 2)
            .await
            .unwrap();
        assert!(page.len() <= 2, "the limit holds");
        let Some(last) = page.last().cloned() else {
            break;
        };
        pages.extend(page);
        after = Some(last);
    }
    assert_eq!(
        pages, all,
        "pages after a cursor add up to the whole listing"
    );
    assert!(
        store
            .list_committed(later, None, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let past = SystemTime::now() - day;
    let before = store.list_committed(past, None, 100_000).await.unwrap();
    for id in &ids {
        assert!(!before.contains(id), "{id} is too recent");
    }

    uncommitted.abort().await;
    for id in &ids {
        store.delete(id).await.unwrap();
    }
    let all = store.list_committed(later, None, 100_000).await.unwrap();
    for id in &ids {
        assert!(!all.contains(id), "{id} is deleted");
    }
}

/// What [`LostCommitAnswers`] does to an upload's insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CommitFault {
    /// Nothing: every call goes to the inner store.
    None = 0,
    /// The insert commits, then reports [`StoreError::CommitUnknown`] (the `COMMIT`'s
    /// answer lost on its way back).
    CommittedAnswerLost = 1,
    /// Nothing is inserted, and [`StoreError::CommitUnknown`] is reported (the `COMMIT`
    /// itself lost).
    NotCommittedAnswerLost = 2,
    /// As [`CommitFault::CommittedAnswerLost`], and looking an upload up fails too.
    CommittedAndLookupsFail = 3,
}

/// A [`Store`] whose upload inserts can be made to lose their commit's answer, as a
/// PostgreSQL connection lost while the `COMMIT` is in flight does; every other call goes
/// to the inner store. For tests of callers that must look before they undo.
pub struct LostCommitAnswers {
    inner: Arc<dyn Store>,
    fault: std::sync::atomic::AtomicU8,
}

impl LostCommitAnswers {
    /// `inner`, without a fault until [`LostCommitAnswers::set`].
    #[must_use]
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            fault: std::sync::atomic::AtomicU8::new(CommitFault::None as u8),
        }
    }

    /// What the next inserts do.
    pub fn set(&self, fault: CommitFault) {
        self.fault
            .store(fault as u8, std::sync::atomic::Ordering::SeqCst);
    }

    fn fault(&self) -> u8 {
        self.fault.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// What a lost `COMMIT` answer looks like: the connection aborted.
fn connection_lost() -> crate::Unavailable {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection lost during COMMIT",
    )
    .into()
}

impl std::fmt::Debug for LostCommitAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LostCommitAnswers")
            .field("fault", &self.fault())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Store for LostCommitAnswers {
    async fn consume_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: UnixTime,
    ) -> Result<bool, StoreError> {
        self.inner.consume_jti(issuer, jti, expires_at).await
    }
    async fn purge_expired_jtis(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.inner.purge_expired_jtis(now).await
    }
    async fn insert_upload(&self, upload: &NewUpload) -> Result<crate::UploadRecord, StoreError> {
        let lost = || StoreError::CommitUnknown(connection_lost());
        match self.fault() {
            1 | 3 => {
                self.inner.insert_upload(upload).await?;
                Err(lost())
            }
            2 => Err(lost()),
            _ => self.inner.insert_upload(upload).await,
        }
    }
    async fn commit_uploads(
        &self,
        writes: &[crate::UploadWrite],
    ) -> Result<Vec<Result<crate::Committed, StoreError>>, StoreError> {
        let lost = || StoreError::CommitUnknown(connection_lost());
        match self.fault() {
            1 | 3 => {
                self.inner.commit_uploads(writes).await?;
                Err(lost())
            }
            2 => Err(lost()),
            _ => self.inner.commit_uploads(writes).await,
        }
    }
    async fn inline_body(&self, id: &UploadId) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.inline_body(id).await
    }
    async fn delete_inline_body(&self, id: &UploadId) -> Result<bool, StoreError> {
        self.inner.delete_inline_body(id).await
    }
    async fn jti_is_spent(&self, issuer: &str, jti: &str) -> Result<bool, StoreError> {
        self.inner.jti_is_spent(issuer, jti).await
    }
    async fn latest_jti_expiry(&self) -> Result<Option<UnixTime>, StoreError> {
        self.inner.latest_jti_expiry().await
    }
    async fn get_upload(&self, id: &UploadId) -> Result<Option<crate::UploadRecord>, StoreError> {
        if self.fault() == 3 {
            return Err(StoreError::Unavailable(
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused")
                    .into(),
            ));
        }
        self.inner.get_upload(id).await
    }
    async fn find_by_idempotency_key(
        &self,
        scope: &IdempotencyScope,
        key: &str,
    ) -> Result<Option<crate::UploadRecord>, StoreError> {
        self.inner.find_by_idempotency_key(scope, key).await
    }
    async fn list_uploads(
        &self,
        filter: &ListFilter,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<crate::UploadRecord>, Option<Cursor>), StoreError> {
        self.inner.list_uploads(filter, limit, cursor).await
    }
    async fn list_verified_after(
        &self,
        repository_id: Option<RepositoryId>,
        after: u64,
        limit: u32,
    ) -> Result<(Vec<crate::UploadRecord>, u64), StoreError> {
        self.inner
            .list_verified_after(repository_id, after, limit)
            .await
    }
    async fn apply_webhook(
        &self,
        delivery: &WebhookDelivery,
        effects: &[WebhookEffect],
    ) -> Result<bool, StoreError> {
        self.inner.apply_webhook(delivery, effects).await
    }
    async fn repository_binding(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<RepositoryBinding>, StoreError> {
        self.inner.repository_binding(repository_id).await
    }
    async fn get_installation(
        &self,
        id: InstallationId,
    ) -> Result<Option<crate::KnownInstallation>, StoreError> {
        self.inner.get_installation(id).await
    }
    async fn installation_for_account(
        &self,
        account_id: OwnerId,
    ) -> Result<Option<crate::KnownInstallation>, StoreError> {
        self.inner.installation_for_account(account_id).await
    }
    async fn get_workflow_run(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
        run_attempt: u32,
    ) -> Result<Option<WorkflowRunRecord>, StoreError> {
        self.inner
            .get_workflow_run(repository_id, run_id, run_attempt)
            .await
    }
    async fn purge_workflow_runs(&self, before: UnixTime) -> Result<u64, StoreError> {
        self.inner.purge_workflow_runs(before).await
    }
    async fn purge_webhook_deliveries(&self, before: UnixTime) -> Result<u64, StoreError> {
        self.inner.purge_webhook_deliveries(before).await
    }
    async fn pending_uploads_for_run(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
        run_attempt: u32,
    ) -> Result<Vec<(crate::UploadRecord, PendingRun)>, StoreError> {
        self.inner
            .pending_uploads_for_run(repository_id, run_id, run_attempt)
            .await
    }
    async fn resolve_pending(
        &self,
        id: &UploadId,
        status: UploadStatus,
        identity: Option<&RunIdentity>,
        reason: Option<&str>,
        now: UnixTime,
        pushes: &[NewPush],
    ) -> Result<bool, StoreError> {
        self.inner
            .resolve_pending(id, status, identity, reason, now, pushes)
            .await
    }
    async fn blobs_to_delete(&self, limit: u32) -> Result<Vec<UploadId>, StoreError> {
        self.inner.blobs_to_delete(limit).await
    }
    async fn mark_blob_deleted(&self, id: &UploadId) -> Result<(), StoreError> {
        self.inner.mark_blob_deleted(id).await
    }
    async fn ids_without_upload(&self, ids: &[UploadId]) -> Result<Vec<UploadId>, StoreError> {
        self.inner.ids_without_upload(ids).await
    }
    async fn pending_usage(&self, repository_id: RepositoryId) -> Result<(u64, u64), StoreError> {
        self.inner.pending_usage(repository_id).await
    }
    async fn pending_total(&self) -> Result<(u64, u64), StoreError> {
        self.inner.pending_total().await
    }
    async fn run_upload_count(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
    ) -> Result<u64, StoreError> {
        self.inner.run_upload_count(repository_id, run_id).await
    }
    async fn reserve_pending(
        &self,
        reservation: &PendingReservation,
    ) -> Result<Reserved, StoreError> {
        self.inner.reserve_pending(reservation).await
    }
    async fn release_pending(&self, id: &ReservationId) -> Result<(), StoreError> {
        self.inner.release_pending(id).await
    }
    async fn workflow_run_attempts(
        &self,
        repository_id: RepositoryId,
        run_id: RunId,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        self.inner
            .workflow_run_attempts(repository_id, run_id)
            .await
    }
    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        self.inner.create_session(session).await
    }
    async fn reserve_session(
        &self,
        token_hash: &str,
        now: UnixTime,
        ask: SessionAsk,
    ) -> Result<SessionUse, StoreError> {
        self.inner.reserve_session(token_hash, now, ask).await
    }
    async fn release_session(
        &self,
        token_hash: &str,
        uploads: u64,
        bytes: u64,
    ) -> Result<(), StoreError> {
        self.inner.release_session(token_hash, uploads, bytes).await
    }
    async fn revoke_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        self.inner.revoke_session(token_hash).await
    }
    async fn get_session(
        &self,
        token_hash: &str,
    ) -> Result<Option<crate::SessionRecord>, StoreError> {
        self.inner.get_session(token_hash).await
    }
    async fn purge_sessions(&self, before: UnixTime) -> Result<u64, StoreError> {
        self.inner.purge_sessions(before).await
    }
    async fn create_console_session(
        &self,
        token_hash: &str,
        created_at: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        self.inner
            .create_console_session(token_hash, created_at, expires_at)
            .await
    }
    async fn console_session_valid(
        &self,
        token_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.inner.console_session_valid(token_hash, now).await
    }
    async fn delete_console_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        self.inner.delete_console_session(token_hash).await
    }
    async fn purge_console_sessions(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.inner.purge_console_sessions(now).await
    }
    async fn console_counts(&self) -> Result<crate::ConsoleCounts, StoreError> {
        self.inner.console_counts().await
    }
    async fn list_pushes_page(
        &self,
        filter: &crate::PushFilter,
        limit: u32,
        before: Option<&str>,
    ) -> Result<(Vec<PushRecord>, Option<String>), StoreError> {
        self.inner.list_pushes_page(filter, limit, before).await
    }
    async fn list_installations(
        &self,
        after: Option<InstallationId>,
        limit: u32,
    ) -> Result<Vec<KnownInstallation>, StoreError> {
        self.inner.list_installations(after, limit).await
    }
    async fn installation_repositories(
        &self,
        installation: InstallationId,
        after: Option<RepositoryId>,
        limit: u32,
    ) -> Result<Vec<InstalledRepository>, StoreError> {
        self.inner
            .installation_repositories(installation, after, limit)
            .await
    }
    async fn repositories_with_rules(
        &self,
        ids: &[RepositoryId],
    ) -> Result<Vec<RepositoryId>, StoreError> {
        self.inner.repositories_with_rules(ids).await
    }
    async fn claim_pushes(
        &self,
        now: UnixTime,
        lease_seconds: i64,
        limit: u32,
    ) -> Result<Vec<PushRecord>, StoreError> {
        self.inner.claim_pushes(now, lease_seconds, limit).await
    }
    async fn complete_push(&self, id: &str, now: UnixTime) -> Result<(), StoreError> {
        self.inner.complete_push(id, now).await
    }
    async fn fail_push(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.inner.fail_push(id, error, next_attempt_at, now).await
    }
    async fn list_pushes(
        &self,
        status: Option<PushStatus>,
        limit: u32,
    ) -> Result<Vec<PushRecord>, StoreError> {
        self.inner.list_pushes(status, limit).await
    }
    async fn retry_push(&self, id: &str, now: UnixTime) -> Result<Option<PushRecord>, StoreError> {
        self.inner.retry_push(id, now).await
    }
    async fn outbox_notifications(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        self.inner.outbox_notifications().await
    }
    async fn namespace(&self) -> Result<Option<crate::NamespaceRecord>, StoreError> {
        self.inner.namespace().await
    }
    async fn bind_namespace(
        &self,
        id: &str,
        blob_store: &str,
        now: UnixTime,
    ) -> Result<crate::NamespaceRecord, StoreError> {
        self.inner.bind_namespace(id, blob_store, now).await
    }
    async fn repository_rules(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Option<crate::RepositoryRules>, StoreError> {
        self.inner.repository_rules(repository_id).await
    }
    async fn put_repository_rules(
        &self,
        repository_id: RepositoryId,
        rules: &[runproof_core::rules::TrustRule],
        now: UnixTime,
    ) -> Result<crate::RepositoryRules, StoreError> {
        self.inner
            .put_repository_rules(repository_id, rules, now)
            .await
    }
    async fn delete_repository_rules(
        &self,
        repository_id: RepositoryId,
    ) -> Result<bool, StoreError> {
        self.inner.delete_repository_rules(repository_id).await
    }
    async fn insert_events(&self, events: &[crate::NewEvent]) -> Result<u64, StoreError> {
        self.inner.insert_events(events).await
    }
    async fn list_events(
        &self,
        filter: &crate::EventFilter,
        limit: u32,
        cursor: Option<crate::EventCursor>,
    ) -> Result<(Vec<crate::EventRecord>, Option<crate::EventCursor>), StoreError> {
        self.inner.list_events(filter, limit, cursor).await
    }
    async fn purge_events(&self, before: UnixTime, max_rows: u64) -> Result<u64, StoreError> {
        self.inner.purge_events(before, max_rows).await
    }
    async fn event_hours(
        &self,
        since: UnixTime,
        kind: crate::EventKind,
        outcome: crate::EventOutcome,
    ) -> Result<Vec<crate::EventHour>, StoreError> {
        self.inner.event_hours(since, kind, outcome).await
    }

    async fn event_counts(
        &self,
        since: UnixTime,
        kind: crate::EventKind,
        outcome: crate::EventOutcome,
        split: crate::EventSplit,
        bucket_seconds: u32,
    ) -> Result<Vec<crate::EventHour>, StoreError> {
        self.inner
            .event_counts(since, kind, outcome, split, bucket_seconds)
            .await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
