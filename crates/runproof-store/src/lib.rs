//! Persistence for runproof.
//!
//! Two concerns live here, each behind a trait so that other backends can follow
//! without changing callers:
//! - [`Store`]: upload records, the replay guard (used `jti`s), upload sessions, the
//!   push outbox (signed pushes to the App, enqueued in the transaction of the upload change
//!   they announce), each repository's trust rules set through the API, the event log, and
//!   the GitHub App
//!   state learnt from webhooks (installations, webhook delivery ids, workflow runs), in
//!   SQLite by default or PostgreSQL.
//! - [`BlobStore`]: upload bodies, streamed in and out, on the local filesystem by
//!   default. A blob becomes visible only when complete: bytes go to a temporary file,
//!   which is fsynced and renamed into place on commit.
//!
//! What it does not do: verify anything. Callers hand it values the core has verified.
//!
//! Threat model in brief: uniqueness that guards security (a `jti` used once, an
//! idempotency key, a webhook delivery id) is enforced by the database, atomically, so it
//! holds under concurrency and across processes sharing the database.
//!
//! Where it sits: above `runproof-core` (ids, times, the run identity), below the
//! service that decides what to store. Inside, each module uses only those lower than
//! itself; this file only declares them and re-exports their public items:
//! - values: `limits`, `outbox`, `model`, `error`, `github`, `session`, `reservation`,
//!   `repository_rules`, `event`, `write`, `console`;
//! - the traits: `store` ([`Store`]) and `blob` ([`BlobStore`]);
//! - what uses them: `sql` (the [`Store`] of both databases), `sqlite` and `postgres`
//!   (opening it), `open`; `local` and `s3` (the [`BlobStore`]s); `namespace`, `inline`
//!   and `pipeline` (built on both traits).
#![forbid(unsafe_code)]

mod blob;
mod console;
mod error;
mod event;
mod github;
mod inline;
mod limits;
mod local;
mod model;
mod namespace;
mod open;
mod outbox;
mod pipeline;
mod postgres;
mod repository_rules;
mod reservation;
mod s3;
mod session;
mod sql;
mod sqlite;
mod store;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
mod write;

pub use blob::{BlobError, BlobStore, BlobWriter, ReadStream};
pub use console::{ConsoleCounts, PushFilter};
pub use error::{Corrupt, Invalid, StoreError, Unavailable};
pub use event::{
    EVENT_HOUR_SECONDS, EventCursor, EventFilter, EventHour, EventKind, EventOutcome, EventRecord,
    EventSplit, MAX_EVENT_MISMATCHES_BYTES, MAX_EVENT_TEXT_CHARS, NewEvent, event_hour,
};
pub use github::{
    Installation, InstalledRepository, KnownInstallation, MAX_WEBHOOK_DELIVERY_ID_LEN,
    RepositoryBinding, RepositorySelection, WebhookDelivery, WebhookEffect, WorkflowRunRecord,
};
pub use inline::InlineBodies;
pub use limits::{
    MAX_PAGE_SIZE, MAX_PUSH_ERROR_CHARS, MAX_RUN_ATTEMPTS_LISTED, PENDING_EXPIRED_REASON,
};
pub use local::LocalBlobStore;
pub use model::{
    Cursor, IdempotencyScope, ListFilter, Mode, NamespaceRecord, NewUpload, PendingRun,
    ReservationId, UploadId, UploadRecord, UploadStatus,
};
pub use namespace::{
    MARKER_NAME, MAX_MARKER_BYTES, NamespaceError, NamespaceMarker, Site, bind_namespace,
    check_namespace,
};
pub use open::{DatabaseKind, PoolSettings, open_store};
pub use outbox::{NewPush, PushRecord, PushStatus};
pub use pipeline::{CommitPipeline, InlinePermit, PipelineSettings};
pub use postgres::{PostgresOptions, PostgresStore};
pub use repository_rules::RepositoryRules;
pub use reservation::{CountableClaims, PendingLimits, PendingReservation, Reserved};
pub use s3::{BufferUsage, DEFAULT_MAX_BUFFER_BYTES, MIN_BUFFER_BYTES, S3BlobStore, S3Config};
pub use session::{NewSession, SessionAsk, SessionRecord, SessionUse};
pub use sql::{OUTBOX_CHANNEL, SqlStore};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::Store;
pub use write::{Committed, UploadWrite, UsedJti};
