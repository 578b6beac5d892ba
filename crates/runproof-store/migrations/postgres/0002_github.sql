-- The PostgreSQL twin of migrations/sqlite/0002_github.sql: GitHub App state learnt
-- from webhooks. The same columns (GitHub ids as BIGINT, integer Unix seconds), except
-- that flags are BOOLEAN rather than 0/1 integers.

CREATE TABLE installations (
    id                   BIGINT  NOT NULL PRIMARY KEY,
    account_id           BIGINT  NOT NULL,
    account_login        TEXT    NOT NULL,
    repository_selection TEXT    NOT NULL CHECK (repository_selection IN ('all', 'selected')),
    suspended            BOOLEAN NOT NULL DEFAULT FALSE,
    -- A tombstone: the row outlives the installation so that it is known to be gone.
    deleted              BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at           BIGINT  NOT NULL
);

CREATE INDEX installations_account_id ON installations (account_id, updated_at);

CREATE TABLE installation_repositories (
    installation_id BIGINT  NOT NULL,
    repository_id   BIGINT  NOT NULL,
    full_name       TEXT    NOT NULL,
    -- A tombstone: the repository was removed from the installation.
    removed         BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (installation_id, repository_id)
);

CREATE INDEX installation_repositories_repository_id
    ON installation_repositories (repository_id);

CREATE TABLE webhook_deliveries (
    -- X-GitHub-Delivery: a redelivery carries the same id and must have no effect.
    id          TEXT    NOT NULL PRIMARY KEY,
    event       TEXT    NOT NULL,
    received_at BIGINT  NOT NULL
);

-- Purging scans by receipt time.
CREATE INDEX webhook_deliveries_received_at ON webhook_deliveries (received_at);

CREATE TABLE workflow_runs (
    repository_id        BIGINT  NOT NULL,
    run_id               BIGINT  NOT NULL,
    run_attempt          BIGINT  NOT NULL CHECK (run_attempt >= 0),
    head_sha             TEXT    NOT NULL,
    head_repository_id   BIGINT,
    event                TEXT    NOT NULL,
    status               TEXT    NOT NULL,
    conclusion           TEXT,
    path                 TEXT    NOT NULL,
    installation_id      BIGINT,
    repository_full_name TEXT    NOT NULL,
    owner_id             BIGINT  NOT NULL,
    run_started_at       BIGINT,
    updated_at           BIGINT  NOT NULL,
    completed_at         BIGINT,
    received_at          BIGINT  NOT NULL,
    PRIMARY KEY (repository_id, run_id, run_attempt)
);

-- For housekeeping of old runs.
CREATE INDEX workflow_runs_received_at ON workflow_runs (received_at);
