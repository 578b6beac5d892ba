-- GitHub App state learnt from webhooks: installations and the repositories they list,
-- delivery ids (deduplication), and workflow runs (webhook mode).
-- Portable on purpose, like 0001: a PostgreSQL twin lives in migrations/postgres with
-- the same columns (GitHub ids as integers, integer Unix seconds, booleans as 0/1).

CREATE TABLE installations (
    id                   INTEGER NOT NULL PRIMARY KEY,
    account_id           INTEGER NOT NULL,
    account_login        TEXT    NOT NULL,
    repository_selection TEXT    NOT NULL CHECK (repository_selection IN ('all', 'selected')),
    suspended            INTEGER NOT NULL DEFAULT 0 CHECK (suspended IN (0, 1)),
    -- A tombstone: the row outlives the installation so that it is known to be gone.
    deleted              INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    updated_at           INTEGER NOT NULL
);

CREATE INDEX installations_account_id ON installations (account_id, updated_at);

CREATE TABLE installation_repositories (
    installation_id INTEGER NOT NULL,
    repository_id   INTEGER NOT NULL,
    full_name       TEXT    NOT NULL,
    -- A tombstone: the repository was removed from the installation.
    removed         INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1)),
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (installation_id, repository_id)
);

CREATE INDEX installation_repositories_repository_id
    ON installation_repositories (repository_id);

CREATE TABLE webhook_deliveries (
    -- X-GitHub-Delivery: a redelivery carries the same id and must have no effect.
    id          TEXT    NOT NULL PRIMARY KEY,
    event       TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);

-- Purging scans by receipt time.
CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries (received_at);

CREATE TABLE workflow_runs (
    repository_id        INTEGER NOT NULL,
    run_id               INTEGER NOT NULL,
    run_attempt          INTEGER NOT NULL CHECK (run_attempt >= 0),
    head_sha             TEXT    NOT NULL,
    head_repository_id   INTEGER,
    event                TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    conclusion           TEXT,
    path                 TEXT    NOT NULL,
    installation_id      INTEGER,
    repository_full_name TEXT    NOT NULL,
    owner_id             INTEGER NOT NULL,
    run_started_at       INTEGER,
    updated_at           INTEGER NOT NULL,
    completed_at         INTEGER,
    received_at          INTEGER NOT NULL,
    PRIMARY KEY (repository_id, run_id, run_attempt)
);

-- For housekeeping of old runs.
CREATE INDEX workflow_runs_received_at ON workflow_runs (received_at);
