//! Workers claim jobs from the store and run them. They are the only code
//! in the daemon that calls Open WebUI ([`Workers`] alone holds the
//! client): jobs, the start-up recovery (a sweep job queued first) and the
//! health probe that `/readyz` reads ([`crate::health`]).
//!
//! Architecture invariant: a job's outcome is written only by the worker
//! that holds its lease; a worker that loses the lease (it expired while
//! the process was stalled) writes nothing.

pub mod chat;
pub mod collection;
pub mod ingest;
pub mod plan;
pub mod sync;
pub mod tree;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::health::{Health, Loop};
use crate::openwebui::Client;
use crate::rules::{Rule, RuleSet};
use crate::store::{self, Effects, Job, Store};
use crate::supervise::Tasks;
use crate::triggers::{CHAT, COLLECTION, NOTIFY, Queue, SWEEP, SYNC};
use ingest::{Collection, IngestError, Ingestor};

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
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Each watched root's path filter, compiled once per change.
    pub(crate) filters: crate::triggers::watch::reconcile::FilterCache,
    /// Set once the start-up recovery (the sweep queued first, due at
    /// once) has run: until then only worker 0 claims, so no document's
    /// job can race the adoption of its own unrecorded upload.
    recovered: tokio::sync::watch::Sender<bool>,
    /// Held by the one idle worker that wakes on the clock (the next due
    /// job, or a second's look); the other idle workers sleep until rung.
    /// When every idle worker woke each second and at each enqueue, most
    /// of their claims found nothing (134 of 236 claims in a 100-file
    /// bench).
    timer: std::sync::atomic::AtomicBool,
}

/// The idle worker's turn to wake on the clock; given back when dropped
/// (a worker that dies waiting gives it back too).
struct TimerTurn<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> TimerTurn<'a> {
    fn take(flag: &'a std::sync::atomic::AtomicBool) -> Option<TimerTurn<'a>> {
        use std::sync::atomic::Ordering;
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| TimerTurn(flag))
    }
}

impl Drop for TimerTurn<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
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
                p.metrics.clone(),
            ),
            metrics: p.metrics,
            clock: p.queue.clock().clone(),
            store: p.store,
            client: p.client,
            queue: p.queue,
            rules: p.rules,
            collections: Default::default(),
            owner: p.owner,
            tasks: p.tasks,
            health: p.health,
            filters: Default::default(),
            recovered: tokio::sync::watch::channel(false).0,
            timer: Default::default(),
        }
    }

    pub fn rules(&self) -> Arc<Vec<Rule>> {
        self.rules.all()
    }

    pub fn rule(&self, name: &str) -> Option<Rule> {
        self.rules.get(name)
    }

    /// How the rule's files are laid out in its collection on this
    /// server.
    pub async fn layout(&self, rule: &Rule) -> Result<tree::Layout, IngestError> {
        let dirs = self.client.version().await?.has_directories();
        Ok(tree::Layout::of(rule, dirs))
    }

    /// The rule's knowledge base, created on first use (shared and
    /// described as the rule says), then cached.
    pub async fn collection(&self, rule: &Rule) -> Result<Collection, IngestError> {
        let ingest = rule
            .ingest
            .as_ref()
            .expect("sync jobs belong to ingest rules");
        let key = collection_key(rule);
        let mut cache = self.collections.lock().await;
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let found = ingest::resolve_collection(
            &self.client,
            &self.store,
            &ingest.collection,
            None,
            self.clock.now_ms(),
        )
        .await;
        let c = match found {
            // Made on first use; made again after a deletion only when the
            // rule says so (else the `collection` job pauses the rule).
            Err(IngestError::UnknownCollection(name))
                if ingest.on_missing_collection == crate::rules::OnMissingCollection::Recreate
                    || self.store.collection_id(&name).await?.is_none() =>
            {
                let new = collection::new_collection(self, rule, ingest).await;
                ingest::resolve_collection(
                    &self.client,
                    &self.store,
                    &ingest.collection,
                    Some(&new),
                    self.clock.now_ms(),
                )
                .await?
            }
            other => other?,
        };
        cache.insert(key, c.clone());
        Ok(c)
    }

    /// Drops the cached knowledge base of a rule: the next use looks again.
    pub async fn forget_collection(&self, rule: &Rule) {
        self.collections.lock().await.remove(&collection_key(rule));
    }
}

fn collection_key(rule: &Rule) -> String {
    let reference = rule.ingest.as_ref().map(|i| i.collection.to_string());
    format!("{}\u{0}{}", rule.name, reference.unwrap_or_default())
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
    // The next job, claimed while the last one's outcome was recorded.
    let mut ahead: Option<Result<Option<Job>, store::StoreError>> = None;
    while !stop.is_cancelled() {
        // A full disk: claim nothing (its outcome could not be recorded);
        // look for space every few seconds (the store lets one probe
        // through at a time). Any worker here probes: the others may
        // sleep until rung, and nothing rings while the disk is full.
        if ahead.is_none() && workers.store.unwritable().is_some() {
            workers.store.probe_space().await;
            if workers.store.unwritable().is_some() {
                // Waiting for space on purpose is not a wedge.
                workers.health.beat(Loop::Jobs);
                tokio::select! {
                    _ = tokio::time::sleep(SPACE_PROBE) => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
        }
        let claimed = match ahead.take() {
            Some(claimed) => claimed,
            None => claim(&workers).await,
        };
        let job = match claimed {
            Ok(job) => {
                workers.health.beat(Loop::Jobs);
                // There may be more: pass the bell on to one idle worker,
                // who does the same if it finds one too (and takes the
                // clock's turn this worker may have held).
                if job.is_some() {
                    workers.queue.jobs_ready().notify_one();
                }
                job
            }
            Err(e) => {
                workers.store.note_write_error(&e);
                if !e.is_full() {
                    tracing::error!(worker = n, error = %e, "cannot claim jobs");
                }
                None
            }
        };
        let Some(job) = job else {
            let turn = TimerTurn::take(&workers.timer);
            let wait = match &turn {
                None => None,
                Some(_) => Some(match workers.store.next_due().await {
                    Ok(Some(due)) => {
                        Duration::from_millis((due - workers.clock.now_ms()).clamp(10, 1000) as u64)
                    }
                    _ => Duration::from_secs(1),
                }),
            };
            tokio::select! {
                _ = workers.queue.jobs_ready().notified() => {}
                _ = async {
                    match wait {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = stop.cancelled() => {}
            }
            drop(turn);
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
                    workers.health.beat(Loop::Jobs);
                }
            })
        };
        let started = std::time::Instant::now();
        let finish = tokio::select! {
            f = run(&workers, &job) => Some(f),
            _ = hard_stop.cancelled() => None,
        };
        if finish.is_some() {
            workers.metrics.job_ran(&job.kind, started.elapsed());
        }
        let (has_deliveries, has_jobs) = finish.as_ref().map_or((false, false), |(_, e)| {
            (!e.deliveries.is_empty(), !e.jobs.is_empty())
        });
        // A full disk: the outcome (an answer that cost a model call, say)
        // is kept here and written once space returns, the lease renewed
        // meanwhile; the job is not done twice.
        // The next claim rides in the same group commit as this outcome:
        // one fsync fewer per job (the writer takes what is queued).
        let claim_next = finish.is_some() && !stop.is_cancelled();
        let (mut written, next) = tokio::join!(record(&workers, &job, finish.as_ref()), async {
            if claim_next {
                Some(claim(&workers).await)
            } else {
                None
            }
        });
        ahead = next;
        while let Err(e) = &written
            && e.is_full()
            && !hard_stop.is_cancelled()
        {
            workers.store.note_write_error(e);
            tokio::select! {
                _ = tokio::time::sleep(SPACE_PROBE) => {}
                _ = hard_stop.cancelled() => {}
            }
            workers.store.probe_space().await;
            written = record(&workers, &job, finish.as_ref()).await;
        }
        renew.abort();
        first.take();
        if has_deliveries {
            workers.queue.deliveries_ready().notify_one();
        }
        if has_jobs {
            workers.queue.jobs_ready().notify_one();
        }
        if let Err(e) = written {
            // The lease runs out and the job is done again: nothing lost.
            workers.store.note_write_error(&e);
            tracing::error!(job = %id, error = %e, "cannot record the job's outcome; it runs again when its lease ends");
        }
    }
    // Stopped with a job claimed ahead: it goes back untouched.
    if let Some(Ok(Some(job))) = ahead
        && let Err(e) = workers
            .store
            .release(&job.id, &workers.owner, workers.clock.now_ms())
            .await
    {
        tracing::warn!(job = %job.id, error = %e, "cannot give back a job claimed ahead; it runs when its lease ends");
    }
}

/// Claims the next due job for this process.
async fn claim(workers: &Workers) -> Result<Option<Job>, store::StoreError> {
    workers
        .store
        .claim(
            &workers.owner,
            workers.clock.now_ms(),
            LEASE.as_millis() as i64,
        )
        .await
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
        SYNC => sync::sync(workers, job).await.unwrap_or_else(later),
        CHAT => chat::run(workers, job).await,
        SWEEP => sweep(workers, job).await.unwrap_or_else(later),
        COLLECTION => collection::keep_in_step(workers, job)
            .await
            .unwrap_or_else(later),
        NOTIFY => collection::announce(workers, job),
        other => (
            Finish::Fail(format!("unknown job kind `{other}`")),
            Effects::default(),
        ),
    }
}

/// Adopts or deletes the uploads whose answers were lost; queues another
/// sweep for those still too young to judge, and after a lost answer the
/// next of its rounds ([`ingest::SWEEP_ROUNDS`]).
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
    // Sweeps are rare (after a lost answer, and at start): each says what
    // it found, so that an upload left behind can be traced.
    tracing::info!(
        deleted = n,
        left_for_later = young,
        made_before = before,
        "swept uploads whose answers were lost"
    );
    let round = job.input["round"].as_u64().unwrap_or(0) as u32;
    let after_lost_answer = job.input["before"].is_null();
    let wait = ingest::sweep_wait(min_age);
    let next = if young > 0 {
        // Judged as soon as they can be, in the same round.
        Some(ingest::sweep_in(wait, now, round))
    } else if after_lost_answer && round + 1 < ingest::SWEEP_ROUNDS {
        Some(ingest::sweep_in(wait * 2u32.pow(round + 1), now, round + 1))
    } else {
        None
    };
    let jobs = next
        .map(|e| e.job(crate::triggers::UPKEEP_RULE, now))
        .into_iter()
        .collect();
    Ok((
        Finish::Done(json!({ "deleted": n, "left_for_later": young })),
        Effects {
            jobs,
            ..Default::default()
        },
    ))
}
