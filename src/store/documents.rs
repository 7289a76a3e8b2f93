//! Per-file ingestion state (DESIGN §6 "Document").

use serde::Serialize;
use sqlx::Row;

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
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
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

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Document, sqlx::Error> {
    let state: String = row.try_get("state")?;
    let reason: Option<String> = row.try_get("reason")?;
    Ok(Document {
        id: row.try_get("id")?,
        rule: row.try_get("rule")?,
        path: row.try_get("path")?,
        collection_id: row.try_get("collection_id")?,
        collection_name: row.try_get("collection_name")?,
        state: DocumentState::parse(&state)
            .ok_or_else(|| sqlx::Error::Decode(format!("document state {state}").into()))?,
        reason: reason.as_deref().and_then(FailureReason::parse),
        error: row.try_get("error")?,
        size: row.try_get("size")?,
        mtime_ns: row.try_get("mtime_ns")?,
        inode: row.try_get("inode")?,
        sha256: row.try_get("sha256")?,
        file_id: row.try_get("file_id")?,
        attempts: row.try_get("attempts")?,
        retry_at: row.try_get("retry_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
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
        let row = sqlx::query("SELECT * FROM documents WHERE rule = ? AND path = ?")
            .bind(rule)
            .bind(path)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// A linked document with this content in this collection, under any
    /// rule or path: what makes an identical file a no-op.
    pub async fn linked_with_content(
        &self,
        collection_id: &str,
        sha256: &str,
    ) -> Result<Option<Document>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM documents WHERE collection_id = ? AND sha256 = ? AND state = 'linked'
             ORDER BY updated_at LIMIT 1",
        )
        .bind(collection_id)
        .bind(sha256)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    pub async fn documents(&self, filter: &DocumentFilter) -> Result<Vec<Document>, StoreError> {
        let sql = format!(
            "SELECT * FROM documents WHERE {} ORDER BY rule, path LIMIT ?3",
            super::where_given(&[
                ("state", filter.state.is_some()),
                ("rule", filter.rule.is_some())
            ])
        );
        let rows = sqlx::query(&sql)
            .bind(filter.state.map(DocumentState::as_str))
            .bind(filter.rule.as_deref())
            .bind(filter.limit.unwrap_or(i64::MAX))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    /// The Open WebUI file ids that documents hold now (being uploaded,
    /// processing or linked): what an orphan sweep must never delete.
    /// Streamed into a set, not loaded as whole documents.
    pub async fn current_file_ids(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        use futures_util::TryStreamExt as _;
        // A failed document's kept upload waits for its retry.
        let mut rows = sqlx::query_scalar::<_, String>(
            "SELECT d.file_id FROM documents d
             WHERE d.file_id IS NOT NULL AND (d.state IN ('uploading', 'processing', 'linked')
                OR (d.state = 'failed' AND EXISTS (SELECT 1 FROM uploads u
                      WHERE u.file_id = d.file_id AND u.state = 'uploaded' AND u.sha256 = d.sha256)))",
        )
        .fetch(&self.reader);
        let mut out = std::collections::HashSet::new();
        while let Some(id) = rows.try_next().await? {
            out.insert(id);
        }
        Ok(out)
    }

    /// The slim view of a rule's documents that a reconcile compares with
    /// the tree: no names, errors or hashes, streamed rather than buffered
    /// (a 100,000-file rule must not cost hundreds of MiB).
    pub async fn known_files(&self, rule: &str) -> Result<Vec<KnownFile>, StoreError> {
        use futures_util::TryStreamExt as _;
        let mut rows = sqlx::query(
            "SELECT path, state, size, mtime_ns, inode, reason, retry_at FROM documents WHERE rule = ?",
        )
        .bind(rule)
        .fetch(&self.reader);
        let mut out = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let state: String = row.try_get("state")?;
            let reason: Option<String> = row.try_get("reason")?;
            out.push(KnownFile {
                path: row.try_get::<String, _>("path")?.into_boxed_str(),
                state: DocumentState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("document state {state}")))?,
                size: row.try_get("size")?,
                mtime_ns: row.try_get("mtime_ns")?,
                inode: row.try_get("inode")?,
                reason: reason.as_deref().and_then(FailureReason::parse),
                retry_at: row.try_get("retry_at")?,
            });
        }
        out.shrink_to_fit();
        Ok(out)
    }

    /// Marks the document `uploading` with the stats and hash about to be
    /// sent, creating the row if needed. Returns its id.
    pub async fn begin_upload(&self, u: &NewUpload<'_>, now_ms: i64) -> Result<i64, StoreError> {
        let u = u.owned();
        self.write(move |tx| Box::pin(async move { begin_upload_in(tx, &u.view(), now_ms).await }))
            .await
    }

    /// Records the upload and moves the document to `processing`, in one
    /// transaction, so a crash never leaves an upload ferry does not know of.
    pub async fn uploaded(
        &self,
        document_id: i64,
        file_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let file_id = file_id.to_owned();
        self.write(move |tx| {
            Box::pin(async move { uploaded_in(tx, document_id, &file_id, now_ms).await })
        })
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
            Box::pin(async move {
            let file_id = &file_id;
            let collection_id = &collection_id;
            let waiting: Option<i64> = sqlx::query_scalar(
                    "SELECT 1 FROM documents WHERE id = ? AND state IN ('uploading', 'processing', 'failed')
                       AND collection_id = ? AND (? IS NULL OR sha256 = ?)",
                )
                .bind(document_id)
                .bind(collection_id)
                .bind(sha256.as_deref())
                .bind(sha256.as_deref())
                .fetch_optional(&mut *tx)
                .await?;
                if waiting.is_none() {
                    return Ok(false);
                }
                uploaded_in(tx, document_id, file_id, now_ms).await?;
                Ok(true)
            })
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
        self.write(move |tx| {
            Box::pin(async move {
            let file_id = &file_id;
            sqlx::query(
                    "UPDATE documents SET state = 'linked', file_id = ?, reason = NULL, error = NULL, retry_at = NULL,
                            updated_at = ? WHERE id = ?",
                )
                .bind(file_id)
                .bind(now_ms)
                .bind(document_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE uploads SET state = 'linked', updated_at = ? WHERE file_id = ?")
                    .bind(now_ms)
                    .bind(file_id)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            })
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
            Box::pin(async move {
            let u = &u.view();
            let file_id = &file_id;
            let id = begin_upload_in(tx, u, now_ms).await?;
                sqlx::query(
                    "UPDATE documents SET state = 'linked', file_id = ?, attempts = 0, updated_at = ? WHERE id = ?",
                )
                .bind(file_id)
                .bind(now_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                Ok(id)
            })
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
            Box::pin(async move {
            let error = &error;
            let file_id: Option<String> =
                    sqlx::query_scalar("SELECT file_id FROM documents WHERE id = ?")
                        .bind(document_id)
                        .fetch_one(&mut *tx)
                        .await?;
                sqlx::query(
                    "UPDATE documents SET state = 'failed', reason = ?, error = ?, retry_at = ?, updated_at = ? WHERE id = ?",
                )
                .bind(reason.as_str())
                .bind(error)
                .bind(retry_at)
                .bind(now_ms)
                .bind(document_id)
                .execute(&mut *tx)
                .await?;
                if let Some(file_id) = file_id.filter(|_| !keep_upload) {
                    sqlx::query("UPDATE uploads SET state = 'failed', updated_at = ? WHERE file_id = ? AND state = 'uploaded'")
                        .bind(now_ms)
                        .bind(file_id)
                        .execute(&mut *tx)
                        .await?;
                }
                Ok(())
            })
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
            Box::pin(async move {
            let u = &u.view();
            sqlx::query("DELETE FROM documents WHERE rule = ? AND path = ? AND id != ?")
                    .bind(u.rule)
                    .bind(u.path)
                    .bind(document_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE documents SET path = ?, size = ?, mtime_ns = ?, inode = ?, updated_at = ? WHERE id = ?",
                )
                .bind(u.path)
                .bind(u.size)
                .bind(u.mtime_ns)
                .bind(u.inode)
                .bind(now_ms)
                .bind(document_id)
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
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
            Box::pin(async move {
            let rule = &rule;
            let path = &path;
            let why = &why;
            sqlx::query(
                    "INSERT INTO documents (rule, path, state, reason, error, created_at, updated_at)
                     VALUES (?1, ?2, 'skipped', 'not_regular', ?3, ?4, ?4)
                     ON CONFLICT (rule, path) DO UPDATE SET
                        state = 'skipped', reason = 'not_regular', error = excluded.error, size = NULL,
                        mtime_ns = NULL, inode = NULL, sha256 = NULL, file_id = NULL, retry_at = NULL,
                        updated_at = excluded.updated_at",
                )
                .bind(rule)
                .bind(path)
                .bind(why)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    pub async fn removed(&self, document_id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
            sqlx::query(
                    "UPDATE documents SET state = 'removed', reason = NULL, error = NULL, retry_at = NULL, updated_at = ?
                     WHERE id = ?",
                )
                .bind(now_ms)
                .bind(document_id)
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
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
        Ok(sqlx::query_as(
            "SELECT id, path, file_id FROM documents
             WHERE rule = ? AND collection_id = ? AND state = 'linked' AND file_id IS NOT NULL
             ORDER BY path",
        )
        .bind(rule)
        .bind(collection_id)
        .fetch_all(&self.reader)
        .await?)
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
            Box::pin(async move {
                let collection_id = &collection_id;
                sqlx::query("UPDATE documents SET collection_id = ?, updated_at = ? WHERE id = ?")
                    .bind(collection_id)
                    .bind(now_ms)
                    .bind(document_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE uploads SET collection_id = ?, updated_at = ?
                     WHERE file_id = (SELECT file_id FROM documents WHERE id = ?)",
                )
                .bind(collection_id)
                .bind(now_ms)
                .bind(document_id)
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
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
            Box::pin(async move {
                let file_id = &file_id;
                let n = sqlx::query(
                    "UPDATE documents SET state = 'discovered', file_id = NULL, sha256 = NULL,
                            reason = NULL, error = NULL, retry_at = NULL, updated_at = ?
                     WHERE id = ? AND file_id = ? AND state = 'linked'",
                )
                .bind(now_ms)
                .bind(document_id)
                .bind(file_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                sqlx::query(
                    "UPDATE uploads SET state = 'deleted', updated_at = ? WHERE file_id = ?",
                )
                .bind(now_ms)
                .bind(file_id)
                .execute(&mut *tx)
                .await?;
                Ok(n == 1)
            })
        })
        .await
    }

    /// Marks one of ferry's uploads as deleted in Open WebUI.
    pub async fn upload_deleted(&self, file_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let file_id = file_id.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let file_id = &file_id;
                sqlx::query(
                    "UPDATE uploads SET state = 'deleted', updated_at = ? WHERE file_id = ?",
                )
                .bind(now_ms)
                .bind(file_id)
                .execute(&mut *tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Uploads of ferry's that never got linked (crash, failure): to delete.
    pub async fn orphan_uploads(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT file_id FROM uploads WHERE state IN ('uploaded', 'failed') ORDER BY created_at",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    pub async fn is_own_upload(&self, file_id: &str) -> Result<bool, StoreError> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT 1 FROM uploads WHERE file_id = ?")
                .bind(file_id)
                .fetch_optional(&self.reader)
                .await?
                .is_some(),
        )
    }

    /// The upload a document currently points at.
    pub async fn document_file_id(&self, document_id: i64) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT file_id FROM documents WHERE id = ?")
                .bind(document_id)
                .fetch_one(&self.reader)
                .await?,
        )
    }

    pub async fn document_sha256(&self, document_id: i64) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT sha256 FROM documents WHERE id = ?")
                .bind(document_id)
                .fetch_one(&self.reader)
                .await?,
        )
    }

    /// A document's other uploads that never got linked, newest first.
    pub async fn earlier_uploads(
        &self,
        document_id: i64,
        current: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT file_id FROM uploads WHERE document_id = ? AND state IN ('uploaded', 'failed')
               AND file_id IS NOT ? ORDER BY created_at DESC",
        )
        .bind(document_id)
        .bind(current)
        .fetch_all(&self.reader)
        .await?)
    }

    /// The document's current upload, if it is one of ferry's that is not
    /// linked (uploaded or failed).
    pub async fn unlinked_upload_of(&self, document_id: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT u.file_id FROM uploads u JOIN documents d ON d.file_id = u.file_id
             WHERE d.id = ? AND u.state IN ('uploaded', 'failed')",
        )
        .bind(document_id)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// The document's upload that a cut-off answer left unfinished: still
    /// `uploaded`, of the content the document has now.
    pub async fn pending_upload_of(&self, document_id: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT u.file_id FROM uploads u JOIN documents d ON d.file_id = u.file_id
             WHERE d.id = ? AND u.state = 'uploaded' AND u.sha256 = d.sha256",
        )
        .bind(document_id)
        .fetch_optional(&self.reader)
        .await?)
    }

    /// The knowledge base an upload of ferry's was meant for.
    pub async fn upload_collection(&self, file_id: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT collection_id FROM uploads WHERE file_id = ?",
        )
        .bind(file_id)
        .fetch_optional(&self.reader)
        .await?
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
            Box::pin(async move {
            let rule = &rule;
            let files = &files;
            let (collection_id, collection_name) = (&collection_id, &collection_name);
                sqlx::query(
                    "INSERT INTO collections (name, id, created, updated_at) VALUES (?, ?, 1, ?)
                     ON CONFLICT DO NOTHING",
                )
                .bind(collection_name)
                .bind(collection_id)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                for (path, size, mtime_ns, inode, file_id) in files {
                    sqlx::query(
                        "INSERT INTO documents (rule, path, collection_id, collection_name, state, size, mtime_ns, inode,
                                                sha256, file_id, created_at, updated_at)
                         VALUES (?, ?, ?, ?, 'linked', ?, ?, ?, 'x', ?, ?, ?)",
                    )
                    .bind(rule)
                    .bind(path)
                    .bind(collection_id)
                    .bind(collection_name)
                    .bind(size)
                    .bind(mtime_ns)
                    .bind(inode)
                    .bind(file_id)
                    .bind(now_ms)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }
}

async fn begin_upload_in(
    tx: &mut sqlx::SqliteConnection,
    u: &NewUpload<'_>,
    now_ms: i64,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
                    "INSERT INTO documents (rule, path, collection_id, collection_name, state, size, mtime_ns, inode,
                                            sha256, attempts, created_at, updated_at)
                     VALUES (?, ?, ?, ?, 'uploading', ?, ?, ?, ?, 1, ?, ?)
                     ON CONFLICT (rule, path) DO UPDATE SET
                        collection_id = excluded.collection_id, collection_name = excluded.collection_name,
                        state = 'uploading', reason = NULL, error = NULL, size = excluded.size,
                        mtime_ns = excluded.mtime_ns, inode = excluded.inode, sha256 = excluded.sha256,
                        attempts = documents.attempts + 1, retry_at = NULL, updated_at = excluded.updated_at
                     RETURNING id",
                )
                .bind(u.rule)
                .bind(u.path)
                .bind(u.collection_id)
                .bind(u.collection_name)
                .bind(u.size)
                .bind(u.mtime_ns)
                .bind(u.inode)
                .bind(u.sha256)
                .bind(now_ms)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?;
    Ok(id)
}

async fn uploaded_in(
    tx: &mut sqlx::SqliteConnection,
    document_id: i64,
    file_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
                    "INSERT INTO uploads (file_id, document_id, collection_id, sha256, state, created_at, updated_at)
                     SELECT ?1, id, collection_id, sha256, 'uploaded', ?2, ?2 FROM documents WHERE id = ?3
                     ON CONFLICT (file_id) DO NOTHING",
                )
                .bind(file_id)
                .bind(now_ms)
                .bind(document_id)
                .execute(&mut *tx)
                .await?;
    sqlx::query(
        "UPDATE documents SET state = 'processing', file_id = ?, updated_at = ? WHERE id = ?",
    )
    .bind(file_id)
    .bind(now_ms)
    .bind(document_id)
    .execute(&mut *tx)
    .await?;
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
