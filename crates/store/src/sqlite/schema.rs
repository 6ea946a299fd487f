//! Connection setup and the on-disk schema.
//!
//! * `log`: one row per create, update and delete, kine-style. `id` is the
//!   revision of the write. `AUTOINCREMENT` keeps SQLite from ever handing out
//!   an id again, even after compaction deleted the highest rows, so the
//!   revision stays monotonic across restarts; the high-water mark lives in
//!   `sqlite_sequence`. A delete row (a tombstone) carries the deleted value so
//!   that watch can deliver it without a join.
//! * `current`: the latest state, one row per live key pointing at its log row,
//!   so latest reads are an index range scan instead of a max-per-key query.
//! * `meta`: named integers, e.g. the compacted revision.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::statement::Sql;
use crate::metrics::{Statement, StoreMetrics};
use crate::{Error, Result, Revision};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_id ON log (key, id);
CREATE TABLE IF NOT EXISTS current (
    key TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

pub(crate) const CURRENT_REVISION: &str =
    "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'log'), 0)";
pub(crate) const COMPACTED_REVISION: &str =
    "SELECT COALESCE((SELECT value FROM meta WHERE name = 'compacted'), 0)";

/// Open the connection the writer thread owns, and create or check the schema.
///
/// Pragmas, chosen on purpose:
/// * `journal_mode=WAL`: readers never block the writer and the writer never
///   blocks readers; a commit is one sequential append to the WAL file.
/// * `synchronous=FULL`: every COMMIT fsyncs the WAL before it returns. With
///   `NORMAL`, a WAL commit survives a process crash (`kill -9`) but can be
///   lost on power failure or a kernel crash, because the fsync is deferred to
///   checkpoints. We acknowledge a write only after COMMIT returns and promise
///   that it stays, so we pay the fsync; group commit spreads its cost over
///   every write in the batch.
/// * `busy_timeout`: a second process (or a checkpoint) holding the lock makes
///   us wait instead of failing at once.
pub(crate) fn open_writer(
    path: &Path,
    busy_timeout: Duration,
    metrics: &StoreMetrics,
) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    let sql = Sql::new(&conn, metrics);
    sql.run(Statement::Schema, "PRAGMA journal_mode = WAL", |s| {
        s.query_row([], |r| r.get::<_, String>(0))
    })?;
    sql.execute(Statement::Schema, "PRAGMA synchronous = FULL", [])?;
    let version: i64 = sql.run(Statement::Schema, "PRAGMA user_version", |s| {
        s.query_row([], |r| r.get(0))
    })?;
    if version > SCHEMA_VERSION {
        // A newer skiff wrote this file; refuse rather than misread it.
        return Err(Error::SchemaVersion {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    sql.execute_batch(Statement::Schema, SCHEMA)?;
    if version != SCHEMA_VERSION {
        // Only when it changes: a write here is a commit that every other
        // process on the file would have to look at.
        sql.execute(
            Statement::Schema,
            &format!("PRAGMA user_version = {SCHEMA_VERSION}"),
            [],
        )?;
    }
    Ok(conn)
}

/// Open a read-only-by-policy connection for the read pool.
pub(crate) fn open_reader(
    path: &Path,
    busy_timeout: Duration,
    metrics: &StoreMetrics,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(64);
    // Writes from this connection would bypass the writer thread and its
    // revision bookkeeping.
    Sql::new(&conn, metrics).execute(Statement::Schema, "PRAGMA query_only = 1", [])?;
    Ok(conn)
}

/// SQLite's `data_version` of this connection: it changes when another
/// connection (of this process or another one) commits, and not for the
/// connection's own commits. Read inside a transaction, it accounts for every
/// commit that transaction can see.
pub(crate) fn data_version(sql: Sql<'_>) -> rusqlite::Result<i64> {
    Ok(sql
        .query_row(Statement::DataVersion, "PRAGMA data_version", [], |r| {
            r.get(0)
        })?
        .unwrap_or_default())
}

/// The current and the compacted revision, as stored.
pub(crate) fn revisions(sql: Sql<'_>) -> rusqlite::Result<(Revision, Revision)> {
    let current = sql
        .query_row(Statement::CurrentRevision, CURRENT_REVISION, [], |r| {
            r.get(0)
        })?
        .unwrap_or_default();
    let compacted = sql
        .query_row(Statement::CompactedRevision, COMPACTED_REVISION, [], |r| {
            r.get(0)
        })?
        .unwrap_or_default();
    Ok((current, compacted))
}
