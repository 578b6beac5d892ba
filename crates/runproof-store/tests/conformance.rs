//! The store conformance suite (`runproof_store::store_conformance!`), one test per case,
//! on every backend: SQLite in memory and in a file, always; PostgreSQL when
//! `RUNPROOF_TEST_DATABASE_URL` names a server (CI sets it), else each of its tests prints
//! that it was skipped and passes (but fails with `CI=true`).
//!
//! Every test gets a store of its own: a new in-memory database, a new file in a
//! temporary directory, or a new schema `rp_test_<random>` dropped at the end (also when
//! the test fails).
// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use runproof_store::testsuite::STORE_CASES;

mod sqlite_memory {
    use runproof_store::testsuite::Case;
    use runproof_store::{PoolSettings, open_store};

    async fn harness(case: Case) {
        let store = open_store("sqlite::memory:", PoolSettings::default())
            .await
            .unwrap();
        case.run(store).await;
    }

    runproof_store::store_conformance!(harness);
}

mod sqlite_file {
    use runproof_store::testsuite::Case;
    use runproof_store::{PoolSettings, open_store};

    async fn harness(case: Case) {
        // Removed when dropped, after the case (or its panic).
        let dir = tempfile::TempDir::new().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = open_store(&url, PoolSettings::default()).await.unwrap();
        case.run(store).await;
    }

    runproof_store::store_conformance!(harness);
}

mod postgres {
    use std::sync::Arc;

    use runproof_store::testsuite::Case;
    use runproof_store::{PostgresOptions, PostgresStore};
    use sqlx::Connection as _;

    const URL_VAR: &str = "RUNPROOF_TEST_DATABASE_URL";

    /// The server's URL, or `None` (after saying so) when PostgreSQL is not to be tested.
    fn database_url() -> Option<String> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{URL_VAR} is not set, and with CI=true the PostgreSQL suite must run"
                );
                println!("SKIPPED: PostgreSQL conformance case not run: {URL_VAR} is not set");
                None
            }
        }
    }

    /// Runs `case` on a store in a fresh schema, then drops the schema, even when the
    /// case panics.
    async fn harness(case: Case) {
        let Some(url) = database_url() else { return };
        let schema = format!("rp_test_{}", uuid::Uuid::new_v4().simple());
        let options = PostgresOptions {
            schema: Some(schema.clone()),
            ..PostgresOptions::default()
        };
        let u = url.clone();
        // In a task of its own, so that a panic comes back as a value and cleanup still runs.
        let outcome = tokio::spawn(async move {
            let store = PostgresStore::connect(&u, options).await.unwrap();
            let closing = store.clone();
            case.run(Arc::new(store)).await;
            closing.close().await;
        })
        .await;
        let mut admin = sqlx::PgConnection::connect(&url)
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

    runproof_store::store_conformance!(harness);
}

/// The case functions of the suite's source: `pub async fn` taking a `store` (`&dyn
/// Store` or `Arc<dyn Store>`).
fn case_fns(source: &str) -> BTreeSet<&str> {
    source
        .lines()
        .filter_map(|line| line.strip_prefix("pub async fn "))
        .filter_map(|rest| rest.split_once("(store: "))
        .filter(|(_, arg)| arg.starts_with("&dyn Store)") || arg.starts_with("Arc<dyn Store>)"))
        .map(|(name, _)| name)
        .collect()
}

/// Every case function of the suite is in the macro's list, once, so that no backend can
/// miss it; and the list names nothing else.
#[test]
fn every_case_is_declared_once() {
    // The suite's source: the module and the files of its submodules.
    let source = concat!(
        include_str!("../src/testsuite.rs"),
        include_str!("../src/testsuite/console.rs")
    );
    let mut declared: BTreeSet<&str> = STORE_CASES.iter().copied().collect();
    assert_eq!(declared.len(), STORE_CASES.len(), "a case is listed twice");
    let mut fns = case_fns(source);
    // Not a case: it runs the list in sequence.
    assert!(fns.remove("store_suite"), "the source was not read");
    assert!(
        fns.contains("concurrent_jti_has_one_winner"),
        "the source was not read"
    );
    let missing: Vec<_> = fns.difference(&declared).collect();
    assert!(missing.is_empty(), "not in store_conformance!: {missing:?}");
    declared.retain(|name| !fns.contains(name));
    assert!(
        declared.is_empty(),
        "listed but no case function: {declared:?}"
    );
}

/// The guard above reads exactly the functions taking a store: a forgotten one too.
#[test]
fn case_fns_are_those_taking_a_store() {
    let source = "pub async fn listed(store: &dyn Store) {\n}\n\
                  pub async fn forgotten(store: Arc<dyn Store>) {\n}\n\
                  pub async fn helper(store: &dyn BlobStore) {\n}\n\
                  pub async fn other(x: u8) {\n}\n";
    let fns = case_fns(source);
    assert_eq!(fns, BTreeSet::from(["forgotten", "listed"]));
}
