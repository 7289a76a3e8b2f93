//! Reads for `/readyz`, `/metrics` and the status pages.

use rusqlite::params;

use super::sql::Sql as _;
use super::{Store, StoreError};

impl Store {
    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.reader().await?.one::<i64, _>("SELECT 1", [])?;
        Ok(())
    }

    /// Documents by (rule, state).
    pub async fn document_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read_apart(|c| {
            c.all(
                "SELECT rule, state, COUNT(*) FROM documents GROUP BY rule, state",
                [],
                super::sql::tuple,
            )
        })
        .await
    }

    /// Jobs by (kind, state).
    pub async fn job_counts_by_kind(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read_apart(|c| {
            c.all(
                "SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state",
                [],
                super::sql::tuple,
            )
        })
        .await
    }

    /// Jobs waiting, running or dead, by (rule, state): what a rule has
    /// in hand. Read through the state index, so finished history (most
    /// rows) is never scanned.
    pub async fn open_job_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read_apart(|c| {
            c.all(
                "SELECT rule, state, COUNT(*) FROM jobs
             WHERE state IN ('queued', 'running', 'dead') GROUP BY rule, state",
                [],
                super::sql::tuple,
            )
        })
        .await
    }

    /// Per rule, the newest error of a job that is dead or waiting for
    /// its retry: (rule, error, when).
    pub async fn last_errors(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.read_apart(|c| {
            c.all(
                "SELECT rule, error, MAX(updated_at) FROM jobs
             WHERE state IN ('queued', 'dead') AND error IS NOT NULL GROUP BY rule",
                [],
                super::sql::tuple,
            )
        })
        .await
    }

    /// Deliveries marked delivered; with `of_jobs`, only those of jobs.
    pub async fn delivered_count(&self, of_jobs: bool) -> Result<i64, StoreError> {
        let sql = if of_jobs {
            "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered' AND job_id IS NOT NULL"
        } else {
            "SELECT COUNT(*) FROM deliveries WHERE state = 'delivered'"
        };
        self.read_apart(move |c| c.one(sql, [])).await
    }

    /// For each delivery of a job: ms from the job's end to the delivery's
    /// first attempt (the outbox's latency).
    pub async fn first_attempt_gaps(&self) -> Result<Vec<f64>, StoreError> {
        self.read_apart(|c| {
            c.all(
                "SELECT CAST(a.started_at - j.finished_at AS REAL) FROM deliveries d
             JOIN jobs j ON j.id = d.job_id
             JOIN delivery_attempts a ON a.delivery_id = d.id AND a.attempt = 1",
                [],
                |r| r.get(0),
            )
        })
        .await
    }

    /// Writes the WAL back into the database file (its size is then true).
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        // Not in the writer's transaction, where a checkpoint cannot run.
        let conn = super::sql::open(&self.path, true)?;
        Ok(conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?)
    }

    /// Whether nothing is left to do at `now_ms`: no job running or due,
    /// no delivery being sent or due. Work due later does not count.
    pub async fn idle_at(&self, now_ms: i64) -> Result<bool, StoreError> {
        let busy: i64 = self.reader().await?.one(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE state = 'running'
                        OR (state = 'queued' AND run_after <= ?1))
                  + (SELECT COUNT(*) FROM deliveries WHERE state = 'delivering'
                        OR (state = 'pending' AND next_attempt_at <= ?1))",
            params![now_ms],
        )?;
        Ok(busy == 0)
    }
}
