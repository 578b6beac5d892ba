-- The operator console: its sign-in sessions, and the indexes its pages read through.
-- `console_sessions`: one row per signed-in browser, keyed by the hex SHA-256 of the
-- session cookie (the cookie itself is never stored); `created_at` and `expires_at` in
-- Unix seconds; purged once expired.
-- The indexes let every console page and count read an index rather than a table:
-- installations that are not deleted, in id order; the repositories an installation lists,
-- in id order; uploads by mode or by time of receipt; pushes by status or by upload,
-- newest first.
-- The PostgreSQL twin lives in migrations/postgres.
CREATE TABLE console_sessions (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
CREATE INDEX installations_deleted_id ON installations (deleted, id);
CREATE INDEX installation_repositories_listed
    ON installation_repositories (installation_id, removed, repository_id);
CREATE INDEX uploads_mode_id ON uploads (mode, id);
CREATE INDEX uploads_created_at ON uploads (created_at, id);
CREATE INDEX outbox_status_created_at ON outbox (status, created_at, id);
CREATE INDEX outbox_upload_id ON outbox (upload_id, created_at, id);
