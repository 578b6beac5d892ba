-- The PostgreSQL twin of migrations/sqlite/0017_console.sql: the console's sign-in
-- sessions (keyed by the hex SHA-256 of the cookie, never the cookie; times in Unix
-- seconds), and the indexes its pages and counts read through.
CREATE TABLE console_sessions (
    token_hash TEXT   NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
CREATE INDEX installations_deleted_id ON installations (deleted, id);
CREATE INDEX installation_repositories_listed
    ON installation_repositories (installation_id, removed, repository_id);
CREATE INDEX uploads_mode_id ON uploads (mode, id);
CREATE INDEX uploads_created_at ON uploads (created_at, id);
CREATE INDEX outbox_status_created_at ON outbox (status, created_at, id);
CREATE INDEX outbox_upload_id ON outbox (upload_id, created_at, id);
