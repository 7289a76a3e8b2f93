//! How the store speaks SQL: rusqlite connections, called in place.
//!
//! sqlx ran every statement on a thread of the connection's own and
//! answered through a channel: 25 µs of CPU per statement, three quarters
//! of ferry's CPU per ingested file. rusqlite runs the statement on the
//! caller's thread (7 µs), so the writer thread runs its batch itself and
//! a read is a call. sqlx stays for the migrations only (`Store::open`),
//! so databases keep their `_sqlx_migrations` history.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::FromSql;
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Params, Row};

pub(super) type Conn = Connection;

/// Distinct statements a connection keeps prepared (the store has about
/// 150; the hot ones are a few dozen).
const PREPARED: usize = 256;

/// Opens a connection with the pragmas every one of ferry's needs. WAL is
/// the file's own setting, made at open by the migrations' connection.
pub(super) fn open(path: &Path, write: bool) -> rusqlite::Result<Conn> {
    let flags = if write {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(PREPARED);
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = FAST;",
    )?;
    Ok(conn)
}

/// The calls the store makes, each through the connection's cache of
/// prepared statements (parsing is a third of a small statement's cost).
pub(super) trait Sql {
    fn exec<P: Params>(&self, sql: &str, p: P) -> rusqlite::Result<usize>;
    /// The first column of the one row.
    fn one<T: FromSql, P: Params>(&self, sql: &str, p: P) -> rusqlite::Result<T>;
    /// The first column of the first row, if there is one.
    fn opt<T: FromSql, P: Params>(&self, sql: &str, p: P) -> rusqlite::Result<Option<T>>;
    fn row_one<T, P: Params>(
        &self,
        sql: &str,
        p: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
    fn row_opt<T, P: Params>(
        &self,
        sql: &str,
        p: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>>;
    fn all<T, P: Params>(
        &self,
        sql: &str,
        p: P,
        f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>>;
}

impl Sql for Connection {
    fn exec<P: Params>(&self, sql: &str, p: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(p)
    }

    fn one<T: FromSql, P: Params>(&self, sql: &str, p: P) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(p, |r| r.get(0))
    }

    fn opt<T: FromSql, P: Params>(&self, sql: &str, p: P) -> rusqlite::Result<Option<T>> {
        self.prepare_cached(sql)?
            .query_row(p, |r| r.get(0))
            .optional()
    }

    fn row_one<T, P: Params>(
        &self,
        sql: &str,
        p: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(p, f)
    }

    fn row_opt<T, P: Params>(
        &self,
        sql: &str,
        p: P,
        f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        self.prepare_cached(sql)?.query_row(p, f).optional()
    }

    fn all<T, P: Params>(
        &self,
        sql: &str,
        p: P,
        mut f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        let mut stmt = self.prepare_cached(sql)?;
        let mut rows = stmt.query(p)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(f(row)?);
        }
        Ok(out)
    }
}

/// A row as a tuple of its columns.
pub(super) fn tuple<T>(row: &Row<'_>) -> rusqlite::Result<T>
where
    T: for<'a> TryFrom<&'a Row<'a>, Error = rusqlite::Error>,
{
    T::try_from(row)
}

/// A text column that names one of an enum's values.
pub(super) fn parsed<T>(
    row: &Row<'_>,
    column: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            row.as_ref().column_index(column).unwrap_or(0),
            rusqlite::types::Type::Text,
            format!("{column} {text:?} is not one ferry knows").into(),
        )
    })
}

/// Idle read connections kept for the next reads.
const KEPT_READERS: usize = 4;

/// Read-only connections, opened as needed, a few kept. A read runs on the
/// caller's thread: the store's reads are point lookups and bounded lists
/// of a few milliseconds at most, less than a hop to another thread costs.
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Conn>>,
}

/// A reader on loan; back to the idle ones when dropped.
pub(super) struct Reader<'a> {
    conn: Option<Conn>,
    from: &'a Readers,
}

impl Readers {
    pub(super) fn new(path: &Path) -> Readers {
        Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn get(&self) -> rusqlite::Result<Reader<'_>> {
        let idle = self.idle.lock().expect("not poisoned").pop();
        let conn = match idle {
            Some(c) => c,
            None => open(&self.path, false)?,
        };
        Ok(Reader {
            conn: Some(conn),
            from: self,
        })
    }
}

impl std::ops::Deref for Reader<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("held until dropped")
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.from.idle.lock().expect("not poisoned");
            // A burst of reads apart opened more; each keeps a page cache.
            if idle.len() < KEPT_READERS {
                idle.push(conn);
            }
        }
    }
}
