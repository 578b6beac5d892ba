-- The PostgreSQL twin of migrations/sqlite/0015_events.sql: the event log, one row per
-- decision, newest read first by `id`; `at` in Unix seconds; `mismatches_json` a JSON text
-- or NULL; never a secret. Purged by age (`at`) and by count (oldest `id`s first).
CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              BIGINT NOT NULL,
    kind            TEXT   NOT NULL,
    route           TEXT,
    mode            TEXT,
    outcome         TEXT   NOT NULL,
    code            TEXT,
    rule            TEXT,
    mismatches_json TEXT,
    repository_id   BIGINT,
    run_id          BIGINT,
    workflow        TEXT,
    source          TEXT,
    detail          TEXT
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_kind ON events (kind, id);
CREATE INDEX events_outcome ON events (outcome, id);
CREATE INDEX events_outcome_code ON events (outcome, code, id);
CREATE INDEX events_code ON events (code, id);
CREATE INDEX events_repository ON events (repository_id, id);
