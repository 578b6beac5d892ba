-- The PostgreSQL twin of migrations/sqlite/0001_init.sql: the same columns (TEXT ids,
-- integer Unix seconds, identity as JSON text, sha256 as hex), with BIGINT integers.
-- Created in the connection's first search_path schema (see PostgresOptions::schema).

CREATE TABLE uploads (
    -- UUIDv7, hyphenated: sorts by creation time, so it doubles as the listing cursor.
    -- COLLATE "C": byte order, whatever the database's collation, so that `id < cursor`
    -- and `ORDER BY id` agree with the UUIDs' time order.
    id              TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    status          TEXT    NOT NULL,
    mode            TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    size            BIGINT  NOT NULL CHECK (size >= 0),
    sha256          TEXT    NOT NULL CHECK (length(sha256) = 64),
    content_type    TEXT,
    created_at      BIGINT  NOT NULL,
    verified_at     BIGINT,
    identity_json   TEXT    NOT NULL,
    -- Copied out of identity_json so listings can filter by it with an index.
    repository_id   BIGINT  NOT NULL,
    reason          TEXT,
    idempotency_key TEXT
);

CREATE UNIQUE INDEX uploads_idempotency
    ON uploads (repository_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX uploads_status_id ON uploads (status, id);

CREATE INDEX uploads_repository_id ON uploads (repository_id, id);

CREATE TABLE used_jtis (
    issuer     TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (issuer, jti)
);

-- Purging scans by expiry.
CREATE INDEX used_jtis_expires_at ON used_jtis (expires_at);
