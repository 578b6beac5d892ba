-- Idempotency keys scoped to the identity an upload was received with, and session
-- budgets reserved before the body. Portable, like the other migrations: a PostgreSQL
-- twin lives in migrations/postgres.

-- The scope of an upload's Idempotency-Key (IdempotencyScope in model.rs): mode,
-- repository id, run id, attempt ('-' when none) and issuer, separated by spaces. A key
-- was unique per repository id, so a stranger's pending upload could answer a verified
-- request with the same key, and the other way round; now a replay needs the same scope.
ALTER TABLE uploads ADD COLUMN idempotency_scope TEXT;

-- Older rows get the scope they were received with. A webhook-mode upload was received
-- without credentials (issuer 'unverified', as the server's UNVERIFIED_ISSUER), whatever
-- its identity became on approval. The repository id comes from the old unique index's
-- column, so the new index holds on existing rows.
UPDATE uploads SET idempotency_scope =
    mode || ' ' || repository_id
    || ' ' || json_extract(identity_json, '$.run_id')
    || ' ' || COALESCE(json_extract(identity_json, '$.run_attempt'), '-')
    || ' ' || CASE WHEN mode = 'webhook' THEN 'unverified'
                   ELSE json_extract(identity_json, '$.issuer') END
WHERE idempotency_key IS NOT NULL;

DROP INDEX uploads_idempotency;

CREATE UNIQUE INDEX uploads_idempotency_scope
    ON uploads (idempotency_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The bytes the latest reservation of a session took: the reserving UPDATE sets it with
-- bytes_used, from the same old row, and returns it (RETURNING sees only new values).
ALTER TABLE sessions ADD COLUMN last_reserved INTEGER NOT NULL DEFAULT 0
    CHECK (last_reserved >= 0);
