-- The directories of a collection that mirror a watched folder's
-- subfolders (Open WebUI 0.9.6+), by the folder's path relative to the
-- watched root ('a/b'). `owned`: ferry made it, so ferry may delete it once
-- its folder is gone and it is empty; one found already there (made by
-- someone in the UI, or by an earlier answer ferry lost) is never deleted.
CREATE TABLE knowledge_dirs (
    collection_id TEXT NOT NULL,
    path TEXT NOT NULL,
    dir_id TEXT NOT NULL,
    owned INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (collection_id, path)
) WITHOUT ROWID;
