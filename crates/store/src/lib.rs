//! `skiff-store`: a revisioned key-value store with watch.
//!
//! Every write bumps one global, monotonic [`Revision`]. Updates and deletes are
//! compare-and-swap on the key's `mod_revision`. Reads can be served at an older
//! revision as long as it has not been compacted. Watches replay history from a
//! revision and then follow live writes. The [`Store`] trait is shaped after etcd's
//! KV + Watch API so that an etcd backend can implement it directly.

mod error;
mod kv;

pub use error::{Error, Result};
pub use kv::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store, WatchStream};
