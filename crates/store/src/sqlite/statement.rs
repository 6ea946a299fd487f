//! The one door every SQL statement goes through: it prepares (cached), runs,
//! times, records into [`StoreMetrics`] and emits a trace event.

use std::time::Instant;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, OptionalExtension, Params, Row, ToSql};

use crate::metrics::{Statement, StoreMetrics};
use crate::Revision;

/// A connection paired with the metrics its statements are recorded into.
#[derive(Clone, Copy)]
pub(crate) struct Sql<'c> {
    conn: &'c Connection,
    metrics: &'c StoreMetrics,
}

impl<'c> Sql<'c> {
    pub(crate) fn new(conn: &'c Connection, metrics: &'c StoreMetrics) -> Self {
        Sql { conn, metrics }
    }

    /// Whether a transaction is open on the connection.
    pub(crate) fn in_transaction(self) -> bool {
        !self.conn.is_autocommit()
    }

    /// Prepare `sql` from the connection's statement cache and hand it to `f`,
    /// timing the whole thing as `statement`.
    pub(crate) fn run<T>(
        self,
        statement: Statement,
        sql: &str,
        f: impl FnOnce(&mut CachedStatement<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.timed(statement, || {
            self.conn.prepare_cached(sql).and_then(|mut s| f(&mut s))
        })
    }

    fn timed<T>(
        self,
        statement: Statement,
        f: impl FnOnce() -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let start = Instant::now();
        let result = f();
        let elapsed = start.elapsed();
        self.metrics.record(statement, elapsed, result.is_ok());
        match &result {
            Ok(_) => tracing::trace!(
                statement = statement.name(),
                elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                "sql"
            ),
            Err(error) => tracing::debug!(
                statement = statement.name(),
                elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                %error,
                "sql failed"
            ),
        }
        result
    }

    pub(crate) fn execute(
        self,
        statement: Statement,
        sql: &str,
        params: impl Params,
    ) -> rusqlite::Result<usize> {
        self.run(statement, sql, |s| s.execute(params))
    }

    /// Several `;`-separated statements without parameters (schema setup).
    pub(crate) fn execute_batch(self, statement: Statement, sql: &str) -> rusqlite::Result<()> {
        self.timed(statement, || self.conn.execute_batch(sql))
    }

    /// The first row mapped by `map`, or `None` when there is none.
    pub(crate) fn query_row<T>(
        self,
        statement: Statement,
        sql: &str,
        params: impl Params,
        map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Option<T>> {
        self.run(statement, sql, |s| s.query_row(params, map).optional())
    }

    pub(crate) fn query_rows<T>(
        self,
        statement: Statement,
        sql: &str,
        params: impl Params,
        map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<Vec<T>> {
        self.run(statement, sql, |s| s.query_map(params, map)?.collect())
    }
}

// Revisions are stored as SQLite integers (i64). They come from SQLite's own
// row ids, so they never exceed i64::MAX; a caller-supplied one that does is
// rejected by the conversion instead of wrapping.
impl ToSql for Revision {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let v = i64::try_from(self.0)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(ToSqlOutput::from(v))
    }
}

impl FromSql for Revision {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let v = i64::column_result(value)?;
        u64::try_from(v)
            .map(Revision)
            .map_err(|_| FromSqlError::OutOfRange(v))
    }
}
