//! Verified ingestion of one file into one knowledge base: the pipeline
//! that `ferry ingest` uses today and the daemon's workers use for `watch`
//! rules.
//!
//! upload → wait until processed → link → recorded `linked`. From Open
//! WebUI 0.12.4 processed files are linked many at once (`files/batch/add`,
//! one embedding request for the batch); older servers get `file/add`.
//! Uploads of earlier ferry versions that named the knowledge base (the
//! server linked them itself) are still resumed. Every step is written to
//! the store as soon as it happened; an upload a crash cut off before its record carries a marker
//! naming its document, and the next start adopts it (or, if no document
//! waits for it, lets it finish processing and deletes it through the
//! collection), so nothing is uploaded twice and no stray vectors stay.
//!
//! Architecture invariants:
//! - an unchanged file (same size, mtime and inode, or same hash) is never
//!   uploaded again;
//! - a changed file is linked in its new version *before* the old one is
//!   unlinked;
//! - ferry deletes only files it uploaded itself (`uploads` table).

use std::path::Path;
use std::time::Duration;

use std::sync::Arc;

use super::tree::{Dirs, Layout, Placement};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::openwebui::{Client, Content, Error as OwuiError, FileInfo};
use crate::paths;
use crate::rules::CollectionRef;
use crate::safe_fs::Opened;
use crate::store::{self, DocumentState, FailureReason, NewUpload, Store, StoreError};
use crate::triggers::{Queue, TriggerEvent, UPKEEP_RULE};

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
    /// Open WebUI refused a file that is not empty as "duplicate", having
    /// read it as empty text ([`Ingestor::read_as_empty`]).
    #[error(
        "Open WebUI read upload {file_id} as empty text and refused it as a duplicate of other empty text"
    )]
    ReadAsEmpty { file_id: String },
}

/// How often a file may be read as empty text ([`IngestError::ReadAsEmpty`])
/// before that is taken for what Open WebUI makes of it (`empty`, which
/// waits for a change) rather than a fault of the moment.
const READ_AS_EMPTY_TRIES: i64 = 3;

/// Files up to this size are read whole on the runtime thread, hashed and
/// sent from memory (a read from the page cache, like the `open` before
/// it); larger ones go through the blocking pool.
const READ_IN_PLACE: u64 = 64 * 1024;

/// How long an upload that a crash interrupted may stay unprocessed before
/// it is taken for abandoned by Open WebUI and done again.
const RESUMED_PROCESSING_LIMIT: Duration = Duration::from_secs(120);
/// How long an upload may say `processing` before ferry looks whether
/// the server lost its write of `completed`, and the longest gap between
/// looks: processing takes 1–3 s under load, so a look is rare and cheap.
const LOST_COMPLETED_LOOK: Duration = Duration::from_secs(10);
const LOST_COMPLETED_LOOK_MAX: Duration = Duration::from_secs(60);

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Linked {
        file_id: String,
        replaced: Option<String>,
    },
    /// The same content at a new path: followed, not uploaded.
    Moved {
        file_id: String,
        from: String,
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

/// How a knowledge base that ferry creates starts out.
#[derive(Debug, Clone, Default)]
pub struct NewCollection {
    pub description: String,
    pub sharing: crate::openwebui::Sharing,
}

/// Finds a knowledge base by reference: the id remembered for the name,
/// else the oldest of that name, else (given `create`) a new one.
pub async fn resolve_collection(
    client: &Client,
    store: &Store,
    reference: &CollectionRef,
    create: Option<&NewCollection>,
    now_ms: i64,
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
                    // Remembered until another is found or made: the
                    // memory is how a deletion is told from a first use.
                    Err(OwuiError::NotFound { .. }) => {
                        tracing::warn!(collection = %name, id = %id, "remembered knowledge base is gone; looking it up again");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let now = now_ms;
            if let Some(k) = client.find_knowledge(name).await? {
                store.remember_collection(name, &k.id, false, now).await?;
                return Ok(Collection {
                    id: k.id,
                    name: name.clone(),
                });
            }
            let Some(new) = create else {
                return Err(IngestError::UnknownCollection(name.clone()));
            };
            let k = client
                .create_knowledge(name, &new.description, &new.sharing)
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

/// When to try a transiently failed document again: 5 s after the first
/// failure, then 30 s doubling to 6 h.
///
/// The first retry is soon because the common transient failure is one
/// request the server dropped while busy: 0.12.4 under concurrent uploads
/// answers one now and then with 400 "[ERROR: Error uploading file]" (its
/// insert of the file row lost to "database is locked") and the next try
/// goes through. Waiting 30 s for it decided a whole 200-file burst's end.
/// A server that is down fails the second try too, and from there the
/// waits grow.
pub fn document_retry_delay(attempts: i64) -> Duration {
    const FIRST: Duration = Duration::from_secs(5);
    if attempts <= 1 {
        return FIRST;
    }
    let exp = (attempts - 2).min(10) as u32;
    Duration::from_secs(30 << exp).min(Duration::from_secs(6 * 3600))
}

/// How old an unrecorded upload must be before a sweep touches it: older
/// than any upload request can still be running (twice the request
/// timeout, at least 30 s).
pub fn sweep_min_age(client: &Client) -> Duration {
    (client.request_timeout() * 2).max(Duration::from_secs(30))
}

/// A sweep once a lost upload is [`sweep_min_age`] old; one queued at a
/// time (a new lost answer starts the rounds again).
pub fn later_sweep(min_age: Duration, now_ms: i64) -> TriggerEvent {
    sweep_in(sweep_wait(min_age), now_ms, 0)
}

/// How many sweeps follow a lost answer: each waits twice as long as the
/// one before (35 s, 70 s, … with the least `min_age`: about 37 minutes
/// in all). A server that stalled with the request in its queue may carry
/// it out long after the answer was lost; the first sweep would not see
/// that upload, nor would anything later until the next start.
pub const SWEEP_ROUNDS: u32 = 6;

/// The least wait before a sweep after a lost answer: until an upload
/// made then can be judged.
pub fn sweep_wait(min_age: Duration) -> Duration {
    min_age + Duration::from_secs(5)
}

/// The sweep of `round` after a lost answer, due `wait` from now.
pub fn sweep_in(wait: Duration, now_ms: i64, round: u32) -> TriggerEvent {
    TriggerEvent::Sweep {
        before_s: None,
        at_ms: now_ms + wait.as_millis() as i64,
        round,
    }
}

/// Whether a regular file (not a link) is at `path`.
pub(super) fn is_regular_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

pub struct Ingestor {
    client: Client,
    store: Store,
    queue: Queue,
    clock: Clock,
    /// Put in each upload's metadata (`{"ferry": …}`), so uploads that a
    /// crash left unrecorded can be recognised as ferry's own.
    instance_id: String,
    /// Counts files read and hashed (an unchanged tree should cost none).
    metrics: Arc<Metrics>,
    /// One ingestion at a time per (collection, content): Open WebUI's own
    /// duplicate check is check-then-insert, and two identical files linked
    /// at once both pass it (seen on 0.12.4).
    content_locks: ContentLocks,
    /// See [`Dirs::changing`].
    tree_changing: tokio::sync::Mutex<()>,
}

/// Async locks by key, dropped from the map when no one holds them.
#[derive(Default)]
pub struct ContentLocks(
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
);

impl ContentLocks {
    async fn lock(&self, key: String) -> ContentGuard<'_> {
        let lock = self
            .0
            .lock()
            .expect("not poisoned")
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        ContentGuard {
            locks: self,
            key,
            _guard: guard,
        }
    }
}

struct ContentGuard<'a> {
    locks: &'a ContentLocks,
    key: String,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for ContentGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().expect("not poisoned");
        // Only the map and this guard hold it: nobody waits.
        if map
            .get(&self.key)
            .is_some_and(|l| std::sync::Arc::strong_count(l) <= 2)
        {
            map.remove(&self.key);
        }
    }
}

impl Ingestor {
    pub fn new(
        client: Client,
        store: Store,
        queue: Queue,
        instance_id: String,
        metrics: Arc<Metrics>,
    ) -> Ingestor {
        Ingestor {
            clock: queue.clock().clone(),
            client,
            store,
            queue,
            instance_id,
            metrics,
            content_locks: Default::default(),
            tree_changing: Default::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn count_hashed(&self) {
        self.metrics.file_hashed();
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Brings one file into `collection` under `rule` (identity (rule, path)).
    /// `file` was opened by [`crate::safe_fs::open_beneath`]: what is hashed and
    /// uploaded is that descriptor, never the path again. A file over
    /// `max_size` is recorded `too_large` without being read past it.
    pub async fn ingest(
        &self,
        rule: &str,
        path: &Path,
        file: Opened,
        collection: &Collection,
        max_size: u64,
        layout: &Layout,
    ) -> Result<Outcome, IngestError> {
        let shown = paths::shown(path);
        let io = |source| IngestError::Io {
            path: shown.clone(),
            source,
        };
        let (size, mtime_ns, inode) = (
            file.stat.size as i64,
            file.stat.mtime_ns,
            file.stat.inode as i64,
        );
        if file.stat.size > max_size {
            return self
                .too_large(rule, path, &file, collection, max_size)
                .await;
        }
        let key = paths::key(path).into_owned();
        let previous = self.store.document(rule, &key).await?;
        let same_place =
            |d: &store::Document| d.collection_id.as_deref() == Some(collection.id.as_str());

        // Same stats: not even hashed again.
        if let Some(d) = &previous
            && same_place(d)
            && d.size == Some(size)
            && d.mtime_ns == Some(mtime_ns)
            && d.inode == Some(inode)
            && let Some(outcome) = settled_outcome(d)
        {
            return Ok(outcome);
        }

        tracing::debug!(
            rule,
            path = %shown,
            why = why_hashed(previous.as_ref(), &collection.id, size, mtime_ns, inode),
            "hashing"
        );
        let mut file = file;
        // A small file is read whole here, hashed, and those very bytes
        // are sent; a larger one is hashed on the blocking pool and sent
        // from its descriptor. Two trips to the pool per file (hash, then
        // the upload's read) cost more than reading a few KiB in place.
        let mut held = None;
        if size as u64 <= READ_IN_PLACE {
            // `None`: it grew since it was opened; the larger path decides.
            held = file.read_limited(READ_IN_PLACE.min(max_size)).map_err(io)?;
        }
        let sha256 = match &held {
            Some(bytes) => Ok(Some(crate::safe_fs::sha256_hex(bytes))),
            None => {
                let (back, sha) = tokio::task::spawn_blocking(move || {
                    let sha = file.sha256_limited(max_size);
                    (file, sha)
                })
                .await
                .map_err(|e| io(std::io::Error::other(e)))?;
                file = back;
                sha
            }
        };
        let Some(sha256) = sha256.map_err(io)? else {
            // Grew past the limit since it was opened.
            return self
                .too_large(rule, path, &file, collection, max_size)
                .await;
        };
        self.metrics.file_hashed();
        let _same_content = self
            .content_locks
            .lock(format!("{}:{sha256}", collection.id))
            .await;
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

        if let Some(d) = &previous
            && same_place(d)
            && d.sha256.as_deref() == Some(sha256.as_str())
        {
            if d.state == DocumentState::Linked
                && let Some(file_id) = &d.file_id
            {
                // Touched, not changed: remember the new stats.
                self.store
                    .adopt(&upload, file_id, self.clock.now_ms())
                    .await?;
                return Ok(Outcome::Unchanged {
                    file_id: file_id.clone(),
                });
            }
            if let Some(outcome) = settled_outcome(d) {
                return Ok(outcome);
            }
            // An upload of this very content was under way when ferry
            // stopped: finish it instead of uploading again, which Open
            // WebUI would refuse as duplicate content once the first links.
            if matches!(
                d.state,
                DocumentState::Uploading | DocumentState::Processing
            ) && let Some(file_id) = &d.file_id
                && let Some(outcome) = self.resume(d.id, file_id, collection).await?
            {
                return Ok(outcome);
            }
            // Its last try lost an answer, not the upload: finish that one.
            if d.state == DocumentState::Failed
                && let Some(file_id) = self.store.pending_upload_of(d.id).await?
                && let Some(outcome) = self.resume(d.id, &file_id, collection).await?
            {
                return Ok(outcome);
            }
        }

        let same_content = self
            .store
            .linked_with_content(&collection.id, &sha256)
            .await?;
        if let Some(other) = &same_content
            && other.path != key
            && let Some(file_id) = other.file_id.clone()
        {
            if other.rule == rule && !is_regular_file(&paths::from_key(&other.path)) {
                // The same file moved (or was brought in under another rule
                // before): the document follows it, nothing is uploaded.
                return self
                    .moved(other, file_id, &upload, path, collection, layout)
                    .await;
            }
            let document_id = self
                .store
                .begin_upload(&upload, self.clock.now_ms())
                .await?;
            let detail = format!(
                "same content as {} (already in the collection)",
                paths::shown_key(&other.path)
            );
            return self
                .fail(document_id, FailureReason::Duplicate, detail, None)
                .await;
        }
        if let Some(other) = &same_content
            && other.path == key
            && other.rule != rule
            && let Some(file_id) = other.file_id.clone()
        {
            // Brought in before by another rule (a one-shot `ferry ingest`
            // before the watcher, say): take it over.
            self.store
                .adopt(&upload, &file_id, self.clock.now_ms())
                .await?;
            return Ok(Outcome::Unchanged { file_id });
        }

        let document_id = self
            .store
            .begin_upload(&upload, self.clock.now_ms())
            .await?;
        if size == 0 {
            return self
                .fail(
                    document_id,
                    FailureReason::Empty,
                    "the file is empty".into(),
                    None,
                )
                .await;
        }

        let old_file = previous
            .as_ref()
            .filter(|d| d.state == DocumentState::Linked && same_place(d))
            .and_then(|d| d.file_id.clone());
        match self
            .upload_and_link(
                document_id,
                &layout.place(path),
                match &held {
                    Some(bytes) => Content::Bytes(bytes),
                    None => Content::File {
                        file: &file.file,
                        length: file.stat.size,
                    },
                },
                collection,
                &sha256,
            )
            .await
        {
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
            Err(IngestError::OpenWebUi(OwuiError::DuplicateContent { .. }))
                if let Some(earlier) =
                    self.link_earlier_upload(document_id, collection).await? =>
            {
                Ok(Outcome::Linked {
                    file_id: earlier,
                    replaced: None,
                })
            }
            Err(IngestError::ReadAsEmpty { file_id }) => {
                let (attempts, later) = self.next_try(rule, &key).await?;
                let (reason, retry_at, detail) = if attempts >= READ_AS_EMPTY_TRIES {
                    (
                        FailureReason::Empty,
                        None,
                        format!(
                            "Open WebUI read this file as empty text {attempts} times (the last: upload {file_id}, refused as a duplicate of other empty text)"
                        ),
                    )
                } else {
                    (
                        FailureReason::Processing,
                        Some(later),
                        format!(
                            "Open WebUI read this file as empty text (upload {file_id}) and refused it as a duplicate of other empty text; tried again later"
                        ),
                    )
                };
                // The refused upload is no use to a retry: dropped now.
                self.record_failure(document_id, reason, detail, retry_at, false)
                    .await
            }
            Err(IngestError::OpenWebUi(e)) => {
                let reason = failure_reason(&e);
                let (_, later) = self.next_try(rule, &key).await?;
                let retry_at = (!reason.is_permanent()).then_some(later);
                self.fail(document_id, reason, e.to_string(), retry_at)
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// A failed document's tries so far, and when its next one is due.
    async fn next_try(&self, rule: &str, key: &str) -> Result<(i64, i64), IngestError> {
        let attempts = self
            .store
            .document(rule, key)
            .await?
            .map_or(1, |d| d.attempts);
        let at = self.clock.now_ms() + document_retry_delay(attempts).as_millis() as i64;
        Ok((attempts, at))
    }

    /// Records a file too large to send, without sending it.
    async fn too_large(
        &self,
        rule: &str,
        path: &Path,
        file: &Opened,
        collection: &Collection,
        limit: u64,
    ) -> Result<Outcome, IngestError> {
        let key = paths::key(path).into_owned();
        let stat = file.stat;
        if let Some(d) = self.store.document(rule, &key).await?
            && d.size == Some(stat.size as i64)
            && d.mtime_ns == Some(stat.mtime_ns)
            && d.reason == Some(FailureReason::TooLarge)
        {
            return Ok(settled_outcome(&d).expect("a permanent failure"));
        }
        let upload = NewUpload {
            rule,
            path: &key,
            collection_id: &collection.id,
            collection_name: &collection.name,
            size: stat.size as i64,
            mtime_ns: stat.mtime_ns,
            inode: stat.inode as i64,
            sha256: "",
        };
        let id = self
            .store
            .begin_upload(&upload, self.clock.now_ms())
            .await?;
        let detail = format!(
            "{} bytes is above the rule's max_size of {limit}",
            stat.size
        );
        self.fail(id, FailureReason::TooLarge, detail, None).await
    }

    async fn fail(
        &self,
        document_id: i64,
        reason: FailureReason,
        detail: String,
        retry_at: Option<i64>,
    ) -> Result<Outcome, IngestError> {
        // An answer cut off after the upload was taken (waiting for its
        // processing, say) is no verdict on it: the server may finish and
        // link it. Kept, the retry finishes it; deleted (which may fail
        // too) and sent again, two copies raced through Open WebUI's
        // duplicate check and both got linked (0.12.4, frozen and resumed).
        let keep = retry_at.is_some() && self.store.pending_upload_of(document_id).await?.is_some();
        self.record_failure(document_id, reason, detail, retry_at, keep)
            .await
    }

    /// Records a failure; unless `keep`, ferry's upload of the document is
    /// deleted.
    async fn record_failure(
        &self,
        document_id: i64,
        reason: FailureReason,
        detail: String,
        retry_at: Option<i64>,
        keep: bool,
    ) -> Result<Outcome, IngestError> {
        self.store
            .failed(
                document_id,
                reason,
                &detail,
                retry_at,
                keep,
                self.clock.now_ms(),
            )
            .await?;
        if !keep {
            self.delete_failed_upload(document_id).await;
        }
        Ok(Outcome::Failed {
            reason,
            detail,
            known: false,
        })
    }

    async fn moved(
        &self,
        other: &store::Document,
        file_id: String,
        upload: &NewUpload<'_>,
        path: &Path,
        collection: &Collection,
        layout: &Layout,
    ) -> Result<Outcome, IngestError> {
        self.store
            .move_document(other.id, upload, self.clock.now_ms())
            .await?;
        let new = layout.place(path);
        let old = layout.place(&paths::from_key(&other.path));
        // Into the new folder's directory first: a failure here is retried
        // with the move (the document already follows the file).
        self.dirs(&collection.id)
            .follow_move(
                layout,
                &file_id,
                old.folder.as_deref(),
                new.folder.as_deref(),
            )
            .await?;
        let (old_name, new_name) = (old.name, new.name);
        if old_name != new_name {
            match self.client.rename_file(&file_id, &new_name).await {
                Ok(true) => {}
                Ok(false) => tracing::info!(
                    file_id,
                    "this Open WebUI cannot rename files; the collection keeps the old name"
                ),
                Err(e) => {
                    tracing::warn!(file_id, error = %e, "could not rename the file in Open WebUI")
                }
            }
        }
        Ok(Outcome::Moved {
            file_id,
            from: other.path.clone(),
        })
    }

    /// Finishes an interrupted upload; `None` when it cannot be finished
    /// (gone, failed) and must be done again.
    async fn resume(
        &self,
        document_id: i64,
        file_id: &str,
        collection: &Collection,
    ) -> Result<Option<Outcome>, IngestError> {
        match self
            .client
            .wait_processed_within(file_id, RESUMED_PROCESSING_LIMIT)
            .await
        {
            Ok(()) => {}
            Err(OwuiError::NotFound { .. }) => {
                self.store
                    .upload_deleted(file_id, self.clock.now_ms())
                    .await?;
                return Ok(None);
            }
            Err(
                OwuiError::ProcessingFailed { .. }
                | OwuiError::DuplicateContent { .. }
                | OwuiError::EmptyContent { .. },
            ) => {
                // Refused (duplicate, say): no use to anyone, and not to be
                // left for a sweep that may be far off.
                self.delete_own_upload(file_id, Some(&collection.id)).await;
                return Ok(None);
            }
            Err(OwuiError::Timeout { .. })
                if self
                    .linked_though_processing(file_id, &collection.id)
                    .await? => {}
            Err(OwuiError::Timeout { .. }) => {
                // Open WebUI stops processing an upload whose request was
                // cut off by the crash and leaves it `processing` for ever
                // (seen on 0.12.4 in the kill -9 test): start again.
                tracing::warn!(
                    file_id,
                    "an interrupted upload never finished processing; uploading again"
                );
                self.delete_own_upload(file_id, Some(&collection.id)).await;
                return Ok(None);
            }
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(_) => return Ok(None),
        }
        let linked_itself = self.links_itself_into(file_id, &collection.id).await?;
        let linked = if linked_itself {
            Ok(())
        } else {
            self.relink(&collection.id, file_id).await
        };
        match linked {
            Ok(()) => {
                self.store
                    .linked(document_id, file_id, self.clock.now_ms())
                    .await?;
                tracing::info!(file_id, "finished an upload interrupted by a restart");
                Ok(Some(Outcome::Linked {
                    file_id: file_id.to_string(),
                    replaced: None,
                }))
            }
            Err(e) if e.is_transient() => Err(e.into()),
            Err(_) => Ok(None),
        }
    }

    /// The collection's directories, now.
    pub fn dirs<'a>(&'a self, collection_id: &'a str) -> Dirs<'a> {
        Dirs {
            client: &self.client,
            store: &self.store,
            kb: collection_id,
            now_ms: self.clock.now_ms(),
            changing: &self.tree_changing,
        }
    }

    async fn upload_and_link(
        &self,
        document_id: i64,
        placement: &Placement,
        content: Content<'_>,
        collection: &Collection,
        sha256: &str,
    ) -> Result<String, IngestError> {
        let name = &placement.name;
        let directory = self.dirs(&collection.id).directory_of(placement).await?;
        // The marker names the document, so that an upload a crash left
        // unrecorded is adopted by it at the next start instead of being
        // deleted while Open WebUI may still be embedding it.
        let mut marker = serde_json::json!({
            "ferry": self.instance_id,
            "ferry_document": document_id,
            "file_hash": sha256,
        });
        // From 0.12.4 processed files are linked in batches: one
        // `files/batch/add` embeds many files into the collection at once,
        // where an upload that links itself (`metadata.knowledge_id`) or
        // `file/add` embeds each file again on its own, and the server's
        // CPU is what limits a burst.
        let batched = self.client.version().await?.has_batch_link();
        let slot = if batched {
            // Not `knowledge_id`, which would have the server link it: the
            // sweep after a crash adopts an unrecorded upload by this.
            marker["ferry_kb"] = collection.id.clone().into();
            Some(self.client.processing_slot().await)
        } else {
            None
        };
        let info = match self.client.upload(content, name, Some(&marker)).await {
            Ok(info) => info,
            Err(e) if !e.request_not_processed() && e.is_transient() => {
                // The answer was lost, not necessarily the upload: Open
                // WebUI may hold it under this document's marker. A sweep
                // (adopt or delete) runs once it can no longer be in flight.
                let sweep = later_sweep(sweep_min_age(&self.client), self.clock.now_ms());
                if let Err(se) = self.queue.submit(UPKEEP_RULE, sweep).await {
                    tracing::warn!(error = %se, "cannot schedule the sweep of a lost upload");
                }
                return Err(e.into());
            }
            Err(OwuiError::Io { path, source }) => return Err(IngestError::Io { path, source }),
            Err(e) => return Err(e.into()),
        };
        self.store
            .uploaded(document_id, &info.id, self.clock.now_ms())
            .await?;
        let processed = if batched {
            self.wait_processed_batched(&info.id).await
        } else {
            self.client.wait_processed(&info.id).await
        };
        // Processed, the file no longer loads the server: its slot goes to
        // the next upload while it waits for a batch.
        drop(slot);
        let linked = match processed {
            Ok(()) if batched => {
                self.client
                    .link_batched(&collection.id, &info.id, directory.as_deref())
                    .await
            }
            Ok(()) => {
                self.client
                    .add_file_in(&collection.id, &info.id, directory.as_deref())
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = linked {
            return Err(self.read_as_empty(e, &info.id, content.size()).await);
        }
        self.store
            .linked(document_id, &info.id, self.clock.now_ms())
            .await?;
        Ok(info.id)
    }

    /// Waits for an upload to be processed, from the shared listing.
    /// 0.12.4 under load processes a file and then loses the write of
    /// `completed` (its `update_file_data_by_id` swallows "database is
    /// locked"), so the status says `processing` for ever. The file's
    /// `hash` (of its text) is written after its vectors, as the last step
    /// of processing: a file that has one is processed, whatever the
    /// status says.
    async fn wait_processed_batched(&self, file_id: &str) -> Result<(), OwuiError> {
        let wait = self.client.wait_processed_listed(file_id);
        tokio::pin!(wait);
        let mut look_after = LOST_COMPLETED_LOOK;
        loop {
            tokio::select! {
                result = &mut wait => return result,
                () = self.clock.sleep(look_after) => {}
            }
            match self.client.file(file_id).await {
                Ok(info) if info.hash.is_some() => {
                    tracing::warn!(
                        file_id,
                        "Open WebUI processed the upload but its status still says processing (it lost its own write of 'completed'); taking it as processed"
                    );
                    return Ok(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(file_id, error = %e, "cannot look at the upload")
                }
            }
            look_after = (look_after * 2).min(LOST_COMPLETED_LOOK_MAX);
        }
    }

    /// 0.12.4 under load read uploads as empty text and refused them as
    /// "duplicate" of other empty text (the hash in its log is SHA-256 of
    /// nothing): a file that is not empty, refused so, and whose text the
    /// server holds as empty, was refused by a fault of the moment. Any
    /// other error, or a look at the upload that fails, stays as it was.
    async fn read_as_empty(&self, e: OwuiError, file_id: &str, size: u64) -> IngestError {
        if size == 0 || !matches!(e, OwuiError::DuplicateContent { .. }) {
            return e.into();
        }
        match self.client.file(file_id).await {
            Ok(f)
                if f.data
                    .as_ref()
                    .and_then(|d| d.content.as_deref())
                    .is_some_and(|text| text.trim().is_empty()) =>
            {
                tracing::warn!(
                    file_id,
                    "Open WebUI read a file that is not empty as empty text and refused it as a duplicate; trying again later"
                );
                IngestError::ReadAsEmpty {
                    file_id: file_id.to_string(),
                }
            }
            _ => e.into(),
        }
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
                    let _ = self
                        .store
                        .upload_deleted(file_id, self.clock.now_ms())
                        .await;
                }
                Err(e) => tracing::warn!(file_id, error = %e, "could not delete the old version"),
            }
        }
    }

    /// Removes a document whose file left the folder: unlinked and deleted
    /// in Open WebUI if ferry uploaded it, left alone otherwise.
    pub async fn remove(
        &self,
        document: &store::Document,
        collection: &Collection,
    ) -> Result<bool, IngestError> {
        let Some(file_id) = &document.file_id else {
            self.store.removed(document.id, self.clock.now_ms()).await?;
            return Ok(false);
        };
        if !self.store.is_own_upload(file_id).await? {
            self.store.removed(document.id, self.clock.now_ms()).await?;
            return Ok(false);
        }
        if document.state == DocumentState::Linked {
            match self
                .client
                .remove_file(&collection.id, file_id, false)
                .await
            {
                Ok(()) | Err(OwuiError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.client.delete_file(file_id).await?;
        self.store
            .upload_deleted(file_id, self.clock.now_ms())
            .await?;
        self.store.removed(document.id, self.clock.now_ms()).await?;
        Ok(true)
    }

    /// Deletes ferry's failed upload of one document, so that failures do
    /// not pile up as orphans in Open WebUI's file table.
    /// A link refused as duplicate content may collide with this very
    /// document's own earlier upload, embedded into the collection by a run
    /// that was killed before it recorded the link (seen on 0.6.40). Links
    /// that earlier upload instead and drops the new one. Returns its id.
    async fn link_earlier_upload(
        &self,
        document_id: i64,
        collection: &Collection,
    ) -> Result<Option<String>, IngestError> {
        let current = self.store.document_file_id(document_id).await?;
        let earlier = self
            .store
            .earlier_uploads(document_id, current.as_deref())
            .await?;
        if let Some(file_id) = self
            .unrecorded_upload_in(document_id, current.as_deref(), collection)
            .await?
        {
            self.store
                .uploaded(document_id, &file_id, self.clock.now_ms())
                .await?;
            tracing::info!(
                file_id,
                "took up an earlier upload of the same file that a crash left unrecorded"
            );
            return self
                .instead_of(document_id, file_id, current, collection)
                .await;
        }
        for file_id in earlier {
            if self.relink(&collection.id, &file_id).await.is_ok() {
                tracing::info!(
                    file_id,
                    "linked an earlier upload of the same file instead of a duplicate"
                );
                return self
                    .instead_of(document_id, file_id, current, collection)
                    .await;
            }
        }
        Ok(None)
    }

    /// Records `file_id` as the document's linked upload and drops the
    /// upload it replaces (refused as its duplicate).
    async fn instead_of(
        &self,
        document_id: i64,
        file_id: String,
        replaced: Option<String>,
        collection: &Collection,
    ) -> Result<Option<String>, IngestError> {
        self.store
            .linked(document_id, &file_id, self.clock.now_ms())
            .await?;
        if let Some(new) = replaced {
            self.delete_own_upload(&new, Some(&collection.id)).await;
        }
        Ok(Some(file_id))
    }

    /// This document's upload that a killed run sent but never recorded
    /// and that the server went on to link (0.12.4 finishes the request of
    /// a client that died; when that lands after the restart's sweep, the
    /// next upload of the same content is refused as its duplicate).
    async fn unrecorded_upload_in(
        &self,
        document_id: i64,
        current: Option<&str>,
        collection: &Collection,
    ) -> Result<Option<String>, IngestError> {
        if !self.client.version().await?.upload_link_is_verified() {
            return Ok(None);
        }
        let sha256 = self.store.document_sha256(document_id).await?;
        for f in self.client.knowledge_files(&collection.id).await? {
            let data = f.meta.data.as_ref();
            let field = |key: &str| data.and_then(|d| d.get(key));
            if field("ferry").and_then(|v| v.as_str()) == Some(self.instance_id.as_str())
                && field("ferry_document").and_then(|v| v.as_i64()) == Some(document_id)
                && f.meta.file_hash.is_some()
                && f.meta.file_hash == sha256
                && Some(f.id.as_str()) != current
                && !self.store.is_own_upload(&f.id).await?
            {
                return Ok(Some(f.id));
            }
        }
        Ok(None)
    }

    /// Links one of ferry's own uploads that an interrupted run may have
    /// half-linked: embedded into the collection, but missing from its
    /// file list (0.6 loses list writes). 0.6 then refuses the file as a
    /// duplicate of itself; unlinking drops its vectors so it links afresh.
    async fn relink(&self, collection_id: &str, file_id: &str) -> Result<(), OwuiError> {
        match self.client.add_file(collection_id, file_id).await {
            Err(OwuiError::DuplicateContent { .. }) => {
                self.client
                    .remove_file(collection_id, file_id, false)
                    .await?;
                self.client.add_file(collection_id, file_id).await
            }
            other => other,
        }
    }

    /// Whether a processed upload was linked by the server itself: sent
    /// with `metadata.knowledge_id` of this collection to a server whose
    /// `completed` includes the link.
    async fn links_itself_into(
        &self,
        file_id: &str,
        collection_id: &str,
    ) -> Result<bool, IngestError> {
        Ok(self.self_linking(file_id, collection_id).await?.is_some())
    }

    /// The upload, if it was sent to link itself into this collection
    /// ([`Ingestor::links_itself_into`]).
    async fn self_linking(
        &self,
        file_id: &str,
        collection_id: &str,
    ) -> Result<Option<FileInfo>, IngestError> {
        if !self.client.version().await?.upload_link_is_verified() {
            return Ok(None);
        }
        let info = self.client.file(file_id).await?;
        let target = info
            .meta
            .data
            .as_ref()
            .and_then(|d| d.get("knowledge_id"))
            .and_then(|v| v.as_str());
        Ok((target == Some(collection_id)).then_some(info))
    }

    /// An upload that linked itself into the collection though its status
    /// still says `processing` (see [`Ingestor::wait_linked_itself`]).
    async fn linked_though_processing(
        &self,
        file_id: &str,
        collection_id: &str,
    ) -> Result<bool, IngestError> {
        let Some(info) = self.self_linking(file_id, collection_id).await? else {
            return Ok(false);
        };
        let name = info.filename.unwrap_or_default();
        Ok(self
            .client
            .knowledge_lists(collection_id, file_id, &name)
            .await?)
    }

    /// Deletes one of ferry's uploads, through the collection when it may
    /// have reached it: 0.6 deletes a file without its vectors in knowledge
    /// bases, and vectors left behind make the same content "duplicate"
    /// for ever after.
    async fn delete_own_upload(&self, file_id: &str, collection_id: Option<&str>) {
        if let Some(kb) = collection_id {
            match self.client.remove_file(kb, file_id, true).await {
                Ok(()) => {
                    let _ = self
                        .store
                        .upload_deleted(file_id, self.clock.now_ms())
                        .await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(file_id, error = %e, "not in the collection; deleting the file alone")
                }
            }
            // An upload that linked itself and was cut off by a crash may
            // have put its vectors into the collection without the link
            // (Open WebUI cancels the work with the connection). Only a
            // linked file's vectors can be removed: link, then remove.
            if self.links_itself_into(file_id, kb).await.unwrap_or(false)
                && self.client.add_file(kb, file_id).await.is_ok()
                && self.client.remove_file(kb, file_id, true).await.is_ok()
            {
                let _ = self
                    .store
                    .upload_deleted(file_id, self.clock.now_ms())
                    .await;
                return;
            }
        }
        match self.client.delete_file(file_id).await {
            Ok(()) | Err(OwuiError::NotFound { .. }) => {
                let _ = self
                    .store
                    .upload_deleted(file_id, self.clock.now_ms())
                    .await;
            }
            Err(e) if e.is_transient() => {
                // Not left until the next start: while it stays, a server
                // that comes back may still finish and link it.
                tracing::warn!(file_id, error = %e, "could not delete an upload; a sweep tries again");
                let sweep = later_sweep(sweep_min_age(&self.client), self.clock.now_ms());
                if let Err(se) = self.queue.submit(UPKEEP_RULE, sweep).await {
                    tracing::warn!(error = %se, "cannot schedule the sweep of an upload left behind");
                }
            }
            Err(e) => {
                tracing::warn!(file_id, error = %e, "could not delete an upload; the next start tries again")
            }
        }
    }

    async fn delete_failed_upload(&self, document_id: i64) {
        let Ok(Some(file_id)) = self.store.unlinked_upload_of(document_id).await else {
            return;
        };
        let collection = self.store.upload_collection(&file_id).await.ok().flatten();
        self.delete_own_upload(&file_id, collection.as_deref())
            .await;
    }

    /// Deletes every upload of ferry's that never got linked: recorded ones
    /// (a failure whose delete failed) and, with `sweep_unrecorded`, files
    /// in Open WebUI that carry this instance's marker but that the store
    /// does not know (a crash between upload and record, or an upload
    /// whose answer a connection lost). Only unrecorded uploads made
    /// in or before second `made_before_s` (Unix seconds; Open WebUI keeps
    /// no finer time) are touched: younger ones may belong to an upload
    /// still under way. Returns how many were deleted,
    /// and how many were left for being younger.
    pub async fn clean_orphans(
        &self,
        sweep_unrecorded: bool,
        made_before_s: i64,
    ) -> Result<(usize, usize), IngestError> {
        let mut deleted = 0;
        let mut young = 0;
        let busy = self.store.current_file_ids().await?;
        for file_id in self.store.orphan_uploads().await? {
            if busy.contains(&file_id) {
                continue;
            }
            let collection = self.store.upload_collection(&file_id).await?;
            self.delete_own_upload(&file_id, collection.as_deref())
                .await;
            deleted += 1;
        }
        if sweep_unrecorded {
            let mut strays = Vec::new();
            for f in self.client.files().await? {
                let data = f.meta.data.as_ref();
                let field = |key: &str| data.and_then(|d| d.get(key));
                let ours =
                    field("ferry").and_then(|v| v.as_str()) == Some(self.instance_id.as_str());
                if !ours || busy.contains(&f.id) || self.store.is_own_upload(&f.id).await? {
                    continue;
                }
                if f.created_at.is_none_or(|t| t > made_before_s) {
                    young += 1;
                    continue;
                }
                let collection = field("knowledge_id")
                    .or_else(|| field("ferry_kb"))
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                if let (Some(document_id), Some(kb)) = (
                    field("ferry_document").and_then(|v| v.as_i64()),
                    &collection,
                ) && self
                    .store
                    .adopt_unrecorded_upload(
                        document_id,
                        &f.id,
                        kb,
                        f.meta.file_hash.as_deref(),
                        self.clock.now_ms(),
                    )
                    .await?
                {
                    // Its document's job resumes it: waits, checks the link.
                    tracing::info!(file_id = %f.id, document_id, "took up an upload a crash left unrecorded");
                    continue;
                }
                strays.push((f, collection));
            }
            // An upload may still be at work on the server: deleted now,
            // its vectors would land after the delete (in the collection,
            // for an upload of an earlier version that links itself) and
            // make that content "duplicate" for ever. Let each settle
            // first, all at once.
            let settle = strays.iter().map(|(f, collection)| async move {
                if collection.is_some() {
                    let _ = self
                        .client
                        .wait_processed_within(&f.id, RESUMED_PROCESSING_LIMIT)
                        .await;
                }
                tracing::info!(file_id = %f.id, name = f.meta.name.as_deref().unwrap_or(""), "deleting an upload a crash left unrecorded");
                self.delete_own_upload(&f.id, collection.as_deref()).await;
            });
            futures_util::future::join_all(settle).await;
            deleted += strays.len();
        }
        Ok((deleted, young))
    }
}

/// The answer for a document that needs no new work: linked, or failed for
/// good until the file changes.
/// Why a file is read again: what a restart that re-hashes should explain.
fn why_hashed(
    previous: Option<&store::Document>,
    collection_id: &str,
    size: i64,
    mtime_ns: i64,
    inode: i64,
) -> String {
    let Some(d) = previous else {
        return "new".into();
    };
    if d.collection_id.as_deref() != Some(collection_id) {
        return "another collection".into();
    }
    let mut changed = Vec::new();
    if d.size != Some(size) {
        changed.push("size");
    }
    if d.mtime_ns != Some(mtime_ns) {
        changed.push("mtime");
    }
    if d.inode != Some(inode) {
        changed.push("inode");
    }
    if changed.is_empty() {
        format!("state {} ({:?})", d.state.as_str(), d.reason)
    } else {
        changed.join("+") + " changed"
    }
}

fn settled_outcome(d: &store::Document) -> Option<Outcome> {
    match (d.state, d.reason, &d.file_id) {
        (DocumentState::Linked, _, Some(file_id)) => Some(Outcome::Unchanged {
            file_id: file_id.clone(),
        }),
        (DocumentState::Failed, Some(reason), _) if reason.is_permanent() => {
            Some(Outcome::Failed {
                reason,
                detail: d.error.clone().unwrap_or_default(),
                known: true,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_cap() {
        assert_eq!(document_retry_delay(0), Duration::from_secs(5));
        assert_eq!(document_retry_delay(1), Duration::from_secs(5));
        assert_eq!(document_retry_delay(2), Duration::from_secs(30));
        assert_eq!(document_retry_delay(3), Duration::from_secs(60));
        assert_eq!(document_retry_delay(11), Duration::from_secs(30 * 512));
        assert_eq!(document_retry_delay(50), Duration::from_secs(6 * 3600));
    }
}
