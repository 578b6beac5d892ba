//! Conformance cases of what the operator console reads and writes: its sign-in
//! sessions, its counts, installations and their repositories, filtered upload lists and
//! pushes page by page.

use runproof_core::{InstallationId, RepositoryId, UnixTime};

use super::{
    installation, new_push, new_upload, pending_run, pending_upload, unique_installation_id,
    unique_repository_id, webhook_delivery,
};
use crate::{
    ConsoleCounts, InstalledRepository, Invalid, PushStatus, Store, StoreError, WebhookEffect,
};

/// A console session's token hash no other run of the suite uses.
fn console_token_hash() -> String {
    format!("{:064x}", uuid::Uuid::new_v4().as_u128())
}

/// A console session is valid until its `expires_at` (excluded), is unique, and is gone
/// once deleted.
pub async fn console_sessions_expire_and_are_deleted(store: &dyn Store) {
    let hash = console_token_hash();
    assert!(
        !store
            .console_session_valid(&hash, UnixTime(100))
            .await
            .unwrap()
    );
    store
        .create_console_session(&hash, UnixTime(100), UnixTime(200))
        .await
        .unwrap();
    assert!(
        store
            .console_session_valid(&hash, UnixTime(100))
            .await
            .unwrap()
    );
    assert!(
        store
            .console_session_valid(&hash, UnixTime(199))
            .await
            .unwrap()
    );
    assert!(
        !store
            .console_session_valid(&hash, UnixTime(200))
            .await
            .unwrap()
    );
    assert!(
        !store
            .console_session_valid(&hash, UnixTime(500))
            .await
            .unwrap()
    );
    let again = store
        .create_console_session(&hash, UnixTime(150), UnixTime(900))
        .await
        .unwrap_err();
    assert!(
        matches!(again, StoreError::Invalid(Invalid::SessionExists)),
        "{again:?}"
    );
    // Another hash is another session.
    let other = console_token_hash();
    assert!(
        !store
            .console_session_valid(&other, UnixTime(150))
            .await
            .unwrap()
    );
    store
        .create_console_session(&other, UnixTime(100), UnixTime(900))
        .await
        .unwrap();
    assert!(store.delete_console_session(&hash).await.unwrap());
    assert!(!store.delete_console_session(&hash).await.unwrap());
    assert!(
        !store
            .console_session_valid(&hash, UnixTime(150))
            .await
            .unwrap()
    );
    assert!(
        store
            .console_session_valid(&other, UnixTime(150))
            .await
            .unwrap()
    );
}

/// A purge at `now` deletes the sessions expired at `now`, and only those.
pub async fn console_sessions_are_purged_once_expired(store: &dyn Store) {
    let expired = console_token_hash();
    let ending = console_token_hash();
    let live = console_token_hash();
    let base = 1_900_000_000;
    store
        .create_console_session(&expired, UnixTime(base), UnixTime(base + 10))
        .await
        .unwrap();
    store
        .create_console_session(&ending, UnixTime(base), UnixTime(base + 20))
        .await
        .unwrap();
    store
        .create_console_session(&live, UnixTime(base), UnixTime(base + 21))
        .await
        .unwrap();
    let purged = store
        .purge_console_sessions(UnixTime(base + 20))
        .await
        .unwrap();
    // Other runs' sessions on a shared database may expire too.
    assert!(purged >= 2, "{purged}");
    assert!(!store.delete_console_session(&expired).await.unwrap());
    assert!(!store.delete_console_session(&ending).await.unwrap());
    assert!(
        store
            .console_session_valid(&live, UnixTime(base + 20))
            .await
            .unwrap()
    );
}

/// Lists `repositories` for installation `id` (creating it), through one delivery.
async fn install(store: &dyn Store, id: InstallationId, repositories: &[RepositoryId]) {
    let effects = [
        WebhookEffect::UpsertInstallation(installation(id)),
        WebhookEffect::AddRepositories {
            installation_id: id,
            repositories: repositories
                .iter()
                .map(|&id| InstalledRepository {
                    id,
                    full_name: format!("octo-org/repo-{}", id.get()),
                })
                .collect(),
            as_of: None,
        },
    ];
    let delivery = webhook_delivery("installation", 1_700_000_000);
    assert!(store.apply_webhook(&delivery, &effects).await.unwrap());
}

/// Applies `effects` through one fresh delivery.
async fn apply(store: &dyn Store, effects: &[WebhookEffect]) {
    let delivery = webhook_delivery("installation_repositories", 1_700_000_100);
    assert!(store.apply_webhook(&delivery, effects).await.unwrap());
}

/// How much each count grew from `before` to `after` (a shared database may hold other
/// runs' rows, which this run does not change).
fn grown(before: ConsoleCounts, after: ConsoleCounts) -> [i128; 5] {
    let d = |a: u64, b: u64| i128::from(b) - i128::from(a);
    [
        d(before.pending_uploads, after.pending_uploads),
        d(before.failed_pushes, after.failed_pushes),
        d(before.pending_pushes, after.pending_pushes),
        d(before.installations, after.installations),
        d(before.repositories, after.repositories),
    ]
}

/// The overview's counts follow pending uploads, failed and pending pushes, and the
/// installations (not deleted) with their listed repositories (not removed).
pub async fn console_counts_follow_uploads_pushes_and_installations(store: &dyn Store) {
    let start = store.console_counts().await.unwrap();

    // A pending upload with two pushes, and a verified one with one.
    let run = pending_run(unique_repository_id());
    let mut pending = pending_upload(&run, 1_700_000_000);
    pending.pushes = vec![
        new_push(&pending.id, "upload.pending"),
        new_push(&pending.id, "upload.pending"),
    ];
    store.insert_upload(&pending).await.unwrap();
    let mut verified = new_upload(unique_repository_id());
    verified.pushes = vec![new_push(&verified.id, "upload.verified")];
    store.insert_upload(&verified).await.unwrap();
    let counts = store.console_counts().await.unwrap();
    assert_eq!(grown(start, counts), [1, 0, 3, 0, 0]);

    // One push gives up, one is delivered.
    let failed = &pending.pushes[0].id;
    store
        .fail_push(failed, "503", None, UnixTime(1_700_000_010))
        .await
        .unwrap();
    store
        .complete_push(&verified.pushes[0].id, UnixTime(1_700_000_010))
        .await
        .unwrap();
    let counts = store.console_counts().await.unwrap();
    assert_eq!(grown(start, counts), [1, 1, 1, 0, 0]);
    let retried = store
        .retry_push(failed, UnixTime(1_700_000_020))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retried.status, PushStatus::Pending);
    let counts = store.console_counts().await.unwrap();
    assert_eq!(grown(start, counts), [1, 0, 2, 0, 0]);

    // Two installations listing three and two repositories.
    let (a, b) = (unique_installation_id(), unique_installation_id());
    let repos: Vec<RepositoryId> = (0..5).map(|_| unique_repository_id()).collect();
    install(store, a, &repos[..3]).await;
    install(store, b, &repos[3..]).await;
    let counts = store.console_counts().await.unwrap();
    assert_eq!(grown(start, counts), [1, 0, 2, 2, 5]);

    // A removed repository no longer counts; a deleted installation takes its own with it.
    apply(
        store,
        &[WebhookEffect::RemoveRepositories {
            installation_id: a,
            repository_ids: vec![repos[0]],
            as_of: None,
        }],
    )
    .await;
    let counts = store.console_counts().await.unwrap();
    assert_eq!(grown(start, counts), [1, 0, 2, 2, 4]);
    apply(store, &[WebhookEffect::DeleteInstallation(b)]).await;
    let counts = store.console_counts().await.unwrap();
    assert_eq!(grown(start, counts), [1, 0, 2, 1, 2]);

    // A settled upload is no longer pending.
    assert!(
        store
            .resolve_pending(
                &pending.id,
                crate::UploadStatus::Rejected,
                None,
                Some("refused"),
                UnixTime(1_700_000_030),
                &[],
            )
            .await
            .unwrap()
    );
    let counts = store.console_counts().await.unwrap();
    assert_eq!(grown(start, counts), [0, 0, 2, 1, 2]);
}
