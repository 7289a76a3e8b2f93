//! Workers claim jobs from the store and run them. They are the only code
//! that calls Open WebUI on the daemon's behalf.
//!
//! Architecture invariant: a job's outcome is written only by the worker
//! that holds its lease; a worker that loses the lease (it expired while
//! the process was stalled) writes nothing.

pub mod chat;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ingest::{self, Collection, IngestError, Ingestor, Outcome};
use crate::openwebui::Client;
use crate::paths;
use crate::rules::{OnDelete, Rule, Trigger, Watch};
use crate::safe_fs::{self, Refusal};
use crate::store::{self, Effects, Job, NewJob, Store};
use crate::watch::reconcile::PathFilter;

/// Job kind: bring one path of a watch rule in line with the folder.
pub const SYNC: &str = "sync";

const LEASE: Duration = Duration::from_secs(60);

/// How often a full state disk is looked at again.
const SPACE_PROBE: Duration = Duration::from_secs(2);

/// What the daemon's tasks share.
pub struct Shared {
    pub store: Store,
    pub client: Client,
    pub ingestor: Ingestor,
    rules: RwLock<Arc<Vec<Rule>>>,
    /// Rung when a job is enqueued, so idle workers wake at once.
    pub wake: Notify,
    /// Rung when deliveries are written, so the delivery loop wakes at once.
    pub deliveries_wake: Arc<Notify>,
    /// Enqueues of bursts (hooks) share transactions.
    pub batcher: store::EnqueueBatcher,
    collections: tokio::sync::Mutex<HashMap<String, Collection>>,
    /// This process, as lease owner.
    pub owner: String,
    /// Which long-running tasks are down, and their restarts.
    pub tasks: Arc<crate::supervise::Tasks>,
}

impl Shared {
    pub fn new(store: Store, client: Client, instance_id: String, rules: Vec<Rule>) -> Shared {
        let batcher = store::EnqueueBatcher::spawn(store.clone());
        Shared {
            ingestor: Ingestor {
                client: client.clone(),
                store: store.clone(),
                instance_id: instance_id.clone(),
                hashed: Default::default(),
                content_locks: Default::default(),
            },
            store,
            client,
            rules: RwLock::new(Arc::new(rules)),
            wake: Notify::new(),
            deliveries_wake: Arc::new(Notify::new()),
            batcher,
            collections: Default::default(),
            owner: format!("{instance_id}:{}", std::process::id()),
            tasks: Default::default(),
        }
    }

    pub fn rules(&self) -> Arc<Vec<Rule>> {
        self.rules.read().expect("not poisoned").clone()
    }

    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.rules.write().expect("not poisoned") = Arc::new(rules);
    }

    pub fn rule(&self, name: &str) -> Option<Rule> {
        self.rules().iter().find(|r| r.name == name).cloned()
    }

    /// The rule's knowledge base, created on first use, then cached.
    pub async fn collection(&self, rule: &Rule) -> Result<Collection, IngestError> {
        let reference = &rule
            .ingest
            .as_ref()
            .expect("sync jobs belong to ingest rules")
            .collection;
        let key = format!("{}\u{0}{reference}", rule.name);
        let mut cache = self.collections.lock().await;
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let c = ingest::resolve_collection(&self.client, &self.store, reference, true).await?;
        cache.insert(key, c.clone());
        Ok(c)
    }

    /// Asks for `path` of `rule` to be looked at, after `delay`.
    pub async fn enqueue_sync(
        &self,
        rule: &str,
        path: &Path,
        delay: Duration,
    ) -> Result<(), store::StoreError> {
        let now = store::now_ms();
        self.store
            .enqueue(&sync_job(rule, path, now + delay.as_millis() as i64), now)
            .await?;
        self.wake.notify_waiters();
        Ok(())
    }

    /// Enqueues a look at each path now, sharing commits: files dropped
    /// together settle together, and one fsync each was a good part of
    /// ferry's CPU per file.
    pub async fn enqueue_syncs(
        &self,
        rule: &str,
        paths: &[PathBuf],
    ) -> Result<(), store::StoreError> {
        let now = store::now_ms();
        let enqueues = paths
            .iter()
            .map(|path| self.batcher.enqueue(sync_job(rule, path, now)));
        for result in futures_util::future::join_all(enqueues).await {
            result?;
        }
        self.wake.notify_waiters();
        Ok(())
    }
}

fn sync_job(rule: &str, path: &Path, run_after: i64) -> NewJob {
    NewJob {
        rule: rule.to_string(),
        kind: SYNC.into(),
        trigger_kind: "watch".into(),
        input: json!({ "path": paths::key(path) }),
        run_after,
        max_attempts: 8,
        coalesce_key: Some(format!("{SYNC}:{rule}:{}", paths::key(path))),
        dedupe_key: None,
    }
}

/// How a run ended.
pub(crate) enum Finish {
    Done(Value),
    Retry {
        error: String,
        at_ms: i64,
    },
    /// A permanent failure: `dead` at once.
    Fail(String),
}

/// Runs `count` workers until `stop` (no new claims); a job still running
/// at `hard_stop` is released back to the queue, its attempt refunded.
pub async fn run_workers(
    shared: Arc<Shared>,
    count: usize,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count.max(1) {
        let (shared, stop, hard_stop) = (shared.clone(), stop.clone(), hard_stop.clone());
        tasks.spawn(crate::supervise::supervised(
            shared.tasks.clone(),
            format!("worker:{n}"),
            stop.clone(),
            move || worker(n, shared.clone(), stop.clone(), hard_stop.clone()),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn worker(
    n: usize,
    shared: Arc<Shared>,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        // A full disk: claim nothing (its outcome could not be recorded);
        // look for space every few seconds, one worker at a time.
        if shared.store.unwritable().is_some() {
            if n == 0 {
                shared.store.probe_space().await;
            }
            if shared.store.unwritable().is_some() {
                tokio::select! {
                    _ = tokio::time::sleep(SPACE_PROBE) => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
        }
        let job = match shared
            .store
            .claim(&shared.owner, store::now_ms(), LEASE.as_millis() as i64)
            .await
        {
            Ok(job) => job,
            Err(e) => {
                shared.store.note_write_error(&e);
                if !e.is_full() {
                    tracing::error!(worker = n, error = %e, "cannot claim jobs");
                }
                None
            }
        };
        let Some(job) = job else {
            let wait = match shared.store.next_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - store::now_ms()).clamp(10, 1000) as u64)
                }
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        };
        let id = job.id.clone();
        let renew = {
            let (shared, id) = (shared.clone(), id.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE / 3).await;
                    let until = store::now_ms() + LEASE.as_millis() as i64;
                    if !matches!(
                        shared.store.renew(&id, &shared.owner, until).await,
                        Ok(true)
                    ) {
                        break;
                    }
                }
            })
        };
        let finish = tokio::select! {
            f = run(&shared, &job) => Some(f),
            _ = hard_stop.cancelled() => None,
        };
        let (has_deliveries, has_jobs) = finish.as_ref().map_or((false, false), |(_, e)| {
            (!e.deliveries.is_empty(), !e.jobs.is_empty())
        });
        // A full disk: the outcome (an answer that cost a model call, say)
        // is kept here and written once space returns, the lease renewed
        // meanwhile; the job is not done twice.
        let mut written = record(&shared, &job, finish.as_ref()).await;
        while let Err(e) = &written
            && e.is_full()
            && !hard_stop.is_cancelled()
        {
            shared.store.note_write_error(e);
            tokio::select! {
                _ = tokio::time::sleep(SPACE_PROBE) => {}
                _ = hard_stop.cancelled() => {}
            }
            if n == 0 || shared.store.unwritable().is_some() {
                shared.store.probe_space().await;
            }
            written = record(&shared, &job, finish.as_ref()).await;
        }
        renew.abort();
        if has_deliveries {
            shared.deliveries_wake.notify_one();
        }
        if has_jobs {
            shared.wake.notify_waiters();
        }
        if let Err(e) = written {
            // The lease runs out and the job is done again: nothing lost.
            shared.store.note_write_error(&e);
            tracing::error!(job = %id, error = %e, "cannot record the job's outcome; it runs again when its lease ends");
        }
    }
}

/// Writes a run's outcome (`None`: stopped by shutdown, released).
async fn record(
    shared: &Shared,
    job: &Job,
    finish: Option<&(Finish, Effects)>,
) -> Result<(), store::StoreError> {
    let (id, now) = (&job.id, store::now_ms());
    match finish {
        None => shared.store.release(id, &shared.owner, now).await.map(|_| ()),
        Some((Finish::Done(result), effects)) => shared
            .store
            .complete(id, &shared.owner, result, effects, now)
            .await
            .map(|ok| {
                if !ok {
                    tracing::warn!(job = %id, "lease lost before completion; result dropped");
                }
            }),
        Some((Finish::Retry { error, at_ms }, if_dead)) => shared
            .store
            .retry(id, &shared.owner, error, *at_ms, if_dead, now)
            .await
            .map(|state| {
                if state == store::JobState::Dead {
                    tracing::error!(job = %id, rule = %job.rule, error, "job gave up after {} attempts", job.attempts);
                }
            }),
        Some((Finish::Fail(error), effects)) => {
            tracing::error!(job = %id, rule = %job.rule, error, "job failed");
            shared
                .store
                .fail(id, &shared.owner, error, effects, now)
                .await
                .map(|_| ())
        }
    }
}

async fn run(shared: &Shared, job: &Job) -> (Finish, Effects) {
    // Ingestion and sweeps back off like documents do.
    let later = |e: IngestError| {
        (
            Finish::Retry {
                error: e.to_string(),
                at_ms: store::now_ms()
                    + ingest::document_retry_delay(job.attempts).as_millis() as i64,
            },
            Effects::default(),
        )
    };
    match job.kind.as_str() {
        SYNC => sync(shared, job).await.unwrap_or_else(later),
        chat::CHAT => chat::run(shared, job).await,
        ingest::SWEEP => sweep(shared).await.unwrap_or_else(later),
        other => (
            Finish::Fail(format!("unknown job kind `{other}`")),
            Effects::default(),
        ),
    }
}

/// Adopts or deletes the uploads whose answers were lost; queues another
/// sweep for those still too young to judge.
async fn sweep(shared: &Shared) -> Result<(Finish, Effects), IngestError> {
    let min_age = ingest::sweep_min_age(&shared.client);
    let (n, young) = shared.ingestor.clean_orphans(true, Some(min_age)).await?;
    if n > 0 {
        tracing::info!(deleted = n, "swept uploads whose answers were lost");
    }
    let jobs = if young > 0 {
        vec![ingest::sweep_job(min_age)]
    } else {
        Vec::new()
    };
    Ok((
        Finish::Done(json!({ "deleted": n, "left_for_later": young })),
        Effects {
            jobs,
            ..Default::default()
        },
    ))
}

/// Brings one path in line: ingest it if it is a regular file under the
/// root, take it down if it is gone, record it skipped (after taking down
/// what it was) if it is a link or another special file.
async fn sync(shared: &Shared, job: &Job) -> Result<(Finish, Effects), IngestError> {
    let done = |v: Value| Ok((Finish::Done(v), Effects::default()));
    let path = paths::from_key(job.input["path"].as_str().unwrap_or_default());
    let Some(rule) = shared.rule(&job.rule) else {
        return done(json!({ "skipped": "the rule no longer exists" }));
    };
    let Trigger::Watch(watch) = &rule.trigger else {
        return done(json!({ "skipped": "the rule no longer watches" }));
    };
    let Ok(relative) = path.strip_prefix(&watch.path) else {
        return done(json!({ "skipped": "outside the watched folder" }));
    };
    let filter = PathFilter::new(watch).map_err(|e| IngestError::Io {
        path: watch.path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let opened = if filter.matches(relative) {
        safe_fs::open_beneath(&watch.path, &path)
    } else {
        Err(Refusal::Gone)
    };
    let opened = match opened {
        Ok(file) => Some(file),
        Err(r) if r.is_skip() => return skip(shared, &rule, watch, &path, &r, job).await,
        Err(Refusal::Gone | Refusal::Outside) => None,
        Err(r) => {
            return Err(IngestError::Io {
                path: paths::shown(&path),
                source: std::io::Error::other(r),
            });
        }
    };
    if rule.ingest.is_none() {
        return chat_only(shared, &rule, &path, opened, watch).await;
    }
    let collection = shared.collection(&rule).await?;
    match opened {
        Some(file) => {
            let outcome = shared
                .ingestor
                .ingest(&rule.name, &path, file, &collection, watch.max_size)
                .await?;
            let finish = report(&rule, &path, &outcome, shared).await;
            let effects = document_effects(shared, &rule, &path, &collection, &outcome, job).await;
            Ok((finish, effects))
        }
        None => gone(shared, &rule, watch, &path, &collection, job).await,
    }
}

/// A link, FIFO, device or socket where a watched file may be: nothing is
/// read; what the path held before is taken down like a removed file.
async fn skip(
    shared: &Shared,
    rule: &Rule,
    watch: &Watch,
    path: &Path,
    why: &Refusal,
    job: &Job,
) -> Result<(Finish, Effects), IngestError> {
    let key = paths::key(path);
    let previous = shared.store.document(&rule.name, &key).await?;
    let mut effects = Effects::default();
    if let Some(doc) = &previous
        && doc.file_id.is_some()
        && rule.ingest.is_some()
        && !matches!(
            doc.state,
            store::DocumentState::Removed | store::DocumentState::Skipped
        )
    {
        let collection = shared.collection(rule).await?;
        let (finish, taken_down) = gone(shared, rule, watch, path, &collection, job).await?;
        if !matches!(&finish, Finish::Done(v) if v["removed"] == true) {
            // Kept (on_delete: keep) or deferred (paused): not yet skipped.
            return Ok((finish, taken_down));
        }
        effects = taken_down;
    }
    let why = why.to_string();
    if previous.is_none_or(|d| d.state != store::DocumentState::Skipped) {
        tracing::warn!(rule = %rule.name, path = %paths::shown(path), reason = %why, "skipped");
    }
    shared
        .store
        .skipped(&rule.name, &key, &why, store::now_ms())
        .await?;
    Ok((Finish::Done(json!({ "skipped": why })), effects))
}

/// Takes down a document whose file left the folder (after the pause,
/// `on_delete` and root checks).
async fn gone(
    shared: &Shared,
    rule: &Rule,
    watch: &Watch,
    path: &Path,
    collection: &Collection,
    job: &Job,
) -> Result<(Finish, Effects), IngestError> {
    let done = |v: Value| Ok((Finish::Done(v), Effects::default()));
    if let Some(reason) = shared.store.paused_reason(&rule.name).await? {
        return done(json!({ "deferred": reason }));
    }
    let Some(doc) = shared.store.document(&rule.name, &paths::key(path)).await? else {
        return done(json!({ "gone": true }));
    };
    if matches!(
        doc.state,
        store::DocumentState::Removed | store::DocumentState::Skipped
    ) {
        if doc.state == store::DocumentState::Skipped {
            shared.store.removed(doc.id, store::now_ms()).await?;
        }
        return done(json!({ "gone": true }));
    }
    if watch.on_delete == OnDelete::Keep && doc.state == store::DocumentState::Linked {
        return done(json!({ "kept": true }));
    }
    if let Some(problem) = root_problem(watch) {
        // Never remove on the word of a folder that is not there.
        shared
            .store
            .set_paused(&rule.name, Some(&problem), store::now_ms())
            .await?;
        tracing::warn!(rule = %rule.name, reason = problem, "rule paused");
        return done(json!({ "deferred": problem }));
    }
    let deleted = shared.ingestor.remove(&doc, collection).await?;
    tracing::info!(rule = %rule.name, path = %paths::shown(path), deleted, "removed");
    let ctx = document_context(
        rule,
        path,
        doc.sha256.as_deref(),
        doc.file_id.as_deref(),
        collection,
    );
    let effects = crate::deliver::effects_for(rule, "document.removed", &job.id, &ctx, json!({}));
    Ok((
        Finish::Done(json!({ "removed": true, "deleted_upload": deleted })),
        effects,
    ))
}

/// A watch rule without `ingest` chats about each file version itself.
/// Nothing is uploaded; the job's dedupe key (path + content hash) makes
/// sure each version is chatted about once.
async fn chat_only(
    shared: &Shared,
    rule: &Rule,
    path: &Path,
    opened: Option<safe_fs::Opened>,
    watch: &Watch,
) -> Result<(Finish, Effects), IngestError> {
    let Some(mut file) = opened else {
        return Ok((Finish::Done(json!({ "gone": true })), Effects::default()));
    };
    let max_size = watch.max_size;
    let read = tokio::task::spawn_blocking(move || file.read_limited(max_size))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|source| IngestError::Io {
            path: paths::shown(path),
            source,
        })?;
    let Some(bytes) = read else {
        return Ok((
            Finish::Done(json!({ "skipped": "larger than max_size" })),
            Effects::default(),
        ));
    };
    shared
        .ingestor
        .hashed
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    // The text is read again when the chat runs, through the same guard.
    let mut file = chat::file_context(&watch.path, path, Some(&sha), false);
    file["size"] = json!(bytes.len());
    let effects = Effects {
        jobs: chat::after_ingest(
            &shared.rules(),
            rule,
            &file,
            &Value::Null,
            &sha,
            store::now_ms(),
        ),
        ..Default::default()
    };
    Ok((
        Finish::Done(json!({ "outcome": "queued chat", "sha256": sha })),
        effects,
    ))
}

/// The template context of a document event of `rule`.
fn document_context(
    rule: &Rule,
    path: &Path,
    sha256: Option<&str>,
    file_id: Option<&str>,
    collection: &Collection,
) -> Value {
    let root = crate::watch::folder(rule).unwrap_or_default();
    let mut file = chat::file_context(&root, path, sha256, false);
    file["file_id"] = json!(file_id);
    chat::context(
        rule,
        "watch",
        &json!({ "file": file, "collection": { "name": collection.name, "id": collection.id } }),
    )
}

/// Deliveries of a document's outcome, and the chats it starts.
async fn document_effects(
    shared: &Shared,
    rule: &Rule,
    path: &Path,
    collection: &Collection,
    outcome: &Outcome,
    job: &Job,
) -> Effects {
    if rule.deliver.is_empty() && !chat::follows_ingest(&shared.rules(), rule) {
        return Effects::default();
    }
    let doc = shared
        .store
        .document(&rule.name, &paths::key(path))
        .await
        .ok()
        .flatten();
    let sha = doc.as_ref().and_then(|d| d.sha256.clone());
    match outcome {
        Outcome::Linked { file_id, .. } => {
            let ctx = document_context(rule, path, sha.as_deref(), Some(file_id), collection);
            let mut effects =
                crate::deliver::effects_for(rule, "document.ingested", &job.id, &ctx, json!({}));
            if let Some(sha) = &sha {
                effects.jobs = chat::after_ingest(
                    &shared.rules(),
                    rule,
                    &ctx["file"],
                    &ctx["collection"],
                    sha,
                    store::now_ms(),
                );
            }
            effects
        }
        Outcome::Failed { reason, detail, .. } if reason.is_permanent() => {
            let ctx = document_context(rule, path, sha.as_deref(), None, collection);
            crate::deliver::effects_for(
                rule,
                "document.failed",
                &job.id,
                &ctx,
                json!({ "error": format!("{reason}: {detail}") }),
            )
        }
        _ => Effects::default(),
    }
}

fn root_problem(watch: &Watch) -> Option<String> {
    match std::fs::read_dir(&watch.path).map(|mut entries| entries.next().is_some()) {
        Ok(true) => None,
        Ok(false) => Some(format!("watched folder {} is empty", watch.path.display())),
        Err(e) => Some(format!(
            "watched folder {} is not readable: {e}",
            watch.path.display()
        )),
    }
}

async fn report(rule: &Rule, path: &Path, outcome: &Outcome, shared: &Shared) -> Finish {
    let shown = paths::shown(path);
    let name = &rule.name;
    match outcome {
        Outcome::Linked {
            file_id,
            replaced: None,
        } => tracing::info!(rule = %name, path = %shown, file_id, "linked"),
        Outcome::Linked {
            file_id,
            replaced: Some(old),
        } => {
            tracing::info!(rule = %name, path = %shown, file_id, replaced = %old, "linked new version")
        }
        Outcome::Moved { file_id, from } => {
            tracing::info!(rule = %name, path = %shown, file_id, from = %paths::shown_key(from), "moved")
        }
        Outcome::Unchanged { .. } => tracing::debug!(rule = %name, path = %shown, "unchanged"),
        Outcome::Failed {
            reason,
            detail,
            known: false,
        } => {
            tracing::warn!(rule = %name, path = %shown, %reason, detail, "failed")
        }
        Outcome::Failed { known: true, .. } => {}
    }
    if let Outcome::Failed { reason, detail, .. } = outcome
        && !reason.is_permanent()
    {
        let at_ms = shared
            .store
            .document(name, &paths::key(path))
            .await
            .ok()
            .flatten()
            .and_then(|d| d.retry_at)
            .unwrap_or_else(|| store::now_ms() + 30_000);
        return Finish::Retry {
            error: format!("{reason}: {detail}"),
            at_ms,
        };
    }
    Finish::Done(outcome_json(outcome))
}

fn outcome_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Linked { file_id, replaced } => {
            json!({"outcome": "linked", "file_id": file_id, "replaced": replaced})
        }
        Outcome::Moved { file_id, from } => {
            json!({"outcome": "moved", "file_id": file_id, "from": from})
        }
        Outcome::Unchanged { file_id } => json!({"outcome": "unchanged", "file_id": file_id}),
        Outcome::Failed { reason, detail, .. } => {
            json!({"outcome": "failed", "reason": reason, "detail": detail})
        }
    }
}
