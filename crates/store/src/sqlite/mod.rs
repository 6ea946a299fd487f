//! The embedded SQLite backend.

mod follow;
mod key_range;
mod read;
mod schema;
mod statement;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use self::follow::{Feed, Follower};
use self::read::ReadPool;
use self::statement::Sql;
use self::watch::Hub;
use self::writer::{WriteOp, WriteOutcome, WriteRequest, Writer};
use crate::metrics::StoreMetrics;
use crate::{Error, KeyValue, ListOptions, ListResult, Result, Revision, Store, WatchStream};

/// Tuning for [`SqliteStore`]. `Default` suits a single server process.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Write requests that may wait for the writer thread before callers of
    /// write methods wait for room (backpressure).
    pub write_queue: usize,
    /// Most writes committed in one group-commit transaction.
    pub max_batch: usize,
    /// Read connections, i.e. reads running at the same time.
    pub read_connections: usize,
    /// Recent events kept in memory to serve watch replay without SQL.
    pub history_events: usize,
    /// Live events a watcher may fall behind before its stream is ended.
    pub watch_lag: usize,
    /// How long a statement waits on a lock held by another connection.
    pub busy_timeout: Duration,
    /// How often the store looks for writes made to its file by another
    /// process (or another `SqliteStore`), to pass them to its watchers. When
    /// nothing changed a look is one `PRAGMA data_version`.
    pub follow_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            write_queue: 4096,
            max_batch: 1024,
            read_connections: 4,
            history_events: 4096,
            watch_lag: 8192,
            busy_timeout: Duration::from_secs(5),
            follow_interval: Duration::from_millis(10),
        }
    }
}

impl SqliteOptions {
    #[must_use]
    pub fn write_queue(mut self, n: usize) -> Self {
        self.write_queue = n;
        self
    }

    #[must_use]
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n;
        self
    }

    #[must_use]
    pub fn read_connections(mut self, n: usize) -> Self {
        self.read_connections = n;
        self
    }

    #[must_use]
    pub fn history_events(mut self, n: usize) -> Self {
        self.history_events = n;
        self
    }

    #[must_use]
    pub fn watch_lag(mut self, n: usize) -> Self {
        self.watch_lag = n;
        self
    }

    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    #[must_use]
    pub fn follow_interval(mut self, interval: Duration) -> Self {
        self.follow_interval = interval;
        self
    }
}

/// The committed revisions as this store knows them: its writer's commits and,
/// shortly after they happen, other connections' (see `follow.rs`). They only
/// grow.
#[derive(Default)]
pub(crate) struct Revisions {
    current: AtomicU64,
    compacted: AtomicU64,
}

/// A [`Store`] in one SQLite file: a kine-style append-only log plus a
/// latest-state index, one writer thread with group commit, and a small pool of
/// read connections used through `spawn_blocking`.
///
/// Every acknowledged write has been committed with `synchronous=FULL`, so it
/// survives `kill -9` and power loss. Dropping the store ends the writer thread
/// after it finished the batch in hand, and ends every watch stream.
///
/// Several stores, in one process or several, may open the same file: they
/// share one sequence of revisions, CAS checks see each other's writes, and
/// each store's watchers receive every store's events in revision order
/// (another store's within about `follow_interval`).
pub struct SqliteStore {
    path: PathBuf,
    writes: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
    follower: Option<Follower>,
    reads: Arc<ReadPool>,
    hub: Arc<Hub>,
    revisions: Arc<Revisions>,
    metrics: Arc<StoreMetrics>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (or create) the store in the SQLite file at `path`.
    ///
    /// This does blocking file I/O; call it before serving, or from
    /// `spawn_blocking`. Errors: `Backend` when the file cannot be opened or set
    /// up, `SchemaVersion` for a file from a newer skiff, `Spawn` when the
    /// writer thread cannot start.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
        let metrics = Arc::new(StoreMetrics::default());
        let conn = schema::open_writer(path, opts.busy_timeout, &metrics)?;
        // The version first: a commit by another process between the two reads
        // then only makes the writer read the revisions again.
        let data_version = schema::data_version(Sql::new(&conn, &metrics))?;
        let (last, compacted) = schema::revisions(Sql::new(&conn, &metrics))?;
        let reads = Arc::new(ReadPool::open(
            path.to_owned(),
            opts.read_connections,
            opts.busy_timeout,
            Arc::clone(&metrics),
        )?);
        let hub = Arc::new(Hub::new(last, opts.history_events, opts.watch_lag));
        let revisions = Arc::new(Revisions {
            current: AtomicU64::new(last.0),
            compacted: AtomicU64::new(compacted.0),
        });
        let feed = Arc::new(Feed::new(Arc::clone(&hub), Arc::clone(&revisions), last));
        let follower = Follower::spawn(
            Arc::clone(&feed),
            schema::open_reader(path, opts.busy_timeout, &metrics)?,
            Arc::clone(&metrics),
            opts.follow_interval,
        )?;
        let writer = Writer {
            conn,
            metrics: Arc::clone(&metrics),
            feed,
            max_batch: opts.max_batch.max(1),
            last,
            compacted,
            data_version,
        };
        let (writes, requests) = mpsc::channel(opts.write_queue.max(1));
        let handle = std::thread::Builder::new()
            .name("skiff-store-writer".to_owned())
            .spawn(move || writer.run(requests))
            .map_err(Error::Spawn)?;
        tracing::info!(path = %path.display(), revision = %last, compacted = %compacted, "store opened");
        Ok(SqliteStore {
            path: path.to_owned(),
            writes: Some(writes),
            writer: Some(handle),
            follower: Some(follower),
            reads,
            hub,
            revisions,
            metrics,
        })
    }

    /// Per-statement timing and group-commit counters.
    pub fn metrics(&self) -> Arc<StoreMetrics> {
        Arc::clone(&self.metrics)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome> {
        let writes = self.writes.as_ref().ok_or(Error::Closed)?;
        let (reply, answer) = oneshot::channel();
        writes
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish its batch and return.
        self.writes.take();
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!(path = %self.path.display(), "store writer thread panicked");
            }
        }
        // With both threads gone the hub's last owner is `self`, so watch
        // streams end when it drops.
        self.follower.take();
    }
}

/// A reply that does not fit the request means the writer has a bug; report it
/// as a closed store rather than panic in the caller.
fn unexpected(outcome: WriteOutcome) -> Error {
    tracing::error!(?outcome, "store writer answered with the wrong outcome");
    Error::Closed
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.reads.with(move |sql| read::get(sql, &key)).await
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult> {
        let prefix = prefix.to_owned();
        self.reads
            .with(move |sql| read::list(sql, &prefix, &opts))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.to_owned();
        self.reads.with(move |sql| read::count(sql, &prefix)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        match self
            .write(WriteOp::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            WriteOutcome::Put(revision) => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        match self
            .write(WriteOp::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?
        {
            WriteOutcome::Put(revision) => Ok(revision),
            other => Err(unexpected(other)),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)> {
        match self
            .write(WriteOp::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?
        {
            WriteOutcome::Deleted(revision, kv) => Ok((revision, kv)),
            other => Err(unexpected(other)),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let compacted = Revision(self.revisions.compacted.load(Ordering::Acquire));
        if after != Revision(0) && after < compacted {
            return Err(Error::Compacted {
                requested: after,
                compacted,
            });
        }
        Ok(watch::watch(
            &self.hub,
            Arc::clone(&self.reads),
            prefix,
            after,
        ))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(Revision(self.revisions.current.load(Ordering::Acquire)))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(Revision(self.revisions.compacted.load(Ordering::Acquire)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.write(WriteOp::Compact { revision }).await? {
            WriteOutcome::Compacted => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}
