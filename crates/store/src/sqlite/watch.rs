//! Watch: fan-out of committed events to watchers, and each watcher's stream.
//!
//! The writer thread publishes every committed event once into the [`Hub`]: a
//! ring of recent events plus a broadcast channel of `Arc<Event>`, so fan-out
//! costs one refcount per watcher and the prefix filter runs on the watcher's
//! side. Both are updated under one lock, and a watcher subscribes to the
//! broadcast and snapshots the ring under that same lock, so every event is
//! either in its snapshot or in its receiver. When the ring no longer reaches
//! back far enough, the watcher reads history from the log table instead; it
//! subscribed before that read, so an event committed meanwhile shows up in the
//! receiver (and possibly in the read too; duplicates are dropped by revision).
//!
//! Events reach the hub through [`super::follow::Feed`], which hands it every
//! committed revision once and in order, whichever connection committed it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use futures::stream;
use tokio::sync::broadcast;

use super::read::{self, ReadPool};
use crate::{Event, Result, Revision, WatchStream};

/// Events read from the log table per round trip during replay.
const HISTORY_PAGE: usize = 512;

pub(crate) struct Hub {
    inner: Mutex<HubInner>,
}

struct HubInner {
    /// The most recent events, oldest first.
    ring: VecDeque<Arc<Event>>,
    ring_capacity: usize,
    /// The ring holds every event with a revision greater than this.
    covered_after: Revision,
    /// The revision of the last published event.
    last: Revision,
    live: broadcast::Sender<Arc<Event>>,
    live_capacity: usize,
}

/// Where a new watcher finds the events it missed before subscribing.
enum Backlog {
    /// All of them, copied from the ring.
    Ring(Vec<Arc<Event>>),
    /// The ring does not reach back far enough; read the log table.
    Log,
}

impl Hub {
    /// A hub whose history starts at `current`, the revision at open.
    pub(crate) fn new(current: Revision, ring_capacity: usize, live_capacity: usize) -> Self {
        let live_capacity = live_capacity.max(1);
        let (live, _) = broadcast::channel(live_capacity);
        Hub {
            inner: Mutex::new(HubInner {
                ring: VecDeque::with_capacity(ring_capacity.min(4096)),
                ring_capacity,
                covered_after: current,
                last: current,
                live,
                live_capacity,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        // The ring stays consistent even if a holder panicked: every update is
        // a push/pop plus a plain field store.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publish committed events, in revision order, each after every event
    /// published before.
    pub(crate) fn publish(&self, events: Vec<Arc<Event>>) {
        if events.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for event in events {
            debug_assert!(event.revision() > inner.last, "hub events out of order");
            inner.last = event.revision();
            if inner.ring_capacity > 0 {
                if inner.ring.len() == inner.ring_capacity {
                    if let Some(oldest) = inner.ring.pop_front() {
                        inner.covered_after = oldest.revision();
                    }
                }
                inner.ring.push_back(Arc::clone(&event));
            } else {
                inner.covered_after = inner.last;
            }
            // An error only means that nobody is watching right now.
            let _ = inner.live.send(event);
        }
    }

    /// Start the history over after `at`, for when the events up to `at` cannot
    /// all be published (another connection compacted them away first). Every
    /// live stream ends once it has drained what it was sent, so that its
    /// client re-watches from its last revision and hears `Compacted` if it
    /// missed something; a new watch from before `at` reads the log.
    pub(crate) fn restart(&self, at: Revision) {
        let mut inner = self.lock();
        let (live, _) = broadcast::channel(inner.live_capacity);
        // Dropping the old sender closes every receiver subscribed to it.
        inner.live = live;
        inner.ring.clear();
        inner.covered_after = at;
        inner.last = at;
    }

    /// Subscribe to live events and find the backlog after `after`
    /// (`Revision(0)`: from the last published event).
    fn subscribe(
        &self,
        prefix: &str,
        after: Revision,
    ) -> (broadcast::Receiver<Arc<Event>>, Revision, Backlog) {
        let inner = self.lock();
        let receiver = inner.live.subscribe();
        if after == Revision(0) {
            return (receiver, inner.last, Backlog::Ring(Vec::new()));
        }
        if after < inner.covered_after {
            return (receiver, after, Backlog::Log);
        }
        let newer = inner.ring.partition_point(|e| e.revision() <= after);
        let backlog = inner
            .ring
            .range(newer..)
            .filter(|e| e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        (receiver, after, Backlog::Ring(backlog))
    }
}

enum Phase {
    /// Replaying from the log table; more rows may follow.
    Log,
    /// Following the broadcast.
    Live,
    /// Ended (lagged, closed or failed).
    Done,
}

struct Watcher {
    prefix: String,
    /// The last revision delivered (or the starting point).
    last: Revision,
    pending: VecDeque<Arc<Event>>,
    phase: Phase,
    live: broadcast::Receiver<Arc<Event>>,
    reads: Arc<ReadPool>,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                // Replay and live delivery may overlap; the revision decides.
                if event.revision() > self.last && event.kv.key.starts_with(&self.prefix) {
                    self.last = event.revision();
                    return Some(Ok(Event::clone(&event)));
                }
                continue;
            }
            match self.phase {
                Phase::Log => {
                    let prefix = self.prefix.clone();
                    let after = self.last;
                    let page = self
                        .reads
                        .with(move |sql| read::history(sql, &prefix, after, HISTORY_PAGE))
                        .await;
                    match page {
                        Ok(events) => {
                            if events.len() < HISTORY_PAGE {
                                self.phase = Phase::Live;
                            }
                            self.pending.extend(events.into_iter().map(Arc::new));
                        }
                        Err(e) => {
                            self.phase = Phase::Done;
                            return Some(Err(e));
                        }
                    }
                }
                Phase::Live => match self.live.recv().await {
                    Ok(event) => self.pending.push_back(event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(prefix = %self.prefix, revision = %self.last, missed, "watcher lagged; ending its stream");
                        self.phase = Phase::Done;
                        return None;
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        self.phase = Phase::Done;
                        return None;
                    }
                },
                Phase::Done => return None,
            }
        }
    }
}

/// Start a watch of `prefix` after `after`. The caller has already checked
/// `after` against the compaction point.
pub(crate) fn watch(hub: &Hub, reads: Arc<ReadPool>, prefix: &str, after: Revision) -> WatchStream {
    let (live, after, backlog) = hub.subscribe(prefix, after);
    let (pending, phase) = match backlog {
        Backlog::Ring(events) => (VecDeque::from(events), Phase::Live),
        Backlog::Log => (VecDeque::new(), Phase::Log),
    };
    let watcher = Watcher {
        prefix: prefix.to_owned(),
        last: after,
        pending,
        phase,
        live,
        reads,
    };
    Box::pin(stream::unfold(watcher, |mut w| async move {
        let item = w.next().await?;
        Some((item, w))
    }))
}
