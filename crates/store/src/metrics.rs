//! Per-statement timing for the store's SQL, readable by the server's metrics
//! exporter. Everything is a relaxed atomic: a reader may see a count from one
//! instant and a sum from the next, which is fine for monitoring.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One label per distinct statement the SQLite backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statement {
    /// `BEGIN IMMEDIATE` of a group-commit batch.
    Begin,
    /// `COMMIT` of a group-commit batch; its time includes the fsync.
    Commit,
    /// `ROLLBACK` after a failed batch.
    Rollback,
    /// Start of a read snapshot.
    BeginRead,
    /// End of a read snapshot.
    EndRead,
    /// The latest value of one key (`get`, and the CAS check of a write).
    GetCurrent,
    /// Append a row to the log.
    InsertLog,
    /// Add a key to the latest-state index.
    InsertCurrent,
    /// Point a key of the latest-state index at a new log row.
    UpdateCurrent,
    /// Remove a key from the latest-state index.
    DeleteCurrent,
    /// A page of the latest state.
    List,
    /// Count of the latest state in a key range.
    Count,
    /// A page of the state at an older revision.
    ListAt,
    /// Count of the state at an older revision.
    CountAt,
    /// A page of log rows for watch replay.
    History,
    /// The current revision.
    CurrentRevision,
    /// The compacted revision.
    CompactedRevision,
    /// Deletion of superseded log rows.
    Compact,
    /// Deletion of compacted tombstones.
    CompactTombstones,
    /// Persisting the compacted revision.
    SetCompacted,
    /// Schema setup and pragmas at open.
    Schema,
    /// `PRAGMA data_version`: has another connection committed?
    DataVersion,
    /// A page of log rows committed by another connection, read to publish them.
    Follow,
}

impl Statement {
    /// Every statement, in declaration order.
    pub const ALL: [Statement; 23] = [
        Statement::Begin,
        Statement::Commit,
        Statement::Rollback,
        Statement::BeginRead,
        Statement::EndRead,
        Statement::GetCurrent,
        Statement::InsertLog,
        Statement::InsertCurrent,
        Statement::UpdateCurrent,
        Statement::DeleteCurrent,
        Statement::List,
        Statement::Count,
        Statement::ListAt,
        Statement::CountAt,
        Statement::History,
        Statement::CurrentRevision,
        Statement::CompactedRevision,
        Statement::Compact,
        Statement::CompactTombstones,
        Statement::SetCompacted,
        Statement::Schema,
        Statement::DataVersion,
        Statement::Follow,
    ];

    /// A stable snake_case name, suitable as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Statement::Begin => "begin",
            Statement::Commit => "commit",
            Statement::Rollback => "rollback",
            Statement::BeginRead => "begin_read",
            Statement::EndRead => "end_read",
            Statement::GetCurrent => "get_current",
            Statement::InsertLog => "insert_log",
            Statement::InsertCurrent => "insert_current",
            Statement::UpdateCurrent => "update_current",
            Statement::DeleteCurrent => "delete_current",
            Statement::List => "list",
            Statement::Count => "count",
            Statement::ListAt => "list_at",
            Statement::CountAt => "count_at",
            Statement::History => "history",
            Statement::CurrentRevision => "current_revision",
            Statement::CompactedRevision => "compacted_revision",
            Statement::Compact => "compact",
            Statement::CompactTombstones => "compact_tombstones",
            Statement::SetCompacted => "set_compacted",
            Statement::Schema => "schema",
            Statement::DataVersion => "data_version",
            Statement::Follow => "follow",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds of the duration buckets, in microseconds. A last, implicit bucket
/// holds everything slower.
pub const BUCKET_BOUNDS_MICROS: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

const BUCKETS: usize = BUCKET_BOUNDS_MICROS.len() + 1;

#[derive(Default)]
struct Counters {
    count: AtomicU64,
    errors: AtomicU64,
    total_nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// Duration and error counters per [`Statement`], shared by every connection of a
/// store. Read it with [`StoreMetrics::snapshot`].
#[derive(Default)]
pub struct StoreMetrics {
    statements: [Counters; Statement::ALL.len()],
    batches: AtomicU64,
    batched_writes: AtomicU64,
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMetrics")
            .field("batches", &self.batches.load(Ordering::Relaxed))
            .field(
                "batched_writes",
                &self.batched_writes.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

/// A point-in-time copy of one statement's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementStats {
    pub statement: Statement,
    /// Executions, failed ones included.
    pub count: u64,
    /// Executions that returned an error.
    pub errors: u64,
    /// Sum of all execution times.
    pub total: Duration,
    /// Executions per bucket of [`BUCKET_BOUNDS_MICROS`] (not cumulative); the last
    /// entry counts executions slower than the last bound.
    pub buckets: [u64; BUCKETS],
}

impl StoreMetrics {
    pub(crate) fn record(&self, statement: Statement, elapsed: Duration, ok: bool) {
        let c = &self.statements[statement.index()];
        c.count.fetch_add(1, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        c.total_nanos.fetch_add(nanos, Ordering::Relaxed);
        let micros = nanos / 1_000;
        let bucket = BUCKET_BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKETS - 1);
        c.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_batch(&self, writes: usize) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.batched_writes
            .fetch_add(u64::try_from(writes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counters of every statement that ran at least once.
    pub fn snapshot(&self) -> Vec<StatementStats> {
        Statement::ALL
            .iter()
            .filter_map(|&statement| {
                let c = &self.statements[statement.index()];
                let count = c.count.load(Ordering::Relaxed);
                (count > 0).then(|| StatementStats {
                    statement,
                    count,
                    errors: c.errors.load(Ordering::Relaxed),
                    total: Duration::from_nanos(c.total_nanos.load(Ordering::Relaxed)),
                    buckets: std::array::from_fn(|i| c.buckets[i].load(Ordering::Relaxed)),
                })
            })
            .collect()
    }

    /// Group-commit batches committed so far and the writes they carried; their
    /// ratio is the mean batch size.
    pub fn batches(&self) -> (u64, u64) {
        (
            self.batches.load(Ordering::Relaxed),
            self.batched_writes.load(Ordering::Relaxed),
        )
    }
}
