//! The outbox channel: on PostgreSQL, every enqueue notifies [`OUTBOX_CHANNEL`] at
//! commit, and listeners wake at once instead of at their next poll. The channel is
//! database-wide: stores on other schemas of the same database wake each other
//! spuriously, which is harmless. SQLite has no cross-process signal: its push
//! workers poll.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

use super::exec::{Pool, Tx, db_error, query};
use crate::error::{Invalid, StoreError};

/// The channel notified whenever pushes are enqueued.
pub const OUTBOX_CHANNEL: &str = "runproof_outbox";

/// The first wait before listening again after a failure.
const LISTEN_MIN_BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait between attempts to listen again.
const LISTEN_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Announces, when `tx` commits, that pushes were enqueued in it: a notification on
/// [`OUTBOX_CHANNEL`] for PostgreSQL's listeners (sent at commit, not at all on
/// rollback); nothing on SQLite, whose workers poll.
///
/// # Errors
/// [`StoreError`] when the database fails.
pub(crate) async fn announce_pushes(tx: &mut Tx) -> Result<(), StoreError> {
    if tx.dialect().notifies {
        query("SELECT pg_notify($1, '')")
            .bind(OUTBOX_CHANNEL)
            .execute(tx)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}

/// Listens for [`OUTBOX_CHANNEL`] now (failing when the first connection fails) and
/// forwards each notification as `()`, coalesced, reconnecting after failures: what
/// [`SqlStore::listen_outbox`](crate::SqlStore::listen_outbox) returns.
///
/// # Errors
/// [`StoreError::Unavailable`] when the database cannot be reached,
/// [`StoreError::Invalid`] when `pool` is not PostgreSQL's.
pub(crate) async fn listen_outbox(pool: &Pool) -> Result<mpsc::Receiver<()>, StoreError> {
    let Pool::Postgres(pool) = pool else {
        return Err(StoreError::Invalid(Invalid::NotPostgres));
    };
    let listener = listen(pool).await.map_err(db_error)?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(forward_notifications(pool.clone(), tx, Some(listener)));
    Ok(rx)
}

/// What [`crate::Store::outbox_notifications`] returns: on PostgreSQL, wake-ups from a
/// listener that connects in the background (and says so with a first wake-up); on
/// SQLite, `None` (no cross-process signal: push workers poll).
pub(crate) fn outbox_wakeups(pool: &Pool) -> Option<mpsc::Receiver<()>> {
    let Pool::Postgres(pool) = pool else {
        return None;
    };
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(forward_notifications(pool.clone(), tx, None));
    Some(rx)
}

/// Listens on [`OUTBOX_CHANNEL`] over a connection of `pool`.
async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(OUTBOX_CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications of [`OUTBOX_CHANNEL`] to `tx` (coalesced: one pending wake-up
/// at most) until `tx`'s receiver is dropped or the pool is closed. Starts with
/// `listener` when given; (re)connects with exponential backoff, and sends a wake-up
/// after each reconnection, since notifications sent meanwhile are lost.
async fn forward_notifications(
    pool: PgPool,
    tx: mpsc::Sender<()>,
    mut listener: Option<PgListener>,
) {
    let mut backoff = LISTEN_MIN_BACKOFF;
    loop {
        let mut current = match listener.take() {
            Some(current) => current,
            None => {
                let attempt = tokio::select! {
                    () = tx.closed() => return,
                    attempt = listen(&pool) => attempt,
                };
                match attempt {
                    Ok(current) => {
                        if !wake(&tx) {
                            return;
                        }
                        current
                    }
                    Err(sqlx::Error::PoolClosed) => return,
                    Err(e) => {
                        tracing::warn!(error = %db_error(e), retry_in = ?backoff, "cannot listen for outbox notifications");
                        if !pause(&tx, &mut backoff).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        loop {
            let next = tokio::select! {
                () = tx.closed() => return,
                next = current.recv() => next,
            };
            match next {
                Ok(_) => {
                    backoff = LISTEN_MIN_BACKOFF;
                    if !wake(&tx) {
                        return;
                    }
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %db_error(e), retry_in = ?backoff, "outbox notifications interrupted");
                    drop(current);
                    if !pause(&tx, &mut backoff).await {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Sends a wake-up unless one is already waiting. Returns `false` when nobody listens.
fn wake(tx: &mpsc::Sender<()>) -> bool {
    !matches!(tx.try_send(()), Err(mpsc::error::TrySendError::Closed(())))
}

/// Waits `backoff` (then doubles it, up to [`LISTEN_MAX_BACKOFF`]). Returns `false` when
/// the receiver was dropped meanwhile.
async fn pause(tx: &mpsc::Sender<()>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(LISTEN_MAX_BACKOFF);
    tokio::select! {
        () = tx.closed() => false,
        () = tokio::time::sleep(wait) => true,
    }
}
