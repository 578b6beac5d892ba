-- Small bodies, kept in the database in the transaction of their upload record: no
-- file, no separate fsync. A body lives here or in the blob store, never both.
CREATE TABLE upload_bodies (
    upload_id TEXT NOT NULL PRIMARY KEY REFERENCES uploads (id) ON DELETE CASCADE,
    body      BLOB NOT NULL
);
