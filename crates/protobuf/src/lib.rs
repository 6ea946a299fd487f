//! Kubernetes protobuf request bodies, turned into the JSON the client would
//! have sent.
//!
//! kubectl and other client-go typed clients send built-in kinds as
//! `application/vnd.kubernetes.protobuf`: the magic `k8s\0`, then a
//! `runtime.Unknown` envelope carrying `apiVersion`, `kind` and the object's
//! own protobuf encoding. skiff stores JSON, so [`decode`] converts such a body
//! at the edge. The conversion is driven by a descriptor table extracted from
//! upstream `generated.proto` files and Go struct tags (see
//! `tools/extract_descriptors.py`); it covers every kind in `k8s.io/api`,
//! `meta/v1` and `apiextensions.k8s.io`.
//!
//! The input is untrusted: malformed data is an [`Error`], never a panic;
//! nesting is bounded by [`MAX_DEPTH`] and output size by the input size.

mod decode;
mod descriptor;
mod envelope;
mod error;
mod wellknown;
mod wire;

pub use error::{Error, Result};

/// The 4 bytes that start every Kubernetes protobuf body.
pub const MAGIC: &[u8] = b"k8s\0";

/// Deepest nesting of messages accepted; real objects stay far below (a pod
/// template is under 10 levels), deeper input is rejected with [`Error::TooDeep`].
pub const MAX_DEPTH: usize = 100;

/// Converts a `application/vnd.kubernetes.protobuf` request body into the JSON
/// object the same client would have sent as `application/json`, with `kind`
/// and `apiVersion` taken from the envelope.
///
/// Absent, zero and empty values follow Go's `encoding/json` rules for the
/// upstream types (e.g. `replicas: 0` is kept, `metadata.creationTimestamp` is
/// `null`, `spec: {}` appears), except that empty lists and maps are omitted.
/// Unknown field numbers are skipped.
///
/// # Errors
/// [`Error::BadMagic`] without the `k8s\0` prefix; [`Error::UnknownKind`] for
/// an apiVersion/kind without a protobuf schema (custom resources);
/// [`Error::Truncated`], [`Error::Malformed`], [`Error::WrongWireType`] and
/// [`Error::InvalidValue`] for bad wire data; [`Error::TooDeep`] and
/// [`Error::TooLarge`] for resource bombs.
pub fn decode(body: &[u8]) -> Result<serde_json::Value> {
    envelope::decode(body)
}
