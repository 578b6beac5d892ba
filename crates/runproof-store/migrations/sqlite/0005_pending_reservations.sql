-- Room held for pending uploads (webhook mode) before their bodies are read. A row counts
-- in the pending quotas (bytes per repository and overall, uploads overall and per run
-- attempt) from the moment it is taken, in a transaction that checks those sums, until
-- the upload is inserted (the row is deleted in the insert's transaction, and the
-- upload's real size counts instead), it is refunded, or it expires (a crash). Portable,
-- like the other migrations: a PostgreSQL twin lives in migrations/postgres.
CREATE TABLE pending_reservations (
    id            TEXT    NOT NULL PRIMARY KEY,
    repository_id INTEGER NOT NULL,
    run_id        INTEGER NOT NULL,
    run_attempt   INTEGER NOT NULL CHECK (run_attempt >= 0),
    head_sha      TEXT    NOT NULL,
    bytes         INTEGER NOT NULL CHECK (bytes >= 0),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);

-- Expired rows are deleted by every reservation.
CREATE INDEX pending_reservations_expires_at ON pending_reservations (expires_at);

CREATE INDEX pending_reservations_run
    ON pending_reservations (repository_id, run_id, run_attempt);

-- Every reservation sums the pending uploads' sizes, by repository and overall.
CREATE INDEX uploads_pending_size ON uploads (pending_repository_id, size)
    WHERE status = 'pending';
