//! The writer thread: sole owner of the write connection, with group commit.
//!
//! Requests arrive on a bounded channel. The thread takes every request that is
//! already waiting (up to `max_batch`) and applies them one after another in a
//! single `BEGIN IMMEDIATE … COMMIT`. Each request gets its own revision and its
//! own CAS check; because the checks read through the same open transaction,
//! they see the effect of earlier requests in the batch. Only after COMMIT
//! returns are the events published to watchers and the callers answered, so
//! an acknowledged write is on disk. One fsync per batch instead of per write is
//! what makes many concurrent writers fast.
//!
//! Other connections may write to the same file (a second skiff process). The
//! write lock `BEGIN IMMEDIATE` takes makes this thread the only writer until
//! COMMIT; right after it, `PRAGMA data_version` tells whether anyone else
//! committed since this thread's last transaction. If so, the cached last and
//! compacted revisions are read again from the file, under the lock, and the
//! foreign rows are published to watchers before this batch's own events (see
//! `follow.rs`). So revisions stay unique and increasing across processes, and
//! CAS checks, which always read the file inside the transaction, stay exact.
//!
//! If a batch fails at the SQL level (I/O error, full disk, a failed COMMIT),
//! it is rolled back and each request is retried in a transaction of its own,
//! so one bad request cannot fail its neighbours and every caller gets the
//! error that belongs to it.

use std::sync::Arc;

use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::follow::Feed;
use super::read::GET_CURRENT;
use super::schema;
use super::statement::Sql;
use crate::metrics::{Statement, StoreMetrics};
use crate::{Error, Event, EventKind, KeyValue, Result, Revision};

const INSERT_LOG: &str =
    "INSERT INTO log (id, key, create_revision, prev_revision, deleted, value) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const INSERT_CURRENT: &str = "INSERT INTO current (key, revision) VALUES (?1, ?2)";
const UPDATE_CURRENT: &str = "UPDATE current SET revision = ?2 WHERE key = ?1";
const DELETE_CURRENT: &str = "DELETE FROM current WHERE key = ?1";
const EXISTS_CURRENT: &str = "SELECT revision FROM current WHERE key = ?1";
/// Compaction from ?1 (the previous point) to ?2 removes every row a newer row
/// at or below ?2 supersedes. Every update and delete row names the row it
/// supersedes in `prev_revision` (a create after a delete names none, but the
/// delete's tombstone goes by the next statement), and rows superseded by
/// rows at or below ?1 went in earlier compactions, so looking at the rows in
/// (?1, ?2] finds them all without scanning the whole log.
const COMPACT_SUPERSEDED: &str = "DELETE FROM log WHERE id IN \
     (SELECT prev_revision FROM log WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)";
/// Tombstones in (?1, ?2]: at any revision from ?2 on, their key is simply absent.
/// Must run after `COMPACT_SUPERSEDED`, which reads their `prev_revision`.
const COMPACT_TOMBSTONES: &str = "DELETE FROM log WHERE id > ?1 AND id <= ?2 AND deleted = 1";
const SET_COMPACTED: &str = "INSERT INTO meta (name, value) VALUES ('compacted', ?1) \
     ON CONFLICT (name) DO UPDATE SET value = excluded.value";

pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

#[derive(Debug)]
pub(crate) enum WriteOutcome {
    Put(Revision),
    Deleted(Revision, KeyValue),
    Compacted,
}

pub(crate) struct WriteRequest {
    pub(crate) op: WriteOp,
    pub(crate) reply: oneshot::Sender<Result<WriteOutcome>>,
}

/// What a successfully applied (not yet committed) batch produced.
struct Applied {
    outcomes: Vec<Result<WriteOutcome>>,
    events: Vec<Arc<Event>>,
    last: Revision,
    compacted: Revision,
}

pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) metrics: Arc<StoreMetrics>,
    /// Publishes committed events to watchers and revisions to the store.
    pub(crate) feed: Arc<Feed>,
    pub(crate) max_batch: usize,
    /// The last committed revision.
    pub(crate) last: Revision,
    /// The committed compaction point.
    pub(crate) compacted: Revision,
    /// `PRAGMA data_version` when `last` and `compacted` were last known to
    /// match the file.
    pub(crate) data_version: i64,
}

impl Writer {
    /// Serve requests until every sender is gone (the store was dropped).
    pub(crate) fn run(mut self, mut requests: mpsc::Receiver<WriteRequest>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = requests.blocking_recv() {
            batch.push(first);
            while batch.len() < self.max_batch {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.commit_batch(&mut batch);
        }
        tracing::debug!(revision = %self.last, "store writer stopped");
    }

    fn commit_batch(&mut self, batch: &mut Vec<WriteRequest>) {
        let ops: Vec<&WriteOp> = batch.iter().map(|r| &r.op).collect();
        match self.transaction(&ops) {
            Ok(applied) => {
                self.metrics.record_batch(batch.len());
                self.finish(applied, std::mem::take(batch));
            }
            Err(error) => {
                tracing::warn!(%error, writes = batch.len(), "group commit failed; retrying each write alone");
                self.reload_revisions();
                for request in std::mem::take(batch) {
                    match self.transaction(&[&request.op]) {
                        Ok(applied) => {
                            self.metrics.record_batch(1);
                            self.finish(applied, vec![request]);
                        }
                        Err(error) => {
                            self.reload_revisions();
                            // The caller may have given up; nothing to do then.
                            let _ = request.reply.send(Err(Error::Backend(error)));
                        }
                    }
                }
            }
        }
    }

    /// Make a committed batch visible: revisions, watchers, then callers.
    fn finish(&mut self, applied: Applied, requests: Vec<WriteRequest>) {
        self.last = applied.last;
        self.compacted = applied.compacted;
        self.feed.publish_own(
            Sql::new(&self.conn, &self.metrics),
            applied.events,
            applied.last,
            applied.compacted,
        );
        for (request, outcome) in requests.into_iter().zip(applied.outcomes) {
            // The caller may have given up waiting; the write stands regardless.
            let _ = request.reply.send(outcome);
        }
    }

    /// After a failed transaction the in-memory revisions may be ahead of the
    /// file; read them back.
    fn reload_revisions(&mut self) {
        match schema::revisions(Sql::new(&self.conn, &self.metrics)) {
            Ok((last, compacted)) => {
                self.last = last;
                self.compacted = compacted;
            }
            Err(error) => tracing::error!(%error, "reading revisions back after a failed write"),
        }
    }

    /// Apply `ops` in one transaction and commit it.
    fn transaction(&mut self, ops: &[&WriteOp]) -> rusqlite::Result<Applied> {
        Sql::new(&self.conn, &self.metrics).execute(Statement::Begin, "BEGIN IMMEDIATE", [])?;
        let followed = self.follow_others();
        let sql = Sql::new(&self.conn, &self.metrics);
        let result = followed
            .and_then(|()| self.apply(sql, ops))
            .and_then(|applied| {
                sql.execute(Statement::Commit, "COMMIT", [])?;
                Ok(applied)
            });
        if result.is_err() && sql.in_transaction() {
            if let Err(error) = sql.execute(Statement::Rollback, "ROLLBACK", []) {
                tracing::error!(%error, "rolling back a failed write batch");
            }
        }
        result
    }

    /// Inside the transaction, before anything is written: if another
    /// connection committed since this thread last looked, take the revisions
    /// from the file and publish that connection's rows.
    fn follow_others(&mut self) -> rusqlite::Result<()> {
        let sql = Sql::new(&self.conn, &self.metrics);
        let version = schema::data_version(sql)?;
        if version == self.data_version {
            return Ok(());
        }
        let (last, compacted) = self.feed.catch_up(sql)?;
        tracing::trace!(%last, %compacted, "another connection wrote to the store");
        self.last = last;
        self.compacted = compacted;
        self.data_version = version;
        Ok(())
    }

    fn apply(&self, sql: Sql<'_>, ops: &[&WriteOp]) -> rusqlite::Result<Applied> {
        let mut applied = Applied {
            outcomes: Vec::with_capacity(ops.len()),
            events: Vec::with_capacity(ops.len()),
            last: self.last,
            compacted: self.compacted,
        };
        for op in ops {
            let outcome = match op {
                WriteOp::Create { key, value } => create(sql, &mut applied, key, value)?,
                WriteOp::Update {
                    key,
                    value,
                    expected,
                } => update(sql, &mut applied, key, value, *expected)?,
                WriteOp::Delete { key, expected } => delete(sql, &mut applied, key, *expected)?,
                WriteOp::Compact { revision } => compact(sql, &mut applied, *revision)?,
            };
            applied.outcomes.push(outcome);
        }
        Ok(applied)
    }
}

fn next_revision(applied: &Applied) -> Revision {
    Revision(applied.last.0 + 1)
}

fn current(sql: Sql<'_>, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    sql.query_row(Statement::GetCurrent, GET_CURRENT, [key], |r| {
        Ok(KeyValue {
            key: key.to_owned(),
            mod_revision: r.get(0)?,
            create_revision: r.get(1)?,
            value: Bytes::from(r.get::<_, Vec<u8>>(2)?),
        })
    })
}

fn insert_log(
    sql: Sql<'_>,
    revision: Revision,
    key: &str,
    create_revision: Revision,
    prev_revision: Revision,
    deleted: bool,
    value: &[u8],
) -> rusqlite::Result<()> {
    sql.execute(
        Statement::InsertLog,
        INSERT_LOG,
        rusqlite::params![
            revision,
            key,
            create_revision,
            prev_revision,
            deleted,
            value
        ],
    )?;
    Ok(())
}

fn create(
    sql: Sql<'_>,
    applied: &mut Applied,
    key: &str,
    value: &Bytes,
) -> rusqlite::Result<Result<WriteOutcome>> {
    let existing: Option<Revision> =
        sql.query_row(Statement::GetCurrent, EXISTS_CURRENT, [key], |r| r.get(0))?;
    if existing.is_some() {
        return Ok(Err(Error::AlreadyExists {
            key: key.to_owned(),
        }));
    }
    let revision = next_revision(applied);
    insert_log(sql, revision, key, revision, Revision(0), false, value)?;
    sql.execute(
        Statement::InsertCurrent,
        INSERT_CURRENT,
        rusqlite::params![key, revision],
    )?;
    applied.last = revision;
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision: revision,
        mod_revision: revision,
    };
    applied.events.push(Arc::new(Event {
        kind: EventKind::Put,
        kv,
        prev: None,
    }));
    Ok(Ok(WriteOutcome::Put(revision)))
}

fn update(
    sql: Sql<'_>,
    applied: &mut Applied,
    key: &str,
    value: &Bytes,
    expected: Revision,
) -> rusqlite::Result<Result<WriteOutcome>> {
    let Some(prev) = current(sql, key)? else {
        return Ok(Err(Error::NotFound {
            key: key.to_owned(),
        }));
    };
    if prev.mod_revision != expected {
        return Ok(Err(Error::Conflict {
            key: key.to_owned(),
            expected,
            current: prev.mod_revision,
        }));
    }
    let revision = next_revision(applied);
    insert_log(
        sql,
        revision,
        key,
        prev.create_revision,
        prev.mod_revision,
        false,
        value,
    )?;
    sql.execute(
        Statement::UpdateCurrent,
        UPDATE_CURRENT,
        rusqlite::params![key, revision],
    )?;
    applied.last = revision;
    let kv = KeyValue {
        key: key.to_owned(),
        value: value.clone(),
        create_revision: prev.create_revision,
        mod_revision: revision,
    };
    applied.events.push(Arc::new(Event {
        kind: EventKind::Put,
        kv,
        prev: Some(prev),
    }));
    Ok(Ok(WriteOutcome::Put(revision)))
}

fn delete(
    sql: Sql<'_>,
    applied: &mut Applied,
    key: &str,
    expected: Option<Revision>,
) -> rusqlite::Result<Result<WriteOutcome>> {
    let Some(prev) = current(sql, key)? else {
        return Ok(Err(Error::NotFound {
            key: key.to_owned(),
        }));
    };
    if let Some(expected) = expected {
        if prev.mod_revision != expected {
            return Ok(Err(Error::Conflict {
                key: key.to_owned(),
                expected,
                current: prev.mod_revision,
            }));
        }
    }
    let revision = next_revision(applied);
    insert_log(
        sql,
        revision,
        key,
        prev.create_revision,
        prev.mod_revision,
        true,
        &prev.value,
    )?;
    sql.execute(Statement::DeleteCurrent, DELETE_CURRENT, [key])?;
    applied.last = revision;
    let kv = KeyValue {
        mod_revision: revision,
        ..prev.clone()
    };
    applied.events.push(Arc::new(Event {
        kind: EventKind::Delete,
        kv,
        prev: Some(prev.clone()),
    }));
    Ok(Ok(WriteOutcome::Deleted(revision, prev)))
}

fn compact(
    sql: Sql<'_>,
    applied: &mut Applied,
    revision: Revision,
) -> rusqlite::Result<Result<WriteOutcome>> {
    if revision > applied.last {
        return Ok(Err(Error::FutureRevision {
            requested: revision,
            current: applied.last,
        }));
    }
    if revision <= applied.compacted {
        return Ok(Ok(WriteOutcome::Compacted));
    }
    let params = rusqlite::params![applied.compacted, revision];
    let superseded = sql.execute(Statement::Compact, COMPACT_SUPERSEDED, params)?;
    let tombstones = sql.execute(Statement::CompactTombstones, COMPACT_TOMBSTONES, params)?;
    sql.execute(Statement::SetCompacted, SET_COMPACTED, [revision])?;
    applied.compacted = revision;
    tracing::debug!(%revision, superseded, tombstones, "store compaction applied");
    Ok(Ok(WriteOutcome::Compacted))
}
