//! Persisted jobs (DESIGN §6 "Job"): `queued → running → succeeded`, or
//! back to `queued` with a retry time, or `dead`.
//!
//! A claim is a lease: the attempt count rises at claim time, and only the
//! lease holder may complete, retry or release the job (every such update
//! is fenced by `lease_owner`). Jobs with the same `coalesce_key` (a path
//! to sync, say) never run at once, and at most one of them waits: a new
//! request for the same key merges into the waiting one.

use serde::Serialize;
use serde_json::Value;

use rusqlite::params;

use super::sql::{Conn, Sql as _};
use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub rule: String,
    pub kind: String,
    pub state: JobState,
    pub trigger_kind: String,
    pub input: Value,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_after: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub coalesce_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let input: String = row.get("input")?;
    let result: Option<String> = row.get("result")?;
    Ok(Job {
        id: row.get("id")?,
        rule: row.get("rule")?,
        kind: row.get("kind")?,
        state: super::sql::parsed(row, "state", JobState::parse)?,
        trigger_kind: row.get("trigger_kind")?,
        input: serde_json::from_str(&input).unwrap_or(Value::Null),
        result: result.and_then(|r| serde_json::from_str(&r).ok()),
        error: row.get("error")?,
        attempts: row.get("attempts")?,
        max_attempts: row.get("max_attempts")?,
        run_after: row.get("run_after")?,
        lease_owner: row.get("lease_owner")?,
        lease_until: row.get("lease_until")?,
        coalesce_key: row.get("coalesce_key")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
        finished_at: row.get("finished_at")?,
    })
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub rule: String,
    pub kind: String,
    pub trigger_kind: String,
    pub input: Value,
    pub run_after: i64,
    pub max_attempts: i64,
    /// Merge with a waiting job of the same key (the newest input and the
    /// earliest `run_after` win); never run two of the same key at once.
    pub coalesce_key: Option<String>,
    /// Never create a second job with this key (webhook-id, fire time).
    pub dedupe_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// False when an existing job absorbed the request.
    pub created: bool,
}

#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub rule: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<i64>,
}

impl Store {
    pub async fn enqueue(&self, job: &NewJob, now_ms: i64) -> Result<Enqueued, StoreError> {
        let job = job.to_owned();
        self.write(move |tx| enqueue_in(tx, &job, now_ms)).await
    }

    /// Takes the next due job whose key is not already running.
    pub async fn claim(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Job>, StoreError> {
        let owner = owner.to_owned();
        // Lost in a power cut, the claim is undone: the job runs again, as
        // after any crash during a run.
        self.write_relaxed(move |tx| {
            Ok(tx.row_opt(
                "UPDATE jobs SET state = 'running', lease_owner = ?1, lease_until = ?2,
                            attempts = attempts + 1, updated_at = ?3
                     WHERE id = (
                        SELECT j.id FROM jobs j
                        WHERE j.state = 'queued' AND j.run_after <= ?3
                          AND (j.coalesce_key IS NULL OR NOT EXISTS (
                                SELECT 1 FROM jobs r INDEXED BY jobs_running_key
                                WHERE r.state = 'running' AND r.coalesce_key = j.coalesce_key))
                        ORDER BY j.run_after, j.created_at LIMIT 1)
                     RETURNING *",
                params![owner, now_ms + lease_ms, now_ms],
                from_row,
            )?)
        })
        .await
    }

    /// Extends a lease; false when the lease is no longer ours.
    pub async fn renew(&self, id: &str, owner: &str, until_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let owner = owner.to_owned();
        self.write_relaxed(move |tx| {

            let done = tx.exec("UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND state = 'running'", params![until_ms, id, owner])?;
                Ok(done == 1)

        })
        .await
    }

    /// Marks the job succeeded; false (and nothing written) when the lease
    /// is no longer ours.
    pub async fn complete(
        &self,
        id: &str,
        owner: &str,
        result: &Value,
        effects: &Effects,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.finish(id, owner, Ok(result), effects, now_ms).await
    }

    /// Ends the job as `dead` at once (a permanent failure); false when the
    /// lease is no longer ours.
    pub async fn fail(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        effects: &Effects,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.finish(id, owner, Err(error), effects, now_ms).await
    }

    /// Closes a running job as succeeded (`Ok(result)`) or dead
    /// (`Err(error)`), fenced by the lease holder, with its effects in the
    /// same transaction.
    async fn finish(
        &self,
        id: &str,
        owner: &str,
        outcome: Result<&Value, &str>,
        effects: &Effects,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let owner = owner.to_owned();
        let effects = effects.to_owned();
        let succeeded = outcome.is_ok();
        let (state, result, error) = match outcome {
            Ok(result) => (JobState::Succeeded, Some(result.to_string()), None),
            Err(error) => (JobState::Dead, None, Some(error.to_string())),
        };
        self.write(move |tx| {

                let kind: Option<String> = tx.opt(
                    "UPDATE jobs SET state = ?1, result = COALESCE(?2, result), error = ?3,
                            lease_owner = NULL, lease_until = NULL, updated_at = ?4, finished_at = ?4
                     WHERE id = ?5 AND lease_owner = ?6 AND state = 'running'
                     RETURNING kind",
                params![state.as_str(), result, error, now_ms, id, owner])?;
                let Some(kind) = kind else {
                    return Ok(false);
                };
                apply_effects(tx, &id, &kind, succeeded, &effects, now_ms)?;
                Ok(true)

        })
        .await
    }

    /// Puts the job back in the queue for `run_after`, or `dead` once its
    /// attempts are spent (then `if_dead` is applied in the same
    /// transaction). When a newer request for the same key is already
    /// waiting, that one carries on and this one is closed as superseded.
    pub async fn retry(
        &self,
        id: &str,
        owner: &str,
        error: &str,
        run_after: i64,
        if_dead: &Effects,
        now_ms: i64,
    ) -> Result<JobState, StoreError> {
        let id = id.to_owned();
        let owner = owner.to_owned();
        let error = error.to_owned();
        let if_dead = if_dead.to_owned();
        self.write(move |tx| {

            let row: Option<(i64, i64, Option<String>)> = tx.row_opt(
                    "SELECT attempts, max_attempts, coalesce_key FROM jobs WHERE id = ? AND lease_owner = ? AND state = 'running'",
                params![id, owner], super::sql::tuple)?;
                let Some((attempts, max_attempts, key)) = row else {
                    return Ok(JobState::Running);
                };
                let waiting = match &key {
                    Some(k) => {
                        tx.opt::<String, _>(
                            "SELECT id FROM jobs WHERE coalesce_key = ? AND state = 'queued'",
                        params![k])?
                    }
                    None => None,
                };
                let state = if attempts >= max_attempts {
                    JobState::Dead
                } else if waiting.is_some() {
                    JobState::Succeeded
                } else {
                    JobState::Queued
                };
                tx.exec(
                    "UPDATE jobs SET state = ?, error = ?, run_after = ?, lease_owner = NULL, lease_until = NULL,
                            updated_at = ?, finished_at = CASE WHEN ? = 'queued' THEN NULL ELSE ? END,
                            result = CASE WHEN ? = 'succeeded' THEN json_object('superseded_by', ?) ELSE result END
                     WHERE id = ?",
                params![state.as_str(), error, run_after, now_ms, state.as_str(), now_ms, state.as_str(), waiting, id])?;
                if state == JobState::Dead {
                    let kind: String = tx.one("SELECT kind FROM jobs WHERE id = ?", params![id])?;
                    apply_effects(tx, &id, &kind, false, &if_dead, now_ms)?;
                }
                Ok(state)

        })
        .await
    }

    /// A manual retry of a dead job: a fresh series of attempts, due now.
    /// Returns the state the job was in (only `dead` jobs are retried).
    pub async fn retry_dead(&self, id: &str, now_ms: i64) -> Result<Option<JobState>, StoreError> {
        let id = id.to_owned();
        self.write(move |tx| {
            let state: Option<String> =
                tx.opt("SELECT state FROM jobs WHERE id = ?", params![id])?;
            let Some(state) = state.as_deref().and_then(JobState::parse) else {
                return Ok(None);
            };
            if state == JobState::Dead {
                tx.exec(
                    "UPDATE jobs SET state = 'queued', attempts = 0, run_after = ?, error = NULL,
                                finished_at = NULL, updated_at = ? WHERE id = ?",
                    params![now_ms, now_ms, id],
                )?;
            }
            Ok(Some(state))
        })
        .await
    }

    /// Queued or running jobs of a rule (for `overlap: skip`).
    pub async fn active_jobs(&self, rule: &str) -> Result<i64, StoreError> {
        Ok(self.reader().await?.one(
            "SELECT COUNT(*) FROM jobs WHERE rule = ? AND state IN ('queued', 'running')",
            params![rule],
        )?)
    }

    /// Gives a claimed job back untouched (shutdown): queued again, and the
    /// attempt it was charged is returned.
    pub async fn release(&self, id: &str, owner: &str, now_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let owner = owner.to_owned();
        self.write(move |tx| {

            let key: Option<Option<String>> = tx.opt(
                    "SELECT coalesce_key FROM jobs WHERE id = ? AND lease_owner = ? AND state = 'running'",
                params![id, owner])?;
                let Some(key) = key else { return Ok(false) };
                requeue_or_supersede(tx, &id, key.as_deref(), now_ms, true)?;
                Ok(true)

        })
        .await
    }

    /// Returns every `running` job to the queue. Called at start, when the
    /// instance lock proves no other ferry holds a lease.
    pub async fn rescue_all(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.rescue(
            "SELECT id, coalesce_key FROM jobs WHERE state = 'running'",
            now_ms,
        )
        .await
    }

    /// Returns jobs whose lease ran out to the queue.
    pub async fn rescue_expired(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.rescue(
            &format!("SELECT id, coalesce_key FROM jobs WHERE state = 'running' AND lease_until < {now_ms}"),
            now_ms,
        )
        .await
    }

    async fn rescue(&self, select: &str, now_ms: i64) -> Result<usize, StoreError> {
        let select = select.to_owned();
        self.write(move |tx| {
            let stale: Vec<(String, Option<String>)> = tx.all(&select, [], super::sql::tuple)?;
            for (id, key) in &stale {
                requeue_or_supersede(tx, id, key.as_deref(), now_ms, false)?;
            }
            Ok(stale.len())
        })
        .await
    }

    pub async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        Ok(self.reader().await?.row_opt(
            "SELECT * FROM jobs WHERE id = ?",
            params![id],
            from_row,
        )?)
    }

    pub async fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        let sql = format!(
            "SELECT * FROM jobs WHERE {} ORDER BY created_at DESC LIMIT ?4",
            super::where_given(&[
                ("state", filter.state.is_some()),
                ("rule", filter.rule.is_some()),
                ("kind", filter.kind.is_some()),
            ])
        );
        let filter = filter.clone();
        self.read_apart(move |c| {
            c.all(
                &sql,
                params![
                    filter.state.map(JobState::as_str),
                    filter.rule.as_deref(),
                    filter.kind.as_deref(),
                    filter.limit.unwrap_or(i64::MAX)
                ],
                from_row,
            )
        })
        .await
    }

    /// Test support: `n` finished chat jobs of `rule` (every hundredth
    /// dead, with an error; the others succeeded, with a prompt and an
    /// answer), one a second back from `now_ms`, in one transaction.
    #[cfg(feature = "testing")]
    pub async fn seed_jobs(&self, rule: &str, n: usize, now_ms: i64) -> Result<(), StoreError> {
        let rule = rule.to_owned();
        self.write(move |tx| {

                for i in 0..n {
                    let at = now_ms - (n - i) as i64 * 1000;
                    let dead = i % 100 == 0;
                    let result = (!dead).then(|| {
                        serde_json::json!({
                            "prompt": format!("Summarise document {i} for the weekly digest."),
                            "answer": format!("Document {i} says what documents say, at some length. ").repeat(6),
                            "model": "bench-model",
                        })
                        .to_string()
                    });
                    tx.exec(
                        "INSERT INTO jobs (id, rule, kind, state, trigger_kind, input, result, error,
                                           attempts, max_attempts, run_after, created_at, updated_at, finished_at)
                         VALUES (?, ?, 'chat', ?, 'watch', '{}', ?, ?, 1, 5, ?, ?, ?, ?)",
                    params![uuid::Uuid::new_v4().to_string(), &rule, if dead { "dead" } else { "succeeded" }, result, dead.then_some("Open WebUI answered 500: upstream model timed out"), at, at, at + 800, at + 800])?;
                }
                Ok(())

        })
        .await
    }

    /// Jobs by state, for metrics and tests.
    pub async fn job_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self.reader().await?.all(
            "SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state",
            [],
            super::sql::tuple,
        )?)
    }

    /// The earliest `run_after` of a queued job, to sleep until it.
    pub async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .reader()
            .await?
            .one("SELECT MIN(run_after) FROM jobs WHERE state = 'queued'", [])?)
    }
}

/// What finishing a job brings about, written in the transaction that
/// finishes it (the outbox): deliveries of its events and follow-up jobs
/// (chats after an ingested document).
#[derive(Debug, Default, Clone)]
pub struct Effects {
    pub deliveries: Vec<super::NewDelivery>,
    pub jobs: Vec<NewJob>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty() && self.jobs.is_empty()
    }
}

pub(super) fn enqueue_in(tx: &Conn, job: &NewJob, now_ms: i64) -> Result<Enqueued, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let input = job.input.to_string();
    if let Some(key) = &job.dedupe_key {
        // A live job with the key, else the hash a pruned one left: one
        // statement (each is a round trip to SQLite's thread).
        let existing: Option<String> = tx.opt(
            "SELECT id FROM jobs WHERE dedupe_key = ?1
             UNION ALL SELECT job_id FROM pruned_keys WHERE key_hash = ?2
             LIMIT 1",
            params![key, super::retention::key_hash(key)],
        )?;
        if let Some(existing) = existing {
            return Ok(Enqueued {
                id: existing,
                created: false,
            });
        }
    }
    if let Some(key) = &job.coalesce_key {
        let waiting: Option<String> = tx.opt(
            "SELECT id FROM jobs WHERE coalesce_key = ? AND state = 'queued'",
            params![key],
        )?;
        if let Some(waiting) = waiting {
            // The earliest time wins: requests repeated before the
            // job runs (every poll, say) must not postpone it forever.
            tx.exec(
                    "UPDATE jobs SET input = ?, run_after = MIN(run_after, ?), trigger_kind = ?, updated_at = ? WHERE id = ?",
                params![&input, job.run_after, &job.trigger_kind, now_ms, &waiting])?;
            return Ok(Enqueued {
                id: waiting,
                created: false,
            });
        }
    }
    tx.exec(
        "INSERT INTO jobs (id, rule, kind, state, trigger_kind, input, max_attempts, run_after,
                               dedupe_key, coalesce_key, created_at, updated_at)
             VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            &id,
            &job.rule,
            &job.kind,
            &job.trigger_kind,
            &input,
            job.max_attempts,
            job.run_after,
            &job.dedupe_key,
            &job.coalesce_key,
            now_ms,
            now_ms
        ],
    )?;
    Ok(Enqueued { id, created: true })
}

fn apply_effects(
    tx: &Conn,
    id: &str,
    kind: &str,
    success: bool,
    effects: &Effects,
    now_ms: i64,
) -> Result<(), StoreError> {
    for job in &effects.jobs {
        enqueue_in(tx, job, now_ms)?;
    }
    if !effects.deliveries.is_empty() {
        super::deliveries::insert(tx, &effects.deliveries, now_ms)?;
    }
    if kind != "chat" {
        return Ok(());
    }
    // A schedule rule's `last_run` / `last_success` (runs by hand count too),
    // for its next prompt. Only schedule rules have a row.
    tx.exec(
        "UPDATE schedules SET last_run_at = ?1,
                last_success_at = CASE WHEN ?2 THEN ?1 ELSE last_success_at END,
                last_success_job = CASE WHEN ?2 THEN ?3 ELSE last_success_job END
         WHERE rule = (SELECT rule FROM jobs WHERE id = ?3 AND kind = 'chat')",
        params![now_ms, success, id],
    )?;
    Ok(())
}

fn requeue_or_supersede(
    tx: &Conn,
    id: &str,
    key: Option<&str>,
    now_ms: i64,
    refund_attempt: bool,
) -> Result<(), StoreError> {
    let waiting = match key {
        Some(k) => tx.opt::<String, _>(
            "SELECT id FROM jobs WHERE coalesce_key = ? AND state = 'queued'",
            params![k],
        )?,
        None => None,
    };
    match waiting {
        Some(other) => {
            tx.exec(
                "UPDATE jobs SET state = 'succeeded', lease_owner = NULL, lease_until = NULL, updated_at = ?,
                        finished_at = ?, result = json_object('superseded_by', ?) WHERE id = ?",
            params![now_ms, now_ms, other, id])?;
        }
        None => {
            tx.exec(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = NULL, updated_at = ?,
                        attempts = attempts - ? WHERE id = ?",
            params![now_ms, i64::from(refund_attempt), id])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("j.db")).await.unwrap();
        (dir, store)
    }

    fn sync_job(path: &str, run_after: i64) -> NewJob {
        NewJob {
            rule: "r".into(),
            kind: "sync".into(),
            trigger_kind: "watch".into(),
            input: json!({"path": path}),
            run_after,
            max_attempts: 3,
            coalesce_key: Some(format!("sync:r:{path}")),
            dedupe_key: None,
        }
    }

    #[tokio::test]
    async fn claim_counts_the_attempt_and_fences_completion() {
        let (_d, s) = store().await;
        let e = s.enqueue(&sync_job("/a", 0), 0).await.unwrap();
        assert!(e.created);
        assert!(s.claim("w1", 0, 1000).await.unwrap().is_some());
        assert!(
            s.claim("w2", 0, 1000).await.unwrap().is_none(),
            "nothing else is due"
        );
        // The lease expires, another worker rescues and claims it.
        assert_eq!(s.rescue_expired(2000).await.unwrap(), 1);
        let again = s.claim("w2", 2000, 1000).await.unwrap().unwrap();
        assert_eq!(again.attempts, 2);
        // The first holder's late completion is refused.
        assert!(
            !s.complete(&e.id, "w1", &json!({}), &Effects::default(), 2100)
                .await
                .unwrap()
        );
        assert!(
            s.complete(&e.id, "w2", &json!({"ok": true}), &Effects::default(), 2100)
                .await
                .unwrap()
        );
        assert_eq!(
            s.job(&e.id).await.unwrap().unwrap().state,
            JobState::Succeeded
        );
    }

    #[tokio::test]
    async fn same_key_coalesces_and_never_runs_twice_at_once() {
        let (_d, s) = store().await;
        let a = s.enqueue(&sync_job("/a", 5), 0).await.unwrap();
        let b = s.enqueue(&sync_job("/a", 8), 1).await.unwrap();
        assert_eq!(a.id, b.id);
        assert!(!b.created);
        assert_eq!(
            s.job(&a.id).await.unwrap().unwrap().run_after,
            5,
            "not postponed"
        );
        let running = s.claim("w1", 10, 1000).await.unwrap().unwrap();
        // A change while it runs queues one follow-up, not a parallel run.
        let c = s.enqueue(&sync_job("/a", 10), 10).await.unwrap();
        assert!(c.created);
        assert!(s.claim("w2", 10, 1000).await.unwrap().is_none());
        s.complete(&running.id, "w1", &json!({}), &Effects::default(), 11)
            .await
            .unwrap();
        assert_eq!(s.claim("w2", 11, 1000).await.unwrap().unwrap().id, c.id);
    }

    #[tokio::test]
    async fn retries_until_dead_and_superseded_by_newer_work() {
        let (_d, s) = store().await;
        let e = s.enqueue(&sync_job("/a", 0), 0).await.unwrap();
        for attempt in 1..=3 {
            let j = s.claim("w", attempt * 100, 1000).await.unwrap().unwrap();
            assert_eq!(j.attempts, attempt);
            let state = s
                .retry(
                    &e.id,
                    "w",
                    "boom",
                    attempt * 100,
                    &Effects::default(),
                    attempt * 100,
                )
                .await
                .unwrap();
            assert_eq!(
                state,
                if attempt == 3 {
                    JobState::Dead
                } else {
                    JobState::Queued
                }
            );
        }
        let dead = s.job(&e.id).await.unwrap().unwrap();
        assert_eq!(
            (dead.state, dead.error.as_deref()),
            (JobState::Dead, Some("boom"))
        );

        let e = s.enqueue(&sync_job("/b", 0), 0).await.unwrap();
        s.claim("w", 0, 1000).await.unwrap().unwrap();
        let newer = s.enqueue(&sync_job("/b", 0), 0).await.unwrap();
        assert_eq!(
            s.retry(&e.id, "w", "boom", 50, &Effects::default(), 1)
                .await
                .unwrap(),
            JobState::Succeeded
        );
        assert_eq!(
            s.job(&newer.id).await.unwrap().unwrap().state,
            JobState::Queued
        );
    }

    #[tokio::test]
    async fn release_refunds_the_attempt_and_dedupe_is_forever() {
        let (_d, s) = store().await;
        let mut job = sync_job("/a", 0);
        job.coalesce_key = None;
        job.dedupe_key = Some("hook:abc".into());
        let first = s.enqueue(&job, 0).await.unwrap();
        let j = s.claim("w", 0, 1000).await.unwrap().unwrap();
        assert!(s.release(&j.id, "w", 1).await.unwrap());
        assert_eq!(s.job(&j.id).await.unwrap().unwrap().attempts, 0);
        let j = s.claim("w", 2, 1000).await.unwrap().unwrap();
        s.complete(&j.id, "w", &json!({}), &Effects::default(), 3)
            .await
            .unwrap();
        let again = s.enqueue(&job, 4).await.unwrap();
        assert_eq!(
            again,
            Enqueued {
                id: first.id,
                created: false
            }
        );
    }
}
