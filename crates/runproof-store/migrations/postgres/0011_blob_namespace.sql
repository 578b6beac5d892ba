-- The namespace that binds this database to its blob store (one row): the collector
-- deletes unreferenced blobs only in a blob store whose marker names this namespace.
CREATE TABLE blob_namespace (
    singleton SMALLINT PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL,
    blob_store TEXT NOT NULL,
    bound_at BIGINT NOT NULL
);
