use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

use crate::Result;

/// A store revision: one global counter bumped by every write. `Revision(0)` means
/// "no revision" (e.g. "latest" in list options, "from now" in watch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (stays fixed across updates).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as delivered by watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For `Put`: the new value (its `mod_revision` is the event's revision).
    /// For `Delete`: the last value before deletion, with `mod_revision` set to the
    /// revision of the delete.
    pub kv: KeyValue,
    /// The previous value for `Put` on an existing key; `None` for creates.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options for [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Read at this revision; `None` reads the latest state.
    pub revision: Option<Revision>,
    /// Only keys strictly greater than this (pagination cursor).
    pub start_after: Option<String>,
    /// At most this many items; `None` = all.
    pub limit: Option<usize>,
}

/// The answer to [`Store::list`].
#[derive(Debug, Clone, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (the store's current revision when
    /// `ListOptions::revision` was `None`).
    pub revision: Revision,
    /// Number of matching keys after the returned page (0 when complete).
    pub remaining: u64,
}

/// A stream of watch events in revision order. The stream ends when the watcher
/// falls too far behind or the store closes; the caller re-watches from the last
/// revision it saw.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// A revisioned key-value store with watch. Keys are `/`-separated strings; a
/// "prefix" matches every key that starts with it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest value of `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, as of `opts.revision`.
    /// Errors: `Compacted` / `FutureRevision` for an unusable revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult>;

    /// Number of live keys starting with `prefix`.
    async fn count(&self, prefix: &str) -> Result<u64>;

    /// Create `key`. Errors: `AlreadyExists`. Returns the new revision once the write
    /// is durable.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Replace `key` if its `mod_revision` equals `expected`. Errors: `NotFound`,
    /// `Conflict`. Returns the new revision once durable.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision>;

    /// Delete `key`, if `expected` is given only when its `mod_revision` matches.
    /// Errors: `NotFound`, `Conflict`. Returns the deletion revision and the value
    /// that was deleted.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(Revision, KeyValue)>;

    /// Events for keys under `prefix` with revision strictly greater than `after`.
    /// `after == Revision(0)` means "from now". Errors: `Compacted` if history after
    /// `after` has been dropped.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The current (latest committed) revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision still served by `list` at a revision and by `watch`.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Drop history at or below `revision` (latest values are kept).
    async fn compact(&self, revision: Revision) -> Result<()>;
}
