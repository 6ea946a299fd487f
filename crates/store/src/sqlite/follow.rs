//! Several stores on one file: every commit reaches every store's watchers.
//!
//! Two `skiff server` processes may share one database file (one of them runs
//! the controllers, the other takes over when it fails). Each process has its
//! own writer thread and its own [`Hub`], and its hub must see every revision
//! committed to the file, its own and the other process's, once each and in
//! revision order.
//!
//! The [`Feed`] is the only way into the hub. Its lock guards the last
//! published revision; whoever holds it publishes exactly the revisions after
//! that one. Two parties publish:
//!
//! * the writer thread, right after its COMMIT, publishes its own batch
//!   ([`Feed::publish_own`]). When its `BEGIN IMMEDIATE` finds that another
//!   connection committed since its last transaction (`PRAGMA data_version`),
//!   it first reloads its revision counters and publishes those foreign rows
//!   from the log ([`Feed::catch_up`]) while it holds the write lock, so by its
//!   COMMIT every revision before its own is published;
//! * the [`Follower`] thread polls `PRAGMA data_version` on a connection of its
//!   own every few milliseconds and, when something was committed that this
//!   store has not published, reads the log after the last published revision
//!   in one snapshot and publishes it. Idle, that is one pragma per poll.
//!
//! Commits are serialised by SQLite's write lock and every writer takes its
//! revisions from the file under that lock, so revision order is commit order:
//! any snapshot holds every revision up to some point, and reading "every row
//! after the last published one" never skips a revision that a later read
//! would find. Rows that another store compacted away before this one could
//! publish them are the exception; the hub then starts over after the
//! compaction point ([`Hub::restart`]) and its watchers re-watch.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::read;
use super::schema;
use super::statement::Sql;
use super::watch::Hub;
use super::Revisions;
use crate::metrics::StoreMetrics;
use crate::{Error, Event, Result, Revision};

/// Log rows read per round trip when catching up.
const PAGE: usize = 512;

/// The way into the hub, and the store's view of the file's revisions.
pub(crate) struct Feed {
    hub: Arc<Hub>,
    revisions: Arc<Revisions>,
    /// The last revision handed to the hub (or skipped by a restart).
    published: Mutex<Revision>,
}

impl Feed {
    /// A feed whose hub has everything up to `published`.
    pub(crate) fn new(hub: Arc<Hub>, revisions: Arc<Revisions>, published: Revision) -> Self {
        Feed {
            hub,
            revisions,
            published: Mutex::new(published),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Revision> {
        // A plain revision cannot be left half-updated by a panicking holder.
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The last revision handed to the hub.
    pub(crate) fn published(&self) -> Revision {
        *self.lock()
    }

    /// Publish the events of a batch the writer has just committed; `last` and
    /// `compacted` are the file's revisions after that commit. `sql` is the
    /// writer's connection, outside any transaction.
    ///
    /// The follower may already have read some of these events from the log
    /// (between the COMMIT and this call); they are not published twice.
    pub(crate) fn publish_own(
        &self,
        sql: Sql<'_>,
        events: Vec<Arc<Event>>,
        last: Revision,
        compacted: Revision,
    ) {
        let mut published = self.lock();
        if let Some(first) = events.first().map(|e| e.revision()) {
            if published.0.saturating_add(1) < first.0 {
                // Not expected: the writer published every foreign row when it
                // began the transaction. Read them now rather than leave a gap.
                tracing::warn!(published = %*published, %first, "writer found unpublished revisions before its batch");
                let caught_up =
                    read::snapshot(sql, |sql| Ok(self.catch_up_locked(&mut published, sql)?));
                if let Err(error) = caught_up {
                    tracing::error!(%error, "reading unpublished revisions; restarting watches");
                    self.hub.restart(Revision(first.0 - 1));
                    *published = Revision(first.0 - 1);
                }
            }
        }
        let fresh: Vec<Arc<Event>> = events
            .into_iter()
            .filter(|e| e.revision() > *published)
            .collect();
        *published = (*published).max(last);
        self.revisions.current.fetch_max(last.0, Ordering::AcqRel);
        self.revisions
            .compacted
            .fetch_max(compacted.0, Ordering::AcqRel);
        self.hub.publish(fresh);
    }

    /// Publish every row committed after the last published revision, read
    /// through `sql`, which must be inside a transaction so that it sees one
    /// state of the file. Returns the file's current and compacted revisions
    /// as that transaction sees them.
    pub(crate) fn catch_up(&self, sql: Sql<'_>) -> rusqlite::Result<(Revision, Revision)> {
        let mut published = self.lock();
        self.catch_up_locked(&mut published, sql)
    }

    fn catch_up_locked(
        &self,
        published: &mut Revision,
        sql: Sql<'_>,
    ) -> rusqlite::Result<(Revision, Revision)> {
        let (current, compacted) = schema::revisions(sql)?;
        if compacted > *published {
            // Another store compacted history this one had not published yet:
            // some of those events are gone, so no live watcher can be sure to
            // see them all.
            tracing::info!(published = %*published, %compacted, "history compacted by another store before it was published here; restarting watches");
            self.hub.restart(compacted);
            *published = compacted;
        }
        loop {
            let rows = read::log_after(sql, *published, PAGE)?;
            let more = rows.len() == PAGE;
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                let revision = row.revision;
                match row.into_event() {
                    Ok(event) => events.push(Arc::new(event)),
                    Err(error) => {
                        // The row cannot become an event; watchers re-watch and
                        // meet the same error in their log replay.
                        tracing::error!(%error, "cannot publish a committed row; restarting watches");
                        self.hub.publish(std::mem::take(&mut events));
                        self.hub.restart(revision);
                    }
                }
                *published = revision;
            }
            self.hub.publish(events);
            if !more {
                break;
            }
        }
        self.revisions
            .current
            .fetch_max(current.0, Ordering::AcqRel);
        self.revisions
            .compacted
            .fetch_max(compacted.0, Ordering::AcqRel);
        Ok((current, compacted))
    }
}

/// The thread that publishes what other connections commit.
pub(crate) struct Follower {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Start following the file through `conn` (a read connection of its own),
    /// looking every `interval`.
    pub(crate) fn spawn(
        feed: Arc<Feed>,
        conn: Connection,
        metrics: Arc<StoreMetrics>,
        interval: Duration,
    ) -> Result<Follower> {
        let (stop, stopped) = mpsc::channel();
        let interval = interval.max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("skiff-store-follower".to_owned())
            .spawn(move || follow(&feed, &conn, &metrics, interval, &stopped))
            .map_err(Error::Spawn)?;
        Ok(Follower {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        // A closed channel wakes the thread at once.
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("store follower thread panicked");
            }
        }
    }
}

fn follow(
    feed: &Feed,
    conn: &Connection,
    metrics: &StoreMetrics,
    interval: Duration,
    stopped: &mpsc::Receiver<()>,
) {
    let sql = Sql::new(conn, metrics);
    let mut seen: Option<i64> = None;
    let mut failing = false;
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        match poll(feed, sql, seen) {
            Ok(version) => {
                seen = Some(version);
                if failing {
                    tracing::info!("store follower reads the file again");
                    failing = false;
                }
            }
            Err(error) => {
                // Try again next time; say so once per failing spell.
                if !failing {
                    tracing::warn!(%error, "store follower cannot read the file");
                    failing = true;
                }
            }
        }
    }
}

/// One look at the file. Returns the `data_version` that is now accounted for.
fn poll(feed: &Feed, sql: Sql<'_>, seen: Option<i64>) -> Result<i64> {
    let version = schema::data_version(sql)?;
    if seen == Some(version) {
        return Ok(version);
    }
    // Usually this store's own writer committed, and published already.
    let (current, compacted) = schema::revisions(sql)?;
    let known_compacted = Revision(feed.revisions.compacted.load(Ordering::Acquire));
    if current <= feed.published() && compacted <= known_compacted {
        return Ok(version);
    }
    read::snapshot(sql, |sql| Ok(feed.catch_up(sql)?))?;
    Ok(version)
}
