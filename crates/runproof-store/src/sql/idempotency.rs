//! Finding an upload by its idempotency key: what both a single insert and a batch's
//! commit look up.

use super::exec::{Exec, db_error, query};
use super::row::{UploadRow, upload_columns};
use crate::error::StoreError;
use crate::model::{IdempotencyScope, UploadRecord};

/// The upload inserted with this idempotency key in this scope, as `exec` (the pool, or
/// a transaction) sees it.
pub(crate) async fn upload_by_idempotency_key(
    exec: impl Into<Exec<'_>>,
    scope: &IdempotencyScope,
    key: &str,
) -> Result<Option<UploadRecord>, StoreError> {
    query(concat!(
        "SELECT ",
        upload_columns!(),
        " FROM uploads WHERE idempotency_scope = $1 AND idempotency_key = $2"
    ))
    .bind(scope.as_str())
    .bind(key)
    .fetch_optional(exec)
    .await
    .map_err(db_error)?
    .map(UploadRow::into_record)
    .transpose()
}
