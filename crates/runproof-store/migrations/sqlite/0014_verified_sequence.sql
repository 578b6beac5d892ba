-- The order in which uploads became verified, for `GET /v1/uploads?after=`: a poller that
-- follows `verified_seq` upwards sees each verified upload once, pending ones included
-- when they settle. `verified_seq` is set in the transaction that makes the upload
-- verified (its insert, or the resolution of a pending upload) and never changes; NULL
-- for an upload that is not verified.
--
-- `upload_sequence` (one row) holds the last number handed out. A verifying transaction
-- takes its numbers with `UPDATE upload_sequence … RETURNING`, as its last statement
-- before COMMIT: the row stays locked until the commit, so verifying commits take turns
-- and a higher number never becomes visible before a lower one (see
-- docs/architecture.md, "Polling for new uploads"). SQLite's single writer orders them
-- anyway; the statements are the same on both backends.
-- The PostgreSQL twin lives in migrations/postgres.
ALTER TABLE uploads ADD COLUMN verified_seq INTEGER;

CREATE TABLE upload_sequence (
    singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    last      INTEGER NOT NULL CHECK (last >= 0)
);

-- Uploads verified before this migration, in the order they were verified.
UPDATE uploads SET verified_seq = ordered.n
FROM (
    SELECT id, ROW_NUMBER() OVER (ORDER BY verified_at, id) AS n
    FROM uploads WHERE status = 'verified'
) AS ordered
WHERE uploads.id = ordered.id;

INSERT INTO upload_sequence (singleton, last)
SELECT 1, COALESCE(MAX(verified_seq), 0) FROM uploads;

CREATE UNIQUE INDEX uploads_verified_seq ON uploads (verified_seq)
    WHERE verified_seq IS NOT NULL;

CREATE INDEX uploads_repository_verified_seq ON uploads (repository_id, verified_seq)
    WHERE verified_seq IS NOT NULL;

-- Verified uploads without a position: normally only those of the transaction numbering
-- them; also any that an older version verified after this migration, which the next
-- verifying transaction numbers.
CREATE INDEX uploads_unnumbered ON uploads (status, verified_at, id)
    WHERE status = 'verified' AND verified_seq IS NULL;
