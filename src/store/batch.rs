//! Group commit of enqueues: requests that arrive together (a burst of
//! hooks) share one transaction, so they share one fsync. Each caller still
//! gets its answer only after the commit.

use tokio::sync::{mpsc, oneshot};

use super::jobs::enqueue_in;
use super::{Enqueued, NewJob, Store, StoreError};

type Request = (NewJob, i64, oneshot::Sender<Result<Enqueued, StoreError>>);

/// Most enqueues in one transaction.
const BATCH: usize = 256;

#[derive(Clone)]
pub struct EnqueueBatcher {
    tx: mpsc::Sender<Request>,
}

impl EnqueueBatcher {
    /// Starts the committing task; it ends when every handle is dropped.
    pub fn spawn(store: Store) -> EnqueueBatcher {
        let (tx, mut rx) = mpsc::channel::<Request>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                match commit(&store, &batch).await {
                    Ok(done) => {
                        for ((_, _, reply), e) in batch.into_iter().zip(done) {
                            let _ = reply.send(Ok(e));
                        }
                    }
                    Err(e) => {
                        let (message, full) = (e.to_string(), e.is_full());
                        for (_, _, reply) in batch {
                            let _ = reply.send(Err(StoreError::Shared {
                                message: message.clone(),
                                full,
                            }));
                        }
                    }
                }
            }
        });
        EnqueueBatcher { tx }
    }

    /// Enqueues `job` (at `now_ms`); returns once it is committed.
    pub async fn enqueue(&self, job: NewJob, now_ms: i64) -> Result<Enqueued, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((job, now_ms, reply))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

async fn commit(store: &Store, batch: &[Request]) -> Result<Vec<Enqueued>, StoreError> {
    let mut tx = store.begin_write().await?;
    let mut out = Vec::with_capacity(batch.len());
    for (job, now, _) in batch {
        out.push(enqueue_in(&mut tx, job, *now).await?);
    }
    tx.commit().await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_enqueues_commit_and_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("b.db")).await.unwrap();
        let batcher = EnqueueBatcher::spawn(store.clone());
        let job = |n: usize| NewJob {
            rule: "r".into(),
            kind: "chat".into(),
            trigger_kind: "webhook".into(),
            input: serde_json::json!({ "n": n }),
            run_after: 0,
            max_attempts: 3,
            coalesce_key: None,
            // Two senders of each event id.
            dedupe_key: Some(format!("hook:r:{}", n / 2)),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..100 {
            let b = batcher.clone();
            tasks.spawn(async move { b.enqueue(job(n), 0).await.unwrap() });
        }
        let mut created = 0;
        while let Some(e) = tasks.join_next().await {
            created += usize::from(e.unwrap().created);
        }
        assert_eq!(created, 50, "one job per event id");
        let jobs = store.jobs(&Default::default()).await.unwrap();
        assert_eq!(jobs.len(), 50);
    }
}
