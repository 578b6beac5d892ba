-- The PostgreSQL twin of migrations/sqlite/0005_pending_reservations.sql: room held for
-- pending uploads (webhook mode) before their bodies are read, counted in the pending
-- quotas until the upload is inserted, refunded, or the row expires (a crash).
CREATE TABLE pending_reservations (
    id            TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    repository_id BIGINT  NOT NULL,
    run_id        BIGINT  NOT NULL,
    run_attempt   BIGINT  NOT NULL CHECK (run_attempt >= 0),
    head_sha      TEXT    NOT NULL,
    bytes         BIGINT  NOT NULL CHECK (bytes >= 0),
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);

-- Expired rows are deleted by every reservation.
CREATE INDEX pending_reservations_expires_at ON pending_reservations (expires_at);

CREATE INDEX pending_reservations_run
    ON pending_reservations (repository_id, run_id, run_attempt);

-- Every reservation sums the pending uploads' sizes, by repository and overall.
CREATE INDEX uploads_pending_size ON uploads (pending_repository_id, size)
    WHERE status = 'pending';
