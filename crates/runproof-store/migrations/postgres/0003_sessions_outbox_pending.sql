-- The PostgreSQL twin of migrations/sqlite/0003_sessions_outbox_pending.sql: upload
-- sessions, the delivery outbox, and what webhook mode keeps about pending uploads.
-- The same columns (BIGINT integers, integer Unix seconds), except that flags are
-- BOOLEAN rather than 0/1 integers.

-- The run a pending upload claims to come from (webhook mode), kept after it is
-- resolved so that per-run quotas count every upload of the run.
ALTER TABLE uploads ADD COLUMN pending_repository_id BIGINT;
ALTER TABLE uploads ADD COLUMN pending_run_id BIGINT;
ALTER TABLE uploads ADD COLUMN pending_run_attempt BIGINT;
ALTER TABLE uploads ADD COLUMN pending_head_sha TEXT;
-- Set once the blob of a rejected or expired upload is deleted.
ALTER TABLE uploads ADD COLUMN blob_deleted BOOLEAN NOT NULL DEFAULT FALSE;

CREATE INDEX uploads_pending_run
    ON uploads (pending_repository_id, pending_run_id, pending_run_attempt)
    WHERE pending_repository_id IS NOT NULL;

-- Blobs still to delete: few rows, found without a scan.
CREATE INDEX uploads_blobs_to_delete ON uploads (id)
    WHERE NOT blob_deleted AND status IN ('rejected', 'expired');

CREATE TABLE sessions (
    -- Hex SHA-256 of the token: the token itself is never stored.
    token_hash    TEXT    NOT NULL PRIMARY KEY,
    identity_json TEXT    NOT NULL,
    repository_id BIGINT  NOT NULL,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    revoked       BOOLEAN NOT NULL DEFAULT FALSE,
    max_uploads   BIGINT  NOT NULL CHECK (max_uploads >= 0),
    max_bytes     BIGINT  NOT NULL CHECK (max_bytes >= 0),
    uploads_used  BIGINT  NOT NULL DEFAULT 0 CHECK (uploads_used >= 0),
    bytes_used    BIGINT  NOT NULL DEFAULT 0 CHECK (bytes_used >= 0)
);

-- Purging scans by expiry.
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE outbox (
    -- X-Runproof-Delivery.
    id              TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    event           TEXT    NOT NULL,
    upload_id       TEXT    NOT NULL,
    payload_json    TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT  NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    -- A worker's lease: while in the future, no other worker claims the row.
    locked_until    BIGINT,
    updated_at      BIGINT  NOT NULL
);

-- Claiming scans due pending rows.
CREATE INDEX outbox_status_next_attempt_at ON outbox (status, next_attempt_at);

-- Listing, newest first.
CREATE INDEX outbox_created_at ON outbox (created_at, id);
