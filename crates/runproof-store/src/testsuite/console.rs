//! Conformance cases of what the operator console reads and writes: its sign-in
//! sessions, its counts, installations and their repositories, filtered upload lists and
//! pushes page by page.

use runproof_core::{InstallationId, RepositoryId, UnixTime};

use super::{
    installation, new_push, new_upload, pending_run, pending_upload, unique_installation_id,
    unique_repository_id, webhook_delivery,
};
use crate::{
    ConsoleCounts, InstalledRepository, Invalid, KnownInstallation, ListFilter, Mode, PushFilter,
    PushRecord, PushStatus, Store, StoreError, UploadId, UploadStatus, WebhookEffect,
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

/// Installations list in id order, the deleted ones left out, page by page with
/// `after`; a limit of 0 still lists one.
pub async fn installations_list_in_id_order_without_the_deleted(store: &dyn Store) {
    let mut ids: Vec<InstallationId> = (0..5).map(|_| unique_installation_id()).collect();
    for &id in &ids {
        install(store, id, &[unique_repository_id()]).await;
    }
    apply(store, &[WebhookEffect::DeleteInstallation(ids[2])]).await;
    let deleted = ids.remove(2);
    ids.sort_unstable_by_key(|id| id.get());
    let start = InstallationId(ids[0].get() - 1);

    let first = store.list_installations(Some(start), 2).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].installation.id, ids[0]);
    assert!(first[0].installation.id.get() < first[1].installation.id.get());
    assert!(first.iter().all(|i| !i.deleted));
    let one = store.list_installations(Some(start), 0).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].installation.id, ids[0]);

    let mut listed = Vec::new();
    let mut after = None;
    // Bounded: a shared database holds a bounded number of other runs' installations.
    for _ in 0..100_000 {
        let page = store.list_installations(after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.installation.id);
        listed.extend(page);
    }
    let listed_ids: Vec<u64> = listed.iter().map(|i| i.installation.id.get()).collect();
    assert!(listed_ids.windows(2).all(|w| w[0] < w[1]), "{listed_ids:?}");
    assert!(listed.iter().all(|i| !i.deleted));
    assert!(!listed_ids.contains(&deleted.get()));
    let mine: Vec<&KnownInstallation> = listed
        .iter()
        .filter(|i| ids.contains(&i.installation.id))
        .collect();
    assert_eq!(mine.len(), ids.len());
    let expected = installation(ids[0]);
    assert_eq!(mine[0].installation.account_login, expected.account_login);
    assert_eq!(
        mine[0].installation.repository_selection,
        expected.repository_selection
    );
    // Past the last one, nothing.
    let last = *ids.last().unwrap();
    let after_last = store.list_installations(Some(last), 10).await.unwrap();
    assert!(
        after_last
            .iter()
            .all(|i| i.installation.id.get() > last.get())
    );
}

/// An installation's repositories list in id order, the removed ones left out, page by
/// page with `after`; another installation's are not listed.
pub async fn installation_repositories_list_in_id_order_without_the_removed(store: &dyn Store) {
    let (a, b) = (unique_installation_id(), unique_installation_id());
    let mut repos: Vec<RepositoryId> = (0..7).map(|_| unique_repository_id()).collect();
    install(store, a, &repos).await;
    install(store, b, &[unique_repository_id(), repos[0]]).await;
    apply(
        store,
        &[WebhookEffect::RemoveRepositories {
            installation_id: a,
            repository_ids: vec![repos[3]],
            as_of: None,
        }],
    )
    .await;
    let removed = repos.remove(3);
    repos.sort_unstable_by_key(|id| id.get());

    let mut listed = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = store.installation_repositories(a, after, 4).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        listed.extend(page);
    }
    let listed_ids: Vec<RepositoryId> = listed.iter().map(|r| r.id).collect();
    assert_eq!(listed_ids, repos);
    assert!(!listed_ids.contains(&removed));
    assert_eq!(
        listed[0].full_name,
        format!("octo-org/repo-{}", repos[0].get())
    );
    let page = store
        .installation_repositories(a, Some(repos[1]), 2)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        repos[2..4].to_vec()
    );
    let one = store.installation_repositories(a, None, 0).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, repos[0]);
    assert_eq!(
        store
            .installation_repositories(b, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let unknown = unique_installation_id();
    assert!(
        store
            .installation_repositories(unknown, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Of the ids asked about, those with rules stored (an empty layer too) come back in id
/// order, each once; deleted rules and ids beyond the database's integers do not.
pub async fn repositories_with_rules_are_picked_out(store: &dyn Store) {
    let ids: Vec<RepositoryId> = (0..4).map(|_| unique_repository_id()).collect();
    let rules = super::sample_rules();
    store
        .put_repository_rules(ids[0], &rules, UnixTime(1_700_000_000))
        .await
        .unwrap();
    store
        .put_repository_rules(ids[1], &[], UnixTime(1_700_000_000))
        .await
        .unwrap();
    store
        .put_repository_rules(ids[2], &rules, UnixTime(1_700_000_000))
        .await
        .unwrap();
    assert!(store.delete_repository_rules(ids[2]).await.unwrap());

    let mut expected = vec![ids[0], ids[1]];
    expected.sort_unstable_by_key(|id| id.get());
    let asked = [
        ids[3],
        ids[1],
        ids[2],
        RepositoryId(u64::MAX),
        ids[0],
        ids[1],
    ];
    assert_eq!(
        store.repositories_with_rules(&asked).await.unwrap(),
        expected
    );
    assert!(store.repositories_with_rules(&[]).await.unwrap().is_empty());
    // More ids than one batch holds.
    let mut many: Vec<RepositoryId> = (0..2_100).map(|_| unique_repository_id()).collect();
    many.insert(1_500, ids[1]);
    many.push(ids[0]);
    assert_eq!(
        store.repositories_with_rules(&many).await.unwrap(),
        expected
    );
}

/// Uploads filtered by mode and by time of receipt (`since` included, `until` excluded),
/// alone or with the other filters, newest first and page by page.
pub async fn list_filters_by_mode_and_time(store: &dyn Store) {
    let repo = unique_repository_id();
    // (mode, created_at), inserted oldest id first.
    let plan = [
        (Mode::Oidc, 1_000),
        (Mode::Webhook, 1_010),
        (Mode::Oidc, 1_020),
        (Mode::Session, 1_030),
        (Mode::Oidc, 1_040),
        (Mode::Webhook, 1_050),
    ];
    let mut ids = Vec::new();
    for (mode, at) in plan {
        let mut upload = new_upload(repo);
        upload.mode = mode;
        upload.created_at = UnixTime(at);
        if mode == Mode::Webhook {
            upload.status = UploadStatus::Pending;
            upload.verified_at = None;
            upload.pending_run = Some(pending_run(repo));
        }
        store.insert_upload(&upload).await.unwrap();
        ids.push(upload.id);
    }
    // Another repository's upload, of every filter's values, never shows.
    let mut other = new_upload(unique_repository_id());
    other.created_at = UnixTime(1_020);
    store.insert_upload(&other).await.unwrap();

    let list = async |filter: ListFilter, limit: u32| -> Vec<UploadId> {
        let filter = ListFilter {
            repository_id: Some(repo),
            ..filter
        };
        let mut all = Vec::new();
        let mut cursor = None;
        for _ in 0..20 {
            let (page, next) = store
                .list_uploads(&filter, limit, cursor.as_ref())
                .await
                .unwrap();
            all.extend(page.into_iter().map(|r| r.id));
            match next {
                Some(next) => cursor = Some(next),
                None => return all,
            }
        }
        panic!("the listing never ended");
    };
    let newest_first = |picked: &[usize]| -> Vec<UploadId> {
        picked.iter().rev().map(|&i| ids[i].clone()).collect()
    };

    let oidc = ListFilter {
        mode: Some(Mode::Oidc),
        ..ListFilter::default()
    };
    assert_eq!(list(oidc.clone(), 1000).await, newest_first(&[0, 2, 4]));
    assert_eq!(list(oidc, 1).await, newest_first(&[0, 2, 4]));
    let since = ListFilter {
        since: Some(UnixTime(1_020)),
        ..ListFilter::default()
    };
    assert_eq!(list(since, 2).await, newest_first(&[2, 3, 4, 5]));
    let until = ListFilter {
        until: Some(UnixTime(1_020)),
        ..ListFilter::default()
    };
    assert_eq!(list(until, 1000).await, newest_first(&[0, 1]));
    let window = ListFilter {
        since: Some(UnixTime(1_010)),
        until: Some(UnixTime(1_040)),
        ..ListFilter::default()
    };
    assert_eq!(list(window.clone(), 2).await, newest_first(&[1, 2, 3]));
    let oidc_in_window = ListFilter {
        mode: Some(Mode::Oidc),
        ..window
    };
    assert_eq!(list(oidc_in_window, 1000).await, newest_first(&[2]));
    let pending_webhook_since = ListFilter {
        status: Some(UploadStatus::Pending),
        mode: Some(Mode::Webhook),
        since: Some(UnixTime(1_011)),
        ..ListFilter::default()
    };
    assert_eq!(list(pending_webhook_since, 1000).await, newest_first(&[5]));
    let empty = ListFilter {
        since: Some(UnixTime(1_030)),
        until: Some(UnixTime(1_030)),
        ..ListFilter::default()
    };
    assert!(list(empty, 1000).await.is_empty());
    let github_token = ListFilter {
        mode: Some(Mode::GithubToken),
        ..ListFilter::default()
    };
    assert!(list(github_token, 1000).await.is_empty());
}

/// Every push `filter` lists, page by page with the returned cursor, `limit` at a time;
/// checks that a page ends with a cursor exactly when more follow.
async fn all_pushes(store: &dyn Store, filter: &PushFilter, limit: u32) -> Vec<PushRecord> {
    let mut all = Vec::new();
    let mut before: Option<String> = None;
    for _ in 0..100 {
        let (page, next) = store
            .list_pushes_page(filter, limit, before.as_deref())
            .await
            .unwrap();
        assert!(page.len() <= limit.max(1) as usize);
        all.extend(page);
        match next {
            Some(next) => {
                assert_eq!(Some(&next), all.last().map(|p| &p.id));
                before = Some(next);
            }
            None => return all,
        }
    }
    panic!("the listing never ended");
}

/// Pushes list newest first (enqueue time, then id) with a cursor, by status, by upload
/// or both; a cursor naming no push gives an empty page.
pub async fn push_pages_list_newest_first_by_status_and_upload(store: &dyn Store) {
    // Three uploads, enqueued at 10, 20 and 20 (a tie broken by the push id), with
    // two, three and one pushes.
    let mut uploads = Vec::new();
    for (at, pushes) in [(1_700_000_010, 2), (1_700_000_020, 3), (1_700_000_020, 1)] {
        let mut upload = new_upload(unique_repository_id());
        upload.created_at = UnixTime(at);
        upload.pushes = (0..pushes)
            .map(|_| new_push(&upload.id, "upload.verified"))
            .collect();
        store.insert_upload(&upload).await.unwrap();
        uploads.push(upload);
    }
    // The second upload's first push fails for good; the third's is delivered.
    let failed = uploads[1].pushes[0].id.clone();
    store
        .fail_push(&failed, "503", None, UnixTime(1_700_000_030))
        .await
        .unwrap();
    store
        .complete_push(&uploads[2].pushes[0].id, UnixTime(1_700_000_030))
        .await
        .unwrap();

    let key = |p: &PushRecord| (p.created_at.0, p.id.clone());
    let newest_first = |list: &[PushRecord]| list.windows(2).all(|w| key(&w[0]) > key(&w[1]));
    let ids = |list: &[PushRecord]| list.iter().map(|p| p.id.clone()).collect::<Vec<_>>();

    // By upload, page by page.
    let of_second = PushFilter {
        upload_id: Some(uploads[1].id.clone()),
        ..PushFilter::default()
    };
    for limit in [0, 1, 2, 1000] {
        let listed = all_pushes(store, &of_second, limit).await;
        assert_eq!(listed.len(), 3, "limit {limit}");
        assert!(newest_first(&listed));
        assert!(listed.iter().all(|p| p.upload_id == uploads[1].id.as_str()));
    }
    let mut expected: Vec<String> = uploads[1].pushes.iter().map(|p| p.id.clone()).collect();
    let listed = all_pushes(store, &of_second, 2).await;
    let mut got = ids(&listed);
    got.sort();
    expected.sort();
    assert_eq!(got, expected);

    // By status and upload.
    let failed_of_second = PushFilter {
        status: Some(PushStatus::Failed),
        upload_id: Some(uploads[1].id.clone()),
    };
    assert_eq!(
        ids(&all_pushes(store, &failed_of_second, 10).await),
        vec![failed.clone()]
    );
    let delivered_of_first = PushFilter {
        status: Some(PushStatus::Delivered),
        upload_id: Some(uploads[0].id.clone()),
    };
    assert!(all_pushes(store, &delivered_of_first, 10).await.is_empty());

    // By status alone and unfiltered (a shared database may hold other runs' pushes).
    let failed_all = all_pushes(
        store,
        &PushFilter {
            status: Some(PushStatus::Failed),
            ..PushFilter::default()
        },
        1,
    )
    .await;
    assert!(newest_first(&failed_all));
    assert!(failed_all.iter().all(|p| p.status == PushStatus::Failed));
    assert!(ids(&failed_all).contains(&failed));
    let everything = all_pushes(store, &PushFilter::default(), 2).await;
    assert!(newest_first(&everything));
    let mine: Vec<PushRecord> = everything
        .into_iter()
        .filter(|p| uploads.iter().any(|u| u.id.as_str() == p.upload_id))
        .collect();
    assert_eq!(mine.len(), 6);
    // The two uploads enqueued at 20 come first, then the one at 10.
    assert!(
        mine[..4]
            .iter()
            .all(|p| p.created_at == UnixTime(1_700_000_020))
    );
    assert!(
        mine[4..]
            .iter()
            .all(|p| p.upload_id == uploads[0].id.as_str())
    );
    let delivered = mine
        .iter()
        .find(|p| p.id == uploads[2].pushes[0].id)
        .unwrap();
    assert_eq!(delivered.status, PushStatus::Delivered);

    // A cursor naming no push.
    let unknown = uuid::Uuid::new_v4().hyphenated().to_string();
    let (page, next) = store
        .list_pushes_page(&PushFilter::default(), 10, Some(&unknown))
        .await
        .unwrap();
    assert!(page.is_empty());
    assert_eq!(next, None);
}
