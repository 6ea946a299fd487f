/// Errors from applying a patch.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The patch document is not valid for its type (bad JSON, wrong shape,
    /// unknown directive). Maps to 400 BadRequest / 422.
    #[error("invalid patch: {0}")]
    InvalidPatch(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
