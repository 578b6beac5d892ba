//! The effects of a GitHub webhook delivery, applied inside its transaction.
//!
//! Access state (suspension, repository selection, removal) is merged by event time
//! (see [`crate::github::Ordered`]): each row is read, merged and written back while the
//! transaction holds it (PostgreSQL: a row lock; SQLite: the write lock).

use runproof_core::{InstallationId, RepositoryId, UnixTime};

use super::exec::{Tx, db_error, query, query_built};
use super::row::{
    InstallationRow, ListedRow, WorkflowRunParams, installation_columns, sql_id,
    workflow_run_columns, workflow_run_replaces,
};
use crate::error::StoreError;
use crate::github::{
    Installation, InstallationAccess, InstalledRepository, Removed, WebhookEffect,
    WorkflowRunRecord,
};

/// Applies one webhook effect inside the delivery's transaction; `now` is the delivery's
/// receipt time.
pub(super) async fn apply_effect(
    tx: &mut Tx,
    effect: &WebhookEffect,
    now: UnixTime,
) -> Result<(), StoreError> {
    match effect {
        WebhookEffect::UpsertInstallation(installation) => {
            upsert_installation(tx, installation, now).await
        }
        WebhookEffect::DeleteInstallation(installation_id) => {
            query("UPDATE installations SET deleted = TRUE, updated_at = $1 WHERE id = $2")
                .bind(now.0)
                .bind(sql_id(installation_id.get())?)
                .execute(tx)
                .await
                .map_err(db_error)?;
            Ok(())
        }
        WebhookEffect::AddRepositories {
            installation_id,
            repositories,
            as_of,
        } => {
            // Row locks in id order, so that two deliveries listing the same repositories
            // in different orders cannot deadlock. Stable: a repeated id keeps its last name.
            let mut sorted: Vec<&InstalledRepository> = repositories.iter().collect();
            sorted.sort_by_key(|r| r.id.get());
            for repository in sorted {
                list_repository(tx, *installation_id, repository, false, *as_of, now).await?;
            }
            Ok(())
        }
        WebhookEffect::RemoveRepositories {
            installation_id,
            repository_ids,
            as_of,
        } => {
            let mut sorted: Vec<RepositoryId> = repository_ids.clone();
            sorted.sort_by_key(|id| id.get());
            for id in sorted {
                let repository = InstalledRepository {
                    id,
                    full_name: String::new(),
                };
                list_repository(tx, *installation_id, &repository, true, *as_of, now).await?;
            }
            Ok(())
        }
        WebhookEffect::UpsertWorkflowRun(run) => upsert_workflow_run(tx, run).await,
    }
}

/// Inserts an installation, or merges its access state by event time; `deleted` is never
/// cleared.
async fn upsert_installation(
    tx: &mut Tx,
    installation: &Installation,
    now: UnixTime,
) -> Result<(), StoreError> {
    let id = sql_id(installation.id.get())?;
    let account_id = sql_id(installation.account_id.get())?;
    let inserted = query(
        "INSERT INTO installations (id, account_id, account_login, repository_selection, \
         suspended, deleted, updated_at, state_at, unsettled) \
         VALUES ($1, $2, $3, $4, $5, FALSE, $6, $7, FALSE) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(account_id)
    .bind(&installation.account_login)
    .bind(installation.repository_selection.as_str())
    .bind(installation.suspended)
    .bind(now.0)
    .bind(installation.as_of.map_or(0, |t| t.0))
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    if inserted == 1 {
        return Ok(());
    }
    let sql = format!(
        concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE id = $1{}"
        ),
        tx.dialect().lock_row
    );
    let row: InstallationRow = query_built(sql)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let kept = row
        .access()?
        .merge(InstallationAccess::of(installation), installation.as_of);
    query(
        "UPDATE installations SET account_id = $1, account_login = $2, \
         repository_selection = $3, suspended = $4, state_at = $5, unsettled = $6, \
         updated_at = $7 WHERE id = $8",
    )
    .bind(account_id)
    .bind(&installation.account_login)
    .bind(kept.state.selection.as_str())
    .bind(kept.state.suspended)
    .bind(kept.as_of)
    .bind(kept.unsettled)
    .bind(now.0)
    .bind(id)
    .execute(tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Lists (`removed` false) or removes a repository of an installation as of `as_of`,
/// merging with what is kept by event time. A removal of a repository never listed
/// leaves a tombstone: "removed" must not read as "unknown", which a caller might resolve
/// through the account's installation.
async fn list_repository(
    tx: &mut Tx,
    installation_id: InstallationId,
    repository: &InstalledRepository,
    removed: bool,
    as_of: Option<UnixTime>,
    now: UnixTime,
) -> Result<(), StoreError> {
    let installation_id = sql_id(installation_id.get())?;
    let repository_id = sql_id(repository.id.get())?;
    let inserted = query(
        "INSERT INTO installation_repositories (installation_id, repository_id, full_name, \
         removed, updated_at, state_at, unsettled) VALUES ($1, $2, $3, $4, $5, $6, FALSE) \
         ON CONFLICT (installation_id, repository_id) DO NOTHING",
    )
    .bind(installation_id)
    .bind(repository_id)
    .bind(&repository.full_name)
    .bind(removed)
    .bind(now.0)
    .bind(as_of.map_or(0, |t| t.0))
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    if inserted == 1 {
        return Ok(());
    }
    let sql = format!(
        "SELECT removed, state_at, unsettled FROM installation_repositories \
         WHERE installation_id = $1 AND repository_id = $2{}",
        tx.dialect().lock_row
    );
    let row: ListedRow = query_built(sql)
        .bind(installation_id)
        .bind(repository_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let kept = row.access().merge(Removed(removed), as_of);
    query(
        "UPDATE installation_repositories SET \
         full_name = CASE WHEN $1 = '' THEN full_name ELSE $1 END, \
         removed = $2, state_at = $3, unsettled = $4, updated_at = $5 \
         WHERE installation_id = $6 AND repository_id = $7",
    )
    .bind(&repository.full_name)
    .bind(kept.state.0)
    .bind(kept.as_of)
    .bind(kept.unsettled)
    .bind(now.0)
    .bind(installation_id)
    .bind(repository_id)
    .execute(tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Records a workflow run attempt, unless the stored one is later (see
/// `workflow_run_replaces!`).
async fn upsert_workflow_run(tx: &mut Tx, run: &WorkflowRunRecord) -> Result<(), StoreError> {
    let params = WorkflowRunParams::new(run)?;
    query(concat!(
        "INSERT INTO workflow_runs (",
        workflow_run_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (repository_id, run_id, run_attempt) DO UPDATE SET \
         head_sha = excluded.head_sha, head_repository_id = excluded.head_repository_id, \
         event = excluded.event, status = excluded.status, \
         conclusion = excluded.conclusion, path = excluded.path, \
         installation_id = excluded.installation_id, \
         repository_full_name = excluded.repository_full_name, \
         owner_id = excluded.owner_id, run_started_at = excluded.run_started_at, \
         updated_at = excluded.updated_at, completed_at = excluded.completed_at, \
         received_at = excluded.received_at WHERE ",
        workflow_run_replaces!()
    ))
    .bind(params.repository_id)
    .bind(params.run_id)
    .bind(params.run_attempt)
    .bind(&run.head_sha)
    .bind(params.head_repository_id)
    .bind(&run.event)
    .bind(&run.status)
    .bind(&run.conclusion)
    .bind(&run.path)
    .bind(params.installation_id)
    .bind(&run.repository_full_name)
    .bind(params.owner_id)
    .bind(run.run_started_at.map(|t| t.0))
    .bind(run.updated_at.0)
    .bind(run.completed_at.map(|t| t.0))
    .bind(run.received_at.0)
    .execute(tx)
    .await
    .map_err(db_error)?;
    Ok(())
}
