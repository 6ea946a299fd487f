//! The image store's errors.

use std::path::PathBuf;

/// Everything the image store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // Invalid input first.
    /// A reference that is not a valid image name.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    /// A digest string that is not `sha256:<64 hex>`.
    #[error("invalid digest {0:?}: want sha256:<64 lowercase hex>")]
    InvalidDigest(String),
    /// Content whose sha256 is not the digest it was announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// A layer entry whose path or link would land outside the layer directory.
    #[error("layer {layer}: entry {path:?} escapes the layer directory")]
    PathEscape { layer: String, path: String },
    /// An archive that is neither an OCI layout nor a docker-archive.
    #[error("{path}: not an image archive ({reason})")]
    NotAnArchive { path: PathBuf, reason: String },
    /// An archive or layout whose documents are inconsistent or malformed.
    #[error("malformed image: {0}")]
    Malformed(String),
    /// A name given for an archive holding several images.
    #[error("--name applies to one image, but the archive holds {0}")]
    NameForManyImages(usize),
    /// No image for this reference.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// A short ID matching several images.
    #[error("image id prefix {0:?} matches more than one image")]
    Ambiguous(String),
    /// No manifest for the wanted platform in a multi-platform index.
    #[error("no manifest for platform {0} in the image index")]
    NoPlatform(String),
    /// A media type the store does not handle.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    /// The overlay options do not fit even the per-layer mount API.
    #[error("cannot mount overlay at {path}: {reason}")]
    Mount { path: PathBuf, reason: String },

    /// The registry refused or failed a request (its reason included).
    #[error("pulling {reference}: {message}")]
    Registry { reference: String, message: String },

    // Wrapped failures.
    /// An I/O failure on a path.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON document that does not parse.
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// An OCI document the oci-spec types reject.
    #[error("{what}: {source}")]
    Oci {
        what: String,
        #[source]
        source: oci_spec::OciSpecError,
    },
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach an operation and a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::Io {
            op,
            path: path.into(),
            source: e.into(),
        })
    }
}
