-- Small bodies, kept in the database in the transaction of their upload record: no
-- object, no separate round trip. A body lives here or in the blob store, never both.
CREATE TABLE upload_bodies (
    upload_id TEXT NOT NULL PRIMARY KEY REFERENCES uploads (id) ON DELETE CASCADE,
    body      BYTEA NOT NULL
);
