//! Backend-neutral conversions between the model and SQL columns.
//!
//! Both backends' schemas have the same columns, so rows decode and encode exactly the
//! same way on each. Flags are `bool`: PostgreSQL's `BOOLEAN`, SQLite's 0/1 integers
//! (which its schema's `CHECK`s keep to 0 and 1).

use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, RunIdentity, UnixTime};

use super::exec::Query;
use crate::error::{Corrupt, Invalid, StoreError};
use crate::github::{
    Installation, KnownInstallation, RepositoryBinding, RepositorySelection, WorkflowRunRecord,
};
use crate::model::{
    IdempotencyScope, Mode, NewUpload, PendingRun, UploadId, UploadRecord, UploadStatus,
};
use crate::outbox::{NewPush, PushRecord, PushStatus};
use crate::session::{NewSession, SessionRecord, SessionUse};

/// The columns every `SELECT` of an upload returns, as a literal so that `concat!` can
/// build whole statements as `&'static str` (what `sqlx::query` takes without ceremony).
macro_rules! upload_columns {
    () => {
        "id, status, mode, name, size, sha256, content_type, created_at, verified_at, \
         identity_json, reason"
    };
}
pub(crate) use upload_columns;

/// An `uploads` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UploadRow {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) mode: String,
    pub(crate) name: String,
    pub(crate) size: i64,
    pub(crate) sha256: String,
    pub(crate) content_type: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) verified_at: Option<i64>,
    pub(crate) identity_json: String,
    pub(crate) reason: Option<String>,
}

impl UploadRow {
    /// Decodes the row; any value the model cannot hold is reported as corruption.
    pub(crate) fn into_record(self) -> Result<UploadRecord, StoreError> {
        let id = UploadId::parse(&self.id)
            .ok_or_else(|| StoreError::Corrupt(Corrupt::text("upload id", &self.id, None)))?;
        let status = UploadStatus::parse(&self.status)
            .ok_or_else(|| corrupt_text("status", &self.status, &id))?;
        let mode = Mode::parse(&self.mode).ok_or_else(|| corrupt_text("mode", &self.mode, &id))?;
        let size = u64::try_from(self.size).map_err(|_| {
            StoreError::Corrupt(Corrupt::Negative {
                column: "size",
                value: self.size,
                row: Some(id.to_string()),
            })
        })?;
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(corrupt_text("sha256", &self.sha256, &id));
        }
        let identity = decode_identity(&self.identity_json, id.as_str())?;
        Ok(UploadRecord {
            status,
            mode,
            name: self.name,
            size,
            sha256: self.sha256.to_ascii_lowercase(),
            content_type: self.content_type,
            created_at: datetime(self.created_at, &id)?,
            verified_at: self.verified_at.map(|t| datetime(t, &id)).transpose()?,
            identity,
            reason: self.reason,
            id,
        })
    }
}

fn datetime(secs: i64, id: &UploadId) -> Result<time::OffsetDateTime, StoreError> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| StoreError::Corrupt(Corrupt::number("timestamp", secs, Some(id.to_string()))))
}

/// A [`NewUpload`] as column values, ready to bind.
#[derive(Debug)]
pub(crate) struct UploadParams {
    pub(crate) size: i64,
    pub(crate) sha256: String,
    pub(crate) identity_json: String,
    pub(crate) repository_id: i64,
    pub(crate) pending_repository_id: Option<i64>,
    pub(crate) pending_run_id: Option<i64>,
    pub(crate) pending_run_attempt: Option<i64>,
    /// The idempotency scope, stored only with a key.
    pub(crate) idempotency_scope: Option<String>,
}

impl UploadParams {
    /// Encodes the values that need it. Fails on values SQL integers cannot hold, which
    /// a real upload never has (sizes and GitHub ids stay far below `i64::MAX`).
    pub(crate) fn new(upload: &NewUpload) -> Result<Self, StoreError> {
        let size = i64::try_from(upload.size).map_err(|_| {
            StoreError::Invalid(Invalid::OutOfRange {
                what: "upload size",
                value: upload.size,
            })
        })?;
        let repository_id = sql_id(upload.identity.repository_id.get())?;
        let identity_json = identity_json(&upload.identity)?;
        let pending = upload.pending_run.as_ref();
        Ok(Self {
            size,
            sha256: hex::encode(upload.sha256),
            identity_json,
            repository_id,
            pending_repository_id: pending.map(|p| sql_id(p.repository_id.get())).transpose()?,
            pending_run_id: pending.map(|p| sql_id(p.run_id.get())).transpose()?,
            pending_run_attempt: pending.map(|p| i64::from(p.run_attempt)),
            idempotency_scope: upload.idempotency_key.as_ref().map(|_| {
                IdempotencyScope::new(upload.mode, &upload.identity)
                    .as_str()
                    .to_owned()
            }),
        })
    }
}

impl UploadParams {
    /// Binds `upload`'s columns (these values and the rest of `upload`) to the next
    /// placeholders, in `upload_insert_columns!` order.
    pub(crate) fn bind<'a>(&'a self, q: Query<'a>, upload: &'a NewUpload) -> Query<'a> {
        q.bind(upload.id.as_str())
            .bind(upload.status.as_str())
            .bind(upload.mode.as_str())
            .bind(&upload.name)
            .bind(self.size)
            .bind(&self.sha256)
            .bind(&upload.content_type)
            .bind(upload.created_at.0)
            .bind(upload.verified_at.map(|t| t.0))
            .bind(&self.identity_json)
            .bind(self.repository_id)
            .bind(&upload.reason)
            .bind(&upload.idempotency_key)
            .bind(self.pending_repository_id)
            .bind(self.pending_run_id)
            .bind(self.pending_run_attempt)
            .bind(upload.pending_run.as_ref().map(|p| p.head_sha.as_str()))
            .bind(&self.idempotency_scope)
    }
}

/// The columns an upload is inserted with, in [`UploadParams::bind`] order (18).
macro_rules! upload_insert_columns {
    () => {
        "id, status, mode, name, size, sha256, content_type, created_at, verified_at, \
         identity_json, repository_id, reason, idempotency_key, pending_repository_id, \
         pending_run_id, pending_run_attempt, pending_head_sha, idempotency_scope"
    };
}
pub(crate) use upload_insert_columns;

/// An identity as stored.
pub(crate) fn identity_json(identity: &RunIdentity) -> Result<String, StoreError> {
    serde_json::to_string(identity).map_err(|e| encode_error("identity", e))
}

/// The values [`crate::Store::resolve_pending`] writes besides status and reason.
#[derive(Debug)]
pub(crate) struct Resolution {
    pub(crate) identity_json: Option<String>,
    pub(crate) repository_id: Option<i64>,
    pub(crate) verified_at: Option<i64>,
}

impl Resolution {
    /// Encodes them; a pending upload cannot be resolved to pending.
    pub(crate) fn new(
        status: UploadStatus,
        identity: Option<&RunIdentity>,
        now: UnixTime,
    ) -> Result<Self, StoreError> {
        if status == UploadStatus::Pending {
            return Err(StoreError::Invalid(Invalid::PendingToPending));
        }
        Ok(Self {
            identity_json: identity.map(identity_json).transpose()?,
            repository_id: identity
                .map(|i| sql_id(i.repository_id.get()))
                .transpose()?,
            verified_at: (status == UploadStatus::Verified).then_some(now.0),
        })
    }
}

/// A pending upload with the run it claims, as
/// `SELECT upload_columns, pending_columns` returns it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PendingUploadRow {
    #[sqlx(flatten)]
    pub(crate) upload: UploadRow,
    pub(crate) pending_repository_id: Option<i64>,
    pub(crate) pending_run_id: Option<i64>,
    pub(crate) pending_run_attempt: Option<i64>,
    pub(crate) pending_head_sha: Option<String>,
}

impl PendingUploadRow {
    /// Decodes the row; a pending upload without its run is corruption.
    pub(crate) fn into_pair(self) -> Result<(UploadRecord, PendingRun), StoreError> {
        let record = self.upload.into_record()?;
        let (Some(repository_id), Some(run_id), Some(run_attempt), Some(head_sha)) = (
            self.pending_repository_id,
            self.pending_run_id,
            self.pending_run_attempt,
            self.pending_head_sha,
        ) else {
            return Err(StoreError::Corrupt(Corrupt::IncompleteRun {
                upload: record.id,
            }));
        };
        let run_attempt = u32::try_from(run_attempt).map_err(|_| {
            StoreError::Corrupt(Corrupt::number(
                "pending run_attempt",
                run_attempt,
                Some(record.id.to_string()),
            ))
        })?;
        let run = PendingRun {
            repository_id: RepositoryId(stored_id(repository_id, "pending repository id")?),
            run_id: RunId(stored_id(run_id, "pending run id")?),
            run_attempt,
            head_sha,
        };
        Ok((record, run))
    }
}

/// A count or a byte total as the model holds it; a negative one is corruption.
pub(crate) fn stored_count(value: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| negative(what, value))
}

/// A [`NewSession`] as column values, ready to bind.
#[derive(Debug)]
pub(crate) struct SessionParams {
    pub(crate) identity_json: String,
    pub(crate) repository_id: i64,
    pub(crate) max_uploads: i64,
    pub(crate) max_bytes: i64,
}

impl SessionParams {
    /// Encodes the values that need it. Limits beyond `i64::MAX` are stored as
    /// `i64::MAX`: no session reaches either.
    pub(crate) fn new(session: &NewSession) -> Result<Self, StoreError> {
        Ok(Self {
            identity_json: identity_json(&session.identity)?,
            repository_id: sql_id(session.identity.repository_id.get())?,
            max_uploads: i64::try_from(session.max_uploads).unwrap_or(i64::MAX),
            max_bytes: i64::try_from(session.max_bytes).unwrap_or(i64::MAX),
        })
    }
}

/// The columns every `SELECT` of a session returns.
macro_rules! session_columns {
    () => {
        "identity_json, expires_at, revoked, max_uploads, max_bytes, uploads_used, bytes_used"
    };
}
pub(crate) use session_columns;

/// A `sessions` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub(crate) identity_json: String,
    pub(crate) expires_at: i64,
    pub(crate) revoked: bool,
    pub(crate) max_uploads: i64,
    pub(crate) max_bytes: i64,
    pub(crate) uploads_used: i64,
    pub(crate) bytes_used: i64,
}

impl SessionRow {
    /// Decodes the row.
    pub(crate) fn into_record(self) -> Result<SessionRecord, StoreError> {
        Ok(SessionRecord {
            identity: decode_identity(&self.identity_json, "session")?,
            expires_at: UnixTime(self.expires_at),
            revoked: self.revoked,
            max_uploads: stored_count(self.max_uploads, "max_uploads")?,
            max_bytes: stored_count(self.max_bytes, "max_bytes")?,
            uploads_used: stored_count(self.uploads_used, "uploads_used")?,
            bytes_used: stored_count(self.bytes_used, "bytes_used")?,
        })
    }
}

/// What a granted `reserve_session` update returns.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GrantRow {
    pub(crate) identity_json: String,
    pub(crate) reserved: i64,
}

impl GrantRow {
    /// Decodes the row into the grant.
    pub(crate) fn into_grant(self) -> Result<SessionUse, StoreError> {
        Ok(SessionUse::Granted {
            identity: decode_identity(&self.identity_json, "session")?,
            reserved: stored_count(self.reserved, "reserved")?,
        })
    }
}

/// Takes one upload and the bytes an ask gets from a live session, in one statement,
/// returning the identity and the bytes taken. Its SET expressions all read the row as it
/// was (SQL evaluates them before any assignment), so `last_reserved` and `bytes_used`
/// grow by the same amount; `RETURNING` sees only new values, hence `last_reserved`.
/// Binds: `$1` bytes wanted, `$2` fewest that grant, `$3` token hash, `$4` now. Both
/// backends read `$n` placeholders.
pub(crate) const RESERVE_SESSION_SQL: &str = "UPDATE sessions SET \
     uploads_used = uploads_used + 1, \
     last_reserved = CASE WHEN max_bytes - bytes_used < $1 \
     THEN max_bytes - bytes_used ELSE $1 END, \
     bytes_used = bytes_used + CASE WHEN max_bytes - bytes_used < $1 \
     THEN max_bytes - bytes_used ELSE $1 END \
     WHERE token_hash = $3 AND revoked = FALSE AND expires_at > $4 \
     AND uploads_used < max_uploads AND max_bytes - bytes_used >= $2 \
     RETURNING identity_json, last_reserved AS reserved";

/// Gives uploads and bytes back to a session, never below zero. Binds: `$1` uploads,
/// `$2` bytes, `$3` token hash.
pub(crate) const RELEASE_SESSION_SQL: &str = "UPDATE sessions SET \
     uploads_used = CASE WHEN uploads_used < $1 THEN 0 ELSE uploads_used - $1 END, \
     bytes_used = CASE WHEN bytes_used < $2 THEN 0 ELSE bytes_used - $2 END \
     WHERE token_hash = $3";

fn decode_identity(json: &str, of: &str) -> Result<RunIdentity, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::Corrupt(Corrupt::Json {
            column: "identity",
            row: of.to_owned(),
            source: e,
        })
    })
}

/// `error` cut to [`crate::limits::MAX_PUSH_ERROR_CHARS`] characters.
pub(crate) fn truncate_error(error: &str) -> &str {
    match error
        .char_indices()
        .nth(crate::limits::MAX_PUSH_ERROR_CHARS)
    {
        Some((end, _)) => &error[..end],
        None => error,
    }
}

/// A [`NewPush`]'s payload as stored.
pub(crate) fn payload_json(push: &NewPush) -> Result<String, StoreError> {
    serde_json::to_string(&push.payload).map_err(|e| encode_error("delivery payload", e))
}

/// The columns every `SELECT` (or `RETURNING`) of a push returns.
macro_rules! push_columns {
    () => {
        "id, event, upload_id, payload_json, status, attempts, last_error, created_at, \
         next_attempt_at"
    };
}
pub(crate) use push_columns;

/// An `outbox` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PushRow {
    pub(crate) id: String,
    pub(crate) event: String,
    pub(crate) upload_id: String,
    pub(crate) payload_json: String,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) last_error: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) next_attempt_at: i64,
}

impl PushRow {
    /// Decodes the row.
    pub(crate) fn into_record(self) -> Result<PushRecord, StoreError> {
        let status = PushStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Corrupt(Corrupt::text(
                "status",
                &self.status,
                Some(format!("delivery {}", self.id)),
            ))
        })?;
        let attempts = u32::try_from(self.attempts).map_err(|_| {
            StoreError::Corrupt(Corrupt::number(
                "attempts",
                self.attempts,
                Some(format!("delivery {}", self.id)),
            ))
        })?;
        let payload = serde_json::from_str(&self.payload_json).map_err(|e| {
            StoreError::Corrupt(Corrupt::Json {
                column: "payload",
                row: format!("delivery {}", self.id),
                source: e,
            })
        })?;
        Ok(PushRecord {
            id: self.id,
            event: self.event,
            upload_id: self.upload_id,
            status,
            attempts,
            last_error: self.last_error,
            created_at: UnixTime(self.created_at),
            next_attempt_at: UnixTime(self.next_attempt_at),
            payload,
        })
    }
}

/// Decodes push rows, ordered by due time then id (`RETURNING` has no order).
pub(crate) fn into_pushes(rows: Vec<PushRow>) -> Result<Vec<PushRecord>, StoreError> {
    let mut records = rows
        .into_iter()
        .map(PushRow::into_record)
        .collect::<Result<Vec<_>, _>>()?;
    records.sort_by(|a, b| (a.next_attempt_at.0, &a.id).cmp(&(b.next_attempt_at.0, &b.id)));
    Ok(records)
}

/// Decodes stored upload ids.
pub(crate) fn into_upload_ids(ids: Vec<String>) -> Result<Vec<UploadId>, StoreError> {
    ids.into_iter()
        .map(|id| {
            UploadId::parse(&id)
                .ok_or_else(|| StoreError::Corrupt(Corrupt::text("upload id", &id, None)))
        })
        .collect()
}

/// A GitHub id as a SQL integer.
pub(crate) fn sql_id(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| {
        StoreError::Invalid(Invalid::OutOfRange {
            what: "id",
            value: id,
        })
    })
}

/// Clamps a requested page size to what a listing returns.
pub(crate) fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, crate::limits::MAX_PAGE_SIZE)
}

/// The columns every `SELECT` of an installation returns.
macro_rules! installation_columns {
    () => {
        "id, account_id, account_login, repository_selection, suspended, deleted, state_at, \
         unsettled"
    };
}
pub(crate) use installation_columns;

/// An `installations` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct InstallationRow {
    pub(crate) id: i64,
    pub(crate) account_id: i64,
    pub(crate) account_login: String,
    pub(crate) repository_selection: String,
    pub(crate) suspended: bool,
    pub(crate) deleted: bool,
    pub(crate) state_at: i64,
    pub(crate) unsettled: bool,
}

impl InstallationRow {
    /// Decodes the row.
    pub(crate) fn into_installation(self) -> Result<KnownInstallation, StoreError> {
        let id = InstallationId(stored_id(self.id, "installation id")?);
        let repository_selection = RepositorySelection::parse(&self.repository_selection)
            .ok_or_else(|| {
                StoreError::Corrupt(Corrupt::text(
                    "repository_selection",
                    &self.repository_selection,
                    Some(format!("installation {id}")),
                ))
            })?;
        let installation = Installation {
            id,
            account_id: OwnerId(stored_id(self.account_id, "account id")?),
            account_login: self.account_login,
            repository_selection,
            suspended: self.suspended,
            as_of: (self.state_at > 0).then_some(UnixTime(self.state_at)),
        };
        Ok(KnownInstallation {
            installation,
            deleted: self.deleted,
            unsettled: !self.deleted && self.unsettled,
        })
    }

    /// The access state the row keeps, for [`crate::github::Ordered::merge`].
    pub(crate) fn access(
        &self,
    ) -> Result<crate::github::Ordered<crate::github::InstallationAccess>, StoreError> {
        let selection =
            RepositorySelection::parse(&self.repository_selection).ok_or_else(|| {
                StoreError::Corrupt(Corrupt::text(
                    "repository_selection",
                    &self.repository_selection,
                    Some(format!("installation {}", self.id)),
                ))
            })?;
        Ok(crate::github::Ordered {
            state: crate::github::InstallationAccess {
                suspended: self.suspended,
                selection,
            },
            as_of: self.state_at,
            unsettled: self.unsettled,
        })
    }
}

/// A repository's binding, as the join of `installation_repositories` and
/// `installations` returns it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BindingRow {
    pub(crate) installation_id: i64,
    pub(crate) account_id: i64,
    pub(crate) suspended: bool,
    pub(crate) deleted: bool,
    pub(crate) removed: bool,
    pub(crate) repository_unsettled: bool,
    pub(crate) installation_unsettled: bool,
}

impl BindingRow {
    /// Decodes the row. It is unsettled when it is inactive only for reasons that are
    /// themselves unsettled (a deletion never is).
    pub(crate) fn into_binding(self) -> Result<RepositoryBinding, StoreError> {
        let (suspended, deleted, removed) = (self.suspended, self.deleted, self.removed);
        let removal_unsettled = self.repository_unsettled;
        let suspension_unsettled = self.installation_unsettled;
        let unsettled = !deleted
            && (removed || suspended)
            && (!removed || removal_unsettled)
            && (!suspended || suspension_unsettled);
        Ok(RepositoryBinding {
            installation_id: InstallationId(stored_id(self.installation_id, "installation id")?),
            account_id: OwnerId(stored_id(self.account_id, "account id")?),
            suspended,
            deleted,
            removed,
            unsettled,
        })
    }
}

/// A listed repository's access state as kept: `removed`, `state_at`, `unsettled`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ListedRow {
    pub(crate) removed: bool,
    pub(crate) state_at: i64,
    pub(crate) unsettled: bool,
}

impl ListedRow {
    /// The access state, for [`crate::github::Ordered::merge`].
    pub(crate) fn access(&self) -> crate::github::Ordered<crate::github::Removed> {
        crate::github::Ordered {
            state: crate::github::Removed(self.removed),
            as_of: self.state_at,
            unsettled: self.unsettled,
        }
    }
}

/// The columns every `SELECT` of a workflow run returns, in [`WorkflowRunParams`] order.
macro_rules! workflow_run_columns {
    () => {
        "repository_id, run_id, run_attempt, head_sha, head_repository_id, event, status, \
         conclusion, path, installation_id, repository_full_name, owner_id, run_started_at, \
         updated_at, completed_at, received_at"
    };
}
pub(crate) use workflow_run_columns;

/// Whether an `excluded` workflow run replaces the stored `workflow_runs` row on
/// conflict: never from `completed` back to another status; otherwise a later
/// `updated_at` wins, and at the same `updated_at` a later status in the lifecycle
/// (`completed` after `in_progress` after anything else). Shared by every backend's
/// `INSERT … ON CONFLICT … DO UPDATE SET … WHERE`.
macro_rules! workflow_run_replaces {
    () => {
        "NOT (workflow_runs.status = 'completed' AND excluded.status <> 'completed') \
         AND (excluded.updated_at > workflow_runs.updated_at \
              OR (excluded.updated_at = workflow_runs.updated_at \
                  AND (CASE excluded.status WHEN 'completed' THEN 2 \
                       WHEN 'in_progress' THEN 1 ELSE 0 END) \
                    > (CASE workflow_runs.status WHEN 'completed' THEN 2 \
                       WHEN 'in_progress' THEN 1 ELSE 0 END)))"
    };
}
pub(crate) use workflow_run_replaces;

/// A `workflow_runs` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WorkflowRunRow {
    pub(crate) repository_id: i64,
    pub(crate) run_id: i64,
    pub(crate) run_attempt: i64,
    pub(crate) head_sha: String,
    pub(crate) head_repository_id: Option<i64>,
    pub(crate) event: String,
    pub(crate) status: String,
    pub(crate) conclusion: Option<String>,
    pub(crate) path: String,
    pub(crate) installation_id: Option<i64>,
    pub(crate) repository_full_name: String,
    pub(crate) owner_id: i64,
    pub(crate) run_started_at: Option<i64>,
    pub(crate) updated_at: i64,
    pub(crate) completed_at: Option<i64>,
    pub(crate) received_at: i64,
}

impl WorkflowRunRow {
    /// Decodes the row.
    pub(crate) fn into_record(self) -> Result<WorkflowRunRecord, StoreError> {
        let run_attempt = u32::try_from(self.run_attempt).map_err(|_| {
            StoreError::Corrupt(Corrupt::number("run_attempt", self.run_attempt, None))
        })?;
        Ok(WorkflowRunRecord {
            repository_id: RepositoryId(stored_id(self.repository_id, "repository id")?),
            run_id: RunId(stored_id(self.run_id, "run id")?),
            run_attempt,
            head_sha: self.head_sha,
            head_repository_id: self
                .head_repository_id
                .map(|id| stored_id(id, "head repository id").map(RepositoryId))
                .transpose()?,
            event: self.event,
            status: self.status,
            conclusion: self.conclusion,
            path: self.path,
            installation_id: self
                .installation_id
                .map(|id| stored_id(id, "installation id").map(InstallationId))
                .transpose()?,
            repository_full_name: self.repository_full_name,
            owner_id: OwnerId(stored_id(self.owner_id, "owner id")?),
            run_started_at: self.run_started_at.map(UnixTime),
            updated_at: UnixTime(self.updated_at),
            completed_at: self.completed_at.map(UnixTime),
            received_at: UnixTime(self.received_at),
        })
    }
}

/// The integer columns of a [`WorkflowRunRecord`], ready to bind.
#[derive(Debug)]
pub(crate) struct WorkflowRunParams {
    pub(crate) repository_id: i64,
    pub(crate) run_id: i64,
    pub(crate) run_attempt: i64,
    pub(crate) head_repository_id: Option<i64>,
    pub(crate) installation_id: Option<i64>,
    pub(crate) owner_id: i64,
}

impl WorkflowRunParams {
    /// Encodes the ids; fails on ids SQL integers cannot hold.
    pub(crate) fn new(run: &WorkflowRunRecord) -> Result<Self, StoreError> {
        Ok(Self {
            repository_id: sql_id(run.repository_id.get())?,
            run_id: sql_id(run.run_id.get())?,
            run_attempt: i64::from(run.run_attempt),
            head_repository_id: run
                .head_repository_id
                .map(|id| sql_id(id.get()))
                .transpose()?,
            installation_id: run.installation_id.map(|id| sql_id(id.get())).transpose()?,
            owner_id: sql_id(run.owner_id.get())?,
        })
    }
}

/// A stored GitHub id; a negative one is corruption.
pub(crate) fn stored_id(id: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(id).map_err(|_| negative(what, id))
}

/// A stored text value of upload `id` that the model does not know.
fn corrupt_text(column: &'static str, value: &str, id: &UploadId) -> StoreError {
    StoreError::Corrupt(Corrupt::text(column, value, Some(id.to_string())))
}

/// A negative count, size or id, of no row in particular.
fn negative(column: &'static str, value: i64) -> StoreError {
    StoreError::Corrupt(Corrupt::Negative {
        column,
        value,
        row: None,
    })
}

/// A value that does not encode as JSON.
fn encode_error(what: &'static str, e: serde_json::Error) -> StoreError {
    StoreError::Invalid(Invalid::Encode { what, source: e })
}
