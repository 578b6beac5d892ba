//! Backend-neutral conversions between the model and SQL columns.
//!
//! Kept apart from the SQLite code so that a PostgreSQL backend, whose schema has the
//! same columns, decodes and encodes rows exactly the same way.

use runproof_core::RunIdentity;

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
