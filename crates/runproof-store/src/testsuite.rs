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
use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, RunIdentity, UnixTime};
use sha2::{Digest, Sha256};

use crate::{
    BlobError, BlobStore, Cursor, Delivery, Installation, InstalledRepository, ListFilter, Mode,
    NewUpload, RepositoryBinding, RepositorySelection, Store, StoreError, UploadId, UploadStatus,
    WebhookEffect, WorkflowRunRecord,
};

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

/// A delivery of `event` with a fresh id, received at `received_at`.
#[must_use]
pub fn delivery(event: &str, received_at: i64) -> Delivery {
    Delivery {
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
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// Runs every [`Store`] test.
pub async fn store_suite(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    jti_is_consumed_once(&*store).await;
    concurrent_jti_has_one_winner(Arc::clone(&store)).await;
    purge_removes_only_expired_jtis(&*store).await;
    insert_then_get_round_trips(&*store).await;
    idempotency_key_conflict_returns_existing(&*store).await;
    duplicate_id_is_refused(&*store).await;
    list_filters_by_status_and_repository(&*store).await;
    list_paginates_newest_first(&*store).await;
    redelivery_has_no_second_effect(&*store).await;
    concurrent_deliveries_have_one_winner(Arc::clone(&store)).await;
    failed_delivery_applies_nothing(&*store).await;
    installation_binding_lifecycle(&*store).await;
    binding_prefers_an_active_installation(&*store).await;
    installation_for_account_is_the_latest(&*store).await;
    workflow_run_keeps_the_latest_and_never_regresses(&*store).await;
    purge_forgets_old_deliveries(&*store).await;
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

    let verified = new_upload(unique_repository_id());
    let record = store.insert_upload(&verified).await.unwrap();
    assert_eq!(
        record.verified_at.map(time::OffsetDateTime::unix_timestamp),
        verified.verified_at.map(|t| t.0)
    );
    assert_eq!(record.content_type, verified.content_type);

    assert_eq!(store.get_upload(&UploadId::generate()).await.unwrap(), None);
}

/// A second insert with the same repository and idempotency key returns the first
/// record as a conflict; the same key in another repository is independent.
pub async fn idempotency_key_conflict_returns_existing(store: &dyn Store) {
    let repo = unique_repository_id();
    let key = unique("key");
    let mut first = new_upload(repo);
    first.idempotency_key = Some(key.clone());
    let stored = store.insert_upload(&first).await.unwrap();

    let mut again = new_upload(repo);
    again.idempotency_key = Some(key.clone());
    again.name = "other.sarif".into();
    match store.insert_upload(&again).await {
        Err(StoreError::Conflict(existing)) => assert_eq!(*existing, stored),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get_upload(&again.id).await.unwrap(), None);
    assert_eq!(
        store.find_by_idempotency_key(repo, &key).await.unwrap(),
        Some(stored)
    );
    assert_eq!(
        store.find_by_idempotency_key(repo, "absent").await.unwrap(),
        None
    );

    let mut elsewhere = new_upload(unique_repository_id());
    elsewhere.idempotency_key = Some(key);
    store.insert_upload(&elsewhere).await.unwrap();

    // Without a key, uploads never conflict.
    store.insert_upload(&new_upload(repo)).await.unwrap();
    store.insert_upload(&new_upload(repo)).await.unwrap();
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
    };
    assert_eq!(ids(pending_of_a).await, vec![pending_a.id.clone()]);
    let rejected_of_b = ListFilter {
        status: Some(UploadStatus::Rejected),
        repository_id: Some(b),
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
        .apply_webhook(&delivery("installation", received_at), &effects)
        .await
        .unwrap();
    assert!(applied, "a fresh delivery is applied");
}

/// A redelivery (same delivery id) returns `false` and changes nothing, whatever its
/// effects.
pub async fn redelivery_has_no_second_effect(store: &dyn Store) {
    let inst = installation(unique_installation_id());
    let first = delivery("installation", 1_700_000_000);
    let effects = [WebhookEffect::UpsertInstallation(inst.clone())];
    assert!(store.apply_webhook(&first, &effects).await.unwrap());
    assert!(!store.apply_webhook(&first, &effects).await.unwrap());

    let mut again = first.clone();
    again.received_at = UnixTime(1_700_000_100);
    let other = [
        WebhookEffect::SetSuspended {
            installation_id: inst.id,
            suspended: true,
        },
        WebhookEffect::DeleteInstallation(inst.id),
    ];
    assert!(!store.apply_webhook(&again, &other).await.unwrap());
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        Some((inst.clone(), false))
    );

    // An empty or oversized id is refused rather than deduplicated with others.
    let mut empty = delivery("installation", 1_700_000_000);
    empty.id = String::new();
    let err = store.apply_webhook(&empty, &other).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    empty.id = "x".repeat(crate::MAX_DELIVERY_ID_LEN + 1);
    let err = store.apply_webhook(&empty, &other).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        Some((inst, false))
    );
}

/// Of 16 concurrent applications of one delivery, exactly one returns `true`, and only
/// its effects are applied.
pub async fn concurrent_deliveries_have_one_winner(store: Arc<dyn Store>) {
    let base = installation(unique_installation_id());
    let shared = delivery("installation", 1_700_000_000);
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
    let (stored, deleted) = store.get_installation(base.id).await.unwrap().unwrap();
    assert!(!deleted);
    assert_eq!(stored.account_login, format!("login-{}", winners[0]));
}

/// When an effect fails, nothing of the delivery is kept, its id included: a retry
/// applies it.
pub async fn failed_delivery_applies_nothing(store: &dyn Store) {
    let inst = installation(unique_installation_id());
    let d = delivery("installation", 1_700_000_000);
    let bad = [
        WebhookEffect::UpsertInstallation(inst.clone()),
        WebhookEffect::AddRepositories {
            installation_id: inst.id,
            // Beyond any SQL integer.
            repositories: vec![InstalledRepository {
                id: RepositoryId(u64::MAX),
                full_name: "octo-org/too-big".into(),
            }],
        },
    ];
    let err = store.apply_webhook(&d, &bad).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.get_installation(inst.id).await.unwrap(), None);

    let good = [WebhookEffect::UpsertInstallation(inst.clone())];
    assert!(store.apply_webhook(&d, &good).await.unwrap());
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        Some((inst, false))
    );
}

/// A repository's binding follows its installation through creation, suspension,
/// removal, re-adding and deletion; an unknown repository has none.
pub async fn installation_binding_lifecycle(store: &dyn Store) {
    let inst = installation(unique_installation_id());
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
            },
        ],
    )
    .await;
    let got = store.repository_binding(repo).await.unwrap();
    assert_eq!(got, binding(false, false, false));
    assert!(got.unwrap().is_active());
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        Some((inst.clone(), false))
    );

    // installation.suspend, then installation.unsuspend
    let suspend = |suspended| WebhookEffect::SetSuspended {
        installation_id: inst.id,
        suspended,
    };
    apply(store, 1_700_000_010, vec![suspend(true)]).await;
    let got = store.repository_binding(repo).await.unwrap();
    assert_eq!(got, binding(true, false, false));
    assert!(!got.unwrap().is_active());
    let (stored, _) = store.get_installation(inst.id).await.unwrap().unwrap();
    assert!(stored.suspended);
    apply(store, 1_700_000_020, vec![suspend(false)]).await;
    assert_eq!(
        store.repository_binding(repo).await.unwrap(),
        binding(false, false, false)
    );

    // installation_repositories.removed, then .added
    let remove = WebhookEffect::RemoveRepositories {
        installation_id: inst.id,
        repository_ids: vec![repo],
    };
    apply(store, 1_700_000_030, vec![remove]).await;
    let got = store.repository_binding(repo).await.unwrap();
    assert_eq!(got, binding(false, false, true));
    assert!(!got.unwrap().is_active());
    assert_eq!(
        store.repository_binding(sibling).await.unwrap(),
        binding(false, false, false)
    );
    let add = WebhookEffect::AddRepositories {
        installation_id: inst.id,
        repositories: vec![listed(repo)],
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
    assert!(!got.unwrap().is_active());
    assert_eq!(
        store.get_installation(inst.id).await.unwrap(),
        Some((inst.clone(), true))
    );

    // An upsert updates the fields but never revives a deleted installation.
    let mut updated = inst.clone();
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
        Some((updated, true))
    );
    assert_eq!(
        store.repository_binding(repo).await.unwrap(),
        binding(false, true, false)
    );
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

/// An account's installation is its most recently updated one; other accounts' are
/// never returned.
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
        Some((first.clone(), false))
    );
    apply(
        store,
        1_700_000_010,
        vec![WebhookEffect::DeleteInstallation(first.id)],
    )
    .await;
    assert_eq!(
        store.installation_for_account(account).await.unwrap(),
        Some((first.clone(), true))
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
        Some((second, false))
    );
    let elsewhere = installation(unique_installation_id());
    apply(
        store,
        1_700_000_030,
        vec![WebhookEffect::UpsertInstallation(elsewhere.clone())],
    )
    .await;
    let (got, _) = store
        .installation_for_account(account)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(got.id, elsewhere.id);
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
pub async fn purge_forgets_old_deliveries(store: &dyn Store) {
    // Far in the past, so that other tests' deliveries are never purged.
    let cutoff = 2_000;
    let (old, edge, live) = (
        delivery("ping", cutoff - 1),
        delivery("ping", cutoff),
        delivery("ping", cutoff + 1),
    );
    for d in [&old, &edge, &live] {
        assert!(store.apply_webhook(d, &[]).await.unwrap());
    }
    let purged = store.purge_deliveries(UnixTime(cutoff)).await.unwrap();
    assert!(purged >= 1, "purged {purged}");
    assert!(store.apply_webhook(&old, &[]).await.unwrap());
    assert!(!store.apply_webhook(&edge, &[]).await.unwrap());
    assert!(!store.apply_webhook(&live, &[]).await.unwrap());
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
