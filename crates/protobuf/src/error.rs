//! The one error type of this crate.

/// Why a protobuf body could not be turned into JSON.
///
/// Every variant is the client's fault (malformed or unsupported input), so the
/// API edge answers all of them with 400 `BadRequest` (415 for
/// [`Error::UnsupportedEncoding`] would also be fair).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body does not start with the 4-byte `k8s\0` magic.
    #[error("body does not start with the Kubernetes protobuf magic k8s\\0")]
    BadMagic,

    /// The wire data ends in the middle of a tag, varint, fixed-width value or
    /// length-delimited field.
    #[error("protobuf data truncated at byte {offset}")]
    Truncated {
        /// Offset inside the message being read (not the whole body).
        offset: usize,
    },

    /// A varint longer than 10 bytes, an invalid wire type, or field number 0.
    #[error("malformed protobuf data at byte {offset}: {reason}")]
    Malformed {
        /// Offset inside the message being read.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },

    /// A known field arrived with a wire type that does not fit its declared type.
    #[error("field {message}.{number} has wire type {wire_type}, expected {expected}")]
    WrongWireType {
        /// Fully qualified protobuf message name.
        message: String,
        /// Field number.
        number: u32,
        /// Wire type seen.
        wire_type: u8,
        /// Wire type(s) the declared type allows.
        expected: &'static str,
    },

    /// A field holds a value JSON cannot represent the way Kubernetes would
    /// (a time out of range, an unknown IntOrString type, non-JSON raw bytes...).
    #[error("invalid value in {message}: {reason}")]
    InvalidValue {
        /// Fully qualified protobuf message name.
        message: String,
        /// What was wrong.
        reason: String,
    },

    /// The envelope has no `typeMeta.apiVersion` or `typeMeta.kind`.
    #[error("protobuf envelope has no apiVersion/kind")]
    MissingTypeMeta,

    /// The envelope's `contentEncoding` is set (e.g. gzip); Kubernetes clients
    /// never set it, and we do not implement it.
    #[error("unsupported protobuf content encoding {0:?}")]
    UnsupportedEncoding(String),

    /// No protobuf message is known for this apiVersion/kind (custom resources
    /// have none: clients send them as JSON).
    #[error("no protobuf schema for {api_version} {kind}")]
    UnknownKind {
        /// The envelope's apiVersion.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },

    /// Messages nested deeper than [`crate::MAX_DEPTH`].
    #[error("protobuf messages nested deeper than {0}")]
    TooDeep(usize),

    /// The JSON produced would be out of proportion to the body (many empty
    /// entries that each expand into default values).
    #[error("protobuf body expands into too many JSON values")]
    TooLarge,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
