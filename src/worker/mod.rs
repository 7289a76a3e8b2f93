//! Workers claim jobs from the store and run them. They are the only code
//! in the daemon that calls Open WebUI ([`Workers`] alone holds the
//! client): jobs, the start-up recovery (a sweep job queued first) and the
//! health probe that `/readyz` reads ([`crate::health`]).
//!
//! Architecture invariant: a job's outcome is written only by the worker
//! that holds its lease; a worker that loses the lease (it expired while
//! the process was stalled) writes nothing.

pub mod chat;
pub mod ingest;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::health::Health;
use crate::openwebui::Client;
use crate::paths;
use crate::rules::{OnDelete, Rule, RuleSet, Trigger, Watch};
use crate::safe_fs::{self, Refusal};
use crate::store::{self, Effects, Job, Store};
use crate::supervise::Tasks;
use crate::triggers::watch::reconcile::PathFilter;
use crate::triggers::{CHAT, Queue, SWEEP, SYNC, TriggerKind};
use ingest::{Collection, IngestError, Ingestor, Outcome};

const LEASE: Duration = Duration::from_secs(60);

/// How often a full state disk is looked at again.
const SPACE_PROBE: Duration = Duration::from_secs(2);

/// How often Open WebUI is looked at for `/readyz`: while it answers, and
/// while it does not.
const PROBE_UP: Duration = Duration::from_secs(15);
const PROBE_DOWN: Duration = Duration::from_secs(3);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The worker pool: everything a job needs, and nothing else has.
pub struct Workers {
    pub(crate) store: Store,
    pub(crate) client: Client,
    pub(crate) ingestor: Ingestor,
    pub(crate) queue: Queue,
    pub(crate) clock: Clock,
    rules: Arc<RuleSet>,
    collections: tokio::sync::Mutex<HashMap<String, Collection>>,
    /// This process, as lease owner.
    pub(crate) owner: String,
    tasks: Arc<Tasks>,
    health: Arc<Health>,
    /// Set once the start-up recovery (the sweep queued first, due at
    /// once) has run: until then only worker 0 claims, so no document's
    /// job can race the adoption of its own unrecorded upload.
    recovered: tokio::sync::watch::Sender<bool>,
}

/// What the daemon gives the worker pool.
pub struct Parts {
    pub store: Store,
    pub client: Client,
    pub queue: Queue,
    pub instance_id: String,
    pub owner: String,
    pub rules: Arc<RuleSet>,
    pub tasks: Arc<Tasks>,
    pub health: Arc<Health>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Workers {
    pub fn new(p: Parts) -> Workers {
        Workers {
            ingestor: Ingestor::new(
                p.client.clone(),
                p.store.clone(),
                p.queue.clone(),
                p.instance_id,
                p.metrics,
            ),
            clock: p.queue.clock().clone(),
            store: p.store,
            client: p.client,
            queue: p.queue,
            rules: p.rules,
            collections: Default::default(),
            owner: p.owner,
            tasks: p.tasks,
            health: p.health,
            recovered: tokio::sync::watch::channel(false).0,
        }
    }

    pub fn rules(&self) -> Arc<Vec<Rule>> {
        self.rules.all()
    }

    pub fn rule(&self, name: &str) -> Option<Rule> {
        self.rules.get(name)
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
        let c = ingest::resolve_collection(
            &self.client,
            &self.store,
            reference,
            true,
            self.clock.now_ms(),
        )
        .await?;
        cache.insert(key, c.clone());
        Ok(c)
    }
}

/// Looks at Open WebUI now and then, for `/readyz` and the log: the one
/// call the daemon makes that is not a job's.
async fn probe(workers: Arc<Workers>, stop: CancellationToken) {
    loop {
        let seen = tokio::time::timeout(PROBE_TIMEOUT, workers.client.version()).await;
        let wait = match seen {
            Ok(Ok(v)) => {
                if workers.health.openwebui_up(&v.to_string()) {
                    tracing::info!(version = %v, url = %workers.client.base_shown(), "Open WebUI reachable");
                }
                PROBE_UP
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
                };
                if workers.health.openwebui_down(error.clone()) {
                    tracing::warn!(error, "Open WebUI not reachable; work waits and retries");
                }
                PROBE_DOWN
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
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
    workers: Arc<Workers>,
    count: usize,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) {
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::supervise::supervised(
        workers.tasks.clone(),
        "openwebui-probe".into(),
        stop.clone(),
        {
            let (workers, stop) = (workers.clone(), stop.clone());
            move || probe(workers.clone(), stop.clone())
        },
    ));
    for n in 0..count.max(1) {
        let (workers, stop, hard_stop) = (workers.clone(), stop.clone(), hard_stop.clone());
        tasks.spawn(crate::supervise::supervised(
            workers.tasks.clone(),
            format!("worker:{n}"),
            stop.clone(),
            move || worker(n, workers.clone(), stop.clone(), hard_stop.clone()),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn worker(
    n: usize,
    workers: Arc<Workers>,
    stop: CancellationToken,
    hard_stop: CancellationToken,
) {
    // Worker 0 runs the first job alone: the start-up recovery. Its guard
    // lets the others go when that is done, or if worker 0 dies first.
    let mut first = (n == 0).then(|| Recovered(workers.recovered.clone()));
    if n > 0 {
        let mut recovered = workers.recovered.subscribe();
        tokio::select! {
            _ = recovered.wait_for(|done| *done) => {}
            _ = stop.cancelled() => return,
        }
    }
    while !stop.is_cancelled() {
        // A full disk: claim nothing (its outcome could not be recorded);
        // look for space every few seconds, one worker at a time.
        if workers.store.unwritable().is_some() {
            if n == 0 {
                workers.store.probe_space().await;
            }
            if workers.store.unwritable().is_some() {
                tokio::select! {
                    _ = tokio::time::sleep(SPACE_PROBE) => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
        }
        let job = match workers
            .store
            .claim(
                &workers.owner,
                workers.clock.now_ms(),
                LEASE.as_millis() as i64,
            )
            .await
        {
            Ok(job) => job,
            Err(e) => {
                workers.store.note_write_error(&e);
                if !e.is_full() {
                    tracing::error!(worker = n, error = %e, "cannot claim jobs");
                }
                None
            }
        };
        let Some(job) = job else {
            let wait = match workers.store.next_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - workers.clock.now_ms()).clamp(10, 1000) as u64)
                }
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                _ = workers.queue.jobs_ready().notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        };
        let id = job.id.clone();
        let renew = {
            let (workers, id) = (workers.clone(), id.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE / 3).await;
                    let until = workers.clock.now_ms() + LEASE.as_millis() as i64;
                    if !matches!(
                        workers.store.renew(&id, &workers.owner, until).await,
                        Ok(true)
                    ) {
                        break;
                    }
                }
            })
        };
        let finish = tokio::select! {
            f = run(&workers, &job) => Some(f),
            _ = hard_stop.cancelled() => None,
        };
        let (has_deliveries, has_jobs) = finish.as_ref().map_or((false, false), |(_, e)| {
            (!e.deliveries.is_empty(), !e.jobs.is_empty())
        });
        // A full disk: the outcome (an answer that cost a model call, say)
        // is kept here and written once space returns, the lease renewed
        // meanwhile; the job is not done twice.
        let mut written = record(&workers, &job, finish.as_ref()).await;
        while let Err(e) = &written
            && e.is_full()
            && !hard_stop.is_cancelled()
        {
            workers.store.note_write_error(e);
            tokio::select! {
                _ = tokio::time::sleep(SPACE_PROBE) => {}
                _ = hard_stop.cancelled() => {}
            }
            if n == 0 || workers.store.unwritable().is_some() {
                workers.store.probe_space().await;
            }
            written = record(&workers, &job, finish.as_ref()).await;
        }
        renew.abort();
        first.take();
        if has_deliveries {
            workers.queue.deliveries_ready().notify_one();
        }
        if has_jobs {
            workers.queue.jobs_ready().notify_waiters();
        }
        if let Err(e) = written {
            // The lease runs out and the job is done again: nothing lost.
            workers.store.note_write_error(&e);
            tracing::error!(job = %id, error = %e, "cannot record the job's outcome; it runs again when its lease ends");
        }
    }
}

/// Lets the other workers claim when dropped.
struct Recovered(tokio::sync::watch::Sender<bool>);

impl Drop for Recovered {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Writes a run's outcome (`None`: stopped by shutdown, released).
async fn record(
    workers: &Workers,
    job: &Job,
    finish: Option<&(Finish, Effects)>,
) -> Result<(), store::StoreError> {
    let (id, now) = (&job.id, workers.clock.now_ms());
    match finish {
        None => workers.store.release(id, &workers.owner, now).await.map(|_| ()),
        Some((Finish::Done(result), effects)) => workers
            .store
            .complete(id, &workers.owner, result, effects, now)
            .await
            .map(|ok| {
                if !ok {
                    tracing::warn!(job = %id, "lease lost before completion; result dropped");
                }
            }),
        Some((Finish::Retry { error, at_ms }, if_dead)) => workers
            .store
            .retry(id, &workers.owner, error, *at_ms, if_dead, now)
            .await
            .map(|state| {
                if state == store::JobState::Dead {
                    tracing::error!(job = %id, rule = %job.rule, error, "job gave up after {} attempts", job.attempts);
                }
            }),
        Some((Finish::Fail(error), effects)) => {
            tracing::error!(job = %id, rule = %job.rule, error, "job failed");
            workers
                .store
                .fail(id, &workers.owner, error, effects, now)
                .await
                .map(|_| ())
        }
    }
}

async fn run(workers: &Workers, job: &Job) -> (Finish, Effects) {
    // Ingestion and sweeps back off like documents do.
    let later = |e: IngestError| {
        (
            Finish::Retry {
                error: e.to_string(),
                at_ms: workers.clock.now_ms()
                    + ingest::document_retry_delay(job.attempts).as_millis() as i64,
            },
            Effects::default(),
        )
    };
    match job.kind.as_str() {
        SYNC => sync(workers, job).await.unwrap_or_else(later),
        CHAT => chat::run(workers, job).await,
        SWEEP => sweep(workers, job).await.unwrap_or_else(later),
        other => (
            Finish::Fail(format!("unknown job kind `{other}`")),
            Effects::default(),
        ),
    }
}

/// Adopts or deletes the uploads whose answers were lost; queues another
/// sweep for those still too young to judge.
async fn sweep(workers: &Workers, job: &Job) -> Result<(Finish, Effects), IngestError> {
    let now = workers.clock.now_ms();
    let min_age = ingest::sweep_min_age(&workers.client);
    // The start-up sweep names the process's start: every upload before it
    // belongs to a process that is gone. Later sweeps wait out any upload
    // that may still be under way.
    let before = job.input["before"]
        .as_i64()
        .unwrap_or(now / 1000 - min_age.as_secs() as i64);
    let (n, young) = workers.ingestor.clean_orphans(true, before).await?;
    if n > 0 {
        tracing::info!(deleted = n, "removed uploads whose answers were lost");
    }
    let jobs = if young > 0 {
        vec![ingest::later_sweep(min_age, now).job(crate::triggers::UPKEEP_RULE, now)]
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
async fn sync(workers: &Workers, job: &Job) -> Result<(Finish, Effects), IngestError> {
    let done = |v: Value| Ok((Finish::Done(v), Effects::default()));
    let path = paths::from_key(job.input["path"].as_str().unwrap_or_default());
    let Some(rule) = workers.rule(&job.rule) else {
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
        Err(r) if r.is_skip() => return skip(workers, &rule, watch, &path, &r, job).await,
        Err(Refusal::Gone | Refusal::Outside) => None,
        Err(r) => {
            return Err(IngestError::Io {
                path: paths::shown(&path),
                source: std::io::Error::other(r),
            });
        }
    };
    if rule.ingest.is_none() {
        return chat_only(workers, &rule, &path, opened, watch).await;
    }
    let collection = workers.collection(&rule).await?;
    match opened {
        Some(file) => {
            let outcome = workers
                .ingestor
                .ingest(&rule.name, &path, file, &collection, watch.max_size)
                .await?;
            let finish = report(&rule, &path, &outcome, workers).await;
            let effects = document_effects(workers, &rule, &path, &collection, &outcome, job).await;
            Ok((finish, effects))
        }
        None => gone(workers, &rule, watch, &path, &collection, job).await,
    }
}

/// A link, FIFO, device or socket where a watched file may be: nothing is
/// read; what the path held before is taken down like a removed file.
async fn skip(
    workers: &Workers,
    rule: &Rule,
    watch: &Watch,
    path: &Path,
    why: &Refusal,
    job: &Job,
) -> Result<(Finish, Effects), IngestError> {
    let key = paths::key(path);
    let previous = workers.store.document(&rule.name, &key).await?;
    let mut effects = Effects::default();
    if let Some(doc) = &previous
        && doc.file_id.is_some()
        && rule.ingest.is_some()
        && !matches!(
            doc.state,
            store::DocumentState::Removed | store::DocumentState::Skipped
        )
    {
        let collection = workers.collection(rule).await?;
        let (finish, taken_down) = gone(workers, rule, watch, path, &collection, job).await?;
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
    workers
        .store
        .skipped(&rule.name, &key, &why, workers.clock.now_ms())
        .await?;
    Ok((Finish::Done(json!({ "skipped": why })), effects))
}

/// Takes down a document whose file left the folder (after the pause,
/// `on_delete` and root checks).
async fn gone(
    workers: &Workers,
    rule: &Rule,
    watch: &Watch,
    path: &Path,
    collection: &Collection,
    job: &Job,
) -> Result<(Finish, Effects), IngestError> {
    let done = |v: Value| Ok((Finish::Done(v), Effects::default()));
    if let Some(reason) = workers.store.paused_reason(&rule.name).await? {
        return done(json!({ "deferred": reason }));
    }
    let Some(doc) = workers
        .store
        .document(&rule.name, &paths::key(path))
        .await?
    else {
        return done(json!({ "gone": true }));
    };
    if matches!(
        doc.state,
        store::DocumentState::Removed | store::DocumentState::Skipped
    ) {
        if doc.state == store::DocumentState::Skipped {
            workers
                .store
                .removed(doc.id, workers.clock.now_ms())
                .await?;
        }
        return done(json!({ "gone": true }));
    }
    if watch.on_delete == OnDelete::Keep && doc.state == store::DocumentState::Linked {
        return done(json!({ "kept": true }));
    }
    if let Some(problem) = root_problem(watch) {
        // Never remove on the word of a folder that is not there.
        workers
            .store
            .set_paused(&rule.name, Some(&problem), workers.clock.now_ms())
            .await?;
        tracing::warn!(rule = %rule.name, reason = problem, "rule paused");
        return done(json!({ "deferred": problem }));
    }
    let deleted = workers.ingestor.remove(&doc, collection).await?;
    tracing::info!(rule = %rule.name, path = %paths::shown(path), deleted, "removed");
    let now = workers.clock.now_ms();
    let ctx = document_context(
        rule,
        path,
        doc.sha256.as_deref(),
        doc.file_id.as_deref(),
        collection,
        now,
    );
    let effects =
        crate::deliver::effects_for(rule, "document.removed", &job.id, &ctx, json!({}), now);
    Ok((
        Finish::Done(json!({ "removed": true, "deleted_upload": deleted })),
        effects,
    ))
}

/// A watch rule without `ingest` chats about each file version itself.
/// Nothing is uploaded; the job's dedupe key (path + content hash) makes
/// sure each version is chatted about once.
async fn chat_only(
    workers: &Workers,
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
    workers.ingestor.count_hashed();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    // The text is read again when the chat runs, through the same guard.
    let mut file = chat::file_context(&watch.path, path, Some(&sha), false);
    file["size"] = json!(bytes.len());
    let effects = Effects {
        jobs: chat::after_ingest(
            &workers.rules(),
            rule,
            &file,
            &Value::Null,
            &sha,
            workers.clock.now_ms(),
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
    now_ms: i64,
) -> Value {
    let root = match &rule.trigger {
        Trigger::Watch(w) => w.path.clone(),
        _ => Default::default(),
    };
    let mut file = chat::file_context(&root, path, sha256, false);
    file["file_id"] = json!(file_id);
    crate::triggers::context(
        rule.view(),
        TriggerKind::Watch.as_str(),
        &json!({ "file": file, "collection": { "name": collection.name, "id": collection.id } }),
        now_ms,
    )
}

/// Deliveries of a document's outcome, and the chats it starts.
async fn document_effects(
    workers: &Workers,
    rule: &Rule,
    path: &Path,
    collection: &Collection,
    outcome: &Outcome,
    job: &Job,
) -> Effects {
    if rule.deliver.is_empty() && !chat::follows_ingest(&workers.rules(), rule) {
        return Effects::default();
    }
    let doc = workers
        .store
        .document(&rule.name, &paths::key(path))
        .await
        .ok()
        .flatten();
    let sha = doc.as_ref().and_then(|d| d.sha256.clone());
    let now = workers.clock.now_ms();
    match outcome {
        Outcome::Linked { file_id, .. } => {
            let ctx = document_context(rule, path, sha.as_deref(), Some(file_id), collection, now);
            let mut effects = crate::deliver::effects_for(
                rule,
                "document.ingested",
                &job.id,
                &ctx,
                json!({}),
                now,
            );
            if let Some(sha) = &sha {
                effects.jobs = chat::after_ingest(
                    &workers.rules(),
                    rule,
                    &ctx["file"],
                    &ctx["collection"],
                    sha,
                    workers.clock.now_ms(),
                );
            }
            effects
        }
        Outcome::Failed { reason, detail, .. } if reason.is_permanent() => {
            let ctx = document_context(rule, path, sha.as_deref(), None, collection, now);
            crate::deliver::effects_for(
                rule,
                "document.failed",
                &job.id,
                &ctx,
                json!({ "error": format!("{reason}: {detail}") }),
                now,
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

async fn report(rule: &Rule, path: &Path, outcome: &Outcome, workers: &Workers) -> Finish {
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
        let at_ms = workers
            .store
            .document(name, &paths::key(path))
            .await
            .ok()
            .flatten()
            .and_then(|d| d.retry_at)
            .unwrap_or_else(|| workers.clock.now_ms() + 30_000);
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
