//! The state database (SQLite via sqlx, DESIGN §6).
//!
//! Architecture invariants: the store is the only code that speaks SQL
//! (its pools are private); all writes go through its one writer task
//! (`writer.rs`) on the one write connection, in `BEGIN IMMEDIATE`
//! transactions that commit what is ready together, each change in its own
//! savepoint. Reads use a separate pool and never block the writer (WAL).

mod deliveries;
mod dirs;
mod documents;
mod jobs;
mod retention;
mod schedules;
mod sql;
mod stats;
mod writer;

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rusqlite::params;
use sql::Sql as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use writer::Durability;

pub use deliveries::{
    Attempt, AttemptNext, AttemptRecord, Delivery, DeliveryFilter, DeliveryState, NewDelivery,
};
pub use dirs::KnownDir;
pub use documents::{
    Document, DocumentFilter, DocumentState, FailureReason, KnownFile, LinkedFile, NewUpload,
};
pub use jobs::{Effects, Enqueued, Job, JobFilter, JobState, NewJob};
pub use retention::{Pruned, Retention};
pub use schedules::ScheduleRow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Open { path: PathBuf, source: sqlx::Error },
    #[error("state database {path}: migration failed: {source}")]
    Migrate {
        path: PathBuf,
        source: sqlx::migrate::MigrateError,
    },
    #[error(
        "another `ferry run` is already using {path} (lock {lock} is held); stop it first or point `state.database` elsewhere"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot lock {lock}: {source}")]
    Lock {
        lock: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Prepare {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database: cannot start the writer thread: {0}")]
    Thread(std::io::Error),
    #[error("state database query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database: {0}")]
    Corrupt(String),
    /// The commit a request shared with others failed (group commit): each
    /// of them gets this.
    #[error("state database: {message}")]
    Shared { message: String, full: bool },
    #[error("state database: the committing task stopped")]
    Stopped,
}

impl StoreError {
    /// The disk (or SQLite's page limit) is full: nothing can be written
    /// until space returns.
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Sql(rusqlite::Error::SqliteFailure(e, message)) => {
                e.code == rusqlite::ErrorCode::DiskFull
                    || message
                        .as_deref()
                        .is_some_and(|m| m.contains("disk is full"))
            }
            StoreError::Shared { full, .. } => *full,
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    /// Why writes cannot be made now (disk full), while that lasts.
    health: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// When [`Store::probe_space`] last wrote; held while it writes, so
    /// that the workers waiting for space probe one at a time, at most
    /// once per [`PROBE_EVERY`].
    probed: std::sync::Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
    /// Fault injection ([`Store::limit_growth`]): the page cap the writer's
    /// connection gets; 0 for none.
    page_cap: std::sync::Arc<std::sync::atomic::AtomicI64>,
    path: PathBuf,
    readers: std::sync::Arc<sql::Readers>,
    /// The one write connection's thread ([`writer::Writer`]).
    writer: writer::Writer,
}

/// Held by the one `ferry run` of a database; released when dropped (or when
/// the process dies, as the OS drops the lock with the file descriptor).
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    pub path: PathBuf,
}

/// The least time between two writes of [`Store::probe_space`].
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A list's `WHERE` from its filters, in bind order: `column = ?n` for a
/// filter given, `?n IS NULL` (bound to NULL, so true) for one not. Not
/// `(?n IS NULL OR column = ?n)`: with that SQLite cannot use an index for
/// the column, and walked every document of a rule to find its few failed
/// ones (234 ms at 100,000 documents).
fn where_given(filters: &[(&str, bool)]) -> String {
    filters
        .iter()
        .enumerate()
        .map(|(i, (column, given))| {
            if *given {
                format!("{column} = ?{}", i + 1)
            } else {
                format!("?{} IS NULL", i + 1)
            }
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

impl Store {
    /// Opens (creating if needed) and migrates the database.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        create_private_dir(path)?;
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        // The database holds prompts, answers, documents' text and hook
        // payloads: readable by ferry alone. SQLite gives the WAL and SHM
        // files the database file's mode.
        private_file(path).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Deleted and overwritten content is zeroed on its page, so that
            // what was scrubbed or pruned is gone from the file too.
            .pragma("secure_delete", "FAST");
        let prepare_err = |source| StoreError::Prepare {
            path: path.to_path_buf(),
            source,
        };
        {
            use sqlx::{ConnectOptions as _, Connection as _};
            let mut migrations = options.connect().await.map_err(open_err)?;
            MIGRATOR
                .run(&mut migrations)
                .await
                .map_err(|source| StoreError::Migrate {
                    path: path.to_path_buf(),
                    source,
                })?;
            migrations.close().await.map_err(open_err)?;
        }
        let conn = sql::open(path, true).map_err(prepare_err)?;
        incremental_vacuum(&conn).map_err(prepare_err)?;
        scrub_urls(&conn).map_err(prepare_err)?;
        let page_cap: std::sync::Arc<std::sync::atomic::AtomicI64> = Default::default();
        let writer = writer::Writer::spawn(conn, page_cap.clone()).map_err(StoreError::Thread)?;
        Ok(Store {
            health: Default::default(),
            probed: Default::default(),
            page_cap,
            path: path.to_path_buf(),
            readers: std::sync::Arc::new(sql::Readers::new(path)),
            writer,
        })
    }

    /// Takes the single-instance lock beside the database (`<db>.lock`).
    pub fn lock_instance(path: &Path) -> Result<InstanceLock, StoreError> {
        let lock = PathBuf::from(format!("{}.lock", path.display()));
        create_private_dir(&lock)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock)
            .map_err(|source| StoreError::Lock {
                lock: lock.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(InstanceLock {
                _file: file,
                path: lock,
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: path.to_path_buf(),
                lock,
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::Lock { lock, source }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the store cannot take writes now, if it cannot (see
    /// [`Store::note_write_error`]).
    pub fn unwritable(&self) -> Option<String> {
        self.health.lock().expect("not poisoned").clone()
    }

    /// Records a failed write: a full disk makes the store unwritable
    /// (logged once) until [`Store::probe_space`] succeeds. Other errors
    /// are the caller's to report.
    pub fn note_write_error(&self, e: &StoreError) {
        if !e.is_full() {
            return;
        }
        let mut health = self.health.lock().expect("not poisoned");
        if health.is_none() {
            tracing::error!(database = %self.path.display(), error = %e, "the state disk is full: no work is claimed until space returns");
            *health = Some(format!("disk full: {e}"));
        }
    }

    /// Writes (and removes) a few pages to learn whether space is back;
    /// clears the unwritable state when it is. Any worker that waits for
    /// space calls it (a write that failed before the space came back may
    /// mark the store full again after a probe cleared it, and that must
    /// not last); the calls share one probe per [`PROBE_EVERY`].
    pub async fn probe_space(&self) -> bool {
        let Ok(mut probed) = self.probed.try_lock() else {
            return self.unwritable().is_none();
        };
        let now = tokio::time::Instant::now();
        if probed.is_some_and(|at| now.duration_since(at) < PROBE_EVERY) {
            return self.unwritable().is_none();
        }
        *probed = Some(now);
        let probe = async {
            self.write(|c| {
                Ok(c.exec(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('space_probe', hex(randomblob(16384)))",
                    [],
                )?)
            })
            .await?;
            self.write(|c| Ok(c.exec("DELETE FROM meta WHERE key = 'space_probe'", [])?))
                .await
        };
        match probe.await {
            Ok(_) => {
                if self.health.lock().expect("not poisoned").take().is_some() {
                    tracing::info!(database = %self.path.display(), "the state disk has space again; claiming work");
                }
                true
            }
            Err(e) => {
                self.note_write_error(&e);
                false
            }
        }
    }

    /// Fault injection for tests: caps the database at its current size
    /// plus `pages` (SQLite then answers "database or disk is full", as it
    /// does for ENOSPC); `None` lifts the cap. It holds from the writer's
    /// next commit.
    #[doc(hidden)]
    pub async fn limit_growth(&self, pages: Option<u32>) -> Result<(), StoreError> {
        let cap = match pages {
            Some(extra) => {
                let now: i64 = self.reader().await?.one("PRAGMA page_count", [])?;
                now + i64::from(extra)
            }
            None => 0,
        };
        self.page_cap
            .store(cap, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Runs `op` in the one writer's next group commit ([`writer`]);
    /// returns once that commit is durable.
    async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sql::Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.write(Durability::Full, op).await
    }

    /// [`Store::write`] for a change ferry repairs by itself should a
    /// power cut lose it ([`Durability::Relaxed`]).
    async fn write_relaxed<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sql::Conn) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.write(Durability::Relaxed, op).await
    }

    /// A read-only connection, for the length of a statement or a few.
    /// A read in place never waits, so it spends from the task's budget
    /// instead: a loop of point reads (one per file of a listing, say)
    /// must still let the other tasks on its thread run.
    async fn reader(&self) -> Result<sql::Reader<'_>, StoreError> {
        tokio::task::consume_budget().await;
        Ok(self.readers.get()?)
    }

    /// Runs a read that may walk many rows on the blocking pool, so that the
    /// runtime's thread goes on serving meanwhile (point reads run in
    /// place: a hop to another thread costs more than they do).
    async fn read_apart<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&sql::Conn) -> rusqlite::Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || Ok(read(&*readers.get()?)?))
            .await
            .map_err(|_| StoreError::Stopped)?
    }

    /// `PRAGMA integrity_check`; `Ok(())` when SQLite answers "ok".
    pub async fn integrity_check(&self) -> Result<(), StoreError> {
        let rows: Vec<String> = self
            .read_apart(|c| c.all("PRAGMA integrity_check", [], |r| r.get(0)))
            .await?;
        match rows.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            other => Err(StoreError::Corrupt(other.join("; "))),
        }
    }

    /// Knowledge base id remembered for a name.
    pub async fn collection_id(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .reader()
            .await?
            .opt("SELECT id FROM collections WHERE name = ?", params![name])?)
    }

    /// Whether ferry created the knowledge base with this id (only those
    /// have their sharing and description kept in step with the rules).
    pub async fn created_collection(&self, id: &str) -> Result<bool, StoreError> {
        let created: Option<bool> = self.reader().await?.opt(
            "SELECT created FROM collections WHERE id = ? ORDER BY created DESC",
            params![id],
        )?;
        Ok(created.unwrap_or(false))
    }

    /// Remembers the knowledge base found or made for a name. One that
    /// takes the place of another (deleted in Open WebUI: a name is looked
    /// up again only then) takes its documents and uploads with it, in the
    /// same commit: their links are put back by the drift repair, and a
    /// repair that fails half-way leaves the rest for the next one to see.
    pub async fn remember_collection(
        &self,
        name: &str,
        id: &str,
        created: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        let id = id.to_owned();
        self.write(move |tx| {
            let previous: Option<String> =
                tx.opt("SELECT id FROM collections WHERE name = ?", params![name])?;
            if let Some(previous) = previous.filter(|p| *p != id) {
                for table in ["documents", "uploads"] {
                    tx.exec(
                        &format!(
                            "UPDATE {table} SET collection_id = ?, updated_at = ?
                             WHERE collection_id = ?"
                        ),
                        params![id, now_ms, &previous],
                    )?;
                }
                // Its directories went with it; the new one's are made
                // as files need them.
                tx.exec(
                    "DELETE FROM knowledge_dirs WHERE collection_id = ?",
                    params![&previous],
                )?;
            }
            tx.exec(
                "INSERT INTO collections (name, id, created, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (name) DO UPDATE SET id = excluded.id, created = excluded.created,
                                                      updated_at = excluded.updated_at",
                params![name, id, created, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    /// This database's instance id, made on first use. It marks ferry's
    /// uploads in Open WebUI so that unrecorded ones can be found later.
    pub async fn instance_id(&self) -> Result<String, StoreError> {
        self.write(move |tx| {

            let fresh = uuid::Uuid::new_v4().simple().to_string();
                tx.exec(
                    "INSERT INTO meta (key, value) VALUES ('instance_id', ?) ON CONFLICT (key) DO NOTHING",
                params![&fresh])?;
                Ok(
                    tx.one("SELECT value FROM meta WHERE key = 'instance_id'", [])?,
                )

        })
        .await
    }

    /// Puts a rule on hold with a reason (safety valve); `None` resumes it.
    pub async fn set_paused(
        &self,
        rule: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let rule = rule.to_owned();
        let reason = reason.map(str::to_owned);
        self.write(move |tx| {

            tx.exec(
                    "INSERT INTO rule_state (rule, paused_reason, updated_at) VALUES (?, ?, ?)
                     ON CONFLICT (rule) DO UPDATE SET paused_reason = excluded.paused_reason, updated_at = excluded.updated_at",
                params![rule, reason, now_ms])?;
                Ok(())

        })
        .await
    }

    /// Why the rule is paused, if it is: its folder (the watcher's safety
    /// valve), else its missing knowledge base.
    pub async fn paused_reason(&self, rule: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .reader()
            .await?
            .opt::<Option<String>, _>(
                "SELECT COALESCE(paused_reason, collection_missing) FROM rule_state WHERE rule = ?",
                params![rule],
            )?
            .flatten())
    }

    /// The watcher's own pause (the folder), without the collection's.
    pub async fn folder_paused(&self, rule: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .reader()
            .await?
            .opt::<Option<String>, _>(
                "SELECT paused_reason FROM rule_state WHERE rule = ?",
                params![rule],
            )?
            .flatten())
    }

    /// The pause for a missing knowledge base (`None` clears it); the
    /// previous reason.
    pub async fn set_collection_missing(
        &self,
        rule: &str,
        reason: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let rule = rule.to_owned();
        let reason = reason.map(str::to_owned);
        self.write(move |tx| {

                let before: Option<String> = tx.opt::<Option<String>, _>(
                    "SELECT collection_missing FROM rule_state WHERE rule = ?",
                params![rule])?
                .flatten();
                tx.exec(
                    "INSERT INTO rule_state (rule, collection_missing, updated_at) VALUES (?, ?, ?)
                     ON CONFLICT (rule) DO UPDATE SET collection_missing = excluded.collection_missing,
                                                      updated_at = excluded.updated_at",
                params![rule, reason, now_ms])?;
                Ok(before)

        })
        .await
    }

    /// Every paused rule with its reason.
    pub async fn paused_rules(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self.reader().await?.all(
            "SELECT rule, COALESCE(paused_reason, collection_missing) FROM rule_state
             WHERE paused_reason IS NOT NULL OR collection_missing IS NOT NULL ORDER BY rule",
            [],
            sql::tuple,
        )?)
    }

    pub async fn forget_collection(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |tx| {
            tx.exec("DELETE FROM collections WHERE name = ?", params![name])?;
            Ok(())
        })
        .await
    }
}

/// Creates the folder of `file` if needed, readable by its owner alone
/// (a folder that exists is left as the admin made it).
fn create_private_dir(file: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    match file.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.exists() => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            }),
        _ => Ok(()),
    }
}

/// Creates `path` 0600 if it is not there, and takes group and other
/// access away from one that is (and from its WAL and SHM files).
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    File::options()
        .create(true)
        .truncate(false)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(meta) = std::fs::metadata(&p)
            && meta.permissions().mode() & 0o077 != 0
        {
            let mode = meta.permissions().mode() & 0o700;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// Makes the file give freed pages back on `PRAGMA incremental_vacuum`
/// (after pruning). A database made before needs one full `VACUUM` for
/// that, once.
fn incremental_vacuum(conn: &sql::Conn) -> rusqlite::Result<()> {
    let mode: i64 = conn.one("PRAGMA auto_vacuum", [])?;
    if mode != 2 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    }
    Ok(())
}

/// The error texts that may hold a URL, as (table, column).
const URL_BEARING: [(&str, &str); 4] = [
    ("deliveries", "last_error"),
    ("delivery_attempts", "error"),
    ("jobs", "error"),
    ("documents", "error"),
];

/// A data migration, once per database: errors stored before ferry cut
/// URLs down to their host ([`crate::redact`]) named whole webhook URLs,
/// which are credentials. Each such text is rewritten in place.
fn scrub_urls(conn: &sql::Conn) -> rusqlite::Result<()> {
    const DONE: &str = "urls_scrubbed";
    let done: Option<String> = conn.opt("SELECT value FROM meta WHERE key = ?", [DONE])?;
    if done.is_some() {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let scrub = || {
        for (table, column) in URL_BEARING {
            let rows: Vec<(i64, String)> = conn.all(
                &format!("SELECT rowid, {column} FROM {table} WHERE {column} LIKE '%://%'"),
                [],
                sql::tuple,
            )?;
            for (rowid, text) in rows {
                let clean = crate::redact::text(&text);
                if clean != text {
                    conn.exec(
                        &format!("UPDATE {table} SET {column} = ? WHERE rowid = ?"),
                        params![clean.as_ref(), rowid],
                    )?;
                }
            }
        }
        conn.exec("INSERT INTO meta (key, value) VALUES (?, '1')", [DONE])?;
        conn.execute_batch("COMMIT")
    };
    if let Err(e) = scrub() {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    // The WAL still holds the pages as they were: write them back now.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_migrates_and_pragmas_hold() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/ferry.db");
        let store = Store::open(&db).await.unwrap();
        // Asked of the writer's own connection.
        let (mode, sync, keys) = store
            .write(|c| {
                Ok((
                    c.one::<String, _>("PRAGMA journal_mode", [])?,
                    c.one::<i64, _>("PRAGMA synchronous", [])?,
                    c.one::<i64, _>("PRAGMA foreign_keys", [])?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous=FULL");
        assert_eq!(keys, 1, "foreign keys enforced");
        store.integrity_check().await.unwrap();
        // Reopening runs no migration twice.
        drop(store);
        Store::open(&db).await.unwrap();
    }

    #[tokio::test]
    async fn rebuilding_documents_keeps_uploads_pointing_at_them() {
        // 0004 rebuilds `documents` inside a transaction, with foreign keys
        // on: the drop nulls `uploads.document_id` unless it is put back.
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::from_str("sqlite:")
            .unwrap()
            .filename(dir.path().join("old.db"))
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        for sql in [
            include_str!("../../migrations/0001_initial.sql"),
            include_str!("../../migrations/0002_schedules_armed.sql"),
            include_str!("../../migrations/0003_jobs_claim_order.sql"),
            "INSERT INTO documents (id, rule, path, state, created_at, updated_at)
                 VALUES (7, 'r', '/x/a.md', 'linked', 1, 1);
             INSERT INTO uploads (file_id, document_id, state, created_at, updated_at)
                 VALUES ('f1', 7, 'linked', 1, 1), ('f2', NULL, 'deleted', 1, 1);",
        ] {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
        }
        let mut tx = pool.begin().await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/0004_documents_skipped.sql"))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let links: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT file_id, document_id FROM uploads ORDER BY file_id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(links, vec![("f1".into(), Some(7)), ("f2".into(), None)]);
        sqlx::query("UPDATE documents SET state = 'skipped', reason = 'not_regular' WHERE id = 7")
            .execute(&pool)
            .await
            .unwrap();
        let problems: Vec<(String,)> = sqlx::query_as("PRAGMA foreign_key_check")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
        assert!(problems.is_empty());
    }

    #[tokio::test]
    async fn urls_stored_before_redaction_are_scrubbed_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ferry.db");
        let store = Store::open(&db).await.unwrap();
        let leaked = "error sending request for url (https://hooks.slack.com/services/T0/B0/SLACKSECRET?token=QSECRET): refused";
        store
            .write(move |c| {
                c.exec(
                    "INSERT INTO jobs (id, rule, kind, state, trigger_kind, run_after, created_at, updated_at, error)
                     VALUES ('j1', 'r', 'chat', 'dead', 'manual', 0, 0, 0, ?)",
                    [leaked],
                )?;
                // As a database written before the scrub existed.
                Ok(c.exec("DELETE FROM meta WHERE key = 'urls_scrubbed'", [])?)
            })
            .await
            .unwrap();
        drop(store);
        let store = Store::open(&db).await.unwrap();
        let error: String = store
            .reader()
            .await
            .unwrap()
            .one("SELECT error FROM jobs WHERE id = 'j1'", [])
            .unwrap();
        assert_eq!(
            error,
            "error sending request for url (https://hooks.slack.com/…): refused"
        );
        // Not in the file either: no old page image in the WAL, no stale
        // cell content on the page (secure_delete).
        for file in ["ferry.db", "ferry.db-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("SLACKSECRET") && !text.contains("QSECRET"),
                "{file} still holds the URL"
            );
        }
    }

    #[tokio::test]
    async fn state_is_readable_by_its_owner_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state/ferry.db");
        let _lock = Store::lock_instance(&db).unwrap();
        let store = Store::open(&db).await.unwrap();
        store.set_paused("r", Some("x"), 1).await.unwrap();
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("state"), 0o700);
        for f in ["ferry.db", "ferry.db-wal", "ferry.db-shm", "ferry.db.lock"] {
            assert_eq!(mode(&format!("state/{f}")), 0o600, "{f}");
        }
        // A database made world-readable before is tightened at open.
        drop(store);
        let db_path = dir.path().join("state/ferry.db");
        std::fs::set_permissions(&db_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        Store::open(&db).await.unwrap();
        assert_eq!(mode("state/ferry.db"), 0o600);
    }

    #[test]
    fn second_instance_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ferry.db");
        let first = Store::lock_instance(&db).unwrap();
        let err = Store::lock_instance(&db).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another `ferry run`"));
        drop(first);
        Store::lock_instance(&db).unwrap();
    }
}
