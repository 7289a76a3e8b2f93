//! The one writer. Every change to the database goes through one task that
//! holds the one write connection, and commits what is ready together:
//! changes that arrive while a commit is under way share the next one (one
//! fsync for many, with `synchronous=FULL`). Each change runs in its own
//! savepoint, so one that fails is undone alone while the others commit;
//! each keeps its own checks (lease fencing, dedupe keys), which are its
//! SQL. A caller hears back only after the commit that holds its change.

use std::any::Any;

use futures_util::future::BoxFuture;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

type Value = Box<dyn Any + Send>;
type Reply = oneshot::Sender<Result<Value, StoreError>>;
type Op = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Value, StoreError>> + Send,
>;

/// Most changes in one transaction: bounds how long one commit holds the
/// write lock (readers never wait: WAL).
const BATCH: usize = 512;

#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<(Op, Reply)>,
}

impl Writer {
    /// Starts the writing task on a thread of its own (its awaits on
    /// SQLite's thread must not queue behind the daemon's busy workers:
    /// every statement is one); it ends when every handle is dropped.
    pub(super) fn spawn(pool: SqlitePool) -> Writer {
        let (tx, rx) = mpsc::channel::<(Op, Reply)>(4096);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the writer");
        std::thread::Builder::new()
            .name("ferry-writer".into())
            .spawn(move || runtime.block_on(run(pool, rx)))
            .expect("a thread for the writer");
        Writer { tx }
    }

    /// Runs `op` in the next group commit; returns its value once that
    /// commit is durable.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            Box::pin(async move { op(conn).await.map(|v| Box::new(v) as Value) })
        });
        self.tx
            .send((op, reply))
            .await
            .map_err(|_| StoreError::Stopped)?;
        let value = answer.await.map_err(|_| StoreError::Stopped)??;
        Ok(*value
            .downcast::<T>()
            .expect("the writer answers with the op's own type"))
    }
}

async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<(Op, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        commit(&pool, batch).await;
    }
}

/// One transaction for the batch; answers every caller.
async fn commit(pool: &SqlitePool, batch: Vec<(Op, Reply)>) {
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => return fail_all(batch, &StoreError::Query(e)),
    };
    // A batch of one needs no savepoint: its failure undoes the whole.
    let alone = batch.len() == 1;
    let begin = if alone {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN IMMEDIATE; SAVEPOINT op"
    };
    if let Err(e) = sqlx::raw_sql(begin).execute(&mut *conn).await {
        return fail_all(batch, &StoreError::Query(e));
    }
    let n = batch.len();
    let mut done: Vec<(Reply, Result<Value, StoreError>)> = Vec::with_capacity(n);
    for (i, (op, reply)) in batch.into_iter().enumerate() {
        let result = op(&mut conn).await;
        if !alone {
            // Closing this op's savepoint and opening the next's is one
            // round trip to SQLite's thread.
            let next = if i + 1 < n { "; SAVEPOINT op" } else { "" };
            let close = if result.is_ok() {
                format!("RELEASE op{next}")
            } else {
                format!("ROLLBACK TO op; RELEASE op{next}")
            };
            if let Err(e) = sqlx::raw_sql(&close).execute(&mut *conn).await {
                // The transaction is in an unknown state: nothing commits.
                done.push((reply, Err(StoreError::Query(e))));
                let _ = exec(&mut conn, "ROLLBACK").await;
                return answer_failed(done, "the transaction was abandoned");
            }
        }
        done.push((reply, result));
    }
    let all_failed_alone = alone && done.iter().all(|(_, r)| r.is_err());
    let end = if all_failed_alone {
        "ROLLBACK"
    } else {
        "COMMIT"
    };
    match exec(&mut conn, end).await {
        Ok(_) => {
            for (reply, result) in done {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            // Nothing of the batch is written (a full disk, say); the pool
            // drops the connection if it is still in a transaction.
            let _ = exec(&mut conn, "ROLLBACK").await;
            let e = StoreError::Query(e);
            let (message, full) = (e.to_string(), e.is_full());
            for (reply, result) in done {
                let _ = reply.send(match result {
                    Ok(_) => Err(StoreError::Shared {
                        message: message.clone(),
                        full,
                    }),
                    Err(own) => Err(own),
                });
            }
        }
    }
}

/// One statement of the writer's own (a named future: rustc cannot see
/// through sqlx's executor lifetimes inside a spawned task otherwise).
fn exec<'c>(
    conn: &'c mut SqliteConnection,
    sql: &'static str,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move { sqlx::query(sql).execute(conn).await.map(|_| ()) })
}

fn fail_all(batch: Vec<(Op, Reply)>, e: &StoreError) {
    let (message, full) = (e.to_string(), e.is_full());
    for (_, reply) in batch {
        let _ = reply.send(Err(StoreError::Shared {
            message: message.clone(),
            full,
        }));
    }
}

fn answer_failed(done: Vec<(Reply, Result<Value, StoreError>)>, why: &str) {
    for (reply, result) in done {
        let _ = reply.send(match result {
            Ok(_) => Err(StoreError::Shared {
                message: why.to_string(),
                full: false,
            }),
            Err(own) => Err(own),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{NewJob, Store};
    use super::*;

    fn job(n: usize) -> NewJob {
        NewJob {
            rule: "r".into(),
            kind: "chat".into(),
            trigger_kind: "webhook".into(),
            input: serde_json::json!({ "n": n }),
            run_after: 0,
            max_attempts: 3,
            coalesce_key: None,
            // Two senders of each event id.
            dedupe_key: Some(format!("hook:r:{}", n / 2)),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_commit_together_and_keep_their_checks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db")).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        let spawn = |tasks: &mut tokio::task::JoinSet<_>, n| {
            let store = store.clone();
            tasks.spawn(async move { store.enqueue(&job(n), 0).await.unwrap() });
        };
        (0..50).for_each(|n| spawn(&mut tasks, n));
        // Among them, a change that writes, then fails: undone alone.
        let failing = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .write(|c| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO meta (key, value) VALUES ('half-done', 'x')")
                                .execute(&mut *c)
                                .await?;
                            Err::<(), _>(StoreError::Corrupt("refused on purpose".into()))
                        })
                    })
                    .await
            }
        });
        (50..100).for_each(|n| spawn(&mut tasks, n));
        assert!(failing.await.unwrap().is_err());
        let mut created = 0;
        while let Some(e) = tasks.join_next().await {
            created += usize::from(e.unwrap().created);
        }
        assert_eq!(created, 50, "one job per event id");
        assert_eq!(store.jobs(&Default::default()).await.unwrap().len(), 50);
        let half: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'half-done'")
                .fetch_optional(&store.reader)
                .await
                .unwrap();
        assert_eq!(half, None, "the failed change left nothing");
    }
}
