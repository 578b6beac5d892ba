-- The event log: one row per decision (uploads and sessions accepted or refused, webhook
-- deliveries, pending uploads settled, pushes, rules changed), newest read first by `id`.
-- `at`: Unix seconds. `mismatches_json`: a JSON value or NULL. No column ever holds a
-- secret. Purged by age (`at`) and by count (oldest `id`s first).
-- The PostgreSQL twin lives in migrations/postgres.
CREATE TABLE events (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    at              INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    route           TEXT,
    mode            TEXT,
    outcome         TEXT    NOT NULL,
    code            TEXT,
    rule            TEXT,
    mismatches_json TEXT,
    repository_id   INTEGER,
    run_id          INTEGER,
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
