//! The one writer. Every change to the database goes through one task that
//! holds the one write connection, and commits what is ready together:
//! changes that arrive while a commit is under way share the next one (one
//! fsync for many, with `synchronous=FULL`). Each change runs in its own
//! savepoint, so one that fails is undone alone while the others commit;
//! each keeps its own checks (lease fencing, dedupe keys), which are its
//! SQL. A caller hears back only after the commit that holds its change.
//!
//! A change that ferry can re-derive after a power cut may be written
//! [`Durability::Relaxed`]: a batch of only such changes commits without
//! waiting for the disk (`synchronous=NORMAL` for that transaction). It is
//! in the OS's hands at once (a killed process loses nothing) and on disk
//! with the next full commit, whose fsync covers the whole log before it.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::sql::Conn;

type Value = Box<dyn Any + Send>;
type Reply = oneshot::Sender<Result<Value, StoreError>>;
type Op = Box<dyn FnOnce(&Conn) -> Result<Value, StoreError> + Send>;

/// How soon a change must be on disk when its caller hears back.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Durability {
    /// On disk (fsync) before the caller hears back: anything another
    /// party may act on (a 202, a delivery's outcome), and every intent
    /// written before a call to Open WebUI.
    Full,
    /// In the OS's hands before the caller hears back, on disk with the
    /// next full commit. Only for a change whose loss in a power cut
    /// ferry repairs by itself: a claim or lease (the job runs again), an
    /// upload's id (the start-up sweep adopts it by its marker), a link
    /// (the job that made it runs again and finds it).
    Relaxed,
}

struct Pending {
    op: Op,
    reply: Reply,
    durability: Durability,
}

/// Most changes in one transaction: bounds how long one commit holds the
/// write lock (readers never wait: WAL).
const BATCH: usize = 512;

#[derive(Clone)]
pub(super) struct Writer {
    tx: mpsc::Sender<Pending>,
}

impl Writer {
    /// Starts the writing thread on the one write connection; it ends when
    /// every handle is dropped. `page_cap` is fault injection
    /// ([`super::Store::limit_growth`]): the page cap the connection gets
    /// before its next batch, 0 for none.
    pub(super) fn spawn(conn: Conn, page_cap: Arc<AtomicI64>) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel::<Pending>(4096);
        std::thread::Builder::new()
            .name("ferry-writer".into())
            .spawn(move || run(conn, rx, page_cap))?;
        Ok(Writer { tx })
    }

    /// Runs `op` in the next group commit; returns its value once that
    /// commit is as durable as `durability` asks.
    pub(super) async fn write<T, F>(&self, durability: Durability, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Op = Box::new(move |conn| op(conn).map(|v| Box::new(v) as Value));
        self.tx
            .send(Pending {
                op,
                reply,
                durability,
            })
            .await
            .map_err(|_| StoreError::Stopped)?;
        let value = answer.await.map_err(|_| StoreError::Stopped)??;
        Ok(*value
            .downcast::<T>()
            .expect("the writer answers with the op's own type"))
    }
}

fn run(conn: Conn, mut rx: mpsc::Receiver<Pending>, page_cap: Arc<AtomicI64>) {
    let mut cap_set = 0;
    // The connection opens with `synchronous=FULL`.
    let mut synchronous = Durability::Full;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let cap = page_cap.load(Ordering::Relaxed);
        if cap != cap_set {
            let pages = if cap > 0 { cap } else { 4_294_967_294 };
            // The pragma answers with the cap it set: a row, not a change.
            match conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())) {
                Ok(()) => cap_set = cap,
                Err(e) => {
                    fail_all(batch, &StoreError::Sql(e));
                    continue;
                }
            }
        }
        let wanted = durability_of(&batch);
        if wanted != synchronous {
            let pragma = match wanted {
                Durability::Full => "PRAGMA synchronous = FULL",
                Durability::Relaxed => "PRAGMA synchronous = NORMAL",
            };
            // Outside any transaction, where SQLite takes the setting.
            match steps(&conn, &[pragma]) {
                Ok(()) => synchronous = wanted,
                Err(e) => {
                    fail_all(batch, &StoreError::Sql(e));
                    continue;
                }
            }
        }
        commit(&conn, batch);
    }
}

/// A batch waits for the disk unless every change in it may not.
fn durability_of(batch: &[Pending]) -> Durability {
    if batch.iter().all(|p| p.durability == Durability::Relaxed) {
        Durability::Relaxed
    } else {
        Durability::Full
    }
}

/// One transaction for the batch; answers every caller.
fn commit(conn: &Conn, batch: Vec<Pending>) {
    // A batch of one needs no savepoint: its failure undoes the whole.
    let alone = batch.len() == 1;
    let begin: &[&str] = if alone {
        &["BEGIN IMMEDIATE"]
    } else {
        &["BEGIN IMMEDIATE", "SAVEPOINT op"]
    };
    if let Err(e) = steps(conn, begin) {
        rollback(conn);
        return fail_all(batch, &StoreError::Sql(e));
    }
    let n = batch.len();
    let mut done: Vec<(Reply, Result<Value, StoreError>)> = Vec::with_capacity(n);
    for (i, Pending { op, reply, .. }) in batch.into_iter().enumerate() {
        let result = op(conn);
        if !alone {
            let close: &[&str] = match (result.is_ok(), i + 1 < n) {
                (true, true) => &["RELEASE op", "SAVEPOINT op"],
                (true, false) => &["RELEASE op"],
                (false, true) => &["ROLLBACK TO op", "RELEASE op", "SAVEPOINT op"],
                (false, false) => &["ROLLBACK TO op", "RELEASE op"],
            };
            if let Err(e) = steps(conn, close) {
                // The transaction is in an unknown state: nothing commits.
                done.push((reply, Err(StoreError::Sql(e))));
                rollback(conn);
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
    match steps(conn, &[end]) {
        Ok(()) => {
            tracing::debug!(changes = n, "group commit");
            for (reply, result) in done {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            // Nothing of the batch is written (a full disk, say).
            rollback(conn);
            let e = StoreError::Sql(e);
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

/// Runs transaction-control statements through the connection's cache of
/// prepared statements: parsed once, not at every batch and change.
fn steps(conn: &Conn, statements: &[&str]) -> rusqlite::Result<()> {
    for sql in statements {
        conn.prepare_cached(sql)?.execute([])?;
    }
    Ok(())
}

/// Ends a transaction that could not finish, if one is still open (SQLite
/// rolls some failures back itself), so the next batch can begin.
fn rollback(conn: &Conn) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
}

fn fail_all(batch: Vec<Pending>, e: &StoreError) {
    let (message, full) = (e.to_string(), e.is_full());
    for Pending { reply, .. } in batch {
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
    use super::super::sql::Sql as _;
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

    /// What SQLite is set to while the batch runs: 2 is FULL, 1 NORMAL.
    fn synchronous(c: &Conn) -> Result<i64, StoreError> {
        Ok(c.one("PRAGMA synchronous", [])?)
    }

    #[tokio::test]
    async fn only_a_batch_of_relaxed_changes_commits_without_waiting_for_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("w.db")).await.unwrap();
        assert_eq!(store.write(synchronous).await.unwrap(), 2);
        assert_eq!(store.write_relaxed(synchronous).await.unwrap(), 1);
        assert_eq!(store.write(synchronous).await.unwrap(), 2, "back to FULL");
        let pending = |durability| Pending {
            op: Box::new(|_: &Conn| Ok(Box::new(()) as Value)),
            reply: oneshot::channel().0,
            durability,
        };
        use Durability::{Full, Relaxed};
        assert_eq!(
            durability_of(&[pending(Relaxed), pending(Relaxed)]),
            Relaxed
        );
        assert_eq!(
            durability_of(&[pending(Relaxed), pending(Full)]),
            Full,
            "a full change decides"
        );
        // What a relaxed batch wrote is there for the next reader.
        store
            .write_relaxed(|c| {
                Ok(c.exec("INSERT INTO meta (key, value) VALUES ('relaxed', 'x')", [])?)
            })
            .await
            .unwrap();
        let seen: Option<String> = store
            .reader()
            .await
            .unwrap()
            .opt("SELECT value FROM meta WHERE key = 'relaxed'", [])
            .unwrap();
        assert_eq!(seen.as_deref(), Some("x"));
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
                        c.exec(
                            "INSERT INTO meta (key, value) VALUES ('half-done', 'x')",
                            [],
                        )?;
                        Err::<(), _>(StoreError::Corrupt("refused on purpose".into()))
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
        let half: Option<String> = store
            .reader()
            .await
            .unwrap()
            .opt("SELECT value FROM meta WHERE key = 'half-done'", [])
            .unwrap();
        assert_eq!(half, None, "the failed change left nothing");
    }
}
