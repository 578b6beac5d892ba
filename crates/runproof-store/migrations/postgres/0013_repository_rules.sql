-- The PostgreSQL twin of migrations/sqlite/0013_repository_rules.sql: a repository's trust
-- rules set through the API, one row per repository, the rules as a JSON array, replaced
-- whole on each write; `updated_at` in Unix seconds.
CREATE TABLE repository_rules (
    repository_id BIGINT NOT NULL PRIMARY KEY,
    rules_json    TEXT   NOT NULL,
    updated_at    BIGINT NOT NULL
);
