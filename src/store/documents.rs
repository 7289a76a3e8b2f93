//! Per-file ingestion state (DESIGN §6 "Document").

use serde::Serialize;

use rusqlite::params;

use super::sql::{Conn, Sql as _};
use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocumentState {
    Discovered,
    Uploading,
    Processing,
    Linked,
    Failed,
    Removed,
    /// Not a regular file (a link, FIFO, device, socket): never read.
    Skipped,
}

impl DocumentState {
    pub const ALL: [DocumentState; 7] = [
        DocumentState::Discovered,
        DocumentState::Uploading,
        DocumentState::Processing,
        DocumentState::Linked,
        DocumentState::Failed,
        DocumentState::Removed,
        DocumentState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DocumentState::Discovered => "discovered",
            DocumentState::Uploading => "uploading",
            DocumentState::Processing => "processing",
            DocumentState::Linked => "linked",
            DocumentState::Failed => "failed",
            DocumentState::Removed => "removed",
            DocumentState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Why a document failed; DESIGN §6 fixes the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    Duplicate,
    Empty,
    TooLarge,
    Unsupported,
    Processing,
    Auth,
    Timeout,
    Http,
    /// With state `skipped`: a link, FIFO, device or socket.
    NotRegular,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Duplicate => "duplicate",
            FailureReason::Empty => "empty",
            FailureReason::TooLarge => "too_large",
            FailureReason::Unsupported => "unsupported",
            FailureReason::Processing => "processing",
            FailureReason::Auth => "auth",
            FailureReason::Timeout => "timeout",
            FailureReason::Http => "http",
            FailureReason::NotRegular => "not_regular",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use FailureReason::*;
        [
            Duplicate,
            Empty,
            TooLarge,
            Unsupported,
            Processing,
            Auth,
            Timeout,
            Http,
            NotRegular,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Permanent failures wait for the file to change; the rest back off.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            FailureReason::Duplicate
                | FailureReason::Empty
                | FailureReason::TooLarge
                | FailureReason::Unsupported
                | FailureReason::NotRegular
        )
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Document {
    pub id: i64,
    pub rule: String,
    pub path: String,
    pub collection_id: Option<String>,
    pub collection_name: Option<String>,
    pub state: DocumentState,
    pub reason: Option<FailureReason>,
    pub error: Option<String>,
    pub size: Option<i64>,
    pub mtime_ns: Option<i64>,
    pub inode: Option<i64>,
    pub sha256: Option<String>,
    pub file_id: Option<String>,
    pub attempts: i64,
    pub retry_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A linked document and its file (see [`Store::linked_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedFile {
    pub id: i64,
    pub path: String,
    pub file_id: String,
}

/// What a reconcile knows of one file (see [`Store::known_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownFile {
    pub path: Box<str>,
    pub state: DocumentState,
    pub size: Option<i64>,
    pub mtime_ns: Option<i64>,
    pub inode: Option<i64>,
    pub reason: Option<FailureReason>,
    pub retry_at: Option<i64>,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Document> {
    let reason: Option<String> = row.get("reason")?;
    Ok(Document {
        id: row.get("id")?,
        rule: row.get("rule")?,
        path: row.get("path")?,
        collection_id: row.get("collection_id")?,
        collection_name: row.get("collection_name")?,
        state: super::sql::parsed(row, "state", DocumentState::parse)?,
        reason: reason.as_deref().and_then(FailureReason::parse),
        error: row.get("error")?,
        size: row.get("size")?,
        mtime_ns: row.get("mtime_ns")?,
        inode: row.get("inode")?,
        sha256: row.get("sha256")?,
        file_id: row.get("file_id")?,
        attempts: row.get("attempts")?,
        retry_at: row.get("retry_at")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

#[derive(Debug, Default, Clone)]
pub struct DocumentFilter {
    pub state: Option<DocumentState>,
    pub rule: Option<String>,
    pub limit: Option<i64>,
}

/// What is known about a file before it is uploaded.
#[derive(Debug, Clone)]
pub struct NewUpload<'a> {
    pub rule: &'a str,
    pub path: &'a str,
    pub collection_id: &'a str,
    pub collection_name: &'a str,
    pub size: i64,
    pub mtime_ns: i64,
    pub inode: i64,
    pub sha256: &'a str,
}

/// A [`NewUpload`] that owns its text, to hand to the writer.
struct OwnedUpload {
    rule: String,
    path: String,
    collection_id: String,
    collection_name: String,
    size: i64,
    mtime_ns: i64,
    inode: i64,
    sha256: String,
}

impl NewUpload<'_> {
    fn owned(&self) -> OwnedUpload {
        OwnedUpload {
            rule: self.rule.into(),
            path: self.path.into(),
            collection_id: self.collection_id.into(),
            collection_name: self.collection_name.into(),
            size: self.size,
            mtime_ns: self.mtime_ns,
            inode: self.inode,
            sha256: self.sha256.into(),
        }
    }
}

impl OwnedUpload {
    fn view(&self) -> NewUpload<'_> {
        NewUpload {
            rule: &self.rule,
            path: &self.path,
            collection_id: &self.collection_id,
            collection_name: &self.collection_name,
            size: self.size,
            mtime_ns: self.mtime_ns,
            inode: self.inode,
            sha256: &self.sha256,
        }
    }
}

impl Store {
    pub async fn document(&self, rule: &str, path: &str) -> Result<Option<Document>, StoreError> {
        Ok(self.reader().await?.row_opt(
            "SELECT * FROM documents WHERE rule = ? AND path = ?",
            params![rule, path],
            from_row,
        )?)
    }

    /// A linked document with this content in this collection, under any
    /// rule or path: what makes an identical file a no-op.
    pub async fn linked_with_content(
        &self,
        collection_id: &str,
        sha256: &str,
    ) -> Result<Option<Document>, StoreError> {
        Ok(self.reader().await?.row_opt(
            "SELECT * FROM documents WHERE collection_id = ? AND sha256 = ? AND state = 'linked'
             ORDER BY updated_at LIMIT 1",
            params![collection_id, sha256],
            from_row,
        )?)
    }

    pub async fn documents(&self, filter: &DocumentFilter) -> Result<Vec<Document>, StoreError> {
        let sql = format!(
            "SELECT * FROM documents WHERE {} ORDER BY rule, path LIMIT ?3",
            super::where_given(&[
                ("state", filter.state.is_some()),
                ("rule", filter.rule.is_some())
            ])
        );
        let filter = filter.clone();
        self.read_apart(move |c| {
            c.all(
                &sql,
                params![
                    filter.state.map(DocumentState::as_str),
                    filter.rule.as_deref(),
                    filter.limit.unwrap_or(i64::MAX)
                ],
                from_row,
            )
        })
        .await
    }

    /// The Open WebUI file ids that documents hold now (being uploaded,
    /// processing or linked): what an orphan sweep must never delete.
    /// Streamed into a set, not loaded as whole documents.
    pub async fn current_file_ids(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        self.read_apart(|c| {
            // A failed document's kept upload waits for its retry.
            let mut stmt = c.prepare_cached(
                "SELECT d.file_id FROM documents d
                 WHERE d.file_id IS NOT NULL AND (d.state IN ('uploading', 'processing', 'linked')
                    OR (d.state = 'failed' AND EXISTS (SELECT 1 FROM uploads u
                          WHERE u.file_id = d.file_id AND u.state = 'uploaded' AND u.sha256 = d.sha256)))",
            )?;
            let ids = stmt.query_map([], |r| r.get(0))?;
            ids.collect()
        })
        .await
    }

    /// The slim view of a rule's documents that a reconcile compares with
    /// the tree: no names, errors or hashes, read row by row rather than
    /// buffered (a 100,000-file rule must not cost hundreds of MiB).
    pub async fn known_files(&self, rule: &str) -> Result<Vec<KnownFile>, StoreError> {
        let rule = rule.to_owned();
        self.read_apart(move |c| {
            let mut out = c.all(
                "SELECT path, state, size, mtime_ns, inode, reason, retry_at FROM documents WHERE rule = ?",
                [rule],
                |row| {
                    let reason: Option<String> = row.get("reason")?;
                    Ok(KnownFile {
                        path: row.get::<_, String>("path")?.into_boxed_str(),
                        state: super::sql::parsed(row, "state", DocumentState::parse)?,
                        size: row.get("size")?,
                        mtime_ns: row.get("mtime_ns")?,
                        inode: row.get("inode")?,
                        reason: reason.as_deref().and_then(FailureReason::parse),
                        retry_at: row.get("retry_at")?,
                    })
                },
            )?;
            out.shrink_to_fit();
            Ok(out)
        })
        .await
    }

    /// Marks the document `uploading` with the stats and hash about to be
    /// sent, creating the row if needed. Returns its id.
    pub async fn begin_upload(&self, u: &NewUpload<'_>, now_ms: i64) -> Result<i64, StoreError> {
        let u = u.owned();
        self.write(move |tx| begin_upload_in(tx, &u.view(), now_ms))
            .await
    }

    /// Records the upload and moves the document to `processing`, in one
    /// transaction, so a crash never leaves an upload ferry does not know of.
    /// Relaxed: a power cut that loses it leaves the upload to the start-up
    /// sweep, which adopts it by the marker naming this document.
    pub async fn uploaded(
        &self,
        document_id: i64,
        file_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let file_id = file_id.to_owned();
        self.write_relaxed(move |tx| uploaded_in(tx, document_id, &file_id, now_ms))
            .await
    }

    /// Records an upload that a crash cut off before [`Store::uploaded`],
    /// found by the marker it carries, if its document still has exactly
    /// that content and is not linked (a later attempt may have failed as
    /// "duplicate" of this very upload). Returns whether it was taken.
    pub async fn adopt_unrecorded_upload(
        &self,
        document_id: i64,
        file_id: &str,
        collection_id: &str,
        sha256: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let file_id = file_id.to_owned();
        let collection_id = collection_id.to_owned();
        let sha256 = sha256.map(str::to_owned);
        self.write(move |tx| {

            let waiting: Option<i64> = tx.opt(
                    "SELECT 1 FROM documents WHERE id = ? AND state IN ('uploading', 'processing', 'failed')
                       AND collection_id = ? AND (? IS NULL OR sha256 = ?)",
                params![document_id, collection_id, sha256.as_deref(), sha256.as_deref()])?;
                if waiting.is_none() {
                    return Ok(false);
                }
                uploaded_in(tx, document_id, &file_id, now_ms)?;
                Ok(true)

        })
        .await
    }

    pub async fn linked(
        &self,
        document_id: i64,
        file_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let file_id = file_id.to_owned();
        // Relaxed: a power cut that loses it leaves the document
        // `processing` with its upload, and its job (not yet recorded done)
        // runs again and finds the link.
        self.write_relaxed(move |tx| {

            tx.exec(
                    "UPDATE documents SET state = 'linked', file_id = ?, reason = NULL, error = NULL, retry_at = NULL,
                            updated_at = ? WHERE id = ?",
                params![file_id, now_ms, document_id])?;
                tx.exec("UPDATE uploads SET state = 'linked', updated_at = ? WHERE file_id = ?", params![now_ms, file_id])?;
                Ok(())

        })
        .await
    }

    /// Records an unchanged file as linked to an existing upload (same
    /// content already in the collection): no new upload.
    pub async fn adopt(
        &self,
        u: &NewUpload<'_>,
        file_id: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let u = u.owned();
        let file_id = file_id.to_owned();
        self.write(move |tx| {

            let u = &u.view();
            let id = begin_upload_in(tx, u, now_ms)?;
                tx.exec(
                    "UPDATE documents SET state = 'linked', file_id = ?, attempts = 0, updated_at = ? WHERE id = ?",
                params![file_id, now_ms, id])?;
                Ok(id)

        })
        .await
    }

    /// Records a failure. With `keep_upload`, the document's upload stays
    /// `uploaded`: it may still finish (an answer cut off, not a refusal)
    /// and the retry takes it up ([`Store::pending_upload_of`]) instead of
    /// sending the file again; otherwise it is marked failed, to be deleted.
    pub async fn failed(
        &self,
        document_id: i64,
        reason: FailureReason,
        error: &str,
        retry_at: Option<i64>,
        keep_upload: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.write(move |tx| {

            let file_id: Option<String> =
                    tx.one("SELECT file_id FROM documents WHERE id = ?", params![document_id])?;
                tx.exec(
                    "UPDATE documents SET state = 'failed', reason = ?, error = ?, retry_at = ?, updated_at = ? WHERE id = ?",
                params![reason.as_str(), error, retry_at, now_ms, document_id])?;
                if let Some(file_id) = file_id.filter(|_| !keep_upload) {
                    tx.exec("UPDATE uploads SET state = 'failed', updated_at = ? WHERE file_id = ? AND state = 'uploaded'", params![now_ms, file_id])?;
                }
                Ok(())

        })
        .await
    }

    /// A file moved inside the watched tree with the same content: the
    /// document follows it, no upload. A stale row at the new path (an old
    /// removal, say) gives way.
    pub async fn move_document(
        &self,
        document_id: i64,
        u: &NewUpload<'_>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let u = u.owned();
        self.write(move |tx| {

            let u = &u.view();
            tx.exec("DELETE FROM documents WHERE rule = ? AND path = ? AND id != ?", params![u.rule, u.path, document_id])?;
                tx.exec(
                    "UPDATE documents SET path = ?, size = ?, mtime_ns = ?, inode = ?, updated_at = ? WHERE id = ?",
                params![u.path, u.size, u.mtime_ns, u.inode, now_ms, document_id])?;
                Ok(())

        })
        .await
    }

    /// The file is gone from the folder and, if it was ferry's, from Open WebUI.
    /// Records that `path` of `rule` is no regular file and is never read
    /// (see [`crate::safe_fs`]); whatever it was before is forgotten.
    pub async fn skipped(
        &self,
        rule: &str,
        path: &str,
        why: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let rule = rule.to_owned();
        let path = path.to_owned();
        let why = why.to_owned();
        self.write(move |tx| {

            tx.exec(
                    "INSERT INTO documents (rule, path, state, reason, error, created_at, updated_at)
                     VALUES (?1, ?2, 'skipped', 'not_regular', ?3, ?4, ?4)
                     ON CONFLICT (rule, path) DO UPDATE SET
                        state = 'skipped', reason = 'not_regular', error = excluded.error, size = NULL,
                        mtime_ns = NULL, inode = NULL, sha256 = NULL, file_id = NULL, retry_at = NULL,
                        updated_at = excluded.updated_at",
                params![rule, path, why, now_ms])?;
                Ok(())

        })
        .await
    }

    pub async fn removed(&self, document_id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.write(move |tx| {

            tx.exec(
                    "UPDATE documents SET state = 'removed', reason = NULL, error = NULL, retry_at = NULL, updated_at = ?
                     WHERE id = ?",
                params![now_ms, document_id])?;
                Ok(())

        })
        .await
    }

    /// The rule's linked documents in one knowledge base, with their files:
    /// what the collection's own list must hold.
    pub async fn linked_files(
        &self,
        rule: &str,
        collection_id: &str,
    ) -> Result<Vec<LinkedFile>, StoreError> {
        let (rule, collection_id) = (rule.to_owned(), collection_id.to_owned());
        self.read_apart(move |c| {
            c.all(
                "SELECT id, path, file_id FROM documents
                 WHERE rule = ? AND collection_id = ? AND state = 'linked' AND file_id IS NOT NULL
                 ORDER BY path",
                params![rule, collection_id],
                |r| {
                    Ok(LinkedFile {
                        id: r.get(0)?,
                        path: r.get(1)?,
                        file_id: r.get(2)?,
                    })
                },
            )
        })
        .await
    }

    /// A document whose file was linked again into `collection_id` (the
    /// same one, or its recreation).
    pub async fn relinked(
        &self,
        document_id: i64,
        collection_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let collection_id = collection_id.to_owned();
        self.write(move |tx| {
            tx.exec(
                "UPDATE documents SET collection_id = ?, updated_at = ? WHERE id = ?",
                params![collection_id, now_ms, document_id],
            )?;
            tx.exec(
                "UPDATE uploads SET collection_id = ?, updated_at = ?
                     WHERE file_id = (SELECT file_id FROM documents WHERE id = ?)",
                params![collection_id, now_ms, document_id],
            )?;
            Ok(())
        })
        .await
    }

    /// A linked document whose file Open WebUI no longer has: forgotten,
    /// so the next look at its path uploads it again. Only if it still
    /// holds that file (a change that got there first wins).
    pub async fn file_lost(
        &self,
        document_id: i64,
        file_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let file_id = file_id.to_owned();
        self.write(move |tx| {
            let n = tx.exec(
                "UPDATE documents SET state = 'discovered', file_id = NULL, sha256 = NULL,
                            reason = NULL, error = NULL, retry_at = NULL, updated_at = ?
                     WHERE id = ? AND file_id = ? AND state = 'linked'",
                params![now_ms, document_id, file_id],
            )?;
            tx.exec(
                "UPDATE uploads SET state = 'deleted', updated_at = ? WHERE file_id = ?",
                params![now_ms, file_id],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Marks one of ferry's uploads as deleted in Open WebUI.
    pub async fn upload_deleted(&self, file_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let file_id = file_id.to_owned();
        self.write(move |tx| {
            tx.exec(
                "UPDATE uploads SET state = 'deleted', updated_at = ? WHERE file_id = ?",
                params![now_ms, file_id],
            )?;
            Ok(())
        })
        .await
    }

    /// Uploads of ferry's that never got linked (crash, failure): to delete.
    pub async fn orphan_uploads(&self) -> Result<Vec<String>, StoreError> {
        self.read_apart(|c| {
            c.all(
                "SELECT file_id FROM uploads WHERE state IN ('uploaded', 'failed') ORDER BY created_at",
                [],
                |r| r.get(0),
            )
        })
        .await
    }

    pub async fn is_own_upload(&self, file_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .reader()
            .await?
            .opt::<i64, _>("SELECT 1 FROM uploads WHERE file_id = ?", params![file_id])?
            .is_some())
    }

    /// The upload a document currently points at.
    pub async fn document_file_id(&self, document_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self.reader().await?.one(
            "SELECT file_id FROM documents WHERE id = ?",
            params![document_id],
        )?)
    }

    pub async fn document_sha256(&self, document_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self.reader().await?.one(
            "SELECT sha256 FROM documents WHERE id = ?",
            params![document_id],
        )?)
    }

    /// A document's other uploads that never got linked, newest first.
    pub async fn earlier_uploads(
        &self,
        document_id: i64,
        current: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self.reader().await?.all(
            "SELECT file_id FROM uploads WHERE document_id = ? AND state IN ('uploaded', 'failed')
               AND file_id IS NOT ? ORDER BY created_at DESC",
            params![document_id, current],
            |r| r.get(0),
        )?)
    }

    /// The document's current upload, if it is one of ferry's that is not
    /// linked (uploaded or failed).
    pub async fn unlinked_upload_of(&self, document_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self.reader().await?.opt(
            "SELECT u.file_id FROM uploads u JOIN documents d ON d.file_id = u.file_id
             WHERE d.id = ? AND u.state IN ('uploaded', 'failed')",
            params![document_id],
        )?)
    }

    /// The document's upload that a cut-off answer left unfinished: still
    /// `uploaded`, of the content the document has now.
    pub async fn pending_upload_of(&self, document_id: i64) -> Result<Option<String>, StoreError> {
        Ok(self.reader().await?.opt(
            "SELECT u.file_id FROM uploads u JOIN documents d ON d.file_id = u.file_id
             WHERE d.id = ? AND u.state = 'uploaded' AND u.sha256 = d.sha256",
            params![document_id],
        )?)
    }

    /// The knowledge base an upload of ferry's was meant for.
    pub async fn upload_collection(&self, file_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .reader()
            .await?
            .opt::<Option<String>, _>(
                "SELECT collection_id FROM uploads WHERE file_id = ?",
                params![file_id],
            )?
            .flatten())
    }

    /// Test support: records files as linked into a collection without
    /// uploading anything (a tree already in sync), in one transaction.
    /// Each file is (path, size, mtime ns, inode, file id).
    #[cfg(feature = "testing")]
    pub async fn seed_linked(
        &self,
        rule: &str,
        collection: (&str, &str),
        files: &[(String, i64, i64, i64, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let rule = rule.to_owned();
        let files = files.to_owned();
        let (collection_id, collection_name) = (collection.0.to_owned(), collection.1.to_owned());
        self.write(move |tx| {

            let (collection_id, collection_name) = (&collection_id, &collection_name);
                tx.exec(
                    "INSERT INTO collections (name, id, created, updated_at) VALUES (?, ?, 1, ?)
                     ON CONFLICT DO NOTHING",
                params![collection_name, collection_id, now_ms])?;
                for (path, size, mtime_ns, inode, file_id) in files {
                    tx.exec(
                        "INSERT INTO documents (rule, path, collection_id, collection_name, state, size, mtime_ns, inode,
                                                sha256, file_id, created_at, updated_at)
                         VALUES (?, ?, ?, ?, 'linked', ?, ?, ?, 'x', ?, ?, ?)",
                    params![rule, path, collection_id, collection_name, size, mtime_ns, inode, file_id, now_ms, now_ms])?;
                }
                Ok(())

        })
        .await
    }
}

fn begin_upload_in(tx: &Conn, u: &NewUpload<'_>, now_ms: i64) -> Result<i64, StoreError> {
    let id: i64 = tx.one(
                    "INSERT INTO documents (rule, path, collection_id, collection_name, state, size, mtime_ns, inode,
                                            sha256, attempts, created_at, updated_at)
                     VALUES (?, ?, ?, ?, 'uploading', ?, ?, ?, ?, 1, ?, ?)
                     ON CONFLICT (rule, path) DO UPDATE SET
                        collection_id = excluded.collection_id, collection_name = excluded.collection_name,
                        state = 'uploading', reason = NULL, error = NULL, size = excluded.size,
                        mtime_ns = excluded.mtime_ns, inode = excluded.inode, sha256 = excluded.sha256,
                        attempts = documents.attempts + 1, retry_at = NULL, updated_at = excluded.updated_at
                     RETURNING id",
                params![u.rule, u.path, u.collection_id, u.collection_name, u.size, u.mtime_ns, u.inode, u.sha256, now_ms, now_ms])?;
    Ok(id)
}

fn uploaded_in(tx: &Conn, document_id: i64, file_id: &str, now_ms: i64) -> Result<(), StoreError> {
    tx.exec(
                    "INSERT INTO uploads (file_id, document_id, collection_id, sha256, state, created_at, updated_at)
                     SELECT ?1, id, collection_id, sha256, 'uploaded', ?2, ?2 FROM documents WHERE id = ?3
                     ON CONFLICT (file_id) DO NOTHING",
                params![file_id, now_ms, document_id])?;
    tx.exec(
        "UPDATE documents SET state = 'processing', file_id = ?, updated_at = ? WHERE id = ?",
        params![file_id, now_ms, document_id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upload_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("f.db")).await.unwrap();
        let u = NewUpload {
            rule: ":cli",
            path: "/x/a.md",
            collection_id: "kb1",
            collection_name: "KB",
            size: 3,
            mtime_ns: 1,
            inode: 7,
            sha256: "abc",
        };
        let id = store.begin_upload(&u, 10).await.unwrap();
        store.uploaded(id, "f1", 11).await.unwrap();
        assert_eq!(
            store.orphan_uploads().await.unwrap(),
            vec!["f1".to_string()]
        );
        store.linked(id, "f1", 12).await.unwrap();
        assert!(store.orphan_uploads().await.unwrap().is_empty());
        let doc = store.document(":cli", "/x/a.md").await.unwrap().unwrap();
        assert_eq!(doc.state, DocumentState::Linked);
        assert_eq!(doc.file_id.as_deref(), Some("f1"));
        let same = store
            .linked_with_content("kb1", "abc")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(same.id, id);

        let id2 = store
            .begin_upload(
                &NewUpload {
                    path: "/x/b.md",
                    sha256: "def",
                    ..u
                },
                20,
            )
            .await
            .unwrap();
        store.uploaded(id2, "f2", 21).await.unwrap();
        store
            .failed(
                id2,
                FailureReason::Duplicate,
                "Duplicate content",
                None,
                false,
                22,
            )
            .await
            .unwrap();
        let failed = store
            .documents(&DocumentFilter {
                state: Some(DocumentState::Failed),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].reason, Some(FailureReason::Duplicate));
        assert_eq!(
            store.orphan_uploads().await.unwrap(),
            vec!["f2".to_string()]
        );
        assert!(store.is_own_upload("f2").await.unwrap());
        assert!(!store.is_own_upload("someone-elses").await.unwrap());
    }
}
