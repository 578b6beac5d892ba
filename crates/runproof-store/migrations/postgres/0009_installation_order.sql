-- The PostgreSQL twin of migrations/sqlite/0009_installation_order.sql: installation
-- state ordered by the time of the event it comes from (`state_at`, Unix seconds, 0 when
-- unknown), with `unsettled` marking a relaxation that could not be ordered.

ALTER TABLE installations ADD COLUMN state_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE installations ADD COLUMN unsettled BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE installation_repositories ADD COLUMN state_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE installation_repositories ADD COLUMN unsettled BOOLEAN NOT NULL DEFAULT FALSE;
