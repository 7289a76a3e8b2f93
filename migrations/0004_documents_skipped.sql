-- Links, FIFOs, devices and sockets in a watched folder are recorded as
-- `skipped` (reason `not_regular`), never read. SQLite cannot change a CHECK
-- constraint in place, so the table is rebuilt. The migration runs in a
-- transaction, where foreign keys cannot be switched off: the drop nulls
-- `uploads.document_id` (ON DELETE SET NULL), so the links are kept aside and
-- put back (the ids are copied unchanged).
CREATE TEMP TABLE upload_documents AS
    SELECT file_id, document_id FROM uploads WHERE document_id IS NOT NULL;
CREATE TABLE documents_new (
    id              INTEGER PRIMARY KEY,
    rule            TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    collection_id   TEXT,
    collection_name TEXT,
    state           TEXT    NOT NULL CHECK (state IN
                      ('discovered','uploading','processing','linked','failed','removed','skipped')),
    reason          TEXT    CHECK (reason IS NULL OR reason IN
                      ('duplicate','empty','too_large','unsupported','processing','auth','timeout','http',
                       'not_regular')),
    error           TEXT,
    size            INTEGER,
    mtime_ns        INTEGER,
    inode           INTEGER,
    sha256          TEXT,
    file_id         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    retry_at        INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (rule, path)
);
INSERT INTO documents_new SELECT * FROM documents;
DROP TABLE documents;
ALTER TABLE documents_new RENAME TO documents;
CREATE INDEX documents_state ON documents (state, rule);
CREATE INDEX documents_content ON documents (collection_id, sha256);
UPDATE uploads SET document_id =
    (SELECT t.document_id FROM upload_documents t WHERE t.file_id = uploads.file_id)
    WHERE file_id IN (SELECT file_id FROM upload_documents);
DROP TABLE upload_documents;
