-- Upload sessions, the delivery outbox, and what webhook mode keeps about pending
-- uploads. Portable on purpose, like 0001 and 0002: a PostgreSQL twin lives in
-- migrations/postgres with the same columns (booleans as 0/1 here, BOOLEAN there).

-- The run a pending upload claims to come from (webhook mode), kept after it is
-- resolved so that per-run quotas count every upload of the run.
ALTER TABLE uploads ADD COLUMN pending_repository_id INTEGER;
ALTER TABLE uploads ADD COLUMN pending_run_id INTEGER;
ALTER TABLE uploads ADD COLUMN pending_run_attempt INTEGER;
ALTER TABLE uploads ADD COLUMN pending_head_sha TEXT;
-- Set once the blob of a rejected or expired upload is deleted.
ALTER TABLE uploads ADD COLUMN blob_deleted INTEGER NOT NULL DEFAULT 0
    CHECK (blob_deleted IN (0, 1));

CREATE INDEX uploads_pending_run
    ON uploads (pending_repository_id, pending_run_id, pending_run_attempt)
    WHERE pending_repository_id IS NOT NULL;

-- Blobs still to delete: few rows, found without a scan.
CREATE INDEX uploads_blobs_to_delete ON uploads (id)
    WHERE blob_deleted = 0 AND status IN ('rejected', 'expired');

CREATE TABLE sessions (
    -- Hex SHA-256 of the token: the token itself is never stored.
    token_hash    TEXT    NOT NULL PRIMARY KEY,
    identity_json TEXT    NOT NULL,
    repository_id INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked       INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
    max_uploads   INTEGER NOT NULL CHECK (max_uploads >= 0),
    max_bytes     INTEGER NOT NULL CHECK (max_bytes >= 0),
    uploads_used  INTEGER NOT NULL DEFAULT 0 CHECK (uploads_used >= 0),
    bytes_used    INTEGER NOT NULL DEFAULT 0 CHECK (bytes_used >= 0)
);

-- Purging scans by expiry.
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE outbox (
    -- X-Runproof-Delivery.
    id              TEXT    NOT NULL PRIMARY KEY,
    event           TEXT    NOT NULL,
    upload_id       TEXT    NOT NULL,
    payload_json    TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    -- A worker's lease: while in the future, no other worker claims the row.
    locked_until    INTEGER,
    updated_at      INTEGER NOT NULL
);

-- Claiming scans due pending rows.
CREATE INDEX outbox_status_next_attempt_at ON outbox (status, next_attempt_at);

-- Listing, newest first.
CREATE INDEX outbox_created_at ON outbox (created_at, id);
