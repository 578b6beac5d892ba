-- A repository's trust rules, set through the API by the App on its users' behalf: one row
-- per repository, the rules as a JSON array of runproof_core::rules::TrustRule (checked by
-- the service before they are stored), replaced whole on each write.
-- `updated_at`: Unix seconds of the last write.
-- The PostgreSQL twin lives in migrations/postgres.
CREATE TABLE repository_rules (
    repository_id INTEGER NOT NULL PRIMARY KEY,
    rules_json    TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL
);
