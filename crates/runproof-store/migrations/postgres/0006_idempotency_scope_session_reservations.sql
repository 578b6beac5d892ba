-- The PostgreSQL twin of migrations/sqlite/0006_idempotency_scope_session_reservations.sql:
-- idempotency keys scoped to the identity an upload was received with, and session budgets
-- reserved before the body.

ALTER TABLE uploads ADD COLUMN idempotency_scope TEXT;

UPDATE uploads SET idempotency_scope =
    mode || ' ' || repository_id::TEXT
    || ' ' || (identity_json::JSONB ->> 'run_id')
    || ' ' || COALESCE(identity_json::JSONB ->> 'run_attempt', '-')
    || ' ' || CASE WHEN mode = 'webhook' THEN 'unverified'
                   ELSE identity_json::JSONB ->> 'issuer' END
WHERE idempotency_key IS NOT NULL;

DROP INDEX uploads_idempotency;

CREATE UNIQUE INDEX uploads_idempotency_scope
    ON uploads (idempotency_scope, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

ALTER TABLE sessions ADD COLUMN last_reserved BIGINT NOT NULL DEFAULT 0
    CHECK (last_reserved >= 0);
