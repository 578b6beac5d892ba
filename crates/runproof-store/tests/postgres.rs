//! The PostgreSQL store against a real server: what only a shared server can show
//! (several pools, as several replicas would have, agreeing). The conformance suite runs
//! on it in tests/conformance.rs.
//!
//! Runs when `RUNPROOF_TEST_DATABASE_URL` names a server (CI sets it); otherwise each test
//! prints that it was skipped and passes. Every test works in a schema of its own,
//! `rp_test_<random>`, dropped at the end (also when the test fails), so tests run in
//! parallel and leave nothing behind.
// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::time::Duration;

use runproof_core::UnixTime;
use runproof_store::{
    InstalledRepository, PoolSettings, PostgresOptions, PostgresStore, Store, StoreError,
    WebhookEffect, open_store, testsuite,
};
use sqlx::Connection as _;
use tokio::sync::mpsc;

const URL_VAR: &str = "RUNPROOF_TEST_DATABASE_URL";

/// The server's URL, or `None` (after saying so) when the suite is not to run.
fn database_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{URL_VAR} is not set, and with CI=true the PostgreSQL suite must run"
            );
            println!("SKIPPED: PostgreSQL suite not run: {URL_VAR} is not set");
            None
        }
    }
}

/// Runs `test` with a fresh schema name, then drops that schema, even when `test` panics.
async fn with_schema<F, Fut>(url: &str, test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let schema = format!("rp_test_{}", uuid::Uuid::new_v4().simple());
    // In a task of its own, so that a panic comes back as a value and cleanup still runs.
    let outcome = tokio::spawn(test(schema.clone())).await;
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .expect("admin connection");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&mut admin)
    .await
    .expect("drop schema");
    admin.close().await.expect("close admin connection");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn options(schema: &str) -> PostgresOptions {
    PostgresOptions {
        schema: Some(schema.to_owned()),
        ..PostgresOptions::default()
    }
}

/// Connecting again to a migrated schema (a restart, or a second replica) migrates
/// nothing and sees the same data; replicas starting together all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconnecting_and_concurrent_startup_share_one_schema() {
    let Some(url) = database_url() else { return };
    let u = url.clone();
    with_schema(&url, move |schema| async move {
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let (u, opts) = (u.clone(), options(&schema));
                tokio::spawn(async move { PostgresStore::connect(&u, opts).await })
            })
            .collect();
        let mut stores = Vec::new();
        for start in starts {
            stores.push(start.await.unwrap().unwrap());
        }
        assert!(stores[0].consume_jti("i", "j", UnixTime(10)).await.unwrap());
        let again = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        assert!(!again.consume_jti("i", "j", UnixTime(10)).await.unwrap());
        for store in stores.iter().chain([&again]) {
            store.close().await;
        }
    })
    .await;
}

/// Two pools on one schema, as two replicas: a `jti` or a webhook delivery used through one is
/// used for the other, and of concurrent attempts through both exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_pools_share_jtis_and_webhook_deliveries() {
    let Some(url) = database_url() else { return };
    let u = url.clone();
    with_schema(&url, move |schema| async move {
        let a = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        let b = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        let exp = UnixTime(4_000_000_000);

        assert!(a.consume_jti("iss", "jti-1", exp).await.unwrap());
        assert!(!b.consume_jti("iss", "jti-1", exp).await.unwrap());

        for round in 0..8 {
            let jti = format!("race-{round}");
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                    let jti = jti.clone();
                    tokio::spawn(async move { store.consume_jti("iss", &jti, exp).await })
                })
                .collect();
            let mut winners = 0;
            for task in tasks {
                winners += usize::from(task.await.unwrap().unwrap());
            }
            assert_eq!(winners, 1, "round {round}");
        }

        let d = testsuite::webhook_delivery("ping", 1_700_000_000);
        assert!(a.apply_webhook(&d, &[]).await.unwrap());
        assert!(!b.apply_webhook(&d, &[]).await.unwrap());

        // Half the tasks share one delivery; each applies an installation and a binding.
        let shared = testsuite::webhook_delivery("installation", 1_700_000_000);
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let d = if i % 4 == 0 {
                    shared.clone()
                } else {
                    testsuite::webhook_delivery("installation", 1_700_000_000)
                };
                let inst = testsuite::installation(testsuite::unique_installation_id());
                let repo = testsuite::unique_repository_id();
                tokio::spawn(async move {
                    let effects = [
                        WebhookEffect::UpsertInstallation(inst.clone()),
                        WebhookEffect::AddRepositories {
                            installation_id: inst.id,
                            repositories: vec![InstalledRepository {
                                id: repo,
                                full_name: "octo-org/repo".into(),
                            }],
                            as_of: None,
                        },
                    ];
                    (i, store.apply_webhook(&d, &effects).await, repo)
                })
            })
            .collect();
        let mut shared_winners = 0;
        for task in tasks {
            let (i, won, repo) = task.await.unwrap();
            let won = won.unwrap();
            if i % 4 == 0 {
                shared_winners += usize::from(won);
            } else {
                assert!(won, "a distinct delivery is applied");
            }
            assert_eq!(b.repository_binding(repo).await.unwrap().is_some(), won);
        }
        assert_eq!(shared_winners, 1);

        // An idempotency key used through one pool conflicts through the other.
        let mut first = testsuite::new_upload(testsuite::unique_repository_id());
        first.idempotency_key = Some("key".into());
        let stored = a.insert_upload(&first).await.unwrap();
        let mut second = testsuite::new_upload(first.identity.repository_id);
        second.idempotency_key = Some("key".into());
        match b.insert_upload(&second).await {
            Err(StoreError::Conflict(existing)) => assert_eq!(*existing, stored),
            other => panic!("expected a conflict, got {other:?}"),
        }

        a.close().await;
        b.close().await;
    })
    .await;
}

/// Concurrent inserts with one idempotency key: one is stored, every other gets it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_idempotent_inserts_agree() {
    let Some(url) = database_url() else { return };
    let u = url.clone();
    with_schema(&url, move |schema| async move {
        let store = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        let repo = testsuite::unique_repository_id();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                let mut upload = testsuite::new_upload(repo);
                upload.idempotency_key = Some("same".into());
                tokio::spawn(async move { store.insert_upload(&upload).await })
            })
            .collect();
        let (mut stored, mut conflicts) = (Vec::new(), Vec::new());
        for task in tasks {
            match task.await.unwrap() {
                Ok(record) => stored.push(record),
                Err(StoreError::Conflict(existing)) => conflicts.push(*existing),
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(stored.len(), 1);
        assert!(conflicts.iter().all(|c| *c == stored[0]));
        store.close().await;
    })
    .await;
}

/// The statement timeout applies to every connection, a NUL in text is refused as
/// invalid (PostgreSQL text cannot hold it) and a closed store is unavailable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeouts_invalid_values_and_closing() {
    let Some(url) = database_url() else { return };
    let u = url.clone();
    with_schema(&url, move |schema| async move {
        let store = PostgresStore::connect(
            &u,
            PostgresOptions {
                statement_timeout: Duration::from_millis(1500),
                max_connections: 2,
                ..options(&schema)
            },
        )
        .await
        .unwrap();
        let err = store.consume_jti("iss", "nul\0jti", UnixTime(1)).await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");

        // Another session holds the table: the store's statement waits for its lock
        // until the timeout cancels it, on each of its connections.
        let mut admin = sqlx::PgConnection::connect(&u).await.unwrap();
        let mut tx = admin.begin().await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE \"{schema}\".used_jtis IN ACCESS EXCLUSIVE MODE"
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let attempts: Vec<_> = (0..2)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .consume_jti("iss", &format!("locked-{i}"), UnixTime(1))
                        .await
                })
            })
            .collect();
        for attempt in attempts {
            let err = attempt.await.unwrap().unwrap_err();
            let StoreError::Unavailable(msg) = &err else {
                panic!("{err:?}");
            };
            let msg = msg.to_string();
            assert!(msg.contains("statement timeout"), "{msg}");
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1400) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        tx.rollback().await.unwrap();
        admin.close().await.unwrap();
        assert!(
            store
                .consume_jti("iss", "locked-0", UnixTime(1))
                .await
                .unwrap()
        );

        store.ping().await.unwrap();
        store.close().await;
        let err = store.ping().await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    })
    .await;
}

/// `open_store` picks PostgreSQL for both URL schemes, and a schema from the URL or its
/// settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_store_opens_postgres() {
    let Some(url) = database_url() else { return };
    // `open_store` has no schema option: use the URL's `options` to pick one.
    let u = url.clone();
    with_schema(&url, move |schema| async move {
        // The schema must exist first when chosen through the URL.
        let first = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        assert!(first.consume_jti("iss", "jti", UnixTime(10)).await.unwrap());
        first.close().await;
        let sep = if u.contains('?') { '&' } else { '?' };
        let with_path = format!("{u}{sep}options=-c%20search_path%3D{schema}");
        let alt = with_path.replacen("postgres://", "postgresql://", 1);
        for url in [with_path, alt] {
            let store = open_store(
                &url,
                PoolSettings {
                    max_connections: Some(2),
                    statement_timeout: Some(Duration::from_secs(5)),
                    ..PoolSettings::default()
                },
            )
            .await
            .unwrap();
            assert!(!store.consume_jti("iss", "jti", UnixTime(10)).await.unwrap());
        }
        // Or through its settings.
        let store = open_store(
            &u,
            PoolSettings {
                schema: Some(schema.clone()),
                connect_timeout: Some(Duration::from_secs(5)),
                ..PoolSettings::default()
            },
        )
        .await
        .unwrap();
        assert!(!store.consume_jti("iss", "jti", UnixTime(10)).await.unwrap());
    })
    .await;
}

/// Waits up to 10 s for a wake-up; `None` when the channel closed.
async fn next_wake(rx: &mut mpsc::Receiver<()>) -> Option<()> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a wake-up or the end of the channel within 10 s")
}

/// Pushes enqueued through one pool wake listeners on another (as replicas); closing
/// the store ends its listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_notifications_wake_other_replicas() {
    let Some(url) = database_url() else { return };
    let u = url.clone();
    with_schema(&url, move |schema| async move {
        let a = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        let b = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        let mut direct = a.listen_outbox().await.unwrap();
        let mut through_trait = Store::outbox_notifications(&a).await.unwrap();
        // The trait's listener connects in the background and says so with a wake-up.
        assert_eq!(next_wake(&mut through_trait).await, Some(()));

        let mut upload = testsuite::new_upload(testsuite::unique_repository_id());
        upload.pushes = vec![testsuite::new_push(&upload.id, "upload.verified")];
        b.insert_upload(&upload).await.unwrap();
        assert_eq!(next_wake(&mut direct).await, Some(()));
        assert_eq!(next_wake(&mut through_trait).await, Some(()));

        let pending = testsuite::pending_upload(
            &testsuite::pending_run(testsuite::unique_repository_id()),
            1_700_000_000,
        );
        b.insert_upload(&pending).await.unwrap();
        let push = testsuite::new_push(&pending.id, "upload.verified");
        assert!(
            b.resolve_pending(
                &pending.id,
                runproof_store::UploadStatus::Verified,
                None,
                None,
                UnixTime(1_700_000_001),
                std::slice::from_ref(&push),
            )
            .await
            .unwrap()
        );
        assert_eq!(next_wake(&mut direct).await, Some(()));

        // A dropped receiver ends its listener; closing ends the others.
        drop(through_trait);
        tokio::time::timeout(Duration::from_secs(10), a.close())
            .await
            .expect("closing does not wait for listeners forever");
        while next_wake(&mut direct).await.is_some() {}
        b.close().await;
    })
    .await;
}

/// Claimers on two pools (as two replicas) never claim one push twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_pools_claim_each_push_once() {
    let Some(url) = database_url() else { return };
    let u = url.clone();
    with_schema(&url, move |schema| async move {
        let a = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        let b = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..8 {
            let mut upload = testsuite::new_upload(testsuite::unique_repository_id());
            upload.pushes = (0..10)
                .map(|_| testsuite::new_push(&upload.id, "upload.verified"))
                .collect();
            ids.extend(upload.pushes.iter().map(|d| d.id.clone()));
            a.insert_upload(&upload).await.unwrap();
        }
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let batch = store
                            .claim_pushes(UnixTime(1_700_000_000), 600, 4)
                            .await
                            .unwrap();
                        assert!(batch.len() <= 4);
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
            claimed.extend(task.await.unwrap());
        }
        claimed.sort();
        let mut want: Vec<_> = ids.into_iter().collect();
        want.sort();
        assert_eq!(claimed, want);
        a.close().await;
        b.close().await;
    })
    .await;
}

/// Two replicas verify uploads at once while a poller follows the positions through
/// both (each listing numbers what waits, under the counter's lock), and an older
/// replica verifies one too: the poller sees each upload exactly once, the older
/// replica's too.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn replicas_new_and_old_leave_no_verified_upload_unlisted() {
    let Some(url) = database_url() else { return };
    let u = url.clone();
    with_schema(&url, move |schema| async move {
        let a = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        let b = PostgresStore::connect(&u, options(&schema)).await.unwrap();
        let repo = testsuite::unique_repository_id();

        let mut older = sqlx::PgConnection::connect(&u).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET search_path TO \"{schema}\""
        )))
        .execute(&mut older)
        .await
        .unwrap();
        let stray = runproof_store::UploadId::generate();
        sqlx::query(
            "INSERT INTO uploads (id, status, mode, name, size, sha256, created_at, \
             verified_at, identity_json, repository_id) \
             VALUES ($1, 'verified', 'oidc', 'a.txt', 1, $2, 1, 1, $3, $4)",
        )
        .bind(stray.as_str())
        .bind("a".repeat(64))
        .bind(serde_json::to_string(&testsuite::identity(repo)).unwrap())
        .bind(i64::try_from(repo.get()).unwrap())
        .execute(&mut older)
        .await
        .unwrap();
        older.close().await.unwrap();

        let mut tasks = Vec::new();
        for store in [a.clone(), b.clone(), a.clone(), b.clone()] {
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..20 {
                    let upload = testsuite::new_upload(repo);
                    ids.push(store.insert_upload(&upload).await.unwrap().id);
                }
                ids
            }));
        }
        // Two pollers, one through each replica, each with its own cursor: their
        // numbering transactions run concurrently.
        let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let pollers: Vec<_> = [b.clone(), a.clone()]
            .into_iter()
            .map(|store| {
                let writing = std::sync::Arc::clone(&writing);
                tokio::spawn(async move {
                    let mut after = 0;
                    let mut seen = Vec::new();
                    while writing.load(std::sync::atomic::Ordering::SeqCst) {
                        let (page, next) = store
                            .list_verified_after(Some(repo), after, 5)
                            .await
                            .unwrap();
                        seen.extend(page.into_iter().map(|r| r.id));
                        after = next;
                        tokio::task::yield_now().await;
                    }
                    for _ in 0..1000 {
                        let (page, next) = store
                            .list_verified_after(Some(repo), after, 5)
                            .await
                            .unwrap();
                        if page.is_empty() {
                            break;
                        }
                        seen.extend(page.into_iter().map(|r| r.id));
                        after = next;
                    }
                    seen
                })
            })
            .collect();
        let mut written: std::collections::HashSet<_> = [stray].into_iter().collect();
        for task in tasks {
            written.extend(task.await.unwrap());
        }
        writing.store(false, std::sync::atomic::Ordering::SeqCst);
        for poller in pollers {
            let seen = poller.await.unwrap();
            let distinct: std::collections::HashSet<_> = seen.iter().cloned().collect();
            assert_eq!(distinct.len(), seen.len(), "no upload is seen twice");
            assert_eq!(distinct, written, "every verified upload is seen");
        }
        a.close().await;
        b.close().await;
    })
    .await;
}
