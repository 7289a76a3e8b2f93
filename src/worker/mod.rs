//! Workers claim jobs from the store and run them. They are the only code
//! that calls Open WebUI on the daemon's behalf.
//!
//! Architecture invariant: a job's outcome is written only by the worker
//! that holds its lease; a worker that loses the lease (it expired while
//! the process was stalled) writes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ingest::{self, Collection, IngestError, Ingestor, Outcome};
use crate::openwebui::Client;
use crate::rules::{OnDelete, Rule, Trigger, Watch};
use crate::store::{self, Job, NewJob, Store};
use crate::watch::reconcile::PathFilter;
use crate::watch::settle::stat_file;

/// Job kind: bring one path of a watch rule in line with the folder.
pub const SYNC: &str = "sync";

const LEASE: Duration = Duration::from_secs(60);

/// What the daemon's tasks share.
pub struct Shared {
    pub store: Store,
    pub client: Client,
    pub ingestor: Ingestor,
    rules: RwLock<Arc<Vec<Rule>>>,
    /// Rung when a job is enqueued, so idle workers wake at once.
    pub wake: Notify,
    collections: tokio::sync::Mutex<HashMap<String, Collection>>,
    /// This process, as lease owner.
    pub owner: String,
}

impl Shared {
    pub fn new(store: Store, client: Client, instance_id: String, rules: Vec<Rule>) -> Shared {
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
            collections: Default::default(),
            owner: format!("{instance_id}:{}", std::process::id()),
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
            .enqueue(
                &NewJob {
                    rule: rule.to_string(),
                    kind: SYNC.into(),
                    trigger_kind: "watch".into(),
                    input: json!({ "path": path }),
                    run_after: now + delay.as_millis() as i64,
                    max_attempts: 8,
                    coalesce_key: Some(format!("{SYNC}:{rule}:{}", path.display())),
                    dedupe_key: None,
                },
                now,
            )
            .await?;
        self.wake.notify_waiters();
        Ok(())
    }
}

/// How a run ended.
enum Finish {
    Done(Value),
    Retry { error: String, at_ms: i64 },
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
        tasks.spawn(async move { worker(n, shared, stop, hard_stop).await });
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
        let job = match shared
            .store
            .claim(&shared.owner, store::now_ms(), LEASE.as_millis() as i64)
            .await
        {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(worker = n, error = %e, "cannot claim jobs");
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
        renew.abort();
        let now = store::now_ms();
        let written = match finish {
            None => shared.store.release(&id, &shared.owner, now).await.map(|_| ()),
            Some(Finish::Done(result)) => shared.store.complete(&id, &shared.owner, &result, now).await.map(|ok| {
                if !ok {
                    tracing::warn!(job = %id, "lease lost before completion; result dropped");
                }
            }),
            Some(Finish::Retry { error, at_ms }) => {
                shared.store.retry(&id, &shared.owner, &error, at_ms, now).await.map(|state| {
                    if state == store::JobState::Dead {
                        tracing::error!(job = %id, rule = %job.rule, error, "job gave up after {} attempts", job.attempts);
                    }
                })
            }
        };
        if let Err(e) = written {
            tracing::error!(job = %id, error = %e, "cannot record the job's outcome");
        }
    }
}

async fn run(shared: &Shared, job: &Job) -> Finish {
    match job.kind.as_str() {
        SYNC => match sync(shared, job).await {
            Ok(f) => f,
            Err(e) => Finish::Retry {
                error: e.to_string(),
                at_ms: store::now_ms()
                    + ingest::document_retry_delay(job.attempts).as_millis() as i64,
            },
        },
        other => Finish::Done(json!({ "skipped": format!("unknown job kind `{other}`") })),
    }
}

/// Brings one path in line: ingest it if it is there, remove it if not.
async fn sync(shared: &Shared, job: &Job) -> Result<Finish, IngestError> {
    let path = PathBuf::from(job.input["path"].as_str().unwrap_or_default());
    let Some(rule) = shared.rule(&job.rule) else {
        return Ok(Finish::Done(
            json!({ "skipped": "the rule no longer exists" }),
        ));
    };
    let (Trigger::Watch(watch), Some(_)) = (&rule.trigger, &rule.ingest) else {
        return Ok(Finish::Done(
            json!({ "skipped": "the rule no longer ingests" }),
        ));
    };
    let Ok(relative) = path.strip_prefix(&watch.path) else {
        return Ok(Finish::Done(
            json!({ "skipped": "outside the watched folder" }),
        ));
    };
    let filter = PathFilter::new(watch).map_err(|e| IngestError::Io {
        path: watch.path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    let collection = shared.collection(&rule).await?;
    let shown = path.display();
    match stat_file(&path) {
        Some(stat) if filter.matches(relative) => {
            let outcome = if stat.size > watch.max_size {
                shared
                    .ingestor
                    .too_large(&rule.name, &path, &collection, watch.max_size)
                    .await?
            } else {
                shared
                    .ingestor
                    .ingest(&rule.name, &path, &collection)
                    .await?
            };
            Ok(report(&rule, &path, outcome, shared).await)
        }
        _ => {
            if let Some(reason) = shared.store.paused_reason(&rule.name).await? {
                return Ok(Finish::Done(json!({ "deferred": reason })));
            }
            let Some(doc) = shared
                .store
                .document(&rule.name, &path.to_string_lossy())
                .await?
            else {
                return Ok(Finish::Done(json!({ "gone": true })));
            };
            if doc.state == store::DocumentState::Removed {
                return Ok(Finish::Done(json!({ "gone": true })));
            }
            if watch.on_delete == OnDelete::Keep && doc.state == store::DocumentState::Linked {
                return Ok(Finish::Done(json!({ "kept": true })));
            }
            if let Some(problem) = root_problem(watch) {
                // Never remove on the word of a folder that is not there.
                shared
                    .store
                    .set_paused(&rule.name, Some(&problem), store::now_ms())
                    .await?;
                tracing::warn!(rule = %rule.name, reason = problem, "rule paused");
                return Ok(Finish::Done(json!({ "deferred": problem })));
            }
            let deleted = shared.ingestor.remove(&doc, &collection).await?;
            tracing::info!(rule = %rule.name, path = %shown, deleted, "removed");
            Ok(Finish::Done(
                json!({ "removed": true, "deleted_upload": deleted }),
            ))
        }
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

async fn report(rule: &Rule, path: &Path, outcome: Outcome, shared: &Shared) -> Finish {
    let shown = path.display();
    let name = &rule.name;
    match &outcome {
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
            tracing::info!(rule = %name, path = %shown, file_id, from, "moved")
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
    if let Outcome::Failed { reason, detail, .. } = &outcome
        && !reason.is_permanent()
    {
        let at_ms = shared
            .store
            .document(name, &path.to_string_lossy())
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
    Finish::Done(serde_json::to_value(outcome_json(&outcome)).unwrap_or(Value::Null))
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
