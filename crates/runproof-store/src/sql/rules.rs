//! The statements of repository rules ([`RepositoryRules`]): read, replace, delete.

use runproof_core::rules::TrustRule;
use runproof_core::{RepositoryId, UnixTime};

use super::exec::{Pool, db_error, query};
use super::row::sql_id;
use crate::error::{Corrupt, Invalid, StoreError};
use crate::repository_rules::RepositoryRules;

/// A `repository_rules` row as stored.
#[derive(Debug, sqlx::FromRow)]
struct RulesRow {
    repository_id: i64,
    rules_json: String,
    updated_at: i64,
}

impl RulesRow {
    fn into_record(self) -> Result<RepositoryRules, StoreError> {
        let id = u64::try_from(self.repository_id).map_err(|_| {
            StoreError::Corrupt(Corrupt::Negative {
                column: "repository_id",
                value: self.repository_id,
                row: None,
            })
        })?;
        let rules: Vec<TrustRule> = serde_json::from_str(&self.rules_json).map_err(|source| {
            StoreError::Corrupt(Corrupt::Json {
                column: "rules_json",
                row: format!("repository {id}"),
                source,
            })
        })?;
        Ok(RepositoryRules {
            repository_id: RepositoryId(id),
            rules,
            updated_at: UnixTime(self.updated_at),
        })
    }
}

/// The rules of `repository_id`, if any are stored.
pub(crate) async fn get(
    pool: &Pool,
    repository_id: RepositoryId,
) -> Result<Option<RepositoryRules>, StoreError> {
    query(
        "SELECT repository_id, rules_json, updated_at FROM repository_rules \
         WHERE repository_id = $1",
    )
    .bind(sql_id(repository_id.get())?)
    .fetch_optional::<RulesRow>(pool)
    .await
    .map_err(db_error)?
    .map(RulesRow::into_record)
    .transpose()
}

/// Replaces the rules of `repository_id` with `rules`, in one statement.
pub(crate) async fn put(
    pool: &Pool,
    repository_id: RepositoryId,
    rules: &[TrustRule],
    now: UnixTime,
) -> Result<RepositoryRules, StoreError> {
    let json = serde_json::to_string(rules).map_err(|source| {
        StoreError::Invalid(Invalid::Encode {
            what: "repository rules",
            source,
        })
    })?;
    query(
        "INSERT INTO repository_rules (repository_id, rules_json, updated_at) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (repository_id) DO UPDATE \
         SET rules_json = excluded.rules_json, updated_at = excluded.updated_at",
    )
    .bind(sql_id(repository_id.get())?)
    .bind(json.as_str())
    .bind(now.0)
    .execute(pool)
    .await
    .map_err(db_error)?;
    Ok(RepositoryRules {
        repository_id,
        rules: rules.to_vec(),
        updated_at: now,
    })
}

/// Deletes the rules of `repository_id`; `true` when there were some.
pub(crate) async fn delete(pool: &Pool, repository_id: RepositoryId) -> Result<bool, StoreError> {
    let deleted = query("DELETE FROM repository_rules WHERE repository_id = $1")
        .bind(sql_id(repository_id.get())?)
        .execute(pool)
        .await
        .map_err(db_error)?;
    Ok(deleted > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(rules_json: &str) -> RulesRow {
        RulesRow {
            repository_id: 7,
            rules_json: rules_json.into(),
            updated_at: 1_700_000_000,
        }
    }

    #[test]
    fn stored_rules_decode() {
        let record = row(r#"[{"name":"main","refs":["refs/heads/main"]}]"#)
            .into_record()
            .unwrap();
        assert_eq!(record.repository_id, RepositoryId(7));
        assert_eq!(record.rules.len(), 1);
        assert_eq!(record.rules[0].name, "main");
    }

    #[test]
    fn rule_stored_rules_that_do_not_decode_are_corrupt_never_empty() {
        for bad in [
            "not json",
            r#"[{"name":"x","unknown_field":1}]"#,
            r#"{"rules":[]}"#,
        ] {
            let e = row(bad).into_record().unwrap_err();
            assert!(
                matches!(e, StoreError::Corrupt(Corrupt::Json { .. })),
                "{bad}: {e:?}"
            );
        }
        let negative = RulesRow {
            repository_id: -1,
            ..row("[]")
        };
        assert!(matches!(
            negative.into_record(),
            Err(StoreError::Corrupt(Corrupt::Negative { .. }))
        ));
    }
}
