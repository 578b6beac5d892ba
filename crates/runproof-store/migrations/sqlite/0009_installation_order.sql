-- Installation state ordered by GitHub's clock rather than by arrival: a delivery that
-- arrives late must not revive access that a later event removed.
-- `state_at`: the time (Unix seconds, from the payload) of the event the access state
-- (suspended and repository_selection; removed) comes from; 0 when unknown.
-- `unsettled`: a relaxation arrived that could not be ordered against the stricter state
-- kept (same time, or no time); the stricter state stays and readers ask GitHub.
-- The PostgreSQL twin lives in migrations/postgres.

ALTER TABLE installations ADD COLUMN state_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE installations
    ADD COLUMN unsettled INTEGER NOT NULL DEFAULT 0 CHECK (unsettled IN (0, 1));
ALTER TABLE installation_repositories ADD COLUMN state_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE installation_repositories
    ADD COLUMN unsettled INTEGER NOT NULL DEFAULT 0 CHECK (unsettled IN (0, 1));
