//! Bounded storage: finished jobs, delivered and dead deliveries and their
//! attempt logs (with them the hook payloads and answers they hold) are
//! deleted once older than [`Retention`]; what is still pending is never
//! touched. A pruned job's dedupe key stays as a 16-byte hash
//! (`pruned_keys`) for `keys` more, so a sender's late retry or a replay is
//! still answered as a duplicate. Freed pages go back to the file system
//! (`auto_vacuum = INCREMENTAL`), so the file stops growing.

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use rusqlite::params;

use super::sql::Sql as _;
use super::{Store, StoreError};

/// How long finished work is kept (`retention:` in `ferry.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Succeeded jobs (their input: hook payloads, and their answers).
    pub jobs: Duration,
    /// Delivered deliveries and their attempts.
    pub deliveries: Duration,
    /// Dead jobs and dead deliveries (dead letters): kept longer.
    pub dead: Duration,
    /// Dedupe keys of pruned jobs, from when they were pruned.
    pub keys: Duration,
}

impl Retention {
    pub const MIN_KEYS: Duration = Duration::from_secs(72 * 3600);
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Retention {
            jobs: Duration::from_secs(30 * DAY),
            deliveries: Duration::from_secs(30 * DAY),
            dead: Duration::from_secs(90 * DAY),
            keys: Duration::from_secs(30 * DAY),
        }
    }
}

/// What one pruning removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub jobs: u64,
    pub deliveries: u64,
    pub keys: u64,
}

/// Rows deleted per transaction: the writer is never held for long.
const BATCH: i64 = 500;

/// The stored form of a dedupe key.
pub(super) fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes())[..16].to_vec()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Deletes what `policy` no longer keeps, as of `now_ms`, then gives
    /// the freed pages back.
    pub async fn prune(&self, policy: &Retention, now_ms: i64) -> Result<Pruned, StoreError> {
        let policy = policy.to_owned();
        self.write(move |tx| {

            let mut pruned = Pruned::default();
                let delivered_before = now_ms.saturating_sub(ms(policy.deliveries));
                let succeeded_before = now_ms.saturating_sub(ms(policy.jobs));
                let dead_before = now_ms.saturating_sub(ms(policy.dead));
                loop {
                        let ids: Vec<String> = tx.all(
                        "SELECT id FROM deliveries INDEXED BY deliveries_finished
                         WHERE state IN ('delivered', 'dead')
                           AND updated_at < CASE state WHEN 'dead' THEN ?2 ELSE ?1 END
                         LIMIT ?3",
                    params![delivered_before, dead_before, BATCH], |r| r.get(0))?;
                    for id in &ids {
                        tx.exec("DELETE FROM delivery_attempts WHERE delivery_id = ?", params![id])?;
                        tx.exec("DELETE FROM deliveries WHERE id = ?", params![id])?;
                    }
                        pruned.deliveries += ids.len() as u64;
                    if (ids.len() as i64) < BATCH {
                        break;
                    }
                }
                loop {
                        // A job whose deliveries are still kept stays with them.
                    let rows: Vec<(String, Option<String>)> = tx.all(
                        "SELECT id, dedupe_key FROM jobs INDEXED BY jobs_finished
                         WHERE finished_at IS NOT NULL
                           AND finished_at < CASE state WHEN 'dead' THEN ?2 ELSE ?1 END
                           AND state IN ('succeeded', 'dead')
                           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.job_id = jobs.id)
                         LIMIT ?3",
                    params![succeeded_before, dead_before, BATCH], super::sql::tuple)?;
                    for (id, key) in &rows {
                        if let Some(key) = key {
                            tx.exec(
                                "INSERT OR IGNORE INTO pruned_keys (key_hash, job_id, pruned_at) VALUES (?, ?, ?)",
                            params![key_hash(key), id, now_ms])?;
                        }
                        tx.exec("DELETE FROM jobs WHERE id = ?", params![id])?;
                    }
                        pruned.jobs += rows.len() as u64;
                    if (rows.len() as i64) < BATCH {
                        break;
                    }
                }
                let keys = tx.exec("DELETE FROM pruned_keys WHERE pruned_at < ?", params![now_ms.saturating_sub(ms(policy.keys.max(Retention::MIN_KEYS)))])?;
                pruned.keys = keys as u64;
                if pruned != Pruned::default() {
                    // It steps once per page it gives back: run to the end,
                    // not `execute`, which takes a row for an error.
                    tx.all("PRAGMA incremental_vacuum", [], |_| Ok(()))?;
                }
                Ok(pruned)

        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Effects, NewDelivery, NewJob};

    const DAY: i64 = 86_400_000;

    fn hook_job(key: &str) -> NewJob {
        NewJob {
            rule: "alerts".into(),
            kind: "chat".into(),
            trigger_kind: "webhook".into(),
            input: serde_json::json!({"payload": {"big": "x".repeat(1000)}}),
            run_after: 0,
            max_attempts: 5,
            coalesce_key: None,
            dedupe_key: Some(key.into()),
        }
    }

    async fn finished_with_delivery(store: &Store, key: &str, at: i64) -> String {
        let e = store.enqueue(&hook_job(key), at).await.unwrap();
        let job = store.claim("me", at, 60_000).await.unwrap().unwrap();
        assert_eq!(job.id, e.id);
        let effects = Effects {
            deliveries: vec![NewDelivery {
                id: format!("msg_{key}"),
                job_id: Some(job.id.clone()),
                rule: "alerts".into(),
                destination: "out".into(),
                event_type: "chat.completed".into(),
                body: b"{}".to_vec(),
                error: None,
            }],
            jobs: Vec::new(),
        };
        store
            .complete(
                &job.id,
                "me",
                &serde_json::json!({"answer": "a"}),
                &effects,
                at,
            )
            .await
            .unwrap();
        job.id
    }

    /// Enough pruned to free whole pages: `PRAGMA incremental_vacuum`
    /// steps once per page it gives back, and the prune must not take
    /// that for an error (a backlog bench caught it; the small test below
    /// frees no page).
    #[tokio::test]
    async fn a_prune_that_frees_pages_gives_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("f.db")).await.unwrap();
        let t0 = 1_000 * DAY;
        for i in 0..200 {
            let e = store
                .enqueue(&hook_job(&format!("k{i}")), t0)
                .await
                .unwrap();
            let job = store.claim("me", t0, 60_000).await.unwrap().unwrap();
            assert_eq!(job.id, e.id);
            store
                .complete(
                    &job.id,
                    "me",
                    &serde_json::json!({}),
                    &Effects::default(),
                    t0,
                )
                .await
                .unwrap();
        }
        let p = store
            .prune(&Retention::default(), t0 + 31 * DAY)
            .await
            .unwrap();
        assert_eq!(p.jobs, 200);
        let free: i64 = store
            .reader()
            .await
            .unwrap()
            .one("PRAGMA freelist_count", [])
            .unwrap();
        assert_eq!(free, 0, "the freed pages went back to the file system");
    }

    #[tokio::test]
    async fn prunes_finished_work_keeps_pending_and_remembers_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("f.db")).await.unwrap();
        let t0 = 1_000 * DAY;
        let done = finished_with_delivery(&store, "hook:alerts:evt-1", t0).await;
        let pending = finished_with_delivery(&store, "hook:alerts:evt-2", t0).await;
        store
            .write(move |c| {
                Ok(c.exec(
                    "UPDATE deliveries SET state = 'delivered', updated_at = ? WHERE id = 'msg_hook:alerts:evt-1'",
                    [t0],
                )?)
            })
            .await
            .unwrap();
        let queued = store
            .enqueue(&hook_job("hook:alerts:evt-3"), t0)
            .await
            .unwrap();
        let policy = Retention::default();

        assert_eq!(
            store.prune(&policy, t0 + 29 * DAY).await.unwrap(),
            Pruned::default()
        );
        let p = store.prune(&policy, t0 + 31 * DAY).await.unwrap();
        assert_eq!((p.jobs, p.deliveries), (1, 1));
        assert!(store.job(&done).await.unwrap().is_none());
        // A job whose delivery is still pending stays, and so does a queued
        // one, however old.
        assert!(store.job(&pending).await.unwrap().is_some());
        assert!(store.job(&queued.id).await.unwrap().is_some());

        // The sender retries the pruned event: a duplicate of the old job.
        let again = store
            .enqueue(&hook_job("hook:alerts:evt-1"), t0 + 32 * DAY)
            .await
            .unwrap();
        assert_eq!((again.id.as_str(), again.created), (done.as_str(), false));

        // Keys go after `keys` more; then the id is new again.
        let p = store.prune(&policy, t0 + 62 * DAY).await.unwrap();
        assert_eq!(p.keys, 1);
        let fresh = store
            .enqueue(&hook_job("hook:alerts:evt-1"), t0 + 62 * DAY)
            .await
            .unwrap();
        assert!(fresh.created);
        // Freed pages went back: the file is in incremental mode.
        let mode: i64 = store
            .reader()
            .await
            .unwrap()
            .one("PRAGMA auto_vacuum", [])
            .unwrap();
        assert_eq!(mode, 2);
    }
}
