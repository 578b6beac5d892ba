//! Conformance cases of what the operator console reads and writes: its sign-in
//! sessions, its counts, installations and their repositories, filtered upload lists and
//! pushes page by page.

use runproof_core::UnixTime;

use crate::{Invalid, Store, StoreError};

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
