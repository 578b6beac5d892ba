//! The statements the operator console needs: its sign-in sessions, the overview's
//! counts, the installations and their repositories, and pushes page by page.

use runproof_core::UnixTime;

use super::exec::{Pool, db_error, is_unique_violation, query};
use crate::error::{Invalid, StoreError};

/// Stores a console session.
pub(crate) async fn create_session(
    pool: &Pool,
    token_hash: &str,
    created_at: UnixTime,
    expires_at: UnixTime,
) -> Result<(), StoreError> {
    let done = query(
        "INSERT INTO console_sessions (token_hash, created_at, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(token_hash)
    .bind(created_at.0)
    .bind(expires_at.0)
    .execute(pool)
    .await;
    match done {
        Ok(_) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(StoreError::Invalid(Invalid::SessionExists)),
        Err(e) => Err(db_error(e)),
    }
}

/// Whether the session exists and expires after `now`.
pub(crate) async fn session_valid(
    pool: &Pool,
    token_hash: &str,
    now: UnixTime,
) -> Result<bool, StoreError> {
    let found: Option<(i64,)> =
        query("SELECT expires_at FROM console_sessions WHERE token_hash = $1 AND expires_at > $2")
            .bind(token_hash)
            .bind(now.0)
            .fetch_optional(pool)
            .await
            .map_err(db_error)?;
    Ok(found.is_some())
}

/// Deletes one session; whether there was one.
pub(crate) async fn delete_session(pool: &Pool, token_hash: &str) -> Result<bool, StoreError> {
    let deleted = query("DELETE FROM console_sessions WHERE token_hash = $1")
        .bind(token_hash)
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(deleted > 0)
}

/// Deletes the sessions expired at `now` (the complement of [`session_valid`]'s bound).
pub(crate) async fn purge_sessions(pool: &Pool, now: UnixTime) -> Result<u64, StoreError> {
    query("DELETE FROM console_sessions WHERE expires_at <= $1")
        .bind(now.0)
        .execute(pool)
        .await
        .map_err(db_error)
}
