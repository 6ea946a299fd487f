use crate::Revision;

/// Errors returned by a [`crate::Store`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `create` found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// `update`/`delete`/`get` on a key that does not exist (at the requested revision).
    #[error("key {key} not found")]
    NotFound { key: String },
    /// Compare-and-swap failed: the key's current `mod_revision` is not the expected one.
    #[error("key {key}: expected revision {expected}, current is {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    /// The requested revision is older than the compaction point.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future (current is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// The backend failed (I/O, SQL, connection).
    #[error("storage backend: {0}")]
    Backend(#[from] rusqlite::Error),
    /// The store is shutting down or its worker thread died.
    #[error("store is closed")]
    Closed,
    /// A stored row breaks an invariant of the schema (e.g. a put that names a
    /// previous revision that is missing from the log).
    #[error("corrupt row at revision {revision}: {reason}")]
    Corrupt {
        revision: Revision,
        reason: &'static str,
    },
    /// The database file was written by a newer schema than this build knows.
    #[error("{}: schema version {found} is newer than supported version {supported}", path.display())]
    SchemaVersion {
        path: std::path::PathBuf,
        found: i64,
        supported: i64,
    },
    /// The store could not start its writer thread.
    #[error("starting the store writer thread")]
    Spawn(#[source] std::io::Error),
    /// A blocking read task panicked or was cancelled by the runtime.
    #[error("store read task failed")]
    ReadTask(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
