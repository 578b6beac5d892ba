//! Backend-neutral conversions between the model and SQL columns.
//!
//! Kept apart from the SQLite code so that a PostgreSQL backend, whose schema has the
//! same columns, decodes and encodes rows exactly the same way.

use runproof_core::{InstallationId, OwnerId, RepositoryId, RunId, RunIdentity, UnixTime};

use crate::github::{Installation, RepositoryBinding, RepositorySelection, WorkflowRunRecord};
use crate::model::{Mode, NewUpload, StoreError, UploadId, UploadRecord, UploadStatus};

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
            .ok_or_else(|| StoreError::Corrupt(format!("upload id {:?}", self.id)))?;
        let status = UploadStatus::parse(&self.status)
            .ok_or_else(|| StoreError::Corrupt(format!("status {:?} of {id}", self.status)))?;
        let mode = Mode::parse(&self.mode)
            .ok_or_else(|| StoreError::Corrupt(format!("mode {:?} of {id}", self.mode)))?;
        let size = u64::try_from(self.size)
            .map_err(|_| StoreError::Corrupt(format!("negative size of {id}")))?;
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Corrupt(format!("sha256 of {id}")));
        }
        let identity: RunIdentity = serde_json::from_str(&self.identity_json)
            .map_err(|e| StoreError::Corrupt(format!("identity of {id}: {e}")))?;
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
        .map_err(|_| StoreError::Corrupt(format!("timestamp {secs} of {id}")))
}

/// A [`NewUpload`] as column values, ready to bind.
#[derive(Debug)]
pub(crate) struct UploadParams {
    pub(crate) size: i64,
    pub(crate) sha256: String,
    pub(crate) identity_json: String,
    pub(crate) repository_id: i64,
}

impl UploadParams {
    /// Encodes the values that need it. Fails on values SQL integers cannot hold, which
    /// a real upload never has (sizes and GitHub ids stay far below `i64::MAX`).
    pub(crate) fn new(upload: &NewUpload) -> Result<Self, StoreError> {
        let size = i64::try_from(upload.size)
            .map_err(|_| StoreError::Invalid("upload size out of range".into()))?;
        let repository_id = sql_id(upload.identity.repository_id.get())?;
        let identity_json = serde_json::to_string(&upload.identity)
            .map_err(|e| StoreError::Invalid(format!("cannot encode identity: {e}")))?;
        Ok(Self {
            size,
            sha256: hex::encode(upload.sha256),
            identity_json,
            repository_id,
        })
    }
}

/// A GitHub id as a SQL integer.
pub(crate) fn sql_id(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::Invalid("id out of range".into()))
}

/// Clamps a requested page size to what a listing returns.
pub(crate) fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, crate::MAX_PAGE_SIZE)
}

/// The columns every `SELECT` of an installation returns.
macro_rules! installation_columns {
    () => {
        "id, account_id, account_login, repository_selection, suspended, deleted"
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
    pub(crate) suspended: i64,
    pub(crate) deleted: i64,
}

impl InstallationRow {
    /// Decodes the row into the installation and whether it is deleted.
    pub(crate) fn into_installation(self) -> Result<(Installation, bool), StoreError> {
        let id = InstallationId(stored_id(self.id, "installation id")?);
        let repository_selection = RepositorySelection::parse(&self.repository_selection)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "repository_selection {:?} of installation {id}",
                    self.repository_selection
                ))
            })?;
        let installation = Installation {
            id,
            account_id: OwnerId(stored_id(self.account_id, "account id")?),
            account_login: self.account_login,
            repository_selection,
            suspended: stored_bool(self.suspended, "suspended")?,
        };
        Ok((installation, stored_bool(self.deleted, "deleted")?))
    }
}

/// A repository's binding, as the join of `installation_repositories` and
/// `installations` returns it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BindingRow {
    pub(crate) installation_id: i64,
    pub(crate) account_id: i64,
    pub(crate) suspended: i64,
    pub(crate) deleted: i64,
    pub(crate) removed: i64,
}

impl BindingRow {
    /// Decodes the row.
    pub(crate) fn into_binding(self) -> Result<RepositoryBinding, StoreError> {
        Ok(RepositoryBinding {
            installation_id: InstallationId(stored_id(self.installation_id, "installation id")?),
            account_id: OwnerId(stored_id(self.account_id, "account id")?),
            suspended: stored_bool(self.suspended, "suspended")?,
            deleted: stored_bool(self.deleted, "deleted")?,
            removed: stored_bool(self.removed, "removed")?,
        })
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
        let run_attempt = u32::try_from(self.run_attempt)
            .map_err(|_| StoreError::Corrupt(format!("run_attempt {}", self.run_attempt)))?;
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
fn stored_id(id: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(id).map_err(|_| StoreError::Corrupt(format!("negative {what} {id}")))
}

/// A stored boolean: exactly 0 or 1.
fn stored_bool(value: i64, what: &str) -> Result<bool, StoreError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(StoreError::Corrupt(format!("{what} is {other}"))),
    }
}

/// A boolean as stored.
pub(crate) const fn sql_bool(value: bool) -> i64 {
    if value { 1 } else { 0 }
}
