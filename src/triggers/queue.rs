//! The one enqueue path. [`Queue::submit`] turns a [`TriggerEvent`] into
//! its job ([`TriggerEvent::job`]), commits it (requests that arrive
//! together share a commit: the store's one writer) and wakes an idle
//! worker: a producer cannot forget the wake, nor build a job of its own.
//!
//! The queue is also all of the store a producer sees: the bookkeeping of
//! triggers (a watcher's pause, a schedule's last fire) and the reads they
//! decide on. Admin actions that make work runnable again (retry a dead
//! job, redeliver) come through here too, for the same wake.

use std::sync::Arc;

use tokio::sync::Notify;

use super::TriggerEvent;
use crate::clock::Clock;
use crate::store::{self, Enqueued, JobState, Store, StoreError};

#[derive(Clone)]
pub struct Queue {
    store: Store,
    clock: Clock,
    jobs_ready: Arc<Notify>,
    deliveries_ready: Arc<Notify>,
    /// Per watch rule: "reconcile now" (`ferry sync`, `POST …/sync`).
    reconcile_now: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>>,
}

impl Queue {
    pub fn new(store: Store, clock: Clock) -> Queue {
        Queue {
            store,
            clock,
            jobs_ready: Default::default(),
            deliveries_ready: Default::default(),
            reconcile_now: Default::default(),
        }
    }

    /// What a rule's watcher waits on for a reconcile out of turn.
    pub fn reconcile_signal(&self, rule: &str) -> Arc<Notify> {
        self.reconcile_now
            .lock()
            .expect("not poisoned")
            .entry(rule.to_string())
            .or_default()
            .clone()
    }

    /// Asks the rule's watcher for a full reconcile now, and queues the
    /// check of its knowledge base (drift repair): a sync on demand.
    pub async fn sync_now(&self, rule: &str) -> Result<(), StoreError> {
        // A permit is kept if the watcher is busy: it reconciles when free.
        self.reconcile_signal(rule).notify_one();
        self.submit(rule, super::TriggerEvent::Collection)
            .await
            .map(|_| ())
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Queues what `event` means for `rule`; returns once it is committed.
    pub async fn submit(&self, rule: &str, event: TriggerEvent) -> Result<Enqueued, StoreError> {
        let now = self.clock.now_ms();
        let done = self.store.enqueue(&event.job(rule, now), now).await;
        match &done {
            Ok(_) => self.jobs_ready.notify_one(),
            Err(e) => self.store.note_write_error(e),
        }
        done
    }

    /// Queues several events of one rule; they share commits.
    pub async fn submit_all(
        &self,
        rule: &str,
        events: Vec<TriggerEvent>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let now = self.clock.now_ms();
        let jobs: Vec<_> = events.iter().map(|e| e.job(rule, now)).collect();
        let enqueues = jobs.iter().map(|job| self.store.enqueue(job, now));
        let mut out = Vec::with_capacity(events.len());
        let mut first_error = None;
        for result in futures_util::future::join_all(enqueues).await {
            match result {
                Ok(e) => out.push(e),
                Err(e) => {
                    self.store.note_write_error(&e);
                    first_error.get_or_insert(e);
                }
            }
        }
        if !out.is_empty() {
            self.jobs_ready.notify_one();
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Puts a dead job back in the queue (admin API, `ferry jobs retry`).
    pub async fn retry_dead(&self, job_id: &str) -> Result<Option<JobState>, StoreError> {
        let state = self.store.retry_dead(job_id, self.clock.now_ms()).await?;
        if state == Some(JobState::Dead) {
            self.jobs_ready.notify_one();
        }
        Ok(state)
    }

    /// Sends a delivery again, as a new delivery with the same event.
    pub async fn redeliver(&self, delivery_id: &str) -> Result<Option<bool>, StoreError> {
        let out = self
            .store
            .redeliver(delivery_id, self.clock.now_ms())
            .await?;
        if out == Some(true) {
            self.deliveries_ready.notify_one();
        }
        Ok(out)
    }

    // What the workers and the delivery loop wait on.

    /// Rung (`notify_one`) when jobs became runnable: it wakes one idle
    /// worker, which rings again if it claimed one (a chain, not a herd).
    pub fn jobs_ready(&self) -> &Arc<Notify> {
        &self.jobs_ready
    }

    /// Rung when deliveries were written.
    pub fn deliveries_ready(&self) -> &Arc<Notify> {
        &self.deliveries_ready
    }

    // The store as producers see it.

    /// Files of a watch rule as recorded.
    pub async fn known_files(&self, rule: &str) -> Result<Vec<store::KnownFile>, StoreError> {
        self.store.known_files(rule).await
    }

    /// The watcher's own pause of the rule (its folder).
    pub async fn folder_paused(&self, rule: &str) -> Result<Option<String>, StoreError> {
        self.store.folder_paused(rule).await
    }

    /// Records (or clears, with `None`) why a rule's removals are held.
    pub async fn set_paused(&self, rule: &str, reason: Option<&str>) -> Result<(), StoreError> {
        self.store
            .set_paused(rule, reason, self.clock.now_ms())
            .await
    }

    /// A schedule's state, armed at its first start.
    pub async fn arm_schedule(&self, rule: &str) -> Result<store::ScheduleRow, StoreError> {
        self.store.arm_schedule(rule, self.clock.now_ms()).await
    }

    pub async fn record_fire(&self, rule: &str, at_ms: i64) -> Result<(), StoreError> {
        self.store.record_fire(rule, at_ms).await
    }

    /// Jobs of `rule` queued or running.
    pub async fn active_jobs(&self, rule: &str) -> Result<i64, StoreError> {
        self.store.active_jobs(rule).await
    }
}
