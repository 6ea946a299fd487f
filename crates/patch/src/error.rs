/// Errors from applying a patch.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The patch document is not valid for its type (bad JSON, wrong shape,
    /// unknown directive). Maps to 400 BadRequest / 422.
    #[error("invalid patch: {0}")]
    InvalidPatch(String),

    /// A well-formed RFC 6902 patch whose operation `index` could not be applied
    /// to this document (a failed `test`, a missing path, ...). Kubernetes answers
    /// 422 `Invalid` for these.
    #[error("json patch operation {index} ({op} {path}) failed: {reason}")]
    JsonPatchFailed {
        /// Position of the failing operation in the patch array, from 0.
        index: usize,
        /// The operation's `op` (`add`, `remove`, `test`, ...).
        op: String,
        /// The JSON pointer the failure is about.
        path: String,
        reason: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Deepest nesting the structural algorithms walk before giving up; deeper input is
/// rejected (patches) or treated as an opaque leaf (field tracking), never a crash.
pub(crate) const MAX_DEPTH: usize = 256;

pub(crate) fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidPatch(msg.into())
}
