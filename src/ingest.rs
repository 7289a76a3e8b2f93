//! Verified ingestion of one file into one knowledge base: the pipeline
//! that `ferry ingest` uses today and the daemon's workers use for `watch`
//! rules.
//!
//! upload → wait until processed → link → recorded `linked`. Every step is
//! written to the store first, so a crash leaves a trace to clean up, never
//! an upload ferry does not know about.
//!
//! Architecture invariants:
//! - an unchanged file (same size, mtime and inode, or same hash) is never
//!   uploaded again;
//! - a changed file is linked in its new version *before* the old one is
//!   unlinked;
//! - ferry deletes only files it uploaded itself (`uploads` table).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::openwebui::{Client, Error as OwuiError};
use crate::rules::CollectionRef;
use crate::store::{self, DocumentState, FailureReason, NewUpload, Store, StoreError};

/// A knowledge base resolved to its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub id: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    OpenWebUi(#[from] OwuiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("no knowledge base named `{0}` (ferry creates it only for ingestion)")]
    UnknownCollection(String),
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Linked {
        file_id: String,
        replaced: Option<String>,
    },
    Unchanged {
        file_id: String,
    },
    Failed {
        reason: FailureReason,
        detail: String,
        known: bool,
    },
}

/// Finds a knowledge base by reference: the id remembered for the name,
/// else the oldest of that name, else (with `create`) a new one.
pub async fn resolve_collection(
    client: &Client,
    store: &Store,
    reference: &CollectionRef,
    create: bool,
) -> Result<Collection, IngestError> {
    match reference {
        CollectionRef::Id(id) => {
            let k = client.knowledge(id).await?;
            Ok(Collection {
                id: k.id,
                name: k.name,
            })
        }
        CollectionRef::Name(name) => {
            if let Some(id) = store.collection_id(name).await? {
                match client.knowledge(&id).await {
                    Ok(k) => {
                        return Ok(Collection {
                            id: k.id,
                            name: name.clone(),
                        });
                    }
                    Err(OwuiError::NotFound { .. }) => {
                        tracing::warn!(collection = %name, id = %id, "remembered knowledge base is gone; looking it up again");
                        store.forget_collection(name).await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let now = store::now_ms();
            if let Some(k) = client.find_knowledge(name).await? {
                store.remember_collection(name, &k.id, false, now).await?;
                return Ok(Collection {
                    id: k.id,
                    name: name.clone(),
                });
            }
            if !create {
                return Err(IngestError::UnknownCollection(name.clone()));
            }
            let k = client
                .create_knowledge(name, "Kept in sync by ferry")
                .await?;
            tracing::info!(collection = %name, id = %k.id, "created knowledge base");
            store.remember_collection(name, &k.id, true, now).await?;
            Ok(Collection {
                id: k.id,
                name: name.clone(),
            })
        }
    }
}

/// The failure class of an Open WebUI error (DESIGN §6).
pub fn failure_reason(e: &OwuiError) -> FailureReason {
    match e {
        OwuiError::DuplicateContent { .. } => FailureReason::Duplicate,
        OwuiError::EmptyContent { .. } => FailureReason::Empty,
        OwuiError::TooLarge { .. } => FailureReason::TooLarge,
        OwuiError::Unsupported { .. } => FailureReason::Unsupported,
        OwuiError::ProcessingFailed { .. } => FailureReason::Processing,
        OwuiError::Unauthorized { .. } | OwuiError::Forbidden { .. } => FailureReason::Auth,
        OwuiError::Timeout { .. } => FailureReason::Timeout,
        _ => FailureReason::Http,
    }
}

/// When to try a transiently failed document again: 30 s doubling to 6 h.
pub fn document_retry_delay(attempts: i64) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    Duration::from_secs(30u64.saturating_mul(1 << exp.min(10))).min(Duration::from_secs(6 * 3600))
}

/// SHA-256 of a file, read in blocks off the async threads.
pub async fn hash_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

pub struct Ingestor {
    pub client: Client,
    pub store: Store,
}

impl Ingestor {
    /// Brings one file into `collection` under `rule` (identity (rule, path)).
    pub async fn ingest(
        &self,
        rule: &str,
        path: &Path,
        collection: &Collection,
    ) -> Result<Outcome, IngestError> {
        let shown = path.display().to_string();
        let io = |source| IngestError::Io {
            path: shown.clone(),
            source,
        };
        let meta = tokio::fs::metadata(path).await.map_err(io)?;
        let (size, mtime_ns, inode) = (
            meta.len() as i64,
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            meta.ino() as i64,
        );
        let key = path.to_string_lossy().to_string();
        let previous = self.store.document(rule, &key).await?;
        let same_place =
            |d: &store::Document| d.collection_id.as_deref() == Some(collection.id.as_str());

        // Same stats: not even hashed again.
        if let Some(d) = &previous
            && same_place(d)
            && d.size == Some(size)
            && d.mtime_ns == Some(mtime_ns)
            && d.inode == Some(inode)
        {
            match (d.state, d.reason) {
                (DocumentState::Linked, _) => {
                    return Ok(Outcome::Unchanged {
                        file_id: d.file_id.clone().unwrap_or_default(),
                    });
                }
                (DocumentState::Failed, Some(reason)) if reason.is_permanent() => {
                    return Ok(Outcome::Failed {
                        reason,
                        detail: d.error.clone().unwrap_or_default(),
                        known: true,
                    });
                }
                _ => {}
            }
        }

        let sha256 = hash_file(path).await.map_err(io)?;
        let upload = NewUpload {
            rule,
            path: &key,
            collection_id: &collection.id,
            collection_name: &collection.name,
            size,
            mtime_ns,
            inode,
            sha256: &sha256,
        };
        let now = store::now_ms();

        if let Some(d) = &previous
            && same_place(d)
            && d.sha256.as_deref() == Some(sha256.as_str())
        {
            match (d.state, d.reason, &d.file_id) {
                (DocumentState::Linked, _, Some(file_id)) => {
                    // Touched, not changed: remember the new stats.
                    self.store.adopt(&upload, file_id, now).await?;
                    return Ok(Outcome::Unchanged {
                        file_id: file_id.clone(),
                    });
                }
                (DocumentState::Failed, Some(reason), _) if reason.is_permanent() => {
                    return Ok(Outcome::Failed {
                        reason,
                        detail: d.error.clone().unwrap_or_default(),
                        known: true,
                    });
                }
                _ => {}
            }
        }

        let document_id = self.store.begin_upload(&upload, now).await?;

        if size == 0 {
            let detail = "the file is empty".to_string();
            self.store
                .failed(
                    document_id,
                    FailureReason::Empty,
                    &detail,
                    None,
                    store::now_ms(),
                )
                .await?;
            return Ok(Outcome::Failed {
                reason: FailureReason::Empty,
                detail,
                known: false,
            });
        }
        if let Some(other) = self
            .store
            .linked_with_content(&collection.id, &sha256)
            .await?
            && let Some(file_id) = other.file_id.clone()
            && other.path == key
        {
            // The same file, already brought in under another rule (say, a
            // one-shot `ferry ingest` before the watcher): take it over.
            self.store.adopt(&upload, &file_id, store::now_ms()).await?;
            return Ok(Outcome::Unchanged { file_id });
        }
        if let Some(other) = self
            .store
            .linked_with_content(&collection.id, &sha256)
            .await?
            && other.path != key
        {
            // Open WebUI would refuse it as duplicate content; say so
            // without an upload that would only leave an orphan behind.
            let detail = format!("same content as {} (already in the collection)", other.path);
            self.store
                .failed(
                    document_id,
                    FailureReason::Duplicate,
                    &detail,
                    None,
                    store::now_ms(),
                )
                .await?;
            return Ok(Outcome::Failed {
                reason: FailureReason::Duplicate,
                detail,
                known: false,
            });
        }

        let old_file = previous
            .as_ref()
            .filter(|d| d.state == DocumentState::Linked && same_place(d))
            .and_then(|d| d.file_id.clone());
        match self.upload_and_link(document_id, path, collection).await {
            Ok(file_id) => {
                if let Some(old) = &old_file
                    && old != &file_id
                {
                    self.retire(collection, old).await;
                }
                Ok(Outcome::Linked {
                    file_id,
                    replaced: old_file,
                })
            }
            Err(IngestError::OpenWebUi(e)) => {
                let reason = failure_reason(&e);
                let attempts = self
                    .store
                    .document(rule, &key)
                    .await?
                    .map_or(1, |d| d.attempts);
                let retry_at = (!reason.is_permanent())
                    .then(|| store::now_ms() + document_retry_delay(attempts).as_millis() as i64);
                let detail = e.to_string();
                self.store
                    .failed(document_id, reason, &detail, retry_at, store::now_ms())
                    .await?;
                self.delete_orphans_of(rule, &key).await;
                Ok(Outcome::Failed {
                    reason,
                    detail,
                    known: false,
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn upload_and_link(
        &self,
        document_id: i64,
        path: &Path,
        collection: &Collection,
    ) -> Result<String, IngestError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "file".into());
        let info = match self.client.upload(path, &name).await {
            Ok(info) => info,
            Err(OwuiError::Io { path, source }) => return Err(IngestError::Io { path, source }),
            Err(e) => return Err(e.into()),
        };
        self.store
            .uploaded(document_id, &info.id, store::now_ms())
            .await?;
        self.client.wait_processed(&info.id).await?;
        self.client.add_file(&collection.id, &info.id).await?;
        self.store
            .linked(document_id, &info.id, store::now_ms())
            .await?;
        Ok(info.id)
    }

    /// Unlinks and deletes a superseded version, if it is ferry's own.
    async fn retire(&self, collection: &Collection, file_id: &str) {
        let own = self.store.is_own_upload(file_id).await.unwrap_or(false);
        if let Err(e) = self
            .client
            .remove_file(&collection.id, file_id, false)
            .await
        {
            tracing::warn!(file_id, error = %e, "could not unlink the old version");
            return;
        }
        if own {
            match self.client.delete_file(file_id).await {
                Ok(()) => {
                    let _ = self.store.upload_deleted(file_id, store::now_ms()).await;
                }
                Err(e) => tracing::warn!(file_id, error = %e, "could not delete the old version"),
            }
        }
    }

    /// Deletes ferry's failed uploads of one document, so that failures do
    /// not pile up as orphans in Open WebUI's file table.
    async fn delete_orphans_of(&self, rule: &str, key: &str) {
        let Ok(Some(doc)) = self.store.document(rule, key).await else {
            return;
        };
        let Some(file_id) = doc.file_id else { return };
        match self.client.delete_file(&file_id).await {
            Ok(()) => {
                let _ = self.store.upload_deleted(&file_id, store::now_ms()).await;
            }
            Err(e) => {
                tracing::warn!(file_id, error = %e, "could not delete a failed upload; will retry later")
            }
        }
    }

    /// Deletes every upload of ferry's that never got linked (after a
    /// crash, or a delete that failed). Returns how many were deleted.
    pub async fn clean_orphans(&self) -> Result<usize, IngestError> {
        let mut deleted = 0;
        for file_id in self.store.orphan_uploads().await? {
            // A document may still be working on it.
            if self
                .store
                .documents(&Default::default())
                .await?
                .iter()
                .any(|d| {
                    d.file_id.as_deref() == Some(&file_id)
                        && matches!(
                            d.state,
                            DocumentState::Uploading | DocumentState::Processing
                        )
                })
            {
                continue;
            }
            self.client.delete_file(&file_id).await?;
            self.store.upload_deleted(&file_id, store::now_ms()).await?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        assert_eq!(document_retry_delay(1), Duration::from_secs(30));
        assert_eq!(document_retry_delay(2), Duration::from_secs(60));
        assert_eq!(document_retry_delay(50), Duration::from_secs(6 * 3600));
    }
}
