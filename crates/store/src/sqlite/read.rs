//! Reads: a small pool of connections used from `spawn_blocking`, and the
//! queries they run. Multi-statement reads run inside one deferred transaction
//! so that they see one WAL snapshot.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, Row};
use tokio::sync::Semaphore;

use super::key_range::KeyRange;
use super::schema::{self, COMPACTED_REVISION};
use super::statement::Sql;
use crate::metrics::{Statement, StoreMetrics};
use crate::{Error, Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision};

/// The latest value of one key: its revision, create revision and value.
///
/// Written as a lookup by rowid rather than a join: SQLite re-prepares a cached
/// join statement on every run once other connections have written (measured with
/// `sqlite3_stmt_status(SQLITE_STMTSTATUS_REPREPARE)`), which costs a full parse.
pub(crate) const GET_CURRENT: &str = "SELECT l.id, l.create_revision, l.value \
     FROM log l WHERE l.id = (SELECT revision FROM current WHERE key = ?1)";

/// Connections for reads. The semaphore bounds concurrent blocking reads to the
/// pool size; a connection lost to a panicking read is replaced on demand.
pub(crate) struct ReadPool {
    path: PathBuf,
    busy_timeout: Duration,
    size: usize,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    metrics: Arc<StoreMetrics>,
}

impl ReadPool {
    pub(crate) fn open(
        path: PathBuf,
        size: usize,
        busy_timeout: Duration,
        metrics: Arc<StoreMetrics>,
    ) -> Result<Self> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| schema::open_reader(&path, busy_timeout, &metrics))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(ReadPool {
            path,
            busy_timeout,
            size,
            idle: Mutex::new(idle),
            permits: Semaphore::new(size),
            metrics,
        })
    }

    /// Run `f` with a connection on the blocking thread pool.
    pub(crate) async fn with<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Sql<'_>) -> Result<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| Error::Closed)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = f(Sql::new(&conn, &pool.metrics));
            pool.give_back(conn);
            result
        })
        .await?
    }

    fn take(&self) -> Result<Connection> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => Ok(schema::open_reader(
                &self.path,
                self.busy_timeout,
                &self.metrics,
            )?),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.size {
            idle.push(conn);
        }
    }
}

/// Run `f` inside one read transaction, so all its statements see one snapshot.
pub(crate) fn snapshot<T>(sql: Sql<'_>, f: impl FnOnce(Sql<'_>) -> Result<T>) -> Result<T> {
    sql.execute(Statement::BeginRead, "BEGIN DEFERRED", [])?;
    let result = f(sql);
    if !sql.in_transaction() {
        // SQLite already rolled back on a failed statement.
        return result;
    }
    // Nothing to keep from a read; ending it releases the snapshot so that
    // checkpoints can recycle the WAL.
    let end = sql.execute(Statement::EndRead, "ROLLBACK", []);
    match (result, end) {
        (Ok(value), Ok(_)) => Ok(value),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), Ok(_)) => Err(e),
        (Err(e), Err(end_error)) => {
            tracing::warn!(error = %end_error, "ending a failed read transaction");
            Err(e)
        }
    }
}

/// The LIMIT of a query, written into the SQL text rather than bound: a bound
/// LIMIT makes SQLite re-prepare the cached statement on every run. The value is
/// an integer we produce, never client text.
fn sql_limit(limit: Option<usize>) -> i64 {
    // SQLite reads a negative LIMIT as "no limit".
    limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

fn key_value(key: String, r: &Row<'_>, first: usize) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key,
        mod_revision: r.get(first)?,
        create_revision: r.get(first + 1)?,
        value: Bytes::from(r.get::<_, Vec<u8>>(first + 2)?),
    })
}

/// The latest value of `key`.
pub(crate) fn get(sql: Sql<'_>, key: &str) -> Result<Option<KeyValue>> {
    Ok(
        sql.query_row(Statement::GetCurrent, GET_CURRENT, [key], |r| {
            key_value(key.to_owned(), r, 0)
        })?,
    )
}

/// Live keys under `prefix`.
pub(crate) fn count(sql: Sql<'_>, prefix: &str) -> Result<u64> {
    let range = KeyRange::new("key", prefix, None);
    let query = format!("SELECT COUNT(*) FROM current WHERE {}", range.condition);
    let n: i64 = sql
        .query_row(
            Statement::Count,
            &query,
            params_from_iter(range.params),
            |r| r.get(0),
        )?
        .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One page of keys under `prefix`, latest or at `opts.revision`.
pub(crate) fn list(sql: Sql<'_>, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    snapshot(sql, |sql| {
        let (current, compacted) = schema::revisions(sql)?;
        let at = opts.revision.filter(|r| r.0 != 0);
        if let Some(requested) = at {
            if requested > current {
                return Err(Error::FutureRevision { requested, current });
            }
            if requested < compacted {
                return Err(Error::Compacted {
                    requested,
                    compacted,
                });
            }
        }
        // At the current revision the latest-state index is the answer, and
        // cheaper than the per-key maximum over the log.
        let at = at.filter(|r| *r != current);
        let (items, remaining) = match at {
            None => list_latest(sql, prefix, opts)?,
            Some(revision) => list_at(sql, prefix, opts, revision)?,
        };
        Ok(ListResult {
            items,
            revision: at.unwrap_or(current),
            remaining,
        })
    })
}

fn remaining(total: i64, returned: usize) -> u64 {
    u64::try_from(total)
        .unwrap_or(0)
        .saturating_sub(returned as u64)
}

fn page_is_full(opts: &ListOptions, returned: usize) -> bool {
    opts.limit.is_some_and(|limit| returned >= limit)
}

fn list_latest(sql: Sql<'_>, prefix: &str, opts: &ListOptions) -> Result<(Vec<KeyValue>, u64)> {
    let range = KeyRange::new("c.key", prefix, opts.start_after.as_deref());
    let query = format!(
        "SELECT c.key, c.revision, l.create_revision, l.value \
         FROM current c JOIN log l ON l.id = c.revision \
         WHERE {} ORDER BY c.key LIMIT {}",
        range.condition,
        sql_limit(opts.limit)
    );
    let params = range.params.clone();
    let items = sql.query_rows(Statement::List, &query, params_from_iter(params), |r| {
        key_value(r.get(0)?, r, 1)
    })?;
    if !page_is_full(opts, items.len()) {
        return Ok((items, 0));
    }
    let query = format!("SELECT COUNT(*) FROM current c WHERE {}", range.condition);
    let total: i64 = sql
        .query_row(
            Statement::Count,
            &query,
            params_from_iter(range.params),
            |r| r.get(0),
        )?
        .unwrap_or(0);
    let rest = remaining(total, items.len());
    Ok((items, rest))
}

fn list_at(
    sql: Sql<'_>,
    prefix: &str,
    opts: &ListOptions,
    revision: Revision,
) -> Result<(Vec<KeyValue>, u64)> {
    let range = KeyRange::new("l.key", prefix, opts.start_after.as_deref());
    // Rows at or below `revision` with no newer row of their key at or below it,
    // tombstones dropped. Written as NOT EXISTS rather than MAX(id) GROUP BY so
    // that SQLite walks the (key, id) index in key order and stops at LIMIT
    // instead of materialising and sorting the whole range.
    let matching = format!(
        "FROM log l WHERE {} AND l.id <= ? AND l.deleted = 0 AND NOT EXISTS \
         (SELECT 1 FROM log newer WHERE newer.key = l.key AND newer.id > l.id AND newer.id <= ?)",
        range.condition
    );
    let rev = Value::Integer(i64::try_from(revision.0).unwrap_or(i64::MAX));
    let mut params = range.params;
    params.push(rev.clone());
    params.push(rev);
    let query = format!(
        "SELECT l.key, l.id, l.create_revision, l.value {matching} ORDER BY l.key LIMIT {}",
        sql_limit(opts.limit)
    );
    let page_params = params.clone();
    let items = sql.query_rows(
        Statement::ListAt,
        &query,
        params_from_iter(page_params),
        |r| key_value(r.get(0)?, r, 1),
    )?;
    if !page_is_full(opts, items.len()) {
        return Ok((items, 0));
    }
    let query = format!("SELECT COUNT(*) {matching}");
    let total: i64 = sql
        .query_row(Statement::CountAt, &query, params_from_iter(params), |r| {
            r.get(0)
        })?
        .unwrap_or(0);
    let rest = remaining(total, items.len());
    Ok((items, rest))
}

/// One log row as read for watch replay and by the follower.
pub(crate) struct LogRow {
    pub(crate) revision: Revision,
    key: String,
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
    value: Vec<u8>,
    prev_value: Option<Vec<u8>>,
}

/// The columns of a [`LogRow`], with the previous value of an update joined in,
/// for rows after a revision; callers append further conditions and the order.
const LOG_ROWS: &str =
    "SELECT l.id, l.key, l.create_revision, l.prev_revision, l.deleted, l.value, p.value \
     FROM log l LEFT JOIN log p ON p.id = l.prev_revision AND l.deleted = 0 WHERE l.id > ?";

impl LogRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<LogRow> {
        Ok(LogRow {
            revision: r.get(0)?,
            key: r.get(1)?,
            create_revision: r.get(2)?,
            prev_revision: r.get(3)?,
            deleted: r.get(4)?,
            value: r.get(5)?,
            prev_value: r.get(6)?,
        })
    }

    pub(crate) fn into_event(self) -> Result<Event> {
        let value = Bytes::from(self.value);
        if self.deleted {
            // A tombstone carries the deleted value; its previous revision is
            // the deleted value's own mod_revision.
            let prev = KeyValue {
                key: self.key.clone(),
                value: value.clone(),
                create_revision: self.create_revision,
                mod_revision: self.prev_revision,
            };
            let kv = KeyValue {
                mod_revision: self.revision,
                ..prev.clone()
            };
            return Ok(Event {
                kind: EventKind::Delete,
                kv,
                prev: Some(prev),
            });
        }
        let prev = match (self.prev_revision, self.prev_value) {
            (Revision(0), _) => None,
            (mod_revision, Some(prev_value)) => Some(KeyValue {
                key: self.key.clone(),
                value: Bytes::from(prev_value),
                create_revision: self.create_revision,
                mod_revision,
            }),
            (_, None) => {
                return Err(Error::Corrupt {
                    revision: self.revision,
                    reason: "update names a previous revision that is not in the log",
                })
            }
        };
        let kv = KeyValue {
            key: self.key,
            value,
            create_revision: self.create_revision,
            mod_revision: self.revision,
        };
        Ok(Event {
            kind: EventKind::Put,
            kv,
            prev,
        })
    }
}

/// Up to `limit` events under `prefix` with revision greater than `after`, from
/// the log table. Errors with `Compacted` when the log no longer holds them all.
pub(crate) fn history(
    sql: Sql<'_>,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> Result<Vec<Event>> {
    snapshot(sql, |sql| {
        let compacted = sql
            .query_row(Statement::CompactedRevision, COMPACTED_REVISION, [], |r| {
                r.get(0)
            })?
            .unwrap_or_default();
        if after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        let range = KeyRange::new("l.key", prefix, None);
        let query = format!(
            "{LOG_ROWS} AND {} ORDER BY l.id LIMIT {}",
            range.condition,
            sql_limit(Some(limit))
        );
        let mut params = vec![Value::Integer(i64::try_from(after.0).unwrap_or(i64::MAX))];
        params.extend(range.params);
        let rows = sql.query_rows(
            Statement::History,
            &query,
            params_from_iter(params),
            LogRow::from_row,
        )?;
        rows.into_iter().map(LogRow::into_event).collect()
    })
}

/// Up to `limit` log rows of any key with revision greater than `after`, in
/// revision order: what the follower and the writer publish on behalf of
/// other connections. The caller holds a transaction for a consistent view.
pub(crate) fn log_after(
    sql: Sql<'_>,
    after: Revision,
    limit: usize,
) -> rusqlite::Result<Vec<LogRow>> {
    let query = format!("{LOG_ROWS} ORDER BY l.id LIMIT {}", sql_limit(Some(limit)));
    sql.query_rows(Statement::Follow, &query, [after], LogRow::from_row)
}
