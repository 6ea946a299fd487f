//! `skiff-store`: a revisioned key-value store with watch.
//!
//! Every write bumps one global, monotonic [`Revision`]. Updates and deletes are
//! compare-and-swap on the key's `mod_revision`. Reads can be served at an older
//! revision as long as it has not been compacted. Watches replay history from a
//! revision and then follow live writes. The [`Store`] trait is shaped after etcd's
//! KV + Watch API so that an etcd backend can implement it directly.
//!
//! [`SqliteStore`] is the embedded backend. [`contract`] (feature
//! `contract-tests`) is the behaviour every backend must show, as a test suite.

mod error;
mod kv;
mod metrics;
mod sqlite;
mod write_rate;

#[cfg(any(test, feature = "contract-tests"))]
pub mod contract;

pub use error::{Error, Result};
pub use kv::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, Store, WatchStream};
pub use metrics::{Statement, StatementStats, StoreMetrics, BUCKET_BOUNDS_MICROS};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use write_rate::{measure_create_rate, WriteRate};
